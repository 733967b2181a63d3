"""napari's unit registry, built in a worker thread instead of in the first layer's creation.

napari gives every layer physical units through pint's application registry, which pint
builds on first use: parsing its definitions file takes ~350 ms, and that first use is
the first layer a viewer adds, on the GUI thread (the longest stall when a scan opened).
:func:`warm` builds an identical registry in a worker when the first dock opens and, back
on the GUI thread, hands it to pint, but only while pint's own is still unbuilt: units
made from two registries do not mix, so once anything has built pint's own it stays.
"""

from __future__ import annotations

_STARTED = False


def unbuilt() -> bool:
    """pint's application registry is still the lazy one nothing has used yet (asking
    does not build it)."""
    import pint
    from pint.registry import LazyRegistry

    return isinstance(pint.get_application_registry().get(), LazyRegistry)


def _adopt(registry) -> None:
    import pint

    if isinstance(registry, pint.UnitRegistry) and unbuilt():  # not None, not a Failure
        pint.set_application_registry(registry)


def warm():
    """Start building the registry (once per process; nothing when pint's is built);
    returns the task, or None."""
    global _STARTED
    if _STARTED or not unbuilt():
        return None
    _STARTED = True
    from napari_petite._widgets.tasks import Task

    def body(_control):
        from napari_petite._widgets import heap

        try:  # what pint's lazy registry would build, with the same option
            with heap.importing("units"):  # ~10 000 objects for the process's life
                import pint

                return pint.UnitRegistry(on_redefinition="raise")
        except Exception:  # pint then builds its own, as before
            return None
        yield  # a generator: napari's workers run generators

    return Task(body, desc="units", on_done=_adopt).start()
