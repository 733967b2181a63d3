"""``petite make-sample-data`` and the dataset writer: layout, determinism, refusals.

Bad input goes through a real ``petite`` subprocess: exit code 2, one clear sentence, and
nothing written under the final name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_petite.errors import ConfigError, OutputError
from napari_petite.io.dataset import discover
from napari_petite.io.nifti import read_volume
from napari_petite.simulate.dataset import make_dataset


def _petite(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PETITE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "napari_petite.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PETITE_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def cli_dataset(tmp_path_factory, cache):
    """One vereos subject made through the real command line (with --json), its protocol's
    DRF (4) overridden by --drf 8."""
    out = tmp_path_factory.mktemp("cli") / "ds"
    proc = _petite("make-sample-data", "--out", str(out), "--scanners", "vereos",
                   "--subjects", "1", "--seed", "5", "--drf", "8", "--json", cache=cache)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_layout_is_a_valid_dataset(cli_dataset):
    out, summary = cli_dataset
    assert summary["scanners"] == ["vereos"] and summary["drf"] == {"vereos": 8.0}
    assert summary["drf_source"] == "--drf override"
    ds = discover(out)
    assert list(ds.scanners) == ["vereos"]
    scanner = ds.scanners["vereos"]
    assert scanner.profile["id"] == "vereos" and "simulation" in scanner.profile
    subject = scanner.subjects[0]
    assert subject.id == "sub-vereos01"
    low, full, truth = (read_volume(subject.path / f"{n}.nii.gz") for n in ("low", "full",
                                                                              "truth"))
    assert low.units == full.units == truth.units == "Bq/mL"
    assert low.shape == full.shape == truth.shape
    np.testing.assert_allclose(low.affine, truth.affine)
    labels = nib.load(str(subject.path / "labels.nii.gz"))
    assert labels.get_data_dtype() == np.uint8
    assert labels.shape[::-1] == full.shape
    assert full.shape[1] >= 64 and full.shape[0] >= 32
    meta = json.loads((subject.path / "meta.json").read_text())
    for key in ("suv_factor", "drf", "seed", "scanner", "counts_full", "counts_low", "labels"):
        assert key in meta
    assert meta["drf"] == 8.0 and meta["seed"] == 5 and meta["scanner"] == "vereos"
    assert meta["protocol"]["drf_source"] == "override"
    assert scanner.profile["simulation"]["drf"] == 8.0
    ratio = meta["counts_low"]["prompts"] / meta["counts_full"]["prompts"]
    assert abs(ratio - 0.125) < 0.004
    # SUV of grey matter in the FDG range (docs/simulation.md: 6-10)
    gm = np.asarray(labels.dataobj).transpose(2, 1, 0) == 1
    assert 4.0 < truth.data[gm].mean() * meta["suv_factor"] < 11.0
    assert not list(out.parent.glob(".*partial*"))


def test_same_seed_gives_identical_files(cli_dataset, tmp_path):
    out, _ = cli_dataset
    again = make_dataset(tmp_path / "again", scanners=["vereos"], subjects=1, seed=5, drf=8)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again["out"]) for p in Path(again["out"]).rglob("*")
                           if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (Path(again["out"]) / rel).read_bytes(), rel


def test_each_site_scans_with_its_own_protocol(tmp_path, cache):
    """Without --drf every site keeps its profile's protocol: its DRF thins the counts, its
    injected activity sets the dose; the source site's subjects do not depend on the others'."""
    from napari_petite.simulate.profiles import load_profile
    from napari_petite.simulate.scan import simulate_subject

    summary = make_dataset(tmp_path / "ds", scanners=["mct", "uexplorer"], subjects=1, seed=2)
    assert summary["drf_source"] == "site protocols"
    ds = discover(tmp_path / "ds")
    metas = {}
    for sid in ("mct", "uexplorer"):
        profile = load_profile(sid)
        meta = ds.scanners[sid].subjects[0].meta
        metas[sid] = meta
        assert summary["drf"][sid] == meta["drf"] == profile.drf
        assert ds.scanners[sid].profile["simulation"]["drf"] == profile.drf
        ratio = meta["counts_low"]["prompts"] / meta["counts_full"]["prompts"]
        assert abs(ratio * profile.drf - 1) < 0.05, (sid, ratio)
        assert 0.85 <= meta["injected_mbq"] / profile.injected_mbq <= 1.15
        assert meta["protocol"]["short_scan_min"] == profile.short_scan_min
    assert load_profile("mct").drf == 6.0  # the paper's 5 of 30 minutes at the source
    assert load_profile("uexplorer").drf > 3 * load_profile("mct").drf
    # a site's dose changes its activity level, not its people: same SUV phantom
    assert metas["uexplorer"]["injected_mbq"] < metas["mct"]["injected_mbq"]
    # a DRF override is the same exam thinned differently: identical full-count scan
    a = simulate_subject(load_profile("mct"), seed=2, index=0)
    b = simulate_subject(load_profile("mct"), seed=2, index=0, drf=20)
    np.testing.assert_array_equal(a.full, b.full)
    assert a.low.std() < b.low.std()


def test_other_seed_and_other_subject_differ(cache):
    from napari_petite.simulate.profiles import load_profile
    from napari_petite.simulate.scan import simulate_subject

    p = load_profile("vereos")
    a = simulate_subject(p, seed=5, index=0)
    b = simulate_subject(p, seed=6, index=0)
    assert not np.array_equal(a.truth, b.truth)
    assert a.meta["phantom"] != b.meta["phantom"]


def _assert_refused(proc, out: Path, words: str):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert words in proc.stderr.lower(), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir()) or (out / "keep.txt").exists()
    assert not list(out.parent.glob(f".{out.name}.partial*"))


@pytest.mark.parametrize("args, words", [
    (["--scanners", "mct,petscan9000"], "unknown scanner id"),
    (["--drf", "0.5"], "--drf must be"),
    (["--subjects", "0"], "--subjects: must be"),
    (["--size", "huge"], "--size must be"),
])
def test_bad_options_exit_2_and_write_nothing(tmp_path, cache, args, words):
    out = tmp_path / "ds"
    proc = _petite("make-sample-data", "--out", str(out), *args, cache=cache)
    _assert_refused(proc, out, words)
    assert not out.exists()


def test_unwritable_out_exits_2(tmp_path, cache):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "ds"
    proc = _petite("make-sample-data", "--out", str(out), "--scanners", "mct", cache=cache)
    assert proc.returncode == 2 and "choose another output location" in proc.stderr.lower(), \
        proc.stderr
    assert blocker.read_text() == "not a folder"
    proc = _petite("make-sample-data", "--out", "/proc/petite-ds", "--scanners", "mct",
                   cache=cache)
    assert proc.returncode == 2 and "petite: error:" in proc.stderr, proc.stderr


def test_existing_dataset_needs_overwrite(tmp_path, cache):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    proc = _petite("make-sample-data", "--out", str(out), "--scanners", "mct",
                   "--subjects", "1", cache=cache)
    _assert_refused(proc, out, "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    with pytest.raises(OutputError):
        make_dataset(out, scanners=["mct"], subjects=1)


def test_overwrite_replaces_and_failure_leaves_nothing(tmp_path, cache):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("a user's own file")
    with pytest.raises(OutputError, match="was not written by napari-petite"):
        make_dataset(mine, scanners=["vereos"], subjects=1, overwrite=True)
    out = tmp_path / "ds"
    make_dataset(out, scanners=["vereos"], subjects=1)
    (out / "keep.txt").write_text("old")

    def boom(info):
        raise RuntimeError("stopped after the first subject")

    with pytest.raises(RuntimeError):
        make_dataset(out, scanners=["vereos"], subjects=2, overwrite=True, progress=boom)
    assert (out / "keep.txt").read_text() == "old"  # old one untouched
    assert not list(tmp_path.glob(".ds.*"))
    summary = make_dataset(out, scanners=["vereos"], subjects=1, overwrite=True, seed=1)
    assert not (out / "keep.txt").exists()
    assert (out / "vereos" / "sub-vereos01" / "full.nii.gz").is_file()
    assert summary["subjects_written"][0]["subject"] == "sub-vereos01"


def test_api_rejects_bad_requests(tmp_path):
    with pytest.raises(ConfigError, match="Unknown scanner"):
        make_dataset(tmp_path / "x", scanners=["nope"])
    with pytest.raises(ConfigError, match="drf"):
        make_dataset(tmp_path / "x", scanners=["mct"], drf=float("nan"))
    assert not (tmp_path / "x").exists()
