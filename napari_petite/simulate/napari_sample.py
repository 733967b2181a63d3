"""napari "File > Open Sample" entries: one simulated FDG brain exam per scanner profile.

The first call simulates one small subject (a few seconds) and caches its volumes under
:func:`napari_petite._resources.cache_dir`; later calls read the cache. No napari import
here: the functions return layer data tuples, built like the NIfTI reader's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from napari_petite import __version__

#: volumes shown, with their layer names
_LAYERS = (("low", "low-count"), ("full", "full-count"), ("truth", "truth"))
SAMPLE_SEED = 0


def cache_key(scanner_ids) -> str:
    """Short hash of the profiles' content, the package and the simulator version: a cached
    simulation is reused only while all three are what made it."""
    from napari_petite.simulate.profiles import profiles_dir
    from napari_petite.simulate.scan import SIMULATOR_VERSION

    digest = hashlib.sha1(f"{__version__}/{SIMULATOR_VERSION}".encode())
    for sid in scanner_ids:
        digest.update((profiles_dir() / f"{sid}.json").read_bytes())
    return digest.hexdigest()[:10]


def sample_folder(scanner_id: str) -> Path:
    """Cache folder of one scanner's sample subject (keyed by :func:`cache_key`)."""
    from napari_petite._resources import cache_dir

    return cache_dir() / "samples" / f"{scanner_id}-{cache_key([scanner_id])}"


def ensure_sample(scanner_id: str) -> Path:
    """Return the folder with the cached sample subject, simulating it on first use."""
    from napari_petite.simulate.dataset import write_subject
    from napari_petite.simulate.profiles import load_profile
    from napari_petite.simulate.scan import simulate_subject

    folder = sample_folder(scanner_id)
    if all((folder / f"{name}.nii.gz").is_file() for name, _ in _LAYERS):
        return folder
    from napari_petite.io.atomic import atomic_dir

    profile = load_profile(scanner_id)
    scan = simulate_subject(profile, seed=SAMPLE_SEED, index=0, size="small")
    # overwrite: an incomplete earlier attempt, or another process that got there first
    # (the same seed gives the same files)
    with atomic_dir(folder, overwrite=True, kind="subject") as tmp:
        write_subject(tmp, scan, {"subject": f"sample-{scanner_id}"})
    return folder


def sample_layers(scanner_id: str) -> list[tuple]:
    """Layer data tuples (low-count, full-count, truth) for one scanner's sample subject."""
    from napari_petite.io.layers import robust_limits, volume_to_layer_data
    from napari_petite.io.nifti import read_volume

    folder = ensure_sample(scanner_id)
    volumes = {name: read_volume(folder / f"{name}.nii.gz") for name, _ in _LAYERS}
    # one display range for all three, from the full-count image, so they compare directly
    limits = robust_limits(volumes["full"].data, 99.5)
    layers = []
    for name, title in _LAYERS:
        data, kwargs, kind = volume_to_layer_data(volumes[name], name=f"{scanner_id} {title}")
        kwargs["contrast_limits"] = limits
        kwargs["visible"] = name != "truth"
        layers.append((data, kwargs, kind))
    return layers


def sample_mct() -> list[tuple]:
    """Siemens Biograph mCT, simulated FDG brain (low-count, full-count, truth)."""
    return sample_layers("mct")


def sample_vision() -> list[tuple]:
    """Siemens Biograph Vision 600, simulated FDG brain (low-count, full-count, truth)."""
    return sample_layers("vision")


def sample_dmi() -> list[tuple]:
    """GE Discovery MI, simulated FDG brain (low-count, full-count, truth)."""
    return sample_layers("dmi")


def sample_vereos() -> list[tuple]:
    """Philips Vereos, simulated FDG brain (low-count, full-count, truth)."""
    return sample_layers("vereos")


def sample_uexplorer() -> list[tuple]:
    """United Imaging uEXPLORER, simulated FDG brain (low-count, full-count, truth)."""
    return sample_layers("uexplorer")
