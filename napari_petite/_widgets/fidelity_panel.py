"""The fidelity check's panel in Reconstruct & compare: does the chosen model keep the numbers
a reader measures? One button, the answer in a sentence, a table of counts, the warnings.

The numbers are :func:`napari_petite.training.fidelity_check.check_models`'s (run by the dock
in a worker); this widget shows a :class:`~napari_petite.training.fidelity_check.FidelityCheck`
with the subjects it was measured on; the dock clears it when the model or the split change,
so a check never stands beside another model.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

#: the warning's colour (napari's warning orange), readable on the dark theme
WARNING_STYLE = "color: #f0a030;"


class FidelityPanel(QGroupBox):
    """``on_check`` starts the check; :meth:`show_check` / :meth:`clear` set what is shown."""

    def __init__(self, on_check, parent=None) -> None:
        super().__init__("Fidelity check (validation subjects)", parent)
        self.setToolTip("Runs the chosen model, the base model and nothing (the low-count "
                        "input) on the target's validation subjects and counts the lesions, "
                        "regions and SUV ratios each keeps within tolerance of the full-count "
                        "scan: a model that denoises well can still move the numbers a reader "
                        "measures")
        self.check: object | None = None  # the FidelityCheck shown
        self.button = QPushButton("Check fidelity")
        self.button.setToolTip("Reconstruct the validation subjects with the chosen model and "
                               "the base, and measure lesion, region and SUVR bias")
        self.button.clicked.connect(on_check)
        self.heading = QLabel("Checks the chosen model on the target's validation subjects.")
        self.heading.setWordWrap(True)
        self.sentence = QLabel("")
        self.sentence.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)  # measured
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setVisible(False)
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet(WARNING_STYLE)
        self.warnings.setVisible(False)
        layout = QVBoxLayout(self)
        for widget in (self.button, self.heading, self.sentence, self.table, self.warnings):
            layout.addWidget(widget)

    def clear(self, text: str = "Checks the chosen model on the target's validation "
              "subjects.") -> None:
        self.check = None
        self.heading.setText(text)
        for label in (self.sentence, self.warnings):
            label.setText("")
        self.warnings.setVisible(False)
        self.table.setRowCount(0)
        self.table.setVisible(False)

    def show_check(self, check) -> None:
        """Show ``check``: heading, the chosen model's key sentence, the counts per image,
        the warnings."""
        self.check = check
        self.heading.setText(check.heading())
        self.sentence.setText(check.key_sentence())
        heads, rows = check.table()
        self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)
        for col, head in enumerate(heads):
            self.table.horizontalHeaderItem(col).setToolTip(head)
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([label for label, _ in rows])
        for row, (label, _) in enumerate(rows):
            self.table.verticalHeaderItem(row).setToolTip(
                f"{label}: how many are within that much of the full-count value"
                if "±" in label else f"{label} against the full-count scan (SUVmean for "
                "lesions)")
        for row, (_label, cells) in enumerate(rows):
            for col, cell in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(cell))
        header = self.table.horizontalHeader().height()
        # exactly its rows: no empty band under them, no scroll bar over them
        self.table.setFixedHeight(header + sum(self.table.rowHeight(r)
                                               for r in range(len(rows))) + 4)
        self.table.setVisible(True)
        warnings = check.warnings()
        self.warnings.setText("\n".join(warnings))
        self.warnings.setVisible(bool(warnings))

    def set_busy(self, busy: bool) -> None:
        self.button.setEnabled(not busy)
