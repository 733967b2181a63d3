"""Scanner profiles: the cited figures that make five simulated sites differ like real ones.

Each profile is a JSON file in ``sample_data/scanners/<id>.json``. Every number is stored as
``{"value": ..., "source": "..."}`` so that its origin (a NEMA paper, a published protocol or
an explicit protocol choice; ``docs/simulation.md`` lists them) travels with it; loading
refuses a number without a source. Besides the scanner's physics a profile holds the site's
acquisition protocol (injected activity, full- and short-scan minutes), which sets its
dose-reduction factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from napari_petite.errors import ConfigError

#: fields every profile must carry, with the Python type of their value
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "resolution_fwhm_mm": list,
    "sensitivity_cps_per_kbq": (int, float),
    "relative_counts": (int, float),
    "tof_fwhm_ps": (int, float),
    "axial_fov_mm": (int, float),
    "scatter_fraction": (int, float),
    "randoms_fraction": (int, float),
    "recon_iterations": int,
    "recon_subsets": int,
    "recon_psf": bool,
    "postfilter_fwhm_mm": list,
    "matrix": int,
    "slices": int,
    "voxel_mm": list,
    "injected_activity_mbq": (int, float),
    "full_scan_min": (int, float),
    "short_scan_min": (int, float),
}

#: ~1e8 trues for a 10-minute mCT FDG brain scan (docs/simulation.md)
REFERENCE_TRUES = 1.0e8
#: length of the reference protocol's full-count scan (the source site: 0-30 min)
REFERENCE_FULL_MIN = 30.0
#: speed of light in mm/ps, halved: TOF timing FWHM (ps) -> position FWHM (mm)
MM_PER_PS = 0.299792458 / 2.0


@dataclass(frozen=True)
class Grid:
    """An image grid centred on the scanner axis: ``shape`` and ``spacing`` are (z, y, x)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return tuple(n * d for n, d in zip(self.shape, self.spacing, strict=True))  # type: ignore


@dataclass(frozen=True)
class ScannerProfile:
    """One scanner's physics, the site's acquisition and reconstruction protocol, and its
    output grid (see the JSON files).

    The acquisition protocol is what makes sites differ most in practice: how much activity
    is injected, how long the full scan lasts, and which early part of it the site keeps as
    its low-count (short) scan; the dose-reduction factor is their ratio.
    """

    id: str
    name: str
    vendor: str
    fwhm_mm: tuple[float, float]  # transaxial, axial
    sensitivity_cps_per_kbq: float
    relative_counts: float
    tof_fwhm_ps: float
    axial_fov_mm: float
    scatter_fraction: float
    randoms_fraction: float
    iterations: int
    subsets: int
    psf_modelling: bool
    postfilter_mm: tuple[float, float]  # transaxial, axial
    native_grid: Grid
    injected_mbq: float
    full_scan_min: float
    short_scan_min: float
    raw: dict

    @property
    def drf(self) -> float:
        """The site's dose-reduction factor: full-scan over short-scan duration."""
        return self.full_scan_min / self.short_scan_min

    @property
    def tof(self) -> bool:
        return self.tof_fwhm_ps > 0

    @property
    def tof_fwhm_mm(self) -> float:
        return self.tof_fwhm_ps * MM_PER_PS

    @property
    def full_trues(self) -> float:
        """Expected trues of the site's full scan at the reference injected activity: the
        scanner's count level x the scan length relative to the reference protocol's."""
        return REFERENCE_TRUES * self.relative_counts * self.full_scan_min / REFERENCE_FULL_MIN

    def grid(self, size: str = "small") -> Grid:
        """The output grid: ``native`` (the profile's) or ``small`` (same FOV, >= 64 x 64 x 32).

        ``small`` halves the matrix (at least 64 in-plane, 32 slices) and enlarges the voxels
        so the field of view stays the same, keeping scanners' relative grids different.
        """
        native = self.native_grid
        if size == "native":
            return native
        if size != "small":
            raise ConfigError(f"Unknown size {size!r}; use 'small' or 'native'.")
        nz, n = native.shape[0], native.shape[2]
        n_small = max(64, round(n / 2))
        nz_small = max(32, round(nz / 2))
        ez, ey, _ = native.extent_mm
        return Grid((nz_small, n_small, n_small), (ez / nz_small, ey / n_small, ey / n_small))

    def to_json(self) -> dict:
        """The profile as stored (values with their sources), for ``scanner.json``."""
        return dict(self.raw)


def profiles_dir() -> Path:
    from napari_petite._resources import sample_data_dir

    return sample_data_dir() / "scanners"


def available_ids() -> list[str]:
    """Scanner ids shipped with the package, sorted."""
    return sorted(p.stem for p in profiles_dir().glob("*.json"))


def _value(doc: dict, key: str, path: Path):
    entry = doc.get(key)
    if not isinstance(entry, dict) or "value" not in entry:
        raise ConfigError(f"{path.name}: '{key}' must be an object with 'value' and 'source'.")
    source = entry.get("source")
    if not isinstance(source, str) or len(source.strip()) < 8:
        raise ConfigError(f"{path.name}: '{key}' has no cited source; add a 'source' string.")
    value = entry["value"]
    expected = _FIELDS[key]
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{path.name}: '{key}' has the wrong type ({type(value).__name__}).")
    if isinstance(value, list):
        if not all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in value):
            raise ConfigError(f"{path.name}: '{key}' must hold non-negative numbers.")
    elif isinstance(value, int | float) and not isinstance(value, bool) and (
        not math.isfinite(value) or value < 0
    ):
        raise ConfigError(f"{path.name}: '{key}' must be a non-negative number.")
    return value


def load_profile_file(path: str | Path) -> ScannerProfile:
    """Read and validate one profile JSON file."""
    path = Path(path)
    from napari_petite.io.jsonfile import read_json

    doc = read_json(path, what=f"Scanner profile {path}", error=ConfigError,
                    hint="fix it or use a shipped profile")
    vals = {key: _value(doc, key, path) for key in _FIELDS}
    pair_keys = ("resolution_fwhm_mm", "postfilter_fwhm_mm")
    for key in pair_keys:
        if len(vals[key]) != 2:
            raise ConfigError(f"{path.name}: '{key}' must be [transaxial, axial].")
    if len(vals["voxel_mm"]) != 3 or min(vals["voxel_mm"]) <= 0:
        raise ConfigError(f"{path.name}: 'voxel_mm' must be three positive sizes [z, y, x].")
    if min(vals["resolution_fwhm_mm"]) <= 0 or vals["relative_counts"] <= 0:
        raise ConfigError(f"{path.name}: resolution and relative counts must be positive.")
    if not 0 <= vals["scatter_fraction"] < 1 or not 0 <= vals["randoms_fraction"] < 1:
        raise ConfigError(f"{path.name}: scatter and randoms fractions must lie in [0, 1).")
    if vals["recon_iterations"] < 1 or vals["recon_subsets"] < 1:
        raise ConfigError(f"{path.name}: iterations and subsets must be at least 1.")
    if vals["injected_activity_mbq"] <= 0 or vals["short_scan_min"] <= 0:
        raise ConfigError(f"{path.name}: injected activity and scan durations must be positive.")
    if vals["short_scan_min"] > vals["full_scan_min"]:
        raise ConfigError(f"{path.name}: the short scan ({vals['short_scan_min']} min) cannot be "
                          f"longer than the full scan ({vals['full_scan_min']} min).")
    if vals["matrix"] < 16 or vals["slices"] < 4:
        raise ConfigError(f"{path.name}: the grid must be at least 16 x 16 x 4.")
    dz, dy, dx = (float(v) for v in vals["voxel_mm"])
    if vals["slices"] * dz > vals["axial_fov_mm"] + 1e-6:
        raise ConfigError(f"{path.name}: the slices extend beyond the axial field of view.")
    pid = doc.get("id")
    if pid != path.stem:
        raise ConfigError(f"{path.name}: 'id' must equal the file name ({path.stem!r}).")
    return ScannerProfile(
        id=pid,
        name=str(doc.get("name", pid)),
        vendor=str(doc.get("vendor", "")),
        fwhm_mm=tuple(float(v) for v in vals["resolution_fwhm_mm"]),  # type: ignore[arg-type]
        sensitivity_cps_per_kbq=float(vals["sensitivity_cps_per_kbq"]),
        relative_counts=float(vals["relative_counts"]),
        tof_fwhm_ps=float(vals["tof_fwhm_ps"]),
        axial_fov_mm=float(vals["axial_fov_mm"]),
        scatter_fraction=float(vals["scatter_fraction"]),
        randoms_fraction=float(vals["randoms_fraction"]),
        iterations=int(vals["recon_iterations"]),
        subsets=int(vals["recon_subsets"]),
        psf_modelling=bool(vals["recon_psf"]),
        postfilter_mm=tuple(float(v) for v in vals["postfilter_fwhm_mm"]),  # type: ignore
        native_grid=Grid((int(vals["slices"]), int(vals["matrix"]), int(vals["matrix"])),
                         (dz, dy, dx)),
        injected_mbq=float(vals["injected_activity_mbq"]),
        full_scan_min=float(vals["full_scan_min"]),
        short_scan_min=float(vals["short_scan_min"]),
        raw=doc,
    )


def load_profile(scanner_id: str) -> ScannerProfile:
    """Load a shipped profile by id; an unknown id raises :class:`ConfigError` listing valid ids."""
    ids = available_ids()
    if scanner_id not in ids:
        raise ConfigError(
            f"Unknown scanner id {scanner_id!r}; choose from {', '.join(ids)}."
        )
    return load_profile_file(profiles_dir() / f"{scanner_id}.json")
