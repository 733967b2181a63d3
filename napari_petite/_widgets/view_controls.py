"""How the comparison is looked at: side by side / overlay / difference, which view, a MIP,
the display window (automatic, a body or brain preset, or dragged), whether panels share it,
and values in SUV. The controls only edit the :class:`.comparison.Comparison`; it draws."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox, QGridLayout, QLabel, QPushButton, QWidget

from napari_petite._widgets import views
from napari_petite._widgets.comparison import AUTO, CUSTOM, DIFFERENCE, Comparison
from napari_petite.io.orientation import VIEWS

AUTO_TEXT = "window: auto"
CUSTOM_TEXT = "window: dragged"


class ViewControls(QWidget):
    """Buttons and choices over one comparison; ``on_grid`` / ``on_overlay`` /
    ``on_difference`` are the dock's (they may first compute what is shown)."""

    def __init__(self, comparison: Comparison, *, on_grid, on_overlay, on_difference,
                 on_suv, parent=None) -> None:
        super().__init__(parent)
        self.comparison = comparison
        self.grid_button = self._button("Side by side", on_grid,
                                        "low | reconstructed | full, labelled, one window")
        self.overlay_button = self._button("Overlay", on_overlay,
                                           "green full + magenta reconstruction: grey agrees")
        self.diff_button = self._button("Difference", on_difference,
                                        "reconstructed − full: blue under, red over")
        self.orientation = QComboBox()
        self.orientation.addItems(list(VIEWS))
        self.orientation.setToolTip("Which slices to show, in the radiological convention: "
                                    "axial anterior up and the patient's right on the left; "
                                    "coronal and sagittal head up (sagittal anterior left)")
        self.orientation.currentTextChanged.connect(comparison.set_view)
        self.mip = QCheckBox("MIP")
        self.mip.setToolTip("Maximum-intensity projection through the whole volume, in the "
                            "view shown (not for the signed difference)")
        self.mip.toggled.connect(comparison.set_mip)
        self.window = QComboBox()
        self.window.addItems([AUTO_TEXT, *views.WINDOWS])
        self.window.setToolTip("Display window: automatic (0 to the 99.9th percentile), an "
                               "SUV preset for body or brain FDG (needs the scan's SUV "
                               "factor), or drag with the right mouse button on the image "
                               "(sideways: width, up/down: level)")
        self.window.currentTextChanged.connect(self._window_chosen)
        comparison.window_changed.connect(self._window_shown)
        self.link = QCheckBox("one window")
        self.link.setChecked(True)
        self.link.setToolTip("Panels of one quantity share one window (untick to let each "
                             "panel keep its own)")
        self.link.toggled.connect(comparison.set_linked)
        self.suv = QCheckBox("values in SUV")
        self.suv.setToolTip("Show PET layers (and the read-out) in SUV (body weight) where "
                            "the scan's tags or its dataset give the factor; files keep their "
                            "own units")
        self.suv.toggled.connect(on_suv)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for col, w in enumerate((self.grid_button, self.overlay_button, self.diff_button)):
            grid.addWidget(w, 0, col)
        grid.addWidget(self.suv, 0, 3)
        for col, w in enumerate((QLabel("view"), self.orientation, self.mip)):
            grid.addWidget(w, 1, col)
        grid.addWidget(self.link, 1, 3)
        grid.addWidget(self.window, 2, 0, 1, 4)

    @staticmethod
    def _button(text: str, slot, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        button.setToolTip(tip)
        return button

    def _window_chosen(self, text: str) -> None:
        if text == CUSTOM_TEXT:
            return
        self.comparison.set_window(AUTO if text == AUTO_TEXT else text)

    def _window_shown(self, name: str) -> None:
        """Show the state's window choice (a drag makes it 'dragged')."""
        text = AUTO_TEXT if name == AUTO else CUSTOM_TEXT if name == CUSTOM else name
        self.window.blockSignals(True)
        if text == CUSTOM_TEXT and self.window.findText(CUSTOM_TEXT) < 0:
            self.window.addItem(CUSTOM_TEXT)
        self.window.setCurrentText(text)
        self.window.blockSignals(False)

    def mode_changed(self, mode: str | None) -> None:
        """A signed difference has no meaningful maximum projection."""
        self.mip.setEnabled(mode != DIFFERENCE)
