"""Multi-scanner dataset discovery and validation (layout in the README).

``<root>/<scanner-id>/<subject-id>/`` holds ``low.nii.gz`` and ``full.nii.gz`` (same shape and
affine; a DICOM series folder ``low/`` or ``full/`` may stand for either), optionally
``truth.nii.gz``, ``labels.nii.gz``, ``lesions.nii.gz`` and ``meta.json``;
``<root>/<scanner-id>/scanner.json`` describes the scanner. Validation reads headers only, so a
large dataset is checked in seconds, and it collects *every* problem before reporting, so a
user fixes a folder in one pass instead of one error at a time.

A clinician's folder is rarely tidy: by default (``strict=False``) a subject with a problem
is left out and listed (``Dataset.problems``), the others are used; folders this tool wrote
(an adapter bundle saved inside the dataset, an export) are not mistaken for scanners or
subjects, and empty folders are noted, not fatal. ``strict=True`` refuses the dataset when
anything is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_petite.errors import DatasetError

REQUIRED = ("low", "full")
OPTIONAL = ("truth", "labels", "lesions")
#: affines closer than this (mm, element-wise) count as the same grid
AFFINE_TOL = 1e-4
#: problems listed in one message before the rest are counted
MAX_LISTED = 40


@dataclass
class Subject:
    """One subject of one scanner: paths to its volumes and its metadata."""

    scanner: str
    id: str
    path: Path
    files: dict[str, Path]
    meta: dict = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, float, float] | None = None

    @property
    def low(self) -> Path:
        return self.files["low"]

    @property
    def full(self) -> Path:
        return self.files["full"]

    @property
    def truth(self) -> Path | None:
        return self.files.get("truth")

    @property
    def labels(self) -> Path | None:
        return self.files.get("labels")

    @property
    def lesions(self) -> Path | None:
        """Per-lesion instance labels of a lesion-insertion subject (0 none, k lesion k)."""
        return self.files.get("lesions")


@dataclass
class Scanner:
    """One scanner (site) of the dataset and its subjects, sorted by id."""

    id: str
    path: Path
    profile: dict
    subjects: list[Subject]

    def subject(self, subject_id: str) -> Subject:
        for s in self.subjects:
            if s.id == subject_id:
                return s
        raise DatasetError(
            f"Scanner {self.id!r} has no subject {subject_id!r}; it has: "
            f"{', '.join(s.id for s in self.subjects) or 'none'}."
        )


@dataclass
class Dataset:
    """A validated dataset: scanners by id, plus the problems found (empty when valid).

    ``problems`` lists everything wrong (subjects left out); ``scoped`` says which scanner
    each concerns (None: the dataset as a whole); ``notes`` are folders passed over that are
    not errors (empty, or outputs of this tool).
    """

    root: Path
    scanners: dict[str, Scanner]
    problems: list[str] = field(default_factory=list)
    scoped: dict[str | None, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def problems_of(self, scanner_id: str) -> list[str]:
        """The problems of one scanner's folder (its subjects left out) and the dataset's."""
        return self.scoped.get(scanner_id, []) + self.scoped.get(None, [])

    def scanner(self, scanner_id: str) -> Scanner:
        if scanner_id not in self.scanners and self.scoped.get(scanner_id):
            raise DatasetError(format_problems(
                self.root / scanner_id, self.scoped[scanner_id],
                f"Scanner {scanner_id!r} has no usable subject"))
        try:
            return self.scanners[scanner_id]
        except KeyError:
            raise DatasetError(
                f"Unknown scanner {scanner_id!r} in {self.root}; available: "
                f"{', '.join(sorted(self.scanners)) or 'none'}."
            ) from None

    def summary(self) -> dict:
        """JSON-able overview (for ``petite info --json`` and the napari dock)."""
        return {
            "root": str(self.root),
            "scanners": {
                sid: {
                    "subjects": [s.id for s in sc.subjects],
                    "name": sc.profile.get("name", sid),
                    "shape": list(sc.subjects[0].shape) if sc.subjects and sc.subjects[0].shape
                    else None,
                    "spacing_mm": list(sc.subjects[0].spacing)
                    if sc.subjects and sc.subjects[0].spacing else None,
                }
                for sid, sc in self.scanners.items()
            },
            "problems": list(self.problems),
        }


def _find_volume(folder: Path, stem: str) -> Path | None:
    """``<stem>.nii.gz`` / ``<stem>.nii`` / ``<stem>.v`` (ECAT 7), or a DICOM series folder
    named ``<stem>``."""
    for suffix in (".nii.gz", ".nii", ".v"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    candidate = folder / stem
    if candidate.is_dir():
        from napari_petite.io.dicom import is_dicom_path

        if is_dicom_path(candidate):
            return candidate
    return None


def looks_like_dataset(root: str | os.PathLike) -> bool:
    """A folder of scanner folders of subject folders with a low-count volume (cheap)."""
    root = Path(root)
    return root.is_dir() and any(
        _find_volume(sub, "low") for scanner in root.iterdir() if scanner.is_dir()
        for sub in scanner.iterdir() if sub.is_dir())


def _read_json(path: Path, problems: list[str], what: str) -> dict:
    from napari_petite.io.jsonfile import read_json

    try:
        return read_json(path, what=f"{path}: {what}", error=DatasetError)
    except DatasetError as err:
        problems.append(str(err))
        return {}


def _header_geometry(path: Path, problems: list[str]):
    """(shape x, y, z; affine) from the headers alone, or None after recording the problem."""
    from napari_petite.errors import PetiteError
    from napari_petite.io.volumes import geometry

    try:
        shape_zyx, affine = geometry(path)
    except PetiteError as err:
        problems.append(f"{path}: {err}")
        return None
    except Exception as err:  # nibabel raises many types for broken files
        problems.append(f"{path}: not a readable NIfTI ({type(err).__name__}: {err}).")
        return None
    return tuple(reversed(shape_zyx)), affine


def _is_hidden(path: Path) -> bool:
    return path.name.startswith((".", "_"))


def _passed_over(folder: Path, notes: list[str]) -> bool:
    """Folders that are not part of the dataset: this tool's outputs and empty folders."""
    from napari_petite.io.atomic import DATA_KINDS, output_kind

    kind = output_kind(folder)
    if kind is not None and kind not in DATA_KINDS:
        notes.append(f"{folder}: a {kind} written by napari-petite, not data; passed over.")
        return True
    try:
        empty = not any(folder.iterdir())
    except OSError:
        return False
    if empty:
        notes.append(f"{folder}: empty folder; passed over.")
    return empty


def _inside(path: Path, root: Path, problems: list[str]) -> bool:
    """True when ``path`` (after following symlinks) lies inside the dataset folder.

    A dataset is read from one folder; a symlinked file or folder pointing elsewhere (e.g. in
    an archive from someone else) is not followed, so nothing outside the folder is read.
    """
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        problems.append(f"{path}: points outside the dataset folder {root}; copy the file "
                        "into the dataset instead of linking to it.")
        return False
    return True


def _check_subject(subject: Subject, problems: list[str]) -> None:
    geometry = {}
    for kind, path in subject.files.items():
        geo = _header_geometry(path, problems)
        if geo is not None:
            geometry[kind] = geo
    if "low" not in geometry or "full" not in geometry:
        return
    ref_shape, ref_affine = geometry["full"]
    zooms = np.linalg.norm(ref_affine[:3, :3], axis=0)
    subject.shape = tuple(reversed(ref_shape))
    subject.spacing = tuple(float(z) for z in zooms[::-1])
    for kind, (shape, affine) in geometry.items():
        if kind == "full":
            continue
        if shape != ref_shape:
            problems.append(
                f"{subject.path}: {kind} has shape {shape} but full has {ref_shape}; "
                f"{kind} must be on the same voxel grid as full."
            )
        elif not np.allclose(affine, ref_affine, atol=AFFINE_TOL, rtol=0):
            worst = float(np.abs(affine - ref_affine).max())
            problems.append(
                f"{subject.path}: {kind} and full have different affines (largest difference "
                f"{worst:.4g} mm); they must be on the same voxel grid."
            )


def discover(root: str | os.PathLike, *, strict: bool = False) -> Dataset:
    """Find and validate every scanner and subject below ``root``.

    Parameters
    ----------
    root : the dataset folder
    strict : raise :class:`DatasetError` listing all problems when any is found; by default
        the problems are returned in ``Dataset.problems`` and only the subjects without
        problems are listed (front ends say which were left out). A dataset with no usable
        subject at all is refused either way.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"The dataset folder {root} does not exist; check the path or "
                           "create one with `petite make-sample-data --out DIR`.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file; a dataset is a folder of scanner folders.")
    problems: list[str] = []
    scoped: dict[str | None, list[str]] = {}
    notes: list[str] = []
    scanners: dict[str, Scanner] = {}
    real_root = root.resolve()
    scanner_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)
                          and not _passed_over(p, notes))
    for sdir in scanner_dirs:
        n_scanner = len(problems)
        if not _inside(sdir, real_root, problems):
            scoped.setdefault(None, []).extend(problems[n_scanner:])
            continue
        profile_path = sdir / "scanner.json"
        profile = _read_json(profile_path, problems, "scanner.json") \
            if profile_path.exists() and _inside(profile_path, real_root, problems) else {}
        subjects: list[Subject] = []
        for subdir in sorted(p for p in sdir.iterdir() if p.is_dir() and not _is_hidden(p)
                             and not _passed_over(p, notes)):
            n_before = len(problems)
            if not _inside(subdir, real_root, problems):
                continue
            files = {k: f for k in REQUIRED + OPTIONAL if (f := _find_volume(subdir, k))
                     and _inside(f, real_root, problems)}
            missing = [f"{k}.nii.gz" for k in REQUIRED if k not in files]
            if missing:
                problems.append(f"{subdir}: missing {' and '.join(missing)} (every subject "
                                "needs low.nii.gz and full.nii.gz).")
            meta_path = subdir / "meta.json"
            meta = _read_json(meta_path, problems, "meta.json") \
                if meta_path.exists() and _inside(meta_path, real_root, problems) else {}
            subject = Subject(scanner=sdir.name, id=subdir.name, path=subdir, files=files,
                              meta=meta)
            _check_subject(subject, problems)
            if len(problems) == n_before:
                subjects.append(subject)
        if subjects:
            scanners[sdir.name] = Scanner(id=sdir.name, path=sdir, profile=profile,
                                          subjects=subjects)
        elif len(problems) == n_scanner:
            problems.append(f"{sdir}: no subject folders with low.nii.gz and full.nii.gz.")
        scoped.setdefault(sdir.name, []).extend(problems[n_scanner:])
    if not scanners:
        message = (f"{root} holds no scanner folders with usable subjects; expected "
                   "<root>/<scanner-id>/<subject-id>/{low,full}.nii.gz.")
        problems.append(message)
        scoped.setdefault(None, []).append(message)
    dataset = Dataset(root=root, scanners=scanners, problems=problems, scoped=scoped,
                      notes=notes)
    if (strict and problems) or not scanners:
        raise DatasetError(format_problems(root, problems))
    return dataset


def format_problems(root: Path, problems: list[str], head: str | None = None) -> str:
    """One message listing every problem, so the user can fix all of them at once."""
    plural = "s" if len(problems) > 1 else ""
    head = (f"{head}; {len(problems)} problem{plural}:" if head
            else f"The dataset {root} has {len(problems)} problem{plural}:")
    shown = [f"  - {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        shown.append(f"  ... and {len(problems) - MAX_LISTED} more of the same kinds.")
    return "\n".join([head, *shown])
