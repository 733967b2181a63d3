"""The base model a fine-tune starts from: a backbone, its checkpoint, what the card says.

Changing the backbone picks that backbone's shipped base (a UNETR checkpoint under a CVT-GAN
choice would adapt the wrong network), and the card of the chosen checkpoint fixes the
preset and network configuration the rest of the Fine-tune dock counts with.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_petite.errors import PetiteError


class BaseChooser(QWidget):
    """Backbone + base checkpoint; emits ``changed`` after either moved."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        from napari_petite.models.registry import backbone_names

        self.card: dict | None = None
        self.backbone = QComboBox()
        self.backbone.addItems(backbone_names())
        self.backbone.setToolTip("The network: UNETR (ViT encoder, CNN decoder) or 3D CVT-GAN")
        self.base = QLineEdit()
        self.base.setPlaceholderText("checkpoint (.safetensors) pre-trained on the source")
        self.base.editingFinished.connect(lambda: self.set_base(self.base.text() or None))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.base, 1)
        row.addWidget(browse)
        self.info = QLabel()
        self.info.setWordWrap(True)
        box = QGroupBox("Base model")
        form = QFormLayout(box)
        form.addRow("network", self.backbone)
        form.addRow("checkpoint", row)
        form.addRow(self.info)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)
        self.backbone.currentIndexChanged.connect(self._backbone_changed)
        self._backbone_changed()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Base checkpoint", self.base.text(),
                                              "safetensors checkpoint (*.safetensors)")
        if path:
            self.set_base(path)

    def _backbone_changed(self, *_) -> None:
        """Another network: its shipped base, unless the chosen checkpoint already is one."""
        from napari_petite.training.job import shipped_base

        wanted = self.backbone.currentText()
        if self.card is not None and self.card.get("backbone") == wanted:
            return
        try:
            self.set_base(shipped_base(wanted))
        except (PetiteError, OSError):
            self.set_base(None)

    def set_base(self, path) -> None:
        """Choose a checkpoint; a refused one leaves no base chosen, with the reason shown."""
        from napari_petite.models.checkpoint import read_card

        self.card = None
        self.base.setText(str(path) if path else "")
        if path:
            try:
                self.card = read_card(path)
            except PetiteError as err:
                self.info.setText(f"⚠ {err}")
                self.info.setStyleSheet("color: #e0a040;")
        if self.card is not None:
            card = self.card
            if card["backbone"] != self.backbone.currentText():
                self.backbone.blockSignals(True)
                self.backbone.setCurrentText(card["backbone"])
                self.backbone.blockSignals(False)
            source = f", pre-trained on {card['source']}" if card.get("source") else ""
            self.info.setText(f"{card['backbone']} {card['preset']}{source}")
            self.info.setToolTip(f"{card.get('n_params', 0):,} weights in the checkpoint; the "
                                 "count below includes the tensors the chosen methods add")
            self.info.setStyleSheet("")
        elif not path:
            self.info.setText("No base chosen: choose the checkpoint to adapt.")
        self.changed.emit()

    @property
    def path(self) -> Path | None:
        """The chosen checkpoint (even one whose card was refused: Start then says why)."""
        text = self.base.text().strip()
        return Path(text).expanduser() if text else None

    def network(self) -> tuple[str, str, dict | None]:
        """(backbone, preset, config) of the network a run would adapt."""
        if self.card is not None:
            return self.card["backbone"], self.card["preset"], self.card["config"]
        return self.backbone.currentText(), "small", None
