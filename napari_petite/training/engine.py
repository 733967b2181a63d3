"""The training engine: one generator of events that the GUI, the CLI and the tests all drive.

``train(...)`` yields a small :class:`Event` after every step (loss, learning rate, ETA) and
after every validation; it checks a :class:`Control` (stop / pause) between steps, so a Stop
takes effect within one step and nothing ever waits on a half-finished update. It holds no Qt
and no printing: the napari dock runs it in a worker thread, the CLI prints its events.

Determinism: every random choice (PEFT initialisation aside, which the caller seeds) comes from
one ``numpy.random.Generator`` and torch's global generator, both seeded from ``seed`` and both
saved in resume checkpoints, so an interrupted run resumed from its checkpoint continues the
same loss trace on the CPU.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_petite.errors import CheckpointError, ConfigError
from napari_petite.training.distributed import is_main
from napari_petite.training.sampling import PatchSampler, TrainingPair

#: learning rates by method (PETITE: AdamW 1e-3, 1e-2 for adapters / SSF / VPT; full
#: fine-tuning of all weights is kept lower so few target subjects do not wreck the base)
METHOD_LR = {"full": 3e-4, "layernorm": 1e-3, "bitfit": 1e-3, "lora": 1e-3, "ia3": 1e-3,
             "adapter": 1e-2, "ssf": 1e-2, "vpt": 1e-2, "none": 0.0}
#: weight of the L1 term in the pix2pix-style CVT-GAN loss (adversarial + 100 L1)
GAN_L1_WEIGHT = 100.0
#: what a resume checkpoint's state must hold to continue a run exactly
RESUME_KEYS = ("step", "losses", "val_history", "scheduler", "numpy_rng", "optim_groups")
#: the pix2pix discriminator's optimizer settings (Isola et al.: Adam 2e-4, beta1 0.5)
DISCRIMINATOR_LR = 2e-4
DISCRIMINATOR_BETAS = (0.5, 0.999)


@dataclass
class TrainConfig:
    """Everything that shapes a run; stored in adapter bundles so a run can be repeated."""

    steps: int = 200
    batch_size: int = 2
    lr: float | None = None  # None: per-method defaults (METHOD_LR)
    #: multiplies the per-method defaults (not an explicit ``lr``): a learning-rate search
    #: over one factor keeps the methods' rates in proportion
    lr_scale: float = 1.0
    weight_decay: float = 1e-4
    schedule: str = "auto"  # auto | cosine | warmup-cosine | constant
    warmup_fraction: float = 0.1
    loss: str = "auto"  # auto | mse | l1 (GAN backbones use adversarial + 100 L1)
    #: GAN backbones: steps trained with the pixel loss alone (MSE), before the adversarial
    #: term and the discriminator join. A generator with a global residual starts as the
    #: identity, and L1 (like the adversarial term) holds it there: every voxel's gradient is
    #: a sign, the background's exact zeros outvote the head, and the sparse answer "no
    #: correction" wins (measured: no gain in 300 L1 steps, +1.7 dB with MSE). From-scratch
    #: pre-training needs it; fine-tuning starts from a denoiser and keeps the paper's loss.
    gan_warmup_steps: int = 0
    patch_size: tuple[int, int, int] | None = None  # None: the model's window
    head_fraction: float = 0.9
    # -- quantitative fidelity (docs/training.md); the defaults are the paper's recipe --------
    #: patch sampling: ``head`` (centres in the head) or ``hot`` (``hot_fraction`` of the
    #: patches centred on the full-count image's hottest structures, the rest as ``head``)
    sampling: str = "head"
    hot_fraction: float = 0.3
    #: share of patches that get synthetic spheres, multiplied into input and target alike
    lesion_augment: float = 0.0
    #: weight of the low-frequency consistency term (block means of the prediction vs those of
    #: ``lowfreq_reference``: the input, unbiased in expectation, or the target)
    lowfreq_weight: float = 0.0
    lowfreq_reference: str = "input"
    lowfreq_block_mm: float = 12.0
    #: checkpoint choice: ``psnr`` (best validation PSNR) or ``faithful`` (best PSNR among the
    #: steps whose mean |regional bias| and |lesion SUVmean bias| are each no worse than the
    #: starting model's by more than ``select_tolerance_pct``)
    select: str = "psnr"
    select_tolerance_pct: float = 1.0
    val_every: int = 50
    #: validate once before the first step: the curve's step 0 is the model as given (the
    #: base, for fine-tuning), and a run that never beats it keeps it
    val_at_start: bool = True
    keep_best: bool = True
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    ddp: bool = True  # wrap in DistributedDataParallel when a process group is live

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Refuse values no run can use, before a model is touched."""
        from napari_petite.training.losses import LOWFREQ_REFERENCES, PIXEL_LOSSES

        choices = {"sampling": ("head", "hot"), "loss": PIXEL_LOSSES,
                   "lowfreq_reference": LOWFREQ_REFERENCES, "select": ("psnr", "faithful")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"Unknown {name.replace('_', ' ')} {getattr(self, name)!r}; "
                                  f"choose one of {', '.join(allowed)}.")
        for name in ("hot_fraction", "lesion_augment"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"The {name.replace('_', ' ')} is a share of patches between "
                                  f"0 and 1, not {getattr(self, name)}.")
        for name in ("lowfreq_weight", "select_tolerance_pct"):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"The {name.replace('_', ' ')} must be 0 or more, not "
                                  f"{getattr(self, name)}.")
        if not self.lowfreq_block_mm > 0:
            raise ConfigError(f"The low-frequency block must be above 0 mm, not "
                              f"{self.lowfreq_block_mm}.")

    def with_recipe(self, name: str, **options) -> TrainConfig:
        """This config trained with recipe ``name`` (:data:`RECIPES`); ``options`` (fidelity
        fields given beside it, as flags beside ``--recipe``) win. The CLI and the Fine-tune
        dock both call it, so a recipe means the same run in either."""
        if name not in RECIPES:
            raise ConfigError(f"Unknown training recipe {name!r}; choose one of "
                              f"{', '.join(RECIPES)}.")
        return replace(self, **{**RECIPES[name], **options})

    def recipe_fields(self) -> dict[str, Any]:
        """Every fidelity field, used or not: what a recipe decides."""
        return {k: getattr(self, k) for k in FIDELITY_FIELDS}

    def fidelity_options(self) -> dict[str, Any]:
        """The fidelity options that differ from the paper's recipe (for fingerprints and
        run names: only what was used)."""
        default = TrainConfig()
        main = ["sampling", "lesion_augment", "lowfreq_weight", "select"]
        if self.loss not in ("auto", "mse"):
            main.append("loss")
        out = {k: getattr(self, k) for k in main if getattr(self, k) != getattr(default, k)}
        if self.sampling == "hot":  # what a used option depends on, default or not
            out["hot_fraction"] = self.hot_fraction
        if self.lowfreq_weight:
            out.update(lowfreq_reference=self.lowfreq_reference,
                       lowfreq_block_mm=self.lowfreq_block_mm)
        if self.select == "faithful":
            out["select_tolerance_pct"] = self.select_tolerance_pct
        return out


#: ``--recipe``: named sets of the fidelity options (flags given beside it win)
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"sampling": "head", "lesion_augment": 0.0, "loss": "auto", "lowfreq_weight": 0.0,
              "select": "psnr"},
    # the best trade-off measured on mct -> vision (docs/training.md): 95 % of the paper
    # recipe's PSNR gain, mean |regional bias| 5.3 % instead of 6.4 %
    "faithful": {"sampling": "hot", "hot_fraction": 0.3, "lesion_augment": 0.5,
                 "lowfreq_weight": 10.0, "lowfreq_reference": "input", "select": "faithful"},
}

#: the TrainConfig fields a recipe decides (docs/training.md); those a recipe leaves out keep
#: their defaults
FIDELITY_FIELDS = ("sampling", "hot_fraction", "lesion_augment", "loss", "lowfreq_weight",
                   "lowfreq_reference", "lowfreq_block_mm", "select", "select_tolerance_pct")


#: what :func:`recipe_of` calls a config that matches no recipe
CUSTOM_RECIPE = "custom"


def recipe_of(config: TrainConfig) -> str:
    """The recipe ``config`` was made with ("paper", "faithful"), or "custom". Every fidelity
    field counts, not only those the recipe names: a faithful run with another loss is not the
    faithful recipe, and a form that showed it as such would describe another run."""
    fields = config.recipe_fields()
    for name in RECIPES:
        if TrainConfig().with_recipe(name).recipe_fields() == fields:
            return name
    return CUSTOM_RECIPE


@dataclass
class Event:
    """One report from the engine (JSON-able via :meth:`to_dict`)."""

    kind: str  # start | step | val | paused | resumed | checkpoint | done | stopped
    step: int
    total_steps: int
    loss: float | None = None
    lr: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    val: dict[str, float] | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


class Control:
    """Thread-safe stop / pause flags, checked by the engine between steps."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._run = threading.Event()
        self._run.set()

    def stop(self) -> None:
        self._stop.set()
        self._run.set()  # a paused run must wake up to notice the stop

    def pause(self) -> None:
        self._run.clear()

    def resume(self) -> None:
        self._run.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._run.is_set()

    def wait_while_paused(self, timeout: float = 0.1) -> None:
        while not self._run.wait(timeout):
            pass


@dataclass
class TrainResult:
    """What the run ended with: last step, losses, validation history, best state."""

    steps_done: int
    losses: list[float]
    val_history: list[dict[str, float]] = field(default_factory=list)
    best_val: dict[str, float] | None = None
    stopped: bool = False
    seconds: float = 0.0
    device: str = "cpu"


#: the fidelity figures ``select="faithful"`` holds to the start, and whether by magnitude
FAITHFUL_KEYS = (("region_abs_bias_pct", False), ("lesion_suvmean_bias_pct", True))


def choose_best(history: Sequence[dict], select: str = "psnr",
                tolerance_pct: float = 1.0) -> dict | None:
    """The validation record a run keeps: the best PSNR, among all records (``psnr``) or
    among those whose quantification is no worse than the first record's (the model as
    given) by more than ``tolerance_pct`` points (``faithful``). A figure missing at either
    end is no evidence either way; the first record is always eligible."""
    if not history:
        return None
    start = history[0]

    def eligible(record: dict) -> bool:
        if select != "faithful":
            return True
        for key, by_size in FAITHFUL_KEYS:
            now, then = record.get(key, math.nan), start.get(key, math.nan)
            if now != now or then != then or now is None or then is None:
                continue
            if (abs(now) if by_size else now) > (abs(then) if by_size else then) + tolerance_pct:
                return False
        return True

    return max((r for r in history if eligible(r)), key=lambda r: r["psnr"])


def _lr_groups(model, spec, base_lr: float | None, exclude=frozenset(),
               scale: float = 1.0) -> list[dict]:
    """AdamW parameter groups: each part at its method's rate, BitFit biases at 1e-3, both
    times ``scale`` (``exclude``: ids of tensors another optimizer steps)."""
    if not scale > 0:
        raise ConfigError(f"The learning-rate scale must be above 0, not {scale}.")
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in exclude:
            continue
        if base_lr is not None:
            lr = base_lr
        else:
            part = model.group_of(name)
            method = getattr(spec, part, "full") if part in ("encoder", "decoder") else "full"
            is_bias = name.endswith(".bias") and method not in ("full",)
            lr = scale * (METHOD_LR["bitfit"] if is_bias else METHOD_LR.get(method, 1e-3))
        groups.setdefault(lr, []).append(p)
    if not groups:
        raise ConfigError("Nothing to train: the chosen methods leave no trainable parameters "
                          "(encoder and decoder 'none' without BitFit). Choose a method.")
    return [{"params": ps, "lr": lr, "initial_lr": lr} for lr, ps in sorted(groups.items())]


def make_optimizers(model, spec, config: TrainConfig):
    """The run's optimizers: AdamW over the trainable denoiser tensors (per-method rates),
    and for a GAN whose discriminator trains, the discriminator's own Adam (pix2pix).

    Built here, handed to :class:`Trainer`, checkpointed by it: a resumed GAN run must
    continue with the discriminator's moments too, or its trace drifts from the straight run.
    """
    import torch

    head = {id(p) for p in model.discriminator.parameters()} if model.is_gan else set()
    groups = _lr_groups(model, spec, config.lr, exclude=head, scale=config.lr_scale)
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    d_params = [p for p in model.discriminator.parameters() if p.requires_grad] \
        if model.is_gan else []
    d_optimizer = torch.optim.AdamW(d_params, lr=DISCRIMINATOR_LR, betas=DISCRIMINATOR_BETAS) \
        if d_params else None
    return optimizer, d_optimizer


def _schedule(config: TrainConfig, backbone: str):
    kind = config.schedule
    if kind == "auto":  # the paper: warm-up cosine on UNETR, cosine on CVT-GAN
        kind = "warmup-cosine" if backbone == "unetr" else "cosine"
    steps = max(config.steps, 1)
    warm = int(config.warmup_fraction * steps) if kind == "warmup-cosine" else 0

    def factor(step: int) -> float:
        if kind == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(steps - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    if kind not in ("cosine", "warmup-cosine", "constant"):
        raise ConfigError(f"Unknown schedule {kind!r}; choose cosine, warmup-cosine or constant.")
    return factor


class Trainer:
    """Holds the model, optimizer, sampler and RNG state of one run; :meth:`run` is the loop."""

    def __init__(self, model, train_pairs: Sequence[TrainingPair],
                 val_pairs: Sequence[TrainingPair], config: TrainConfig, spec=None, *,
                 optimizers: tuple | None = None):
        """``optimizers``: (optimizer, discriminator optimizer or None) from
        :func:`make_optimizers`, built by the caller (the job builder); made here if None."""
        import torch

        from napari_petite.peft.apply import peft_state
        from napari_petite.training.device import resolve_device

        config.check()
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        state = peft_state(model)
        self.spec = spec if spec is not None else (state.spec if state else None)
        self.window = tuple(config.patch_size or model.patch_size)
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.sampler = PatchSampler(
            train_pairs, self.window, self.rng, config.head_fraction,
            hot_fraction=config.hot_fraction if config.sampling == "hot" else 0.0,
            augment=config.lesion_augment)
        spacings = {p.spacing for p in train_pairs}  # the low-frequency block, in voxels
        spacing = np.mean(list(spacings), axis=0) if spacings else np.ones(3)
        self.lowfreq_block = max(2, round(config.lowfreq_block_mm / float(np.mean(spacing))))
        self.val_pairs = list(val_pairs)
        self.optimizer, self.d_optimizer = optimizers or make_optimizers(model, self.spec,
                                                                         config)
        factor = _schedule(config, model.name)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.step = 0
        self.losses: list[float] = []
        self.val_history: list[dict[str, float]] = []
        self.best: tuple[float, dict] | None = None
        self.ddp_model = self._maybe_ddp()

    # -- distributed -----------------------------------------------------------------------
    def _maybe_ddp(self):
        import torch.distributed as dist

        if not (self.config.ddp and dist.is_available() and dist.is_initialized()):
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        # each rank samples its own patches; gradients are averaged over ranks
        self.rng = np.random.default_rng([self.config.seed, dist.get_rank()])
        self.sampler.rng = self.rng
        ids = [self.device.index] if self.device.type == "cuda" else None
        # a trainable discriminator steps outside DDP (its own optimizer, gradients averaged
        # by hand in _discriminator_step); DDP must not wait for gradients it never gets
        head = [p for p in self.model.discriminator.parameters() if p.requires_grad] \
            if self.model.is_gan else []
        for p in head:
            p.requires_grad_(False)
        try:
            return DistributedDataParallel(self.model, device_ids=ids)
        finally:
            for p in head:
                p.requires_grad_(True)

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (norm running statistics), as DDP does before each
        forward: each rank's last forward updated them from its own patches, and validation and
        the saved tensors must not depend on the rank."""
        if self.ddp_model is self.model:
            return
        import torch.distributed as dist

        for buf in self.model.buffers():
            dist.broadcast(buf, 0)

    # -- one step --------------------------------------------------------------------------
    @property
    def _adversarial(self) -> bool:
        """The GAN terms are on at this step (after the pixel-loss warm-up)."""
        return self.model.is_gan and self.step >= self.config.gan_warmup_steps

    def _loss(self, pred, target, low):
        from napari_petite.training.losses import lowfreq_loss

        loss = self._pixel_loss(pred, target, low)
        if self.config.lowfreq_weight:
            ref = low if self.config.lowfreq_reference == "input" else target
            loss = loss + self.config.lowfreq_weight * lowfreq_loss(pred, ref,
                                                                    self.lowfreq_block)
        return loss

    def _pixel_loss(self, pred, target, low):
        import torch.nn.functional as F

        from napari_petite.training.losses import pixel_loss

        if self.model.is_gan:
            if not self._adversarial:
                return F.mse_loss(pred, target)
            logits = self.model.discriminate(low, pred)
            adv = F.binary_cross_entropy_with_logits(logits, logits.new_ones(logits.shape))
            return adv + GAN_L1_WEIGHT * F.l1_loss(pred, target)
        return pixel_loss(self.config.loss, pred, target)

    def _discriminator_step(self, pred, target, low) -> None:
        """Pix2pix discriminator update (only when the spec trains the discriminator)."""
        import torch.nn.functional as F

        real = self.model.discriminate(low, target)
        fake = self.model.discriminate(low, pred.detach())
        loss = 0.5 * (F.binary_cross_entropy_with_logits(real, real.new_ones(real.shape))
                      + F.binary_cross_entropy_with_logits(fake, fake.new_zeros(fake.shape)))
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.ddp_model is not self.model:  # keep the ranks' discriminators identical
            import torch.distributed as dist

            for group in self.d_optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= dist.get_world_size()
        self.d_optimizer.step()

    def train_step(self) -> float:
        import torch

        from napari_petite.peft.apply import train_mode

        train_mode(self.model)
        low_np, full_np = self.sampler.batch(self.config.batch_size)
        low = torch.from_numpy(low_np).to(self.device)
        full = torch.from_numpy(full_np).to(self.device)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                            enabled=self.config.bf16):
            d_trains = self.d_optimizer is not None and self._adversarial
            if d_trains:
                for p in self.model.discriminator.parameters():
                    p.requires_grad_(False)
            pred = self.ddp_model(low)
            loss = self._loss(pred.float(), full, low)
            if d_trains:
                for p in self.model.discriminator.parameters():
                    p.requires_grad_(True)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if d_trains:
            self._discriminator_step(pred.float(), full, low)
        self.step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ConfigError(f"The training loss became {value} at step {self.step}; lower the "
                              "learning rate (--lr) or check the input volumes.")
        self.losses.append(value)
        return value

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Mean PSNR / SSIM / NRMSE in the head mask over the validation subjects, and the
        fidelity summary (``training/fidelity.py``) where the pairs carry a reference."""
        from napari_petite.training.inference import predict_volume
        from napari_petite.training.masks import head_mask
        from napari_petite.training.metrics import compare

        self._sync_buffers()
        rows = []
        for pair in self.val_pairs:
            pred = predict_volume(self.model, pair.low, window=self.window, device=self.device,
                                  autocast_bf16=self.config.bf16)
            m = compare(pred, pair.full, mask=head_mask(pair.full))
            row = {"psnr": m["psnr_mask"], "ssim": m["ssim_mask"], "nrmse": m["nrmse_mask"]}
            if pair.reference is not None:
                row.update(pair.reference.summary(pred))
            rows.append(row)
        keys = [k for k in rows[0] if all(k in r for r in rows)] if rows else []
        # a figure no subject measures (no lesions, no labels) is left out, not NaN: cards
        # and events stay strict JSON
        out = {k: float(np.nanmean([r[k] for r in rows])) for k in keys
               if any(r[k] == r[k] for r in rows)}
        out["step"] = self.step
        self.val_history.append(out)
        if self.best is None or self.best_record() is out:
            from napari_petite.peft.apply import trainable_state

            self.best = (out["psnr"], {k: v.detach().clone()
                                       for k, v in trainable_state(self.model).items()})
        return out

    def best_record(self) -> dict[str, float] | None:
        """The validation the run keeps (``select``; :func:`choose_best`)."""
        return choose_best(self.val_history, self.config.select,
                           self.config.select_tolerance_pct)

    def restore_best(self) -> None:
        if self.best is None:
            return
        import torch

        from napari_petite.peft.apply import trainable_state

        current = trainable_state(self.model)
        with torch.no_grad():
            for name, value in self.best[1].items():
                current[name].copy_(value)

    # -- resume checkpoints ----------------------------------------------------------------
    @property
    def _checkpoint_due(self) -> bool:
        """This step is one of the periodic checkpoints."""
        every = self.config.checkpoint_every
        return bool(every and self.config.checkpoint_dir and self.step % every == 0)

    @property
    def _writes_checkpoints(self) -> bool:
        """One writer per run: the single process, or rank 0 under DDP."""
        return self.ddp_model is self.model or is_main()

    def _optimizers(self) -> dict:
        """The run's optimizers by checkpoint prefix (the discriminator's when it trains)."""
        out = {"optim": self.optimizer}
        if self.d_optimizer is not None:
            out["d_optim"] = self.d_optimizer
        return out

    def save_checkpoint(self, folder: str | Path) -> Path:
        """Trainable tensors + optimizer + scheduler + RNG states + the best validated state,
        atomically, as safetensors."""
        import torch
        from safetensors.torch import save_file

        from napari_petite.io.atomic import atomic_path, write_text
        from napari_petite.peft.apply import trainable_state

        folder = Path(folder)
        tensors = {f"model/{k}": v.detach().cpu().contiguous()
                   for k, v in trainable_state(self.model).items()}
        groups = {}
        for prefix, optimizer in self._optimizers().items():
            opt = optimizer.state_dict()
            for idx, st in opt["state"].items():
                for key, value in st.items():
                    if torch.is_tensor(value):
                        tensors[f"{prefix}/{idx}/{key}"] = value.detach().cpu().contiguous()
            groups[prefix] = [{k: v for k, v in g.items() if k != "params"}
                              for g in opt["param_groups"]]
        tensors["rng/torch"] = torch.get_rng_state()
        if self.best is not None:  # the best validated state must outlive the process too
            tensors.update({f"best/{k}": v.detach().cpu().contiguous()
                            for k, v in self.best[1].items()})
        meta = {
            "step": self.step, "losses": self.losses, "val_history": self.val_history,
            "best_psnr": None if self.best is None else self.best[0],
            "scheduler": self.scheduler.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "optim_groups": groups["optim"],
            "d_optim_groups": groups.get("d_optim"),
            "config": self.config.to_dict(),
        }
        text = json.dumps(meta, default=str)
        # the state travels inside the tensors file too: a run killed between the two writes
        # must not pair step N's tensors with step N-1's schedule and RNG (resume.json is for
        # people and tools)
        with atomic_path(folder / "resume.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"resume": text})
        write_text(folder / "resume.json", text + "\n", overwrite=True)
        return folder

    def load_checkpoint(self, folder: str | Path) -> None:
        """Continue a run saved by :meth:`save_checkpoint` (same spec and data)."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        from napari_petite.io.jsonfile import parse_json, read_json

        folder = Path(folder)
        hint = "point --resume at a folder written by a previous run, or start afresh"
        if not (folder / "resume.safetensors").is_file():
            raise CheckpointError(f"Cannot resume from {folder}: it holds no resume.safetensors; "
                                  f"{hint}.")
        try:
            tensors = load_file(str(folder / "resume.safetensors"))
            with safe_open(str(folder / "resume.safetensors"), framework="pt") as fh:
                text = (fh.metadata() or {}).get("resume")
        except (OSError, SafetensorError) as err:
            raise CheckpointError(f"Cannot resume from {folder}: {err}; {hint}.") from None
        what = f"The resume state in {folder}"
        meta = parse_json(text, what=what, error=CheckpointError, hint=hint) if text is not None \
            else read_json(folder / "resume.json", what=what, error=CheckpointError, hint=hint)
        missing = [k for k in RESUME_KEYS if k not in meta]
        if missing or "rng/torch" not in tensors:
            lacking = ", ".join(missing) or "the random state"
            raise CheckpointError(f"{what} is incomplete (missing {lacking}); it was cut short "
                                  f"or edited, so the run cannot continue exactly; {hint}.")
        try:
            self._restore(folder, tensors, meta)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
            raise CheckpointError(f"{what} is damaged ({type(err).__name__}: {err}); "
                                  f"{hint}.") from None

    def _restore(self, folder: Path, tensors: dict, meta: dict) -> None:
        import torch

        from napari_petite.peft.apply import trainable_state

        current = trainable_state(self.model)
        names = {k[len("model/"):] for k in tensors if k.startswith("model/")}
        if names != set(current):
            raise CheckpointError(f"The resume checkpoint in {folder} was written for other "
                                  "trainable tensors (another spec or backbone); start afresh.")
        saved_groups = {"optim": meta["optim_groups"], "d_optim": meta.get("d_optim_groups")}
        for prefix, optimizer in self._optimizers().items():
            if saved_groups[prefix] is None or len(saved_groups[prefix]) != len(
                    optimizer.param_groups):
                what = "discriminator optimizer" if prefix == "d_optim" else "optimizer"
                raise CheckpointError(f"The resume checkpoint in {folder} holds no state for "
                                      f"this run's {what} (it was written for another spec, or "
                                      "by a version that did not save it); start afresh.")
        with torch.no_grad():
            for name in names:
                current[name].copy_(tensors[f"model/{name}"])
        for prefix, optimizer in self._optimizers().items():
            opt = optimizer.state_dict()
            state: dict[int, dict] = {}
            for key, value in tensors.items():
                if key.startswith(f"{prefix}/"):
                    _, idx, field_name = key.split("/", 2)
                    state.setdefault(int(idx), {})[field_name] = value
            opt["state"] = state
            for group, saved in zip(opt["param_groups"], saved_groups[prefix], strict=True):
                group.update(saved)
            optimizer.load_state_dict(opt)
        self.scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng/torch"])
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.step = int(meta["step"])
        self.losses = list(meta["losses"])
        self.val_history = list(meta["val_history"])
        best = {k[len("best/"):]: v for k, v in tensors.items() if k.startswith("best/")}
        if meta.get("best_psnr") is not None and set(best) == names:
            self.best = (float(meta["best_psnr"]), best)

    # -- the loop --------------------------------------------------------------------------
    def run(self, control: Control | None = None) -> Iterator[Event]:
        """Generator of events; returns a :class:`TrainResult` (``StopIteration.value``)."""
        control = control or Control()
        total = self.config.steps
        started = time.perf_counter()
        first_step = self.step
        yield Event("start", self.step, total, message=f"training on {self.device}")
        if (self.step == 0 and self.val_pairs and self.config.val_every
                and self.config.val_at_start):
            yield Event("val", 0, total, val=self.validate(),
                        elapsed_s=time.perf_counter() - started)
        stopped = False
        while self.step < total:
            if control.paused:
                yield Event("paused", self.step, total, elapsed_s=time.perf_counter() - started)
                control.wait_while_paused()
                if not control.stopped:
                    yield Event("resumed", self.step, total)
            if control.stopped:
                stopped = True
                break
            loss = self.train_step()
            elapsed = time.perf_counter() - started
            rate = elapsed / max(self.step - first_step, 1)
            yield Event("step", self.step, total, loss=loss,
                        lr=float(self.optimizer.param_groups[-1]["lr"]),
                        eta_s=rate * (total - self.step), elapsed_s=elapsed)
            if self.val_pairs and self.config.val_every and (
                    self.step % self.config.val_every == 0 or self.step == total):
                val = self.validate()
                yield Event("val", self.step, total, val=val, elapsed_s=elapsed)
            if self._checkpoint_due:
                if self._writes_checkpoints:
                    self.save_checkpoint(self.config.checkpoint_dir)
                yield Event("checkpoint", self.step, total,
                            message=str(self.config.checkpoint_dir))
        if (stopped and self.config.checkpoint_every and self.config.checkpoint_dir
                and not self._checkpoint_due and self._writes_checkpoints):
            self.save_checkpoint(self.config.checkpoint_dir)  # resume exactly where it stopped
        self._sync_buffers()
        if self.config.keep_best and self.best is not None:
            self.restore_best()
        seconds = time.perf_counter() - started
        best = self.best_record()
        yield Event("stopped" if stopped else "done", self.step, total, elapsed_s=seconds,
                    val=best)
        return TrainResult(self.step, self.losses, self.val_history, best, stopped, seconds,
                           str(self.device))
