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


@dataclass
class TrainedModel:
    """A model adapted in this session (or loaded from a bundle), ready to run or save."""

    model: Any
    spec: Any
    base_path: Path
    base_sha256: str
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    seed: int = 0
    bundle: Path | None = None

    @property
    def label(self) -> str:
        return self.spec.label


class Session(QObject):
    """Shared selection state of one viewer's docks."""

    dataset_changed = Signal()
    selection_changed = Signal()
    base_changed = Signal()
    trained_changed = Signal()

    def __init__(self, viewer) -> None:
        super().__init__()
        self._viewer = weakref.ref(viewer)
        self.dataset = None  # napari_petite.io.dataset.Dataset
        self.source: str | None = None
        self.target: str | None = None
        self.split = None  # napari_petite.training.job.Split
        self.base_path: Path | None = None
        self.trained: TrainedModel | None = None

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

    def set_base(self, path: Path | None) -> None:
        self.base_path = Path(path) if path else None
        self.base_changed.emit()

    def set_trained(self, trained: TrainedModel | None) -> None:
        self.trained = trained
        self.trained_changed.emit()


def unwrap(viewer):
    """The viewer itself: napari hands each plugin dock its own public-only proxy of it."""
    return getattr(viewer, "__wrapped__", viewer)


_SESSIONS: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()


def session_for(viewer) -> Session:
    """The viewer's shared session (created on first use; lives as long as a dock holds it)."""
    viewer = unwrap(viewer)
    session = _SESSIONS.get(id(viewer))
    if session is None or session.viewer is not viewer:
        session = Session(viewer)
        _SESSIONS[id(viewer)] = session
    return session
