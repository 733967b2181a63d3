"""Writing what the compare dock shows: the reconstruction as NIfTI or as a DICOM series, and
the one-page report for the chart.

Functions of the viewer, the session and the layers (no widgets); each turns a library error
into one notification and returns None, so a dock button never raises. Nothing is written
over a file a loaded layer came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_petite._widgets.state import ROLE_KEY
from napari_petite._widgets.tasks import notify_failure
from napari_petite.errors import PetiteError


def layer_volume(layer):
    """The layer as a :class:`Volume` (geometry from its metadata, else from its scale)."""
    from napari_petite.io.layers import volume_from_layer

    return volume_from_layer(layer.data, {"scale": tuple(layer.scale), "metadata": layer.metadata})


def inputs(viewer) -> list[Path]:
    """Files the loaded layers came from: exports may never replace them."""
    return [Path(src) for layer in viewer.layers if (src := layer.metadata.get("source_path"))]


def _written(what: str, write) -> Path | None:
    from napari.utils.notifications import show_info

    try:
        out = write()
    except PetiteError as err:
        notify_failure(err)
        return None
    show_info(f"{what} written to {out}.")
    return out


def nifti(viewer, layer, path, overwrite: bool = False) -> Path | None:
    """The reconstruction with the input's affine / header / units, in the file's units even
    when shown in SUV."""
    from napari_petite.io.nifti import write_like

    volume = layer_volume(layer)
    return _written("Reconstruction", lambda: write_like(
        path, volume.data, volume, inputs=inputs(viewer), overwrite=overwrite))


def dicom(layer, folder, overwrite: bool = False) -> Path | None:
    """A derived DICOM series (patient, study and SUV tags of its source; never inside the
    source series folder)."""
    from napari_petite.io.dicom_export import write_derived_series

    volume = layer_volume(layer)
    model = layer.metadata.get(ROLE_KEY, {}).get("model", "model")
    return _written("DICOM series", lambda: write_derived_series(
        volume.data, volume, folder, overwrite=overwrite, description=f"PETITE {model}"[:64]))


def report(viewer, session, panels, metrics: dict, path,
           overwrite: bool = False) -> Path | None:
    """The report (PNG, or PDF for a .pdf name) of the scan and every model reconstructed on
    it: slices with colour bars, the metrics table, the details."""
    from napari_petite._widgets.roi_panel import subject_images
    from napari_petite._widgets.units import unit_label
    from napari_petite.training.report import write_report

    low, recon, full = panels
    recons = {lay.metadata[ROLE_KEY]["model"]: np.asarray(lay.data)
              for lay in subject_images(viewer, low)
              if lay.metadata.get(ROLE_KEY, {}).get("kind") == "reconstructed"}
    return _written("Report", lambda: write_report(
        path, low=np.asarray(low.data), recons=recons,
        full=None if full is None else np.asarray(full.data), spacing=recon.scale,
        metrics=metrics, units=unit_label(low), details=details(session, low),
        title=f"{low.name}", inputs=inputs(viewer), overwrite=overwrite))


def details(session, low) -> dict[str, str]:
    """What the chart needs to know beside the images: scan, base and adapters."""
    role = low.metadata.get(ROLE_KEY, {})
    dicom_tags = low.metadata.get("dicom") or {}
    card = session.base_card or {}
    out = {"scan": f"{role.get('scanner', '')}/{role.get('subject', '')}".strip("/")
           or low.name,
           "grid": f"{' x '.join(map(str, low.data.shape))} voxels of "
                   f"{' x '.join(f'{s:.2f}' for s in low.scale)} mm (z, y, x)"}
    if dicom_tags:
        out["patient / study"] = f"{dicom_tags.get('PatientID')} / {dicom_tags.get('StudyDate')}"
    out["base model"] = f"{card.get('backbone')} {card.get('preset')} pre-trained on " \
                        f"{card.get('source')} ({session.base_path})"
    for model in session.models:
        out[model.name] = (f"{model.spec.label}; {model.training.get('steps_done')} steps"
                           + (f"; bundle {model.bundle}" if model.bundle else ""))
    return out
