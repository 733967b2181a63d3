"""A 2D ray-driven PET system matrix (optionally time-of-flight) applied to all slices at once.

No CPU PET projector installs from PyPI, so the simulator builds its own: Joseph's method
(one linear interpolation per image row or column crossed, weight = path length in mm) for
each line of response of a parallel-beam sinogram, optionally split into Gaussian TOF bins.
Forward and back projection use the same ``scipy.sparse`` matrix and its transpose, so the
adjoint is exact (up to float rounding), which OSEM's convergence relies on. Matrices are
cached on disk under :func:`napari_petite._resources.cache_dir` because building one takes
seconds and every subject of a scanner reuses it.

Layouts: images are ``(pixels, slices)`` with pixel index ``row * n + col`` (row = y,
col = x); sinograms are ``(rows, slices)`` with row index ``(view * n_bins + bin) * n_tof + t``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr

_CACHE_VERSION = "joseph-tof-v1"
#: matrices larger than this (uncompressed bytes) are rebuilt instead of cached on disk;
#: cached ones are stored compressed (about half size, loading 3-10x faster than building)
MAX_CACHED_BYTES = 512 * 2**20
#: TOF kernel truncated at this many standard deviations (then renormalised)
_TOF_TRUNCATE = 3.0


@dataclass(frozen=True)
class Geometry:
    """Image grid and sinogram sampling of one 2D system matrix.

    ``n`` x ``n`` pixels of ``pixel_mm``; ``n_views`` angles over [0, pi); ``n_bins`` radial
    bins of ``bin_mm``; ``n_tof`` TOF bins of ``tof_bin_mm`` with a Gaussian timing kernel of
    ``tof_fwhm_mm`` (``n_tof == 1`` and ``tof_fwhm_mm == 0`` means no TOF). Only the disc
    inscribed in the sinogram's radial extent contributes.
    """

    n: int
    pixel_mm: float
    n_views: int
    n_bins: int
    bin_mm: float
    n_tof: int = 1
    tof_bin_mm: float = 0.0
    tof_fwhm_mm: float = 0.0

    @property
    def radius_mm(self) -> float:
        return 0.5 * self.n_bins * self.bin_mm

    @property
    def n_lors(self) -> int:
        return self.n_views * self.n_bins

    @property
    def n_rows(self) -> int:
        return self.n_lors * self.n_tof

    def key(self) -> str:
        text = json.dumps({**asdict(self), "v": _CACHE_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def make_geometry(n: int, pixel_mm: float, *, n_bins: int, bin_mm: float, n_views: int,
                  tof_fwhm_mm: float = 0.0) -> Geometry:
    """A geometry whose TOF bins (half the timing FWHM wide) span the field of view."""
    if tof_fwhm_mm <= 0:
        return Geometry(n, float(pixel_mm), n_views, n_bins, float(bin_mm))
    width = tof_fwhm_mm / 2.0
    n_tof = math.ceil(n_bins * bin_mm / width)
    n_tof += 1 - n_tof % 2  # odd: one bin centred on the middle of every line
    return Geometry(n, float(pixel_mm), n_views, n_bins, float(bin_mm), n_tof, width,
                    float(tof_fwhm_mm))


def _view_entries(geo: Geometry, view: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and weights (mm) of one view, TOF-expanded."""
    n, d = geo.n, geo.pixel_mm
    theta = math.pi * view / geo.n_views
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    s = (np.arange(geo.n_bins) - (geo.n_bins - 1) / 2.0) * geo.bin_mm  # radial positions
    centre = (n - 1) / 2.0
    steps = (np.arange(n) - centre) * d  # coordinates of the pixel rows / columns crossed
    # line: p(t) = s (cos, sin) + t (-sin, cos)
    if abs(cos_t) >= abs(sin_t):  # steep in y: step over rows
        y = np.broadcast_to(steps[None, :], (geo.n_bins, n))
        t = (y - s[:, None] * sin_t) / cos_t
        x = s[:, None] * cos_t - t * sin_t
        frac = x / d + centre
        length = d / abs(cos_t)
        step_idx = np.broadcast_to(np.arange(n)[None, :], y.shape)

        def pix(step, other):
            return step * n + other
    else:  # step over columns
        x = np.broadcast_to(steps[None, :], (geo.n_bins, n))
        t = (s[:, None] * cos_t - x) / sin_t
        y = s[:, None] * sin_t + t * cos_t
        frac = y / d + centre
        length = d / abs(sin_t)
        step_idx = np.broadcast_to(np.arange(n)[None, :], x.shape)

        def pix(step, other):
            return other * n + step
    inside = (x * x + y * y) <= geo.radius_mm ** 2
    lo = np.floor(frac).astype(np.int64)
    w_hi = frac - lo
    bins = np.broadcast_to(np.arange(geo.n_bins)[:, None], frac.shape)
    rows_l, cols_l, w_l, t_l = [], [], [], []
    for other, w in ((lo, 1.0 - w_hi), (lo + 1, w_hi)):
        keep = inside & (other >= 0) & (other < n) & (w > 1e-9)
        rows_l.append(bins[keep])
        cols_l.append(pix(step_idx[keep], other[keep]))
        w_l.append(w[keep] * length)
        t_l.append(t[keep])
    lor = np.concatenate(rows_l) + view * geo.n_bins
    cols = np.concatenate(cols_l)
    weights = np.concatenate(w_l)
    tpos = np.concatenate(t_l)
    if geo.n_tof == 1:
        return lor, cols, weights
    sigma = geo.tof_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    half = math.ceil((_TOF_TRUNCATE * sigma) / geo.tof_bin_mm + 0.5)
    centre_bin = np.rint(tpos / geo.tof_bin_mm).astype(np.int64) + (geo.n_tof - 1) // 2
    offsets = np.arange(-half, half + 1)
    tbin = centre_bin[:, None] + offsets[None, :]
    tcentre = (tbin - (geo.n_tof - 1) / 2.0) * geo.tof_bin_mm
    hi = (tcentre + geo.tof_bin_mm / 2.0 - tpos[:, None]) / sigma
    lo_ = (tcentre - geo.tof_bin_mm / 2.0 - tpos[:, None]) / sigma
    kernel = ndtr(hi) - ndtr(lo_)
    kernel[(np.abs(tcentre - tpos[:, None]) > _TOF_TRUNCATE * sigma + geo.tof_bin_mm / 2)] = 0
    kernel[(tbin < 0) | (tbin >= geo.n_tof)] = 0.0
    total = kernel.sum(axis=1, keepdims=True)
    kernel = np.divide(kernel, total, out=np.zeros_like(kernel), where=total > 0)
    keep = kernel > 1e-7
    rows = (lor[:, None] * geo.n_tof + tbin)[keep]
    cols_t = np.broadcast_to(cols[:, None], kernel.shape)[keep]
    w_t = (weights[:, None] * kernel)[keep]
    return rows, cols_t, w_t


def build_matrix(geo: Geometry) -> sp.csr_matrix:
    """Build the system matrix (rows x pixels, float32, weights in mm)."""
    rows, cols, vals = [], [], []
    for view in range(geo.n_views):
        r, c, w = _view_entries(geo, view)
        rows.append(r)
        cols.append(c)
        vals.append(w.astype(np.float32))
    coo = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(geo.n_rows, geo.n * geo.n),
    )
    mat = coo.tocsr()
    mat.sum_duplicates()
    mat.indices = mat.indices.astype(np.int32)
    mat.indptr = mat.indptr.astype(np.int64 if mat.nnz >= 2**31 else np.int32)
    return mat


def _cache_file(geo: Geometry):
    from napari_petite._resources import cache_dir

    folder = cache_dir() / "projectors"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{geo.key()}.npz"


def load_or_build(geo: Geometry, use_cache: bool = True) -> sp.csr_matrix:
    """The system matrix for ``geo``, from the on-disk cache when present (else built + saved)."""
    if not use_cache:
        return build_matrix(geo)
    path = _cache_file(geo)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(v) for v in z["shape"])
                if shape == (geo.n_rows, geo.n * geo.n):
                    return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    mat = build_matrix(geo)
    if mat.data.nbytes + mat.indices.nbytes + mat.indptr.nbytes > MAX_CACHED_BYTES:
        return mat  # rebuilding beats filling the user's cache with gigabytes
    from napari_petite.errors import OutputError
    from napari_petite.io.atomic import atomic_path

    try:
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, data=mat.data, indices=mat.indices, indptr=mat.indptr,
                     shape=np.array(mat.shape))
    except (OSError, OutputError):
        pass  # a read-only cache only costs speed
    return mat


class Projector:
    """Forward / back projection of ``(pixels, slices)`` images with one sparse matrix.

    ``forward`` is ``A @ x`` and ``back`` is ``A.T @ y`` on the same matrix, so
    ``<A x, y> == <x, A.T y>`` holds exactly in exact arithmetic.
    """

    def __init__(self, geo: Geometry, matrix: sp.csr_matrix | None = None,
                 use_cache: bool = True):
        self.geo = geo
        self.matrix = matrix if matrix is not None else load_or_build(geo, use_cache)
        self._t: sp.csr_matrix | None = None

    @property
    def matrix_t(self) -> sp.csr_matrix:
        if self._t is None:
            self._t = self.matrix.T.tocsr()
        return self._t

    def forward(self, image: np.ndarray) -> np.ndarray:
        """Project ``(pixels, slices)`` to ``(rows, slices)``."""
        return np.asarray(self.matrix @ np.ascontiguousarray(image, dtype=np.float32))

    def back(self, sino: np.ndarray) -> np.ndarray:
        """Back-project ``(rows, slices)`` to ``(pixels, slices)`` (the exact adjoint)."""
        return np.asarray(self.matrix_t @ np.ascontiguousarray(sino, dtype=np.float32))

    def lor_sum(self, sino: np.ndarray) -> np.ndarray:
        """Sum TOF bins: ``(rows, slices)`` -> ``(lors, slices)`` (non-TOF sinogram)."""
        if self.geo.n_tof == 1:
            return sino
        return sino.reshape(self.geo.n_lors, self.geo.n_tof, -1).sum(axis=1)

    def lor_expand(self, lor_values: np.ndarray) -> np.ndarray:
        """Repeat per-LOR values over TOF bins: ``(lors, slices)`` -> ``(rows, slices)``."""
        if self.geo.n_tof == 1:
            return lor_values
        return np.repeat(lor_values, self.geo.n_tof, axis=0)

    def subset_rows(self, subset: int, n_subsets: int) -> np.ndarray:
        """Row indices of the views ``subset, subset + n_subsets, ...`` (interleaved)."""
        per_view = self.geo.n_bins * self.geo.n_tof
        views = np.arange(subset, self.geo.n_views, n_subsets)
        return (views[:, None] * per_view + np.arange(per_view)[None, :]).ravel()

    def subset(self, subset: int, n_subsets: int) -> Projector:
        """A projector restricted to one ordered subset of views."""
        rows = self.subset_rows(subset, n_subsets)
        sub = Projector.__new__(Projector)
        sub.geo = self.geo
        sub.matrix = self.matrix[rows]
        sub._t = None
        return sub


@lru_cache(maxsize=8)
def cached_projector(geo: Geometry) -> Projector:
    """Projectors kept in memory so that every subject of a scanner reuses one."""
    return Projector(geo)


def views_for(n: int, subsets: int) -> int:
    """Number of views: about n * pi / 4 (enough for n pixels), a multiple of ``subsets``."""
    target = max(subsets, math.ceil(n * math.pi / 4.0))
    return subsets * math.ceil(target / subsets)
