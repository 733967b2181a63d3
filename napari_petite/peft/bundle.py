"""Adapter bundles: the few tensors a PEFT run trained, pinned to the base they adapt.

A bundle is a folder holding

- ``adapter.safetensors``: only the trainable tensors — PEFT modules, BitFit biases, norm
  parameters, whole parts under ``full`` — plus the running statistics of norm layers in fully
  fine-tuned parts (the only buffers a run may change);
- ``adapter.json``: the Mix-PEFT spec, the base checkpoint's sha256, the model config, the
  training config, metrics, seed, and every tensor's name, shape and dtype.

The folder is written under a temporary sibling name and renamed into place
(:func:`napari_petite.io.atomic.atomic_dir`), so a crash never leaves a half-written bundle
under the final name, and it gets the usual modes (a bundle is meant to be shared).

Loading rebuilds the PEFT modules from the spec on a base model, refuses another backbone,
preset, config or base checkpoint, and loads the tensors strictly (a missing or unexpected
tensor is an error, never silently skipped); a refused bundle leaves the model as it was.
Nothing is ever unpickled.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from napari_petite.errors import CheckpointError, ConfigError
from napari_petite.io.atomic import atomic_dir
from napari_petite.models.base import Backbone
from napari_petite.peft.apply import apply_spec, peft_state, remove_spec, trainable_state
from napari_petite.peft.spec import MixPEFTSpec

FORMAT = "napari-petite-adapter"
FORMAT_VERSION = 1
WEIGHTS = "adapter.safetensors"
CARD = "adapter.json"


def _sha256(path: Path) -> str:
    from napari_petite.models.checkpoint import file_sha256

    return file_sha256(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{value!r} is not JSON-serialisable")


def _normalised(value: Any) -> Any:
    """JSON round trip, so tuples and lists compare equal."""
    return json.loads(json.dumps(value, default=_json_default))


def save_adapter(
    model: Backbone,
    spec: MixPEFTSpec,
    path_dir: str | os.PathLike,
    *,
    base_sha256: str,
    training: dict | None = None,
    metrics: dict | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    inputs=(),
) -> Path:
    """Write the bundle of ``model`` (which ``spec`` was applied to) into folder ``path_dir``
    (never replacing, holding or lying inside one of ``inputs``)."""
    state = peft_state(model)
    if state is None:
        raise ConfigError("This model has no PEFT spec applied; apply_spec() it before saving "
                          "an adapter (a plain model is saved with save_checkpoint).")
    if state.merged:
        raise ConfigError("This model's PEFT modules were merged into its weights; save the "
                          "adapter before merging, or save the merged model as a checkpoint.")
    if state.spec.to_dict() != spec.to_dict():
        raise ConfigError("The spec given differs from the one applied to the model; pass the "
                          "applied spec.")
    if not isinstance(base_sha256, str) or len(base_sha256) != 64:
        raise ConfigError("base_sha256 must be the 64-hex sha256 of the base checkpoint file "
                          "the adapter was trained from.")
    dest = Path(path_dir).expanduser()
    tensors = {k: v.detach().to("cpu").contiguous().clone()
               for k, v in trainable_state(model).items()}
    with atomic_dir(dest, overwrite=overwrite, inputs=inputs, kind="adapter bundle") as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        card = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "spec": spec.to_dict(),
            "base_sha256": base_sha256,
            "backbone": model.name,
            "preset": model.preset,
            "model_config": _normalised(model.config),
            "training": training or {},
            "metrics": metrics or {},
            "seed": seed,
            "n_trainable": state.report.n_trainable,
            "n_total": state.report.n_total,
            "percent": state.report.percent,
            "adapter_sha256": _sha256(tmp / WEIGHTS),
            "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                        for k, v in tensors.items()},
            "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        (tmp / CARD).write_text(json.dumps(card, indent=2, default=_json_default) + "\n",
                                encoding="utf-8")
    return dest


def read_card(path_dir: str | os.PathLike) -> dict[str, Any]:
    """The bundle's ``adapter.json``, checked for format."""
    folder = Path(path_dir).expanduser()
    card_file = folder / CARD
    if not folder.is_dir() or not card_file.is_file() or not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder} is not an adapter bundle (it needs {CARD} and "
                              f"{WEIGHTS}); choose the folder a training run saved.")
    from napari_petite.io.jsonfile import read_json

    card = read_json(card_file, error=CheckpointError, expect=None,
                     hint="the bundle is damaged, save it again")
    if not isinstance(card, dict) or card.get("format") != FORMAT \
            or not isinstance(card.get("spec"), dict) or "backbone" not in card["spec"]:
        raise CheckpointError(f"{card_file} is not a napari-petite adapter card (a JSON object "
                              "with format and spec); the bundle is damaged, save it again.")
    sha = card.get("adapter_sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise CheckpointError(f"{card_file} lacks the sha256 of its tensors (adapter_sha256), "
                              "so the bundle's integrity cannot be checked; save the adapter "
                              "again with this version.")
    try:
        MixPEFTSpec.from_dict(card["spec"])
    except ConfigError as err:
        raise CheckpointError(f"{card_file} holds an invalid spec ({err}); the bundle is "
                              "damaged, save it again.") from None
    return card


def load_adapter(model: Backbone, path_dir: str | os.PathLike, *,
                 base_sha256: str | None = None) -> MixPEFTSpec:
    """Apply the bundle's spec to base ``model`` and load its tensors; returns the spec.

    ``model`` must be the base network (weights of the checkpoint the adapter was trained
    from, no PEFT applied). ``base_sha256``: that checkpoint's sha256, checked against the
    one the bundle was trained on.
    """
    folder = Path(path_dir).expanduser()
    card = read_card(folder)
    spec = MixPEFTSpec.from_dict(card["spec"])
    if spec.backbone != model.name:
        raise CheckpointError(f"The adapter in {folder} was trained for backbone "
                              f"{spec.backbone!r}, but the model is {model.name!r}; load it "
                              f"into a {spec.backbone} base model.")
    if spec.preset != model.preset or card.get("model_config") != _normalised(model.config):
        raise CheckpointError(f"The adapter in {folder} was trained on a {spec.backbone} "
                              f"{spec.preset!r} model with another configuration than this "
                              f"{model.preset!r} one; load it into the base it was trained on.")
    if base_sha256 is not None and card.get("base_sha256") != base_sha256:
        raise CheckpointError(f"The adapter in {folder} was trained on base checkpoint sha256 "
                              f"{card.get('base_sha256')}, but the base given has sha256 "
                              f"{base_sha256}; load the matching base checkpoint.")
    weights = folder / WEIGHTS
    if card["adapter_sha256"] != _sha256(weights):
        raise CheckpointError(f"{weights} does not match the sha256 in its {CARD}; the bundle "
                              "is damaged or was edited, save it again.")
    try:
        tensors = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{weights} cannot be read as safetensors ({err}).") from None

    from napari_petite.models.checkpoint import refuse_non_finite

    refuse_non_finite(tensors, f"The adapter in {folder}", "Train it again.")
    apply_spec(model, spec)
    targets = trainable_state(model)
    missing = sorted(set(targets) - set(tensors))
    unexpected = sorted(set(tensors) - set(targets))
    wrong = [k for k, t in targets.items()
             if k in tensors and tuple(t.shape) != tuple(tensors[k].shape)]
    if missing or unexpected or wrong:
        remove_spec(model)  # all or nothing: nothing was copied, the base stays as it was
        if wrong:
            raise CheckpointError(f"The adapter in {folder} has tensors of other shapes than "
                                  f"this model ({wrong[:5]}); it was saved from a different "
                                  "setup.")
        raise CheckpointError(
            f"The adapter in {folder} does not fit this model: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}; it was saved from a different setup."
        )
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(tensors[name].to(device=target.device, dtype=target.dtype))
    return spec
