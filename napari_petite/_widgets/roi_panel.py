"""ROI statistics: pick a region (a Labels layer's label — the phantom's regions or one you
paint — or the shapes of a Shapes layer) and read SUVmax / SUVmean / SUVpeak and its volume on
the low-count scan, every reconstruction of it and the full-count scan, side by side.

The numbers are :func:`napari_petite.training.roi.roi_stats`'s; this widget only gathers the
layers and shows the table.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_petite._widgets.state import ROLE_KEY
from napari_petite._widgets.units import shown_in_suv, suv_factor

COLUMNS = ("max", "mean", "peak", "volume")


class ROIPanel(QGroupBox):
    """``images()`` gives the (low, reconstructions…, full) image layers to measure."""

    def __init__(self, viewer, images, parent=None) -> None:
        super().__init__("Region statistics", parent)
        self.viewer, self.images = viewer, images
        self.setToolTip("SUVmax: the hottest voxel; SUVmean; SUVpeak: the hottest 1 mL sphere "
                        "centred in the region (PERCIST); volume of the region")
        self.source, self.value = QComboBox(), QComboBox()
        self.source.setToolTip("A Labels layer (the subject's regions, or one you paint) or a "
                               "Shapes layer (drawn on a slice)")
        self.source.currentIndexChanged.connect(self._fill_values)
        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(self.measure)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(120)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)  # measured
        self.units = QLabel("")  # units above the table: headers stay short on a narrow dock
        self.units.setWordWrap(True)
        row = QHBoxLayout()
        for w in (self.source, self.value, self.measure_button):
            row.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.units)
        layout.addWidget(self.table)
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
            ev.connect(self._fill_sources)
        self.results: dict[str, dict] = {}
        self._fill_sources()

    def _regions(self) -> list:
        from napari.layers import Labels, Shapes

        return [lay for lay in self.viewer.layers if isinstance(lay, Labels | Shapes)]

    def _fill_sources(self, *_) -> None:
        current = self.source.currentText()
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItems([lay.name for lay in self._regions()])
        if current:
            self.source.setCurrentText(current)
        self.source.blockSignals(False)
        self._fill_values()

    def _fill_values(self, *_) -> None:
        from napari.layers import Labels

        self.value.clear()
        layer = self._source()
        if isinstance(layer, Labels):
            names = self._label_names(layer)
            for v in np.unique(np.asarray(layer.data)):
                if v:
                    self.value.addItem(names.get(int(v), f"label {int(v)}"), int(v))
        elif layer is not None:
            self.value.addItem("inside the shapes", None)

    @staticmethod
    def _label_names(layer) -> dict[int, str]:
        """Region names the subject's meta.json gave its label map (id -> name)."""
        from napari_petite.training.evaluation import label_names

        return label_names({"labels": layer.metadata.get("label_names") or {}})

    def _source(self):
        name = self.source.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def mask(self, shape) -> np.ndarray | None:
        from napari.layers import Labels

        layer = self._source()
        if layer is None:
            return None
        if isinstance(layer, Labels):
            data = np.asarray(layer.data)
            return data == self.value.currentData() if data.shape == tuple(shape) else None
        labels = layer.to_labels(labels_shape=tuple(shape))
        return labels > 0

    def clear(self) -> None:
        """Forget the last measurement (another scan is being compared)."""
        self.results = {}
        self.table.setRowCount(0)
        self.units.setText("")

    def measure(self) -> dict[str, dict]:
        """Measure every image in the chosen region and show the table."""
        from napari_petite.training.roi import roi_stats

        self.results = {}
        for layer in (lay for lay in self.images() if lay is not None):
            mask = self.mask(layer.data.shape)
            if mask is None:
                continue
            factor = None if shown_in_suv(layer) else suv_factor(layer)
            stats = roi_stats(np.asarray(layer.data), mask, tuple(layer.scale),
                              suv_factor=factor)
            if shown_in_suv(layer):
                stats["units"] = "SUV"
            stats["units"] = stats["units"] or layer.metadata.get("units") or "a.u."
            stats["region"] = self.value.currentText()
            self.results[layer.name] = stats
        self._show()
        return self.results

    def _show(self) -> None:
        from napari_petite._widgets.state import short_name

        self.table.setRowCount(len(self.results))
        layers = self.viewer.layers
        labels = []
        for name in self.results:
            role = layers[name].metadata.get(ROLE_KEY, {}) if name in layers else {}
            kind = role.get("kind")
            labels.append(short_name(role["model"]) if kind == "reconstructed" and
                          role.get("model") else {"low": "low-count", "full": "full-count"}
                          .get(kind, name))
        self.table.setVerticalHeaderLabels(labels)
        for i, name in enumerate(self.results):
            self.table.verticalHeaderItem(i).setToolTip(name)
        units = sorted({s["units"] for s in self.results.values()})
        suv = units == ["SUV"]
        self.units.setText("SUV (body weight); volume in mL" if suv else
                           f"activity in {units[0]}; volume in mL" if len(units) == 1 else
                           f"the images are in different units ({', '.join(units)}): compare "
                           "like with like (turn 'values in SUV' on or off for all)")
        heads = [f"SUV{c}" if suv else c for c in COLUMNS[:-1]]
        self.table.setHorizontalHeaderLabels([*heads, COLUMNS[-1]])
        from napari_petite.training.report import region_rows

        _, cells = region_rows(self.results) if self.results else ([], [])
        for i, row in enumerate(cells):
            for j, text in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(text))


def subject_images(viewer, low) -> list:
    """The low-count layer, every reconstruction of it, and its full-count layer."""
    if low is None:
        return []
    role = low.metadata.get(ROLE_KEY, {})
    recons = [lay for lay in viewer.layers if lay.metadata.get(ROLE_KEY, {}).get("kind")
              == "reconstructed" and lay.data.shape == low.data.shape
              and lay.metadata.get(ROLE_KEY, {}).get("subject") == role.get("subject")]
    fulls = [lay for lay in viewer.layers if lay.metadata.get(ROLE_KEY, {}).get("kind") == "full"
             and lay.metadata.get(ROLE_KEY, {}).get("subject") == role.get("subject")
             and role.get("subject") is not None]
    return [low, *recons, *fulls[:1]]
