"""Show PET layers in SUV or in their file's units (Bq/mL), with the mouse read-out following.

A layer shown in SUV has its data multiplied by its SUV factor and that factor recorded
(``io.layers.DISPLAY_SCALE``), so napari's status line reads SUV under the cursor; everything
that writes a layer (the NIfTI writer, exports) divides it out again through
``io.layers.volume_from_layer``. Reconstructions of a layer shown in SUV are in SUV too and
carry the same record. Layers without an SUV factor stay as they are.
"""

from __future__ import annotations

from napari_petite.io.layers import DISPLAY_SCALE


def suv_factor(layer) -> float | None:
    value = layer.metadata.get("suv_factor")
    return float(value) if value else None


def shown_in_suv(layer) -> bool:
    return bool(layer.metadata.get(DISPLAY_SCALE))


def unit_label(layer) -> str:
    """What a value of the layer is in, as shown now."""
    return "SUV" if shown_in_suv(layer) else (layer.metadata.get("units") or "a.u.")


def suv_switches(viewer, on: bool) -> list:
    """One callable per image layer that can switch (and has not): each converts its data
    and its window together, so the GUI can do one layer per turn of the event loop."""
    from napari.layers import Image

    def switch(layer):
        def run() -> None:
            factor = suv_factor(layer)
            scale = factor if on else 1.0 / factor
            lo, hi = layer.contrast_limits
            layer.data = layer.data * scale
            layer.metadata[DISPLAY_SCALE] = factor if on else None
            layer.contrast_limits = (lo * scale, hi * scale)

        return run

    return [switch(layer) for layer in viewer.layers if isinstance(layer, Image)
            and suv_factor(layer) and shown_in_suv(layer) != on]


def show_all_in_suv(viewer, on: bool) -> int:
    """Switch every image layer that can be at once; returns how many changed."""
    switches = suv_switches(viewer, on)
    for switch in switches:
        switch()
    return len(switches)


def format_value(value: float, unit: str) -> str:
    """A value at the precision its quantity is read with, without scientific notation:
    SUV to two decimals (2.31), Bq/mL in whole numbers with thousands separators (11,390),
    anything else to four significant digits."""
    if unit == "SUV":
        return f"{value:.2f}"
    if unit.lower().replace(" ", "") in ("bq/ml", "bq/cc"):
        return f"{value:,.0f}"
    return f"{value:.4g}"


def with_unit(value: float, unit: str) -> str:
    """"2.31 SUV", "11,390 Bq/mL"."""
    return f"{format_value(value, unit)} {unit}"
