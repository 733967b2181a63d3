"""npe2 hooks named in napari.yaml: reader (NIfTI, ECAT 7 and DICOM PET), writer.

Kept tiny and import-light so napari starts fast; the work happens in ``napari_petite.io``.
"""

from __future__ import annotations

from napari_petite.io.nifti import is_nifti


def get_reader(path):
    """A reader for NIfTI files, ECAT 7 files and DICOM PET series (a folder dropped on the
    window, or one .dcm file); napari passes a str or a list of them."""
    from napari_petite.io.volumes import is_volume_path

    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(is_volume_path(p) for p in paths):
        return None
    return _read_layers


def _volumes(path: str) -> list:
    """Every volume a path holds: a NIfTI file, or each PET series of a DICOM folder (a
    folder holding several opens them all, each named after its description)."""
    from napari_petite.io.dicom import list_series
    from napari_petite.io.ecat import is_ecat
    from napari_petite.io.volumes import read_any

    if is_nifti(path) or is_ecat(path):
        return [read_any(path)]
    pets = [s for s in list_series(path) if s.modality == "PT"]
    if len(pets) <= 1:
        return [read_any(path)]  # one series, or none: read_series says why
    return [read_any(path, series=s.uid) for s in pets]


def _read_layers(path):
    """Layers for every readable path; each unreadable one becomes one error notification.

    napari would otherwise replace the reason (``PetiteError``'s sentence) with its generic
    "tried to read with plugin napari-petite, but it gave an error" and a traceback.
    """
    from napari_petite.errors import PetiteError
    from napari_petite.io.layers import volume_to_layer_data

    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for p in paths:
        try:
            layers.extend(volume_to_layer_data(v) for v in _volumes(str(p)))
        except PetiteError as err:
            from napari.utils.notifications import show_error

            show_error(str(err))
    # napari's "read, but nothing to add" value: no second, generic error on top of ours
    return layers or [(None,)]


def write_image(path: str, data, meta: dict) -> list[str]:
    """Write an image layer to NIfTI with its original affine/header, never over its source.

    napari's save dialog has already confirmed replacing an existing file, so the only refusal
    is writing over the file the layer was read from.
    """
    from napari_petite.io.layers import volume_from_layer
    from napari_petite.io.nifti import write_volume

    volume = volume_from_layer(data, meta)
    if not is_nifti(path):
        path = f"{path}.nii.gz"
    out = write_volume(
        path,
        volume.data,
        affine=volume.affine,
        header=volume.header,
        units=volume.units,
        inputs=[volume.path] if volume.path else [],
        overwrite=True,
    )
    return [str(out)]
