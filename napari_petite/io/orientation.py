"""How a volume is put on screen the way a PET reader expects it, from its affine.

Radiological convention: axial slices with anterior up and the patient's right on the
screen's left; coronal slices head up, patient's right on the left; sagittal slices head up,
anterior on the left. The array stays as read (z, y, x); a :class:`DisplayPlan` says which
array axis is sliced, which runs down the screen's rows and which across its columns, and
whether each of those runs up / to the left, so a viewer (or a report) only transposes and
flips. An oblique affine is shown along its nearest patient axes (no resampling), as
scanner consoles do.

Affines are NIfTI's: voxel (i, j, k) to RAS+ millimetres (+x toward the patient's right,
+y toward anterior, +z toward superior; DICOM's LPS is converted on reading); array axis
0, 1, 2 is voxel axis k, j, i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the views, in the order a reader lists them
VIEWS = ("axial", "coronal", "sagittal")
#: letter of the positive and the negative end of each RAS world axis
_ENDS = (("R", "L"), ("A", "P"), ("S", "I"))
#: per view: the world axis sliced, and the (world axis, sign) that points up and right on
#: screen (sign +1: toward the positive end R / A / S)
_SCREEN = {
    "axial": (2, (1, +1), (0, -1)),  # anterior up, patient's left on the right
    "coronal": (1, (2, +1), (0, -1)),  # superior up, patient's left on the right
    "sagittal": (0, (2, +1), (1, -1)),  # superior up, posterior on the right
}


@dataclass(frozen=True)
class DisplayPlan:
    """Where one view puts the array's axes on screen.

    Attributes
    ----------
    view : "axial", "coronal" or "sagittal"
    sliced : array axis whose index picks the slice
    rows : array axis shown down the screen's rows (vertical)
    cols : array axis shown across the screen's columns (horizontal)
    up : True when a larger ``rows`` index is drawn higher on screen
    left : True when a larger ``cols`` index is drawn further left
    markers : the patient direction at the top, bottom, left and right edges
    """

    view: str
    sliced: int
    rows: int
    cols: int
    up: bool
    left: bool
    markers: dict[str, str]

    @property
    def order(self) -> tuple[int, int, int]:
        """The array axes as (sliced, vertical, horizontal): napari's ``dims.order``."""
        return (self.sliced, self.rows, self.cols)


def axis_directions(affine) -> list[tuple[int, int]]:
    """For array axes 0, 1, 2 (z, y, x): (RAS world axis it runs along, +1 or -1 when its
    index grows toward that axis' positive or negative end), nearest axis for obliques."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(np.asarray(affine, dtype=np.float64))  # per voxel axis i, j, k
    return [(int(ornt[2 - a][0]), int(ornt[2 - a][1])) for a in range(3)]


def axis_letters(affine) -> tuple[str, str, str]:
    """The patient direction each array axis' index grows toward, e.g. ('S', 'A', 'R')."""
    return tuple(_ENDS[w][0 if s > 0 else 1] for w, s in axis_directions(affine))  # type: ignore[return-value]


def plan(affine, view: str) -> DisplayPlan:
    """The :class:`DisplayPlan` of ``view`` for a volume with this affine."""
    if view not in _SCREEN:
        raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
    normal, (up_axis, up_sign), (right_axis, right_sign) = _SCREEN[view]
    dirs = axis_directions(affine)
    by_world = {w: (a, s) for a, (w, s) in enumerate(dirs)}
    rows, row_sign = by_world[up_axis]
    cols, col_sign = by_world[right_axis]
    top = _ENDS[up_axis][0 if up_sign > 0 else 1]
    right = _ENDS[right_axis][0 if right_sign > 0 else 1]
    markers = {"top": top, "bottom": _opposite(top), "right": right, "left": _opposite(right)}
    return DisplayPlan(view, by_world[normal][0], rows, cols, up=row_sign == up_sign,
                       left=col_sign != right_sign, markers=markers)


def _opposite(letter: str) -> str:
    for pos, neg in _ENDS:
        if letter == pos:
            return neg
        if letter == neg:
            return pos
    raise ValueError(letter)


def oriented_slice(volume: np.ndarray, p: DisplayPlan, index: int) -> np.ndarray:
    """Slice ``index`` of a (z, y, x) volume (or its maximum projection when ``index`` is
    None) as it appears on screen: row 0 at the top, column 0 at the left."""
    image = volume.max(axis=p.sliced) if index is None else np.take(volume, index, p.sliced)
    rest = [a for a in range(3) if a != p.sliced]
    if rest.index(p.rows) != 0:
        image = image.T
    if p.up:
        image = image[::-1]
    if p.left:
        image = image[:, ::-1]
    return image


def slice_position(affine, shape, p: DisplayPlan, index: float) -> tuple[str, float]:
    """Where slice ``index`` lies along the view's normal, as the scanner's coordinates give
    it: (letter, mm), e.g. ('S', 12.0) or ('I', 40.5), at the centre of the slice."""
    centre = np.asarray([(n - 1) / 2.0 for n in shape], dtype=np.float64)
    centre[p.sliced] = float(index)
    ijk = np.append(centre[::-1], 1.0)
    world = np.asarray(affine, dtype=np.float64) @ ijk
    normal = _SCREEN[p.view][0]
    mm = float(world[normal])
    return (_ENDS[normal][0] if mm >= 0 else _ENDS[normal][1]), abs(mm)


def position_text(affine, shape, p: DisplayPlan, index: float) -> str:
    """"S 12.0 mm": the slice's position the way a PET console labels it."""
    letter, mm = slice_position(affine, shape, p, index)
    return f"{letter} {mm:.1f} mm"
