"""``petite sweep``: row plan from the spec API, leaderboard files, resume, 2-rank spreading."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from test_cli import petite
from test_ddp import tiny_workspace, torchrun

from napari_petite.errors import ConfigError
from napari_petite.models.registry import build_model
from napari_petite.training.leaderboard import best_mix, ranked, to_markdown
from napari_petite.training.sweep import plan_rows, select


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tiny_workspace(tmp_path_factory.mktemp("sweep"))


@pytest.mark.parametrize(("backbone", "n_mix"), [("unetr", 9), ("cvtgan", 12)])
def test_plan_has_baselines_singles_and_every_feasible_mix(backbone, n_mix):
    with torch.device("meta"):
        model = build_model(backbone, "small")
    rows = plan_rows(model)
    keys = [r.key for r in rows]
    assert keys[:2] == ["no-ft", "full-ft"] and rows[0].spec is None
    assert rows[1].spec.encoder == rows[1].spec.decoder == "full" and not rows[1].spec.bitfit
    assert {"layernorm", "bitfit", "lora", "adapter", "ssf", "vpt", "ia3"} <= set(keys)
    mixes = [r for r in rows if r.kind == "mix"]
    assert len(mixes) == n_mix and all(r.spec.bitfit for r in mixes)
    assert sum("(PETITE)" in r.label for r in mixes) == 1
    vpt = next(r for r in rows if r.key == "vpt")
    if backbone == "unetr":  # VPT has no place in a CNN decoder: that part stays frozen, said so
        assert vpt.spec.decoder == "none" and "decoder left frozen" in vpt.note
    else:
        assert vpt.spec.encoder == vpt.spec.decoder == "vpt" and not vpt.note
    with pytest.raises(ConfigError, match="unknown row"):
        select(rows, "no-ft,mix-vpt-vpt")


def test_leaderboard_ranks_by_psnr_and_bolds_best_mix():
    rows = [
        {"key": "no-ft", "label": "No-FT", "kind": "baseline", "psnr": 20.0, "ssim": 0.5,
         "nrmse": 0.1, "percent": 0.0},
        {"key": "mix-a", "label": "Mix A", "kind": "mix", "psnr": 25.0, "ssim": 0.6,
         "nrmse": 0.05, "percent": 1.0},
        {"key": "mix-b", "label": "Mix B", "kind": "mix", "psnr": 24.0, "ssim": 0.7,
         "nrmse": 0.06, "percent": 0.5},
        {"key": "full-ft", "label": "Full-FT", "kind": "baseline", "psnr": 26.0, "ssim": 0.7,
         "nrmse": 0.04, "percent": 100.0},
        {"key": "vpt", "label": "VPT", "kind": "single", "skipped": "fits no part"},
    ]
    order = [r["key"] for r in ranked(rows)]
    assert order == ["full-ft", "mix-a", "mix-b", "no-ft", "vpt"]
    assert best_mix(rows) == "mix-a"
    text = to_markdown(rows, {"backbone": "unetr", "target": "b"})
    assert "| 2 | **Mix A** |" in text and "VPT: not run — fits no part" in text
    assert "31.746" in text  # the paper's UNETR Full-FT for orientation


def test_sweep_writes_leaderboard_and_resumes(workspace, tmp_path):
    data, base = workspace
    out = tmp_path / "sweep"
    common = ["sweep", "--data", str(data), "--source", "site-a", "--target", "site-b",
              "--base", str(base), "--steps", "2", "--val-every", "2", "--batch", "1",
              "--device", "cpu", "--seed", "0", "--out", str(out), "--json"]
    first = petite(*common, "--only", "no-ft,full-ft")
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(json.loads(first.stdout)["rows_run"]) == ["full-ft", "no-ft"]

    second = petite(*common, "--only", "no-ft,full-ft,mix-lora-ssf", "--save-adapters")
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout)
    assert summary["rows_run"] == ["mix-lora-ssf"]  # the finished rows were not redone
    assert summary["rows_reused"] == ["full-ft", "no-ft"]

    board = json.loads((out / "leaderboard.json").read_text())
    rows = {r["key"]: r for r in board["rows"]}
    assert set(rows) == {"no-ft", "full-ft", "mix-lora-ssf"}
    assert board["best_mix"] == "mix-lora-ssf"
    assert [r["rank"] for r in board["rows"]] == [1, 2, 3]
    psnrs = [r["psnr"] for r in board["rows"]]
    assert psnrs == sorted(psnrs, reverse=True)
    assert rows["no-ft"]["trainable"] == 0 and rows["no-ft"]["train_s"] == 0
    assert rows["full-ft"]["percent"] == pytest.approx(100.0)
    assert 0 < rows["mix-lora-ssf"]["percent"] < 100
    assert rows["mix-lora-ssf"]["mem_kind"] == "cpu_rss_peak_growth"
    assert rows["mix-lora-ssf"]["peak_mem_mb"] >= 0
    assert rows["full-ft"]["steps_done"] == 2 and rows["full-ft"]["val_best"]["step"] == 2
    # the same base, seed and budget: No-FT scores the base itself, training changed the others
    assert rows["full-ft"]["psnr"] != rows["no-ft"]["psnr"]

    table = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert [t["key"] for t in table] == [r["key"] for r in board["rows"]]
    md = (out / "leaderboard.md").read_text()
    assert "**Mix: enc LoRA + dec SSF + BitFit (PETITE)**" in md
    assert "The paper's numbers (unetr" in md
    assert (out / "adapters" / "mix-lora-ssf" / "adapter.safetensors").is_file()
    assert not (out / "adapters" / "full-ft").exists()  # reused rows are not retrained

    third = petite(*common, "--only", "no-ft", "--overwrite")
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads(third.stdout)["rows_run"] == ["no-ft"]
    assert [r["key"] for r in json.loads((out / "leaderboard.json").read_text())["rows"]] \
        == ["no-ft"]


def test_sweep_spreads_rows_over_two_ranks(workspace, tmp_path):
    data, base = workspace
    out = tmp_path / "sweep2"
    run = torchrun("sweep", "--data", str(data), "--target", "site-b", "--base", str(base),
                   "--steps", "1", "--val-every", "1", "--batch", "1", "--device", "cpu",
                   "--only", "no-ft,bitfit", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)  # one JSON object: only rank 0 printed
    assert sorted(summary["rows_run"]) == ["bitfit", "no-ft"]
    rows = {r["key"]: r for r in json.loads((out / "leaderboard.json").read_text())["rows"]}
    assert rows["no-ft"]["rank_ran_on"] == 0 and rows["bitfit"]["rank_ran_on"] == 1
    assert json.loads((out / "leaderboard.json").read_text())["meta"]["world_size"] == 2
