"""The radiological display plan from the affine, without Qt: a bright marker in the
patient's right-anterior-superior corner must land where a PET reader expects it (axial:
top left, anterior up and patient's right on the screen's left; coronal: top left; sagittal:
top left, head up and anterior on the left) whatever the volume's orientation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_petite.io.orientation import (
    VIEWS,
    axis_letters,
    oriented_slice,
    plan,
    position_text,
)

SHAPE = (20, 24, 28)  # z, y, x


def rotation(deg: float, axis: int) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    r = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine(linear: np.ndarray, spacing=(2.0, 1.5, 1.0)) -> np.ndarray:
    """voxel (i, j, k) -> RAS mm with columns ``linear`` scaled by the (x, y, z) spacing."""
    out = np.eye(4)
    out[:3, :3] = linear @ np.diag(spacing[::-1])
    out[:3, 3] = (-20.0, 30.0, -10.0)
    return out


AFFINES = {
    "RAS": affine(np.eye(3)),
    "LPS": affine(np.diag([-1.0, -1.0, 1.0])),  # DICOM's usual storage, read as RAS
    "LAI": affine(np.diag([-1.0, 1.0, -1.0])),  # slices stored head to foot
    "oblique": affine(rotation(25, 2) @ rotation(15, 0)),
    "coronal-stack": affine(np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])),  # k runs A->P
}


def marked(aff: np.ndarray, shape=SHAPE) -> np.ndarray:
    """A volume (z, y, x) with a bright ball in the patient's right-anterior-superior
    octant, placed from the world coordinates (independent of the code under test)."""
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ijk = np.stack([xx, yy, zz, np.ones_like(xx)], -1).reshape(-1, 4).T
    world = (aff @ ijk)[:3].T.reshape(*shape, 3)
    centre = world.reshape(-1, 3).mean(0)
    half = np.abs(world.reshape(-1, 3) - centre).max(0)
    target = centre + 0.45 * half * np.array([1.0, 1.0, 1.0])  # +R, +A, +S
    ball = np.linalg.norm(world - target, axis=-1) < 0.2 * half.min()
    assert ball.sum() > 5
    return ball.astype(np.float32) * 100 + 1


def where(image: np.ndarray) -> tuple[float, float]:
    """Centre of the bright pixels as fractions of (height, width)."""
    rows, cols = np.nonzero(image > 50)
    return rows.mean() / image.shape[0], cols.mean() / image.shape[1]


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("view", VIEWS)
def test_marker_lands_top_left_in_every_view(name, view):
    aff = AFFINES[name]
    volume = marked(aff)
    p = plan(aff, view)
    image = oriented_slice(volume, p, None)  # projection: the ball is on screen whatever
    row, col = where(image)
    assert row < 0.5 and col < 0.5, (name, view, row, col, p)
    assert p.markers["top"] == ("A" if view == "axial" else "S")
    assert p.markers["left"] == ("A" if view == "sagittal" else "R")
    assert {p.markers["top"], p.markers["bottom"]} in ({"A", "P"}, {"S", "I"})


def test_plan_names_the_sliced_axis_and_its_position():
    aff = AFFINES["RAS"]
    p = plan(aff, "axial")
    assert p.sliced == 0 and p.order == (0, 1, 2) and p.up and p.left
    assert axis_letters(aff) == ("S", "A", "R")
    assert axis_letters(AFFINES["LPS"]) == ("S", "P", "L")
    # slice k lies at z = -10 + 2 k mm (the affine's translation and slice spacing)
    assert position_text(aff, SHAPE, p, 0) == "I 10.0 mm"
    assert position_text(aff, SHAPE, p, 10) == "S 10.0 mm"
    sag = plan(aff, "sagittal")
    assert sag.sliced == 2 and sag.order == (2, 0, 1)
    assert position_text(aff, SHAPE, sag, 0) == "L 20.0 mm"  # x = -20 mm: patient's left


def test_oriented_slice_flips_only_what_the_plan_says():
    aff = AFFINES["LPS"]
    volume = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    p = plan(aff, "axial")
    assert not p.up and not p.left  # rows run toward P (down), columns toward L (right)
    np.testing.assert_array_equal(oriented_slice(volume, p, 3), volume[3])
