"""Model checkpoints: safetensors weights + a JSON card, checked when loaded.

A checkpoint is ``<name>.safetensors`` (every tensor of the state dict, buffers included, so
BatchNorm running statistics travel with the weights) and ``<name>.json`` beside it (the
"card": backbone, preset, full config, sha256 of the weights file, parameter count, torch
version, creation time, plus whatever the caller adds: training data, metrics, command).
The card is what rebuilds the network, and its sha256 is what adapter bundles pin their base
to. Weights are never read through pickle: ``torch.load`` can run arbitrary code from a file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from napari_petite.errors import CheckpointError, PetiteError
from napari_petite.io.atomic import atomic_write, reserve, write_text
from napari_petite.models.base import Backbone
from napari_petite.models.registry import build_model

SUFFIX = ".safetensors"
FORMAT = "napari-petite-checkpoint"
FORMAT_VERSION = 1
#: files that would need unpickling to read
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")
_CARD_KEYS = ("format", "backbone", "preset", "config", "sha256")


def card_path(path: str | os.PathLike) -> Path:
    """The JSON card beside a checkpoint: ``model.safetensors`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """Config and card values as JSON types (tuples become lists, scalars plain numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        return value.item()
    raise TypeError(f"config value {value!r} is not JSON-serialisable")


def save_checkpoint(
    model: Backbone,
    path: str | os.PathLike,
    *,
    extra: dict | None = None,
    overwrite: bool = False,
    inputs=(),
) -> Path:
    """Write ``model``'s state dict to ``path`` (``.safetensors``) and its card beside it.

    Both files are written atomically; the card is written last, so a card always describes
    a complete weights file. Returns the weights path.
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise CheckpointError(
            f"Checkpoints are written as safetensors; give a file name ending in {SUFFIX} "
            f"instead of {path.name!r}."
        )
    extra = _jsonable(dict(extra or {}))
    clash = sorted(set(extra) & {*_CARD_KEYS, "format_version", "n_params", "weights_file"})
    if clash:
        raise ValueError(f"extra card entries may not replace {clash}")
    # contiguous CPU copies: safetensors refuses views and tensors sharing storage
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "backbone": model.name, "preset": model.preset}
    needed = sum(t.nbytes for t in tensors.values())
    with contextlib.ExitStack() as claims:  # weights and card: both places checked first
        for target in (path, card_path(path)):
            claims.enter_context(reserve(target, inputs=inputs, overwrite=overwrite,
                                         kind="file", needed=needed))
        digest: list[str] = []

        def write(tmp: Path) -> None:
            save_file(tensors, str(tmp), metadata=metadata)
            digest.append(file_sha256(tmp))

        dest = atomic_write(path, write, inputs=inputs, overwrite=overwrite)
        card = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": model.name,
            "preset": model.preset,
            "config": _jsonable(model.config),
            "sha256": digest[0],
            "weights_file": dest.name,
            "n_params": sum(p.numel() for p in model.parameters()),
            "n_tensors": len(tensors),
            "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **extra,
        }
        write_text(card_path(dest), json.dumps(card, indent=2) + "\n", inputs=inputs,
                   overwrite=overwrite)
    return dest


def _check_readable_path(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name} is a pickle-based PyTorch file; only safetensors checkpoints are read "
            "(unpickling can run arbitrary code). A MONAI UNETR state dict becomes one with "
            f"`petite import-base {path.name} --out base.safetensors`."
        )
    if path.suffix != SUFFIX:
        raise CheckpointError(
            f"{path.name} is not a {SUFFIX} file; choose the checkpoint's .safetensors file."
        )
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist; check the path.")


def read_card(path: str | os.PathLike) -> dict:
    """The JSON card of checkpoint ``path`` (validated; the weights are not read)."""
    path = Path(path)
    _check_readable_path(path)
    card_file = card_path(path)
    if not card_file.is_file():
        raise CheckpointError(
            f"Checkpoint {path.name} has no card {card_file.name} beside it; the card says "
            "which network the weights belong to, so copy it along with the weights."
        )
    from napari_petite.io.jsonfile import read_json

    card = read_json(card_file, what=f"The card {card_file}", error=CheckpointError,
                     hint="restore it from the original checkpoint", expect=None)
    missing = [k for k in _CARD_KEYS if not isinstance(card, dict) or k not in card]
    if missing or card.get("format") != FORMAT or not isinstance(card.get("config"), dict):
        raise CheckpointError(
            f"{card_file} is not a napari-petite checkpoint card (missing or invalid: "
            f"{', '.join(missing) or 'format/config'}); restore it from the original checkpoint."
        )
    return card


def load_checkpoint(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    backbone: str | None = None,
    preset: str | None = None,
) -> tuple[Backbone, dict]:
    """Rebuild the network described by the card of ``path`` and load its weights strictly.

    ``backbone``/``preset``, when given, are what the caller expects; a checkpoint of another
    network is refused. Returns ``(model, card)`` with the model in eval mode on ``device``.
    """
    path = Path(path)
    card = read_card(path)
    sha = file_sha256(path)
    if sha != card["sha256"]:
        raise CheckpointError(
            f"{path.name} does not match the sha256 in its card (corrupted or replaced file); "
            "copy the checkpoint again from its source."
        )
    for what, wanted in (("backbone", backbone), ("preset", preset)):
        if wanted is not None and card[what] != wanted:
            raise CheckpointError(
                f"{path.name} is a {card['backbone']}/{card['preset']} checkpoint but "
                f"{what} {wanted!r} was asked for; choose a matching checkpoint or {what}."
            )
    try:
        model = build_model(card["backbone"], card["preset"], **card["config"])
    except (PetiteError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"The card of {path.name} describes a network this version cannot build ({err})."
        ) from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path.name} cannot be read as safetensors ({err}).") from None
    _check_state(model, tensors, path.name)
    refuse_non_finite(tensors, path.name, "Use another checkpoint or train it again.")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), card


def refuse_non_finite(tensors: dict[str, torch.Tensor], what: str, todo: str) -> None:
    """Refuse weights holding NaN or infinite values (a run that diverged), naming a few."""
    broken = sorted(k for k, t in tensors.items()
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if broken:
        raise CheckpointError(f"{what} holds NaN or infinite weights ({', '.join(broken[:3])}"
                              f"{' ...' if len(broken) > 3 else ''}); the run that saved it "
                              f"diverged. {todo}")


def _check_state(model: Backbone, tensors: dict[str, torch.Tensor], name: str) -> None:
    """Refuse weights whose keys or shapes differ from the rebuilt network, naming a few."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(k for k in set(expected) & set(tensors)
                    if tuple(expected[k].shape) != tuple(tensors[k].shape))

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) ({few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({few(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es) ({few(shapes)})")
    if problems:
        raise CheckpointError(
            f"The weights in {name} do not fit the network its card describes: "
            f"{'; '.join(problems)}; the card and weights belong to different models."
        )
