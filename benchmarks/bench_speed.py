"""Speed and memory of the tool on this machine, as ratios measured in one run.

Six parts (``--parts``, default all), each added to ``speed.json`` (parts not run this time
keep their earlier numbers, each with its own date):

``peft``
    PEFT vs Full-FT train-step time and peak memory per backbone, each configuration in its own
    child process (``bench_peft.py --json``) on the shipped bases' network configuration
    (UNETR-small 32×64×64, CVT-GAN-small): minimum step time over ``--repeats`` steps, and the
    memory a train step adds above the loaded model (activations, gradients, optimizer state;
    the closest CPU figure to the paper's GPU memory) as well as the whole process's peak.
``peft_paper``
    The same for UNETR at the paper's size (``paper`` preset: ViT-B, 64³ patch, batch 2): full
    fine-tuning, the frozen network and PETITE only (a few minutes per configuration on a CPU).
``merge``
    Inference time of one window with the PEFT modules (LoRA, SSF, IA³; the paper's PETITE
    spec and IA³ on both parts) unmerged, merged into the weights
    (``napari_petite.peft.merge``), and the plain base: ``merged / base`` is the overhead a
    merged adapter leaves (0 in theory), ``unmerged / base`` what merging saves.
``inference``
    Whole-volume sliding-window inference (32×64×64 windows, overlap 0.5, Gaussian blending:
    ``predict_volume``) with the shipped UNETR-small on random volumes of every scanner
    profile's grid, ``small`` and ``native`` size.
``flops``
    FLOPs of one train step counted with ``torch.utils.flop_counter.FlopCounterMode``
    (forward + backward; the optimizer's element-wise work is not counted), divided by the
    measured step time, divided by this machine's float32 matmul rate measured in the same run
    (a 2048² ``torch.matmul`` loop): the fraction of the machine's dense-matmul speed training
    reaches.
``convergence``
    The CPU preset (shipped UNETR-small base, PETITE Mix-PEFT, batch 2, the default split)
    fine-tuned on ``--source -> --target`` with validation every ``--val-every`` steps:
    ``minutes_to_within_0p3db`` is the wall time (training + the validations so far) at which
    validation PSNR first comes within 0.3 dB of the best validation PSNR of the run.
    "Converged" means the best over this run's ``--steps`` budget, not an asymptote.

Times are the minimum over repeats (the machine may be shared; the minimum is the least
noisy); ``--threads`` torch threads (default 2).

    python benchmarks/bench_speed.py                     # all parts, about 30-60 min
    python benchmarks/bench_speed.py --parts merge,flops --repeats 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    RESULTS,
    command_line,
    ensure_data,
    machine,
    read_json,
    run_json,
    thread_env,
    write_json,
)

PARTS = ("peft", "peft_paper", "merge", "inference", "flops", "convergence")
HERE = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset")
    p.add_argument("--backbones", default="unetr,cvtgan", help="for peft, merge and flops")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (minimum kept)")
    p.add_argument("--merge-repeats", type=int, default=20,
                   help="merge part: interleaved one-window repeats (cheap; noise needs many)")
    p.add_argument("--methods", default=None,
                   help="peft part: methods for bench_peft.py (default all)")
    p.add_argument("--scanners", default=None, help="inference part: scanner ids (default all)")
    p.add_argument("--sizes", default="small,native", help="inference part: grid sizes")
    p.add_argument("--matmul-n", type=int, default=2048, help="flops part: matmul size")
    p.add_argument("--data", default=None, metavar="DIR",
                   help=f"convergence part: dataset (default {DEFAULT_DATA})")
    p.add_argument("--source", default="mct")
    p.add_argument("--target", default="vision")
    p.add_argument("--base", action="append", default=[], metavar="BACKBONE=FILE",
                   help="base checkpoint per backbone (default: the shipped ones)")
    p.add_argument("--steps", type=int, default=300, help="convergence part: step budget")
    p.add_argument("--val-every", type=int, default=10, help="convergence part")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS), metavar="DIR", help="folder of speed.json")
    return p.parse_args(argv)


# -- shared model plumbing ---------------------------------------------------------------

def base_for(args, backbone: str):
    """The base model (loaded checkpoint, eval mode) of ``backbone`` for this run."""
    from napari_petite.training.job import load_base

    model, card, _ = load_base(args.bases.get(backbone), backbone)
    return model, card


def with_spec(args, backbone: str, spec, *, perturb: bool = True):
    """A fresh copy of the base with ``spec`` applied; PEFT tensors moved off their identity
    initialisation so that merging has something to fold."""
    import torch

    from napari_petite.peft.apply import apply_spec

    model, _ = base_for(args, backbone)
    torch.manual_seed(args.seed)
    apply_spec(model, spec)
    if perturb:
        gen = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return model


def best_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# -- (a) PEFT vs Full-FT step time and memory --------------------------------------------

def peft_ratios(args, backbone: str, preset: str, overrides: dict,
                methods: list[str] | None) -> dict:
    """bench_peft.py rows for one network, each with its ratios to full fine-tuning."""
    cmd = [sys.executable, str(HERE / "bench_peft.py"), "--json", "--backbone", backbone,
           "--preset", preset, "--steps", str(args.repeats), "--threads", str(args.threads)]
    if methods:
        cmd += ["--methods", *methods]
    cmd += [f"--override={k}={json.dumps(v)}" for k, v in overrides.items()]
    rows = run_json(cmd, env=thread_env(args.threads))
    full = next((r for r in rows if r["method"] == "full"), None)
    for r in rows:
        for key in ("step_s", "peak_mb", "step_peak_mb"):
            r[f"{key}_vs_full"] = (r[key] / full[key] if full and full[key] else None)
    petite = next((r for r in rows if r["method"] == "petite"), None)
    result = {"preset": preset, "config": overrides, "rows": rows,
              "petite_vs_full": None if not (petite and full) else {
                  "label": petite["label"], "percent": petite["percent"],
                  "step_time_ratio": petite["step_s_vs_full"],
                  "step_memory_ratio": petite["step_peak_mb_vs_full"],
                  "process_peak_memory_ratio": petite["peak_mb_vs_full"]}}
    print(f"  {preset} {backbone}: {result['petite_vs_full']}", file=sys.stderr, flush=True)
    return result


MEMORY_DEFINITION = ("step_memory_ratio: resident memory a train step adds above the process "
                     "with the model loaded (ru_maxrss growth); process_peak_memory_ratio: "
                     "whole-process peak")


def part_peft(args) -> dict:
    """bench_peft.py per backbone, on the base checkpoint's own network configuration."""
    out: dict[str, Any] = {"backbones": {}, "memory_definition": MEMORY_DEFINITION}
    methods = args.methods.split(",") if args.methods else None
    for backbone in args.backbone_list:
        _, card = base_for(args, backbone)
        out["backbones"][backbone] = peft_ratios(args, backbone, "small", card["config"],
                                                 methods)
    return out


def part_peft_paper(args) -> dict:
    """UNETR at the paper's size (ViT-B, 64³): where the paper's time and memory claim lives;
    the small CPU network is dominated by its full-resolution decoder instead."""
    return {"backbones": {"unetr": peft_ratios(args, "unetr", "paper", {},
                                               ["full", "none", "petite"])},
            "memory_definition": MEMORY_DEFINITION}


# -- (b) merged vs unmerged inference ----------------------------------------------------

def part_merge(args) -> dict:
    import torch

    from napari_petite.peft.merge import merge_peft
    from napari_petite.peft.spec import MixPEFTSpec, petite_spec, why_not

    out: dict[str, Any] = {"backbones": {}}
    for backbone in args.backbone_list:
        base, _ = base_for(args, backbone)
        base.eval()
        x = torch.rand(1, 1, *base.patch_size, generator=torch.Generator().manual_seed(0))
        specs = [petite_spec(backbone, base.preset)]
        if all(why_not(base, part, "ia3") is None for part in ("encoder", "decoder")):
            specs.append(MixPEFTSpec(backbone, base.preset, "ia3", "ia3", True))
        results = []
        for spec in specs:
            unmerged = with_spec(args, backbone, spec).eval()
            merged = with_spec(args, backbone, spec).eval()
            report = merge_peft(merged)
            models = {"base": base, "unmerged": unmerged, "merged": merged}
            best = dict.fromkeys(models, float("inf"))
            with torch.inference_mode():
                y_un, y_me = unmerged(x), merged(x)
                for _ in range(max(args.merge_repeats, 1)):  # interleaved: drift hits all
                    for name, model in models.items():
                        best[name] = min(best[name], best_time(lambda m=model, x=x: m(x), 1, 0))
            scale = float(y_un.abs().max()) or 1.0
            results.append({
                "spec": spec.label, "window": list(base.patch_size),
                "base_s": best["base"], "unmerged_s": best["unmerged"],
                "merged_s": best["merged"],
                "merged_over_base": best["merged"] / best["base"],
                "unmerged_over_base": best["unmerged"] / best["base"],
                "merged_vs_unmerged_max_rel_diff": float((y_me - y_un).abs().max()) / scale,
                "merged_modules": len(report.merged), "kept_unmerged": report.kept,
                "n_params": {name: sum(p.numel() for p in m.parameters())
                             for name, m in models.items()}})
            print(f"  merge {backbone} {spec.label}: merged/base "
                  f"{results[-1]['merged_over_base']:.3f}, unmerged/base "
                  f"{results[-1]['unmerged_over_base']:.3f}", file=sys.stderr, flush=True)
        out["backbones"][backbone] = results
    return out


# -- (c) whole-volume inference per scanner grid ------------------------------------------

def part_inference(args) -> dict:
    import numpy as np

    from napari_petite.simulate.profiles import available_ids, load_profile
    from napari_petite.training.inference import predict_volume
    from napari_petite.training.windows import n_windows

    model, card = base_for(args, "unetr")
    window = tuple(model.patch_size)
    scanners = args.scanners.split(",") if args.scanners else available_ids()
    rows = []
    rng = np.random.default_rng(args.seed)
    for scanner in scanners:
        profile = load_profile(scanner)
        for size in args.sizes.split(","):
            grid = profile.grid(size)
            shape = tuple(int(n) for n in grid.shape)
            volume = (rng.random(shape, dtype=np.float32) * 1000.0).astype(np.float32)
            repeats = 1 if size == "native" else max(1, min(args.repeats, 3))
            seconds = best_time(lambda v=volume: predict_volume(model, v, window=window,
                                                                device="cpu"), repeats, 0)
            padded = tuple(max(s, w) for s, w in zip(shape, window, strict=True))
            rows.append({"scanner": scanner, "size": size, "shape_zyx": list(shape),
                         "spacing_zyx_mm": [float(s) for s in grid.spacing],
                         "windows": n_windows(padded, window, 0.5), "seconds": seconds})
            print(f"  inference {scanner} {size} {shape}: {seconds:.2f} s", file=sys.stderr,
                  flush=True)
    return {"model": f"{model.name}-{model.preset}", "config": card.get("config"),
            "window": list(window), "overlap": 0.5, "rows": rows}


# -- (d) training FLOP/s vs matmul FLOP/s ------------------------------------------------

def matmul_flops_per_s(n: int, repeats: int) -> float:
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    return 2.0 * n**3 / best_time(lambda: torch.matmul(a, b), max(repeats, 3), 1)


def part_flops(args) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_petite.peft.apply import train_mode
    from napari_petite.peft.spec import MixPEFTSpec, petite_spec

    matmul = matmul_flops_per_s(args.matmul_n, args.repeats)
    out: dict[str, Any] = {"matmul_n": args.matmul_n, "matmul_flops_per_s": matmul,
                           "backbones": {}}
    for backbone in args.backbone_list:
        rows = []
        for spec in (petite_spec(backbone, "small"),
                     MixPEFTSpec(backbone, "small", "full", "full", False)):
            model = with_spec(args, backbone, spec, perturb=False)
            train_mode(model)
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-4)
            gen = torch.Generator().manual_seed(0)
            x = torch.rand(2, 1, *model.patch_size, generator=gen)
            y = x * 1.1

            def step(model=model, opt=opt, x=x, y=y):
                loss = torch.nn.functional.mse_loss(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            counter = FlopCounterMode(display=False)
            with counter:
                step()
            flops = float(counter.get_total_flops())
            seconds = best_time(step, args.repeats, 1)
            rows.append({"spec": spec.label, "encoder": spec.encoder, "batch": 2,
                         "window": list(model.patch_size), "flops_per_step": flops,
                         "step_s": seconds, "flops_per_s": flops / seconds,
                         "fraction_of_matmul": flops / seconds / matmul})
            print(f"  flops {backbone} {spec.label}: {flops / 1e9:.1f} GFLOP/step, "
                  f"{seconds:.3f} s, {rows[-1]['fraction_of_matmul']:.3f} of matmul",
                  file=sys.stderr, flush=True)
        out["backbones"][backbone] = rows
    return out


# -- (e) time to within 0.3 dB of the run's best validation PSNR ---------------------------

def minutes_within(history: list[dict], tolerance_db: float = 0.3) -> dict:
    """First wall time at which validation PSNR is within ``tolerance_db`` of the run's best.

    Only validations after training began count: the step-0 point is the base model, and a
    base already within the tolerance says nothing about how fast fine-tuning converges.
    """
    history = [h for h in history if h["step"] > 0]
    if not history:
        return {"minutes": None, "reason": "no validation ran"}
    best = max(h["psnr"] for h in history)
    first = next(h for h in history if h["psnr"] >= best - tolerance_db)
    return {"minutes": first["elapsed_s"] / 60.0, "step": first["step"],
            "psnr_db": first["psnr"], "best_psnr_db": best,
            "best_step": max(history, key=lambda h: h["psnr"])["step"]}


def part_convergence(args) -> dict:
    import torch

    from napari_petite.io.dataset import discover
    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.spec import petite_spec
    from napari_petite.training.engine import TrainConfig, Trainer
    from napari_petite.training.job import load_pairs, split_subjects

    ensure_data(args.data, [args.target])
    t0 = time.perf_counter()
    model, card = base_for(args, "unetr")
    spec = petite_spec(model.name, model.preset)
    torch.manual_seed(args.seed)
    report = apply_spec(model, spec)
    scanner = discover(args.data).scanner(args.target)
    split = split_subjects([s.id for s in scanner.subjects])
    window = tuple(model.patch_size)
    trainer = Trainer(model, load_pairs(scanner, split.train, window),
                      load_pairs(scanner, split.val, window),
                      TrainConfig(steps=args.steps, batch_size=2, val_every=args.val_every,
                                  seed=args.seed, device="cpu"), spec)
    setup_s = time.perf_counter() - t0
    history, step_times, last = [], [], 0.0
    for event in trainer.run():
        if event.kind == "step":
            step_times.append(event.elapsed_s - last)
            last = event.elapsed_s
        elif event.kind == "val" and event.val:
            history.append({"step": event.step, "elapsed_s": event.elapsed_s,
                            "psnr": event.val["psnr"], "ssim": event.val["ssim"]})
            print(f"  convergence step {event.step}: {event.val['psnr']:.2f} dB at "
                  f"{event.elapsed_s:.0f} s", file=sys.stderr, flush=True)
    result = minutes_within(history)
    return {"data": str(args.data), "source": args.source, "target": args.target,
            "split": split.to_dict(), "spec": spec.label, "percent": report.percent,
            "steps": args.steps, "val_every": args.val_every, "batch": 2,
            "base_sha256": card.get("sha256"), "setup_s": setup_s,
            "median_step_s": sorted(step_times)[len(step_times) // 2] if step_times else None,
            "history": history, "within_0p3db": result,
            "definition": "wall time from the first training step (validations included) "
                          "until validation PSNR first reaches (best of the run - 0.3 dB); "
                          "best = max over this run's budget"}


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; choose from {PARTS}")
    args.backbone_list = [b.strip() for b in args.backbones.split(",") if b.strip()]
    args.bases = {}
    for item in args.base:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--base {item!r} must look like BACKBONE=FILE")
        args.bases[name] = path
    args.data = Path(args.data).expanduser() if args.data else DEFAULT_DATA
    torch.set_num_threads(args.threads)
    path = Path(args.out).expanduser() / "speed.json"
    doc = read_json(path) or {}
    doc.setdefault("parts", {})
    doc.update({"machine": machine(), "threads": args.threads, "repeats": args.repeats})
    runners = {"peft": part_peft, "peft_paper": part_peft_paper, "merge": part_merge,
               "inference": part_inference, "flops": part_flops,
               "convergence": part_convergence}
    failed = []
    for part in parts:
        print(f"== {part}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            result = runners[part](args)
        except Exception as err:  # keep the other parts; say which failed and why
            failed.append(part)
            result = {"error": f"{type(err).__name__}: {err}"}
            print(f"part {part} failed: {result['error']}", file=sys.stderr)
        result.update({"seconds": time.perf_counter() - t0, "command": command_line(),
                       "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        doc["parts"][part] = result
        write_json(path, doc)  # after every part, so a later failure loses nothing
    print(f"speed results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
