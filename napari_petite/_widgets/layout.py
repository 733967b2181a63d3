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
    dock.setMinimumWidth(DOCK_MIN_WIDTH)
    return layout


#: the narrowest a dock may get: its buttons and tab names stay readable after the window
#: was shrunk and grown again (Qt keeps a squeezed dock squeezed)
DOCK_MIN_WIDTH = 440
#: the width a dock gets back when the window grows: this share of the window, at most
#: DOCK_MAX_WIDTH
DOCK_SHARE, DOCK_MAX_WIDTH = 0.28, 560


def keep_dock_width(dock: QWidget) -> None:
    """When the window grows, give ``dock`` back a comfortable width (Qt leaves a dock as
    narrow as a smaller window made it, and the canvas takes all that is gained)."""
    from qtpy.QtCore import QEvent, QObject, Qt
    from qtpy.QtWidgets import QMainWindow

    own = dock_widget(dock)
    window = own.parentWidget() if own is not None else None
    if not isinstance(window, QMainWindow) or getattr(own, "_petite_width", None):
        return

    import weakref

    refs = (weakref.ref(own), weakref.ref(window))  # the filter must not keep them alive

    class _Grow(QObject):
        def eventFilter(self, obj, event):
            dock_, window_ = (r() for r in refs)
            if event.type() == QEvent.Type.Resize and dock_ is not None and \
                    window_ is not None and dock_.isVisible():
                wanted = int(min(DOCK_MAX_WIDTH, max(DOCK_MIN_WIDTH,
                                                     DOCK_SHARE * window_.width())))
                if dock_.width() < wanted and event.size().width() > event.oldSize().width():
                    window_.resizeDocks([dock_], [wanted], Qt.Orientation.Horizontal)
            return False

    own._petite_width = _Grow(own)
    window.installEventFilter(own._petite_width)


def dock_widget(dock: QWidget):
    """The QDockWidget napari wrapped ``dock`` in (None before it is docked)."""
    from qtpy.QtWidgets import QDockWidget

    parent = dock.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def tab_with_siblings(dock: QWidget, kind: type) -> None:
    """Put ``dock`` in one tab group with the other docks of ``kind`` in the same window
    area, whichever way it was opened (the *Plugins* menu adds each dock beside the others,
    a column each). Safe to call late: a dock deleted meanwhile is left alone."""
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    try:
        own = dock_widget(dock)
        keep_dock_width(dock)
    except RuntimeError:  # deleted before the event loop came back
        return
    window = own.parentWidget() if own is not None else None
    if not isinstance(window, QMainWindow):
        return
    area = window.dockWidgetArea(own)
    for other in window.findChildren(QDockWidget):
        inner = other.widget()
        found = inner.findChild(kind) if inner is not None and not isinstance(inner, kind) \
            else inner
        if other is own or found is None or not isinstance(found, kind) or \
                window.dockWidgetArea(other) != area or not other.isVisible():
            continue
        if own not in window.tabifiedDockWidgets(other):
            window.tabifyDockWidget(other, own)
        own.raise_()
        return


def literal_tab_title(dock: QWidget) -> None:
    """Make the tab of ``dock``'s dock widget show its name as written, without the plugin's
    name napari's *Plugins* menu appends (three such tabs do not fit a dock's width).

    Tabbed docks take their tab text from the dock widget's window title, and a tab reads a
    single '&' as a keyboard-shortcut mark ("Reconstruct & compare" shows as "Reconstruct
    _compare"); napari's own title bar keeps the plain name, so only the window title is
    escaped.
    """
    parent = dock_widget(dock)
    if parent is None:
        return
    title = parent.windowTitle().replace(" (napari-petite)", "")  # the Plugins menu's suffix
    if title != parent.windowTitle():
        parent.setWindowTitle(title)
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
