"""Lesion insertion in the simulator: seeded, inside the brain, labelled, apart, in range, and
seen through the scanner's physics (small spheres recover less than big ones).

One real lesion-insertion subject (vereos, small grid) is simulated once for the module; the
command line makes a one-subject set in a real subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_petite.errors import ConfigError
from napari_petite.io.dataset import discover
from napari_petite.io.nifti import read_volume
from napari_petite.simulate import lesions as L
from napari_petite.simulate.anatomy import LABEL_ID
from napari_petite.simulate.profiles import load_profile
from napari_petite.simulate.scan import simulate_subject, subject_rngs

N = 10


@pytest.fixture(scope="module")
def scan():
    return simulate_subject(load_profile("vereos"), seed=11, index=0, lesions=(N, N))


def test_same_seed_same_lesions_other_seed_others(scan):
    labels = scan.labels.copy()
    labels[np.isin(labels, [LABEL_ID["hot lesion"], LABEL_ID["cold lesion"]])] = \
        LABEL_ID["white matter"]

    def draw(seed):
        return L.draw_lesions(np.random.default_rng(seed), labels, scan.spacing, 6,
                              gm_level=8000.0, wm_level=2500.0)

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    again = simulate_subject(load_profile("vereos"), seed=11, index=0, lesions=(N, N))
    assert again.meta["lesions"] == scan.meta["lesions"]
    np.testing.assert_array_equal(again.lesions, scan.lesions)
    np.testing.assert_array_equal(again.full, scan.full)


def test_asking_for_lesions_leaves_the_other_draws_alone():
    two = subject_rngs(4, "mct", 1)
    three = subject_rngs(4, "mct", 1, count=3)
    for a, b in zip(two, three[:2], strict=True):
        assert a.random() == b.random()


def test_lesions_inside_the_brain_apart_labelled_and_in_range(scan):
    info = scan.meta["lesions"]
    assert [d["id"] for d in info] == list(range(1, N + 1))
    assert sorted(np.unique(scan.lesions).tolist()) == list(range(0, N + 1))
    brain = np.isin(scan.labels, L.BRAIN)
    to_edge = ndi.distance_transform_edt(brain, sampling=scan.spacing)
    axes = L.voxel_centres_mm(scan.labels.shape, scan.spacing)
    for d in info:
        assert L.DIAMETER_MM[0] <= d["diameter_mm"] <= L.DIAMETER_MM[1]
        bounds = L.HOT_CONTRAST if d["kind"] == "hot" else L.COLD_CONTRAST
        assert bounds[0] <= d["contrast"] <= bounds[1]
        mask = scan.lesions == d["id"]
        assert d["voxels"] == int(mask.sum()) > 0
        # labelled in the region map as what it is, and wholly inside the brain
        assert set(np.unique(scan.labels[mask])) == {LABEL_ID[f"{d['kind']} lesion"]}
        x, y, z = d["centre_mm"]
        near = tuple(int(np.argmin(np.abs(a - c))) for a, c in zip(axes, (z, y, x),
                                                                 strict=True))
        assert to_edge[near] >= d["diameter_mm"] / 2  # the sphere ends inside the brain
    for a, b in itertools.combinations(info, 2):
        gap = np.linalg.norm(np.subtract(a["centre_mm"], b["centre_mm"]))
        assert gap >= (a["diameter_mm"] + b["diameter_mm"]) / 2 + L.GAP_MM - 1e-6
    assert {d["tissue"] for d in info} == set(L.TISSUES)
    assert {d["kind"] for d in info} == {"hot", "cold"}


def test_hot_lesions_recover_through_the_physics_as_their_size_says(scan):
    hot = [d for d in scan.meta["lesions"] if d["kind"] == "hot"]
    rc = {}
    for d in hot:
        mask = scan.lesions == d["id"]
        rc[d["diameter_mm"]] = float(scan.full[mask].mean()) / d["activity_bq_ml"]
        # the truth on the grid is the sphere's own activity, diluted only at its edge
        assert 0.4 * d["activity_bq_ml"] < d["truth_mean_bq_ml"] <= d["activity_bq_ml"] * 1.001
    big, small = max(rc), min(rc)
    assert big >= 12 and small <= 9, rc  # the seed gives both ends of the range
    assert 0.7 <= rc[big] <= 1.05, rc
    assert rc[small] < rc[big] and rc[small] < 0.8, rc


def test_parse_count_accepts_n_and_ranges_and_refuses_nonsense():
    assert L.parse_count("12") == (12, 12)
    assert L.parse_count("8:16") == (8, 16)
    assert L.parse_count("0") is None and L.parse_count(None) is None
    for bad in ("x", "5:2", "-1", f"{L.MAX_LESIONS + 1}"):
        with pytest.raises(ConfigError):
            L.parse_count(bad)


def test_too_many_lesions_for_the_brain_is_a_sentence():
    labels = np.zeros((20, 20, 20), np.uint8)  # a 40 mm cube of brain holds a few spheres
    labels[2:-2, 2:-2, 2:-2] = LABEL_ID["white matter"]
    labels[2:-2, 2:-2, 2:10] = LABEL_ID["grey matter"]
    with pytest.raises(ConfigError, match="fit"):
        L.draw_lesions(np.random.default_rng(0), labels, (2.0, 2.0, 2.0), L.MAX_LESIONS,
                       gm_level=1.0, wm_level=1.0)


def test_cli_writes_a_lesion_set_and_refuses_a_bad_count(tmp_path):
    env = dict(os.environ, PETITE_CACHE_DIR=str(tmp_path / "cache"))
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "napari_petite.cli", "make-sample-data", "--out", str(out),
           "--scanners", "vereos", "--subjects", "1", "--seed", "3", "--lesions", "3:4"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    subject = discover(out).scanners["vereos"].subjects[0]
    assert subject.lesions is not None
    meta = json.loads((subject.path / "meta.json").read_text())
    instances = read_volume(subject.lesions).data
    assert 3 <= len(meta["lesions"]) <= 4
    assert sorted(np.unique(instances).astype(int).tolist()) == \
        list(range(len(meta["lesions"]) + 1))
    assert json.loads((out / "dataset.json").read_text())["lesions"] == [3, 4]
    bad = subprocess.run([*cmd[:-1], "5:2"], capture_output=True, text=True, timeout=120,
                         env=env)
    assert bad.returncode == 2 and "--lesions" in bad.stderr
    assert "Traceback" not in bad.stderr
