"""A clinician's walk through `petite gui` at 1920x1080 and 1366x768, pressing the real
buttons: open the dataset, load a test subject, train a few steps, reconstruct with the base
and with the adapted model, compare side by side, read region statistics, export. Screenshots
of every step go to .artifacts/ for a person to look at; the window must fit the screen, the
panels must be labelled, and the event loop must not stall while the work runs off it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import pet_like, write_nifti
from test_widgets import ARTIFACTS, gui_dataset, unetr_base, written  # noqa: F401

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
        out = written(qtbot, comp.export_nifti(tmp_path / f"recon-{tag}.nii.gz"))
        assert out is not None and out.is_file()
        for name, p99 in stalls.items():
            assert p99 < STALL_MS, (name, stalls)
    finally:
        viewer.window._qt_window.hide()


@pytest.mark.parametrize("size", [(1920, 1080), (1366, 768)])
def test_first_launch(make_napari_viewer, qtbot, tmp_path, size, monkeypatch):
    """Docks opened one by one from the *Plugins* menu end up as tabs of one area, keep a
    readable width after the window was shrunk and grown again, the first-run panel says
    what the sample data is and asks before simulating, and dropped NIfTI files open with
    this plugin without napari's 'Choose reader' dialog once the user said so."""
    from napari.errors.reader_errors import MultipleReaderError
    from napari.settings import get_settings
    from qtpy.QtWidgets import QTabBar

    import napari_petite._widgets.data_dock as data_dock
    from napari_petite._widgets.first_run import READER_PATTERNS, reader_preferred
    from napari_petite._widgets.layout import DOCK_MIN_WIDTH

    monkeypatch.setattr(data_dock, "sample_dataset_dir", lambda: tmp_path / "no-sample-yet")
    viewer = make_napari_viewer()
    window = viewer.window._qt_window
    tag = f"{size[0]}x{size[1]}"
    saved = dict(get_settings().plugins.extension2reader)
    try:
        window.resize(*size)
        window.show()
        docks = [viewer.window.add_plugin_dock_widget("napari-petite", name)[1]
                 for name in ("Scanner data", "Fine-tune", "Reconstruct & compare")]
        qtbot.wait(200)
        bars = [bar for bar in window.findChildren(QTabBar)
                if any(bar.tabText(i).startswith("Fine-tune") for i in range(bar.count()))]
        assert bars and bars[0].count() == 3, [b.count() for b in bars]  # one tab group
        for shrink in ((900, 600), size):
            window.resize(*shrink)
            qtbot.wait(200)
        tune = docks[1]
        _tab(qtbot, window, "Fine-tune")
        start = tune.run.start_button
        assert tune.width() >= DOCK_MIN_WIDTH
        assert start.visibleRegion().boundingRect().width() == start.width()  # not cut off
        bar = bars[0]
        for i in range(bar.count()):  # tab names whole, not "Sca…"
            text = bar.tabText(i).replace("&&", "&")
            assert bar.tabRect(i).width() >= bar.fontMetrics().horizontalAdvance(text)
        window.grab().save(str(ARTIFACTS / f"launch-{tag}-plugins-menu.png"))

        # first run: the sample data is explained and nothing is simulated until asked
        data = docks[0]
        _tab(qtbot, window, "Scanner data")
        data.offer_sample()
        offer = data.sample_offer
        assert offer.isVisible() and "Biograph Vision 600" in offer.text.text()
        assert data.is_idle and offer.start_button.isEnabled() and data.sample_button.isEnabled()
        window.grab().save(str(ARTIFACTS / f"launch-{tag}-first-run.png"))

        # dropped scans: napari's own reader also claims NIfTI, so napari asks, until the
        # user chose this plugin once (napari's reader preference); nothing claims '*'
        from napari_petite._napari import get_reader

        assert get_reader(str(tmp_path / "picture.png")) is None
        path = write_nifti(tmp_path / "sub-07" / "full.nii.gz", pet_like())
        get_settings().plugins.extension2reader = {}
        data.reader_choice.setVisible(not reader_preferred())
        assert data.reader_choice.isVisible()
        with pytest.raises(MultipleReaderError):  # what a drop does (plugin=None)
            viewer.open(str(path), plugin=None)
        data.reader_choice.button.click()
        assert reader_preferred() and not data.reader_choice.isVisible()
        assert all(get_settings().plugins.extension2reader[p] == "napari-petite"
                   for p in READER_PATTERNS)
        (layer,) = viewer.open(str(path), plugin=None)  # as dropped: no dialog
        assert layer.name == "sub-07 full" and "affine" in layer.metadata
    finally:
        get_settings().plugins.extension2reader = saved
        window.hide()
