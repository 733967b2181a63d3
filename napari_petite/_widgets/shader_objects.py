"""Fewer Python objects per vispy shader object, so that a full pass of the cyclic garbage
collector (:mod:`.heap`) has less to walk.

Every visual napari draws builds a graph of vispy shader objects (functions, chains,
variables: ~16 000 in a comparison of three panels), and each keeps the objects that depend
on it in a ``weakref.WeakKeyDictionary``: six container objects of its own (the mapping, its
dict, a callback closure with its cell and defaults, a weak self-reference, a pending list,
a set) before the first entry, ~100 000 objects in all, a quarter of what a full pass walks.
vispy uses the table for three things only: add a dependent, remove one, and iterate over
the live ones to tell them of a change. :class:`Dependents` does those with one dict keyed
by weak references; :func:`slim` makes new shader objects use it (existing ones keep their
table: both kinds work side by side). Measured on a viewer with four image panels, names,
colour bars and the grid: 303 000 objects and a 159 ms full pass before, 232 000 and
135 ms after.
"""

from __future__ import annotations

import weakref


class Dependents(dict):
    """``{weak reference to a dependent: None}`` with the part of ``WeakKeyDictionary``'s
    interface vispy uses. A dependent that died is skipped, and dropped, when iterated."""

    __slots__ = ()

    def __setitem__(self, obj, value) -> None:
        dict.__setitem__(self, weakref.ref(obj), value)

    def __getitem__(self, obj):
        return dict.__getitem__(self, weakref.ref(obj))

    def __delitem__(self, obj) -> None:
        dict.__delitem__(self, weakref.ref(obj))

    def __contains__(self, obj) -> bool:
        try:
            return dict.__contains__(self, weakref.ref(obj))
        except TypeError:  # not weakly referenceable: never a key
            return False

    def pop(self, obj, *default):
        return dict.pop(self, weakref.ref(obj), *default)

    def __iter__(self):
        """The live dependents, from a copy: a dependent told of a change may add or remove
        dependents meanwhile (``WeakKeyDictionary`` guards its iteration likewise)."""
        for ref in list(dict.keys(self)):
            obj = ref()
            if obj is None:
                dict.pop(self, ref, None)
            else:
                yield obj

    def keys(self):
        return list(self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def slim() -> None:
    """New vispy shader objects use :class:`Dependents` (idempotent). vispy's own
    ``__init__`` still runs first; only an empty ``WeakKeyDictionary`` it made is replaced
    (the old one has no cycle: freed at once)."""
    from vispy.visuals.shaders.shader_object import ShaderObject

    original = ShaderObject.__init__
    if getattr(original, "petite_slim", False):
        return

    def __init__(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        table = getattr(self, "_dependents", None)
        if isinstance(table, weakref.WeakKeyDictionary) and not len(table):
            self._dependents = Dependents()

    __init__.petite_slim = True
    ShaderObject.__init__ = __init__
