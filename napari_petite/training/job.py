"""The one job pipeline: from a dataset and a base checkpoint to a driven training run.

Every front end (``petite finetune / pretrain / sweep / demo``, the Fine-tune dock, the
benchmarks and the tests) describes a run as a :class:`JobRequest` (scanner, split, config,
base, spec), turns it into a :class:`Run` with :func:`build_run` and drives it with
:func:`drive` (or ``yield from run.trainer.run(control)`` in a napari worker); the run's
record for cards is :meth:`Run.record`. Nothing else assembles seed, base, spec, pairs and
engine, so the CLI and the GUI cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_petite.errors import CheckpointError, ConfigError, DatasetError
from napari_petite.io.dataset import Scanner
from napari_petite.peft.spec import MixPEFTSpec
from napari_petite.training.engine import TrainConfig
from napari_petite.training.sampling import TrainingPair, prepare_pair


@dataclass
class Split:
    """Which subjects of the target scanner train, validate (checkpoint choice) and test."""

    train: list[str]
    val: list[str]
    test: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def split_subjects(ids: Sequence[str], *, n_train: int | None = None,
                   n_val: int | None = None, n_test: int | None = None) -> Split:
    """Deterministic split in sorted order: train first, then validation, then test.

    By default a third of the subjects (at least one) are held out for testing, one validates,
    and the rest train. Validation and test never overlap: choosing checkpoints on the test
    subjects (as the released PETITE code did) would report optimistic numbers.
    """
    ids = sorted(ids)
    if n_val is None:
        n_val = 1
    if n_test is None:
        n_test = max(1, len(ids) // 3)
    if n_train is None:
        n_train = len(ids) - n_val - n_test
    if n_train < 1 or n_val < 0 or n_test < 0 or n_train + n_val + n_test > len(ids):
        raise DatasetError(
            f"Cannot split {len(ids)} subjects into {n_train} training, {n_val} validation and "
            f"{n_test} test subjects; the training set needs at least one subject. Add subjects "
            "or choose smaller --n-val/--n-test counts."
        )
    return Split(ids[:n_train], ids[n_train:n_train + n_val],
                 ids[n_train + n_val:n_train + n_val + n_test])


def load_pairs(scanner: Scanner, ids: Sequence[str], window, *,
               fidelity: bool = False) -> list[TrainingPair]:
    """Read and scale the (low, full) volumes of ``ids``; ``fidelity``: also give each pair
    the reference its validation fidelity summary is measured against (the subject's labels
    and lesions when it has them, intensity-defined regions otherwise)."""
    from napari_petite.io.volumes import read_any

    pairs = []
    for sid in ids:
        subject = scanner.subject(sid)
        low, full = read_any(subject.low), read_any(subject.full)
        pair = prepare_pair(f"{scanner.id}/{sid}", low.data, full.data, window, low.spacing)
        if fidelity:
            pair.reference = fidelity_reference(subject, pair, window)
        pairs.append(pair)
    return pairs


def fidelity_reference(subject, pair: TrainingPair, window):
    """The fidelity reference of a prepared pair: its labels padded like its volumes."""
    from napari_petite.io.nifti import read_volume
    from napari_petite.training.evaluation import label_names
    from napari_petite.training.fidelity import Reference
    from napari_petite.training.windows import pad_to_window

    def padded(path):
        return None if path is None else pad_to_window(read_volume(path).data, window)[0]

    meta = subject.meta if isinstance(subject.meta, dict) else {}
    return Reference.build(pair.full, pair.spacing, labels=padded(subject.labels),
                           names=label_names(meta), instances=padded(subject.lesions),
                           lesions=meta.get("lesions"), scale=pair.scale)


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


def resolve_base(base: str | Path | None, backbone: str | None = None) -> tuple[Path, dict]:
    """The base checkpoint to use and its card, read without building the network.

    No base: the shipped one of ``backbone`` (no backbone either: the shipped UNETR, the
    paper's best Full-FT/PETITE backbone). A base of another backbone is refused.
    """
    from napari_petite.models.checkpoint import read_card

    path = Path(base).expanduser() if base is not None \
        else shipped_base(backbone or DEFAULT_BACKBONE)
    card = read_card(path)
    if backbone is not None and card["backbone"] != backbone:
        raise CheckpointError(f"{path} holds a {card['backbone']} model, not {backbone}; "
                              f"choose a {backbone} base or drop --backbone.")
    return path, card


def load_base(base: str | Path | None, backbone: str | None = None, device: str = "cpu"):
    """Load a base checkpoint (or the shipped one for ``backbone``): (model, card, sha256)."""
    from napari_petite.models.checkpoint import load_checkpoint

    base, _ = resolve_base(base, backbone)  # refuse a mismatch before building the network
    model, card = load_checkpoint(base, device=device)
    return model, card, card["sha256"]  # load_checkpoint has just checked it against the file


@dataclass
class Scratch:
    """A network to train from scratch (pre-training) instead of loading a base."""

    backbone: str
    preset: str = "small"
    overrides: dict = field(default_factory=dict)


@dataclass
class JobRequest:
    """One training run in the words every front end uses.

    ``scanner`` is the scanner whose subjects train (the target when adapting, the source
    when pre-training); ``split`` says which of its subjects train, validate and test.
    ``base`` (a checkpoint; None: the shipped base of ``backbone``) is adapted with ``spec``
    (None: the paper's PETITE choice for its backbone), unless ``scratch`` names a network to
    train from scratch with all weights. ``resume`` continues a run from its checkpoint folder.
    """

    scanner: Scanner
    split: Split
    config: TrainConfig
    spec: MixPEFTSpec | None = None
    base: str | Path | None = None
    backbone: str | None = None
    scratch: Scratch | None = None
    resume: str | Path | None = None
    source: str | None = None  # the base's source scanner, for the record

    def to_dict(self) -> dict:
        """What repeats this request (JSON): a GUI run folder keeps it as ``run.json``, so
        continuing the run uses its own data, base, methods and step budget, not the form's."""
        return {"data": str(self.scanner.path.parent), "target": self.scanner.id,
                "split": self.split.to_dict(), "config": self.config.to_dict(),
                "spec": None if self.spec is None else self.spec.to_dict(),
                "base": None if self.base is None else str(self.base),
                "backbone": self.backbone, "source": self.source,
                "scratch": None if self.scratch is None else asdict(self.scratch)}

    @classmethod
    def from_dict(cls, doc: dict, *, resume: str | Path | None = None) -> JobRequest:
        """The request :meth:`to_dict` wrote (the dataset is read again from its folder)."""
        from napari_petite.io.dataset import discover

        try:
            scanner = discover(doc["data"]).scanner(doc["target"])
            config = TrainConfig(**{**doc["config"], "patch_size": (
                tuple(doc["config"]["patch_size"]) if doc["config"].get("patch_size")
                else None)})
            return cls(scanner, Split(**doc["split"]), config,
                       spec=MixPEFTSpec.from_dict(doc["spec"]) if doc.get("spec") else None,
                       base=doc.get("base"), backbone=doc.get("backbone"),
                       scratch=Scratch(**doc["scratch"]) if doc.get("scratch") else None,
                       resume=resume, source=doc.get("source"))
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"The run description lacks or mangles {err}; it was not "
                                  "written by this version. Start a new run.") from None


@dataclass
class Run:
    """A request made real: the model with its spec applied and the engine ready to drive."""

    request: JobRequest
    model: Any
    spec: MixPEFTSpec
    report: Any
    trainer: Any
    base_path: Path | None
    base_card: dict
    base_sha256: str | None

    def record(self, result) -> dict:
        """The ``training`` record of adapter cards, base cards and GUI runs (one place)."""
        req = self.request
        return {
            "config": req.config.to_dict(), "spec": self.spec.to_dict(),
            "data": str(req.scanner.path.parent), "source": req.source
            or self.base_card.get("source"), "target": req.scanner.id,
            "split": req.split.to_dict(), "base": None if self.base_path is None
            else str(self.base_path), "trainable_params": self.report.n_trainable,
            "discriminator_params": self.report.head_trainable,
            "steps_done": result.steps_done, "stopped": result.stopped,
            "seconds": round(result.seconds, 2), "device": result.device,
            "final_loss": result.losses[-1] if result.losses else None,
            "losses": list(result.losses),
        }

    @staticmethod
    def metrics(result) -> dict:
        """The validation record (best step and the whole history)."""
        return {"val_best": result.best_val, "val_history": result.val_history}


def build_run(request: JobRequest) -> Run:
    """Load (or build) the network, apply the spec, read the subjects, make the engine.

    Everything that can be refused is checked before the subjects are read: the base's card,
    the spec against the network, the config. Seeding follows one order everywhere (seed,
    then build or apply), so the CLI, the docks and the benchmarks start from the same
    initial tensors for the same seed.
    """
    import torch

    from napari_petite.models.registry import build_model
    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.spec import MixPEFTSpec, petite_spec
    from napari_petite.training.device import resolve_device
    from napari_petite.training.engine import Trainer, make_optimizers
    from napari_petite.training.step_memory import check_step_memory

    request.config.check()  # before any model is built or read
    seed = request.config.seed
    if request.scratch is not None:
        s = request.scratch
        torch.manual_seed(seed)
        try:
            model = build_model(s.backbone, s.preset, **s.overrides)
        except TypeError as err:
            raise ConfigError(f"Invalid model option for {s.backbone}: {err}.") from None
        spec = request.spec or MixPEFTSpec(s.backbone, s.preset, "full", "full", False)
        base_path, card, sha = None, {}, None
    else:
        backbone = request.backbone or (request.spec.backbone if request.spec else None)
        base_path, _ = resolve_base(request.base, backbone)
        model, card, sha = load_base(base_path, backbone)
        spec = request.spec or petite_spec(model.name, model.preset)
        torch.manual_seed(seed)
    report = apply_spec(model, spec)
    window = tuple(request.config.patch_size or model.patch_size)
    check_step_memory(model, window, request.config.batch_size,
                      resolve_device(request.config.device))
    scanner, split = request.scanner, request.split
    trainer = Trainer(model, load_pairs(scanner, split.train, window),
                      load_pairs(scanner, split.val, window, fidelity=True), request.config,
                      spec,
                      optimizers=make_optimizers(model, spec, request.config))
    if request.resume:
        trainer.load_checkpoint(request.resume)
    return Run(request, model, spec, report, trainer, base_path, card, sha)


def drive(run: Run, on_event=None, control=None):
    """Run the engine to the end (or to a stop through ``control``); return its TrainResult.

    ``on_event`` sees every engine event; ``control`` (a :class:`Control`) is the one way
    to pause or stop it. For a generator that yields the events instead (napari workers),
    use ``yield from run.trainer.run(control)``.
    """
    gen = run.trainer.run(control)
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            return done.value
        if on_event is not None:
            on_event(event)


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
