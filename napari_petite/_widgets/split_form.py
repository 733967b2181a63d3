"""Source and target scanner, and how the target's subjects split into train / validate /
test (sorted order, as ``petite finetune`` splits them)."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QSpinBox, QVBoxLayout, QWidget

from napari_petite.errors import PetiteError


def _count(value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(0, 99)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class SplitForm(QWidget):
    """Emits ``changed`` whenever the scanners or the counts change."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.source, self.target = QComboBox(), QComboBox()
        self.source.setToolTip("The scanner the base model was pre-trained on")
        self.target.setToolTip("Your scanner: the one to adapt to")
        self.n_val = _count(1, "subjects that pick the best training step (never trained on)")
        self.n_test = _count(1, "subjects kept for judging the result (never trained on)")
        self.label = QLabel()
        self.label.setWordWrap(True)
        box = QGroupBox("Adaptation")
        form = QFormLayout(box)
        form.addRow("source scanner (base model)", self.source)
        form.addRow("target scanner", self.target)
        form.addRow("validation subjects", self.n_val)
        form.addRow("test subjects", self.n_test)
        form.addRow(self.label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)
        for combo in (self.source, self.target):
            combo.currentIndexChanged.connect(self.changed)
        for spin in (self.n_val, self.n_test):
            spin.valueChanged.connect(self.changed)

    def set_scanners(self, ids: list[str]) -> None:
        """Offer ``ids``: the first as source, the second (if any) as target."""
        for combo, default in ((self.source, 0), (self.target, 1)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(ids)
            combo.setCurrentIndex(min(default, len(ids) - 1))
            combo.blockSignals(False)

    def split(self, dataset):
        """The split of the chosen target's subjects, shown on the label (None if none)."""
        from napari_petite.training.job import split_subjects

        target = self.target.currentText() or None
        if dataset is None or target not in dataset.scanners:
            self.label.setText("")
            return None
        ids = [s.id for s in dataset.scanners[target].subjects]
        try:
            split = split_subjects(ids, n_val=self.n_val.value(), n_test=self.n_test.value())
        except PetiteError as err:
            self.label.setText(str(err))
            self.label.setStyleSheet("color: #e0a040;")
            return None
        text = (f"train: {', '.join(split.train)}\nvalidate: {', '.join(split.val) or '-'}"
                f"\ntest: {', '.join(split.test) or '-'}")
        same = target == (self.source.currentText() or None) and len(dataset.scanners) > 1
        if same:  # the split still serves reconstructing and exporting its test subjects
            text = (f"The source and the target are both {target}: the base was pre-trained "
                    "there, so fine-tuning is refused; choose your scanner as the target.\n"
                    + text)
        self.label.setText(text)
        self.label.setStyleSheet("color: #e0a040;" if same else "")
        return split
