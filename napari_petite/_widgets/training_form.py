"""Training settings: how long and how a run trains, as a :class:`TrainConfig`.

The form shows what the run will use: a resumed run's own settings are put back into it
(:meth:`TrainingSettings.show_config`), so the form never differs from the run it describes.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_petite._widgets.layout import Collapsible

#: a GUI run writes a resumable checkpoint this often (and when stopped)
CHECKPOINT_EVERY = 25
#: steps of a GUI run unless the user changes them: about a minute on a CPU
DEFAULT_STEPS = 100
#: validate this often by default: enough points for a curve in a one-minute run
DEFAULT_VAL_EVERY = 10


def _spin(low: int, high: int, value: int, special: str | None = None) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    return box


class TrainingSettings(QWidget):
    """Steps, validation interval, learning rate, patch, batch, device, seed."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        from napari_petite.training.device import CHOICES

        self.steps = _spin(1, 1_000_000, DEFAULT_STEPS)
        self.steps.setToolTip("optimizer steps; each sees 'batch' random patches")
        self.val_every = _spin(0, 100_000, DEFAULT_VAL_EVERY, "never")
        self.val_every.setToolTip("measure PSNR on the validation subject this often; the best "
                                  "step is kept")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setSpecialValueText("auto")
        self.lr.setToolTip("learning rate for every tensor; 'auto' = the paper's rate per "
                           "method (1e-3; 1e-2 for adapters, scale-and-shift and prompts)")
        self.patch = _spin(0, 512, 0, "auto")
        self.patch.setToolTip("edge of the cubic training patch in voxels; 'auto' = the "
                              "window the base was trained with")
        self.batch = _spin(1, 64, 2)
        self.device = QComboBox()
        self.device.addItems(CHOICES)
        self.device.setToolTip("auto: CUDA or Apple MPS when present, else the CPU")
        self.seed = _spin(0, 2**31 - 1, 0)
        self.steps.setSuffix(" steps")
        self.val_every.setSuffix(" steps")
        box = QGroupBox("How long")
        main = QGridLayout(box)
        for i, (label, widget) in enumerate((("train for", self.steps),
                                             ("validate every", self.val_every))):
            main.addWidget(QLabel(label), i, 0)
            main.addWidget(widget, i, 1)
        self.advanced = Collapsible("Advanced: learning rate, patch, batch, device, seed",
                                    "How each step trains; the defaults follow the paper")
        grid = QGridLayout()
        cells = (("learning rate", self.lr), ("patch", self.patch), ("batch", self.batch),
                 ("device", self.device), ("seed", self.seed))
        for i, (label, widget) in enumerate(cells):
            grid.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            grid.addWidget(widget, i // 2, 2 * (i % 2) + 1)
        self.advanced.body.addLayout(grid)
        main.addWidget(self.advanced, 2, 0, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    def config(self, checkpoint_dir: str | Path | None = None):
        """The TrainConfig of a run (checkpointing into ``checkpoint_dir`` when given)."""
        from napari_petite.training.engine import TrainConfig

        patch = self.patch.value()
        return TrainConfig(steps=self.steps.value(), batch_size=self.batch.value(),
                           lr=self.lr.value() or None, val_every=self.val_every.value(),
                           patch_size=(patch,) * 3 if patch else None, seed=self.seed.value(),
                           device=self.device.currentText(),
                           checkpoint_every=CHECKPOINT_EVERY if checkpoint_dir else 0,
                           checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)

    def show_config(self, config) -> None:
        """Put a run's own config into the form."""
        self.steps.setValue(config.steps)
        self.val_every.setValue(config.val_every)
        self.lr.setValue(config.lr or 0.0)
        self.patch.setValue(config.patch_size[0] if config.patch_size else 0)
        self.batch.setValue(config.batch_size)
        if self.device.findText(config.device) >= 0:
            self.device.setCurrentText(config.device)
        self.seed.setValue(config.seed)
