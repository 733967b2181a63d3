"""A faster way for vispy to list a shader program's variables, with the same result.

Every time vispy builds a shader program (a layer shown in a new grid cell, a colour bar,
a text overlay, a crosshair line) it lists the program's uniforms, attributes and varyings
by running regular expressions over the whole GLSL source, 20-30 KB per program. Its first
expression, which strips ``//`` comments, backtracks over every line and costs 7-20 ms a
program on this project's 2-core machines; napari builds 5-26 programs for one change of
the comparison, so with software OpenGL (no GPU) two thirds of a repaint went into this
parse and most GUI stalls over 200 ms were made of it.

:func:`install` replaces vispy's ``Program._parse_variables_from_code`` by one that strips
comments line by line (what the expression does: each line loses everything from its last
``//``), runs vispy's own variable expressions, and remembers the result by source text,
since napari builds the same programs again and again. The result is the same dict, in
the same order; ``tests/test_glsl_parse.py`` checks it against vispy's for every program
a viewer with the comparison's layers and overlays builds.
"""

from __future__ import annotations

import functools

_ORIGINAL = None  # vispy's own method, kept for the test that compares the two


def strip_comments(code: str) -> str:
    """What ``re.sub(r'(.*)(//.*)', r'\\1', code, flags=re.M)`` makes of ``code``."""
    return "\n".join(line[:line.rfind("//")] if "//" in line else line
                     for line in code.split("\n"))


@functools.lru_cache(maxsize=256)  # ~25 KB of source per key
def _variables(code: str) -> tuple:
    """vispy's variable table of a program's joined source, as ``(name, entry)`` pairs in
    vispy's order (a tuple: the cached value must not be changed by a program)."""
    from vispy.gloo.program import REGEX_VAR

    code = strip_comments(code)
    found: dict = {}
    for kind in ("uniform", "attribute", "varying", "const", "in", "out"):
        reg = REGEX_VAR[kind]
        kind = {"in": "attribute", "out": "varying"}.get(kind, kind)
        for m in reg.finditer(code):
            gtype = m.group("type")
            size = int(m.group("size")) if m.group("size") else -1
            this_kind = kind
            if size >= 1:  # arrays: each element and the whole, as vispy lists them
                for i in range(size):
                    name = f"{m.group('name')}[{i}]"
                    found[name] = kind, gtype, name, -1
                this_kind = "uniform_array"
            name = m.group("name")
            found[name] = this_kind, gtype, name, size
    return tuple(found.items())


def _parse_variables_from_code(self, update_variables=True):
    """Drop-in for ``vispy.gloo.Program._parse_variables_from_code``."""
    self._code_variables = dict(_variables("\n\n".join(sh.code for sh in self._shaders)))
    if update_variables:
        self._process_pending_variables()


def install() -> None:
    """Use the faster parse for every vispy program of this process (idempotent)."""
    global _ORIGINAL
    from vispy.gloo.program import Program

    if Program._parse_variables_from_code is not _parse_variables_from_code:
        _ORIGINAL = Program._parse_variables_from_code
        Program._parse_variables_from_code = _parse_variables_from_code


def original():
    """vispy's own method (None before :func:`install`)."""
    return _ORIGINAL
