"""The run panel: Start / Pause / Stop / Open saved run…, the status line and the curves.

It turns engine events into what is shown, at most every ``DISPLAY_MS``: each change repaints
the curves and recomposes the window around napari's OpenGL canvas (~60 ms with software
OpenGL), which done on every step would stall the GUI once a second. It starts nothing
itself; the Fine-tune dock connects the buttons.
"""

from __future__ import annotations

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_petite._widgets.curves import TrainingCurves, figures_text

#: while training, the status line, the activity-dock progress and the curves change together
#: at most this often
DISPLAY_MS = 2000


def format_eta(seconds: float | None) -> str:
    """Time left in words ("about 13 min left"), never a clock-like "12:59"."""
    if seconds is None or seconds != seconds:
        return "time left unknown"
    seconds = round(seconds)
    if seconds < 60:
        return "less than a minute left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"about {hours} h {minutes:02d} min left"


class RunPanel(QWidget):
    """Buttons, status and curves of one training run at a time."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step; the best validated state "
                                    "is kept")
        self.open_button = QPushButton("Open saved run…")
        self.open_button.setToolTip("Continue a stopped, closed or crashed run from its folder "
                                    "with its own base, methods, data and step budget")
        row = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button, self.open_button):
            row.addWidget(b)
        self.what = QLabel("")
        self.what.setWordWrap(True)
        self.what.setStyleSheet("color: #a0d0ff;")
        self.what.setToolTip("What the current (or last) run trains")
        self.status = QLabel("Idle.")
        self.status.setWordWrap(True)
        # room for three lines: a scroll area's layout would otherwise squeeze it to one
        self.status.setMinimumHeight(3 * self.status.fontMetrics().lineSpacing() + 4)
        self.curves = TrainingCurves(redraw_ms=None)  # redrawn by flush()
        self.control = None
        self.task = None
        self._pending = None
        self._timer = QTimer(self)
        self._timer.setInterval(DISPLAY_MS)
        self._timer.timeout.connect(self.flush)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.what)
        layout.addWidget(self.status)
        layout.addWidget(self.curves, 1)
        self.set_running(False)

    # -- state ---------------------------------------------------------------------------
    def set_running(self, running: bool, *, stoppable: bool = True) -> None:
        self.start_button.setEnabled(not running)
        self.open_button.setEnabled(not running)
        self.pause_button.setEnabled(running and stoppable)
        self.stop_button.setEnabled(running and stoppable)
        self.pause_button.setText("Pause")

    def begin(self, task, history=None, what: str = "", select=("psnr", 1.0)) -> None:
        """Show a new (or resumed) run; ``history`` = (losses, val_history) to draw first;
        ``what`` says in words what it trains; ``select`` = its checkpoint rule (the config's
        select and tolerance), so the texts name the step it keeps."""
        self.task, self.control = task, task.control
        self.what.setText(f"Running: {what}" if what else "")
        self.show_history(*(history or ((), ())), select=select)
        self._pending = None
        self._timer.start()
        self.set_running(True)

    def end(self) -> None:
        self._timer.stop()
        self.flush()
        self.task = self.control = None
        self.what.setText(self.what.text().replace("Running: ", "Last run: ", 1))
        self.set_running(False)

    def show_history(self, losses, vals, select=("psnr", 1.0)) -> None:
        """Draw a run's curves so far (a resumed or an opened run: its validation records,
        fidelity figures included, and its checkpoint rule)."""
        self.curves.clear(select)
        for i, loss in enumerate(losses):
            self.curves.add_loss(i + 1, loss)
        for v in vals:
            self.curves.add_validation(v["step"], v)
        self.curves.redraw()

    # -- events --------------------------------------------------------------------------
    def on_event(self, event) -> None:
        if event.kind == "step":
            self.curves.add_loss(event.step, event.loss)
            self._pending = event  # shown by flush()
        elif event.kind == "val" and event.val:
            self.curves.add_validation(event.step, event.val)
            if event.step == 0:
                self.status.setText(f"Base model on the validation subject: "
                                    f"{event.val['psnr']:.2f} dB{figures_text(event.val)} "
                                    "(step 0). Training…")
        elif event.kind == "start":
            self.status.setText(f"Started {event.message}; measuring the base model first…")
        elif event.kind == "paused":
            self.status.setText(f"Paused at step {event.step}/{event.total_steps}.")
        elif event.kind == "resumed":
            self.status.setText(f"Continuing at step {event.step}.")

    def flush(self) -> None:
        """Show the latest step and redraw the curves in one window update."""
        event, self._pending = self._pending, None
        control = self.control
        if event is not None:
            if control is None or not (control.stopped or control.paused):
                # a step shown late must not hide "Stopping…" / "Pausing…"
                gain = self.curves.gain_text() + self.curves.quant_text()
                self.status.setText(f"step {event.step} of {event.total_steps} · "
                                    f"{format_eta(event.eta_s)}{gain}")
            if self.task is not None:
                self.task.set_progress(event.step,
                                       f"fine-tuning · {format_eta(event.eta_s)}")
        self.curves.redraw()

    # -- buttons -------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        if self.control is None:
            return
        if self.control.paused:
            self.control.resume()
            self.pause_button.setText("Pause")
        else:
            self.control.pause()
            self.pause_button.setText("Continue")
            self.status.setText("Pausing after the current step…")

    def stop(self) -> None:
        """Stop after the current step; the best validated state so far is kept."""
        if self.control is not None:
            self.control.stop()
            self.status.setText("Stopping after the current step…")
