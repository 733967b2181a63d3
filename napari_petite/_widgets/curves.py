"""Live training curves that answer "is it helping?": smoothed loss and validation PSNR.

The validation curve starts at step 0 with the model before training (the base, when
fine-tuning) drawn as a dashed reference line, and its axis always spans at least
``MIN_PSNR_SPAN_DB``, so a 0.01 dB wobble does not look like a steep rise. The loss is noisy
from patch to patch: an exponential moving average is drawn over the faint raw points
(``show_raw`` toggles them). Points are buffered and pushed to the plots only by
:meth:`redraw` (a QTimer at most every ``redraw_ms``, or the owner when ``redraw_ms=None``).
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


def smoothed(values: list[float], alpha: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average (the first value starts it)."""
    out = np.empty(len(values))
    acc = None
    for i, v in enumerate(values):
        acc = v if acc is None else (1 - alpha) * acc + alpha * v
        out[i] = acc
    return out


class TrainingCurves(QWidget):
    """Two stacked plots: training loss (log scale) and validation PSNR (dB)."""

    def __init__(self, parent=None, redraw_ms: int | None = REDRAW_MS) -> None:
        super().__init__(parent)
        self.loss_steps: list[int] = []
        self.loss_values: list[float] = []
        self.val_steps: list[int] = []
        self.val_psnr: list[float] = []
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
        self.plots.setToolTip("Validation PSNR inside the head mask of the validation "
                              "subject; the dashed line is the base model before training "
                              "(step 0)")
        self.raw_curve = self.loss_plot.plot(pen=None, symbol="o", symbolSize=2,
                                             symbolPen=None, symbolBrush=(240, 160, 48, 70))
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#f0a030", width=2))
        self.psnr_curve = self.psnr_plot.plot(pen=pg.mkPen("#50c0f0", width=2), symbol="o",
                                              symbolSize=6, symbolBrush="#50c0f0")
        self.start_line = pg.InfiniteLine(angle=0, movable=False,
                                          pen=pg.mkPen("#c0c0c0", width=1,
                                                       style=Qt.PenStyle.DashLine))
        self.start_line.setVisible(False)
        self.psnr_plot.addItem(self.start_line)
        self.show_raw = QCheckBox("raw loss points")
        self.show_raw.setChecked(True)
        self.show_raw.toggled.connect(self.raw_curve.setVisible)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plots, 1)
        layout.addWidget(self.show_raw)
        self.setMinimumHeight(220)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        if redraw_ms is not None:
            self._timer.setInterval(redraw_ms)
            self._timer.start()

    def clear(self) -> None:
        for values in (self.loss_steps, self.loss_values, self.val_steps, self.val_psnr):
            values.clear()
        self._dirty = True
        self.redraw()

    def add_loss(self, step: int, loss: float) -> None:
        if loss > 0 and np.isfinite(loss):
            self.loss_steps.append(step)
            self.loss_values.append(loss)
            self._dirty = True

    def add_validation(self, step: int, psnr: float) -> None:
        self.val_steps.append(step)
        self.val_psnr.append(psnr)
        self._dirty = True

    @property
    def start_psnr(self) -> float | None:
        """Validation PSNR before training (step 0), when measured."""
        return self.val_psnr[self.val_steps.index(0)] if 0 in self.val_steps else None

    def gain_text(self) -> str:
        """" · best validation +0.84 dB over the starting model" once a step after the start
        was validated (PSNR of the validation subject, in the tooltip of the plot)."""
        start = self.start_psnr
        if start is None or len(self.val_psnr) < 2:
            return ""
        return f" · best validation {max(self.val_psnr) - start:+.2f} dB over the starting model"

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
        self.psnr_curve.setData(np.asarray(self.val_steps, float),
                                np.asarray(self.val_psnr, float))
        start = self.start_psnr
        self.start_line.setVisible(start is not None)
        if start is not None:
            self.start_line.setValue(start)
        if self.val_psnr:
            lo, hi = min(self.val_psnr), max(self.val_psnr)
            pad = max(0.0, MIN_PSNR_SPAN_DB - (hi - lo)) / 2 + 0.05
            self.psnr_plot.setYRange(lo - pad, hi + pad, padding=0)
