"""The ``petite`` console script, run as a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

PETITE = shutil.which("petite") or None


def petite(*args, cwd=None):
    cmd = [PETITE, *args] if PETITE else [sys.executable, "-m", "napari_petite.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_version_and_help():
    out = petite("--version")
    assert out.returncode == 0 and "napari-petite" in out.stdout
    out = petite("--help")
    assert out.returncode == 0 and "info" in out.stdout


def test_info_on_valid_dataset(tiny_dataset):
    out = petite("info", str(tiny_dataset), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert sorted(summary["scanners"]) == ["alpha", "beta"]
    assert summary["scanners"]["alpha"]["spacing_mm"] == pytest.approx([2.0, 1.65, 1.65])


def test_info_on_volume(aniso_nifti):
    out = petite("info", str(aniso_nifti))
    assert out.returncode == 0, out.stderr
    assert "shape (z,y,x) (12, 20, 24)" in out.stdout and "2 x 1.65 x 1.65 mm" in out.stdout


def test_bad_dataset_exits_2_with_all_problems(tiny_dataset):
    (tiny_dataset / "alpha" / "sub-00" / "full.nii.gz").unlink()
    (tiny_dataset / "beta" / "sub-01" / "low.nii.gz").unlink()
    out = petite("info", str(tiny_dataset))
    assert out.returncode == 2
    assert "2 problems" in out.stderr and "Traceback" not in out.stderr
    assert "missing full.nii.gz" in out.stderr and "missing low.nii.gz" in out.stderr


def test_bad_volume_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"not an image")
    out = petite("info", str(bad))
    assert out.returncode == 2
    assert out.stderr.startswith("petite: error: scan.nii.gz could not be read as NIfTI")
    assert "Traceback" not in out.stderr


def test_demo_runs_the_whole_flow_headless(tmp_path):
    """`petite demo`: simulate, fine-tune the shipped base with PETITE, reconstruct a held-out
    subject, write the adapter, the volumes, the report and a summary."""
    out = petite("demo", "--out", str(tmp_path / "demo"), "--steps", "2", "--device", "cpu",
                 "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    for key in ("low_vs_full", "no_ft_vs_full", "petite_vs_full"):
        assert summary["head_mask"][key]["psnr_mask"] > 0
    assert (tmp_path / "demo" / "adapter" / "adapter.json").is_file()
    assert (tmp_path / "demo" / "demo.png").read_bytes()[:4] == b"\x89PNG"
