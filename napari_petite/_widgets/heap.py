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
* :func:`freeze_imports` does the same, without the collection, right after the torch
  stack is imported by the first task that needs it (torch, sympy, scipy, pandas, MONAI:
  ~300 000 more objects, all module-level). Only imports are frozen, never the viewer's
  layers: a removed layer must still be freed, with its volume and its OpenGL buffers.
* :func:`install` makes napari's *forced* collections young-generation ones. napari runs
  ``gc.collect()`` every time a layer is removed and every time a batched change of the
  layer list ends, so that a Windows OpenGL driver sees a removed layer's buffers freed
  before the scene is rebuilt; elsewhere a young collection frees what the change just
  made garbage, the rest goes at Python's next automatic full pass, and a batched change
  (:func:`.views.batched`) costs one scene rebuild instead of a rebuild plus 200 ms. On
  Windows napari's own collection stays.
"""

from __future__ import annotations

import gc
import sys

_FROZEN_AFTER: set[str] = set()  # what has been frozen: "start-up", imports by name


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
        gc.freeze()


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
    """napari's forced collections become young ones (not on Windows; idempotent)."""
    if sys.platform == "win32":
        return
    from napari._vispy import canvas

    if getattr(canvas, "gc", None) is gc:
        canvas.gc = YOUNG
