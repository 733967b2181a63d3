"""Writing what the compare dock shows: the reconstruction as NIfTI or as a DICOM series, and
the one-page report for the chart.

Functions of the viewer, the session and the layers (no widgets). Each gathers what it
needs on the GUI thread and returns a function that writes in a worker (compressing a
volume or drawing a page took the GUI thread 150-250 ms); a user's error there reaches the
dock as one notification. Nothing is written over a file a loaded layer came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_petite._widgets.state import ROLE_KEY, short_name


def layer_volume(layer):
    """The layer as a :class:`Volume` (geometry from its metadata, else from its scale)."""
    from napari_petite.io.layers import volume_from_layer

    return volume_from_layer(layer.data, {"scale": tuple(layer.scale), "metadata": layer.metadata})


def inputs(viewer) -> list[Path]:
    """Files the loaded layers came from: exports may never replace them."""
    return [Path(src) for layer in viewer.layers if (src := layer.metadata.get("source_path"))]


def nifti_job(viewer, layer, path, overwrite: bool = False):
    """Writing the reconstruction as NIfTI (the input's affine / header / units, in the
    file's units even when shown in SUV), gathered on the GUI thread; the returned
    function writes it in a worker and returns the path."""
    from napari_petite.io.nifti import write_like

    volume, sources = layer_volume(layer), inputs(viewer)
    return lambda: write_like(path, volume.data, volume, inputs=sources, overwrite=overwrite)


def dicom_job(layer, folder, overwrite: bool = False):
    """Writing a derived DICOM series (patient, study and SUV tags of its source; never
    inside the source series folder); the returned function runs in a worker."""
    from napari_petite.io.dicom_export import write_derived_series

    volume = layer_volume(layer)
    model = layer.metadata.get(ROLE_KEY, {}).get("model", "model")
    return lambda: write_derived_series(volume.data, volume, folder, overwrite=overwrite,
                                        description=f"PETITE {model}"[:64])


def report_job(viewer, session, panels, metrics: dict, regions: dict, path,
               overwrite: bool = False, fidelity=None):
    """What writing the report needs, gathered on the GUI thread; returns a function that
    draws and writes it (PNG, or PDF for a .pdf name) and returns its path, to be run in a
    worker: slices of the scan and every model reconstructed on it, colour bars, metrics,
    region statistics, the fidelity check (when one belongs to the shown model) and
    details."""
    from napari_petite._widgets.roi_panel import subject_images
    from napari_petite._widgets.units import unit_label
    from napari_petite.training.report import write_report

    low, recon, full = panels
    recons = {short_name(lay.metadata[ROLE_KEY]["model"]): np.asarray(lay.data)
              for lay in subject_images(viewer, low)
              if lay.metadata.get(ROLE_KEY, {}).get("kind") == "reconstructed"}
    kwargs = dict(low=np.asarray(low.data), recons=recons,
                  full=None if full is None else np.asarray(full.data), spacing=recon.scale,
                  affine=low.metadata.get("affine"), metrics=metrics,
                  regions={_row_name(viewer, k): v for k, v in regions.items()},
                  units=unit_label(low), details=details(session, low),
                  title=f"{low.name}", inputs=inputs(viewer), overwrite=overwrite,
                  fidelity=fidelity)
    return lambda: write_report(path, **kwargs)


def _row_name(viewer, layer_name: str) -> str:
    role = next((lay.metadata.get(ROLE_KEY, {}) for lay in viewer.layers
                 if lay.name == layer_name), {})
    if role.get("kind") == "reconstructed" and role.get("model"):
        return short_name(role["model"])
    return {"low": "low count", "full": "full count"}.get(role.get("kind"), layer_name)


def details(session, low) -> dict[str, str]:
    """What the chart needs to know beside the images: the scan and the models with their
    versions (checkpoint digests), never a local path (the page may leave the site)."""
    role = low.metadata.get(ROLE_KEY, {})
    dicom_tags = low.metadata.get("dicom") or {}
    card = session.base_card or {}
    out = {"scan": f"{role.get('scanner', '')}/{role.get('subject', '')}".strip("/")
           or low.name,
           "grid": f"{' x '.join(map(str, low.data.shape))} voxels of "
                   f"{' x '.join(f'{s:.2f}' for s in low.scale)} mm (z, y, x)"}
    if dicom_tags:
        out["patient / study"] = f"{dicom_tags.get('PatientID')} / {dicom_tags.get('StudyDate')}"
    sha = str(card.get("sha256") or "")[:12]
    out["base model"] = (f"{card.get('backbone')} {card.get('preset')} pre-trained on "
                         f"{card.get('source')}" + (f" (checkpoint sha256 {sha}…)" if sha
                                                     else ""))
    for model in session.models:
        trained = model.training.get("steps_done")
        out[short_name(model.name)] = (f"{model.name}: {model.spec.label}"
                                       + (f"; {trained} steps" if trained else "")
                                       + (f"; adapter '{model.bundle.name}'" if model.bundle
                                          else ""))
    return out
