"""Which scan to reconstruct, which full-count scan to compare with, and with which model.

The model list holds the base model and every model of the session under its own name (each
fine-tuning run, each loaded bundle), so reconstructing with one never replaces another.
"""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QWidget

from napari_petite._widgets.state import ROLE_KEY, short_name
from napari_petite.errors import ConfigError

#: reconstructed layers are named "<prefix> · <short model name>" (the canvas labels each
#: panel with its layer's name; the model's whole name is in the layer's metadata)
RECON_PREFIX = "reconstructed"
NONE = "—"
BASE = "base model"


def recon_name(model_name: str) -> str:
    return f"{RECON_PREFIX} · {short_name(model_name)}"


def is_derived(layer) -> bool:
    """A layer this dock made (a reconstruction or a difference), not a scan."""
    return layer.metadata.get(ROLE_KEY, {}).get("kind") in ("reconstructed", "difference")


class ModelChoice(QWidget):
    """Low-count layer, full-count layer and model; refreshes itself from the viewer and
    emits ``scans_changed`` when the low- or full-count choice moved."""

    scans_changed = Signal()

    def __init__(self, viewer, session, parent=None) -> None:
        super().__init__(parent)
        self.viewer, self.session = viewer, session
        self._known = 0
        self.low, self.full, self.model = QComboBox(), QComboBox(), QComboBox()
        self.low.setToolTip("The low-count (short) scan to reconstruct")
        self.full.setToolTip("The full-count scan to compare with (optional)")
        self.model.setToolTip("The base model, or a model adapted in this session")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("low-count scan", self.low)
        form.addRow("full-count scan", self.full)
        form.addRow("model", self.model)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed):
            ev.connect(self.refresh_layers)
        for combo in (self.low, self.full):
            combo.currentTextChanged.connect(lambda *_: self.scans_changed.emit())
        session.models_changed.connect(self.refresh_models)
        self.refresh_layers()
        self.refresh_models()

    def images(self, kind: str | None = None) -> list:
        from napari.layers import Image

        return [lay for lay in self.viewer.layers
                if isinstance(lay, Image) and lay.ndim == 3 and not lay.rgb
                and not is_derived(lay)
                and (kind is None or lay.metadata.get(ROLE_KEY, {}).get("kind") == kind)]

    def refresh_layers(self, event=None) -> None:
        """Offer the image layers. A subject's scans loaded in 'Scanner data' become the
        choice (that is what the user asked to look at); any other layer added (a dropped
        file) is only offered, so it never replaces what the panels show."""
        names = [lay.name for lay in self.images()]
        added = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" \
            else None
        added_kind = added.metadata.get(ROLE_KEY, {}).get("kind") if added is not None \
            and added.name in names else None
        for combo, kind in ((self.low, "low"), (self.full, "full")):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            if combo is self.full:
                combo.addItem(NONE)
            combo.addItems(names)
            preferred = [lay.name for lay in self.images(kind)]
            if added_kind == kind:  # opened in 'Scanner data' to be looked at
                combo.setCurrentText(added.name)
            elif combo is self.full and added_kind == "low" and current in names and \
                    self.viewer.layers[current].data.shape != added.data.shape:
                combo.setCurrentText(NONE)  # another scan's full count cannot be compared
            elif current in names:
                combo.setCurrentText(current)
            elif preferred:
                combo.setCurrentText(preferred[-1])
            combo.blockSignals(False)
            if combo.currentText() != current:
                self.scans_changed.emit()

    def refresh_models(self, *_) -> None:
        """Base first, then every session model; a newly added one becomes the choice."""
        names = [m.name for m in self.session.models]
        current = self.model.currentData()
        pick = names[-1] if len(names) > self._known else current
        self._known = len(names)
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem(BASE, BASE)
        for model in self.session.models:  # the technical recipe in the tooltip
            self.model.addItem(model.name, model.name)
            self.model.setItemData(self.model.count() - 1, model.label, 3)  # ToolTipRole
        self.model.setCurrentIndex(max(0, self.model.findData(pick)))
        self.model.blockSignals(False)

    def layer(self, combo):
        name = combo.currentText()
        return self.viewer.layers[name] if name and name != NONE and name in self.viewer.layers \
            else None

    def loader(self):
        """(name, callable run in the worker returning (model, description)) of the chosen
        model."""
        return self.loader_for(self.model.currentData())

    def loader_for(self, choice: str):
        """:meth:`loader` of the model named ``choice`` (:data:`BASE` or a session model)."""
        if choice != BASE:
            trained = self.session.model_named(choice)
            if trained is None:
                raise ConfigError("That model is no longer in the session; choose another.")
            return choice, lambda: (trained.model, trained.name)
        base = self.session.base_path
        if base is None:
            raise ConfigError("Choose a base checkpoint in the 'Fine-tune' dock first.")

        def load():
            from napari_petite.training.job import load_base

            model, card, _ = load_base(base)
            return model, f"base {card['backbone']}/{card['preset']}"

        return BASE, load
