"""What *Reconstruct & compare* shows, in one object: which layer each labelled panel
shows, the layout (side by side, overlay, difference), the orientation, the MIP, the
display window and whether panels share it, and the crosshair.

The compare dock sets the panels and the user's choices; :meth:`Comparison.show` draws all
of it through :mod:`.views` (grid, names, colour bars with their units, orientation markers
from the affine, the slice's position on the slider, window, projection), so the canvas,
the bars, the labels and the read-out cannot disagree. While the comparison is on screen a
layer someone else adds (a dropped file, a sample) stays hidden, so no labelled panel ever
shows another image than the one it names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_petite._widgets import views
from napari_petite._widgets.state import ROLE_KEY, unwrap
from napari_petite._widgets.steps import Steps
from napari_petite._widgets.units import unit_label

#: the window choices besides the presets of :data:`views.WINDOWS`
AUTO, CUSTOM = "auto", "custom"
GRID, OVERLAY, DIFFERENCE = "side by side", "overlay", "difference"


def kind(layer) -> str | None:
    return layer.metadata.get(ROLE_KEY, {}).get("kind") if layer is not None else None


class Comparison(QObject):
    """The comparison's display state, drawn by :meth:`show`.

    ``say(text)`` reports what the user should know (a layer kept out of the panels, a
    window that could not be converted).
    """

    #: the window choice changed (AUTO, a preset, or CUSTOM after a drag / slider change)
    window_changed = Signal(str)

    def __init__(self, viewer, say: Callable[[str], None]) -> None:
        super().__init__()
        self.viewer = unwrap(viewer)
        self.say = say
        self.panels: list = []  # low, reconstruction(s), full: the layers the panels show
        self.difference = None  # the difference layer of the shown reconstruction
        self.mode: str | None = None  # None: the comparison is not on screen
        self.view = "axial"
        self.mip = False
        self.window = AUTO
        self.custom: tuple[float, float] | None = None  # (lo, hi) in the panels' units
        self.linked = True
        self.overlays: list[Callable[[object], list]] = []  # per panel: layers drawn over it
        #: per drawing: steps that must run first (e.g. make what is drawn over new panels),
        #: and steps that run last (e.g. show what is drawn over the panels again)
        self.preparers: list[Callable[[list], list]] = []
        self.finishers: list[Callable[[], list]] = []
        self.steps = Steps(self)
        self._explanation, self._where = "", ""
        self.viewer.canvas.overlay_tiling.top_right = "vertical"  # units under each bar
        self._own = 0  # >0 while this object changes layers itself
        layers = self.viewer.layers
        layers.events.inserted.connect(self._inserted)
        for layer in layers:
            self._watch(layer)
        self.viewer.dims.events.current_step.connect(self._slice_moved)
        views.refit_on_resize(self.viewer, self._refit)

    # -- what is shown -----------------------------------------------------------------------
    def set_panels(self, panels: list) -> None:
        """The layers of the panels, in reading order (low, reconstructions, full)."""
        self.panels = [unwrap_layer(self.viewer, p) for p in panels if p is not None]
        if self.difference is not None and self.difference not in self.viewer.layers:
            self.difference = None

    @property
    def shown(self) -> list:
        """The panels that still exist."""
        return [p for p in self.panels if p in self.viewer.layers]

    def reference(self):
        """The panel whose geometry orients the view and whose window is the default: the
        low-count scan (the first panel)."""
        shown = self.shown
        return shown[0] if shown else None

    @contextlib.contextmanager
    def owning(self):
        """Layers added or changed inside are this comparison's own (not hidden)."""
        self._own += 1
        try:
            yield
        finally:
            self._own -= 1

    # -- drawing ---------------------------------------------------------------------------
    def plan(self):
        """The display plan of the current view from the reference panel's affine."""
        from napari_petite.io.nifti import affine_from_spacing
        from napari_petite.io.orientation import plan

        ref = self.reference()
        affine = ref.metadata.get("affine") if ref is not None else None
        if affine is None:
            affine = affine_from_spacing(ref.scale[-3:] if ref is not None else (1, 1, 1))
        return plan(affine, self.view)

    @property
    def settled(self) -> bool:
        """Everything asked for is drawn (the drawing steps have all run)."""
        return self.steps.idle

    def owned(self, step: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with self.owning():
                step()

        run.__qualname__ = getattr(step, "__qualname__", "step")
        return run

    def show(self, mode: str | None = None) -> None:
        """Draw the comparison in ``mode`` (default: the current one, else side by side),
        in steps (:mod:`.steps`), each one change and a repaint: what is drawn over the
        panels, the layout, each panel's name and colour bar, the window, the units, the
        orientation letters, the slice position."""
        self.mode = mode or self.mode or GRID
        shown = self.shown
        if not shown:
            self.mode = None
            return
        todo = [step for prepare in self.preparers for step in prepare(shown)]
        todo += self._layout_steps(shown)
        todo += [lambda lay=lay, part=part: self._label(lay, part)
                 for lay in self._labelled(shown) for part in ("name", "colour bar")]
        todo += [self._refit, self._window_step, self._describe_units,
                 *[lambda side=side: self._markers((side,))
                   for side in ("top", "left", "bottom", "right")], self._slice_moved]
        todo += [step for finish in self.finishers for step in finish()]
        self.steps.run([self.owned(step) for step in todo], replace=True)

    def _layout_steps(self, shown) -> list:
        """Which layers are on screen and where. The orientation letters and the units are
        blanked first: napari rebuilds visible canvas overlays for every grid cell when the
        grid changes, and they are filled in again at the end."""
        viewer = self.viewer

        def blank() -> None:
            views.markers(viewer, None)
            views.units_line(viewer, "")
            views.orient(viewer, self.plan())

        def reset() -> None:
            viewer.scale_bar.visible = True  # in mm: the layers' units (io.layers)
            viewer.reset_view()

        if self.mode == DIFFERENCE and self.difference is not None:
            diff = self.difference

            return [blank, lambda: views.only(viewer, [diff], grid=False), reset]
        if self.mode == OVERLAY and len(shown) > 1:
            recon = next((lay for lay in reversed(shown)  # the newest model's
                          if kind(lay) == "reconstructed"), shown[-1])
            reference = shown[-1] if kind(shown[-1]) == "full" else shown[0]
            return [blank, lambda: views.overlay(viewer, reference, recon), reset]
        self.mode = GRID
        ordered = views.grid_order(viewer, shown)
        cells = [[lay, *self._drawn_over(lay)] for lay in ordered]
        return [blank, lambda: views.pet_look(shown), *views.grid_steps(viewer, cells), reset]

    def _labelled(self, shown) -> list:
        if self.mode == DIFFERENCE and self.difference is not None:
            return [self.difference]
        return list(shown) if self.mode == GRID else []

    def _label(self, layer, part: str) -> None:
        if layer in self.viewer.layers:
            views.label([layer], (part,))

    def _window_step(self) -> None:
        self._projection()
        self.apply_window()

    def _markers(self, sides) -> None:
        marks = self.plan().markers
        views.markers(self.viewer, {side: marks[side] for side in sides}, sides)

    def _drawn_over(self, layer) -> list:
        return [lay for make in self.overlays for lay in make(layer)]

    def _refit(self) -> None:
        if self.mode == GRID and self.viewer.canvas.grid.enabled:
            views.fit_names(self.viewer, self.shown)
        elif self.mode == DIFFERENCE and self.difference is not None:
            views.fit_names(self.viewer, [self.difference])

    def set_view(self, view: str) -> None:
        """Axial, coronal or sagittal; the MIP (if on) follows into the new view."""
        self.view = view
        if self.mode is None:
            return

        def orient() -> None:
            views.orient(self.viewer, self.plan())
            self.viewer.reset_view()

        def window() -> None:
            self._projection()
            if self.window == AUTO:
                self.apply_window()

        self.steps.run([self.owned(step) for step in (
            orient, lambda: self._markers(("top", "bottom")),
            lambda: self._markers(("left", "right")), window, self._slice_moved)])

    def set_mip(self, on: bool) -> None:
        self.mip = on
        if self.mode is not None:
            self.steps.run([self.owned(self._projection),
                            self.owned(lambda: self.window == AUTO and self.apply_window()),
                            self.owned(self._note)])

    def _projection(self) -> None:
        axis = self.plan().sliced if self.mip and self.mode != DIFFERENCE else None
        from napari.layers import Image

        views.projection(self.viewer, [lay for lay in self.viewer.layers
                                       if isinstance(lay, Image)], axis)

    # -- units -----------------------------------------------------------------------------
    def _describe_units(self) -> None:
        """The units beside every colour bar, and what the colours mean where that is not
        a plain scale (difference, overlay) in the note at the canvas' bottom left."""
        from napari_petite._widgets.units import format_value

        shown = self.shown
        if self.mode == DIFFERENCE and self.difference is not None:
            unit = unit_label(self.difference)
            hi = self.difference.contrast_limits[1]
            views.units_line(self.viewer, f"Δ {unit}, ±{format_value(hi, unit)}")
            self._note("blue: below full count · red: above")
            return
        units = {lay.name: unit_label(lay) for lay in shown}
        distinct = sorted(set(units.values()))
        views.units_line(self.viewer, distinct[0] if len(distinct) == 1 else "")
        if len(distinct) > 1:  # the bars' units differ: the note names them per panel
            self._note("values in " + "; ".join(
                f"{u} ({', '.join(n for n, v in units.items() if v == u)})" for u in distinct))
        elif self.mode == OVERLAY:
            self._note("green: full count · magenta: reconstruction · grey: they agree")
        else:
            self._note("")

    def _note(self, explanation: str | None = None, where: str | None = None) -> None:
        """The line at the canvas' bottom left: the view and where its slice lies (the
        slider says it too, when it has the room), then what the colours mean if needed."""
        if explanation is not None:
            self._explanation = explanation
        if where is not None:
            self._where = where
        text = f"{self.view} {'MIP' if self.mip else self._where}".strip()
        views.units_note(self.viewer, " · ".join(t for t in (text, self._explanation) if t))

    def units_changed(self) -> None:
        """After *values in SUV* changed the layers' data: the difference follows, the
        window is re-derived in the new units and every line says the new units."""
        if self.difference is not None and "difference_limit" in self.difference.metadata:
            lim = views.nice_limit(abs(float(self.difference.contrast_limits[1])))
            self.difference.metadata["difference_limit"] = lim
            self.difference.contrast_limits = (-lim, lim)
        if self.window == CUSTOM and self.shown:
            self.custom = tuple(self.shown[0].contrast_limits)
        if self.mode is not None:
            with self.owning():
                self.apply_window()
                self._describe_units()

    # -- window ----------------------------------------------------------------------------
    def set_window(self, name: str, limits: tuple[float, float] | None = None) -> None:
        """AUTO, a preset of :data:`views.WINDOWS`, or CUSTOM with ``limits`` (shown units)."""
        self.window = name
        if name == CUSTOM:
            self.custom = limits
        with self.owning():
            self.apply_window()
        self.window_changed.emit(name)

    def set_linked(self, on: bool) -> None:
        self.linked = on
        if on:
            with self.owning():
                self.apply_window()

    def _activity(self) -> list:
        return [lay for lay in self.shown if kind(lay) != "difference"]

    def apply_window(self) -> None:
        """Set every panel's window from the state: one window per quantity (panels in the
        same units share it) unless unlinked, where each panel keeps its own auto window."""
        mip_axis = self.plan().sliced if self.mip else None
        panels = self._activity()
        groups: dict[str, list] = {}
        for layer in panels:
            groups.setdefault(unit_label(layer), []).append(layer)
        failed = []
        for members in groups.values():
            ref = next((lay for lay in members if kind(lay) == "full"), members[0])
            if self.window == CUSTOM and self.custom is not None:
                limits = self.custom
            elif self.window in views.WINDOWS:
                limits = views.preset_limits(ref, self.window)
                if limits is None:
                    failed += [lay.name for lay in members]
                    limits = views.auto_limits(ref, mip_axis)
            else:
                limits = views.auto_limits(ref, mip_axis)
            for layer in members:
                own = views.auto_limits(layer, mip_axis) if (
                    not self.linked and self.window == AUTO) else limits
                with self.owning():
                    layer.contrast_limits = own
        if failed:
            self.say(f"No SUV factor for {', '.join(failed)}, so the SUV window cannot be "
                     "converted for it; it shows its automatic window.")

    def _contrast_moved(self, event) -> None:
        """A panel's window changed from outside (napari's slider, a drag): linked panels of
        the same quantity follow, and the state says CUSTOM."""
        layer = event.source
        if self._own or layer not in self.shown or kind(layer) == "difference":
            return
        limits = tuple(float(v) for v in layer.contrast_limits)
        self.window, self.custom = CUSTOM, limits
        if self.linked:
            unit = unit_label(layer)
            with self.owning():
                for other in self._activity():
                    if other is not layer and unit_label(other) == unit:
                        other.contrast_limits = limits
        self.window_changed.emit(CUSTOM)

    def window_of(self, layer=None) -> tuple[float, float]:
        layer = layer or (self._activity() or [None])[0]
        return tuple(layer.contrast_limits) if layer is not None else (0.0, 1.0)

    # -- slices ----------------------------------------------------------------------------
    def _slice_moved(self, _event=None) -> None:
        """The slider names the slice's position in the scanner's coordinates."""
        ref = self.reference()
        if self.mode is None or ref is None:
            return
        from napari_petite.io.orientation import position_text

        p = self.plan()
        affine = ref.metadata.get("affine")
        if affine is None:
            return
        index = ref.world_to_data(self.viewer.dims.point)[-3:][p.sliced]
        where = position_text(affine, ref.data.shape, p,
                              float(np.clip(index, 0, ref.data.shape[p.sliced] - 1)))
        with self.owning():
            views.slice_label(self.viewer, p.sliced, where)
            self._note(where=where)

    # -- layers added by others --------------------------------------------------------------
    def _watch(self, layer) -> None:
        if hasattr(layer, "contrast_limits"):
            layer.events.contrast_limits.connect(self._contrast_moved)
        layer.events.visible.connect(self._visibility)

    def _inserted(self, event) -> None:
        layer = event.value
        self._watch(layer)
        if self._own or self.mode is None or layer in self.shown or kind(layer) == "crosshair":
            return
        layer.visible = False  # it would take a panel's place in the grid
        if ROLE_KEY not in layer.metadata:  # not one of a loaded subject's scans
            self.say(f"'{layer.name}' was added but is not in the comparison (hidden); choose "
                     "it as the low-count or full-count scan to compare it.")

    def _visibility(self, event) -> None:
        """A layer outside the panels was made visible by hand: it gets a grid cell of its
        own (napari would otherwise draw it over a labelled panel)."""
        layer = event.source
        if self._own or self.mode != GRID or not layer.visible or layer in self.shown:
            return
        self.viewer.canvas.grid.shape = (-1, -1)


def unwrap_layer(viewer, layer):
    """The viewer's own layer object for ``layer`` (napari may hand docks proxies)."""
    inner = getattr(layer, "__wrapped__", layer)
    return next((lay for lay in viewer.layers if lay is inner or lay.name == layer.name),
                inner)
