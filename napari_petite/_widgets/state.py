"""What the three docks of one viewer share: the dataset, the chosen scanners and split, the
base model and the model trained in this session.

napari builds each dock separately, so they meet here: :func:`session_for` returns one
:class:`Session` per viewer. Signals tell the other docks when a choice changed, so no dock
reads another dock's widgets (form values never drift from what a run really uses).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

#: layer metadata key naming the dataset subject and volume kind a layer came from
ROLE_KEY = "petite"


@dataclass
class TrainedModel:
    """A model adapted in this session (or loaded from a bundle), ready to run or save.

    ``name`` is given by :meth:`Session.add_model` and is unique in the session: every run
    and every loaded bundle stays selectable under its own name.
    """

    model: Any
    spec: Any
    base_path: Path
    base_sha256: str
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    seed: int = 0
    bundle: Path | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def improved(self) -> bool:
        """It beat its starting point on validation (or trained without validating)."""
        best = self.metrics.get("val_best")
        if best is None:
            return bool(self.training.get("steps_done")) or self.bundle is not None
        return best.get("step", 0) > 0


class Session(QObject):
    """Shared selection state of one viewer's docks."""

    dataset_changed = Signal()
    selection_changed = Signal()
    base_changed = Signal()
    models_changed = Signal()
    #: a run started or ended (``running`` says what trains, in words)
    run_changed = Signal()

    def __init__(self, viewer) -> None:
        super().__init__()
        self._viewer = weakref.ref(viewer)
        self.dataset = None  # napari_petite.io.dataset.Dataset
        self.source: str | None = None
        self.target: str | None = None
        self.split = None  # napari_petite.training.job.Split
        self.base_path: Path | None = None
        self.base_card: dict | None = None
        self.models: list[TrainedModel] = []
        self.running: str | None = None
        self._runs = 0

    @property
    def trained(self) -> TrainedModel | None:
        """The newest adapted model (run or loaded bundle), if any."""
        return self.models[-1] if self.models else None

    def inputs(self) -> list[Path]:
        """What this session reads (the dataset folder, the base checkpoint): no export may
        replace, hold or lie inside them."""
        paths = [self.dataset.root] if self.dataset is not None else []
        return paths + ([self.base_path] if self.base_path is not None else [])

    def model_named(self, name: str) -> TrainedModel | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def viewer(self):
        return self._viewer()

    def target_scanner(self):
        """The target Scanner, or None when no dataset/target is chosen."""
        if self.dataset is None or self.target not in self.dataset.scanners:
            return None
        return self.dataset.scanners[self.target]

    def set_dataset(self, dataset) -> None:
        self.dataset = dataset
        self.dataset_changed.emit()

    def set_selection(self, source: str | None, target: str | None, split) -> None:
        self.source, self.target, self.split = source, target, split
        self.selection_changed.emit()

    def set_base(self, path: Path | None, card: dict | None = None) -> None:
        self.base_path = Path(path) if path else None
        self.base_card = card
        self.base_changed.emit()

    def set_running(self, what: str | None) -> None:
        """What trains now, in words (None: nothing). While a run trains, the docks lock the
        inputs it uses (dataset, scanners, split, base, methods, settings), so no form can
        differ from what runs."""
        self.running = what
        self.run_changed.emit()

    def add_model(self, model: TrainedModel, *, loaded: bool = False) -> str:
        """Keep ``model`` under a new name of its own (nothing is replaced); return it.

        ``loaded``: it came from a bundle on disk (named after its folder), not a run here.
        """
        if loaded and model.bundle is not None:
            stem = f"bundle {model.bundle.name}"
        else:
            self._runs += 1
            target = model.training.get("target") or "?"
            from napari_petite._widgets.method_form import plain_recipe

            stem = f"run {self._runs}: {plain_recipe(model.spec, parts_named=False)} on {target}"
        name, n = stem, 1
        while self.model_named(name) is not None:
            n += 1
            name = f"{stem} ({n})"
        model.name = name
        self.models.append(model)
        self.models_changed.emit()
        return name


def short_name(name: str) -> str:
    """"run 2: low-rank updates + scale and shift + biases on vision" -> "run 2": narrow
    headers and canvas labels cut long names (the whole name goes in tooltips and layer
    metadata)."""
    return name.split(":", 1)[0]


def unwrap(viewer):
    """The viewer itself: napari hands each plugin dock its own public-only proxy of it."""
    return getattr(viewer, "__wrapped__", viewer)


_SESSIONS: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()


def session_for(viewer) -> Session:
    """The viewer's shared session (created on first use; lives as long as a dock holds it).
    Every dock starts here, so this is also where the viewer's repaints get the faster
    shader parse (:mod:`.glsl_parse`), programs relinked only for new code
    (:mod:`.program_reuse`), its scene rebuilds place the overlays once
    (:mod:`.overlay_placement`), the garbage collector has fewer objects to walk
    (:mod:`.shader_objects`) and its passes get short (:mod:`.heap`), and napari's unit
    registry starts building off the GUI thread (:mod:`.unit_registry`)."""
    from napari_petite._widgets import (
        glsl_parse,
        heap,
        overlay_placement,
        program_reuse,
        shader_objects,
        unit_registry,
    )

    glsl_parse.install()
    program_reuse.install()
    overlay_placement.install()
    shader_objects.slim()
    heap.install()
    viewer = unwrap(viewer)
    session = _SESSIONS.get(id(viewer))
    if session is None or session.viewer is not viewer:
        session = Session(viewer)
        _SESSIONS[id(viewer)] = session
    heap.watch(viewer)
    heap.settle()
    unit_registry.warm()
    return session
