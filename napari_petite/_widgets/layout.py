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
