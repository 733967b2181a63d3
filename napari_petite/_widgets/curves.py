"""Live training curves that answer "is it helping?": smoothed loss, validation PSNR and
validation fidelity (does denoising keep the numbers a reader measures?).

Both validation plots start at step 0 with the model before training (the base, when
fine-tuning) drawn as dashed reference lines. The PSNR axis always spans at least
``MIN_PSNR_SPAN_DB``, so a 0.01 dB wobble does not look like a steep rise; the fidelity plot
(mean |regional bias| and lesion SUVmean bias against the full-count image, in %) always
shows zero and spans at least ``MIN_BIAS_SPAN_PCT``. A figure the validation subject cannot
measure (no lesions) is simply not drawn. The status texts read the step the run keeps with
the engine's own rule (``engine.choose_best``), so they never name another step than the
run keeps. The loss is noisy from patch to patch: an exponential moving average is drawn over
the faint raw points (``show_raw`` toggles them). Points are buffered and pushed to the plots
only by :meth:`redraw` (a QTimer at most every ``redraw_ms``, or the owner when
``redraw_ms=None``).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QCheckBox, QVBoxLayout, QWidget

#: minimum time between two redraws of the curves
REDRAW_MS = 200
#: the validation axis spans at least this many dB
MIN_PSNR_SPAN_DB = 1.0
#: weight of the newest point in the loss's moving average
SMOOTHING = 0.1
#: the height each plot keeps (its title, axis and a readable curve)
PLOT_MIN_HEIGHT = 150
#: the fidelity legend's row under its plot
LEGEND_HEIGHT = 24
#: the fidelity axis spans at least this many percentage points
MIN_BIAS_SPAN_PCT = 2.0
#: the fidelity figures drawn: validation key -> (legend, words in the status line, colour,
#: signed)
QUANT = {"region_abs_bias_pct": ("regions |bias|", "regions |bias|", "#f0c040", False),
         "lesion_suvmean_bias_pct": ("lesion SUVmean", "lesions SUVmean", "#e070c0", True)}


def _dashed(colour: str) -> pg.InfiniteLine:
    line = pg.InfiniteLine(angle=0, movable=False,
                           pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine))
    line.setVisible(False)
    return line


def _pct(value: float, signed: bool) -> str:
    """4.1, or signed: −2.2 (a real minus sign), +1.3, 0.0 (never "−0.0")."""
    if not signed or round(value, 1) == 0:
        return f"{abs(value) if round(value, 1) == 0 else value:.1f}"
    return f"{value:+.1f}".replace("-", "\u2212")


def figures_text(val: dict) -> str:
    """", regions |bias| 4.1 %, lesions SUVmean −2.2 %": a validation's fidelity figures."""
    return "".join(f", {words} {_pct(val[k], signed)} %"
                   for k, (_, words, _, signed) in QUANT.items() if k in val)


def smoothed(values: list[float], alpha: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average (the first value starts it)."""
    out = np.empty(len(values))
    acc = None
    for i, v in enumerate(values):
        acc = v if acc is None else (1 - alpha) * acc + alpha * v
        out[i] = acc
    return out


class TrainingCurves(QWidget):
    """Three stacked plots: training loss (log scale), validation PSNR (dB) and validation
    fidelity (%)."""

    def __init__(self, parent=None, redraw_ms: int | None = REDRAW_MS) -> None:
        super().__init__(parent)
        self.loss_steps: list[int] = []
        self.loss_values: list[float] = []
        self.val_records: list[dict] = []  # every validation as the engine reported it
        #: the run's checkpoint rule (``TrainConfig.select``, its tolerance): which step is kept
        self.select: tuple[str, float] = ("psnr", 1.0)
        self.redraws = 0
        self._dirty = False
        pg.setConfigOptions(antialias=True)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground("#262930")
        self.loss_plot = self.plots.addPlot(row=0, col=0, title="training loss (smoothed)")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.showGrid(x=True, y=True, alpha=0.25)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "loss")  # the training error (log scale)
        # short titles: a plot's title sets its minimum width, and a wide one pushed both
        # plots past the right edge of a 480-px dock
        self.psnr_plot = self.plots.addPlot(row=1, col=0,
                                            title="validation PSNR, head · dashed: base")
        self.psnr_plot.showGrid(x=True, y=True, alpha=0.25)
        self.psnr_plot.setLabel("bottom", "step")
        self.psnr_plot.setLabel("left", "PSNR", units="dB")
        self.quant_plot = self.plots.addPlot(row=2, col=0,
                                             title="validation fidelity · dashed: base")
        self.quant_plot.showGrid(x=True, y=True, alpha=0.25)
        self.quant_plot.setLabel("bottom", "step")
        self.quant_plot.setLabel("left", "bias", units="%")
        for plot in (self.loss_plot, self.psnr_plot, self.quant_plot):  # no "x1e-06", "m%"
            plot.getAxis("left").enableAutoSIPrefix(False)
        self.plots.setToolTip("Validation on the validation subject. PSNR: inside the head "
                              "mask. Fidelity, against the full-count image: mean |regional "
                              "bias| (0 is best) and mean lesion SUVmean bias (below 0: "
                              "lesions read lower). Dashed lines: the base model before "
                              "training (step 0)")
        self.raw_curve = self.loss_plot.plot(pen=None, symbol="o", symbolSize=2,
                                             symbolPen=None, symbolBrush=(240, 160, 48, 70))
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#f0a030", width=2))
        self.psnr_curve = self.psnr_plot.plot(pen=pg.mkPen("#50c0f0", width=2), symbol="o",
                                              symbolSize=6, symbolBrush="#50c0f0")
        self.start_line = _dashed("#c0c0c0")
        self.psnr_plot.addItem(self.start_line)
        # the legend in its own row under the plot: inside, it hid the curves it names
        self.legend = pg.LegendItem(colCount=2, labelTextSize="8pt")
        self.plots.addItem(self.legend, row=3, col=0)
        self.plots.ci.layout.setRowMaximumHeight(3, LEGEND_HEIGHT)
        self.zero_line = pg.InfiniteLine(pos=0, angle=0, movable=False,
                                         pen=pg.mkPen("#808080", width=1))
        self.quant_plot.addItem(self.zero_line)
        self.quant_curves, self.quant_start = {}, {}
        for key, (label, _, colour, _) in QUANT.items():
            self.quant_curves[key] = self.quant_plot.plot(
                pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolPen=None,
                symbolBrush=colour)
            self.legend.addItem(self.quant_curves[key], label)
            self.quant_start[key] = _dashed(colour)
            self.quant_plot.addItem(self.quant_start[key])
        self.show_raw = QCheckBox("raw loss points")
        self.show_raw.setChecked(True)
        self.show_raw.toggled.connect(self.raw_curve.setVisible)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plots, 1)
        layout.addWidget(self.show_raw)
        # each plot keeps a readable height; the dock scrolls rather than squeezing them
        self.setMinimumHeight(3 * PLOT_MIN_HEIGHT + LEGEND_HEIGHT
                              + self.show_raw.sizeHint().height())
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        if redraw_ms is not None:
            self._timer.setInterval(redraw_ms)
            self._timer.start()

    def clear(self, select: tuple[str, float] = ("psnr", 1.0)) -> None:
        """Forget the curves; ``select``: the checkpoint rule of the run drawn next."""
        for values in (self.loss_steps, self.loss_values, self.val_records):
            values.clear()
        self.select = select
        self._dirty = True
        self.redraw()

    def add_loss(self, step: int, loss: float) -> None:
        if loss > 0 and np.isfinite(loss):
            self.loss_steps.append(step)
            self.loss_values.append(loss)
            self._dirty = True

    def add_validation(self, step: int, val: dict) -> None:
        """One validation as the engine reports it (psnr and, when measured, the fidelity
        figures)."""
        self.val_records.append({**val, "step": step})
        self._dirty = True

    @property
    def start(self) -> dict | None:
        """The validation before training (step 0), when measured."""
        return next((r for r in self.val_records if r["step"] == 0), None)

    @property
    def start_psnr(self) -> float | None:
        """Validation PSNR before training (step 0), when measured."""
        start = self.start
        return None if start is None else start["psnr"]

    def kept(self) -> dict | None:
        """The validation the run keeps so far, by the run's own rule (the engine's)."""
        from napari_petite.training.engine import choose_best

        return choose_best(self.val_records, *self.select)

    def _compared(self) -> tuple[dict, dict] | None:
        start = self.start
        if start is None or len(self.val_records) < 2:
            return None
        return start, self.kept()

    def gain_text(self) -> str:
        """" · kept step 40: 25.49 dB, +0.84 dB over the starting model" once a step after
        the start was validated (PSNR of the validation subject, in the tooltip of the plot;
        the step the run's rule keeps, not always the highest PSNR)."""
        pair = self._compared()
        if pair is None:
            return ""
        start, kept = pair
        return (f" · kept step {kept['step']}: {kept['psnr']:.2f} dB, "
                f"{kept['psnr'] - start['psnr']:+.2f} dB over the starting model")

    def quant_text(self) -> str:
        """" · regions |bias| 4.1 → 3.9 %, lesions SUVmean −2.2 → −1.7 %": the fidelity
        figures of the starting model and of the kept step (:meth:`gain_text`'s)."""
        pair = self._compared()
        if pair is None:
            return ""
        start, kept = pair
        parts = [f"{words} {_pct(start[k], signed)} → {_pct(kept[k], signed)} %"
                 for k, (_, words, _, signed) in QUANT.items() if k in start and k in kept]
        return " · " + ", ".join(parts) if parts else ""

    def redraw(self) -> None:
        """Push buffered points to the plots (called by the timer; cheap when idle)."""
        if not self._dirty:
            return
        self._dirty = False
        self.redraws += 1
        steps = np.asarray(self.loss_steps, float)
        self.raw_curve.setData(steps, np.asarray(self.loss_values, float))
        self.loss_curve.setData(steps, smoothed(self.loss_values) if self.loss_values else
                                np.asarray([], float))
        psnr = [r["psnr"] for r in self.val_records]
        self.psnr_curve.setData(np.asarray([r["step"] for r in self.val_records], float),
                                np.asarray(psnr, float))
        start = self.start_psnr
        self.start_line.setVisible(start is not None)
        if start is not None:
            self.start_line.setValue(start)
        if psnr:
            lo, hi = min(psnr), max(psnr)
            pad = max(0.0, MIN_PSNR_SPAN_DB - (hi - lo)) / 2 + 0.05
            self.psnr_plot.setYRange(lo - pad, hi + pad, padding=0)
        self._redraw_quant()

    def _redraw_quant(self) -> None:
        start = self.start or {}
        drawn = [0.0]  # zero stays in view: it is where a faithful figure lies
        for key, curve in self.quant_curves.items():
            points = np.asarray([(r["step"], r[key]) for r in self.val_records if key in r],
                                float).reshape(-1, 2)
            steps, values = points.T
            curve.setData(steps, values)
            self.quant_start[key].setVisible(key in start)
            if key in start:
                self.quant_start[key].setValue(start[key])
            drawn += list(values)
        lo, hi = min(drawn), max(drawn)
        pad = max(0.0, MIN_BIAS_SPAN_PCT - (hi - lo)) / 2 + 0.1
        self.quant_plot.setYRange(lo - pad, hi + pad, padding=0)
