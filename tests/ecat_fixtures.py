"""ECAT 7 files written block by block with numpy (the record layouts are nibabel's
``hdr_dtype`` / ``subhdr_dtype``, the file structure the format's): a main header, one
directory block, then per frame a subheader block and its big-endian int16 voxels.

Independent of the reader under test, and as large as a test needs (nibabel's own
``tinypet.v`` is 10 x 10 x 3 voxels, one frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

BLOCK = 512


def _record(dtype, **values) -> bytes:
    rec = np.zeros((), dtype=dtype)
    for key, value in values.items():
        rec[key] = value
    raw = rec.tobytes()
    return raw + b"\0" * (BLOCK - len(raw))


def _matrix_id(frame: int, plane: int = 1, gate: int = 1, data: int = 0, bed: int = 0) -> int:
    """ECAT 7 matrix number of a frame (1-based), as the scanners encode it."""
    return ((frame & 0x1FF) | ((bed & 0xF) << 12) | ((plane & 0xFF) << 16)
            | ((plane & 0x300) << 1) | ((gate & 0x3F) << 24) | ((data & 0x3) << 30)
            | ((data & 0x4) << 9))


def write_ecat(path: Path, frames_txyz: np.ndarray, *, voxel_cm=(0.2, 0.2, 0.25),
               starts_s: Sequence[float] | None = None,
               durations_s: Sequence[float] | None = None,
               calibration: float = 1.0, calibration_units: int = 1,
               data_units: str = "Bq/cc", decay_factors: Sequence[float] | None = None,
               order: Sequence[int] | None = None) -> Path:
    """Write ``frames_txyz`` (activity per frame, x, y, z) as an ECAT 7 image file.

    Each frame is stored as int16 with its own ``scale_factor`` (peak -> 32000); the value a
    reader should find is ``int16 * scale_factor * calibration``. ``order``: the order the
    frames are stored in (to check readers sort by start time)."""
    from nibabel.ecat import hdr_dtype, subhdr_dtype

    frames = np.asarray(frames_txyz, dtype=np.float64)
    nt, nx, ny, nz = frames.shape
    starts = list(starts_s if starts_s is not None else np.arange(nt) * 300.0)
    durations = list(durations_s if durations_s is not None else [300.0] * nt)
    decay = list(decay_factors if decay_factors is not None else [1.0] * nt)
    order = list(order if order is not None else range(nt))
    hdr_be, sub_be = hdr_dtype.newbyteorder(">"), subhdr_dtype.newbyteorder(">")
    main = _record(hdr_be, magic_number=b"MATRIX72v", sw_version=72, system_type=962,
                   file_type=7, isotope_name=b"F-18", isotope_halflife=6586.2,
                   radiopharmaceutical=b"FDG", ecat_calibration_factor=calibration,
                   calibration_unitS=calibration_units, calibration_units_type=1,
                   data_units=data_units.encode(), num_planes=nz, num_frames=nt, num_gates=1,
                   patient_orientation=8, plane_separation=voxel_cm[2])
    n_blocks = -(-nx * ny * nz * 2 // BLOCK)
    directory = np.zeros((32, 4), dtype=">i4")
    directory[0] = (31 - nt, 2, 0, nt)
    body = []
    block = 3  # 1-based: main header, directory, then the frames
    for row, t in enumerate(order, 1):
        peak = float(np.abs(frames[t]).max()) or 1.0
        scale = peak / 32000.0
        stored = np.clip(np.rint(frames[t] / calibration / scale), -32768, 32767).astype(">i2")
        sub = _record(sub_be, data_type=6, num_dimensions=3, x_dimension=nx, y_dimension=ny,
                      z_dimension=nz, scale_factor=scale, x_pixel_size=voxel_cm[0],
                      y_pixel_size=voxel_cm[1], z_pixel_size=voxel_cm[2],
                      frame_start_time=round(float(starts[t]) * 1000),
                      frame_duration=round(float(durations[t]) * 1000),
                      decay_corr_fctr=decay[t], image_min=int(stored.min()),
                      image_max=int(stored.max()))
        data = stored.tobytes(order="F")
        data += b"\0" * (n_blocks * BLOCK - len(data))
        directory[row] = (_matrix_id(t + 1), block, block + n_blocks, 1)
        body += [sub, data]
        block += 1 + n_blocks
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(main + directory.tobytes() + b"".join(body))
    return path


def nibabel_tinypet() -> Path:
    """nibabel's own real ECAT 7 test file (an HR+ FDG brain scan, cropped)."""
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data" / "tinypet.v"
