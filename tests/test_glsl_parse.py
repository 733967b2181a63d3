"""The faster shader-variable parse (napari_petite._widgets.glsl_parse) gives vispy's own
result for every program a real viewer builds while showing a comparison, and strips
comments exactly as vispy's expression does."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("code", [
    "", "a", "//", "x = 1; // one\ny = 2;", "a // b // c\n//\n\n  // x\r\nuniform float u; //u\r",
    "no comment\nuniform vec4 c; // a // b\nvarying float v;\n", "http://a//b", "\n\n//\n",
])
def test_comments_are_stripped_as_vispy_strips_them(code):
    from napari_petite._widgets.glsl_parse import strip_comments

    assert strip_comments(code) == re.sub(r"(.*)(//.*)", r"\1", code, flags=re.M)


def _vispy_table(codes) -> list:
    """vispy's own parse of a program's shaders (its method on a stand-in program)."""
    from napari_petite._widgets import glsl_parse

    program = SimpleNamespace(_shaders=[SimpleNamespace(code=c) for c in codes],
                              _process_pending_variables=lambda: None)
    glsl_parse.original()(program)
    return list(program._code_variables.items())


def test_a_table_of_every_kind_is_vispys():
    from napari_petite._widgets import glsl_parse

    glsl_parse.install()
    vertex = ("#version 330\nin vec3 a_position; // in vec2 hidden;\nattribute float a;\n"
              "uniform highp mat4 u_mvp;\nuniform float u_w[3];\nconst float k = 2.5;\n"
              "out vec4 v_color;\nvarying lowp float v_x; // uniform int gone;\n")
    fragment = "in vec4 v_color;\nuniform sampler2D u_tex;\nvoid main() { }\n"
    table = dict(glsl_parse._variables(vertex + "\n\n" + fragment))
    assert table["a_position"][0] == "attribute" and table["v_color"][0] == "varying"
    assert table["u_w"][0] == "uniform_array" and "u_w[2]" in table and "gone" not in table
    assert list(table.items()) == _vispy_table([vertex, fragment])


def test_every_program_of_a_comparison_gets_vispys_table(make_napari_viewer, qtbot,
                                                          monkeypatch):
    from vispy.gloo.program import Program

    from napari_petite._widgets import glsl_parse
    from napari_petite._widgets.comparison import Comparison

    glsl_parse.install()
    glsl_parse.install()  # twice: still vispy's method kept as the original
    assert glsl_parse.original() is not glsl_parse._parse_variables_from_code
    built = []
    fast = Program._parse_variables_from_code

    def recording(self, update_variables=True):
        fast(self, update_variables)
        built.append(([sh.code for sh in self._shaders], list(self._code_variables.items())))

    monkeypatch.setattr(Program, "_parse_variables_from_code", recording)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    layers = [viewer.add_image(rng.random((12, 24, 20), np.float32), name=n,
                               scale=(2.0, 1.0, 1.0)) for n in ("low", "base", "full")]
    viewer.add_shapes([[[0, 0], [10, 10]]], shape_type="line", edge_color="yellow")
    viewer.add_points([[5, 5, 5]], size=3)
    comparison = Comparison(viewer, say=lambda _text: None)
    comparison.set_panels(layers)
    for action in (lambda: comparison.show(), lambda: comparison.set_view("coronal"),
                   lambda: comparison.set_mip(True), lambda: comparison.show("overlay"),
                   lambda: comparison.show("side by side")):
        action()
        qtbot.waitUntil(lambda: comparison.settled, timeout=30_000)
        viewer.screenshot(canvas_only=True, flash=False)  # draws: builds the programs
    assert len(built) >= 10, "the viewer built too few programs for the test to mean much"
    assert any(len(table) > 5 for _codes, table in built)
    for codes, table in built:
        assert table == _vispy_table(codes)


def test_the_docks_shared_session_installs_it(make_napari_viewer):
    from vispy.gloo.program import Program

    from napari_petite._widgets import glsl_parse
    from napari_petite._widgets.state import session_for

    session_for(make_napari_viewer())
    assert Program._parse_variables_from_code is glsl_parse._parse_variables_from_code
