"""Training settings: how long and how a run trains, as a :class:`TrainConfig`.

The training recipe is the engine's (``TrainConfig.with_recipe``, the same as ``petite
finetune --recipe``): faithful by default, the paper's to reproduce it. The form shows what
the run will use: a resumed run's own settings are put back into it
(:meth:`TrainingSettings.show_config`), a recipe this form cannot choose included, so the
form never differs from the run it describes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from qtpy.QtCore import Qt
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
from napari_petite.training.engine import CUSTOM_RECIPE

#: a GUI run writes a resumable checkpoint this often (and when stopped)
CHECKPOINT_EVERY = 25
#: steps of a GUI run unless the user changes them: about a minute on a CPU
DEFAULT_STEPS = 100
#: validate this often by default: enough points for a curve in a one-minute run
DEFAULT_VAL_EVERY = 10

#: the training recipes offered, recommended first: engine name -> (label, tooltip)
RECIPE_CHOICES = {
    "faithful": ("faithful (recommended)",
                 "Training that keeps the numbers you read: more training patches on hot "
                 "spots, synthetic lesions added to some patches, regional mean values held "
                 "close to the low-count input's, and the step kept is the best one whose "
                 "lesion and region numbers are no worse than the base model's (same as "
                 "petite finetune --recipe faithful)"),
    "paper": ("paper's (reproduction)",
              "Exactly the published training: patches anywhere in the head, image error "
              "only, the step with the best PSNR is kept even if lesion or region numbers "
              "drift (same as --recipe paper)"),
}
#: the entry that shows a saved run's recipe when it is neither of the above
CUSTOM = CUSTOM_RECIPE
CUSTOM_LABEL = "custom (as saved)"
#: a run's training recipe in the words of the "what runs" line
RECIPE_WORDS = {"faithful": "faithful training recipe", "paper": "the paper's training recipe",
                CUSTOM: "custom training options"}


def recipe_words(config) -> str:
    """"faithful training recipe": which recipe ``config`` trains with, in words."""
    from napari_petite.training.engine import recipe_of

    return RECIPE_WORDS[recipe_of(config)]


def _spin(low: int, high: int, value: int, special: str | None = None) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    return box


class TrainingSettings(QWidget):
    """Steps, validation interval, training recipe; learning rate, patch, batch, device,
    seed under *Advanced*."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        from napari_petite.training.device import CHOICES

        self.steps = _spin(1, 1_000_000, DEFAULT_STEPS)
        self.steps.setToolTip("optimizer steps; each sees 'batch' random patches")
        self.val_every = _spin(0, 100_000, DEFAULT_VAL_EVERY, "never")
        self.val_every.setToolTip("measure PSNR and the lesion and region numbers on the "
                                  "validation subject this often; the best step is kept")
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
        self.recipe = QComboBox()
        for name, (label, tip) in RECIPE_CHOICES.items():
            self.recipe.addItem(label, name)
            self.recipe.setItemData(self.recipe.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self._custom: dict | None = None  # the fidelity fields "custom (as saved)" stands for
        self.recipe.currentIndexChanged.connect(self._recipe_chosen)
        self._recipe_chosen()
        box = QGroupBox("How to train")
        main = QGridLayout(box)
        for i, (label, widget) in enumerate((("train for", self.steps),
                                             ("validate every", self.val_every),
                                             ("training recipe", self.recipe))):
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
        main.addWidget(self.advanced, 3, 0, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    def _recipe_chosen(self) -> None:
        """Tooltip of the chosen entry; "custom (as saved)" goes once another is chosen (it
        stands for the opened run's options only)."""
        chosen = self.recipe.currentData()
        if chosen != CUSTOM and self._custom is not None:
            self._custom = None
            self.recipe.removeItem(self.recipe.findData(CUSTOM))
        self.recipe.setToolTip(self.recipe.itemData(self.recipe.currentIndex(),
                                                    Qt.ItemDataRole.ToolTipRole) or "")

    def config(self, checkpoint_dir: str | Path | None = None):
        """The TrainConfig of a run (checkpointing into ``checkpoint_dir`` when given)."""
        from napari_petite.training.engine import TrainConfig

        patch = self.patch.value()
        config = TrainConfig(steps=self.steps.value(), batch_size=self.batch.value(),
                             lr=self.lr.value() or None, val_every=self.val_every.value(),
                             patch_size=(patch,) * 3 if patch else None,
                             seed=self.seed.value(), device=self.device.currentText(),
                             checkpoint_every=CHECKPOINT_EVERY if checkpoint_dir else 0,
                             checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)
        recipe = self.recipe.currentData()
        if recipe == CUSTOM:
            return replace(config, **self._custom)
        return config.with_recipe(recipe)

    def show_config(self, config) -> None:
        """Put a run's own config into the form (its recipe too, as "custom (as saved)" when
        it is neither the faithful nor the paper's)."""
        from napari_petite.training.engine import recipe_of

        recipe = recipe_of(config)
        if recipe == CUSTOM:
            if self._custom is None:
                self.recipe.addItem(CUSTOM_LABEL, CUSTOM)
                self.recipe.setItemData(self.recipe.count() - 1, "The opened run's own "
                                        "training options, which neither recipe matches; "
                                        "choose a recipe to leave them",
                                        Qt.ItemDataRole.ToolTipRole)
            self._custom = config.recipe_fields()
        self.recipe.setCurrentIndex(self.recipe.findData(recipe))
        self._recipe_chosen()
        self.steps.setValue(config.steps)
        self.val_every.setValue(config.val_every)
        self.lr.setValue(config.lr or 0.0)
        self.patch.setValue(config.patch_size[0] if config.patch_size else 0)
        self.batch.setValue(config.batch_size)
        if self.device.findText(config.device) >= 0:
            self.device.setCurrentText(config.device)
        self.seed.setValue(config.seed)
