"""Where the shipped data lives, in a source checkout and in an installed wheel.

The wheel carries ``sample_data/`` inside the package (hatch force-include); an editable
install or a source checkout keeps it at the repository root.
"""

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def sample_data_dir() -> Path:
    """Return the folder holding scanner profiles, anatomy derivatives and base models."""
    for candidate in (_PKG / "sample_data", _PKG.parent / "sample_data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "The napari-petite sample_data folder is missing from this installation; "
        "reinstall the package (pip install napari-petite)."
    )


def cache_dir() -> Path:
    """Per-user cache (system matrices, generated sample subjects); created on demand."""
    import os

    root = os.environ.get("PETITE_CACHE_DIR")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "napari-petite"
    path.mkdir(parents=True, exist_ok=True)
    return path
