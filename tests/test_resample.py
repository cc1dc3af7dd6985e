"""Resampling between grids and hole filling: the two helpers every segmentation stage leans on,
checked against analytic answers and against SciPy's own functions."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from fm.core.io import resample_array
from fm.core.masks import fill_holes, fill_holes_in_slices

_COEFFICIENTS = np.array([0.7, -1.3, 2.1])


def _ramp_on(shape, affine) -> np.ndarray:
    """A linear function of RAS position, sampled at the grid's voxel centres."""
    ijk = np.indices(shape).reshape(3, -1).T
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    return (ras @ _COEFFICIENTS + 5.0).reshape(shape)


def _grid(spacing, angles_deg, origin, flip=False) -> np.ndarray:
    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    if flip:
        rotation = rotation @ np.diag([-1.0, 1.0, 1.0])
    affine[:3, :3] = rotation * np.asarray(spacing, float)
    affine[:3, 3] = origin
    return affine


_SOURCE = _grid((1.0, 1.2, 2.0), (0, 0, 0), (-30.0, -36.0, -40.0))
_SOURCE_SHAPE = (60, 60, 40)


def _between_source_centres(shape, affine, transform=np.eye(4)) -> np.ndarray:
    """Target voxels whose (mapped) point lies between the source's outermost voxel centres, where
    linear interpolation has neighbours on both sides (the half voxel beyond takes the edge value)."""
    ijk = np.indices(shape).reshape(3, -1).T
    source_ijk = np.c_[ijk, np.ones(len(ijk))] @ np.linalg.solve(_SOURCE, transform @ affine).T
    inside = ((source_ijk[:, :3] >= 0) & (source_ijk[:, :3] <= np.array(_SOURCE_SHAPE) - 1)).all(1)
    return inside.reshape(shape)


@pytest.mark.parametrize(
    "target",
    [
        _grid((2.0, 2.0, 2.0), (0, 0, 0), (-20.0, -20.0, -20.0)),  # a coarser axis-aligned grid (SimpleITK)
        _grid((1.5, 0.8, 1.1), (12, -7, 25), (-10.0, -12.0, -15.0), flip=True),  # oblique, mirrored axis (SimpleITK)
    ],
)
def test_linear_resampling_reproduces_a_ramp_at_the_target_voxels_physical_points(target):
    """Linear interpolation is exact for a linear function: wherever a target voxel lies inside the
    source, it gets the ramp's value at its own RAS position."""
    source = _ramp_on(_SOURCE_SHAPE, _SOURCE).astype(np.float32)
    shape = (16, 20, 18)
    out = resample_array(source, _SOURCE, shape, target, fill=-99.0)
    inside = _between_source_centres(shape, target)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out[inside], _ramp_on(shape, target)[inside], atol=1e-3)
    # far outside the source: the fill value
    ijk = np.indices(shape).reshape(3, -1).T
    source_ijk = np.c_[ijk, np.ones(len(ijk))] @ np.linalg.solve(_SOURCE, target).T
    beyond = ((source_ijk[:, :3] < -1) | (source_ijk[:, :3] > np.array(_SOURCE_SHAPE))).any(1).reshape(shape)
    assert (out[beyond] == -99.0).all()
    assert out.dtype == np.float32


def test_a_sheared_grid_goes_through_scipy_and_agrees():
    target = _grid((1.0, 1.0, 1.0), (0, 0, 0), (-10.0, -10.0, -10.0))
    target[0, 1] = 0.3  # columns no longer at right angles
    source = _ramp_on(_SOURCE_SHAPE, _SOURCE)
    out = resample_array(source, _SOURCE, (12, 12, 12), target, fill=-99.0)
    inside = _between_source_centres((12, 12, 12), target)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out[inside], _ramp_on((12, 12, 12), target)[inside], atol=1e-6)


def test_the_transform_samples_the_mapped_point():
    """With transform = reflection across x = 4 mm, each voxel takes the value at its mirror point."""
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    mirror[0, 3] = 8.0
    source = _ramp_on(_SOURCE_SHAPE, _SOURCE).astype(np.float32)
    target = _grid((2.0, 2.0, 2.0), (0, 0, 0), (-12.0, -14.0, -16.0))
    out = resample_array(source, _SOURCE, (12, 12, 12), target, transform=mirror, fill=-99.0)
    ijk = np.indices((12, 12, 12)).reshape(3, -1).T
    ras = ijk @ target[:3, :3].T + target[:3, 3]
    ras[:, 0] = 8.0 - ras[:, 0]
    expected = (ras @ _COEFFICIENTS + 5.0).reshape(12, 12, 12)
    assert _between_source_centres((12, 12, 12), target, mirror).all()
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_nearest_neighbour_keeps_labels_and_bool_masks():
    labels = np.zeros(_SOURCE_SHAPE, np.uint8)
    labels[10:30, 20:40, 5:25] = 3
    labels[30:50, 20:40, 5:25] = 7
    target = _grid((0.9, 1.1, 1.3), (5, 0, -8), (-20.0, -20.0, -20.0))
    out = resample_array(labels, _SOURCE, (30, 30, 30), target, order=0)
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 3, 7} and {3, 7} <= set(np.unique(out))
    mask = resample_array(labels == 3, _SOURCE, (30, 30, 30), target, order=0)
    assert mask.dtype == bool and (mask == (out == 3)).all()


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_fill_holes_fills_what_scipy_fills(connectivity):
    rng = np.random.default_rng(connectivity)
    structure = ndimage.generate_binary_structure(3, connectivity)
    for _ in range(20):
        shape = tuple(rng.integers(3, 24, 3))
        mask = ndimage.binary_opening(rng.random(shape) < rng.uniform(0.4, 0.8)) | (rng.random(shape) < 0.3)
        np.testing.assert_array_equal(fill_holes(mask, structure), ndimage.binary_fill_holes(mask, structure))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_holes_in_slices_are_filled_as_scipy_fills_each_slice(axis):
    rng = np.random.default_rng(axis)
    # a tube open at both ends along `axis`: no hole in 3D, a hole in every slice across it
    shape = [20, 20, 20]
    tube = np.zeros(shape, bool)
    index = [slice(4, 16)] * 3
    tube[tuple(index)] = True
    index[axis] = slice(None)
    inner = [slice(7, 13)] * 3
    inner[axis] = slice(None)
    tube[tuple(index)] = True
    tube[tuple(inner)] = False
    assert (fill_holes(tube) == tube).all()
    assert fill_holes_in_slices(tube, axis)[tuple(inner)].all()
    for _ in range(10):
        mask = rng.random(shape) < 0.6
        expected = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(mask, axis, 0)], axis=axis)
        np.testing.assert_array_equal(fill_holes_in_slices(mask, axis), expected)
