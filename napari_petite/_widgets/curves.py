"""Live training curves: loss per step and validation PSNR, drawn with pyqtgraph.

Points arrive as fast as the engine yields (tiny models: hundreds per second); redrawing on
every point would make the GUI stutter, so points are buffered and the plots are redrawn only
when something changed, by a QTimer at most every ``redraw_ms`` milliseconds or by the owner
(``redraw_ms=None``: the Fine-tune dock redraws them with its other display updates).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

#: minimum time between two redraws of the curves
REDRAW_MS = 200


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
        self.loss_plot = self.plots.addPlot(row=0, col=0, title="training loss")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.showGrid(x=True, y=True, alpha=0.25)
        self.loss_plot.setLabel("bottom", "step")
        self.psnr_plot = self.plots.addPlot(row=1, col=0, title="validation PSNR (dB, head)")
        self.psnr_plot.showGrid(x=True, y=True, alpha=0.25)
        self.psnr_plot.setLabel("bottom", "step")
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#f0a030", width=1.5))
        self.psnr_curve = self.psnr_plot.plot(pen=pg.mkPen("#50c0f0", width=2), symbol="o",
                                              symbolSize=6, symbolBrush="#50c0f0")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plots)
        self.setMinimumHeight(200)
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

    def redraw(self) -> None:
        """Push buffered points to the plots (called by the timer; cheap when idle)."""
        if not self._dirty:
            return
        self._dirty = False
        self.redraws += 1
        self.loss_curve.setData(np.asarray(self.loss_steps, float),
                                np.asarray(self.loss_values, float))
        self.psnr_curve.setData(np.asarray(self.val_steps, float),
                                np.asarray(self.val_psnr, float))
