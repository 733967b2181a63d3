"""Collect the benchmark results into ``summary.json`` and ``results/README.md``.

Reads what the other scripts wrote into the results folder — ``quality_<backbone>.json``
(bench_quality.py), ``speed.json`` (bench_speed.py), ``gui_walk.json`` and
``gui_walk_loaded.json`` (bench_gui_stall.py ``--json``) — and writes

- ``summary.json``: a list of ``{name, value, unit, goal, met, command, detail}``; a figure
  whose input is missing has ``value: null`` and a ``reason`` saying what to run. Nothing is
  estimated or filled in.
- ``README.md``: the goals-vs-measured table, the quality tables, the PSNR-vs-parameters plot
  and the speed / memory / responsiveness tables.
- the project README's block between ``<!-- benchmarks:start -->`` and
  ``<!-- benchmarks:end -->`` (``--readme FILE``; skipped when the markers are absent): the
  goals table, the headline quality rows and the plot, so the front page never goes stale.

    python benchmarks/summary.py [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import operator
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, read_json, write_json

QUALITY_CMD = "python benchmarks/bench_quality.py"
SPEED_CMD = "python benchmarks/bench_speed.py"
GUI_CMD = ("xvfb-run -a -s '-screen 0 1920x1080x24' python benchmarks/bench_gui_stall.py "
           "--json benchmarks/results/gui_walk.json")
GUI_LOADED_CMD = ("xvfb-run -a -s '-screen 0 1920x1080x24' python "
                  "benchmarks/bench_gui_stall.py --load 2 "
                  "--json benchmarks/results/gui_walk_loaded.json")
#: the issue's goals
GOALS = {
    "mix_minus_full_psnr_db": ">= -0.05", "mix_minus_noft_psnr_db": ">= 1",
    "mix_trainable_percent": "<= 1", "peft_full_step_time_ratio": "<= 0.6",
    "peft_full_peak_memory_ratio": "<= 0.5", "merged_inference_overhead_ratio": "<= 1.01",
    "gui_stall_p99_ms": "<= 30", "gui_walk_max_stall_ms": "<= 200",
    "minutes_to_within_0p3db": "<= 5",
    "shift_full_minus_noft_db": ">= 1.0", "shift_full_minus_noft_db_cvtgan": ">= 0.7",
    "base_gain_over_input_db_unetr": ">= 3.0", "base_gain_over_input_db_cvtgan": ">= 2.0",
    "mix_recovery_fraction": ">= 0.9", "mix_recovery_fraction_cvtgan": ">= 0.9",
    "few_subjects_mix_minus_full_db": ">= 0", "gui_demo_val_gain_db": ">= 0.5",
    # issue 20: quantitative fidelity of the adapted model (lesion-insertion test set)
    "lesion_suvmean_bias_pct": "within ±5", "lesion_suvmean_abs_bias_p90_pct": "<= 10",
    "lesion_suvmax_bias_pct": "within ±5", "lesion_suvpeak_bias_pct": "within ±5",
    "suvr_pcc_pons_bias_pct": "within ±2", "suvr_precuneus_pons_bias_pct": "within ±2",
    "adaptation_bias_change_pct": "<= 0",
}
SHIFT_CMD = "python benchmarks/bench_shift.py"
FIDELITY_CMD = "python benchmarks/bench_fidelity.py"
#: the fidelity row the figures describe: the adapted model with the shipped recipe
#: (`petite finetune` defaults to --recipe faithful)
FIDELITY_ROW = "faithful"
GUI_DEMO_CMD = ("xvfb-run -a -s '-screen 0 1920x1080x24' python benchmarks/bench_gui_demo.py "
                "--json benchmarks/results/gui_demo.json --screenshot docs/screenshot.png")
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def met(value: float | None, goal: str | None) -> bool | None:
    """Whether ``value`` meets ``goal`` ("<= 0.6", or "within ±5" for |value| <= 5); None
    when either is missing."""
    if value is None or not goal:
        return None
    op, _, bound = goal.partition(" ")
    if op == "within":
        return bool(abs(value) <= float(bound.lstrip("±")))
    return bool(_OPS[op](value, float(bound)))


def entry(name: str, value: Any, unit: str, command: str, *, goal_of: str | None = None,
          detail: str = "", reason: str = "", goal: str | None = None) -> dict:
    """One figure; ``goal`` (else the table's, by ``goal_of`` or ``name``) as "OP BOUND"."""
    goal = goal or GOALS.get(goal_of or name)
    value = float(value) if isinstance(value, (int, float)) else None
    out = {"name": name, "value": value, "unit": unit, "goal": goal,
           "met": met(value, goal), "command": command, "detail": detail}
    if value is None:
        out["reason"] = reason or "not measured"
    return out


def _dig(doc: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(doc, dict):
            doc = doc.get(key)
        elif isinstance(doc, list) and isinstance(key, int) and -len(doc) <= key < len(doc):
            doc = doc[key]
        else:
            return None
    return doc


def earlier_base(backbone: str, sha256: str | None) -> str:
    """"; measured with an earlier base (sha256 e724319b…), not the shipped one" when rows
    were measured on another base than the one shipped now (a retrained base does not rerun
    the hours-long sweeps by itself); empty when it is the shipped one or unknown."""
    from napari_petite.models.checkpoint import read_card
    from napari_petite.training.job import shipped_base

    shipped = read_card(shipped_base(backbone)).get("sha256")
    if not sha256 or not shipped or sha256 == shipped:
        return ""
    return f"; measured with an earlier base (sha256 {sha256[:8]}…), not the shipped one"


def quality_entries(results: Path) -> list[dict]:
    out = []
    for backbone in ("unetr", "cvtgan"):
        suffix = "" if backbone == "unetr" else f"_{backbone}"
        agg = read_json(results / f"quality_{backbone}.json")
        older = earlier_base(backbone, (agg or {}).get("base_sha256"))
        cmd = (agg or {}).get("command") or QUALITY_CMD
        h = (agg or {}).get("headline") or {}
        if agg is None:
            why = f"no quality_{backbone}.json; run {QUALITY_CMD} --backbones {backbone}"
        elif not h.get("best_mix_key"):
            why = f"quality_{backbone}.json has no finished Mix-PEFT row yet"
        else:
            why = ""
        n_req = (agg or {}).get("n_pairs_requested")
        for name, key, unit in (("mix_minus_full_psnr_db", "mix_minus_full_psnr_db", "dB"),
                                ("mix_minus_noft_psnr_db", "mix_minus_noft_psnr_db", "dB"),
                                ("mix_trainable_percent", "mix_trainable_percent", "%")):
            stat = h.get(key) or {}
            detail = ""
            if stat.get("n") is not None:
                sd = stat.get("sd")
                fits = "" if h.get("best_mix_within_budget", True) else \
                    (f", no finished Mix-PEFT fits the {h.get('budget_percent'):g} % budget: "
                     "best of any size")
                detail = (f"{h.get('best_mix_label')} ({backbone}, {agg.get('steps')} steps"
                          f"{fits}); "
                          f"mean over {stat['n']} of {n_req} pairs"
                          + (f", sd {sd:.3f}" if sd is not None else "") + older)
            reason = why or ("" if stat.get("mean") is not None
                             else "the pairs lack the No-FT or Full-FT row this needs")
            out.append(entry(name + suffix, stat.get("mean"), unit, cmd, goal_of=name,
                             detail=detail, reason=reason))
    return out


def recovery_entries(results: Path) -> list[dict]:
    """What share of Full-FT's gain over No-FT the best Mix-PEFT at <= 1 % recovers, pooled
    over the pairs: sum of its gains / sum of Full-FT's. A mean of per-pair ratios would be
    ruled by the pair with the smallest shift (a 0.09 dB denominator on mct -> vereos)."""
    out = []
    for backbone in ("unetr", "cvtgan"):
        suffix = "" if backbone == "unetr" else f"_{backbone}"
        agg = read_json(results / f"quality_{backbone}.json") or {}
        methods = {m["key"]: m for m in agg.get("methods", [])}
        best = (agg.get("headline") or {}).get("best_mix_key")
        full = methods.get("full-ft", {}).get("per_pair", {})
        mix = methods.get(best, {}).get("per_pair", {}) if best else {}
        pairs = [p for p in sorted(set(mix) & set(full))
                 if mix[p].get("gain_db") is not None and full[p].get("gain_db") is not None]
        total = sum(full[p]["gain_db"] for p in pairs)
        value = sum(mix[p]["gain_db"] for p in pairs) / total if pairs and total > 0 else None
        detail = (f"{methods[best]['label']} ({backbone}), gain over No-FT per pair (Mix / "
                  "Full-FT dB): " + ", ".join(f"{p} {mix[p]['gain_db']:+.2f} / "
                                              f"{full[p]['gain_db']:+.2f}" for p in pairs)
                  + "; mean of the per-pair ratios "
                  + format(sum(mix[p]["gain_db"] / full[p]["gain_db"] for p in pairs
                               if full[p]["gain_db"]) / len(pairs), ".2f")
                  + " (unstable: a small shift divides)"
                  + earlier_base(backbone, agg.get("base_sha256")) if pairs else "")
        out.append(entry(f"mix_recovery_fraction{suffix}", value, "ratio",
                         agg.get("command") or QUALITY_CMD, detail=detail,
                         reason="" if agg else f"no quality_{backbone}.json; run "
                         f"{QUALITY_CMD} --backbones {backbone}"))
    return out


def shift_entries(results: Path) -> list[dict]:
    """The cross-site shift (bench_shift.py), the small-clinic case, and the shipped bases'
    gain over their input on the source's held-out subjects (their cards)."""
    doc = read_json(results / "shift.json") or {}
    cmd = doc.get("command") or SHIFT_CMD
    why = "" if doc else f"no shift.json; run {SHIFT_CMD}"
    out = []
    for backbone in ("unetr", "cvtgan"):
        suffix = "" if backbone == "unetr" else f"_{backbone}"
        b = _dig(doc, "backbones", backbone) or {}
        stat = b.get("shift_full_minus_noft_db") or {}
        rows = b.get("rows") or []
        detail = ", ".join(f"{r['target']} {r['shift_full_minus_noft_db']:+.2f}"
                           for r in rows if r.get("shift_full_minus_noft_db") is not None)
        out.append(entry(f"shift_full_minus_noft_db{suffix}", stat.get("mean"), "dB", cmd,
                         detail=f"{backbone}, mean over {stat.get('n')} pairs: {detail}"
                         + earlier_base(backbone, b.get("base_sha256")) if detail else "",
                         reason=why or "no Full-FT / No-FT rows yet"))
    few = _dig(doc, "few_subjects", "unetr") or {}
    d = few.get("mix_minus_full_db") or {}
    out.append(entry("few_subjects_mix_minus_full_db", d.get("mean"), "dB", cmd,
                     detail=(f"{few.get('best_mix_label')} vs Full-FT, unetr, "
                             f"{few.get('n_train')} training subjects per target, mean over "
                             f"{d.get('n')} pairs"
                             + earlier_base("unetr", _dig(doc, "backbones", "unetr",
                                                          "base_sha256"))
                             if d.get("mean") is not None else ""),
                     reason=why or "no few-subject rows yet"))
    from napari_petite.models.checkpoint import read_card
    from napari_petite.training.job import shipped_base

    for backbone in ("unetr", "cvtgan"):
        card = read_card(shipped_base(backbone))
        metrics = card.get("metrics") or {}
        low, model = metrics.get("low_vs_full") or {}, metrics.get("model_vs_full") or {}
        gain = (model["psnr_mask"] - low["psnr_mask"]) if "psnr_mask" in model and \
            "psnr_mask" in low else None
        out.append(entry(f"base_gain_over_input_db_{backbone}", gain, "dB",
                         card.get("command", ""),
                         detail=(f"{metrics.get('on')}: {low['psnr_mask']:.2f} -> "
                                 f"{model['psnr_mask']:.2f} dB" if gain is not None else ""),
                         reason="the card has no held-out metrics"))
    return out


def fidelity_entries(results: Path) -> list[dict]:
    """Issue 20's figures per backbone from ``fidelity/fidelity_<backbone>.json``: the
    adapted model with the shipped recipe (row :data:`FIDELITY_ROW`), mean over the targets.
    The regional goal is relative (the input's mean |bias| + 1.0), and the PSNR gain's goal is
    90 % of the paper recipe's (PETITE row) gain, so they are computed here."""
    out = []
    for backbone in ("unetr", "cvtgan"):
        suffix = "" if backbone == "unetr" else f"_{backbone}"
        agg = read_json(results / "fidelity" / f"fidelity_{backbone}.json") or {}
        rows = {r["key"]: r for r in agg.get("rows", [])}
        row = rows.get(FIDELITY_ROW)
        cmd = agg.get("command") or f"{FIDELITY_CMD} --backbones {backbone}"
        why = "" if row else (f"no {FIDELITY_ROW} row in fidelity/fidelity_{backbone}.json; "
                              f"run {FIDELITY_CMD} --backbones {backbone}")

        def stat(r: dict | None, key: str) -> dict:
            return ((r or {}).get("stats") or {}).get(key) or {}

        def detail(key: str, row=row, backbone=backbone, agg=agg) -> str:
            s = stat(row, key)
            return (f"{row['label']} ({backbone}), mean over {s.get('n')} of "
                    f"{len(agg.get('pairs_requested', []))} targets") if row and s else ""

        for name, key, unit in (
                ("lesion_suvmean_bias_pct", "lesion_suvmean_bias_pct", "%"),
                ("lesion_suvmean_abs_bias_p90_pct", "lesion_abs_bias_p90_pct", "%"),
                ("lesion_suvmax_bias_pct", "lesion_suvmax_bias_pct", "%"),
                ("lesion_suvpeak_bias_pct", "lesion_suvpeak_bias_pct", "%"),
                ("suvr_pcc_pons_bias_pct", "suvr_pcc_pons_bias_pct", "%"),
                ("suvr_precuneus_pons_bias_pct", "suvr_precuneus_pons_bias_pct", "%"),
                ("adaptation_bias_change_pct", "adaptation_bias_change_pct", "points")):
            out.append(entry(name + suffix, stat(row, key).get("mean"), unit, cmd, goal_of=name,
                             detail=detail(key), reason=why))
        low = stat(rows.get("input"), "region_mean_abs_bias_pct").get("mean")
        out.append(entry(f"region_mean_abs_bias_pct{suffix}",
                         stat(row, "region_mean_abs_bias_pct").get("mean"), "%", cmd,
                         goal=None if low is None else f"<= {low + 1.0:.2f}",
                         detail=detail("region_mean_abs_bias_pct")
                         + ("" if low is None else f"; the input's {low:.2f} % + 1.0"),
                         reason=why))
        paper = stat(rows.get("petite"), "psnr_gain_over_input_db").get("mean")
        out.append(entry(f"psnr_gain_over_input_db{suffix}",
                         stat(row, "psnr_gain_over_input_db").get("mean"), "dB", cmd,
                         goal=None if paper is None else f">= {0.9 * paper:.3f}",
                         detail=detail("psnr_gain_over_input_db")
                         + ("" if paper is None else
                            f"; 90 % of the paper recipe's {paper:.3f} dB"), reason=why))
    return out


def gui_demo_entries(results: Path) -> list[dict]:
    doc = read_json(results / "gui_demo.json") or {}
    gain = doc.get("val_gain_db")
    kept, start = doc.get("val_kept") or {}, doc.get("val_step0") or {}
    at = f" at the kept step {kept['step']}" if "step" in kept else ""
    fidelity = (f"; regions |bias| {start['region_abs_bias_pct']:.1f} -> "
                f"{kept['region_abs_bias_pct']:.1f} %"
                if "region_abs_bias_pct" in kept and "region_abs_bias_pct" in start else "")
    recipe = f", {doc['recipe']} recipe" if doc.get("recipe") else ""
    detail = (f"{doc.get('spec')}{recipe} on {doc.get('target')}, {doc.get('steps')} steps in "
              f"{doc.get('seconds', 0):.0f} s: validation {doc.get('val_step0_psnr', 0):.2f} "
              f"(base, step 0) -> {doc.get('val_final_psnr', 0):.2f} dB{at}{fidelity}; test "
              f"subject No-FT {doc.get('test_base_psnr', 0):.2f} vs adapted "
              f"{doc.get('test_adapted_psnr', 0):.2f} dB" if gain is not None else "")
    return [entry("gui_demo_val_gain_db", gain, "dB", doc.get("command") or GUI_DEMO_CMD,
                  detail=detail, reason="" if doc else f"no gui_demo.json; run {GUI_DEMO_CMD}")]


def speed_entries(results: Path) -> list[dict]:
    doc = read_json(results / "speed.json")
    parts = (doc or {}).get("parts", {})

    def part(name: str) -> tuple[dict | None, str, str]:
        p = parts.get(name)
        cmd = (p or {}).get("command") or f"{SPEED_CMD} --parts {name}"
        if p is None:
            return None, cmd, f"speed.json has no '{name}' part; run {SPEED_CMD} --parts {name}"
        if "error" in p:
            return None, cmd, f"the '{name}' part failed: {p['error']}"
        return p, cmd, ""

    out = []
    # the goals are stated for UNETR (both sizes); CVT-GAN's figures are reported without one
    for part_name, backbone, suffix, has_goal in (("peft", "unetr", "", True),
                                                  ("peft", "cvtgan", "_cvtgan", False),
                                                  ("peft_paper", "unetr", "_paper", True)):
        peft, cmd, why = part(part_name)
        b = _dig(peft, "backbones", backbone) or {}
        ratios = b.get("petite_vs_full") or {}
        reason = why or ("" if ratios else
                         f"no {backbone} PETITE/full rows in the {part_name} part")
        size = f"{backbone}, {b.get('preset', 'small')} preset"
        detail = (f"{ratios.get('label')} vs full fine-tuning, {size}, minimum train-step "
                  "time" if ratios else "")
        out.append(entry("peft_full_step_time_ratio" + suffix, ratios.get("step_time_ratio"),
                         "ratio", cmd, detail=detail, reason=reason,
                         goal_of="peft_full_step_time_ratio" if has_goal else "-"))
        proc = ratios.get("process_peak_memory_ratio")
        out.append(entry(
            "peft_full_peak_memory_ratio" + suffix, ratios.get("step_memory_ratio"), "ratio",
            cmd, detail=(f"{size}: memory a train step adds above the loaded model "
                         f"(activations, gradients, optimizer state); whole-process peak ratio "
                         f"{proc:.3f}" if proc is not None else ""), reason=reason,
            goal_of="peft_full_peak_memory_ratio" if has_goal else "-"))
    merge, cmd, why = part("merge")
    row = _dig(merge, "backbones", "unetr", 0) or {}
    out.append(entry("merged_inference_overhead_ratio", row.get("merged_over_base"), "ratio",
                     cmd, detail=(f"UNETR {row.get('spec')} merged vs the plain base, one "
                                  f"{row.get('window')} window; unmerged/base "
                                  f"{row.get('unmerged_over_base', float('nan')):.3f}"
                                  if row else ""),
                     reason=why or "no UNETR row in the merge part"))
    conv, cmd, why = part("convergence")
    within = _dig(conv, "within_0p3db") or {}
    out.append(entry("minutes_to_within_0p3db", within.get("minutes"), "min", cmd,
                     detail=(f"UNETR-small {conv.get('spec')} on {conv.get('source')}->"
                             f"{conv.get('target')}: {within.get('psnr_db', 0):.2f} dB at step "
                             f"{within.get('step')}, best {within.get('best_psnr_db', 0):.2f} "
                             f"dB (step {within.get('best_step')}) of {conv.get('steps')} steps"
                             if within.get("minutes") is not None else ""),
                     reason=why or within.get("reason", "")))
    flops, cmd, why = part("flops")
    row = _dig(flops, "backbones", "unetr", 0) or {}
    out.append(entry("train_flops_fraction_of_matmul", row.get("fraction_of_matmul"), "ratio",
                     cmd, detail=(f"UNETR {row.get('spec')}: "
                                  f"{row.get('flops_per_s', 0) / 1e9:.2f} GFLOP/s training vs "
                                  f"{(flops or {}).get('matmul_flops_per_s', 0) / 1e9:.2f} "
                                  f"GFLOP/s float32 matmul (n={(flops or {}).get('matmul_n')})"
                                  if row else ""),
                     reason=why or "no UNETR row in the flops part"))
    inf, cmd, why = part("inference")
    native = [r for r in (inf or {}).get("rows", []) if r["size"] == "native"]
    worst = max(native, key=lambda r: r["seconds"]) if native else {}
    out.append(entry("inference_native_max_s", worst.get("seconds"), "s", cmd,
                     detail=(f"slowest native grid: {worst.get('scanner')} "
                             f"{worst.get('shape_zyx')}, {worst.get('windows')} windows"
                             if worst else ""),
                     reason=why or "no native grid in the inference part"))
    return out


def gui_entries(results: Path) -> list[dict]:
    """The walk through the docks: its largest stall (the goal), the same beside a competing
    load, and the stalls while training runs."""
    doc = read_json(results / "gui_walk.json")
    loaded = read_json(results / "gui_walk_loaded.json")
    cmd = (doc or {}).get("command") or GUI_CMD
    why = "" if doc else f"no gui_walk.json; run {GUI_CMD}"

    def where(d: Any) -> str:
        if not d:
            return ""
        busy = f", {d['load']} busy processes beside it" if d.get("load") else ""
        return (f"largest in '{d.get('worst_phase')}' of {len(d.get('phases', {}))} phases"
                f"{busy}; load average at start {_load(d)}")

    training = _dig(doc, "phases", "training") or {}
    return [entry("gui_walk_max_stall_ms", _dig(doc, "max_ms"), "ms", cmd, detail=where(doc),
                  reason=why),
            entry("gui_walk_max_stall_loaded_ms", _dig(loaded, "max_ms"), "ms",
                  (loaded or {}).get("command") or GUI_LOADED_CMD, detail=where(loaded),
                  reason="" if loaded else f"no gui_walk_loaded.json; run {GUI_LOADED_CMD}"),
            entry("gui_stall_p99_ms", training.get("p99_ms"), "ms", cmd,
                  detail=f"while the Fine-tune dock trains (walk phase 'training', "
                         f"{training.get('seconds')} s, no scrolling)" if training else "",
                  reason=why),
            entry("gui_stall_max_ms", training.get("max_ms"), "ms", cmd,
                  detail="the same phase's largest stall" if training else "", reason=why)]


def gui_tables(results: Path) -> list[str]:
    """Per phase of the walk: p50 / p99 / max stall and the longest full garbage collection
    (it holds the GIL: a stall of its own), without and with a competing load."""
    runs = [(name, read_json(results / f"{stem}.json"))
            for name, stem in (("walk", "gui_walk"), ("walk + 2 busy processes",
                                                      "gui_walk_loaded"))]
    runs = [(name, doc) for name, doc in runs if doc]
    if not runs:
        return [f"Not run yet (`{GUI_CMD}`)."]
    phases = list(dict.fromkeys(p for _, doc in runs for p in doc["phases"]))
    head = " | ".join(f"{name} p50 / p99 / max ms (full GC ms)" for name, _ in runs)
    lines = [f"| phase | {head} |", "|---|" + "---|" * len(runs)]
    for phase in phases:
        cells = []
        for _, doc in runs:
            st = doc["phases"].get(phase)
            gc_ms = (st or {}).get("full_collection_max_ms")
            cells.append("–" if not st else f"{_f(st['p50_ms'], '.0f')} / "
                         f"{_f(st['p99_ms'], '.0f')} / {_f(st['max_ms'], '.0f')}"
                         + (f" ({gc_ms:.0f})" if gc_ms else ""))
        lines.append(f"| {phase} | {' | '.join(cells)} |")
    for name, doc in runs:
        rec = doc.get("reconstruction") or {}
        lines.append(f"\n{name}: largest stall {_f(doc.get('max_ms'), '.0f')} ms in "
                     f"'{doc.get('worst_phase')}'; {doc.get('training_steps')} training steps; "
                     f"reconstruction of the test scan {_f(rec.get('dock_result_s'), '.1f')} s "
                     f"to the result ({_f(rec.get('dock_with_metrics_s'), '.1f')} s with "
                     f"metrics) against {_f(rec.get('petite_predict_s'), '.1f')} s for "
                     f"`petite predict`; {_startup(doc)}load average at start {_load(doc)}; "
                     f"`{doc.get('command')}`")
    return lines


def _startup(doc: Any) -> str:
    """The window's first appearance, measured before the walk (older results lack it)."""
    worst = _dig(doc, "startup", "max_ms")
    return "" if worst is None else f"the window's first paint (start-up, not a step of " \
        f"the walk) {worst:.0f} ms; "


def _load(doc: Any) -> str:
    """The machine's 1, 5 and 15 minute load averages when the run started."""
    load = _dig(doc, "machine", "load_average_at_start")
    return " / ".join(f"{v:.1f}" for v in load) if load else "?"


# -- README ---------------------------------------------------------------------------------

def _f(value: Any, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "–"


def goals_table(entries: list[dict]) -> list[str]:
    lines = ["| figure | measured | unit | goal | met | notes |", "|---|---|---|---|---|---|"]
    for e in entries:
        state = {True: "met", False: "**not met**", None: "–"}[e["met"]]
        note = e["detail"] if e["value"] is not None else f"missing: {e.get('reason', '')}"
        note = note.replace("|", "\\|")  # "|bias|" in a note must not end its cell
        lines.append(f"| `{e['name']}` | {_f(e['value'])} | {e['unit']} | {e['goal'] or '–'} "
                     f"| {state} | {note} |")
    return lines


def _step_table(rows: list[dict]) -> list[str]:
    lines = ["| method | % params | step s | × full | step MB | × full | process MB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {_f(r['percent'])} | {_f(r['step_s'])} | "
                     f"{_f(r.get('step_s_vs_full'), '.2f')} | {_f(r['step_peak_mb'], '.0f')}"
                     f" | {_f(r.get('step_peak_mb_vs_full'), '.2f')} | "
                     f"{_f(r['peak_mb'], '.0f')} |")
    return lines


def speed_tables(doc: dict | None) -> list[str]:
    parts = (doc or {}).get("parts", {})
    lines: list[str] = []
    for name in ("peft", "peft_paper"):
        for backbone, b in (_dig(parts, name, "backbones") or {}).items():
            lines += ["", f"### Train step, {backbone} {b.get('preset', 'small')} preset "
                      f"(bench_peft.py, batch 2, {doc.get('threads')} threads)", ""]
            lines += _step_table(b["rows"])
    merge = _dig(parts, "merge", "backbones") or {}
    if merge:
        lines += ["", "### Merged vs unmerged inference (one window)", "",
                  "| backbone | spec | base s | unmerged s | merged s | merged/base | "
                  "unmerged/base | max rel. diff | left unmerged |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for backbone, rows in merge.items():
            for r in rows:
                lines.append(f"| {backbone} | {r['spec']} | {_f(r['base_s'], '.4f')} | "
                             f"{_f(r['unmerged_s'], '.4f')} | {_f(r['merged_s'], '.4f')} | "
                             f"{_f(r['merged_over_base'])} | {_f(r['unmerged_over_base'])} | "
                             f"{_f(r['merged_vs_unmerged_max_rel_diff'], '.1e')} | "
                             f"{len(r['kept_unmerged'])} |")
    inf = parts.get("inference") or {}
    if inf.get("rows"):
        lines += ["", f"### Whole-volume inference ({inf.get('model')}, window "
                  f"{inf.get('window')}, overlap {inf.get('overlap')})", "",
                  "| scanner | size | grid z×y×x | windows | seconds |", "|---|---|---|---|---|"]
        for r in inf["rows"]:
            lines.append(f"| {r['scanner']} | {r['size']} | {'×'.join(map(str, r['shape_zyx']))}"
                         f" | {r['windows']} | {_f(r['seconds'], '.2f')} |")
    flops = parts.get("flops") or {}
    if flops.get("backbones"):
        lines += ["", f"### Training FLOP/s (matmul reference "
                  f"{_f(flops.get('matmul_flops_per_s', 0) / 1e9, '.1f')} GFLOP/s)", "",
                  "| backbone | spec | GFLOP/step | step s | GFLOP/s | fraction of matmul |",
                  "|---|---|---|---|---|---|"]
        for backbone, rows in flops["backbones"].items():
            for r in rows:
                lines.append(f"| {backbone} | {r['spec']} | {_f(r['flops_per_step'] / 1e9, '.2f')}"
                             f" | {_f(r['step_s'])} | {_f(r['flops_per_s'] / 1e9, '.2f')} | "
                             f"{_f(r['fraction_of_matmul'])} |")
    conv = parts.get("convergence") or {}
    if conv.get("history"):
        lines += ["", f"### Convergence of the CPU preset ({conv.get('spec')}, "
                  f"{conv.get('source')}→{conv.get('target')}, {conv.get('steps')} steps)", "",
                  "| step | wall s | validation PSNR dB |", "|---|---|---|"]
        lines += [f"| {h['step']} | {_f(h['elapsed_s'], '.0f')} | {_f(h['psnr'], '.2f')} |"
                  for h in conv["history"]]
    return lines


def _quality_cells(method: dict) -> str:
    """Mean PSNR, gain over No-FT, gap to Full-FT and % params of one aggregated method."""
    st = method["stats"]
    return (f"{_f(st['psnr']['mean'], '.2f')} | {_f(st['gain_db']['mean'], '+.2f')} | "
            f"{_f(st['vs_full_db']['mean'], '+.2f')} | {_f(st['percent']['mean'], '.3f')}")


def other_budgets(results: Path) -> list[str]:
    """Short tables of extra bench_quality runs kept in subfolders (``--out results/NAME``),
    e.g. a longer step budget on a subset of rows: do the gaps close with more steps?"""
    lines: list[str] = []
    for path in sorted(results.glob("*/quality_*.json")):
        agg = read_json(path) or {}
        rows = [m for m in agg.get("methods", []) if m.get("n_pairs")]
        if not rows:
            continue
        lines += ["", f"### {agg.get('backbone')}, {agg.get('steps')} steps per row "
                  f"(`{path.parent.name}/`)", "",
                  f"Pairs: {', '.join(agg.get('pairs_with_rows', []))}; `{agg.get('command')}`",
                  "", "| method | n | PSNR dB | Δ vs No-FT | Δ vs Full-FT | % params | train s |",
                  "|---|---|---|---|---|---|---|"]
        for m in rows:
            lines.append(f"| {m['label']} | {m['n_pairs']} | {_quality_cells(m)} | "
                         f"{_f(m['stats']['train_s']['mean'], '.0f')} |")
    if lines:
        lines = ["", "## Other step budgets", *lines]
    return lines


def readme(results: Path, entries: list[dict]) -> str:
    speed = read_json(results / "speed.json")
    m = (speed or {}).get("machine") or {}
    lines = ["# Benchmark results", "",
             "Written by `python benchmarks/summary.py` from the JSON files in this folder "
             "(see `benchmarks/README.md` for how each is measured).",
             f"Machine: {m.get('processor', '?')}, {m.get('cpu_count', '?')} CPUs, torch "
             f"{m.get('torch', '?')}, load average at start {m.get('load_average_at_start')}."
             if m else "Machine: not recorded (no speed.json).",
             "", "## Goals vs measured", "", *goals_table(entries)]
    shift = results / "shift.md"
    if shift.is_file():
        lines += [""] + [("#" + ln) if ln.startswith("#") else ln
                         for ln in shift.read_text(encoding="utf-8").splitlines()]
    else:
        lines += ["", f"## Cross-site shift: not run yet ({SHIFT_CMD})"]
    lines += ["", "## Quality (mean ± sd over source → target pairs)"]
    for backbone in ("unetr", "cvtgan"):
        path = results / f"quality_{backbone}.md"
        if path.is_file():
            body = path.read_text(encoding="utf-8").splitlines()
            lines += [""] + [("##" + ln) if ln.startswith("# ") else ln for ln in body]
        else:
            lines += ["", f"### {backbone}: not run yet ({QUALITY_CMD} --backbones {backbone})"]
    if (results / "psnr_vs_params.png").is_file():
        lines += ["", "![PSNR gain over No-FT vs % trainable parameters](psnr_vs_params.png)"]
    lines += other_budgets(results)
    lines += ["", "## Lesion and region fidelity (issue 20)"]
    for backbone in ("unetr", "cvtgan"):
        path = results / "fidelity" / f"fidelity_{backbone}.md"
        if path.is_file():
            body = path.read_text(encoding="utf-8").splitlines()
            lines += [""] + [("##" + ln) if ln.startswith("# ") else ln for ln in body]
        else:
            lines += ["", f"### {backbone}: not run yet ({FIDELITY_CMD} --backbones {backbone})"]
    if (results / "fidelity" / "recovery_vs_diameter.png").is_file():
        lines += ["", "![Recovery coefficient vs lesion diameter]"
                      "(fidelity/recovery_vs_diameter.png)"]
    lines += ["", "## Speed and memory"] + (speed_tables(speed) if speed else
                                            ["", f"Not run yet ({SPEED_CMD})."])
    lines += ["", "## GUI responsiveness: stalls of the event loop in each phase of the walk",
              "", *gui_tables(results)]
    return "\n".join(lines) + "\n"


START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
HEADLINE_KEYS = ("no-ft", "full-ft")


def headline_rows(results: Path) -> list[str]:
    """Per backbone: No-FT, Full-FT, the paper's PETITE and the best Mix-PEFT."""
    lines = ["| backbone | method | pairs | PSNR dB | Δ vs No-FT | Δ vs Full-FT | % params |",
             "|---|---|---|---|---|---|---|"]
    for backbone in ("unetr", "cvtgan"):
        agg = read_json(results / f"quality_{backbone}.json") or {}
        best = (agg.get("headline") or {}).get("best_mix_key")
        for m in agg.get("methods", []):
            if not m.get("n_pairs"):
                continue
            petite = "PETITE" in m["label"]
            if m["key"] in HEADLINE_KEYS or petite or m["key"] == best:
                name = f"**{m['label']}** (best Mix-PEFT)" if m["key"] == best else m["label"]
                lines.append(f"| {backbone} | {name} | {m['n_pairs']}/"
                             f"{agg.get('n_pairs_requested')} | {_quality_cells(m)} |")
    older = [f"{b} rows{earlier_base(b, sha)[1:]}" for b in ("unetr", "cvtgan")
             if (sha := (read_json(results / f"quality_{b}.json") or {}).get("base_sha256"))
             and earlier_base(b, sha)]
    if older:
        lines += ["", "Note: " + "; ".join(older) + " (`sample_data/models/README.md`); "
                  f"`{QUALITY_CMD}` re-measures them."]
    return lines


def front_page_block(results: Path, entries: list[dict], readme_path: Path) -> str:
    """The project README's benchmark block; links are relative to that README."""
    rel = Path(os.path.relpath(results, readme_path.parent)).as_posix()
    lines = [START, "", *goals_table(entries), "", *headline_rows(results)]
    if (results / "psnr_vs_params.png").is_file():
        lines += ["", f"![PSNR gain over No-FT vs % trainable parameters]({rel}/"
                      "psnr_vs_params.png)"]
    lines += ["", f"Generated by `python benchmarks/summary.py`; all tables in "
                  f"[`{rel}/README.md`]({rel}/README.md).", "", END]
    return "\n".join(lines)


def update_front_page(readme_path: Path, block: str) -> bool:
    """Replace the marked block of ``readme_path``; False (nothing written) without markers."""
    from napari_petite.io.atomic import write_text

    if not readme_path.is_file():
        return False
    text = readme_path.read_text(encoding="utf-8")
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        return False
    write_text(readme_path, text[:i] + block + text[j + len(END):], overwrite=True)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), metavar="DIR")
    parser.add_argument("--readme", default=str(ROOT / "README.md"), metavar="FILE",
                        help="README whose marked benchmark block is regenerated")
    args = parser.parse_args(argv)
    results = Path(args.results).expanduser()
    entries = (quality_entries(results) + recovery_entries(results) + shift_entries(results)
               + speed_entries(results) + gui_entries(results) + gui_demo_entries(results)
               + fidelity_entries(results))
    write_json(results / "summary.json", entries)
    from napari_petite.io.atomic import write_text

    write_text(results / "README.md", readme(results, entries), overwrite=True)
    readme_path = Path(args.readme).expanduser()
    if update_front_page(readme_path, front_page_block(results, entries, readme_path)):
        print(f"updated the benchmark block of {readme_path}")
    for e in entries:
        shown = _f(e["value"]) if e["value"] is not None else f"null ({e['reason']})"
        print(f"{e['name']:<40} {shown} {e['unit']}  goal {e['goal'] or '-'}")
    print(f"written {results / 'summary.json'} and {results / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
