"""Training-step time and peak memory of every backbone on a 64³ batch-2 step.

Each configuration runs in its own subprocess so that its peak resident memory
(``getrusage`` max RSS) is not polluted by the others; ``tracemalloc`` does not see torch's
allocations. Reported: parameters, the minimum and median step time over ``--repeats`` steps
after one warm-up step, the process's peak RSS and the part of it the training steps added
on top of the built model and data (activations, gradients, AdamW state), and the minimum
CPU time of a step (all threads; on a machine shared with other jobs the wall time suffers
much more than the CPU time, so compare CPU time / threads with the wall-time budget).

Each configuration is measured twice: with glibc's default allocator settings and with
``mallopt`` keeping freed memory in the heap (:func:`keep_freed_memory`). By default glibc
serves every large activation tensor with a fresh ``mmap`` and returns it on free, so each
step pays page faults and zeroing for hundreds of MB; keeping the memory makes a UNETR-small
step 1.25-1.8x faster on CPU (measured) at the price of a resident heap that does not shrink.

A step is what fine-tuning a preset costs with every parameter trained: forward, loss,
backward, AdamW update. UNETR: MSE. CVT-GAN: the pix2pix generator loss (100·L1 +
adversarial through the discriminator, which is not updated, as in PETITE's fine-tuning).

Usage::

    python benchmarks/bench_backbone_step.py            # small presets
    python benchmarks/bench_backbone_step.py --paper    # small and paper presets
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def keep_freed_memory() -> bool:
    """Ask glibc to keep large freed blocks in the heap instead of unmapping them."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (m_mmap_threshold, 1 << 30), (m_trim_threshold, 1 << 30), (m_top_pad, 1 << 28)))


def child(backbone: str, preset: str, size: int, batch: int, repeats: int, threads: int,
          tuned: bool) -> dict:
    """Build one model, run ``repeats`` + 1 training steps, return the measurements."""
    tuned = keep_freed_memory() if tuned else False
    import torch
    import torch.nn.functional as F

    from napari_petite.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(backbone, preset, patch_size=(size, size, size)).train()
    generator = [p for n, p in model.named_parameters() if model.group_of(n) != "head"]
    optimizer = torch.optim.AdamW(generator, lr=1e-4, weight_decay=1e-5)
    low = torch.rand(batch, 1, size, size, size)
    full = low + 0.1 * torch.rand_like(low)
    if model.is_gan:
        for p in model.discriminator.parameters():
            p.requires_grad_(False)
    base_rss = _maxrss_mb()

    cpu_times: list[float] = []

    def step() -> float:
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        fake = model(low)
        if model.is_gan:
            logits = model.discriminate(low, fake)
            adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
            loss = adversarial + 100.0 * F.l1_loss(fake, full)
        else:
            loss = F.mse_loss(fake, full)
        loss.backward()
        optimizer.step()
        cpu_times.append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    step()  # warm-up: allocator, AdamW state
    times = [step() for _ in range(repeats)]
    peak = _maxrss_mb()
    return {
        "backbone": backbone,
        "preset": preset,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "trained_m": sum(p.numel() for p in generator) / 1e6,
        "step_min_s": min(times),
        "step_median_s": statistics.median(times),
        # CPU seconds of all threads: less sensitive than wall time to other processes
        "cpu_min_s": min(cpu_times[1:]),
        "peak_rss_mb": peak,
        "step_rss_mb": peak - base_rss,
        "threads": threads,
        "allocator": "kept" if tuned else "glibc",
    }


def run_config(backbone: str, preset: str, tuned: bool, args: argparse.Namespace) -> dict:
    """Measure one configuration in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--child", backbone, preset, "--size", str(args.size),
           "--batch", str(args.batch), "--repeats", str(args.repeats),
           "--threads", str(args.threads)] + (["--keep-freed"] if tuned else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"backbone": backbone, "preset": preset, "error": proc.stderr.strip()[-400:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="also measure the paper presets")
    parser.add_argument("--backbone", action="append", help="only these backbones")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead")
    parser.add_argument("--keep-freed", action="store_true",
                        help="(child) keep freed memory in the heap; the parent runs both")
    parser.add_argument("--default-allocator-only", action="store_true",
                        help="skip the runs with freed memory kept")
    parser.add_argument("--child", nargs=2, metavar=("BACKBONE", "PRESET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(*args.child, args.size, args.batch, args.repeats, args.threads,
                       args.keep_freed)
        print(json.dumps(result))
        return 0

    from napari_petite.models import backbone_names

    presets = ["small", "paper"] if args.paper else ["small"]
    modes = [False] if args.default_allocator_only else [False, True]
    results = [run_config(b, p, tuned, args) for b in (args.backbone or backbone_names())
               for p in presets for tuned in modes]
    if args.json:
        for r in results:
            print(json.dumps(r))
        return 0
    print(f"train step, {args.size}³ x batch {args.batch}, {args.threads} threads, "
          f"min/median of {args.repeats} after 1 warm-up")
    print(f"{'backbone':9} {'preset':6} {'alloc':5} {'params':>8} {'trained':>8} {'min s':>7} "
          f"{'median s':>8} {'cpu s':>6} {'peak RSS':>9} {'step RSS':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['backbone']:9} {r['preset']:6} failed: {r['error']}")
            continue
        print(f"{r['backbone']:9} {r['preset']:6} {r['allocator']:5} "
              f"{r['params_m']:7.2f}M {r['trained_m']:7.2f}M "
              f"{r['step_min_s']:7.2f} {r['step_median_s']:8.2f} {r['cpu_min_s']:6.2f} "
              f"{r['peak_rss_mb']:7.0f}MB "
              f"{r['step_rss_mb']:7.0f}MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
