"""The benchmark scripts run end to end on tiny data and write the files the summary reads.

bench_quality.py (one real sweep of two rows) and bench_speed.py (every part, tiny sizes) run
as real child processes side by side, then summary.py collects both; the checks look at the
written keys and at values that must hold whatever the machine's speed (merged == unmerged
outputs, No-FT gains 0 dB over itself, missing inputs give null with a reason).
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_ddp import tiny_workspace

from napari_petite.models.checkpoint import save_checkpoint
from napari_petite.models.registry import build_model, smoke_overrides

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
REQUIRED = {"mix_minus_full_psnr_db", "mix_minus_noft_psnr_db", "mix_trainable_percent",
            "peft_full_step_time_ratio", "peft_full_peak_memory_ratio",
            "merged_inference_overhead_ratio", "gui_stall_p99_ms", "gui_stall_max_ms",
            "gui_walk_max_stall_ms", "gui_walk_max_stall_loaded_ms",
            "minutes_to_within_0p3db", "train_flops_fraction_of_matmul",
            "shift_full_minus_noft_db", "shift_full_minus_noft_db_cvtgan",
            "base_gain_over_input_db_unetr", "base_gain_over_input_db_cvtgan",
            "mix_recovery_fraction", "mix_recovery_fraction_cvtgan",
            "few_subjects_mix_minus_full_db", "gui_demo_val_gain_db"}


def _script(name: str, *args: str) -> list[str]:
    return [sys.executable, str(BENCH / name), *args]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Quality and speed benchmarks in quick mode, run concurrently into one results folder."""
    root = tmp_path_factory.mktemp("bench")
    data, base = tiny_workspace(root)
    out = root / "results"
    common = ["--base", f"unetr={base}", "--data", str(data), "--threads", "1",
              "--out", str(out)]
    quality = _script("bench_quality.py", "--backbones", "unetr", "--pairs", "site-a:site-b",
                      "--only", "no-ft,bitfit", "--steps", "1", "--val-every", "1",
                      "--batch", "1", *common)
    # every part but peft_paper (a ViT-B train step: minutes and gigabytes on a CPU; it shares
    # peft_ratios with the peft part)
    speed = _script("bench_speed.py", "--parts", "peft,merge,inference,flops,convergence",
                    "--backbones", "unetr", "--repeats", "1",
                    "--merge-repeats", "1", "--methods", "petite", "--scanners", "vereos",
                    "--sizes", "small", "--matmul-n", "128", "--target", "site-b", "--steps", "2",
                    "--val-every", "1", *common)
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
             for name, cmd in (("quality", quality), ("speed", speed))}
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        done[name] = (proc.returncode, stdout, stderr)
    # the shift table reuses the quality sweep's No-FT row and trains Full-FT, the in-domain
    # reference (from scratch on the target) and the one-subject Full-FT / Mix-PEFT rows
    shift = subprocess.run(_script(
        "bench_shift.py", "--backbones", "unetr", "--pairs", "site-a:site-b", "--steps", "1",
        "--val-every", "1", "--indomain-steps", "2", "--few-subjects", "1",
        "--work", str(root / "indomain"), *common), capture_output=True, text=True,
        timeout=600)
    done["shift"] = (shift.returncode, shift.stdout, shift.stderr)
    front = root / "FRONT.md"  # stands in for the project README (never touched by tests)
    front.write_text("# Project\n\n<!-- benchmarks:start -->\nold\n<!-- benchmarks:end -->\n"
                     "\nkept\n")
    summary = subprocess.run(_script("summary.py", "--results", str(out), "--readme",
                                     str(front)), capture_output=True, text=True, timeout=120)
    done["summary"] = (summary.returncode, summary.stdout, summary.stderr)
    return {"out": out, "data": data, "base": base, "done": done, "front": front}


def _ok(runs, name):
    code, stdout, stderr = runs["done"][name]
    assert code == 0, f"{name} failed:\n{stdout[-2000:]}\n{stderr[-3000:]}"


def test_quality_tables_from_a_real_sweep(runs):
    _ok(runs, "quality")
    out = runs["out"]
    for suffix in ("md", "csv", "json"):
        assert (out / f"quality_unetr.{suffix}").is_file()
    assert (out / "psnr_vs_params.png").stat().st_size > 1000
    # the quality run's two rows, and the Full-FT row bench_shift.py added beside them (it
    # reused the No-FT row: same fingerprint)
    assert sorted(p.name for p in (out / "sweeps/unetr/site-a-site-b/rows").iterdir()) \
        == ["bitfit.json", "full-ft.json", "no-ft.json"]
    agg = json.loads((out / "quality_unetr.json").read_text())
    methods = {m["key"]: m for m in agg["methods"]}
    assert {"no-ft", "full-ft", "bitfit", "mix-lora-ssf"} <= set(methods)
    noft, bitfit = methods["no-ft"], methods["bitfit"]
    assert noft["n_pairs"] == bitfit["n_pairs"] == 1 and methods["full-ft"]["n_pairs"] == 0
    assert noft["stats"]["gain_db"]["mean"] == 0.0
    assert math.isfinite(bitfit["stats"]["psnr"]["mean"])
    assert 0 < bitfit["stats"]["percent"]["mean"] < 100
    assert bitfit["stats"]["gain_db"]["mean"] == pytest.approx(
        bitfit["stats"]["psnr"]["mean"] - noft["stats"]["psnr"]["mean"])
    assert methods["full-ft"]["paper"]["psnr"] == pytest.approx(31.746)
    assert agg["headline"]["best_mix_key"] is None  # no Mix-PEFT row ran
    text = (out / "quality_unetr.md").read_text()
    assert "| Full-FT | 0/1 | missing" in text and "| BitFit | 1/1 |" in text


def test_quality_aggregation_counts_missing_pairs(runs, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH / "bench_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    agg = module.aggregate("unetr", [("site-a", "site-b"), ("site-a", "site-z")],
                           runs["out"] / "sweeps", steps=1, seed=0, base=str(runs["base"]))
    assert agg["n_pairs_requested"] == 2 and agg["pairs_with_rows"] == ["site-a->site-b"]
    bitfit = next(m for m in agg["methods"] if m["key"] == "bitfit")
    assert bitfit["n_pairs"] == 1 and bitfit["pairs"] == ["site-a->site-b"]
    # rows of another budget or another base checkpoint are not mixed in
    other = module.aggregate("unetr", [("site-a", "site-b")], runs["out"] / "sweeps",
                             steps=2, seed=0, base=str(runs["base"]))
    assert all(m["n_pairs"] == 0 for m in other["methods"])
    torch.manual_seed(1)
    base2 = save_checkpoint(build_model("unetr", "small", **smoke_overrides("unetr")),
                            tmp_path / "other.safetensors", extra={"source": "site-a"})
    other = module.aggregate("unetr", [("site-a", "site-b")], runs["out"] / "sweeps",
                             steps=1, seed=0, base=str(base2))
    assert all(m["n_pairs"] == 0 for m in other["methods"])


def test_speed_parts(runs):
    _ok(runs, "speed")
    doc = json.loads((runs["out"] / "speed.json").read_text())
    parts = doc["parts"]
    assert set(parts) == {"peft", "merge", "inference", "flops", "convergence"}
    assert not [p for p in parts.values() if "error" in p]
    ratios = parts["peft"]["backbones"]["unetr"]["petite_vs_full"]
    assert ratios["step_time_ratio"] > 0 and ratios["step_memory_ratio"] is not None
    merge = parts["merge"]["backbones"]["unetr"]
    assert merge[0]["spec"].startswith("enc LoRA + dec SSF") and not merge[0]["kept_unmerged"]
    n = merge[0]["n_params"]  # LoRA and SSF folded away: the merged net is the base's size
    assert n["merged"] == n["base"] < n["unmerged"]
    for row in merge:  # merging folds the PEFT modules without changing the output
        assert row["merged_vs_unmerged_max_rel_diff"] < 1e-4
        assert row["merged_modules"] > 0 and row["merged_over_base"] > 0
    (inf,) = parts["inference"]["rows"]
    assert inf["shape_zyx"] == [40, 64, 64] and inf["windows"] > 1 and inf["seconds"] > 0
    flops = parts["flops"]["backbones"]["unetr"]
    assert flops[0]["flops_per_step"] < flops[1]["flops_per_step"]  # PEFT skips weight grads
    assert parts["flops"]["matmul_flops_per_s"] > 0
    conv = parts["convergence"]
    assert [h["step"] for h in conv["history"]] == [0, 1, 2]  # step 0: the base model
    within = conv["within_0p3db"]
    # convergence counts training only: the step-0 point (the base) is not a training result
    assert within["best_psnr_db"] == max(h["psnr"] for h in conv["history"] if h["step"])
    assert within["psnr_db"] >= within["best_psnr_db"] - 0.3 and within["minutes"] > 0


def test_shift_table_from_real_runs(runs):
    """No-FT and Full-FT rows, an in-domain model trained from scratch on the target and the
    few-subject rows all end up in shift.json, with the protocol beside them."""
    _ok(runs, "shift")
    doc = json.loads((runs["out"] / "shift.json").read_text())
    (row,) = doc["backbones"]["unetr"]["rows"]
    assert row["pair"] == "site-a->site-b"
    assert math.isfinite(row["no_ft"]["psnr"]) and math.isfinite(row["full_ft"]["psnr"])
    assert row["shift_full_minus_noft_db"] == pytest.approx(
        row["full_ft"]["psnr"] - row["no_ft"]["psnr"])
    assert math.isfinite(row["in_domain"]["psnr"]) and row["in_domain"]["steps"] == 2
    assert row["input"]["psnr"] is not None and isinstance(row["explanation"], str)
    few = doc["few_subjects"]["unetr"]
    assert few["n_train"] == 1 and few["best_mix_key"].startswith("mix-")
    assert math.isfinite(few["mix_minus_full_db"]["mean"])
    assert "--threads" not in doc["command"]
    text = (runs["out"] / "shift.md").read_text()
    assert "| site-a->site-b |" in text and "Few subjects" in text


def test_summary_names_goals_and_missing_inputs(runs):
    _ok(runs, "summary")
    out = runs["out"]
    entries = {e["name"]: e for e in json.loads((out / "summary.json").read_text())}
    assert set(REQUIRED) <= set(entries)
    for e in entries.values():
        assert {"name", "value", "unit", "goal", "command"} <= set(e)
        if e["value"] is None:
            assert e["reason"] and e["met"] is None
    # no GUI run and no Mix-PEFT row: null with a reason, never a number
    assert entries["gui_stall_p99_ms"]["value"] is None
    assert "gui_walk.json" in entries["gui_stall_p99_ms"]["reason"]
    walk = entries["gui_walk_max_stall_ms"]
    assert walk["value"] is None and walk["goal"] == "<= 200" and "bench_gui_stall" in \
        walk["reason"]
    assert entries["mix_minus_full_psnr_db"]["value"] is None
    paper = entries["peft_full_step_time_ratio_paper"]
    assert paper["value"] is None and "--parts peft_paper" in paper["reason"]
    speed = json.loads((out / "speed.json").read_text())["parts"]
    ratio = speed["peft"]["backbones"]["unetr"]["petite_vs_full"]["step_time_ratio"]
    step = entries["peft_full_step_time_ratio"]
    assert step["value"] == pytest.approx(ratio) and step["goal"] == "<= 0.6"
    assert step["met"] == (ratio <= 0.6)
    assert entries["merged_inference_overhead_ratio"]["value"] == pytest.approx(
        speed["merge"]["backbones"]["unetr"][0]["merged_over_base"])
    readme = (out / "README.md").read_text()
    assert "## Goals vs measured" in readme and "psnr_vs_params.png" in readme
    front = runs["front"].read_text()  # the marked block regenerated, the rest kept
    assert front.startswith("# Project\n\n<!-- benchmarks:start -->") and "\nold\n" not in front
    assert front.endswith("<!-- benchmarks:end -->\n\nkept\n")
    assert "`merged_inference_overhead_ratio`" in front
    assert "| unetr | No-FT | 1/1 |" in front and "| unetr | BitFit" not in front
    assert "results/README.md" in front
    assert "`minutes_to_within_0p3db`" in readme


def test_summary_lists_runs_kept_in_subfolders(runs, tmp_path):
    """An extra bench_quality run (e.g. another step budget) in a results subfolder gets its
    own short table; folders without finished rows add nothing."""
    spec = importlib.util.spec_from_file_location("summary", BENCH / "summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.other_budgets(tmp_path) == []
    (tmp_path / "longer").mkdir()
    doc = json.loads((runs["out"] / "quality_unetr.json").read_text())
    (tmp_path / "longer" / "quality_unetr.json").write_text(json.dumps(doc))
    text = "\n".join(module.other_budgets(tmp_path))
    assert "## Other step budgets" in text and "(`longer/`)" in text
    assert "| BitFit | 1 |" in text and "| Full-FT |" not in text  # Full-FT has no row
    assert doc["command"] in text


def test_committed_summary_is_current(tmp_path):
    """The committed summary.json is what summary.py makes of the committed results: a result
    committed without regenerating the summary (figures reported "missing" beside the rows
    that hold them) fails here."""
    results = BENCH / "results"
    readme = tmp_path / "README.md"
    readme.write_text((BENCH.parent / "README.md").read_text())
    copy = tmp_path / "benchmarks" / "results"  # the README links results relative to it
    shutil.copytree(results, copy)
    done = subprocess.run(_script("summary.py", "--results", str(copy), "--readme", str(readme)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fresh = json.loads((copy / "summary.json").read_text())
    committed = json.loads((results / "summary.json").read_text())
    assert fresh == committed
    assert readme.read_text() == (BENCH.parent / "README.md").read_text()


def test_rows_of_an_earlier_base_say_so():
    """Rows measured on a base that is no longer the shipped one are marked as such."""
    spec = importlib.util.spec_from_file_location("summary", BENCH / "summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    card = BENCH.parent / "sample_data" / "models" / "unetr-small.json"
    shipped = json.loads(card.read_text())["sha256"]
    assert module.earlier_base("unetr", shipped) == ""
    assert module.earlier_base("unetr", None) == ""
    assert module.earlier_base("unetr", "ab" * 32) == \
        "; measured with an earlier base (sha256 abababab…), not the shipped one"
