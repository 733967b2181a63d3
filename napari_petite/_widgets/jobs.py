"""Background jobs for the docks: napari workers whose failures become notifications.

A job body is a generator run by ``napari.qt.threading.create_worker`` in a worker thread; it
never touches Qt. Exceptions are caught *inside* the thread and handed back as a
:class:`Failure`, so the dock shows one clear sentence (a ``PetiteError`` says what to do) and
returns to idle, instead of napari's traceback pop-up. A job can be stopped cleanly from the
GUI (Stop button, dock closed, napari closed): :meth:`Job.shutdown` asks the body to stop,
quits the worker and waits for the thread to leave the body.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from napari_petite.errors import PetiteError

log = logging.getLogger(__name__)


@dataclass
class Failure:
    """An exception raised inside a job, returned to the GUI thread."""

    error: BaseException

    @property
    def message(self) -> str:
        if isinstance(self.error, PetiteError):
            return str(self.error)
        return (f"Unexpected error: {type(self.error).__name__}: {self.error}. The dock is "
                "ready again; please report this with the log if it repeats.")


def notify_failure(failure: Failure | BaseException) -> None:
    """Show a failure as a napari error notification (never raises)."""
    from napari.utils.notifications import show_error

    if not isinstance(failure, Failure):
        failure = Failure(failure)
    if not isinstance(failure.error, PetiteError):
        log.error("napari-petite job failed", exc_info=failure.error)
    show_error(failure.message)


class Job:
    """One background run: a generator body, its worker, and a thread-side 'left' flag."""

    def __init__(self, body: Callable[[], Generator[Any, Any, Any]], *, desc: str,
                 total: int = 0, on_yield: Callable[[Any], None] | None = None,
                 on_done: Callable[[Any], None] | None = None,
                 on_stop: Callable[[], None] | None = None, progress: bool = True) -> None:
        from napari.qt.threading import create_worker

        self._left = threading.Event()
        self._entered = threading.Event()
        self._started = False
        self._done = False
        self.stop_requested = threading.Event()
        self._on_stop = on_stop
        self.on_done = on_done
        self.result: Any = None

        def guarded():
            self._entered.set()
            try:
                if self.stop_requested.is_set():
                    return None
                result = yield from body()
                return result
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
        # a worker quit at a yield leaves the body suspended: close it now (runs its finally
        # blocks and frees the model) instead of whenever the garbage collector gets to it
        gen = getattr(self.worker, "_gen", None)
        if gen is not None:
            try:
                gen.close()
            except Exception:
                log.exception("closing a napari-petite job failed")
        if self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback(self.result)

    # -- control ---------------------------------------------------------------------------
    def start(self) -> Job:
        self._started = True
        self.worker.start()
        return self

    def emit(self, value) -> None:
        """Report ``value`` to the GUI from inside a blocking call of the body (thread-safe:
        a queued signal, as for values the body yields)."""
        self.worker.yielded.emit(value)

    def set_progress(self, n: int, desc: str | None = None) -> None:
        """Move napari's activity bar to ``n``. Call it last in a slot: napari's bar runs
        ``processEvents`` while it repaints, so the job's end may be handled inside this call
        and anything the slot sets afterwards would overwrite the final status."""
        pbar = getattr(self.worker, "pbar", None)
        if pbar is None:
            return
        if n > pbar.n:
            pbar.update(n - pbar.n)
        if desc is not None:
            pbar.set_description(desc)

    @property
    def running(self) -> bool:
        """Started and its worker has not finished (GUI-thread view)."""
        return self._started and not self._done

    def stop(self) -> None:
        """Ask the body to stop at its next check (a training step / an inference window)."""
        self.stop_requested.set()
        if self._on_stop is not None:
            self._on_stop()
        self.worker.quit()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop and wait until the thread left the body; drop GUI callbacks. True when left."""
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
                return True  # quit at a yield: the thread has left the worker
            time.sleep(0.005)
        return False


class JobDock:
    """Mixin for a dock ``QWidget`` that runs one background :class:`Job` at a time.

    Every dock must stop its worker when it goes away: napari removes a closed plugin dock by
    taking its widget out of the window (``setParent(None)``) without deleting it, and a
    worker left running after napari quits would outlive the objects it reports to.
    Subclasses set ``self.job``, implement ``_set_busy`` and list extra jobs in ``_jobs``.
    """

    job: Job | None = None

    def _jobs(self) -> tuple[Job | None, ...]:
        return (self.job,)

    @property
    def is_idle(self) -> bool:
        return self.job is None or not self.job.running

    def _set_busy(self, busy: bool) -> None:
        raise NotImplementedError

    def _run_job(self, job: Job, *, busy: str, failed: Callable[[Failure], str]) -> None:
        """Start ``job`` (refused with ``busy`` while another runs); busy state until done,
        then ``failed(failure)`` goes to ``self.status`` or the job's own ``on_done`` runs."""
        if not self.is_idle:
            notify_failure(PetiteError(busy))
            return
        done = job.on_done

        def finished(result):
            self._set_busy(False)
            if isinstance(result, Failure):
                self.status.setText(failed(result))
            elif done is not None:
                done(result)

        job.on_done = finished
        self.job = job
        self._set_busy(True)
        job.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every running job and wait for its thread (dock or napari closing)."""
        jobs, self.job = self._jobs(), None
        for job in jobs:
            if job is not None and job.running:
                job.shutdown(timeout)

    def stop_on_destroy(self) -> None:
        """Also stop when Qt deletes the widget, without touching the deleted object."""
        holder = [self]
        self.destroyed.connect(lambda *_: holder and holder.pop().shutdown())  # type: ignore[attr-defined]

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)  # type: ignore[misc]

    def event(self, event) -> bool:
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.ParentChange and self.parent() is None:  # type: ignore[attr-defined]
            self.shutdown()
        return super().event(event)  # type: ignore[misc]
