"""``petite demo``: the whole flow, headless, on simulated sample data.

Simulates a small two-scanner dataset (source = the scanner the shipped base model was trained
on, target = another), fine-tunes the shipped UNETR base with the paper's PETITE combination
on the target's training subjects, reconstructs a held-out test subject with and without the
adaptation, and writes the volumes, the adapter bundle, a metrics summary and a PNG figure.
It is what ``make demo`` runs when there is no display.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from napari_petite.commands import _options as opt

DEMO_SOURCE = "mct"
DEMO_TARGET = "vision"


def register(sub) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the whole flow headless on sample data and write a figure",
        description="Simulate a small dataset, fine-tune the shipped base model to a new "
        "scanner with PETITE (Mix-PEFT), reconstruct a held-out subject with and without the "
        "adaptation, and write volumes, metrics and a PNG figure into --out.",
    )
    parser.add_argument("--out", default="demo-output", metavar="DIR",
                        help="output folder (default demo-output); reused data is kept")
    parser.add_argument("--backbone", choices=["unetr", "cvtgan"], default="unetr")
    parser.add_argument("--steps", type=opt.positive_int, default=60, metavar="N",
                        help="fine-tuning steps (default 60, about two minutes on 2 CPU cores)")
    parser.add_argument("--seed", type=opt.seed, default=0, metavar="S")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=lambda args: run_demo(out=args.out, backbone=args.backbone,
                                                   steps=args.steps, seed=args.seed,
                                                   device=args.device, as_json=args.json))


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def _stale(data: Path) -> bool:
    """The demo's simulated data were made by another simulator version (or are unreadable)."""
    from napari_petite.errors import PetiteError
    from napari_petite.io.jsonfile import read_json
    from napari_petite.simulate.scan import SIMULATOR_VERSION

    try:
        made = read_json(data / "dataset.json")
    except PetiteError:
        return True
    return made.get("simulator_version") != SIMULATOR_VERSION


def run_demo(out: str | Path = "demo-output", *, backbone: str = "unetr", steps: int = 60,
             seed: int = 0, device: str = "auto", as_json: bool = False) -> int:
    """Run the headless demo into ``out``; returns the exit code.

    ``out`` is a work folder the demo fills (data, adapter, volumes, figure): it must be new,
    empty or an earlier demo's, never a folder of the user's own files.
    """
    from napari_petite.errors import ConfigError, OutputError
    from napari_petite.io.atomic import is_tool_output, reserve

    if steps < 1:
        raise ConfigError("--steps must be at least 1.")
    out = Path(out).expanduser()
    if out.is_dir() and any(out.iterdir()) and not (
            is_tool_output(out) or (out / "adapter" / "adapter.json").is_file()):
        raise OutputError(f"{out} holds files that are not an earlier demo's; choose another "
                          "--out (the demo writes several files and folders there).")
    with reserve(out, kind="workdir"):
        return _run_demo(out, backbone, steps, seed, device, as_json)


def _run_demo(out: Path, backbone: str, steps: int, seed: int, device: str,
              as_json: bool) -> int:
    from napari_petite.io.atomic import mark_output, write_text
    from napari_petite.io.dataset import discover
    from napari_petite.io.nifti import read_volume, write_like
    from napari_petite.peft.bundle import save_adapter
    from napari_petite.simulate.dataset import make_dataset
    from napari_petite.training.engine import Control, TrainConfig
    from napari_petite.training.evaluation import evaluate_subject
    from napari_petite.training.inference import predict_volume
    from napari_petite.training.job import JobRequest, build_run, drive, load_base, split_subjects
    from napari_petite.training.report import write_report

    data = out / "data"
    started = time.perf_counter()
    if not (data / DEMO_TARGET).is_dir() or _stale(data):
        _say(f"simulating {DEMO_SOURCE} and {DEMO_TARGET} scans (4 subjects each) ...", as_json)
        make_dataset(data, scanners=[DEMO_SOURCE, DEMO_TARGET], subjects=4, seed=seed,
                     overwrite=True)
    scanner = discover(data).scanner(DEMO_TARGET)
    split = split_subjects([s.id for s in scanner.subjects], n_val=1, n_test=1)
    test = scanner.subject(split.test[0])

    config = TrainConfig(steps=steps, seed=seed, device=device, val_every=max(steps // 3, 1))
    run = build_run(JobRequest(scanner, split, config, backbone=backbone, source=DEMO_SOURCE))
    model, spec, report = run.model, run.spec, run.report
    _say(f"fine-tuning {backbone} on {DEMO_TARGET} with {spec.label}: {report.summary()}",
         as_json)

    def show(event) -> None:
        if event.kind == "step" and (event.step % 10 == 0 or event.step == steps):
            _say(f"  step {event.step}/{steps}  loss {event.loss:.4g}  "
                 f"eta {event.eta_s:.0f} s", as_json)
        elif event.kind == "val" and event.val:
            _say(f"  validation PSNR {event.val['psnr']:.2f} dB (step {event.step})", as_json)

    result = drive(run, show, Control())
    adapter = save_adapter(model, spec, out / "adapter", base_sha256=run.base_sha256,
                           training=run.record(result), metrics=run.metrics(result),
                           seed=seed, overwrite=True)
    base_model, _, _ = load_base(run.base_path)
    trainer = run.trainer

    _say(f"reconstructing held-out subject {test.id} ...", as_json)
    low = read_volume(test.low)
    full = read_volume(test.full)
    base_model.to(trainer.device)
    no_ft = predict_volume(base_model, low.data, device=trainer.device)
    recon = predict_volume(model, low.data, device=trainer.device)
    outputs = {
        "no_ft": write_like(out / f"{test.id}_noft.nii.gz", no_ft, low, overwrite=True),
        "petite": write_like(out / f"{test.id}_petite.nii.gz", recon, low, overwrite=True),
    }
    metrics_petite = evaluate_subject(model, test, recon=recon)
    metrics_base = evaluate_subject(base_model, test, recon=no_ft)
    figure = write_report(out / "demo.png", low=low.data,
                          recons={"base model": no_ft, spec.label: recon}, full=full.data,
                          spacing=low.spacing, units=low.units,
                          metrics={"low-count": metrics_petite["low"],
                                   "base model": metrics_base["recon"],
                                   spec.label: metrics_petite["recon"]},
                          details={"subject": f"{DEMO_TARGET}/{test.id} (held out)",
                                   "base": f"{backbone} pre-trained on {DEMO_SOURCE}",
                                   "adapter": f"{spec.label}, {report.percent:.2f} % of the "
                                              f"weights, {steps} steps"},
                          title=f"{DEMO_TARGET}/{test.id}: {backbone} + {spec.label}",
                          overwrite=True)
    summary = {
        "dataset": str(data), "source": DEMO_SOURCE, "target": DEMO_TARGET,
        "test_subject": test.id, "spec": spec.label, "percent_trainable": report.percent,
        "steps": steps, "adapter": str(adapter), "figure": str(figure),
        "volumes": {k: str(v) for k, v in outputs.items()},
        "head_mask": {name: {k: m[k] for k in ("psnr_mask", "ssim_mask", "nrmse_mask")}
                      for name, m in (("low_vs_full", metrics_petite["low"]),
                                      ("no_ft_vs_full", metrics_base["recon"]),
                                      ("petite_vs_full", metrics_petite["recon"]))},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n", overwrite=True)
    mark_output(out, "demo")
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        hm = summary["head_mask"]
        print(f"PSNR in the head vs full-count, {DEMO_TARGET}/{test.id}: low-count "
              f"{hm['low_vs_full']['psnr_mask']:.2f} dB, base model (No-FT) "
              f"{hm['no_ft_vs_full']['psnr_mask']:.2f} dB, PETITE "
              f"{hm['petite_vs_full']['psnr_mask']:.2f} dB.\nfigure: {figure}\n"
              f"outputs in {out} ({summary['seconds']:.0f} s)")
    return 0
