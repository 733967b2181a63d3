"""What keeps the GUI thread short with software OpenGL: layer changes batched into one
scene-graph rebuild, and the start-up heap out of the garbage collector's full passes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def _count_rebuilds(viewer, monkeypatch) -> list:
    """napari's canvas reorders its visuals once per scene-graph rebuild: count those."""
    canvas = viewer.window._qt_viewer.canvas
    calls = []
    original = canvas._reorder_layers

    def counted():
        calls.append(1)
        return original()

    monkeypatch.setattr(canvas, "_reorder_layers", counted)
    return calls


def test_showing_some_layers_rebuilds_the_scene_once(make_napari_viewer, monkeypatch):
    from napari_petite._widgets import views

    viewer = make_napari_viewer()
    layers = [viewer.add_image(np.random.rand(4, 8, 8).astype("f4"), name=f"scan {i}")
              for i in range(4)]
    viewer.canvas.grid.enabled = True
    calls = _count_rebuilds(viewer, monkeypatch)
    views.only(viewer, layers[:1], grid=False)
    assert [lay.visible for lay in layers] == [True, False, False, False]
    assert not viewer.canvas.grid.enabled
    assert len(calls) == 1  # four changes, one rebuild


def test_the_grid_is_laid_out_in_one_rebuild(make_napari_viewer, monkeypatch):
    from napari_petite._widgets import views

    viewer = make_napari_viewer()
    layers = [viewer.add_image(np.random.rand(4, 8, 8).astype("f4"), name=f"scan {i}")
              for i in range(3)]
    calls = _count_rebuilds(viewer, monkeypatch)
    layout, *shows = views.grid_steps(viewer, [[lay] for lay in reversed(layers)])
    layout()
    assert len(calls) == 1  # hide, move and grid settings together
    assert viewer.canvas.grid.enabled and viewer.canvas.grid.stride == 1
    assert list(viewer.layers) == list(reversed(layers))
    for show in shows:
        show()
    assert all(lay.visible for lay in layers)


_FRESH = """
import gc, weakref
from napari_petite._widgets import heap
keep = [[i] for i in range(1000)]
heap.settle()
frozen = gc.get_freeze_count()
assert frozen > 1000, frozen
more = [[i] for i in range(1000)]
heap.settle()  # once per process: later objects stay collectable
assert gc.get_freeze_count() == frozen, (gc.get_freeze_count(), frozen)

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
gc.collect()
assert gone() is None  # a cycle made afterwards is still collected
print("ok")
"""


def _in_a_fresh_process(script: str) -> None:
    """Freezing is once per process: these checks need one of their own."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_start_up_heap_is_frozen_once_and_later_garbage_collected():
    _in_a_fresh_process(_FRESH)


_IMPORTING = """
import gc
from napari_petite._widgets import heap
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
with heap.importing("many"):
    assert not gc.isenabled()
    module_level = [[i] for i in range(300_000)]  # would trigger collections
assert gc.isenabled() and passes == [], passes
frozen = gc.get_freeze_count()
assert frozen >= 300_000, frozen
with heap.importing("many"):  # once per name: no second pause, no second freeze
    assert gc.isenabled()
assert gc.get_freeze_count() == frozen
with heap.importing("torch"):  # as two threads importing at once: the pause lasts
    with heap.importing("units"):
        assert not gc.isenabled()
    assert not gc.isenabled()
assert gc.isenabled()
print("ok")
"""


def test_imports_run_without_collections_and_are_frozen_after():
    _in_a_fresh_process(_IMPORTING)


_UNLOCKED = """
import sys
from napari_petite._widgets.tasks import load_extension_unlocked
assert load_extension_unlocked("torch", "_C")
assert "torch" not in sys.modules  # loaded, not imported
if sys.platform.startswith("linux"):
    maps = open("/proc/self/maps").read()
    assert "libtorch_cpu" in maps and "torch/_C." in maps
import torch
assert float(torch.ones(3).sum()) == 3.0
assert not load_extension_unlocked("no_such_package_here", "_C")
assert not load_extension_unlocked("json", "_C")  # no such extension in the package
print("ok")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="dlopen: Linux and macOS")
def test_torch_s_library_loads_without_the_gil_and_then_imports():
    """The import of torch in a worker held the GUI thread 230-330 ms in ``dlopen``."""
    _in_a_fresh_process(_UNLOCKED)


def test_the_docks_shared_session_settles_the_heap(make_napari_viewer):
    import gc

    from napari_petite._widgets.state import session_for

    session_for(make_napari_viewer())
    assert gc.get_freeze_count() > 0


def test_napari_s_forced_collections_are_young_ones_and_removed_layers_are_freed(
        make_napari_viewer, monkeypatch):
    import gc
    import weakref

    from napari._vispy import canvas

    from napari_petite._widgets import heap
    from napari_petite._widgets.state import session_for

    viewer = make_napari_viewer()
    session_for(viewer)
    assert canvas.gc is heap.YOUNG
    assert heap.YOUNG.get_freeze_count is gc.get_freeze_count  # the rest is gc's own
    layer = viewer.add_image(np.random.rand(4, 8, 8).astype("f4"), name="scan")
    gone = weakref.ref(layer)
    asked = []
    original = gc.collect
    monkeypatch.setattr(gc, "collect", lambda generation=2: asked.append(generation)
                        or original(generation))
    viewer.layers.remove(layer)
    assert asked and max(asked) <= 1  # napari asked for a collection: a young one
    monkeypatch.setattr(gc, "collect", original)
    del layer
    gc.collect()
    assert gone() is None  # the removed layer is freed at the next full pass


def test_the_unit_registry_is_built_off_the_gui_thread_and_adopted(make_napari_viewer, qtbot):
    import pint
    from pint.registry import LazyRegistry

    from napari_petite._widgets import unit_registry

    before, started = pint.get_application_registry().get(), unit_registry._STARTED
    pint.set_application_registry(LazyRegistry())  # as in a process nothing has used it
    unit_registry._STARTED = False
    try:
        assert unit_registry.unbuilt()
        task = unit_registry.warm()
        assert task is not None and unit_registry.warm() is None  # once
        qtbot.waitUntil(lambda: not unit_registry.unbuilt(), timeout=30000)
        registry = pint.get_application_registry().get()
        assert isinstance(registry, pint.UnitRegistry)
        viewer = make_napari_viewer()
        layer = viewer.add_image(np.zeros((4, 8, 8), "f4"), units="mm", scale=(2, 1, 1))
        assert layer.units[0] == registry.mm  # napari's layers use the adopted one
    finally:
        pint.set_application_registry(before)
        unit_registry._STARTED = started


def test_a_registry_built_meanwhile_is_not_replaced(qtbot):
    import pint

    from napari_petite._widgets import unit_registry

    built = pint.get_application_registry().get()
    built.mm  # noqa: B018 - pint's own is built
    assert not unit_registry.unbuilt()
    unit_registry._adopt(pint.UnitRegistry())
    assert pint.get_application_registry().get() is built


def test_a_failed_build_leaves_pint_to_build_its_own():
    import pint
    from pint.registry import LazyRegistry

    from napari_petite._widgets import unit_registry
    from napari_petite._widgets.tasks import Failure

    before = pint.get_application_registry().get()
    pint.set_application_registry(LazyRegistry())
    try:
        for result in (None, Failure(KeyboardInterrupt())):
            unit_registry._adopt(result)
            assert unit_registry.unbuilt()
    finally:
        pint.set_application_registry(before)


def test_drawing_steps_stop_quietly_when_qt_deleted_their_timer_first(qtbot):
    """A dock stops its steps from its ``destroyed`` signal; when the window closes, Qt may
    have deleted the steps (children of another widget) by then."""
    from qtpy.QtWidgets import QWidget

    from napari_petite._widgets.steps import Steps

    window = QWidget()
    owner, dock = QWidget(window), QWidget(window)  # Qt deletes children in this order
    steps = Steps(owner)
    drawn = []
    steps.run([lambda: drawn.append(1)])
    stopped = []
    dock.destroyed.connect(lambda *_: (steps.stop(), stopped.append(True)))
    window.deleteLater()
    qtbot.waitUntil(lambda: stopped == [True], timeout=5000)
    assert steps.idle and not drawn


def test_full_collections_wait_for_a_quiet_event_loop(qtbot):
    """Young passes go on as usual; a due full pass waits while the loop is busy and while a
    task runs, then runs and frees a cycle that had reached the oldest generation."""
    import gc
    import time
    import weakref

    from qtpy.QtCore import QThreadPool, QTimer

    from napari_petite._widgets import heap

    quiet = heap.QuietPasses.start()
    assert quiet is heap.QuietPasses.start()  # one per process
    assert gc.get_threshold()[2] == heap.BACKSTOP
    gc.collect()
    for _ in range(heap.DUE):
        gc.collect(1)
    qtbot.waitUntil(lambda: quiet._long_lived is not None, timeout=5000)  # the baseline

    class Node:
        pass

    node = Node()
    node.me = node
    gone = weakref.ref(node)
    keep = [[i] for i in range(len(gc.get_objects(2)) // 2)]
    for _ in range(heap.DUE):
        gc.collect(1)  # the cycle and ``keep`` reach the oldest generation
    del node  # garbage now, out of the young passes' reach
    gc.collect(1)
    assert gone() is not None
    passes = quiet.passes

    busy = QTimer()
    busy.timeout.connect(lambda: time.sleep(0.12))  # drawing: the loop is late
    busy.start(20)
    qtbot.wait(int(3 * heap.QUIET_S * 1000))
    assert quiet.passes == passes and gone() is not None
    busy.stop()
    pool = QThreadPool.globalInstance()
    pool.start(lambda: time.sleep(3 * heap.QUIET_S))  # a task: its result would come mid-pass
    qtbot.wait(int(2 * heap.QUIET_S * 1000))
    assert pool.activeThreadCount() == 1 and quiet.passes == passes
    qtbot.waitUntil(lambda: quiet.passes == passes + 1, timeout=5000)
    assert pool.activeThreadCount() == 0
    assert gone() is None and len(keep) > 0


def test_a_layer_caught_by_a_freeze_is_freed_once_removed(make_napari_viewer, qtbot):
    """The first dock can open after scans were loaded: a freeze then catches their layers,
    and removing one must still free it (with its volume) at the next quiet moment."""
    import gc
    import weakref

    from napari_petite._widgets import heap

    viewer = make_napari_viewer()
    quiet = heap.QuietPasses.start()
    heap.watch(viewer)
    layer = viewer.add_image(np.zeros((4, 8, 8), np.float32), name="loaded before")
    gone = weakref.ref(layer)
    heap.freeze_imports("a freeze with a layer loaded")
    assert not heap.stranded()
    thaws = quiet.thaws
    qtbot.wait(int(3 * heap.QUIET_S * 1000))
    assert quiet.thaws == thaws  # nothing removed: no thaw
    viewer.layers.remove(layer)
    del layer
    gc.collect()
    assert gone() is not None and heap.stranded()  # frozen: a collection cannot free it
    qtbot.waitUntil(lambda: quiet.thaws == thaws + 1, timeout=15000)
    gc.collect()
    assert gone() is None and not heap.stranded()


def test_the_lighter_dependents_table_behaves_like_vispy_s_own():
    from napari_petite._widgets.shader_objects import Dependents

    class Obj:
        pass

    table, a, b = Dependents(), Obj(), Obj()
    table[a] = None
    table[b] = None
    assert a in table and list(table) == [a, b] and len(table) == 2
    assert 3 not in table  # not weakly referenceable: never a key
    table.pop(a)
    assert a not in table and list(table) == [b]
    del b  # a dead dependent is skipped and dropped
    assert list(table) == [] and dict.__len__(table) == 0
    c = Obj()
    table[c] = None
    seen = []
    for obj in table:  # changed while iterated, as vispy's change propagation may
        seen.append(obj)
        table[Obj()] = None
        table.pop(c)
    assert seen == [c]


def test_slim_shader_objects_still_redraw_what_changed(make_napari_viewer):
    """A colormap change reaches the shaders through the dependents tables: the canvas must
    show it. Every layer added after the docks' session started uses the light table."""
    from vispy.visuals.shaders.shader_object import ShaderObject

    from napari_petite._widgets.shader_objects import Dependents
    from napari_petite._widgets.state import session_for

    viewer = make_napari_viewer(show=True)
    session_for(viewer)
    made = []
    original = ShaderObject.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(type(self._dependents))

    ShaderObject.__init__ = spy
    try:
        ramp = np.tile(np.linspace(0, 1, 64, dtype="f4"), (64, 1))
        layer = viewer.add_image(ramp, colormap="gray", contrast_limits=(0, 1))
        gray = viewer.screenshot(canvas_only=True, flash=False)
    finally:
        ShaderObject.__init__ = original
    assert made and set(made) == {Dependents}
    layer.colormap = "red"
    red = viewer.screenshot(canvas_only=True, flash=False)
    middle = tuple(s // 2 for s in gray.shape[:2])
    assert gray[middle][0] > 60 and abs(int(gray[middle][0]) - int(gray[middle][1])) < 10
    assert red[middle][0] > 60 and red[middle][1] < 10  # now red only


def test_a_scene_rebuild_places_the_overlays_once_and_where_napari_would(
        make_napari_viewer, monkeypatch):
    from napari._vispy.canvas import VispyCanvas

    from napari_petite._widgets.state import session_for

    viewer = make_napari_viewer(show=True)
    session_for(viewer)
    layers = [viewer.add_image(np.random.rand(4, 16, 16).astype("f4"), name=f"scan {i}")
              for i in range(6)]
    for layer in layers:
        layer.colorbar.visible = True
        layer.name_overlay.visible = True
    viewer.grid.enabled = True
    placed = []
    original = VispyCanvas._update_overlay_canvas_positions
    monkeypatch.setattr(VispyCanvas, "_update_overlay_canvas_positions",
                        lambda self, event=None: placed.append(1) or original(self))
    layers[0].visible = False  # one rebuild
    assert len(placed) == 1  # napari alone: once per layer and once for the canvas's own
    canvas = viewer.window._qt_viewer.canvas
    bars = [v for lay in layers[1:] for v in canvas._layer_overlay_to_visual[lay].values()]
    where = [tuple(v.node.transform.translate) for v in bars]
    original(canvas)  # napari's own placement changes nothing
    assert [tuple(v.node.transform.translate) for v in bars] == where
    assert len(set(where)) > 1  # the cells' overlays are not all in one place


def _links_moving_cells(viewer, src: int, dst: int) -> tuple[int, np.ndarray]:
    """OpenGL program links while a layer moves to another grid cell (all between move),
    and the canvas after."""
    from vispy.gloo import glir

    links = []
    original = glir.GlirProgram.link_program

    def counting(self, *args, **kwargs):
        links.append(1)
        return original(self, *args, **kwargs)

    glir.GlirProgram.link_program = counting
    try:
        viewer.layers.move(src, dst)
        shot = viewer.screenshot(canvas_only=True, flash=False)
    finally:
        glir.GlirProgram.link_program = original
    return len(links), shot


def test_a_program_is_relinked_only_for_new_code_and_draws_the_same(make_napari_viewer):
    """Moving visuals between grid cells regenerates identical shader code: it keeps its
    linked program, and the canvas looks exactly as after relinking."""
    from vispy.gloo import Program
    from vispy.visuals.shaders.program import ModularProgram

    from napari_petite._widgets.state import session_for

    viewer = make_napari_viewer(show=True)
    session_for(viewer)
    ramp = np.tile(np.linspace(0, 1, 32, dtype="f4"), (32, 1))
    for i, data in enumerate((ramp, ramp.T, 1 - ramp)):
        layer = viewer.add_image(data, name=f"scan {i}", colormap="magma",
                                 contrast_limits=(0, 1))
        layer.colorbar.visible = True
        layer.name_overlay.visible = True
    viewer.grid.enabled = True
    viewer.screenshot(canvas_only=True, flash=False)
    kept, shot_kept = _links_moving_cells(viewer, 0, 3)  # every panel to another cell
    _links_moving_cells(viewer, 2, 0)  # and back
    reused = ModularProgram.set_shaders
    ModularProgram.set_shaders = Program.set_shaders  # vispy's own: relink every rebuild
    try:
        relinked, shot_relinked = _links_moving_cells(viewer, 0, 3)
    finally:
        ModularProgram.set_shaders = reused
    assert relinked > 0 and kept < relinked / 2, (kept, relinked)
    assert np.array_equal(shot_kept, shot_relinked)
    assert shot_kept[..., :3].std() > 10  # panels were drawn, not a blank canvas


def test_layers_added_unselected_leave_the_layer_controls_alone(make_napari_viewer):
    from napari_petite._widgets import views

    viewer = make_napari_viewer()
    scan = viewer.add_image(np.zeros((4, 8, 8), "f4"), name="scan")
    assert viewer.layers.selection.active is scan
    switches = []
    viewer.layers.selection.events.active.connect(lambda event: switches.append(event))
    with views.unselected(viewer):
        viewer.add_points(np.zeros((1, 3)), name="cross")
        viewer.add_image(np.zeros((4, 8, 8), "f4"), name="hidden", visible=False)
    assert viewer.layers.selection.active is scan and not switches
    later = viewer.add_image(np.zeros((4, 8, 8), "f4"), name="later")  # napari's way again
    assert viewer.layers.selection.active is later
