"""How the comparison is drawn in the viewer: the grid of panels, overlay, difference, the
orientation with its markers, the MIP, the display window, the read-out.

Functions of the viewer and the layers only (no widgets, no state): :mod:`.comparison`
decides *what* is shown and calls these to draw it, so each drawing rule lives once.
"""

from __future__ import annotations

import contextlib

import numpy as np

from napari_petite._widgets.state import ROLE_KEY

DIFF_PREFIX = "difference"
#: canvas overlays this module adds, by key: the orientation markers and the units line
MARKER_KEYS = {"top": "petite_top", "bottom": "petite_bottom", "left": "petite_left",
               "right": "petite_right"}
UNITS_KEY = "petite_units"
_MARKER_POSITIONS = {"top": "top_center", "bottom": "bottom_center", "left": "middle_left",
                     "right": "middle_right"}


@contextlib.contextmanager
def unselected(viewer):
    """Layers added inside are not selected: napari makes every new layer the active one,
    and each change of the active layer swaps the layer controls (20-40 ms of Qt widgets
    on the GUI thread), for a cross or a scan the user did not pick. (napari's selectable
    lists have the switch since before 0.5, the oldest napari this plugin supports.)"""
    layers = viewer.layers
    before = getattr(layers, "_activate_on_insert", None)
    if before is None:
        yield
        return
    layers._activate_on_insert = False
    try:
        yield
    finally:
        layers._activate_on_insert = before


def batched(viewer):
    """A context in which changes to the layers' visibility, order and the grid rebuild
    napari's scene graph once, at the end, instead of once per change (~45 ms each with
    software OpenGL; :mod:`.heap` keeps the collection napari runs at the end short)."""
    return viewer.layers.batched_update()


def only(viewer, shown, *, grid: bool | None = None) -> None:
    """Show the layers ``shown``, hide the others, and turn the grid on or off (``grid``,
    None: leave it), with one rebuild of the scene graph. Only layers whose visibility
    changes are touched: napari re-slices a layer and rebuilds the scene graph on every
    assignment, even of the value it has."""
    with batched(viewer):
        if grid is not None:
            viewer.canvas.grid.enabled = grid
        for layer in viewer.layers:
            if layer.visible != (layer in shown):
                layer.visible = layer in shown


#: width of one character of a layer name per point of font size, measured on the canvas
CHAR_PX_PER_PT = 1.0


def name_font(panel_width: float, names) -> int:
    """The largest font (6-9 pt) at which the longest name fits the left half of its panel:
    a wider name runs into the orientation letter at the top centre, or into the next
    panel."""
    longest = max((len(n) for n in names), default=1)
    return int(max(6, min(9, (panel_width / 2 - 16) / (CHAR_PX_PER_PT * longest))))


def fit_names(viewer, layers) -> None:
    width = viewer.canvas.viewbox_size(viewer.layers)[1]
    size = name_font(width, [lay.name for lay in layers])
    for layer in layers:
        layer.name_overlay.font_size = size


def label(layers, parts=("name", "colour bar")) -> None:
    """Name and colour bar on every panel: a reader must see what each image is and in what
    scale (napari draws them per grid cell). The bar sits top right, where notifications
    (bottom right) do not cover it; its units are the line beside it (:func:`units_line`).
    ``parts``: one of them only (each new visual costs a repaint with software OpenGL)."""
    for layer in layers:
        if "name" in parts:
            layer.name_overlay.visible = True
        if "colour bar" in parts:
            layer.colorbar.position = "top_right"
            layer.colorbar.size = (12, 120)
            layer.colorbar.font_size = 8
            layer.colorbar.visible = True


def _canvas_text(viewer, key: str, text: str, position: str, *, size: float = 10,
                 color=None) -> None:
    """Set a canvas text overlay repeated in every grid panel; a blank text removes it.
    Removed rather than hidden: napari rebuilds a shown overlay's visuals for every cell
    when the grid changes (a repaint each), and fails to place a hidden one that is shown
    again after the grid changed, so the comparison removes them while it lays the grid out
    and adds them back one by one."""
    from napari.components.overlays import TextOverlay

    overlays = viewer.canvas.overlays
    if not text:
        if key in overlays:
            del overlays[key]
        return
    if key not in overlays:
        overlays[key] = TextOverlay(position=position, gridded=True, box=False, visible=True,
                                    text=text, font_size=size, color=color)
        return
    overlay = overlays[key]
    if color is not None:
        overlay.color = color
    overlay.font_size, overlay.position, overlay.text = size, position, text


def units_line(viewer, text: str) -> None:
    """The units of the colour bars, beside each bar (napari's bars carry no unit)."""
    _canvas_text(viewer, UNITS_KEY, text, "top_right", size=8)


def markers(viewer, marks: dict[str, str] | None, sides=tuple(MARKER_KEYS)) -> None:
    """Orientation letters (A/P, R/L, S/I) at the edges ``sides`` of every panel; None
    hides them."""
    for side in sides:
        _canvas_text(viewer, MARKER_KEYS[side], (marks or {}).get(side, ""),
                     _MARKER_POSITIONS[side], size=11, color="#e8e8e8")


def units_note(viewer, text: str) -> None:
    """One line on the canvas saying what the panels' values are in."""
    overlay = viewer.canvas.overlays.text
    overlay.text = text
    overlay.position = "bottom_left"
    overlay.visible = bool(text)


def grid_shape(viewer, n: int) -> tuple[int, int]:
    """One row, except four panels on a canvas less than twice as wide as tall: 2 x 2, so
    each image keeps a readable size."""
    height, width = viewer.canvas.size
    return (2, 2) if n == 4 and width < 2 * height else (1, n)


def grid_order(viewer, layers: list) -> list:
    """The layers in the grid's reading order. Four in 2 x 2: low | full on top (what was
    measured), base | adapted below (what the models made), so the two answers sit side by
    side under the truth they are judged against."""
    if grid_shape(viewer, len(layers)) == (2, 2):
        low, base, adapted, full = layers
        return [low, full, base, adapted]
    return layers


def grid_steps(viewer, cells: list[list]) -> list:
    """Steps placing each cell's layers (a panel and what is drawn over it) in napari's
    grid in reading order: cells take the bottom of the layer list, ``stride`` layers each
    (napari fills the grid from the first layer up); everything else is hidden first and
    the panels shown last (what is drawn over a panel is shown by its owner), so a panel
    never lands in another's cell on the way, and napari never has more occupied cells
    than its grid (which it cannot draw)."""
    stride = max(len(c) for c in cells)
    order = [lay for cell in cells for lay in cell]

    panels = [cell[0] for cell in cells]

    def layout() -> None:
        with batched(viewer):
            for layer in viewer.layers:  # never more occupied cells than the grid has
                if layer.visible and layer not in panels:
                    layer.visible = False
            for i, layer in enumerate(order):
                if layer in viewer.layers:
                    viewer.layers.move(viewer.layers.index(layer), i)
            g = viewer.canvas.grid
            g.stride = stride
            g.shape = grid_shape(viewer, len(cells))
            g.enabled = True

    def show(layer) -> None:
        if layer in viewer.layers:
            layer.visible = True

    # one panel per step: a layer drawn in a new cell has its shaders built again (with
    # software OpenGL ~0.2 s a visual, paid at the next repaint)
    return [layout, *[lambda p=p: show(p) for p in panels]]


def refit_on_resize(viewer, refit) -> None:
    """Call ``refit()`` when the canvas changes size (hooked once per viewer)."""
    size_event = viewer.canvas.events.size
    if any(getattr(cb, "petite_refit", False) for cb in size_event.callbacks):
        return

    def on_size(_event=None) -> None:
        refit()

    on_size.petite_refit = True  # type: ignore[attr-defined]
    size_event.connect(on_size)


def overlay(viewer, reference, recon) -> None:
    """Reconstruction (magenta) over the reference (green), additive: grey where they
    agree. Only these two layers change colour (no colormap is linked between layers)."""
    only(viewer, [reference, recon], grid=False)
    reference.colormap, reference.blending = "green", "additive"
    recon.colormap, recon.blending = "magenta", "additive"


def pet_look(layers) -> None:
    """The PET colormap, opaque, on each panel (undoing an overlay's colours)."""
    from napari_petite.io.layers import PET_COLORMAP

    for layer in layers:
        layer.colormap = PET_COLORMAP
        layer.blending = "translucent"
        layer.opacity = 1.0


def nice_limit(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value``: the difference bar's ends
    land on round numbers its ticks can name."""
    if not np.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** np.floor(np.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-9):
            return float(step * power)
    return float(10 * power)


def difference_volume(recon: np.ndarray, full: np.ndarray) -> tuple[np.ndarray, float]:
    """reconstructed − full and its symmetric display limit (99.5th percentile of |diff|,
    rounded up by :func:`nice_limit`); plain numpy, run off the GUI thread."""
    diff = np.asarray(recon, np.float32) - np.asarray(full, np.float32)
    sample = np.abs(diff).ravel()[:: max(1, diff.size // 2_000_000)]
    return diff, nice_limit(float(np.percentile(sample, 99.5)))


def add_difference(viewer, diff: np.ndarray, lim: float, recon, metadata: dict):
    """The difference layer (blue under, red over, symmetric ±lim), replacing an older one
    of the same reconstruction; returns it (hidden until a view shows it)."""
    from napari_petite._widgets.state import short_name
    from napari_petite.io.layers import DIFF_COLORMAP

    model = short_name(recon.metadata.get(ROLE_KEY, {}).get("model") or recon.name)
    name = f"{DIFF_PREFIX} · {model} − full"
    meta = {**metadata, ROLE_KEY: {**metadata.get(ROLE_KEY, {}), "kind": "difference"},
            "difference_limit": lim}
    if name in viewer.layers and viewer.layers[name].data.shape == diff.shape:
        layer = viewer.layers[name]
        layer.data = diff
        layer.metadata.clear()
        layer.metadata.update(meta)
        layer.contrast_limits = (-lim, lim)
        return layer
    if name in viewer.layers:
        viewer.layers.remove(name)
    return viewer.add_image(diff, name=name, scale=recon.scale, translate=recon.translate,
                            units=recon.units, colormap=DIFF_COLORMAP,
                            contrast_limits=(-lim, lim), metadata=meta, visible=False)


def orient(viewer, plan) -> None:
    """Put ``plan`` (:class:`napari_petite.io.orientation.DisplayPlan`) on screen: the
    sliced axis first, the rows and columns as displayed axes, and the camera flipped so
    that each runs the way the convention wants (no data is touched)."""
    viewer.dims.order = plan.order
    viewer.camera.orientation2d = ("up" if plan.up else "down",
                                   "left" if plan.left else "right")


def slice_label(viewer, axis: int, text: str) -> None:
    """Name the slider of ``axis`` with the slice's position ("S 12.0 mm")."""
    labels = list(viewer.dims.axis_labels)
    if labels[axis] != text:
        labels[axis] = text
        viewer.dims.axis_labels = labels


def projection(viewer, layers, axis: int | None) -> None:
    """Maximum-intensity projection through the whole volume along ``axis`` (None: ordinary
    slices); the other axes' thickness goes back to a single slice, so nothing of an earlier
    projection stays when the orientation changes."""
    thickness = [0.0] * viewer.dims.ndim
    if axis is not None:  # twice the extent: the whole volume from any slider position
        extent = viewer.dims.range[axis]
        thickness[axis] = 2 * ((extent.stop - extent.start) + extent.step)
    for layer in layers:
        layer.projection_mode = "none" if axis is None else "max"
    viewer.dims.thickness = tuple(thickness)


def auto_limits(layer, mip_axis: int | None = None) -> tuple[float, float]:
    """The automatic window of a panel in its shown units: 0 to the 99.9th percentile of the
    volume (kept in the layer's metadata once known), or of its maximum projection along
    ``mip_axis`` when one is shown."""
    from napari_petite.io.layers import AUTO_LIMITS, DISPLAY_SCALE, robust_limits

    if mip_axis is not None:
        return robust_limits(np.asarray(layer.data).max(axis=mip_axis))
    scale = float(layer.metadata.get(DISPLAY_SCALE) or 1.0)
    cached = layer.metadata.get(AUTO_LIMITS)
    if cached is None:
        cached = tuple(v / scale for v in robust_limits(np.asarray(layer.data)))
        layer.metadata[AUTO_LIMITS] = cached
    return (cached[0] * scale, cached[1] * scale)


#: display windows in SUV: a PET reader's presets for body and for brain FDG
WINDOWS = {"body SUV 0–5": (0.0, 5.0), "body SUV 0–10": (0.0, 10.0),
           "brain SUV 0–15": (0.0, 15.0), "brain SUV 0–20": (0.0, 20.0)}


def preset_limits(layer, name: str) -> tuple[float, float] | None:
    """A preset's window in the layer's shown units (None: no SUV factor to convert)."""
    from napari_petite._widgets.units import shown_in_suv, suv_factor

    lo, hi = WINDOWS[name]
    factor = 1.0 if shown_in_suv(layer) else suv_factor(layer)
    return None if factor is None else (lo / factor, hi / factor)


def value_at(layer, position) -> float | None:
    """The layer's voxel value at a world position (None outside the volume)."""
    index = tuple(round(float(c)) for c in layer.world_to_data(position)[-3:])
    if all(0 <= i < n for i, n in zip(index, layer.data.shape, strict=True)):
        return float(layer.data[index])
    return None


def readout(layers, position) -> str:
    """The value of every layer at a world position ("low 2.31 · base 2.05 · full 2.10 SUV"),
    so one hover reads all panels (napari's own status line reads only the active layer)."""
    from napari_petite._widgets.units import format_value, unit_label

    parts, units = [], set()
    for name, layer in layers:
        if layer is None:
            continue
        value = value_at(layer, position)
        if value is not None:
            unit = unit_label(layer)
            parts.append(f"{name} {format_value(value, unit)}")
            units.add(unit)
    return " · ".join(parts) + (f" {', '.join(sorted(units))}" if parts else "")
