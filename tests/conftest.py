"""Shared fixtures: real NIfTI files on disk with anisotropic voxels and a non-trivial affine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# 2.0 mm slices, 1.65 mm in-plane, slightly rotated and shifted: the geometry a scanner exports
ANISO_AFFINE = np.array(
    [
        [-1.65 * np.cos(0.1), -1.65 * np.sin(0.1), 0.0, 90.5],
        [1.65 * np.sin(0.1), -1.65 * np.cos(0.1), 0.0, 110.25],
        [0.0, 0.0, 2.0, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def write_nifti(path: Path, data_xyz: np.ndarray, affine=ANISO_AFFINE, **header) -> Path:
    """Write a NIfTI with nibabel directly (independent of the code under test)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data_xyz), np.asarray(affine, dtype=np.float64))
    for key, value in header.items():
        img.header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def pet_like(shape_xyz=(24, 20, 12), seed=0) -> np.ndarray:
    """A smooth positive blob with Poisson-like noise, float32, in NIfTI (x, y, z) order."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_xyz], indexing="ij")
    blob = np.exp(-sum(g**2 for g in grids) * 2.5) * 8000.0
    return rng.poisson(blob + 50.0).astype(np.float32)


@pytest.fixture
def aniso_nifti(tmp_path) -> Path:
    return write_nifti(tmp_path / "scan.nii.gz", pet_like())


def make_subject(folder: Path, *, seed=0, shape_xyz=(24, 20, 12), affine=ANISO_AFFINE,
                 full_affine=None, full_shape=None, with_truth=True) -> Path:
    """Write one subject folder (low, full, optional truth, meta.json)."""
    import json

    write_nifti(folder / "low.nii.gz", pet_like(shape_xyz, seed), affine)
    write_nifti(folder / "full.nii.gz", pet_like(full_shape or shape_xyz, seed + 1),
                affine if full_affine is None else full_affine)
    if with_truth:
        write_nifti(folder / "truth.nii.gz", pet_like(shape_xyz, seed + 2), affine)
    (folder / "meta.json").write_text(json.dumps({"units": "Bq/mL", "seed": seed}))
    return folder


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """Two scanners x two subjects, valid."""
    import json

    root = tmp_path / "dataset"
    for s, scanner in enumerate(("alpha", "beta")):
        (root / scanner).mkdir(parents=True)
        (root / scanner / "scanner.json").write_text(json.dumps({"name": f"Scanner {scanner}"}))
        for k in range(2):
            make_subject(root / scanner / f"sub-{k:02d}", seed=10 * s + k)
    return root


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Tests never write into the user's cache (GUI runs checkpoint into it)."""
    import os

    saved = os.environ.get("PETITE_CACHE_DIR")
    if saved is None:
        os.environ["PETITE_CACHE_DIR"] = str(tmp_path_factory.mktemp("petite-cache"))
    yield
    if saved is None:
        os.environ.pop("PETITE_CACHE_DIR", None)
