"""The napari-petite window: a viewer with the three docks as tabs of its right-hand area,
a dataset listed and files opened. ``petite gui``, the GUI tests and the GUI benchmarks open
it the same way.
"""

from __future__ import annotations

#: the docks in workflow order, in napari.yaml's display names; they share the right-hand
#: area as tabs, so each gets the full height of a laptop screen (1366 x 768) and napari's
#: layer list keeps the left
DOCKS = ("Scanner data", "Fine-tune", "Reconstruct & compare")


def open_viewer(*, data=None, base=None, files=(), sample: bool = True, viewer=None):
    """A napari viewer (``viewer``, or a new one) with the three docks, a dataset listed and
    ``files`` opened; returns (viewer, {dock name: widget})."""
    if viewer is None:
        import napari

        viewer = napari.Viewer(title="napari-petite")
    docks = install_docks(viewer)
    for path in files:
        viewer.open(path, plugin="napari-petite")
    if data is not None:
        docks["Scanner data"].open_dataset(data)
    elif sample:  # the cached sample, or the panel that says what it is and asks first
        docks["Scanner data"].offer_sample()
    if base is not None:
        docks["Fine-tune"].set_base(base)
    return viewer, docks


def install_docks(viewer) -> dict:
    """The three docks, as tabs of the right-hand area in workflow order, the first in
    front; returns {dock name: widget}."""
    from qtpy.QtCore import QTimer

    from napari_petite._widgets.compare_dock import CompareDock
    from napari_petite._widgets.data_dock import ScannerDataDock
    from napari_petite._widgets.finetune_dock import FineTuneDock

    classes = {"Scanner data": ScannerDataDock, "Fine-tune": FineTuneDock,
               "Reconstruct & compare": CompareDock}
    docks, tabs = {}, []
    for i, name in enumerate(DOCKS):
        docks[name] = classes[name](viewer)
        tabs.append(viewer.window.add_dock_widget(docks[name], name=name, area="right",
                                                  tabify=i > 0))
    QTimer.singleShot(0, tabs[0].raise_)  # the first step's tab in front, once shown
    return docks
