"""GUI-thread work split into steps, one per turn of the event loop.

Adding layers, changing napari's grid or showing canvas overlays is done on the GUI thread,
and with software OpenGL each change is followed by a repaint of the whole canvas (150-200
ms on a busy 2-core machine) and sometimes by building new visuals for every grid cell.
Done in one go, showing a comparison stalled the window for seconds; as steps, each turn
does one change and the window repaints (and answers clicks) in between. A full redraw
replaces the steps still waiting; a smaller change queues behind them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer, Signal

log = logging.getLogger(__name__)

#: pause between two steps (ms): long enough for the repaint the previous step asked for
GAP_MS = 5


class Steps(QObject):
    """Runs a list of callables, each a turn of the event loop after the previous one."""

    #: the last sequence ran to its end
    finished = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._pending: list[Callable[[], None]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(GAP_MS)
        self._timer.timeout.connect(self._next)

    def stop(self) -> None:
        """Drop what is waiting (the widgets it would draw on are going away). Also called
        from a dock's ``destroyed`` signal, when Qt has already deleted the timer with its
        parent: nothing is left to stop then."""
        self._pending = []
        with contextlib.suppress(RuntimeError):  # "wrapped C/C++ object ... deleted"
            self._timer.stop()

    @property
    def idle(self) -> bool:
        """No step is waiting (what was asked last is on screen)."""
        return not self._pending

    def run(self, steps: list[Callable[[], None]], *, replace: bool = False) -> None:
        """Queue ``steps`` (``replace``: instead of what is waiting). They start on the next
        turn of the event loop, so requests made together (several layers added at once)
        are drawn once, and the caller returns at once."""
        self._pending = list(steps) if replace else [*self._pending, *steps]
        if self._pending and not self._timer.isActive():
            self._timer.start()

    def _next(self) -> None:
        if not self._pending:
            return
        step = self._pending.pop(0)
        started = time.perf_counter()
        try:
            step()
        finally:
            log.debug("step %s: %.0f ms", getattr(step, "__qualname__", step),
                      1000 * (time.perf_counter() - started))
            if self._pending:
                self._timer.start()
            else:
                self.finished.emit()
