"""How the compare dock lays layers out in the viewer: side by side, overlay, difference.

Functions of the viewer and the layers only (no widgets), so each view is one idea and the
dock just calls them.
"""

from __future__ import annotations

import numpy as np

from napari_petite._widgets.state import ROLE_KEY

DIFF_PREFIX = "difference"


def only(viewer, shown) -> None:
    for layer in viewer.layers:
        layer.visible = layer in shown


#: width of one character of a layer name per point of font size, measured on the canvas
CHAR_PX_PER_PT = 0.9


def name_font(panel_width: float, names) -> int:
    """The largest font (6-9 pt) at which the longest name fits its panel: a name wider
    than its panel runs into the next panel's."""
    longest = max((len(n) for n in names), default=1)
    return int(max(6, min(9, (panel_width - 12) / (CHAR_PX_PER_PT * longest))))


def fit_names(viewer, layers) -> None:
    width = viewer.canvas.viewbox_size(viewer.layers)[1]
    size = name_font(width, [lay.name for lay in layers])
    for layer in layers:
        layer.name_overlay.font_size = size


def label(layers) -> None:
    """Name and colour bar on every panel: a reader must see what each image is and in what
    scale (napari draws them per grid cell)."""
    for layer in layers:
        layer.name_overlay.visible = True
        layer.colorbar.position = "bottom_right"  # clear of the name, top left
        layer.colorbar.size = (12, 110)
        layer.colorbar.font_size = 8
        layer.colorbar.visible = True


def units_note(viewer, layers) -> None:
    """One line on the canvas saying the units of what is shown."""
    from napari_petite._widgets.units import unit_label

    units = sorted({unit_label(lay) for lay in layers if lay is not None})
    viewer.text_overlay.text = f"values in {', '.join(units)}" if units else ""
    viewer.text_overlay.position = "bottom_left"
    viewer.text_overlay.visible = bool(units)


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


def side_by_side(viewer, layers) -> None:
    """``layers`` (low, reconstructions, full) in napari's grid (the list is drawn bottom-up),
    each with its name and colour bar, fitted to the view."""
    from napari_petite.io.layers import PET_COLORMAP

    shown = [lay for lay in layers if lay is not None]
    if not shown:
        return
    for layer in shown:
        layer.colormap = PET_COLORMAP
        layer.blending = "translucent"
        layer.opacity = 1.0
    only(viewer, shown)
    label(shown)
    units_note(viewer, shown)
    viewer.scale_bar.visible = True  # in mm: the layers' units (io.layers)
    shown = grid_order(viewer, shown)
    for i, layer in enumerate(reversed(shown)):
        viewer.layers.move(viewer.layers.index(layer), len(viewer.layers) - 1 - i)
    grid = viewer.canvas.grid
    grid.shape = grid_shape(viewer, len(shown))
    grid.stride = 1
    grid.enabled = True
    fit_names(viewer, shown)
    _refit_on_resize(viewer)
    viewer.reset_view()


def _refit_on_resize(viewer) -> None:
    """Refit the panel names of the grid when the canvas changes size (hooked once)."""
    size_event = viewer.canvas.events.size
    if any(getattr(cb, "petite_refit", False) for cb in size_event.callbacks):
        return

    def refit(_event=None) -> None:
        if viewer.canvas.grid.enabled:
            fit_names(viewer, [lay for lay in viewer.layers if lay.visible])

    refit.petite_refit = True  # type: ignore[attr-defined]
    size_event.connect(refit)


def overlay(viewer, reference, recon) -> None:
    """Reconstruction (magenta) over the reference (green), additive: grey where they agree."""
    viewer.canvas.grid.enabled = False
    only(viewer, [reference, recon])
    reference.colormap, reference.blending = "green", "additive"
    recon.colormap, recon.blending = "magenta", "additive"


def difference(viewer, recon, full, metadata: dict):
    """reconstructed − full with a diverging colormap and symmetric limits; returns it."""
    from napari_petite.io.layers import DIFF_COLORMAP

    diff = np.asarray(recon.data, np.float32) - np.asarray(full.data, np.float32)
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    name = f"{DIFF_PREFIX} ({recon.name} − full)"
    if name in viewer.layers:
        viewer.layers.remove(name)
    meta = {**metadata, ROLE_KEY: {**metadata.get(ROLE_KEY, {}), "kind": "difference"}}
    layer = viewer.add_image(diff, name=name, scale=recon.scale, translate=recon.translate,
                             units=recon.units,
                             colormap=DIFF_COLORMAP, contrast_limits=(-lim, lim),
                             metadata=meta)
    viewer.canvas.grid.enabled = False
    only(viewer, [layer])
    label([layer])
    fit_names(viewer, [layer])
    units_note(viewer, [recon])
    return layer


#: (name, z-y-x axis order napari displays): the last two axes are the screen's
ORIENTATIONS = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}


def orient(viewer, name: str) -> None:
    """Show axial, coronal or sagittal slices (the first axis of the order is sliced)."""
    viewer.dims.order = ORIENTATIONS[name]
    viewer.reset_view()


def mip(viewer, layers, on: bool) -> None:
    """A maximum-intensity projection through the whole volume along the sliced axis, with
    contrast from the projection itself (a slice's limits would saturate it)."""
    axis = viewer.dims.order[0]
    for layer in layers:
        if layer is None:
            continue
        layer.projection_mode = "max" if on else "none"
    extent = viewer.dims.range[axis]
    thickness = list(viewer.dims.thickness)
    thickness[axis] = (extent.stop - extent.start) + extent.step if on else 0.0
    viewer.dims.thickness = tuple(thickness)
    if on:
        shown = [lay for lay in layers if lay is not None]
        top = max(float(np.percentile(np.asarray(lay.data), 99.9)) for lay in shown)
        for layer in shown:
            layer.contrast_limits = (0.0, top)


#: display windows in SUV (a PET reader's usual presets)
WINDOWS = {"SUV 0–5": (0.0, 5.0), "SUV 0–10": (0.0, 10.0), "SUV 0–15": (0.0, 15.0)}


def window(layers, name: str) -> bool:
    """Apply an SUV window (converted to each layer's units); False when a layer has no SUV
    factor to convert with."""
    from napari_petite._widgets.units import shown_in_suv, suv_factor

    ok = True
    lo, hi = WINDOWS[name]
    for layer in (lay for lay in layers if lay is not None):
        factor = 1.0 if shown_in_suv(layer) else suv_factor(layer)
        if factor is None:
            ok = False
            continue
        layer.contrast_limits = (lo / factor, hi / factor)
    return ok


def readout(layers, position) -> str:
    """The value of every layer at a world position ("low 2.31 · base 2.05 · full 2.10 SUV"),
    so one hover reads all panels (napari's own status line reads only the active layer)."""
    from napari_petite._widgets.units import unit_label

    parts, units = [], set()
    for name, layer in layers:
        if layer is None:
            continue
        index = tuple(round(float(c)) for c in layer.world_to_data(position)[-3:])
        if all(0 <= i < n for i, n in zip(index, layer.data.shape, strict=True)):
            parts.append(f"{name} {float(layer.data[index]):.4g}")
            units.add(unit_label(layer))
    return " · ".join(parts) + (f" {', '.join(sorted(units))}" if parts else "")
