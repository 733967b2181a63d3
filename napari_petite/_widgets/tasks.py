"""Background tasks for the docks: napari workers stopped through one :class:`Control`.

A task body is a generator function of a ``Control``, run by napari's ``create_worker`` in a
worker thread; it never touches Qt. The control is the only way to stop it, from the Stop
button, from closing the dock or from closing napari alike: a training body hands it to the
engine (which then finishes its step and writes its at-stop checkpoint), an inference body
checks it between windows. Exceptions are caught *inside* the thread and handed back as a
:class:`Failure`, so the dock shows one clear sentence and returns to idle instead of
napari's traceback pop-up.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from napari_petite.errors import PetiteError
from napari_petite.training.engine import Control

log = logging.getLogger(__name__)
#: one thread at a time imports the heavy libraries: two workers importing MONAI at once
#: (a parameter count and a reconstruction) can meet its circular imports from both ends and
#: fail with a _DeadlockError
_IMPORTS = threading.Lock()


#: how much lower than the GUI thread a worker thread runs (Linux "nice" steps): when the
#: cores are busy the scheduler serves the GUI first, so a repaint is not queued behind a
#: training step or a reconstruction
WORKER_NICENESS = 5


def lower_priority() -> None:
    """Run the calling (worker) thread at :data:`WORKER_NICENESS` (Linux; elsewhere, or when
    refused, nothing changes). Threads it starts later (torch's) inherit it."""
    import os

    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)


def load_extension_unlocked(package: str, name: str) -> bool:
    """Load the shared library of the C extension ``package.name`` (and the libraries it
    links) with the GIL released, without importing anything; the import that follows finds
    it loaded.

    Python's import calls ``dlopen`` holding the GIL, and torch's ``_C`` pulls in
    ``libtorch_cpu``: 220-330 ms (more with CUDA) during which the GUI thread cannot run,
    although the import happens in a worker. ``dlopen`` called as a ctypes foreign function
    runs with the GIL released. Only where the C library has ``dlopen`` (Linux, macOS);
    anything unexpected leaves the import to load the library itself, as it always could."""
    import ctypes
    import importlib.machinery
    import importlib.util
    import os

    if not hasattr(os, "RTLD_NOW"):  # Windows: no dlopen
        return False
    try:
        spec = importlib.util.find_spec(package)  # a top-level name: nothing is imported
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        paths = [os.path.join(folder, name + suffix) for folder in folders
                 for suffix in importlib.machinery.EXTENSION_SUFFIXES]
        path = next((p for p in paths if os.path.isfile(p)), None)
        if path is None:
            return False
        libc = ctypes.CDLL(None)
        libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.dlopen.restype = ctypes.c_void_p
        return bool(libc.dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL))
    except (AttributeError, ImportError, OSError, TypeError, ValueError):
        return False


def import_torch_stack() -> None:
    """Import torch and the MONAI parts the models use, once, under :data:`_IMPORTS`; what
    they load stays for the process's life, out of the garbage collector's passes
    (:mod:`.heap`)."""
    from napari_petite._widgets import heap

    with _IMPORTS, heap.importing("torch"):
        if "torch" not in sys.modules:
            load_extension_unlocked("torch", "_C")
        import monai.inferers
        import monai.networks.nets  # noqa: F401
        import torch
        import torch._dynamo  # noqa: F401  (the first model build imports it: ~100 000 objects)


@dataclass
class Failure:
    """An exception raised inside a task, returned to the GUI thread."""

    error: BaseException

    @property
    def message(self) -> str:
        if isinstance(self.error, PetiteError):
            return str(self.error)
        return (f"Unexpected error: {type(self.error).__name__}: {self.error}. The dock is "
                "ready again; please report this with the log if it repeats.")


#: an absolute path in a message (up to the next space or sentence end)
_PATH = re.compile(r"(?<![\w/])(/[^\s;,:'\"()]+[^\s;,:'\".()])")


def sentence_first(message: str) -> str:
    """The message with every absolute path shortened to its last part and listed after the
    sentence: a toast is cut after two lines, and a long path first would hide the reason."""
    paths: list[str] = []

    def short(match: re.Match) -> str:
        paths.append(match.group(1))
        return f"'{match.group(1).rstrip('/').rsplit('/', 1)[-1]}'"

    text = _PATH.sub(short, message)
    return text if not paths else f"{text} ({'; '.join(dict.fromkeys(paths))})"


def notify_failure(failure: Failure | BaseException) -> None:
    """Show a failure as a napari error notification, sentence first (never raises)."""
    from napari.utils.notifications import show_error

    if not isinstance(failure, Failure):
        failure = Failure(failure)
    if not isinstance(failure.error, PetiteError):
        log.error("napari-petite task failed", exc_info=failure.error)
    show_error(sentence_first(failure.message))


class Task:
    """One background run: a generator body of a :class:`Control`, and its worker."""

    def __init__(self, body: Callable[[Control], Generator[Any, Any, Any]], *, desc: str,
                 total: int = 0, on_yield: Callable[[Any], None] | None = None,
                 on_done: Callable[[Any], None] | None = None, progress: bool = False,
                 torch: bool = False) -> None:
        """``torch``: the body uses torch / MONAI (imported first, one thread at a time).

        ``progress``: also show napari's activity progress bar. Off by default: while any
        such bar exists napari animates a spinner in its status bar, and every frame of it
        recomposes the whole window around the OpenGL canvas (measured with software
        OpenGL at 1920 x 1080: the event loop's median delay went from 0 to 41 ms). The
        docks show their own progress instead."""
        from napari.qt.threading import create_worker

        self.control = Control()
        self._entered = threading.Event()
        self._left = threading.Event()
        self._started = False
        self._done = False
        self.on_done = on_done
        self.result: Any = None
        control = self.control

        def guarded():
            self._entered.set()
            lower_priority()
            try:
                if control.stopped:
                    return None
                if torch:
                    import_torch_stack()
                return (yield from body(control))
            except GeneratorExit:
                raise
            except BaseException as err:
                return Failure(err)
            finally:
                self._left.set()

        bar = ({"total": total, "desc": desc} if total else {"desc": desc}) if progress \
            else None
        self.worker = create_worker(guarded, _progress=bar, _start_thread=False)
        pbar = getattr(self.worker, "pbar", None)
        if pbar is not None and total:
            # steps are set from the events themselves, not counted per yield
            self.worker.yielded.disconnect(pbar.increment_with_overflow)
        if on_yield is not None:
            self.worker.yielded.connect(on_yield)
        self.worker.returned.connect(self._returned)
        self.worker.finished.connect(self._finished)

    # -- GUI-thread callbacks --------------------------------------------------------------
    def _returned(self, value) -> None:
        self.result = value
        if isinstance(value, Failure):
            notify_failure(value)

    def _finished(self) -> None:
        self._done = True
        # napari quits its workers when its window closes; one quit at a yield leaves the
        # body suspended: close it now (its finally blocks run, the model is freed)
        gen = getattr(self.worker, "_gen", None)
        if gen is not None:
            try:
                gen.close()
            except Exception:
                log.exception("closing a napari-petite task failed")
        if self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback(self.result)

    # -- control ---------------------------------------------------------------------------
    def start(self) -> Task:
        self._started = True
        self.worker.start()
        return self

    def emit(self, value) -> None:
        """Report ``value`` to the GUI from inside a blocking call of the body (thread-safe:
        a queued signal, as for values the body yields)."""
        self.worker.yielded.emit(value)

    def set_progress(self, n: int, desc: str | None = None) -> None:
        """Move napari's activity bar to ``n``. Call it last in a slot: napari's bar runs
        ``processEvents`` while it repaints, so the task's end may be handled inside this
        call and anything the slot sets afterwards would overwrite the final status."""
        pbar = getattr(self.worker, "pbar", None)
        if pbar is None:
            return
        if pbar.total and n > pbar.total:
            pbar.total = n
        if n > pbar.n:
            pbar.update(n - pbar.n)
        if desc is not None:
            pbar.set_description(desc)

    @property
    def running(self) -> bool:
        """Started and its worker has not finished (GUI-thread view)."""
        return self._started and not self._done

    @property
    def stopping(self) -> bool:
        return self.control.stopped

    def stop(self) -> None:
        """Ask the body to stop at its next check (a training step / an inference window)."""
        self.control.stop()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop through the control and wait until the thread left the body (a training run
        finishes its step and writes its checkpoint first); drop the GUI callbacks. True when
        it left in time; otherwise the worker is told to quit at its next yield."""
        self.on_done = None
        for signal in (self.worker.yielded, self.worker.returned):
            with contextlib.suppress(TypeError, RuntimeError):
                signal.disconnect()
        self.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._left.is_set() or not self._started:
                return True
            if self._entered.is_set() and not self.worker.is_running:
                return True  # napari quit it at a yield: the thread has left the body
            time.sleep(0.005)
        self.worker.quit()
        return False


class TaskDock:
    """Mixin for a dock ``QWidget`` that runs one background :class:`Task` at a time.

    Every dock must stop its task when it goes away: napari removes a closed plugin dock by
    taking its widget out of the window (``setParent(None)``) without deleting it, and a
    worker left running after napari quits would outlive the objects it reports to.
    Subclasses set ``self.task``, implement ``_set_busy`` and list extra tasks in ``_tasks``.
    """

    task: Task | None = None

    def _tasks(self) -> tuple[Task | None, ...]:
        return (self.task,)

    @property
    def is_idle(self) -> bool:
        return self.task is None or not self.task.running

    @property
    def live(self) -> bool:
        """A task runs and was not asked to stop: a report queued before Stop must not
        overwrite the "Stopping…"/"Stopped" status."""
        return not self.is_idle and not self.task.stopping

    def _set_busy(self, busy: bool) -> None:
        raise NotImplementedError

    def _run_task(self, task: Task, *, busy: str, failed: Callable[[Failure], str]) -> None:
        """Start ``task`` (refused with ``busy`` while another runs); busy state until done,
        then ``failed(failure)`` goes to ``self.status`` or the task's own ``on_done`` runs."""
        if not self.is_idle:
            notify_failure(PetiteError(busy))
            return
        done = task.on_done

        def finished(result):
            self._set_busy(False)
            if isinstance(result, Failure):
                self.status.setText(failed(result))  # type: ignore[attr-defined]
            elif done is not None:
                done(result)

        task.on_done = finished
        self.task = task
        self._set_busy(True)
        task.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every running task through its control and wait for its thread."""
        tasks, self.task = self._tasks(), None
        for task in tasks:
            if task is not None and task.running:
                task.shutdown(timeout)

    def stop_on_destroy(self) -> None:
        """Also stop when Qt deletes the widget, without touching the deleted object."""
        holder = [self]
        self.destroyed.connect(lambda *_: holder and holder.pop().shutdown())  # type: ignore[attr-defined]

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)  # type: ignore[misc]

    def event(self, event) -> bool:
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is None:  # type: ignore[attr-defined]
                self.shutdown()
            else:  # docked: its tab must read its name, beside the other docks' tabs
                from qtpy.QtCore import QTimer

                from napari_petite._widgets.layout import literal_tab_title, tab_with_siblings

                literal_tab_title(self)  # type: ignore[arg-type]
                QTimer.singleShot(0, lambda: tab_with_siblings(self, TaskDock))  # once placed
        return super().event(event)  # type: ignore[misc]
