"""One placement of napari's canvas overlays per scene-graph rebuild instead of one per
layer.

napari rebuilds its scene graph whenever a layer is added or removed, shown or hidden, or
the grid changes, and in it updates each layer's overlays (name, colour bar) and places
*every* canvas overlay of every grid cell again after each layer: quadratic in the layers.
With the ~14 layers of a comparison (panels, crosses, differences, the scans kept hidden)
that was 14 placements of ~40 overlays per rebuild, 50-100 ms of each step that adds or
shows a layer (with software OpenGL the repaint follows in the same turn of the event
loop). :func:`install` lets a rebuild note that a placement is needed and places once, at
its end; outside rebuilds napari places as before.
"""

from __future__ import annotations


def install() -> None:
    """Coalesce the placements of napari's ``VispyCanvas`` rebuilds (idempotent)."""
    from napari._vispy.canvas import VispyCanvas

    rebuild = VispyCanvas._update_scenegraph
    if getattr(rebuild, "petite_coalesced", False):
        return

    def _update_scenegraph(self, event=None):
        if "_update_overlay_canvas_positions" in self.__dict__:  # inside a rebuild already
            return rebuild(self, event)
        wanted: list[bool] = []
        # napari calls it through the instance (and its events through the name), so an
        # instance attribute stands in for the method until the rebuild ends
        self._update_overlay_canvas_positions = lambda event=None: wanted.append(True)
        try:
            rebuild(self, event)
        finally:
            del self._update_overlay_canvas_positions
        if wanted:
            type(self)._update_overlay_canvas_positions(self)

    _update_scenegraph.petite_coalesced = True
    VispyCanvas._update_scenegraph = _update_scenegraph
