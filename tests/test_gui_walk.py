"""A clinician's walk through `petite gui` at 1920x1080 and 1366x768, pressing the real
buttons, and what a PET reader must see at each step: open the dataset, load a test subject
(orientation letters from the affine), train a few steps (what runs is said; the inputs it
uses are locked), reconstruct with the base and with the adapted model, compare side by side
(a dropped file takes no labelled panel; units in SUV and back; MIP across orientations;
difference range; crosshair values), read region statistics, export, and open the finished
run again (loaded, not retrained). Screenshots of every step go to .artifacts/ for a person
to look at; the window must fit the screen and the panels must be labelled. How long the
event loop stalls is measured by benchmarks/bench_gui_stall.py, not asserted here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import pet_like, write_nifti
from test_widgets import ARTIFACTS, drawn, gui_dataset, unetr_base, written  # noqa: F401

pytestmark = pytest.mark.gui


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


def _visible_images(viewer) -> set[str]:
    return {lay.name for lay in viewer.layers if lay.visible and lay.ndim == 3
            and lay.metadata.get("petite", {}).get("kind") != "crosshair"}


@pytest.mark.parametrize("size", [(1920, 1080), (1366, 768)])
def test_walk(make_napari_viewer, qtbot, gui_dataset, unetr_base, tmp_path,  # noqa: F811
              size):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QScrollArea

    from napari_petite._widgets.finetune_dock import FINISHED
    from napari_petite._widgets.views import CHAR_PX_PER_PT, MARKER_KEYS, UNITS_KEY
    from napari_petite._widgets.window import open_viewer

    for meta in (gui_dataset / "tgt").glob("*/meta.json"):  # the dataset knows the SUV factor
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "suv_factor": 0.002}))
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
        _click(qtbot, data.load_button)
        qtbot.waitUntil(lambda: "tgt/sub-02 low" in viewer.layers and data.is_idle,
                        timeout=30_000)
        _shot(window, f"walk-{tag}-1-loaded")

        # training: what runs is said, and what it uses cannot change under it
        _tab(qtbot, window, "Fine-tune")
        tune.settings.steps.setValue(6)
        tune.settings.val_every.setValue(3)
        tune.settings.device.setCurrentText("cpu")
        qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
        _click(qtbot, tune.run.start_button)
        qtbot.waitUntil(lambda: tune.session.running is not None, timeout=10_000)
        assert "adapted to tgt" in tune.run.what.text()
        assert not data.split_form.isEnabled() and not tune.form.isEnabled()
        qtbot.waitUntil(lambda: tune.is_idle, timeout=120_000)
        assert data.split_form.isEnabled() and tune.form.isEnabled()
        assert tune.run.curves.start_psnr is not None  # the base model's step-0 point
        folder = tune.run_folder
        assert (folder / FINISHED / "adapter.safetensors").is_file()
        _shot(window, f"walk-{tag}-2-trained")

        # reconstruct with the base and the adapted model: base | adapted side by side
        _tab(qtbot, window, "Reconstruct & compare")
        for choice in ("base model", tune.session.models[-1].name if tune.session.models
                       else "base model"):
            comp.model.setCurrentIndex(comp.model.findData(choice))
            _click(qtbot, comp.run_button)
            qtbot.waitUntil(lambda: comp.recon_layer is not None and comp.is_idle,
                            timeout=60_000)
            drawn(qtbot, comp)
        _click(qtbot, comp.views.grid_button)
        drawn(qtbot, comp)
        panels = comp.comparison.shown
        adapted = bool(tune.session.models)  # base | adapted side by side when both exist
        assert len(panels) == (4 if adapted else 3)
        assert _visible_images(viewer) == {p.name for p in panels}
        assert all(p.name_overlay.visible and p.colorbar.visible for p in panels)
        if adapted:
            assert {"reconstructed · base model", "reconstructed · run 1"} <= {
                p.name for p in panels}
        panel = viewer.canvas.viewbox_size(viewer.layers)[1]  # each name fits its panel
        assert all(p.name_overlay.font_size * CHAR_PX_PER_PT * len(p.name) <= panel
                   for p in panels), [(p.name, p.name_overlay.font_size) for p in panels]
        overlays = viewer.canvas.overlays
        # the affine is RAS-like: axial anterior up, the patient's right on the left
        assert [overlays[MARKER_KEYS[k]].text for k in ("top", "left", "bottom", "right")] \
            == ["A", "R", "P", "L"]
        assert overlays[UNITS_KEY].text == "Bq/mL"
        assert comp.table.columnCount() >= 2  # low-count + base (+ adapted)
        _shot(window, f"walk-{tag}-3-compared")

        # a file dropped on the window is kept out of the labelled panels
        dropped = viewer.open(str(gui_dataset / "tgt" / "sub-01" / "full.nii.gz"),
                              plugin="napari-petite")
        drawn(qtbot, comp)
        assert _visible_images(viewer) == {p.name for p in panels} and not dropped[0].visible

        # units in SUV and back; MIP across orientations; the crosshair's values
        comp.suv.setChecked(True)
        drawn(qtbot, comp)
        assert overlays[UNITS_KEY].text == "SUV"
        comp.crosshair.set(tuple(np.asarray(panels[0].data.shape) / 2
                                 * np.asarray(panels[0].scale)))
        drawn(qtbot, comp)
        values = comp.crosshair.values()
        assert len(values) == len(panels) and all(v.endswith(" SUV") for v in values.values())
        comp.views.mip.setChecked(True)
        for view, sliced in (("coronal", 1), ("sagittal", 2), ("axial", 0)):
            comp.views.orientation.setCurrentText(view)
            drawn(qtbot, comp)
            thick = viewer.dims.thickness
            assert thick[sliced] > 0 and sum(t > 0 for t in thick) == 1, (view, thick)
            assert all(p.projection_mode == "max" for p in panels)
        _shot(window, f"walk-{tag}-4-mip-suv")
        comp.views.mip.setChecked(False)
        comp.suv.setChecked(False)
        drawn(qtbot, comp)
        assert overlays[UNITS_KEY].text == "Bq/mL" and tuple(viewer.dims.thickness) == (0, 0, 0)
        assert all(v.endswith(" Bq/mL") for v in comp.crosshair.values().values())

        # the difference: symmetric, its range beside the bar
        _click(qtbot, comp.views.diff_button)
        qtbot.waitUntil(lambda: comp.comparison.mode == "difference", timeout=30_000)
        drawn(qtbot, comp)
        lo, hi = comp.comparison.difference.contrast_limits
        assert lo == -hi and overlays[UNITS_KEY].text.startswith("Δ Bq/mL, ±")
        _shot(window, f"walk-{tag}-5-difference")
        _click(qtbot, comp.views.grid_button)
        drawn(qtbot, comp)

        comp.roi.source.setCurrentText("tgt/sub-02 labels")
        _click(qtbot, comp.roi.measure_button)
        assert comp.roi.table.rowCount() == len(comp.roi.results) >= 3
        out = written(qtbot, comp.export_nifti(tmp_path / f"recon-{tag}.nii.gz"))
        assert out is not None and out.is_file()

        # the fidelity check of the chosen (adapted) model on the validation subject: counts
        # for the input, the base and the model; the report carries it; another model
        # choice takes it off the screen
        _click(qtbot, comp.fidelity.button)
        qtbot.waitUntil(lambda: comp.fidelity.check is not None and comp.is_idle,
                        timeout=60_000)
        check = comp.fidelity.check
        assert [i.role for i in check.images] == \
            (["input", "base", "adapted"] if adapted else ["input", "base"])
        # named as the metrics table above names the same images
        assert [i.name for i in check.images] == \
            [comp.table.horizontalHeaderItem(c).text() for c in range(len(check.images))]
        assert check.subject_ids == list(tune.session.split.val)
        heads, rows = check.table()
        assert comp.fidelity.table.rowCount() == len(rows) >= 2
        assert comp.fidelity.table.columnCount() == len(heads)
        assert comp.fidelity.sentence.text() == check.key_sentence()
        assert comp.fidelity.warnings.isVisible() == bool(check.warnings())
        assert check.key_sentence().split(":")[0] in comp.status.text()
        area = comp.findChild(QScrollArea)
        area.ensureWidgetVisible(comp.fidelity)
        qtbot.wait(100)
        _shot(window, f"walk-{tag}-5b-fidelity")
        report = written(qtbot, comp.export_report(tmp_path / f"report-{tag}.png"))
        assert report is not None and report.stat().st_size > 10_000
        chosen = comp.model.currentData()
        comp.model.setCurrentIndex(comp.model.findData("base model"))
        assert comp.fidelity.check is None and "again" in comp.fidelity.heading.text()
        assert comp.current_fidelity() is None
        comp.model.setCurrentIndex(comp.model.findData(chosen))

        # the finished run opens as it ended: loaded, not retrained
        _tab(qtbot, window, "Fine-tune")
        n_models = len(tune.session.models)
        tune.open_run(folder)
        qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
        assert "not retrained" in tune.run.status.text()
        assert len(tune.session.models) == n_models + 1
        _shot(window, f"walk-{tag}-6-reopened")
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
