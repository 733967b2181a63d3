"""Sweep rows -> a leaderboard like the PETITE paper's table (markdown, CSV, JSON), atomically.

A row is a plain dict (JSON-able) that ``petite sweep`` fills per method: key, label, encoder,
decoder, bitfit, trainable / total parameters, percent, train seconds, peak memory, and the
head-mask PSNR / SSIM / NRMSE (mean over the target's held-out test subjects). Rows that did
not run carry ``skipped`` with the reason. The paper's averages (docs/paper.md) are printed
beside ours for orientation only: they are min-max-scaled real scans over 20 scanner pairs, ours
are one pair in the input's units, so only the ordering is comparable, not the decibels.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

#: the paper's Table (average over 20 pairs x 3 folds): PSNR dB, SSIM, NRMSE, % params
PAPER: dict[str, dict[str, tuple]] = {
    "cvtgan": {
        "No-FT": (30.329, 0.905, 0.0327, None), "Full-FT": (31.410, 0.908, 0.0292, 100.0),
        "LayerNorm": (31.304, 0.914, 0.0292, 0.041), "BitFit": (31.291, 0.910, 0.0294, 0.12),
        "LoRA": (30.982, 0.909, 0.0308, None), "Adapters": (31.108, 0.913, 0.0304, None),
        "SSF": (31.018, 0.809, 0.0298, None), "VPT": (30.398, 0.892, 0.0331, None),
        "PETITE (enc VPT + dec LoRA + BitFit)": (31.373, 0.912, 0.0298, 0.32),
    },
    "unetr": {
        "No-FT": (30.034, 0.787, 0.0388, None), "Full-FT": (31.746, 0.884, 0.0285, 100.0),
        "LayerNorm": (30.753, 0.811, 0.0308, None), "BitFit": (30.969, 0.810, 0.0299, None),
        "LoRA": (31.010, 0.825, 0.0299, None), "Adapters": (30.657, 0.798, 0.0311, None),
        "SSF": (30.989, 0.809, 0.0298, None), "VPT": (30.494, 0.796, 0.0318, None),
        "PETITE (enc LoRA + dec SSF + BitFit)": (31.696, 0.865, 0.0292, 0.51),
    },
}

#: CSV columns, in order (the JSON keeps every field of a row)
COLUMNS = ("rank", "key", "label", "kind", "encoder", "decoder", "bitfit", "trainable", "total",
           "percent", "psnr", "ssim", "nrmse", "abs_bias_pct", "train_s", "peak_mem_mb",
           "mem_kind", "rank_ran_on", "note", "skipped")


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def ranked(rows: list[dict]) -> list[dict]:
    """Rows that ran, best head-mask PSNR first, then the skipped ones; ``rank`` filled in."""
    ran = [r for r in rows if not r.get("skipped")]
    ran.sort(key=lambda r: -_num(r.get("psnr")) if math.isfinite(_num(r.get("psnr"))) else 1e9)
    out = [dict(r, rank=i + 1) for i, r in enumerate(ran)]
    return out + [dict(r, rank=None) for r in rows if r.get("skipped")]


def best_mix(rows: list[dict]) -> str | None:
    """Key of the best-PSNR Mix-PEFT row (the one the table highlights)."""
    mixes = [r for r in rows if r.get("kind") == "mix" and not r.get("skipped")
             and math.isfinite(_num(r.get("psnr")))]
    return max(mixes, key=lambda r: _num(r["psnr"]))["key"] if mixes else None


def _fmt(value: Any, spec: str) -> str:
    v = _num(value)
    return format(v, spec) if math.isfinite(v) else "–"


def to_markdown(rows: list[dict], meta: dict) -> str:
    """The leaderboard table (sorted by PSNR, best Mix-PEFT in bold) + the paper's table."""
    table = ranked(rows)
    best = best_mix(rows)
    mem = {r.get("mem_kind") for r in table if r.get("mem_kind")}
    lines = [
        f"# Leaderboard: {meta.get('backbone', '?')} {meta.get('source') or '?'} → "
        f"{meta.get('target', '?')}",
        "",
        f"{meta.get('steps')} steps per row, seed {meta.get('seed')}, batch "
        f"{meta.get('batch')}, device {meta.get('device')}; base sha256 "
        f"`{str(meta.get('base_sha256', ''))[:12]}…`; test subjects "
        f"{', '.join(meta.get('split', {}).get('test', []))} (validation "
        f"{', '.join(meta.get('split', {}).get('val', []))} picked each row's best step).",
        "Metrics: mean over the test subjects inside the head mask; |bias| = mean absolute "
        "regional bias vs full count. **Bold** = best Mix-PEFT.",
        "",
        "| # | method | encoder | decoder | BitFit | trainable | % params | PSNR dB | SSIM | "
        "NRMSE | abs bias % | train s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    low = meta.get("low_vs_full")
    for r in table:
        if r.get("skipped"):
            continue
        label = f"**{r['label']}**" if r["key"] == best else r["label"]
        lines.append(
            f"| {r['rank']} | {label} | {r.get('encoder', '')} | {r.get('decoder', '')} | "
            f"{'yes' if r.get('bitfit') else 'no'} | {int(r.get('trainable') or 0):,} | "
            f"{_fmt(r.get('percent'), '.3f')} | {_fmt(r.get('psnr'), '.2f')} | "
            f"{_fmt(r.get('ssim'), '.4f')} | {_fmt(r.get('nrmse'), '.4f')} | "
            f"{_fmt(r.get('abs_bias_pct'), '.2f')} | {_fmt(r.get('train_s'), '.1f')} | "
            f"{_fmt(r.get('peak_mem_mb'), '.0f')} |")
    if low:
        lines.append(f"| – | low-count input (reference) | | | | | | {_fmt(low.get('psnr'), '.2f')}"
                     f" | {_fmt(low.get('ssim'), '.4f')} | {_fmt(low.get('nrmse'), '.4f')} | "
                     "| | |")
    notes = [r for r in table if r.get("note") and not r.get("skipped")]
    skipped = [r for r in table if r.get("skipped")]
    if notes or skipped:
        lines += ["", "Notes:"]
        lines += [f"- {r['label']}: {r['note']}" for r in notes]
        lines += [f"- {r['label']}: not run — {r['skipped']}" for r in skipped]
    if mem:
        lines += ["", "Peak memory: " + "; ".join(sorted(_MEM_TEXT.get(k, k) for k in mem)) + "."]
    paper = PAPER.get(str(meta.get("backbone")))
    if paper:
        lines += ["", f"## The paper's numbers ({meta.get('backbone')}, for orientation)", "",
                  "Average over 20 scanner pairs × 3 folds on real FDG brain scans, min-max "
                  "scaled (PETITE, MICCAI 2024); compare the ordering, not the decibels.", "",
                  "| method | PSNR dB | SSIM | NRMSE | % params |", "|---|---|---|---|---|"]
        for name, (psnr, ssim, nrmse, pct) in paper.items():
            lines.append(f"| {name} | {psnr:.3f} | {ssim:.3f} | {nrmse:.4f} | "
                         f"{'–' if pct is None else f'{pct:g}'} |")
    return "\n".join(lines) + "\n"


_MEM_TEXT = {
    "cuda_max_allocated": "CUDA rows: torch.cuda.max_memory_allocated during the row",
    "cpu_rss_peak_growth": "CPU rows: peak resident memory of the process above its level at "
                           "the row's start, sampled every 20 ms (includes the data and the "
                           "model copy the row loads)",
}


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in ranked(rows):
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in COLUMNS])
    return buffer.getvalue()


def to_json(rows: list[dict], meta: dict) -> str:
    return json.dumps({"meta": meta, "best_mix": best_mix(rows), "rows": ranked(rows)},
                      indent=2, default=str) + "\n"


def write_leaderboard(folder: str | Path, rows: list[dict], meta: dict) -> list[Path]:
    """Write leaderboard.{md,csv,json} into ``folder``, each atomically (replacing old ones)."""
    from napari_petite.io.atomic import write_text

    folder = Path(folder)
    return [write_text(folder / "leaderboard.md", to_markdown(rows, meta), overwrite=True),
            write_text(folder / "leaderboard.csv", to_csv(rows), overwrite=True),
            write_text(folder / "leaderboard.json", to_json(rows, meta), overwrite=True)]


def read_rows(folder: str | Path) -> list[dict]:
    """Rows of an existing ``leaderboard.json`` (empty when there is none or it is unreadable)."""
    path = Path(folder) / "leaderboard.json"
    from napari_petite.errors import PetiteError
    from napari_petite.io.jsonfile import read_json

    if not path.is_file():
        return []
    try:
        rows = read_json(path).get("rows", [])
    except PetiteError:
        return []
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and "key" in r]
