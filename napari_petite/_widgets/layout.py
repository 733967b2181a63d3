"""Dock layouts that fit a normal screen: a dock's content scrolls instead of growing the
window past the screen's edge (napari sizes its window to its docks' minimum heights)."""

from __future__ import annotations

from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget


def scroll_layout(dock: QWidget) -> QVBoxLayout:
    """A vertical layout for ``dock``'s content, inside a scroll area that fills the dock."""
    inner = QWidget()
    layout = QVBoxLayout(inner)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(inner)
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return layout


def literal_tab_title(dock: QWidget) -> None:
    """Make the tab of ``dock``'s dock widget show its name as written.

    Tabbed docks take their tab text from the dock widget's window title, and a tab reads a
    single '&' as a keyboard-shortcut mark ("Reconstruct & compare" shows as "Reconstruct
    _compare"); napari's own title bar keeps the plain name, so only the window title is
    escaped.
    """
    from qtpy.QtWidgets import QDockWidget

    parent = dock.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    if parent is None:
        return
    title = parent.windowTitle()
    if "&" in title and "&&" not in title:
        parent.setWindowTitle(title.replace("&", "&&"))


class Collapsible(QWidget):
    """A titled section that opens on a click: technical settings stay one click away
    without crowding the main path. Add widgets to ``body`` (a vertical layout)."""

    def __init__(self, title: str, tip: str = "", parent=None) -> None:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QToolButton

        super().__init__(parent)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setStyleSheet("QToolButton { border: none; }")
        self.button.setToolTip(tip)
        self.content = QWidget()
        self.body = QVBoxLayout(self.content)
        self.body.setContentsMargins(12, 0, 0, 0)
        self.content.setVisible(False)
        self.button.toggled.connect(self.set_open)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.content)

    def set_open(self, on: bool) -> None:
        from qtpy.QtCore import Qt

        self.button.setChecked(on)
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.content.setVisible(on)
