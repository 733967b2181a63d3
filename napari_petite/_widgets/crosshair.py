"""The PACS habits on the comparison's canvas: a linked crosshair and window/level by
dragging.

A left click (without dragging) marks a point; every panel shows a cross there with that
panel's value and unit beside it, and the cross follows the slider to the slice shown. A
right-button drag sets the window: sideways widens or narrows it, up and down raises or
lowers its level; linked panels follow (:class:`.comparison.Comparison` owns the window).
Each panel's cross is a small Points layer drawn in the panel's own grid cell.
"""

from __future__ import annotations

import math

import numpy as np

from napari_petite._widgets import views
from napari_petite._widgets.comparison import CUSTOM, GRID, Comparison
from napari_petite._widgets.state import ROLE_KEY
from napari_petite._widgets.steps import Steps

#: the cross's colour (cyan reads on the PET colormap's black and yellow alike)
COLOR = "#40e0ff"
#: window change per pixel dragged (fraction of the current width / level)
DRAG_GAIN = 0.005


class Crosshair:
    """The crosshair and the window drag of one comparison."""

    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.viewer = comparison.viewer
        self.position: tuple[float, ...] | None = None  # world (mm), 3D
        self.marks: dict[int, object] = {}  # id(panel) -> its Points layer
        self.steps = Steps(comparison)
        comparison.overlays.append(self._over)
        comparison.preparers.append(self._prepare)
        comparison.finishers.append(self._draw_steps)
        self.viewer.mouse_drag_callbacks.append(self._drag)
        self.viewer.dims.events.current_step.connect(self._follow_slice)
        self.viewer.layers.events.removed.connect(self._removed)

    # -- the cross ---------------------------------------------------------------------------
    def _over(self, panel) -> list:
        mark = self.marks.get(id(panel))
        return [mark] if mark is not None and mark in self.viewer.layers else []

    def values(self) -> dict[str, str]:
        """Each panel's value and unit at the crosshair ({panel name: "2.31 SUV"})."""
        from napari_petite._widgets.units import unit_label, with_unit

        out = {}
        for panel in self.comparison.shown:
            value = None if self.position is None else views.value_at(panel, self.position)
            if value is not None:
                out[panel.name] = with_unit(value, unit_label(panel))
        return out

    def set(self, position) -> None:
        """Mark ``position`` (world, mm) in every panel, with each panel's value there (one
        panel per turn of the event loop; a newer position replaces what is still waiting)."""
        self.position = tuple(float(c) for c in position)
        self._draw()

    @property
    def settled(self) -> bool:
        return self.steps.idle

    def clear(self) -> None:
        """Forget the point; the crosses are hidden at the next turn of the event loop (a
        clear often comes from inside napari's own handling of a new layer)."""
        self.position = None
        self._draw()

    def _below(self) -> list[float]:
        """The value's offset from the cross: a few voxels down the screen (the view's row
        axis runs up or down depending on the orientation), clear of the colour bar."""
        p = self.comparison.plan()
        offset = [0.0, 0.0, 0.0]
        offset[p.rows] = -3.0 if p.up else 3.0
        return offset

    def _prepare(self, panels) -> list:
        """Steps making the (hidden) cross of every panel that has none yet, one per step,
        before the grid is laid out (each cross shares its panel's cell)."""
        return [lambda p=panel: self._mark_of(p) for panel in panels
                if self.marks.get(id(panel)) not in self.viewer.layers]

    def _mark_of(self, panel):
        if panel not in self.viewer.layers:  # removed before this step ran
            return None
        mark = self.marks.get(id(panel))
        if mark is None or mark not in self.viewer.layers:
            mark = self.marks[id(panel)] = self._new_mark(panel)
        return mark

    def _draw(self) -> None:
        self.steps.run(self._draw_steps(), replace=True)

    def _hide(self) -> None:
        with views.batched(self.viewer):
            for mark in self.marks.values():
                if mark in self.viewer.layers and mark.visible:
                    mark.visible = False

    def _draw_steps(self) -> list:
        """One step per panel's cross (each moves it, writes its value and shows it). A cross
        already shown is not shown again: napari rebuilds its scene graph on every
        assignment of ``visible`` (~100 ms with software OpenGL, re-placing every overlay
        of every cell), so moving the cross or the slice costs no rebuild. (Showing the
        crosses together in one batched change fails in napari 0.9: its layer overlays are
        re-placed per layer before the grid has its new cells.)"""
        comparison = self.comparison
        if self.position is None or comparison.mode != GRID:
            return [self._hide]
        values = self.values()
        panels = comparison.shown
        if any(self.marks.get(id(p)) not in self.viewer.layers for p in panels):
            # a panel came without its cross: lay the grid out again with it
            return [comparison.show]

        below = self._below()

        def draw(panel) -> None:
            mark = self.marks.get(id(panel))
            if mark is None or mark not in self.viewer.layers or self.position is None:
                return
            with comparison.owning():
                mark.data = np.asarray(panel.world_to_data(self.position))[None]
                mark.text.string = {"constant": values.get(panel.name, "")}
                mark.text.translation = below
                if not mark.visible:
                    mark.visible = True

        return [lambda p=panel: draw(p) for panel in panels]

    def _new_mark(self, panel):
        # not selected: the layer controls stay a scan's
        with self.comparison.owning(), views.unselected(self.viewer):
            mark = self.viewer.add_points(
                np.zeros((1, 3)), name=f"crosshair · {panel.name}", scale=panel.scale,
                translate=panel.translate, units=panel.units, symbol="cross", size=3,
                face_color=COLOR, border_width=0, text={"string": {"constant": ""}, "color": COLOR,
                                      "size": 9, "anchor": "center"},
                metadata={ROLE_KEY: {"kind": "crosshair", "panel": panel.name}},
                visible=False)
        mark.name_overlay.visible = False
        mark.editable = False
        return mark

    def _follow_slice(self, _event=None) -> None:
        """The cross stays on the slice shown (its row and column kept)."""
        if self.position is None or self.comparison.mode != GRID:
            return
        axis = self.viewer.dims.order[0]
        position = list(self.position)
        position[axis] = float(self.viewer.dims.point[axis])
        self.position = tuple(position)
        self._draw()

    def _removed(self, event) -> None:
        """A removed cross is forgotten; a removed panel takes its cross with it."""
        for key, mark in list(self.marks.items()):
            if mark is event.value:
                del self.marks[key]
        mark = self.marks.pop(id(event.value), None)
        if mark is not None and mark in self.viewer.layers:
            self.viewer.layers.remove(mark)

    # -- mouse -------------------------------------------------------------------------------
    def _drag(self, viewer, event):
        """Left click: the crosshair; right drag: window / level."""
        if self.comparison.mode is None or not self.comparison.shown:
            return
        if event.button == 2:
            yield from self._window_drag(viewer, event)
            return
        if event.button != 1:
            return
        start = np.asarray(event.pos, float)
        moved = False
        yield
        while event.type == "mouse_move":
            moved = moved or np.hypot(*(np.asarray(event.pos, float) - start)) > 3
            yield
        if not moved and self.comparison.mode == GRID:
            self.set(event.position)

    def _window_drag(self, viewer, event):
        comparison = self.comparison
        lo, hi = comparison.window_of(viewer.layers.selection.active
                                      if viewer.layers.selection.active in comparison.shown
                                      else None)
        width, level = max(hi - lo, 1e-9), (hi + lo) / 2
        start = np.asarray(event.pos, float)
        viewer.camera.mouse_pan = False  # the camera would zoom on a right drag
        try:
            yield
            while event.type == "mouse_move":
                dx, dy = np.asarray(event.pos, float) - start
                new_width = width * math.exp(dx * DRAG_GAIN)
                new_level = level - dy * DRAG_GAIN * width
                comparison.set_window(CUSTOM, (new_level - new_width / 2,
                                               new_level + new_width / 2))
                yield
        finally:
            viewer.camera.mouse_pan = True
