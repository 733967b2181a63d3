"""bench_fidelity.py end to end on tiny data, as real child processes: a one-subject lesion
test set is simulated, the input / No-FT / PETITE / faithful rows are trained (1 step) and
scored, a re-run reuses them, and summary.py turns them into issue 20's figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_ddp import tiny_workspace

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
FIGURES = {"lesion_suvmean_bias_pct", "lesion_suvmean_abs_bias_p90_pct",
           "lesion_suvmax_bias_pct", "lesion_suvpeak_bias_pct", "region_mean_abs_bias_pct",
           "suvr_pcc_pons_bias_pct", "suvr_precuneus_pons_bias_pct",
           "adaptation_bias_change_pct", "psnr_gain_over_input_db"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    data, base = tiny_workspace(root)
    shutil.move(str(data / "site-b"), str(data / "vereos"))  # the test set's scanner
    out = root / "results"
    cmd = [sys.executable, str(BENCH / "bench_fidelity.py"), "--backbones", "unetr",
           "--pairs", "site-a:vereos", "--only", "input,no-ft,petite,faithful",
           "--steps", "1", "--val-every", "1", "--batch", "1", "--threads", "1",
           "--base", f"unetr={base}", "--data", str(data), "--testset", str(root / "testset"),
           "--test-subjects", "1", "--test-lesions", "3", "--quality", str(root),
           "--faithful", "--sampling hot --lowfreq-weight 1 --select faithful",
           "--out", str(out / "fidelity")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    summary = subprocess.run([sys.executable, str(BENCH / "summary.py"), "--results", str(out),
                              "--readme", str(root / "none.md")], capture_output=True,
                             text=True, timeout=120)
    return {"out": out, "first": first, "again": again, "summary": summary}


def test_rows_are_scored_on_the_lesion_test_set(bench):
    assert bench["first"].returncode == 0, bench["first"].stderr[-3000:]
    doc = json.loads((bench["out"] / "fidelity" / "fidelity_unetr.json").read_text())
    rows = {r["key"]: r for r in doc["rows"]}
    assert set(rows) == {"input", "no-ft", "petite", "faithful"}
    assert rows["faithful"]["options"]["sampling"] == "hot"
    assert rows["input"]["n_lesions"] == {"site-a->vereos": 3}
    # the input is the input: no gain over itself, no change against No-FT's own bias
    assert rows["input"]["stats"]["psnr_gain_over_input_db"]["mean"] == 0.0
    assert rows["no-ft"]["stats"]["adaptation_bias_change_pct"]["mean"] == 0.0
    row = json.loads((bench["out"] / "fidelity" / "rows" / "unetr" / "site-a-vereos"
                      / "petite.json").read_text())
    lesion = row["subjects"][0]["lesions"][0]
    assert {"mean", "max", "peak", "full_mean", "truth_mean", "mean_bias_pct"} <= set(lesion)
    if lesion["kind"] == "hot":
        assert lesion["rc_mean"] > 0
    assert (bench["out"] / "fidelity" / "recovery_vs_diameter.png").stat().st_size > 1000
    assert "SUVpeak bias" in (bench["out"] / "fidelity" / "fidelity_unetr.md").read_text()


def test_rerun_reuses_finished_rows(bench):
    assert bench["again"].returncode == 0, bench["again"].stderr[-3000:]
    assert bench["again"].stderr.count("reusing") == 4
    assert "==" not in bench["again"].stderr


def test_summary_reports_issue_20_figures(bench):
    assert bench["summary"].returncode == 0, bench["summary"].stderr[-3000:]
    entries = {e["name"]: e for e in json.loads((bench["out"] / "summary.json").read_text())}
    assert set(entries) >= FIGURES
    assert {f + "_cvtgan" for f in FIGURES} <= set(entries)
    assert entries["lesion_suvmean_bias_pct"]["value"] is not None
    assert entries["lesion_suvmean_bias_pct"]["goal"] == "within ±5"
    assert entries["region_mean_abs_bias_pct"]["goal"].startswith("<= ")
    assert entries["lesion_suvmean_bias_pct_cvtgan"]["value"] is None  # not run: said why
    assert "bench_fidelity" in entries["lesion_suvmean_bias_pct_cvtgan"]["reason"]
