"""A MONAI ``UNETR`` state dict becomes this project's UNETR base checkpoint.

The PETITE paper's UNETR is MONAI's, so researchers hold MONAI checkpoints: their own, or
per-scanner weights released with a paper. :class:`~napari_petite.models.unetr.UNETRBackbone`
keeps MONAI's module names, so such a state dict loads into it once the network is built with
the same constructor options; the result is written as an ordinary checkpoint (safetensors +
card, :mod:`napari_petite.models.checkpoint`) that every command and dock accepts.

Reading never unpickles arbitrary objects: ``.pt`` / ``.pth`` go through ``torch.load`` with
``weights_only=True`` (tensors and plain containers only) and ``.safetensors`` through
safetensors. The options that shape the tensors (window size, hidden size, MLP width,
feature size, qkv bias, affine norms) are read from the tensors; the number of attention heads
changes no shape, so MONAI's default (12) is assumed unless given. Options given by the user
must agree with the tensors.
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import Any

import torch

from napari_petite.errors import CheckpointError, ConfigError

#: files a MONAI state dict may come in
SUFFIXES = (".pt", ".pth", ".safetensors")
#: MONAI ``UNETR`` constructor defaults for what the tensors cannot tell
MONAI_DEFAULTS: dict[str, Any] = {"num_heads": 12}
#: options a user may give, in MONAI's names
OPTIONS = ("img_size", "hidden_size", "mlp_dim", "num_heads", "feature_size", "qkv_bias",
           "norm_affine")
#: the imported network must reproduce MONAI's output on a random window this closely
MAX_ABS_DIFF = 1e-5
#: keys wrapping a state dict in common training checkpoints
_WRAPPERS = ("state_dict", "model", "net", "network")
_PATCH_KEY = "vit.patch_embedding.patch_embeddings.weight"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pt`` / ``.pth`` (weights only) or ``.safetensors`` file, unwrapped
    from ``{"state_dict": ...}``-style containers and DataParallel's ``module.`` prefix."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        raise CheckpointError(f"{path.name} is not a .pt, .pth or .safetensors file; choose the "
                              "file holding the MONAI UNETR state dict.")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; check the path.")
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                state: Any = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own types for bad headers
            raise CheckpointError(f"{path.name} cannot be read as safetensors ({err}).") \
                from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError...
            reason = " ".join(str(err).split())[:160]
            raise CheckpointError(
                f"{path.name} cannot be read as a weights-only PyTorch file ({reason}); only "
                "tensors are loaded (unpickling arbitrary objects can run code), so save "
                "model.state_dict() with torch.save, or as .safetensors.") from None
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path.name} holds no state dict (a mapping of names to "
                              "tensors); save model.state_dict() of the MONAI UNETR.")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _shape(state: dict[str, torch.Tensor], key: str, name: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"The state dict has no {key}, so it is not a MONAI UNETR (or "
                              f"was built with other options than napari-petite reads: {name}).")
    return tuple(state[key].shape)


def infer_options(state: dict[str, torch.Tensor], given: dict[str, Any] | None = None
                  ) -> tuple[dict[str, Any], list[str]]:
    """MONAI constructor options of the network ``state`` came from: (options, the names read
    from the tensors). ``given`` options must agree with the tensors; ``num_heads`` is taken
    from ``given`` or MONAI's default."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"Unknown MONAI UNETR option(s) {', '.join(unknown)}; napari-petite "
                          f"reads {', '.join(OPTIONS)}.")
    if "vit.patch_embedding.patch_embeddings.1.weight" in state:
        raise CheckpointError("This UNETR was built with proj_type='perceptron'; napari-petite "
                              "builds MONAI's default proj_type='conv', so retrain or convert "
                              "it with that default.")
    hidden, channels, *patch = _shape(state, _PATCH_KEY, "proj_type='conv'")
    if channels != 1 or tuple(patch) != (16, 16, 16):
        raise CheckpointError(f"This UNETR takes {channels} input channel(s) in {patch} "
                              "patches; napari-petite denoises one PET channel with MONAI's "
                              "16-voxel 3D patches.")
    out_shape = _shape(state, "out.conv.conv.weight", "out_channels=1")
    if out_shape[0] != 1:
        raise CheckpointError(f"This UNETR has {out_shape[0]} output channels; a PET denoiser "
                              "has one (out_channels=1).")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"vit\.blocks\.(\d+)\.", k))}
    if len(layers) != 12:
        raise CheckpointError(f"The state dict has {len(layers)} ViT blocks; MONAI's UNETR "
                              "always has 12, so this is not a MONAI UNETR.")
    if "encoder1.layer.norm1.running_mean" in state:
        raise CheckpointError("This UNETR uses batch norm; napari-petite builds MONAI's "
                              "default instance norm (norm_name='instance').")
    n_patches = _shape(state, "vit.patch_embedding.position_embeddings",
                       "pos_embed_type='learnable'")[1]
    side = round(n_patches ** (1 / 3))
    read: dict[str, Any] = {
        "hidden_size": hidden,
        "mlp_dim": _shape(state, "vit.blocks.0.mlp.linear1.weight", "mlp_dim")[0],
        "feature_size": _shape(state, "encoder1.layer.conv1.conv.weight", "res_block=True")[0],
        "qkv_bias": "vit.blocks.0.attn.qkv.bias" in state,
        "norm_affine": "encoder1.layer.norm1.weight" in state,
    }
    if side**3 == n_patches:
        read["img_size"] = (16 * side,) * 3
    options = dict(read)
    for key, value in given.items():
        if key == "img_size":
            value = (int(value),) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
            if len(value) != 3 or any(v % 16 for v in value) \
                    or value[0] * value[1] * value[2] != n_patches * 16**3:
                raise ConfigError(f"img_size {list(value)} does not fit the weights: their "
                                  f"position embedding holds {n_patches} patches of 16³ "
                                  "voxels.")
        elif key in read and value != read[key]:
            raise ConfigError(f"{key}={value} was given, but the weights were trained with "
                              f"{key}={read[key]}; leave the option out to use the weights' "
                              "value.")
        options[key] = value
    if "img_size" not in options:
        raise ConfigError(f"The position embedding holds {n_patches} patches, which is not a "
                          "cube, so the window size cannot be read from the weights; give it "
                          "(--img-size D H W).")
    for key, value in MONAI_DEFAULTS.items():
        options.setdefault(key, value)
    if options["hidden_size"] % int(options["num_heads"]):
        raise ConfigError(f"hidden_size {options['hidden_size']} is not divisible by num_heads "
                          f"{options['num_heads']}; give the number of heads the network was "
                          "trained with (--num-heads).")
    return options, sorted(read)


def backbone_config(options: dict[str, Any]) -> dict[str, Any]:
    """The UNETR backbone configuration of MONAI options (MONAI's network: no residual)."""
    return dict(patch_size=tuple(options["img_size"]), hidden_size=int(options["hidden_size"]),
                mlp_dim=int(options["mlp_dim"]), num_heads=int(options["num_heads"]),
                feature_size=int(options["feature_size"]), qkv_bias=bool(options["qkv_bias"]),
                norm_affine=bool(options["norm_affine"]), dropout_rate=0.0, residual=False)


def build_from_state(state: dict[str, torch.Tensor], options: dict[str, Any]):
    """The UNETR backbone with ``state`` loaded (strict), in eval mode."""
    from napari_petite.models.unetr import UNETRBackbone

    model = UNETRBackbone("paper", **backbone_config(options))
    try:
        model.load_monai_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"The weights do not fit a MONAI UNETR with options "
                              f"{options} ({first}); give the options it was built with.") \
            from None
    return model.eval()


def check_against_monai(model, state: dict[str, torch.Tensor], options: dict[str, Any],
                        seed: int = 0) -> float:
    """Max abs difference between ``model`` and MONAI's own ``UNETR`` built with the same
    options and holding ``state``, on one random window: the import is refused unless the
    project's network computes what MONAI's does (it cannot tell a wrong head count: both
    would be built with it)."""
    from monai.networks.nets import UNETR

    with torch.device("meta"):
        reference = UNETR(in_channels=1, out_channels=1, img_size=tuple(options["img_size"]),
                          feature_size=int(options["feature_size"]),
                          hidden_size=int(options["hidden_size"]),
                          mlp_dim=int(options["mlp_dim"]), num_heads=int(options["num_heads"]),
                          norm_name=("instance", {"affine": bool(options["norm_affine"])}),
                          qkv_bias=bool(options["qkv_bias"]))
    reference.load_state_dict(state, strict=True, assign=True)
    x = torch.rand((1, 1, *options["img_size"]), generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return float((reference.eval()(x) - model.eval()(x)).abs().max())


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


def import_base(path: str | os.PathLike, out: str | os.PathLike, *,
                given: dict[str, Any] | None = None, source: str | None = None,
                command: str | None = None, overwrite: bool = False):
    """Read a MONAI UNETR state dict and write it as a checkpoint + card at ``out``.

    The card records the source file (name, sha256), the MONAI options (and which were read
    from the tensors), and who and what made it. Returns ``(checkpoint path, card)``.
    """
    import contextlib

    from napari_petite.io.atomic import reserve
    from napari_petite.models.checkpoint import SUFFIX, card_path

    path = Path(path).expanduser()
    out = Path(out).expanduser()
    if out.suffix != SUFFIX:
        raise ConfigError(f"The imported base is written as safetensors; give --out a name "
                          f"ending in {SUFFIX}, not {out.name!r}.")
    with contextlib.ExitStack() as claims:  # before anything is read: never over the input
        for dest in (out, card_path(out)):
            claims.enter_context(reserve(dest, inputs=[path], overwrite=overwrite, kind="file"))
        return _import(path, out, given, source, command, overwrite)


def _import(path: Path, out: Path, given, source, command, overwrite: bool):
    """The import itself, with ``out`` and its card reserved."""
    import napari_petite
    from napari_petite.models.checkpoint import file_sha256, read_card, save_checkpoint

    state = read_state_dict(path)
    options, read = infer_options(state, given)
    model = build_from_state(state, options)
    diff = check_against_monai(model, state, options)
    if not diff <= MAX_ABS_DIFF:
        raise CheckpointError(f"The imported network differs from MONAI's UNETR with the same "
                              f"weights by up to {diff:.3g} on a test window, so this MONAI "
                              "version builds UNETR differently; import it with the MONAI "
                              "version it was trained with.")
    extra = {
        "kind": "base model imported from a MONAI UNETR state dict",
        "imported_from": {"file": path.name, "path": str(path.resolve()),
                          "sha256": file_sha256(path)},
        "monai_options": {k: list(v) if isinstance(v, tuple) else v
                          for k, v in sorted(options.items())},
        "options_from_weights": read,
        "max_abs_diff_vs_monai": diff,
        "made_by": {"tool": f"napari-petite {napari_petite.__version__}",
                    "command": command or "napari_petite.models.monai_import.import_base",
                    "user": _who()},
    }
    if source:
        extra["source"] = source
    written = save_checkpoint(model, out, extra=extra, overwrite=overwrite, inputs=[path])
    return written, read_card(written)
