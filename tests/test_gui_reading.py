"""What a PET reader sees in *Reconstruct & compare*, through the real docks in a real
viewer: the radiological orientation from the affine (a marker in the patient's
right-anterior-superior corner lands top left on screen, in every view, for RAS and LPS
NIfTI, an oblique NIfTI and DICOM series), the orientation letters and the slice position
in mm; panels that keep showing what their labels say when layers are dropped; units, one
window, MIP, difference range and crosshair values drawn from one state."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_nifti
from test_orientation import AFFINES, marked
from test_widgets import ARTIFACTS, drawn, gui_dataset, unetr_base  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gui


def _docks(viewer):
    from napari_petite._widgets.window import install_docks

    docks = install_docks(viewer)
    return docks["Scanner data"], docks["Reconstruct & compare"]


def _open(qtbot, data, path):
    before = set(lay.name for lay in data.viewer.layers)
    data.open_scan(path)
    qtbot.waitUntil(lambda: data.is_idle and len(data.viewer.layers) > len(before),
                    timeout=30_000)
    return next(lay for lay in data.viewer.layers if lay.name not in before)


def _marker_on_screen(viewer, qtbot) -> tuple[float, float]:
    """Where the bright marker is on the canvas, as fractions of (height, width): the
    pixels in the colormap's brightest (yellow) colours, not the white letters, outside the
    colour bar's corner (top right)."""
    qtbot.wait(300)  # napari re-slices on the next turns of the event loop
    image = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(float)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    yellow = (r > 200) & (g > 170) & (b < r - 40)
    h, w = yellow.shape
    yellow[: int(0.3 * h), int(0.55 * w):] = False  # the bar and its units line
    rows, cols = np.nonzero(yellow)
    assert rows.size > 20, "the marker is not on screen"
    return rows.mean() / h, cols.mean() / w


def _dicom_affine(orientation, spacing, origin) -> np.ndarray:
    """The RAS affine (i = column, j = row, k = slice) of a DICOM geometry, from its tags'
    definition (independent of the reader)."""
    from dicom_fixtures import normal_of

    dz, dy, dx = spacing
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * dx, col * dy, \
        normal_of(orientation) * dz, origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _scans(tmp_path):
    from dicom_fixtures import AXIAL, oblique, write_pet_series

    scans = {}
    for name in ("RAS", "LPS", "oblique"):
        volume = marked(AFFINES[name])
        scans[f"nifti {name}"] = write_nifti(tmp_path / f"{name}.nii.gz",
                                             volume.transpose(2, 1, 0), AFFINES[name])
    for name, orientation in (("axial", AXIAL), ("oblique", oblique(20.0, 10.0))):
        spacing, origin = (2.0, 1.5, 1.5), (40.0, 30.0, -20.0)
        volume = marked(_dicom_affine(orientation, spacing, origin), shape=(16, 20, 22))
        scans[f"dicom {name}"] = write_pet_series(tmp_path / f"dcm-{name}", volume * 100,
                                                  spacing=spacing, origin=origin,
                                                  orientation=orientation)
    return scans


def test_marker_lands_where_a_pet_reader_expects_it(make_napari_viewer, qtbot, tmp_path):
    from napari_petite._widgets.views import MARKER_KEYS

    viewer = make_napari_viewer()
    viewer.window._qt_window.resize(1200, 800)
    viewer.window._qt_window.show()
    data, comp = _docks(viewer)
    expected_top = {"axial": "A", "coronal": "S", "sagittal": "S"}
    expected_left = {"axial": "R", "coronal": "R", "sagittal": "A"}
    for name, path in _scans(tmp_path).items():
        layer = _open(qtbot, data, path)
        assert comp.low.currentText() == layer.name  # opened to be looked at
        comp.show_grid()
        comp.views.mip.setChecked(True)  # the marker is on screen in every view
        for view in ("axial", "coronal", "sagittal"):
            comp.views.orientation.setCurrentText(view)
            drawn(qtbot, comp)
            row, col = _marker_on_screen(viewer, qtbot)
            assert row < 0.5 and col < 0.5, (name, view, row, col)
            overlays = viewer.canvas.overlays
            assert overlays[MARKER_KEYS["top"]].text == expected_top[view]
            assert overlays[MARKER_KEYS["left"]].text == expected_left[view]
            assert overlays[MARKER_KEYS["top"]].visible
            # the slider names the slice by its position in the scanner's coordinates
            label = viewer.dims.axis_labels[viewer.dims.order[0]]
            assert label.endswith(" mm") and label[0] in "SIAPRL", label
            viewer.window._qt_window.grab().save(
                str(ARTIFACTS / f"orientation-{name.replace(' ', '-')}-{view}.png"))
        comp.views.mip.setChecked(False)
        drawn(qtbot, comp)
        viewer.layers.remove(layer)


def _send(canvas, kind, x, y, button, buttons):
    from qtpy.QtCore import QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    event = QMouseEvent(kind, QPointF(x, y), QPointF(x, y), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(canvas, event)
    QApplication.processEvents()


def _click(viewer, x, y, button=None, drag=(0, 0)) -> None:
    """Press, (move,) release on the canvas at pixel (x, y), as a mouse does."""
    from qtpy.QtCore import QEvent, Qt

    button = button or Qt.MouseButton.LeftButton
    canvas = viewer.window._qt_viewer.canvas.native
    none = Qt.MouseButton.NoButton
    _send(canvas, QEvent.Type.MouseMove, x, y, none, none)
    _send(canvas, QEvent.Type.MouseButtonPress, x, y, button, button)
    if drag != (0, 0):
        for k in (1, 2):
            _send(canvas, QEvent.Type.MouseMove, x + drag[0] * k / 2, y + drag[1] * k / 2,
                  none, button)
    _send(canvas, QEvent.Type.MouseButtonRelease, x + drag[0], y + drag[1], button, none)


def test_panels_units_windows_and_crosshair_come_from_one_state(
        make_napari_viewer, qtbot, gui_dataset, unetr_base, tmp_path):  # noqa: F811
    import json

    from qtpy.QtCore import Qt
    from test_widgets import _base_reconstruction

    from napari_petite._widgets.views import UNITS_KEY

    for meta in (gui_dataset / "tgt").glob("*/meta.json"):  # the dataset knows the SUV factor
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "suv_factor": 0.002}))
    viewer, comp, low = _base_reconstruction(make_napari_viewer, qtbot, gui_dataset,
                                             unetr_base)
    viewer.window._qt_window.resize(1366, 768)
    viewer.window._qt_window.show()
    qtbot.wait(100)
    recon, full = comp.recon_layer, viewer.layers["tgt/sub-02 full"]
    panels = [low, recon, full]
    truth = viewer.layers["tgt/sub-02 truth"]

    def visible():
        return {lay.name for lay in viewer.layers if lay.visible and lay.ndim == 3
                and lay.metadata.get("petite", {}).get("kind") != "crosshair"}

    assert comp.comparison.shown == panels and visible() == {p.name for p in panels}

    # a dropped NIfTI file and a dropped DICOM folder never take a labelled panel's place
    from dicom_fixtures import write_pet_series

    dropped = viewer.open(str(gui_dataset / "tgt" / "sub-01" / "full.nii.gz"),
                          plugin="napari-petite")
    series = write_pet_series(tmp_path / "pet", np.asarray(low.data), spacing=(2, 2, 2))
    dropped += viewer.open(str(series), plugin="napari-petite")
    assert dropped[0].name == "sub-01 full"  # the scan's name, not "full"
    assert visible() == {p.name for p in panels} and not any(d.visible for d in dropped)
    assert comp.comparison.shown == panels and comp.low.currentText() == low.name
    assert "not in the comparison" in comp.status.text()
    assert tuple(viewer.canvas.grid.shape) == (1, 3)

    # units: one state for the bars' units line, the read-out and the crosshair
    def units() -> str:  # the line beside every colour bar
        overlay = viewer.canvas.overlays.get(UNITS_KEY)
        return overlay.text if overlay is not None and overlay.visible else ""

    assert units() == "Bq/mL"
    width, height = viewer.canvas.size[1], viewer.canvas.size[0]
    _click(viewer, width / 6, height / 2)  # the middle of the first panel
    drawn(qtbot, comp)
    position = comp.crosshair.position
    assert position is not None
    values = comp.crosshair.values()
    assert set(values) == {p.name for p in panels}
    assert all(v.endswith(" Bq/mL") and "e+" not in v for v in values.values())
    marks = [lay for lay in viewer.layers if lay.metadata.get("petite", {}).get("kind")
             == "crosshair"]
    assert len(marks) == 3 and all(m.visible for m in marks)
    assert {str(m.text.string.constant) for m in marks} == set(values.values())
    comp.suv.setChecked(True)
    drawn(qtbot, comp)
    assert units() == "SUV"
    assert all(v.endswith(" SUV") for v in comp.crosshair.values().values())
    assert comp.readout.text().endswith("SUV")
    comp.suv.setChecked(False)
    drawn(qtbot, comp)
    assert units() == "Bq/mL" and comp.readout.text().endswith("Bq/mL")
    assert all(v.endswith(" Bq/mL") for v in comp.crosshair.values().values())

    # one window for the panels of one quantity; presets in SUV; auto after a preset
    comp.suv.setChecked(True)
    drawn(qtbot, comp)
    auto = tuple(full.contrast_limits)
    comp.views.window.setCurrentText("brain SUV 0–15")
    assert all(tuple(p.contrast_limits) == pytest.approx((0, 15)) for p in panels)
    comp.views.window.setCurrentText("window: auto")
    assert all(tuple(p.contrast_limits) == pytest.approx(auto) for p in panels)
    low.contrast_limits = (0.5, 7.0)  # napari's own slider on one panel: the others follow
    assert all(tuple(p.contrast_limits) == pytest.approx((0.5, 7.0)) for p in panels)
    assert comp.views.window.currentText() == "window: dragged"
    x, y = width / 6, height / 2
    _click(viewer, x, y, Qt.MouseButton.RightButton, drag=(40, 0))  # wider window
    drawn(qtbot, comp)
    lo, hi = low.contrast_limits
    assert hi - lo > 6.5 * 1.1 and all(tuple(p.contrast_limits) == pytest.approx((lo, hi))
                                       for p in panels)
    comp.views.link.setChecked(False)
    low.contrast_limits = (0.0, 3.0)
    assert tuple(full.contrast_limits) == pytest.approx((lo, hi))
    comp.views.link.setChecked(True)
    comp.views.window.setCurrentText("window: auto")
    comp.suv.setChecked(False)
    drawn(qtbot, comp)

    # MIP follows the orientation and leaves nothing behind
    comp.views.orientation.setCurrentText("sagittal")
    comp.views.mip.setChecked(True)
    comp.views.orientation.setCurrentText("axial")
    drawn(qtbot, comp)
    assert all(p.projection_mode == "max" for p in panels)
    thick = viewer.dims.thickness
    assert thick[0] >= low.data.shape[0] * low.scale[0] and thick[1] == thick[2] == 0
    mip_window = tuple(low.contrast_limits)
    comp.views.mip.setChecked(False)
    drawn(qtbot, comp)
    assert all(p.projection_mode == "none" for p in panels)
    assert tuple(viewer.dims.thickness) == (0, 0, 0)
    assert tuple(low.contrast_limits) != pytest.approx(mip_window)

    # the difference: symmetric, its range beside the bar
    comp.show_difference()
    qtbot.waitUntil(lambda: comp.comparison.mode == "difference", timeout=30_000)
    drawn(qtbot, comp)
    diff = comp.comparison.difference
    lo, hi = diff.contrast_limits
    assert lo == -hi > -1e9 and hi > 0 and visible() == {diff.name}
    assert units().startswith("Δ Bq/mL, ±") and not comp.views.mip.isEnabled()
    viewer.window._qt_window.grab().save(str(ARTIFACTS / "reading-difference.png"))

    # the overlay recolours its own two layers only
    comp.show_overlay()
    drawn(qtbot, comp)
    assert truth.colormap.name == "inferno" and low.colormap.name == "inferno"
    assert full.colormap.name == "green" and recon.colormap.name == "magenta"
    comp.show_grid()
    drawn(qtbot, comp)
    assert full.colormap.name == "inferno" and visible() == {p.name for p in panels}
    viewer.window._qt_window.grab().save(str(ARTIFACTS / "reading-grid-1366.png"))

    # measured tables are read-only and belong to one scan
    from qtpy.QtWidgets import QAbstractItemView

    no_edit = QAbstractItemView.EditTrigger.NoEditTriggers
    assert comp.table.editTriggers() == no_edit == comp.roi.table.editTriggers()
    assert comp.table.columnCount() == 2
    comp.roi.source.setCurrentText("tgt/sub-02 labels")
    comp.roi.measure()
    assert comp.roi.table.rowCount() == 3
    from test_widgets import _load

    _load(qtbot, viewer, comp.viewer and _data_dock(viewer), gui_dataset, subject="sub-01")
    drawn(qtbot, comp)
    assert comp.low.currentText() == "tgt/sub-01 low"
    assert comp.roi.table.rowCount() == 0 and comp.table.columnCount() == 0
    assert comp.comparison.shown == [viewer.layers["tgt/sub-01 low"],
                                     viewer.layers["tgt/sub-01 full"]]


def _data_dock(viewer):
    from napari_petite._widgets.data_dock import ScannerDataDock

    return next(w for w in viewer.window._qt_window.findChildren(ScannerDataDock))
