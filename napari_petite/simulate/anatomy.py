"""FDG brain phantoms built from real anatomy (MNI ICBM152 2009a grey / white matter maps).

Each subject is drawn from a seeded generator: a random affine (scale, rotation, shift), GM
level and GM:WM ratio, regional SUVR modulation (docs/simulation.md), a smooth GM texture,
0-3 hot or cold lesions, an optional hypometabolic region, skull and scalp shells, an
attenuation map and a region label map. Everything is built once on the 2 mm template grid and
then sampled onto whatever scanner grid asks for it (:meth:`Phantom.sample`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

#: injected FDG activity of the reference protocol (MBq; the source site, ~5 mCi)
REFERENCE_INJECTED_MBQ = 200.0
#: region label values written to ``labels.nii.gz`` (also stored in meta.json)
LABELS: dict[int, str] = {
    0: "background",
    1: "grey matter",
    2: "white matter",
    3: "csf",
    4: "cerebellar cortex",
    5: "putamen",
    6: "thalamus",
    7: "precuneus",
    8: "posterior cingulate",
    9: "hippocampus",
    10: "pons",
    11: "hot lesion",
    12: "cold lesion",
    13: "hypometabolism",
    14: "skull",
    15: "scalp",
}
LABEL_ID = {name: value for value, name in LABELS.items()}

#: FDG SUVR to pons of 537 normals (docs/simulation.md); "cortex" is an assumption
#: for the generic cortical ribbon, which the table does not list
REGION_SUVR = {
    "precuneus": 1.50,
    "putamen": 1.50,
    "posterior cingulate": 1.39,
    "thalamus": 1.16,
    "cerebellar cortex": 1.15,
    "hippocampus": 0.96,
    "cortex": 1.35,
}
#: regions as bilateral ellipsoids in MNI mm: centre (|x|, y, z) and radii; "deep" regions
#: are grey matter whatever the template's tissue probabilities say (basal ganglia are
#: partly classified as WM in tissue priors)
_ELLIPSOIDS = {
    "putamen": ((25.0, 2.0, 0.0), (5.0, 12.0, 8.0), True),
    "thalamus": ((11.0, -18.0, 7.0), (7.0, 11.0, 8.0), True),
    "precuneus": ((7.0, -62.0, 40.0), (8.0, 14.0, 14.0), False),
    "posterior cingulate": ((5.0, -42.0, 30.0), (6.0, 12.0, 8.0), False),
    "hippocampus": ((27.0, -22.0, -14.0), (6.0, 15.0, 6.0), True),
    "pons": ((0.0, -27.0, -35.0), (10.0, 10.0, 9.0), True),
}
#: linear attenuation at 511 keV (1/mm): soft tissue / brain, and the bone range
MU_TISSUE = 0.0096
MU_BONE_RANGE = (0.013, 0.017)
#: skull and scalp shells outside the intracranial mask (mm)
SKULL_MM = (0.0, 7.0)
SCALP_MM = (7.0, 13.0)
#: exponent that turns population tissue priors into one subject's crisper tissue fractions
TISSUE_SHARPENING = 3.0


@dataclass(frozen=True)
class Templates:
    """Template tissue fractions in (x, y, z) voxel order and their voxel -> MNI mm affine."""

    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    affine: np.ndarray


@lru_cache(maxsize=1)
def load_templates() -> Templates:
    """The committed 2 mm ICBM152 2009a maps (see sample_data/anatomy/README.md)."""
    import nibabel as nib

    from napari_petite._resources import sample_data_dir

    folder = sample_data_dir() / "anatomy"
    maps = {}
    affine = None
    for kind in ("gm", "wm", "brain"):
        img = nib.load(str(folder / f"icbm152_2009a_{kind}_2mm.nii.gz"))
        maps[kind] = np.asarray(img.dataobj, dtype=np.float32) / 255.0
        affine = np.asarray(img.affine, dtype=np.float64)
    brain = np.maximum(maps["brain"], np.clip(maps["gm"] + maps["wm"], 0, 1))
    return Templates(maps["gm"], maps["wm"], brain, affine)


@lru_cache(maxsize=1)
def _shells() -> tuple[np.ndarray, np.ndarray]:
    """Skull and scalp shells (0/1) by distance outside the intracranial mask."""
    tpl = load_templates()
    outside_mm = ndi.distance_transform_edt(tpl.brain < 0.5,
                                            sampling=np.abs(np.diag(tpl.affine)[:3]))
    skull = ((outside_mm > SKULL_MM[0]) & (outside_mm <= SKULL_MM[1])).astype(np.float32)
    scalp = ((outside_mm > SCALP_MM[0]) & (outside_mm <= SCALP_MM[1])).astype(np.float32)
    return skull, scalp


def _mni_coords(tpl: Templates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = tpl.gm.shape
    idx = [np.arange(s, dtype=np.float32) for s in shape]
    a = tpl.affine
    x = (a[0, 0] * idx[0] + a[0, 3])[:, None, None]
    y = (a[1, 1] * idx[1] + a[1, 3])[None, :, None]
    z = (a[2, 2] * idx[2] + a[2, 3])[None, None, :]
    return x, y, z


def _ellipsoid(coords, centre, radii, soft_mm: float = 2.0) -> np.ndarray:
    """Soft-edged ellipsoid membership in [0, 1] (edge ramps over ~``soft_mm``)."""
    x, y, z = coords
    r = np.sqrt(((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                + ((z - centre[2]) / radii[2]) ** 2)
    edge = soft_mm / min(radii)
    return np.clip((1.0 + edge / 2 - r) / edge, 0.0, 1.0).astype(np.float32)


@dataclass
class Phantom:
    """One subject in template space plus the transform that places it in the scanner.

    ``activity`` is in Bq/mL, ``mu`` in 1/mm, ``labels`` uint8 (see :data:`LABELS`), all on
    the template grid. ``scanner_to_template`` maps scanner mm (x, y, z; origin at the
    field-of-view centre) to template voxel indices.
    """

    activity: np.ndarray
    mu: np.ndarray
    labels: np.ndarray
    scanner_to_template: np.ndarray
    suv_factor: float
    dose_mbq: float
    weight_kg: float
    params: dict = field(default_factory=dict)

    def sample(self, shape_zyx, spacing_zyx, *, oversample_z: int = 1,
               what: str = "activity") -> np.ndarray:
        """Sample ``activity``/``mu`` (linear, axially averaged) or ``labels`` (nearest).

        The grid is centred on the scanner axis: voxel ``k`` of an axis with ``n`` voxels of
        size ``d`` sits at ``(k - (n - 1) / 2) * d`` mm. ``oversample_z`` sub-slices per slice
        are averaged so thick slices integrate the anatomy instead of point-sampling it.
        """
        nz, ny, nx = shape_zyx
        dz, dy, dx = spacing_zyx
        oz = 1 if what == "labels" else max(1, int(oversample_z))
        zs = ((np.arange(nz * oz) + 0.5) / oz - 0.5 - (nz - 1) / 2.0) * dz
        ys = (np.arange(ny) - (ny - 1) / 2.0) * dy
        xs = (np.arange(nx) - (nx - 1) / 2.0) * dx
        m = self.scanner_to_template
        out = np.empty((nz * oz, ny, nx), dtype=np.float32)
        source = {"activity": self.activity, "mu": self.mu, "labels": self.labels}[what]
        order = 0 if what == "labels" else 1
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        for k, z in enumerate(zs):
            coords = [m[i, 0] * xx + m[i, 1] * yy + m[i, 2] * z + m[i, 3] for i in range(3)]
            out[k] = ndi.map_coordinates(source, coords, order=order, mode="constant", cval=0.0,
                                         prefilter=False)
        if oz > 1:
            out = out.reshape(nz, oz, ny, nx).mean(axis=1)
        if what == "labels":
            return out.astype(np.uint8)
        return np.maximum(out, 0.0)


def sharpen_tissues(gm: np.ndarray, wm: np.ndarray, brain: np.ndarray,
                    power: float = TISSUE_SHARPENING) -> tuple[np.ndarray, np.ndarray]:
    """Crisper GM / WM fractions: p_i^power / sum_j p_j^power (i over GM, WM, CSF) x brain.

    The population-average priors are blurred by inter-subject variability (deep white
    matter is only ~85 % WM); one person's tissue boundaries are sharp.
    """
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    powered = [np.power(np.clip(p, 0, 1), power) for p in (gm, wm, csf)]
    total = powered[0] + powered[1] + powered[2]
    scale = np.divide(brain, total, out=np.zeros_like(total), where=total > 1e-6)
    return (powered[0] * scale).astype(np.float32), (powered[1] * scale).astype(np.float32)


def _rotation(angles_rad) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_phantom(rng: np.random.Generator, *, lesions: int | None = None,
                 hypometabolism: bool | None = None,
                 injected_mbq: float = REFERENCE_INJECTED_MBQ) -> Phantom:
    """Draw one FDG brain subject (see the module docstring for what varies).

    ``injected_mbq`` is the site's protocol activity; each subject's dose varies +-15 % around
    it (the same draw at every site, so a protocol changes the level, not the people).
    """
    tpl = load_templates()
    coords = _mni_coords(tpl)
    _, y, z = coords
    shape = tpl.gm.shape
    brain = tpl.brain
    gm, wm = sharpen_tissues(tpl.gm, tpl.wm, brain)
    # --- subject-level levels (SUV) -------------------------------------------------------
    gm_suv = float(rng.uniform(6.0, 10.0))
    gm_wm_ratio = float(rng.uniform(3.0, 4.0))
    csf_suv = float(rng.uniform(0.2, 0.5))
    scalp_suv = float(rng.uniform(0.6, 1.2))
    skull_suv = float(rng.uniform(0.3, 0.6))
    mu_bone = float(rng.uniform(*MU_BONE_RANGE))
    # --- regional modulation of grey matter -----------------------------------------------
    modulation = np.ones(shape, dtype=np.float32)
    region_masks: dict[str, np.ndarray] = {}
    region_values = {}
    for name, (centre, radii, deep) in _ELLIPSOIDS.items():
        member = np.maximum(
            _ellipsoid(coords, (centre[0], centre[1], centre[2]), radii),
            _ellipsoid(coords, (-centre[0], centre[1], centre[2]), radii),
        )
        suvr = REGION_SUVR.get(name, REGION_SUVR["cortex"])
        if name == "pons":
            ratio = 1.0 / REGION_SUVR["cortex"]
        else:
            ratio = suvr / REGION_SUVR["cortex"] * float(rng.normal(1.0, 0.08))
        region_values[name] = ratio
        if deep:
            gm = np.maximum(gm, member * brain)
            wm = np.minimum(wm, np.clip(brain - gm, 0, 1))
        modulation = modulation * (1.0 + member * (ratio - 1.0))
        region_masks[name] = member
    cereb = ((z < -20.0) & (y < -35.0)).astype(np.float32)
    cereb = ndi.gaussian_filter(cereb, 1.5)
    cereb_ratio = REGION_SUVR["cerebellar cortex"] / REGION_SUVR["cortex"]
    cereb_ratio *= float(rng.normal(1.0, 0.08))
    region_values["cerebellar cortex"] = cereb_ratio
    modulation *= 1.0 + cereb * (cereb_ratio - 1.0)
    # --- texture, lesions, hypometabolism -------------------------------------------------
    texture = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5)
    texture = 1.0 + 0.06 * texture / max(float(texture.std()), 1e-6)
    lesion_factor = np.ones(shape, dtype=np.float32)
    lesion_info = []
    n_lesions = int(rng.integers(0, 4)) if lesions is None else int(lesions)
    cortex_idx = np.argwhere((gm > 0.6) & (z > -15.0))
    lesion_masks = []
    for _ in range(n_lesions):
        centre_idx = cortex_idx[int(rng.integers(len(cortex_idx)))]
        centre = tuple(float(c[tuple(0 if s == 1 else int(i) for s, i in
                                      zip(c.shape, centre_idx, strict=True))])
                       for c in coords)
        radius = float(rng.uniform(4.0, 10.0))
        hot = bool(rng.random() < 0.5)
        factor = float(rng.uniform(1.2, 2.5) if hot else rng.uniform(0.2, 0.8))
        member = _ellipsoid(coords, centre, (radius, radius, radius), soft_mm=1.5) * brain
        lesion_factor *= 1.0 + member * (factor - 1.0)
        lesion_masks.append((member, hot))
        lesion_info.append({"centre_mni_mm": [round(c, 1) for c in centre],
                            "radius_mm": round(radius, 2), "kind": "hot" if hot else "cold",
                            "factor": round(factor, 3)})
    hypo = np.zeros(shape, dtype=np.float32)
    hypo_info = None
    if hypometabolism is None:
        hypometabolism = bool(rng.random() < 0.5)
    if hypometabolism:
        centre_idx = cortex_idx[int(rng.integers(len(cortex_idx)))]
        centre = tuple(float(c[tuple(0 if s == 1 else int(i) for s, i in
                                      zip(c.shape, centre_idx, strict=True))])
                       for c in coords)
        radius = float(rng.uniform(15.0, 25.0))
        drop = float(rng.uniform(0.10, 0.30))
        hypo = _ellipsoid(coords, centre, (radius, radius, radius), soft_mm=8.0)
        modulation *= 1.0 - drop * hypo
        hypo_info = {"centre_mni_mm": [round(c, 1) for c in centre],
                     "radius_mm": round(radius, 2), "reduction": round(drop, 3)}
    # --- tissues -------------------------------------------------------------------------
    gm = np.clip(gm, 0, 1)
    wm = np.clip(np.minimum(wm, 1 - gm), 0, 1)
    csf = np.clip(brain - gm - wm, 0, 1)
    skull, scalp = _shells()
    gm_act = gm_suv * modulation * texture * lesion_factor
    suv = (gm * gm_act + wm * (gm_suv / gm_wm_ratio) * lesion_factor + csf * csf_suv
           + skull * skull_suv + scalp * scalp_suv)
    mu = MU_TISSUE * (brain + scalp) + mu_bone * skull
    # --- labels --------------------------------------------------------------------------
    labels = np.zeros(shape, dtype=np.uint8)
    labels[scalp > 0.5] = LABEL_ID["scalp"]
    labels[skull > 0.5] = LABEL_ID["skull"]
    tissue = np.stack([csf, gm, wm])
    inside = brain >= 0.5
    best = np.argmax(tissue, axis=0)
    labels[inside & (best == 0)] = LABEL_ID["csf"]
    labels[inside & (best == 1)] = LABEL_ID["grey matter"]
    labels[inside & (best == 2)] = LABEL_ID["white matter"]
    grey = inside & (best == 1)
    labels[grey & (cereb > 0.5)] = LABEL_ID["cerebellar cortex"]
    for name, member in region_masks.items():
        labels[(member > 0.5) & (grey | (name == "pons") & inside)] = LABEL_ID[name]
    if hypo_info:
        labels[grey & (hypo > 0.5)] = LABEL_ID["hypometabolism"]
    for member, hot in lesion_masks:
        labels[member > 0.5] = LABEL_ID["hot lesion" if hot else "cold lesion"]
    # --- placement in the scanner ----------------------------------------------------------
    head = np.argwhere(labels > 0)
    lo, hi = head.min(axis=0), head.max(axis=0)
    centre_vox = (lo + hi) / 2.0
    centre_mni = tpl.affine[:3, :3] @ centre_vox + tpl.affine[:3, 3]
    scale = 1.0 + float(rng.uniform(-0.06, 0.06)) + rng.uniform(-0.02, 0.02, size=3)
    angles = np.deg2rad(rng.uniform(-6.0, 6.0, size=3))
    shift = rng.uniform(-4.0, 4.0, size=3)
    forward = _rotation(angles) @ np.diag(scale)  # template mm offsets -> scanner mm
    inverse = np.linalg.inv(forward)
    mni_from_scanner = np.eye(4)
    mni_from_scanner[:3, :3] = inverse
    mni_from_scanner[:3, 3] = centre_mni - inverse @ shift
    scanner_to_template = np.linalg.inv(tpl.affine) @ mni_from_scanner
    # --- units ---------------------------------------------------------------------------
    # ~5 mCi brain FDG dose at the reference protocol; scaled after the draw so that the
    # reference site's subjects stay bit-identical whatever other sites inject
    dose_mbq = float(rng.uniform(170.0, 230.0)) * (injected_mbq / REFERENCE_INJECTED_MBQ)
    weight_kg = float(rng.uniform(55.0, 95.0))
    bq_per_ml_per_suv = dose_mbq * 1e6 / (weight_kg * 1000.0)
    params = {
        "gm_suv": round(gm_suv, 3),
        "gm_wm_ratio": round(gm_wm_ratio, 3),
        "csf_suv": round(csf_suv, 3),
        "skull_suv": round(skull_suv, 3),
        "scalp_suv": round(scalp_suv, 3),
        "mu_bone_per_mm": round(mu_bone, 5),
        "region_ratio_to_cortex": {k: round(v, 3) for k, v in region_values.items()},
        "lesions": lesion_info,
        "hypometabolism": hypo_info,
        "affine_scale": [round(float(s), 4) for s in scale],
        "affine_rotation_deg": [round(float(a), 3) for a in np.rad2deg(angles)],
        "affine_shift_mm": [round(float(s), 3) for s in shift],
    }
    return Phantom(
        activity=(suv * bq_per_ml_per_suv).astype(np.float32),
        mu=mu.astype(np.float32),
        labels=labels,
        scanner_to_template=scanner_to_template,
        suv_factor=1.0 / bq_per_ml_per_suv,
        dose_mbq=dose_mbq,
        weight_kg=weight_kg,
        params=params,
    )
