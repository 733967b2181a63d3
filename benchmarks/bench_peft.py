"""Train-step time and peak memory of each PEFT method relative to full fine-tuning.

Per backbone (``--preset``, default ``small``; its 64³ patch, batch 2) and method, one child
process builds the model, applies the spec (the method on every part it fits, BitFit off; plus
the paper's PETITE Mix-PEFT with BitFit), runs warm-up steps and then timed AdamW steps. A child per
configuration makes the peak resident memory (``ru_maxrss``) comparable; the step-time figure
is the minimum over the timed steps (the machine is shared, the minimum is the least noisy).
All configurations run in one invocation and are printed as ratios to ``full``.

    python benchmarks/bench_peft.py [--backbone unetr] [--steps 3] [--threads 2] \
        [--preset paper] [--override 'patch_size=[32,64,64]'] [--json]

``--override KEY=JSON`` changes the preset as ``petite pretrain --override`` does (the
shipped UNETR base is ``patch_size=[32,64,64]``, ``mlp_dim=384``); ``--json`` prints the rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

METHODS = ("full", "none", "layernorm", "bitfit", "lora", "adapter", "ssf", "vpt", "ia3",
           "petite")


def child(backbone: str, method: str, steps: int, threads: int, batch: int,
          overrides: dict | None = None, preset: str = "small") -> dict:
    """Runs inside the child process: measure one configuration."""
    import resource
    import time

    import torch

    from napari_petite.models.registry import build_model
    from napari_petite.peft.apply import apply_spec, train_mode
    from napari_petite.peft.spec import MixPEFTSpec, petite_spec, why_not

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(backbone, preset, **(overrides or {}))
    if method == "petite":
        spec = petite_spec(backbone, preset)
    else:
        parts = [method if why_not(model, p, method) is None else "none"
                 for p in ("encoder", "decoder")]
        spec = MixPEFTSpec(backbone, preset, parts[0], parts[1], False)
    report = apply_spec(model, spec)
    train_mode(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4) if params else None
    x = torch.rand(batch, 1, *model.patch_size)
    y = x * 1.2
    disc = getattr(model, "discriminate", None)

    def step() -> None:
        out = model(x)
        loss = torch.nn.functional.l1_loss(out, y) * (100.0 if disc else 1.0)
        if disc is not None:  # generator loss through the (frozen under PEFT) discriminator
            logits = disc(x, out)
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                logits, torch.ones_like(logits))
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            loss.backward()  # no trainable tensor: gradient still flows to the input side

    x.requires_grad_(opt is None)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up (allocator, kernels)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"backbone": backbone, "method": method, "label": spec.label,
            "percent": report.percent, "step_s": min(times),
            "peak_mb": peak / 1024, "step_peak_mb": max(peak - base_rss, 0) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", action="append", choices=("unetr", "cvtgan"))
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--preset", default="small", choices=("small", "paper"))
    parser.add_argument("--override", action="append", default=[], metavar="KEY=JSON",
                        help="change a preset value, e.g. 'patch_size=[32,64,64]' (repeatable)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--override {item!r} must look like KEY=JSON")
        overrides[key] = json.loads(value)
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.threads, args.batch, overrides,
                               args.preset)))
        return 0
    methods = ["full", *[m for m in args.methods if m != "full"]]
    rows = []
    for backbone in args.backbone or ["unetr", "cvtgan"]:
        for method in methods:
            cmd = [sys.executable, __file__, "--child", backbone, method, "--steps",
                   str(args.steps), "--threads", str(args.threads), "--batch", str(args.batch),
                   "--preset", args.preset, *[f"--override={item}" for item in args.override]]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{backbone} {method}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  measured {backbone} {method}: {row['step_s']:.3f} s, "
                  f"{row['peak_mb']:.0f} MB peak", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"train step, {args.preset} preset, batch {args.batch}, {args.threads} threads, "
          f"min of {args.steps} steps; ratios are to full fine-tuning of the same backbone")
    print(f"{'backbone':<8} {'method':<10} {'trainable %':>11} {'step s':>7} {'x full':>7} "
          f"{'peak MB':>8} {'x full':>7} {'step MB':>8} {'x full':>7}")
    for row in rows:
        full = next(r for r in rows if r["backbone"] == row["backbone"] and r["method"] == "full")
        print(f"{row['backbone']:<8} {row['method']:<10} {row['percent']:>11.3f} "
              f"{row['step_s']:>7.3f} {row['step_s'] / full['step_s']:>7.2f} "
              f"{row['peak_mb']:>8.0f} {row['peak_mb'] / full['peak_mb']:>7.2f} "
              f"{row['step_peak_mb']:>8.0f} "
              f"{row['step_peak_mb'] / max(full['step_peak_mb'], 1e-9):>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
