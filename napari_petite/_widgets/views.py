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


def side_by_side(viewer, layers) -> None:
    """``layers`` left to right in napari's grid (the list is drawn bottom-up)."""
    from napari_petite.io.layers import PET_COLORMAP

    shown = [lay for lay in layers if lay is not None]
    if not shown:
        return
    for layer in shown:
        layer.colormap = PET_COLORMAP
        layer.blending = "translucent"
        layer.opacity = 1.0
    only(viewer, shown)
    for i, layer in enumerate(reversed(shown)):
        viewer.layers.move(viewer.layers.index(layer), len(viewer.layers) - 1 - i)
    grid = viewer.canvas.grid
    grid.shape = (1, len(shown))
    grid.stride = 1
    grid.enabled = True
    viewer.reset_view()


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
                             colormap=DIFF_COLORMAP, contrast_limits=(-lim, lim),
                             metadata=meta)
    viewer.canvas.grid.enabled = False
    only(viewer, [layer])
    return layer
