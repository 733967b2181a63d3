"""Garbage collection off the GUI thread's critical path: a full pass of Python's cyclic
collector is the single most expensive thing a repaint can wait for here.

Once napari, Qt, torch and the plugin are loaded the process holds ~500 000 container
objects that live as long as it does, and a full collection walks all of them: 165-250 ms
on this project's 2-core machines, holding the GIL, so the GUI thread waits even when a
worker thread started it. Three things keep it short:

* :func:`settle` collects once when the first dock opens, then ``gc.freeze()``-s the
  survivors: they move to the permanent generation, which collections skip (CPython's
  documented tool for long-lived start-up objects). Objects made afterwards are collected
  as usual; a frozen object that later becomes cyclic garbage is kept, so this happens
  once per process.
* :func:`importing` does the same, without the collection, around the import of the torch
  stack by the first task that needs it (torch, its compiler's modules, sympy, scipy,
  pandas, MONAI: ~420 000 more objects, all module-level). Automatic collections wait
  until it is done: each would walk the half-imported modules again (four full passes of
  120-210 ms while the first dataset opened). Freezes are meant for imports, not for the
  viewer's layers: a removed layer must still be freed, with its volume and its OpenGL
  buffers (below: what happens when a freeze catches one anyway).
* :func:`install` makes napari's *forced* collections young-generation ones. napari runs
  ``gc.collect()`` every time a layer is removed and every time a batched change of the
  layer list ends, so that a Windows OpenGL driver sees a removed layer's buffers freed
  before the scene is rebuilt; elsewhere a young collection frees what the change just
  made garbage, the rest goes at the next full pass, and a batched change
  (:func:`.views.batched`) costs one scene rebuild instead of a rebuild plus 200 ms. On
  Windows napari's own collection stays.

A freeze catches whatever is alive, and the first dock may open after the user has loaded
scans: :func:`watch` lists the viewers, each freeze remembers their layers, and when one of
those is removed (it would be kept, with its volume, for the process's life)
:meth:`QuietPasses.thaw` unfreezes, collects and freezes again at the next quiet moment:
one long pass, only for layers older than a freeze.

What stays unfrozen is the viewer's own: ~16 000 objects per panel, ~2 000 per canvas
overlay in each grid cell (vispy's visuals, shaders and events; lighter than vispy makes
them by :mod:`.shader_objects`), 200 000-280 000 in a comparison, 140-235 ms a full
pass. Python starts one whenever enough new objects have survived, usually in the
middle of drawing a layer, and the two together stalled the window 230-250 ms. So
:func:`install` also moves the full passes to quiet moments (:class:`QuietPasses`): the
automatic one is kept only as a backstop, and a full pass runs once the event loop has been
idle, with no click or key, for :data:`QUIET_S`, when Python's own rule would have run
one (10 young passes since the last and a quarter more long-lived objects), and while no
task runs in a worker (or after :data:`PATIENCE_S`: training can last hours). "Idle" is
Qt's own measure: no turn of the loop, from waking to waiting again, took over
:data:`LATE_S`.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
import weakref

from qtpy.QtCore import QAbstractEventDispatcher, QEvent, QObject, QThreadPool, QTimer
from qtpy.QtWidgets import QApplication

#: the event loop idle and no input for this long (s): a full pass may run, while the
#: user looks at what was just drawn (1 s met the next click more often in the GUI walk)
QUIET_S = 0.5
#: how often quietness is checked (ms), and a turn of the event loop that counts as busy (s)
TICK_MS, LATE_S = 200, 0.05
#: young (generation-1) passes before a full one is due: Python's own default
DUE = 10
#: how long a due pass waits for the workers to finish (s): a result arriving in the middle
#: of a pass is drawn after it, and the two make one longer stall; a short task's result
#: comes within seconds, and held through a whole training run the garbage piles up
#: (a pass freeing 120 000 objects after training took 250-540 ms)
PATIENCE_S = 5.0
#: the automatic full pass's threshold while quiet passes run (a backstop for a loop that is
#: never quiet: about 7 million allocations)
BACKSTOP = 1000

_FROZEN_AFTER: set[str] = set()  # what has been frozen: "start-up", imports by name
_VIEWERS: weakref.WeakSet = weakref.WeakSet()  # whose layers a freeze may catch
_CAUGHT: weakref.WeakSet = weakref.WeakSet()  # layers alive at a freeze


def watch(viewer) -> None:
    """Freezes remember ``viewer``'s layers (see :meth:`QuietPasses.thaw`)."""
    _VIEWERS.add(viewer)


def _layers() -> list:
    """The watched viewers' layers now (copies: a worker may be freezing)."""
    return [layer for viewer in list(_VIEWERS) for layer in list(viewer.layers)]


def _freeze() -> None:
    gc.freeze()
    _CAUGHT.update(_layers())
    if QuietPasses._instance is not None:
        QuietPasses._instance.recount()


def stranded() -> bool:
    """A layer caught by a freeze has left its viewer: only a thaw can free it."""
    present = {id(layer) for layer in _layers()}
    return any(id(layer) not in present for layer in list(_CAUGHT))


def settle() -> None:
    """Collect, then freeze the survivors (once per process)."""
    if "start-up" not in _FROZEN_AFTER:
        gc.collect()
        freeze_imports("start-up")


def freeze_imports(name: str) -> None:
    """Freeze what is alive right after the import of ``name`` (module objects, for the
    process's life), once per name. No collection first: this runs in worker threads,
    where a collection would hold the GIL, and so the GUI thread, for its whole pass."""
    if name not in _FROZEN_AFTER:
        _FROZEN_AFTER.add(name)
        _freeze()


_PAUSE = threading.Lock()
_PAUSES = {"running": 0, "was_enabled": True}  # imports running now; the collector before


@contextlib.contextmanager
def importing(name: str):
    """Import (or build) ``name``'s process-long objects inside: no automatic collection
    meanwhile, the first time, until the imports running in other threads are done too;
    then :func:`freeze_imports`."""
    paused = name not in _FROZEN_AFTER
    if paused:
        with _PAUSE:
            if not _PAUSES["running"]:
                _PAUSES["was_enabled"] = gc.isenabled()
                gc.disable()
            _PAUSES["running"] += 1
    try:
        yield
        freeze_imports(name)  # before the collector runs again: its first young pass
        # would otherwise walk everything the import made (~250 ms)
    finally:
        if paused:
            with _PAUSE:
                _PAUSES["running"] -= 1
                if not _PAUSES["running"] and _PAUSES["was_enabled"]:
                    gc.enable()


class _Young:
    """Stands for the ``gc`` module in napari's canvas module: the same module, except that
    ``collect()`` collects the young generations only."""

    def __getattr__(self, name):
        return getattr(gc, name)

    @staticmethod
    def collect(generation: int = 1) -> int:
        return gc.collect(min(generation, 1))


YOUNG = _Young()


def install() -> None:
    """napari's forced collections become young ones (not on Windows), full passes wait for
    a quiet moment (idempotent)."""
    QuietPasses.start()
    if sys.platform == "win32":
        return
    from napari._vispy import canvas

    if getattr(canvas, "gc", None) is gc:
        canvas.gc = YOUNG


class QuietPasses(QObject):
    """Runs Python's full collections when the GUI is quiet instead of wherever an
    allocation crosses the threshold. One per process, a child of the application."""

    _instance: QuietPasses | None = None

    @classmethod
    def start(cls) -> QuietPasses | None:
        """The process's instance, started once a Qt application exists."""
        app = QApplication.instance()
        if cls._instance is None and app is not None:
            cls._instance = cls(app)
        return cls._instance

    def __init__(self, app) -> None:
        super().__init__(app)
        self._input = {QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease,
                       QEvent.Type.Wheel, QEvent.Type.KeyPress, QEvent.Type.KeyRelease}
        self._busy_at = time.monotonic()
        self._long_lived: int | None = None  # gen-2 objects after the last full pass
        self._due_at: float | None = None  # when a full pass was found due
        self.passes = self.thaws = 0
        gc.callbacks.append(self._after_pass)
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, BACKSTOP)
        app.installEventFilter(self)
        self._woke = time.monotonic()
        loop = QAbstractEventDispatcher.instance(app.thread())
        loop.awake.connect(self._awake)
        loop.aboutToBlock.connect(self._about_to_block)
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def eventFilter(self, watched, event) -> bool:
        if event.type() in self._input:
            self._busy_at = time.monotonic()
        return False

    def _awake(self) -> None:
        self._woke = time.monotonic()

    def _about_to_block(self) -> None:
        """The loop has nothing left to do; it was busy if that took a while since it woke."""
        now = time.monotonic()
        if now - self._woke > LATE_S:
            self._busy_at = now

    def recount(self) -> None:
        """What counts as long-lived changed (a full pass, a freeze): counted again when next
        needed. Runs in whichever thread collected or froze, so it only drops the number."""
        self._long_lived = self._due_at = None

    def _after_pass(self, phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.recount()

    def thaw(self) -> None:
        """Unfreeze, collect everything, freeze the survivors again (what a removed layer
        caught by a freeze needs to be freed; a pass over the whole heap)."""
        gc.unfreeze()
        _CAUGHT.clear()
        gc.collect()
        _freeze()
        self.thaws += 1
        self._busy_at = time.monotonic()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._woke > LATE_S:
            self._busy_at = now  # this turn of the loop has been going on for a while
        if now - self._busy_at < QUIET_S:
            return
        working = QThreadPool.globalInstance().activeThreadCount() > 0  # tasks, training
        if _CAUGHT and not working and stranded():
            self.thaw()
            return
        if gc.get_count()[2] < DUE:
            return
        if self._due_at is None:
            self._busy_at = now  # at most one count (a few ms) per quiet period
            long_lived = len(gc.get_objects(2))
            if self._long_lived is None:
                self._long_lived = long_lived
            elif long_lived > 1.25 * self._long_lived:
                self._due_at = now
        if self._due_at is not None and (not working or now - self._due_at >= PATIENCE_S):
            gc.collect()
            self.passes += 1
            self._due_at = None
            self._long_lived = len(gc.get_objects(2))
            self._busy_at = time.monotonic()
