"""The metrics table: the low-count scan and every reconstruction, each against full count.

One column per image (low-count, the base model, each adapted model reconstructed on the same
scan), one row per metric and per region's bias, so base vs adapted reads across a row.
"""

from __future__ import annotations

from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from napari_petite._widgets.state import short_name
from napari_petite.training.report import metric_columns


class MetricsTable(QTableWidget):
    """Columns: image names; rows: metrics (head mask and whole volume) and regional bias."""

    def __init__(self, parent=None) -> None:
        super().__init__(0, 0, parent)
        self.columns: dict[str, dict] = {}
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setMinimumHeight(150)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)  # measured values
        self.setToolTip("Each column: that image against the full-count scan (PSNR / SSIM / "
                        "NRMSE inside the head and over the whole volume; regional mean bias)")

    def show_columns(self, columns: dict[str, dict]) -> None:
        """Replace the table with ``columns`` (name -> metrics against full count)."""
        self.columns = dict(columns)
        rows = metric_columns(self.columns)
        self.clear()
        self.setColumnCount(len(self.columns))
        self.setHorizontalHeaderLabels([short_name(c) for c in self.columns])
        for j, name in enumerate(self.columns):
            self.horizontalHeaderItem(j).setToolTip(name)
        self.setRowCount(len(rows))
        self.setVerticalHeaderLabels([name for name, _ in rows])
        for i, (_, cells) in enumerate(rows):
            for j, text in enumerate(cells):
                self.setItem(i, j, QTableWidgetItem(text))
