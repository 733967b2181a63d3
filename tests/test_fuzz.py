"""Fuzzing the NIfTI reader and dataset discovery (hypothesis, bounded: a few seconds each).

Whatever the bytes, the reader either returns a finite float32 3D volume or raises
``InputError``; discovery either lists subjects that have both scans on one grid or reports
problems as sentences (``DatasetError`` when strict). Nothing else may escape: an unexpected
exception type is a traceback in front of a user.
"""

from __future__ import annotations

import gzip
import json
import os
import string
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_petite.errors import DatasetError, InputError
from napari_petite.io.dataset import discover
from napari_petite.io.nifti import read_volume

#: CI runs a fixed, small set of examples; PETITE_FUZZ_EXAMPLES=2000 explores at random
EXAMPLES = int(os.environ.get("PETITE_FUZZ_EXAMPLES", "0"))
FAST = settings(max_examples=EXAMPLES or 40, deadline=None, derandomize=not EXAMPLES,
                database=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_nifti_bytes(shape=(4, 3, 2), dtype=np.float32) -> bytes:
    data = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    img = nib.Nifti1Image(data, np.diag([2.0, 1.5, 1.0, 1.0]))
    return img.to_bytes()


VALID = _valid_nifti_bytes()


def _check_read(path: Path) -> None:
    try:
        vol = read_volume(path)
    except InputError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert vol.data.ndim == 3 and vol.data.dtype == np.float32
    assert np.isfinite(vol.data).all()
    assert all(s > 0 and np.isfinite(s) for s in vol.spacing)


@FAST
@given(blob=st.binary(max_size=2048), gz=st.booleans())
def test_reader_on_random_bytes(blob, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.nii.gz" if gz else "x.nii")
        path.write_bytes(gzip.compress(blob) if gz else blob)
        _check_read(path)


@FAST
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                      min_size=1, max_size=12),
       cut=st.one_of(st.none(), st.integers(0, len(VALID))), gz=st.booleans())
def test_reader_on_mutated_nifti(edits, cut, gz):
    """Header fields (dims, datatype, offsets, scaling, affine codes) and data corrupted."""
    raw = bytearray(VALID)
    for offset, value in edits:
        raw[offset] = value
    blob = bytes(raw[:cut] if cut is not None else raw)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("m.nii.gz" if gz else "m.nii")
        path.write_bytes(gzip.compress(blob) if gz else blob)
        _check_read(path)


@FAST
@given(field=st.sampled_from(["dim", "pixdim", "scl_slope", "scl_inter", "vox_offset",
                              "datatype", "sform_code", "srow_x"]),
       value=st.one_of(st.integers(-2**31, 2**31 - 1), st.floats(allow_nan=True,
                                                                  allow_infinity=True)))
def test_reader_on_hostile_header_fields(field, value):
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(VALID))
    try:
        if field in ("dim", "pixdim", "srow_x"):
            header[field] = [value] * len(header[field])
        else:
            header[field] = value
    except (ValueError, TypeError, OverflowError):
        return  # nibabel cannot even store it
    blob = header.binaryblock + VALID[348:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.nii"
        path.write_bytes(blob)
        _check_read(path)


# -- dataset discovery ---------------------------------------------------------------------
NAME = st.text(alphabet=string.ascii_letters + string.digits + " -_.éü", min_size=1,
               max_size=12).filter(lambda s: s.strip(" .") == s and s not in (".", ".."))
JSONS = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
KINDS = st.sampled_from(["valid", "other-shape", "garbage", "2d", "absent"])


def _write(path: Path, kind: str) -> None:
    if kind == "absent":
        return
    if kind == "garbage":
        path.write_bytes(b"\x1f\x8b not really gzip")
        return
    shape = {"valid": (4, 4, 3), "other-shape": (4, 3, 3), "2d": (4, 4)}[kind]
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(path))


SUBJECT = st.fixed_dictionaries({
    "name": NAME, "low": KINDS, "full": KINDS,
    "labels": st.sampled_from(["absent", "valid", "other-shape"]),
    "meta": st.one_of(st.none(), JSONS.map(json.dumps), st.just("{broken")),
})
TREE = st.dictionaries(NAME, st.tuples(st.one_of(st.none(), JSONS.map(json.dumps)),
                                       st.lists(SUBJECT, max_size=3)), max_size=3)


@FAST
@given(tree=TREE)
def test_discovery_never_raises_unexpectedly(tree):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data set é"
        root.mkdir()
        for scanner, (profile, subjects) in tree.items():
            sdir = root / scanner
            sdir.mkdir(exist_ok=True)
            if profile is not None:
                (sdir / "scanner.json").write_text(profile)
            for sub in subjects:
                folder = sdir / sub["name"]
                if folder.is_file():  # a subject named like the scanner.json beside it
                    continue
                folder.mkdir(exist_ok=True)
                for kind in ("low", "full", "labels"):
                    _write(folder / f"{kind}.nii.gz", sub[kind])
                if sub["meta"] is not None:
                    (folder / "meta.json").write_text(sub["meta"])
        try:
            ds = discover(root, strict=False)
        except DatasetError:
            return
        assert all(isinstance(p, str) and p for p in ds.problems)
        for scanner in ds.scanners.values():
            assert isinstance(scanner.profile, dict)
            for subject in scanner.subjects:
                assert {"low", "full"} <= set(subject.files)
                assert isinstance(subject.meta, dict)
                assert subject.shape is not None and len(subject.shape) == 3
        json.dumps(ds.summary())
        try:
            discover(root, strict=True)
        except DatasetError as err:
            assert ds.problems and str(err).startswith(f"The dataset {root} has")
        else:
            assert not ds.problems
