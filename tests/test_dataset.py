"""Dataset discovery lists scanners/subjects and reports every problem in one message."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ANISO_AFFINE, make_subject, write_nifti

from napari_petite.errors import DatasetError
from napari_petite.io.dataset import discover


def test_valid_dataset_is_listed(tiny_dataset):
    ds = discover(tiny_dataset)
    assert sorted(ds.scanners) == ["alpha", "beta"]
    alpha = ds.scanner("alpha")
    assert [s.id for s in alpha.subjects] == ["sub-00", "sub-01"]
    sub = alpha.subject("sub-01")
    assert sub.low.name == "low.nii.gz" and sub.truth is not None and sub.labels is None
    assert sub.meta["units"] == "Bq/mL"
    assert sub.shape == (12, 20, 24)
    np.testing.assert_allclose(sub.spacing, (2.0, 1.65, 1.65), rtol=1e-6)
    assert alpha.profile["name"] == "Scanner alpha"
    assert ds.problems == []
    assert json.dumps(ds.summary())


def test_unknown_scanner_and_subject_name_the_choices(tiny_dataset):
    ds = discover(tiny_dataset)
    with pytest.raises(DatasetError, match="available: alpha, beta"):
        ds.scanner("gamma")
    with pytest.raises(DatasetError, match="sub-00, sub-01"):
        ds.scanner("alpha").subject("sub-99")


def test_every_problem_is_reported_at_once(tiny_dataset):
    shifted = ANISO_AFFINE.copy()
    shifted[0, 3] += 1.5
    alpha = tiny_dataset / "alpha"
    make_subject(alpha / "sub-shape", full_shape=(24, 20, 10), with_truth=False)
    make_subject(alpha / "sub-affine", full_affine=shifted, with_truth=False)
    broken = make_subject(tiny_dataset / "beta" / "sub-nofull")
    (broken / "full.nii.gz").unlink()
    (tiny_dataset / "beta" / "sub-00" / "meta.json").write_text("[1, 2]")
    (tiny_dataset / "beta" / "scanner.json").write_text("{not json")
    write_nifti(tiny_dataset / "beta" / "sub-01" / "labels.nii.gz", np.zeros((4, 4, 4)))

    with pytest.raises(DatasetError) as info:
        discover(tiny_dataset, strict=True)
    message = str(info.value)
    assert message.startswith(f"The dataset {tiny_dataset} has 6 problems:")
    for expected in (
        "sub-shape: low has shape (24, 20, 12) but full has (24, 20, 10)",
        "sub-affine: low and full have different affines (largest difference 1.5 mm)",
        "sub-nofull: missing full.nii.gz",
        "sub-00/meta.json: meta.json must hold a JSON object",
        "beta/scanner.json: scanner.json is not valid JSON",
        "sub-01: labels has shape",
    ):
        assert expected in message, expected

    lenient = discover(tiny_dataset, strict=False)
    assert len(lenient.problems) == 6
    assert [s.id for s in lenient.scanner("alpha").subjects] == ["sub-00", "sub-01"]


def test_truth_on_another_grid_is_rejected(tiny_dataset):
    sub = tiny_dataset / "alpha" / "sub-00"
    write_nifti(sub / "truth.nii.gz", np.zeros((24, 20, 12), np.float32), np.eye(4))
    with pytest.raises(DatasetError, match="truth and full have different affines"):
        discover(tiny_dataset, strict=True)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("file", "is a file"),
        ("empty", "holds no scanner folders"),
        ("no-subjects", "holds no scanner folders"),
    ],
)
def test_unusable_roots(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("x")
    elif layout == "empty":
        root.mkdir()
    elif layout == "no-subjects":
        (root / "alpha").mkdir(parents=True)
    with pytest.raises(DatasetError, match=message):
        discover(root)


def test_corrupt_volume_is_reported_not_raised_raw(tiny_dataset):
    (tiny_dataset / "alpha" / "sub-00" / "low.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DatasetError, match="could not be read as NIfTI"):
        discover(tiny_dataset, strict=True)
