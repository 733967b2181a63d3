"""The Mix-PEFT form: a method for the encoder, one for the decoder, BitFit, and the chosen
methods' options, generated from their typed configs (:mod:`napari_petite.peft.config`).

Each option row is a magicgui widget made from the field's type, range, choices and help, so
the form offers exactly the values the library accepts; fields whose default is "let the
method decide" (LoRA alpha, VPT tokens) show that as the lowest entry, labelled "default".
Methods that do not fit a part stay listed, greyed, with the reason in their tooltip.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_petite._widgets.layout import Collapsible

#: what a clinician reads for each method; the technical name goes in the tooltip
PLAIN = {"none": "frozen", "full": "all weights", "layernorm": "normalisation layers",
         "bitfit": "biases only", "lora": "low-rank updates", "adapter": "small adapters",
         "ssf": "scale and shift", "vpt": "prompt tokens", "ia3": "feature rescaling"}
TECHNICAL = {"none": "no tuning", "full": "full fine-tuning (every weight trains)",
             "layernorm": "LayerNorm / norm tuning", "bitfit": "BitFit",
             "lora": "LoRA (low-rank adaptation)", "adapter": "Houlsby bottleneck adapters",
             "ssf": "SSF (scaling and shifting features)", "vpt": "VPT (visual prompt tuning)",
             "ia3": "IA³ (infused adapter by inhibiting and amplifying activations)"}
#: methods whose typed config has options to show
WITH_OPTIONS = ("lora", "adapter", "vpt")


def plain_recipe(spec, *, parts_named: bool = True) -> str:
    """A recipe in a clinician's words: "low-rank updates in the encoder + scale and shift
    in the decoder + biases" (``parts_named=False``: without "in the encoder/decoder"); the
    technical names are in the tooltips."""
    parts = []
    for part, method in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        if method != "none":
            parts.append(f"{PLAIN[method]} in the {part}" if parts_named else PLAIN[method])
    if spec.bitfit:
        parts.append("biases")
    return " + ".join(parts) or "nothing (the base as it is)"


def option_widget(f) -> Any:
    """A magicgui widget for one config field (``f`` a dataclass field with metadata)."""
    from magicgui.widgets import create_widget

    meta = f.metadata
    tip = meta["help"]
    if meta.get("choices") is not None:
        choices = [("on" if c is True else "off" if c is False else str(c), c)
                   for c in meta["choices"]]
        widget = create_widget(value=f.default, label=meta["label"], widget_type="ComboBox",
                               options={"choices": choices, "tooltip": tip})
    elif meta["kind"] is bool:
        widget = create_widget(value=f.default, annotation=bool, label=meta["label"],
                               options={"tooltip": tip})
    else:
        kind = meta["kind"]
        step = 1 if kind is int else 0.5
        low = meta["low"] - (step if f.default is None else 0)  # the "default" entry
        widget = create_widget(value=low if f.default is None else f.default, annotation=kind,
                               label=meta["label"],
                               options={"min": low, "max": meta["high"], "step": step,
                                        "tooltip": tip})
        if f.default is None:
            widget.native.setSpecialValueText("default")
    widget.native.setToolTip(tip)
    return widget


class MethodOptions(QGroupBox):
    """The options of one method, one row per config field."""

    def __init__(self, method: str, parent=None) -> None:
        from napari_petite.peft.config import options

        super().__init__(f"{PLAIN[method]} options", parent)
        self.setToolTip(TECHNICAL[method])
        self.method = method
        self.fields = options(method)
        self.widgets = {f.name: option_widget(f) for f in self.fields}
        form = QFormLayout(self)
        for f in self.fields:
            form.addRow(f.metadata["label"], self.widgets[f.name].native)

    def values(self) -> dict[str, Any]:
        """Field -> value; a "default" entry gives None (the method decides)."""
        out = {}
        for f in self.fields:
            w = self.widgets[f.name]
            value = w.value
            if f.default is None and f.metadata["kind"] in (int, float) and value <= w.min:
                value = None
            out[f.name] = value
        return out

    def reset(self, config) -> None:
        for f in self.fields:
            w, value = self.widgets[f.name], getattr(config, f.name)
            w.value = w.min if value is None else value


class MixPEFTForm(QWidget):
    """Encoder method, decoder method, BitFit and options; emits ``changed``."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        from napari_petite.peft.spec import METHODS

        self.encoder, self.decoder = QComboBox(), QComboBox()
        for combo in (self.encoder, self.decoder):
            for method in METHODS:
                combo.addItem(PLAIN[method], method)
                combo.setItemData(combo.count() - 1, TECHNICAL[method], 3)  # ToolTipRole
            combo.currentIndexChanged.connect(self._changed)
        self.bitfit = QCheckBox("also train the biases")
        self.bitfit.setToolTip("BitFit: the networks' bias terms train too (the paper's "
                               "recipes always include it)")
        self.bitfit.setChecked(True)
        self.bitfit.toggled.connect(self._changed)
        self.recommended = QLabel()
        self.recommended.setWordWrap(True)
        self.use_recommended = QPushButton("Use recommended")
        self.use_recommended.clicked.connect(
            lambda: self.reset(self._backbone, self._recipe))
        self.options = {m: MethodOptions(m) for m in WITH_OPTIONS}
        for box in self.options.values():
            for w in box.widgets.values():
                w.changed.connect(self._changed)
        self.reasons = QLabel()
        self.reasons.setWordWrap(True)
        self.reasons.setStyleSheet("color: #a0a0a0;")
        self.trainable = QLabel("trainable: -")
        self.trainable.setStyleSheet("font-weight: bold;")
        self._backbone, self._recipe, self._follows = "unetr", None, False
        self._layout()

    def _layout(self) -> None:
        box = QGroupBox("What to train (Mix-PEFT)")
        form = QFormLayout(box)
        form.addRow("encoder", self.encoder)
        form.addRow("decoder", self.decoder)
        form.addRow(self.bitfit)
        row = QHBoxLayout()
        row.addWidget(self.recommended, 1)
        row.addWidget(self.use_recommended)
        form.addRow(row)
        self.advanced = Collapsible("Advanced: method options",
                                    "The chosen methods' technical settings (LoRA rank and "
                                    "scale, adapter reduction, prompt tokens)")
        for options in self.options.values():
            self.advanced.body.addWidget(options)
        form.addRow(self.advanced)
        form.addRow(self.reasons)
        form.addRow(self.trainable)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    def _changed(self, *_) -> None:
        used = {self.encoder.currentData(), self.decoder.currentData()}
        for method, box in self.options.items():
            box.setVisible(method in used)
        self._mark_recommended()
        self.changed.emit()

    def _mark_recommended(self) -> None:
        recipe = self._recipe
        if recipe is None:
            return
        chosen = (self.encoder.currentData(), self.decoder.currentData(), self.bitfit.isChecked())
        mine = (chosen == (recipe.encoder, recipe.decoder, recipe.bitfit)
                and self.params() == self._values(recipe))
        self.recommended.setText("✓ the recommended recipe" if mine else
                                 "★ recommended: " + f"{PLAIN[recipe.encoder]} + "
                                 f"{PLAIN[recipe.decoder]} + biases")
        lora = (f"; LoRA rank {recipe.method_config('lora').rank}, lowered from the paper's "
                "so it trains at most 1 % of this base" if "lora" in recipe.params else "")
        self.recommended.setToolTip(f"The paper's best combination for {recipe.backbone} "
                                    f"(PETITE): encoder {TECHNICAL[recipe.encoder]}, decoder "
                                    f"{TECHNICAL[recipe.decoder]}, and BitFit{lora}")
        self.use_recommended.setEnabled(not mine)

    def reset(self, backbone: str, recipe=None) -> None:
        """Show the recommended recipe for ``backbone``: ``recipe`` (the paper's, fitted to
        the base's size by the dock) or, until that is counted, the paper's own."""
        from napari_petite.peft.spec import PETITE, MixPEFTSpec

        if recipe is None or recipe.backbone != backbone:
            enc, dec = PETITE.get(backbone, ("lora", "ssf"))
            recipe = MixPEFTSpec(backbone, "", enc, dec, True)
        self._recipe = recipe
        widgets = (self.encoder, self.decoder, self.bitfit)
        for w in widgets:
            w.blockSignals(True)
        self.show_spec(recipe)
        self._follows = True  # showing the recipe, not a run's spec
        for w in widgets:
            w.blockSignals(False)
        self._changed()

    def _values(self, recipe) -> dict[str, dict[str, Any]]:
        """What :meth:`params` reads when the form shows ``recipe``."""
        used = {recipe.encoder, recipe.decoder}
        return {m: {f.name: getattr(recipe.method_config(m), f.name) for f in box.fields}
                for m, box in self.options.items() if m in used}

    def follow_recipe(self, recipe) -> None:
        """Adopt a recipe fitted to the base, unless the form no longer shows the recipe it
        was reset to (the user changed it, or it shows a saved run's spec)."""
        if self._follows and not self.use_recommended.isEnabled():
            self.reset(recipe.backbone, recipe)
        else:  # changed by the user or showing a saved run: offered, not forced
            self._recipe = recipe
            self._mark_recommended()

    def params(self) -> dict[str, dict[str, Any]]:
        """Options of the chosen methods only (the spec stores what is used)."""
        used = {self.encoder.currentData(), self.decoder.currentData()}
        return {m: box.values() for m, box in self.options.items() if m in used}

    def spec(self, backbone: str, preset: str):
        """The spec the form describes (ConfigError when it cannot be one)."""
        from napari_petite.peft.spec import MixPEFTSpec

        return MixPEFTSpec(backbone, preset, self.encoder.currentData(),
                           self.decoder.currentData(), self.bitfit.isChecked(), self.params())

    def show_spec(self, spec) -> None:
        """Show ``spec`` (a resumed run's) in the form; a recipe fitted later leaves it."""
        self._backbone, self._follows = spec.backbone, False
        self.encoder.setCurrentIndex(self.encoder.findData(spec.encoder))
        self.decoder.setCurrentIndex(self.decoder.findData(spec.decoder))
        self.bitfit.setChecked(spec.bitfit)
        for method, box in self.options.items():
            box.reset(spec.method_config(method))

    def show_fits(self, reasons: dict) -> None:
        """Grey out methods that do not fit a part; switch away from one that is chosen."""
        from napari_petite.peft.spec import METHODS

        lines = []
        for part, combo in (("encoder", self.encoder), ("decoder", self.decoder)):
            model = combo.model()
            for row, method in enumerate(METHODS):
                reason = reasons[(part, method)]
                item = model.item(row)
                item.setEnabled(reason is None)
                item.setToolTip(reason or TECHNICAL[method])
                if reason is not None and method in WITH_OPTIONS:
                    lines.append(f"{PLAIN[method]} cannot go in the {part}: {reason}.")
            if not model.item(combo.currentIndex()).isEnabled():
                first = next(r for r in range(len(METHODS)) if model.item(r).isEnabled())
                combo.setCurrentIndex(first)  # -> changed -> recount
        self.reasons.setText("\n".join(lines))
