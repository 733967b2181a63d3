"""A clinician's walk through `petite gui` at 1920x1080 and 1366x768, pressing the real
buttons: open the dataset, load a test subject, train a few steps, reconstruct with the base
and with the adapted model, compare side by side, read region statistics, export. Screenshots
of every step go to .artifacts/ for a person to look at; the window must fit the screen, the
panels must be labelled, and the event loop must not stall while the work runs off it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_widgets import ARTIFACTS, gui_dataset, unetr_base  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gui
#: the longest the event loop may go without running while work happens in the workers
STALL_MS = 200.0
HEARTBEAT_MS = 10


class Heartbeat:
    """A QTimer beat; the gaps between beats while ``with``-ed are the stalls. ``stop_on``
    stops it when a worker returns: what follows on the GUI thread is napari adding the
    results (layers, overlays), which software OpenGL makes slow and this is not about."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.beats: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(lambda: self.beats.append(time.perf_counter()))

    def __enter__(self):
        self.beats.clear()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    def stop_on(self, task) -> None:
        task.worker.returned.connect(lambda *_: self.timer.stop())

    @property
    def p99_ms(self) -> float:
        gaps = np.diff(self.beats) * 1000.0 - HEARTBEAT_MS
        return float(np.percentile(gaps, 99)) if len(gaps) > 5 else 0.0


def _click(qtbot, button) -> None:
    from qtpy.QtCore import Qt

    assert button.isEnabled() and button.isVisible(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _tab(qtbot, window, name: str) -> None:
    """Bring a dock's tab to the front, as a click on its tab does."""
    from qtpy.QtWidgets import QTabBar

    for bar in window.findChildren(QTabBar):
        for i in range(bar.count()):
            if bar.tabText(i).startswith(name[:12]):
                bar.setCurrentIndex(i)
                qtbot.wait(100)
                return
    raise AssertionError(f"no tab {name!r}")


def _shot(window, name: str) -> None:
    window.grab().save(str(ARTIFACTS / f"{name}.png"))


@pytest.mark.parametrize("size", [(1920, 1080), (1366, 768)])
def test_walk(make_napari_viewer, qtbot, gui_dataset, unetr_base, tmp_path,  # noqa: F811
              size):
    from qtpy.QtCore import Qt

    from napari_petite._widgets.window import open_viewer

    tag = f"{size[0]}x{size[1]}"
    viewer, docks = open_viewer(data=gui_dataset, base=unetr_base, sample=False,
                                viewer=make_napari_viewer())
    window = viewer.window._qt_window
    try:
        window.resize(*size)
        window.show()
        qtbot.wait(300)
        hint = window.minimumSizeHint()
        assert hint.width() <= size[0] and hint.height() <= size[1]
        data, tune, comp = docks["Scanner data"], docks["Fine-tune"], docks["Reconstruct & compare"]
        data.target.setCurrentText("tgt")
        top = data.tree.findItems("tgt", Qt.MatchFlag.MatchExactly)[0]
        data.tree.setCurrentItem(top.child(2))  # sub-02: the test subject
        stalls = {}
        with Heartbeat() as beat:
            _click(qtbot, data.load_button)
            beat.stop_on(data.task)
            qtbot.waitUntil(lambda: "tgt/sub-02 low" in viewer.layers and data.is_idle,
                            timeout=30_000)
        stalls["load"] = beat.p99_ms
        _shot(window, f"walk-{tag}-1-loaded")

        _tab(qtbot, window, "Fine-tune")
        tune.settings.steps.setValue(6)
        tune.settings.val_every.setValue(3)
        tune.settings.device.setCurrentText("cpu")
        qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
        with Heartbeat() as beat:
            _click(qtbot, tune.run.start_button)
            beat.stop_on(tune.task)
            qtbot.waitUntil(lambda: tune.is_idle, timeout=120_000)
        stalls["train"] = beat.p99_ms
        assert tune.run.curves.start_psnr is not None  # the base model's step-0 point
        _shot(window, f"walk-{tag}-2-trained")

        _tab(qtbot, window, "Reconstruct & compare")
        for choice in ("base model", tune.session.models[-1].name if tune.session.models
                       else "base model"):
            comp.model.setCurrentIndex(comp.model.findData(choice))
            with Heartbeat() as beat:
                _click(qtbot, comp.run_button)
                beat.stop_on(comp.task)
                qtbot.waitUntil(lambda: comp.is_idle, timeout=60_000)
            stalls[f"reconstruct {choice}"] = beat.p99_ms
        _click(qtbot, comp.views.grid_button)
        shown = [lay for lay in viewer.layers if lay.visible]
        adapted = bool(tune.session.models)  # base | adapted side by side when both exist
        assert len(shown) == (4 if adapted else 3)
        assert all(lay.name_overlay.visible for lay in shown)
        if adapted:
            assert {"reconstructed · base model", "reconstructed · run 1"} <= {
                lay.name for lay in shown}
        from napari_petite._widgets.views import CHAR_PX_PER_PT

        panel = viewer.canvas.viewbox_size(viewer.layers)[1]  # each name fits its panel
        assert all(lay.name_overlay.font_size * CHAR_PX_PER_PT * len(lay.name) <= panel
                   for lay in shown), ([(lay.name, lay.name_overlay.font_size) for lay in shown],
                                       viewer.canvas.grid.shape, panel)
        assert comp.table.columnCount() >= 2  # low-count + base (+ adapted)
        comp.roi.source.setCurrentText("tgt/sub-02 labels")
        _click(qtbot, comp.roi.measure_button)
        assert comp.roi.table.rowCount() == len(comp.roi.results) >= 3
        _shot(window, f"walk-{tag}-3-compared")
        out = comp.export_nifti(tmp_path / f"recon-{tag}.nii.gz")
        assert out is not None and out.is_file()
        for name, p99 in stalls.items():
            assert p99 < STALL_MS, (name, stalls)
    finally:
        viewer.window._qt_window.hide()
