"""How the comparison is looked at: side by side / overlay / difference, which slices, a MIP,
an SUV display window, and values in SUV. The layouts themselves are :mod:`.views`; this
widget only holds the controls and calls them on the layers its dock names."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox, QGridLayout, QLabel, QPushButton, QWidget

from napari_petite._widgets import views


class ViewControls(QWidget):
    """``trio()`` gives the layers the panels show (low, reconstructions, full; any may be
    None)."""

    def __init__(self, viewer, trio, *, on_grid, on_overlay, on_difference, on_suv,
                 say, parent=None) -> None:
        super().__init__(parent)
        self.viewer, self.trio, self.say = viewer, trio, say
        self.grid_button = self._button("Side by side", on_grid,
                                        "low | reconstructed | full, labelled and linked")
        self.overlay_button = self._button("Overlay", on_overlay,
                                           "green full + magenta reconstruction: grey agrees")
        self.diff_button = self._button("Difference", on_difference,
                                        "reconstructed − full: blue under, red over")
        self.orientation = QComboBox()
        self.orientation.addItems(list(views.ORIENTATIONS))
        self.orientation.setToolTip("Which slices to show")
        self.orientation.currentTextChanged.connect(lambda name: views.orient(viewer, name))
        self.mip = QCheckBox("MIP")
        self.mip.setToolTip("Maximum-intensity projection through the whole volume")
        self.mip.toggled.connect(lambda on: views.mip(viewer, self.trio(), on))
        self.window = QComboBox()
        self.window.addItems(["window: auto", *views.WINDOWS])
        self.window.setToolTip("Display window in SUV (needs the scan's SUV factor)")
        self.window.currentTextChanged.connect(self._window)
        self.suv = QCheckBox("values in SUV")
        self.suv.setToolTip("Show PET layers (and the mouse read-out) in SUV (body weight) "
                            "where the scan's tags or its dataset give the factor; files keep "
                            "their own units")
        self.suv.toggled.connect(on_suv)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for col, w in enumerate((self.grid_button, self.overlay_button, self.diff_button)):
            grid.addWidget(w, 0, col)
        grid.addWidget(self.suv, 0, 3)
        for col, w in enumerate((QLabel("view"), self.orientation, self.mip, self.window)):
            grid.addWidget(w, 1, col)

    @staticmethod
    def _button(text: str, slot, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        button.setToolTip(tip)
        return button

    def _window(self, name: str) -> None:
        if name in views.WINDOWS and not views.window(self.trio(), name):
            self.say("Some layers have no SUV factor, so an SUV window cannot be converted "
                     "for them; their contrast is unchanged.")
