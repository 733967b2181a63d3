"""Derive the committed 2 mm ICBM152 2009a tissue maps from the 1 mm maps shipped by nilearn.

Run once by a developer (``python -m napari_petite.simulate.derive_anatomy``); the outputs in
``sample_data/anatomy/`` are committed so that neither nilearn nor a download is needed at run
time. Each map is the 2x2x2 block average of the 1 mm map (partial-volume preserving, unlike
point resampling), stored as uint8 probability x 255:

- ``icbm152_2009a_gm_2mm.nii.gz`` / ``..._wm_2mm.nii.gz``: grey / white matter probability;
- ``..._brain_2mm.nii.gz``: intracranial (skull-stripped) mask fraction, from the T1 template
  being non-zero or GM + WM > 0.5, holes filled. CSF = brain - GM - WM (clipped at 0).

Source: Fonov V, Evans AC, McKinstry RC, Almli CR, Collins DL. Unbiased nonlinear average
age-appropriate brain templates from birth to adulthood. NeuroImage 2009;47:S102, and Fonov et
al., Unbiased average age-appropriate atlases for pediatric studies, NeuroImage 2011;54:313-327
(MNI ICBM152 non-linear symmetric 2009a).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NILEARN_NAME = "mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
OUTPUT_NAME = "icbm152_2009a_{kind}_2mm.nii.gz"


def _nilearn_data_dir() -> Path:
    import nilearn.datasets

    return Path(nilearn.datasets.__file__).resolve().parent / "data"


def block_average(data: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average ``factor``-cubed blocks, zero-padding odd sizes (keeps total tissue volume)."""
    pad = [(0, (-s) % factor) for s in data.shape]
    padded = np.pad(data, pad)
    shape = [s // factor for s in padded.shape]
    view = padded.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    return view.mean(axis=(1, 3, 5))


def derive(out_dir: Path, source_dir: Path | None = None) -> list[Path]:
    """Write the three 2 mm maps into ``out_dir``; return their paths."""
    import nibabel as nib
    from scipy import ndimage as ndi

    from napari_petite.io.atomic import atomic_write

    source_dir = source_dir or _nilearn_data_dir()
    maps = {}
    affine = None
    for kind in ("gm", "wm", "t1"):
        img = nib.load(str(source_dir / NILEARN_NAME.format(kind=kind)))
        maps[kind] = np.asanyarray(img.dataobj).astype(np.float64) / 255.0
        affine = img.affine
    brain = (maps["t1"] > 0) | ((maps["gm"] + maps["wm"]) > 0.5)
    brain = ndi.binary_fill_holes(brain)
    maps["brain"] = brain.astype(np.float64)
    new_affine = np.array(affine, dtype=np.float64)
    new_affine[:3, :3] *= 2.0
    new_affine[:3, 3] += 0.5 * np.diag(affine)[:3]
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("gm", "wm", "brain"):
        data = np.clip(np.round(block_average(maps[kind]) * 255.0), 0, 255).astype(np.uint8)
        img = nib.Nifti1Image(data, new_affine)
        img.header.set_xyzt_units("mm")
        img.header["descrip"] = b"ICBM152 2009a (Fonov et al.) 2mm block average x255"
        dest = out_dir / OUTPUT_NAME.format(kind=kind)
        written.append(atomic_write(dest, lambda tmp, im=img: nib.save(im, str(tmp)),
                                    overwrite=True))
    return written


def main(argv: list[str] | None = None) -> int:
    from napari_petite._resources import sample_data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=sample_data_dir() / "anatomy")
    args = parser.parse_args(argv)
    for path in derive(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
