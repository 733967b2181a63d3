"""Train-step time of the CVT-GAN presets on CPU (the "small" preset's budget is <= 1.5 s).

One step = generator forward on a low-count patch, pix2pix generator loss (100 * L1 +
adversarial BCE through the frozen discriminator, as the discriminator is frozen while the
generator learns), backward, AdamW step on the generator. The minimum over the timed steps is
reported because the cores may be shared.

Usage: python benchmarks/bench_cvtgan_step.py [--preset small paper] [--steps 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from napari_petite.models.cvtgan import CvTGAN


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def step_times(preset: str, steps: int, batch: int) -> tuple[CvTGAN, list[float]]:
    torch.manual_seed(0)
    model = CvTGAN(preset).train()
    model.discriminator.requires_grad_(False)
    opt = torch.optim.AdamW(model.generator.parameters(), lr=1e-4, weight_decay=1e-4)
    low = torch.rand(batch, 1, *model.patch_size)
    full = low + 0.1 * torch.randn_like(low)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        t0 = time.perf_counter()
        fake = model(low)
        logits = model.discriminate(low, fake)
        loss = 100.0 * F.l1_loss(fake, full) + F.binary_cross_entropy_with_logits(
            logits, torch.ones_like(logits)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return model, times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["small", "paper"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}")
    for preset in args.preset:
        model, times = step_times(preset, args.steps, args.batch)
        enc = count(model.generator.encoder)
        dec = count(model.generator.decoder)
        print(
            f"{preset:6s} patch {model.patch_size}: generator {count(model.generator) / 1e6:.2f} M "
            f"(encoder {enc / 1e6:.2f} M, decoder {dec / 1e6:.2f} M), discriminator "
            f"{count(model.discriminator) / 1e6:.2f} M; step min {min(times):.2f} s, "
            f"median {sorted(times)[len(times) // 2]:.2f} s over {len(times)} steps"
        )


if __name__ == "__main__":
    main()
