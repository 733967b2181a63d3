"""From a dataset and a base checkpoint to a ready-to-train (or ready-to-run) model.

The CLI and the napari docks describe a fine-tuning job in the same words (dataset, target
scanner, subject split, base model, Mix-PEFT spec); this module turns those words into the
engine's inputs, so neither front end repeats the plumbing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from napari_petite.errors import CheckpointError, DatasetError
from napari_petite.io.dataset import Scanner
from napari_petite.training.sampling import TrainingPair, prepare_pair


@dataclass
class Split:
    """Which subjects of the target scanner train, validate (checkpoint choice) and test."""

    train: list[str]
    val: list[str]
    test: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def split_subjects(ids: Sequence[str], *, n_train: int | None = None, n_val: int = 1,
                   n_test: int | None = None) -> Split:
    """Deterministic split in sorted order: train first, then validation, then test.

    By default a third of the subjects (at least one) are held out for testing, one validates,
    and the rest train. Validation and test never overlap: choosing checkpoints on the test
    subjects (as the released PETITE code did) would report optimistic numbers.
    """
    ids = sorted(ids)
    if n_test is None:
        n_test = max(1, len(ids) // 3)
    if n_train is None:
        n_train = len(ids) - n_val - n_test
    if n_train < 1 or n_val < 0 or n_test < 0 or n_train + n_val + n_test > len(ids):
        raise DatasetError(
            f"Cannot split {len(ids)} subjects into {n_train} training, {n_val} validation and "
            f"{n_test} test subjects; the training set needs at least one subject. Add subjects "
            "or choose smaller --val/--test counts."
        )
    return Split(ids[:n_train], ids[n_train:n_train + n_val],
                 ids[n_train + n_val:n_train + n_val + n_test])


def load_pairs(scanner: Scanner, ids: Sequence[str], window) -> list[TrainingPair]:
    """Read and scale the (low, full) volumes of ``ids``."""
    from napari_petite.io.nifti import read_volume

    pairs = []
    for sid in ids:
        subject = scanner.subject(sid)
        low, full = read_volume(subject.low), read_volume(subject.full)
        pairs.append(prepare_pair(f"{scanner.id}/{sid}", low.data, full.data, window))
    return pairs


#: backbone whose shipped base model is used when neither a base nor a backbone is named
DEFAULT_BACKBONE = "unetr"


def shipped_base(backbone: str) -> Path:
    """The base checkpoint shipped for ``backbone`` (``sample_data/models``)."""
    from napari_petite._resources import sample_data_dir

    folder = sample_data_dir() / "models"
    found = sorted(folder.glob(f"{backbone}-*.safetensors")) if folder.is_dir() else []
    if not found:
        raise CheckpointError(f"No shipped base model for backbone {backbone!r}; pass one with "
                              "--base FILE (train one with `petite pretrain`).")
    return found[0]


def load_base(base: str | Path | None, backbone: str | None = None, device: str = "cpu"):
    """Load a base checkpoint (or the shipped one for ``backbone``): (model, card, sha256)."""
    from napari_petite.models.checkpoint import load_checkpoint, read_card

    if base is None:
        # no base and no backbone: the shipped UNETR (the paper's best Full-FT/PETITE backbone)
        base = shipped_base(backbone or DEFAULT_BACKBONE)
    held = read_card(base)["backbone"]  # refuse a mismatch before building the network
    if backbone is not None and held != backbone:
        raise CheckpointError(f"{base} holds a {held} model, not {backbone}; choose a "
                              f"{backbone} base or drop --backbone.")
    model, card = load_checkpoint(base, device=device)
    return model, card, card["sha256"]  # load_checkpoint has just checked it against the file


def adapted_model(base: str | Path | None, spec, *, seed: int = 0, backbone: str | None = None):
    """Base model with ``spec`` applied, PEFT tensors initialised from ``seed``.

    Returns (model, report, base_sha256).
    """
    import torch

    from napari_petite.peft.apply import apply_spec

    model, _, sha = load_base(base, backbone or spec.backbone)
    torch.manual_seed(seed)
    report = apply_spec(model, spec)
    return model, report, sha


def model_for_inference(base: str | Path | None, adapter: str | Path | None = None, *,
                        backbone: str | None = None, merge: bool = True):
    """The base model, with an adapter bundle loaded (and merged where exact) if given.

    Returns (model, description) where description names what is running.
    """
    from napari_petite.peft.bundle import load_adapter, read_card

    if adapter is not None and backbone is None:
        backbone = read_card(adapter)["spec"]["backbone"]
    model, _, sha = load_base(base, backbone)
    if adapter is None:
        return model, f"base {model.name}-{model.preset} (no adaptation)"
    spec = load_adapter(model, adapter, base_sha256=sha)
    if merge:
        from napari_petite.peft.merge import merge_peft

        merge_peft(model)
    return model, f"{model.name}-{model.preset} + {spec.label}"
