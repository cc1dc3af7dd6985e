"""Where in the brain a point is: a moment-based alignment of any brain mask to MNI space, and
lobe-level regions defined on MNI coordinates.

No registration software or downloadable atlas is needed: a brain's centroid and principal
axes (from its mask, in RAS mm) are matched to those of the MNI152 template's brain mask that
nilearn ships. This is accurate to a few millimetres for brains within about 30 degrees of the
scanner axes, which is enough for lobe-level regions and for finding the midline. The lobe
boundaries below are simplified planes through MNI landmarks (central sulcus, parieto-occipital
sulcus, Sylvian fissure, tentorium), not a parcellation: regions near a boundary can be off by
one lobe.
"""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from fm.core.errors import InputError
from fm.core.examples import nilearn_template


@functools.lru_cache(maxsize=1)
def mni_brain_moments() -> tuple[np.ndarray, np.ndarray]:
    """Centroid and covariance (RAS mm) of the MNI152 brain mask (T1 template > 0)."""
    img = nib.load(str(nilearn_template("t1")))
    ijk = np.argwhere(np.asarray(img.dataobj) > 0)
    points = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    return points.mean(axis=0), np.cov(points.T)


def _axes_along_ras(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes as columns matched to x, y, z (each pointing to +R, +A, +S) and their variances."""
    variances, vectors = np.linalg.eigh(covariance)
    rows, cols = linear_sum_assignment(-np.abs(vectors))  # vector `cols[i]` goes with RAS axis `rows[i]`
    axes = vectors[:, cols]
    axes = axes * np.sign(np.diag(axes))  # point each towards the positive end of its RAS axis
    return axes, variances[cols]


def align_to_mni(mask: np.ndarray, affine: np.ndarray, left_right: np.ndarray | None = None) -> np.ndarray:
    """4x4 map from the scan's RAS mm to MNI mm, from the moments of a brain mask on the scan grid.

    left_right: the brain's left-to-right unit axis in RAS, when known (e.g. from hemisphere
        labels). The brain's left-right and up-down spreads are close, so principal axes alone
        can mix them under a little scaling and rotation; given this axis, only the well separated
        antero-posterior and supero-inferior axes are left to the moments.
    Left and right are taken from the affine: a scan stored in any orientation gives the same map.
    """
    ijk = np.argwhere(mask)
    if len(ijk) < 100:
        raise InputError("brain mask has fewer than 100 voxels; cannot align it to MNI space")
    points = ijk @ affine[:3, :3].T + affine[:3, 3]
    centre, covariance = points.mean(axis=0), np.cov(points.T)
    if left_right is None:
        scan_axes, scan_var = _axes_along_ras(covariance)
    else:
        scan_axes, scan_var = _axes_given_left_right(covariance, np.asarray(left_right, float))
    mni_centre, mni_cov = mni_brain_moments()
    mni_axes, mni_var = _axes_along_ras(mni_cov)
    linear = mni_axes @ np.diag(np.sqrt(mni_var / scan_var)) @ scan_axes.T
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = mni_centre - linear @ centre
    return out


def _axes_given_left_right(covariance: np.ndarray, left_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = left_right / np.linalg.norm(left_right)
    helper = np.array([0.0, 1.0, 0.0]) - x[1] * x
    y0 = helper / np.linalg.norm(helper)
    z0 = np.cross(x, y0)
    plane = np.column_stack([y0, z0])
    variances, vectors = np.linalg.eigh(plane.T @ covariance @ plane)
    in_plane = plane @ vectors  # two principal axes orthogonal to left-right
    a_p = in_plane[:, np.argmax(np.abs(in_plane[1]))]
    a_p = a_p * np.sign(a_p[1])
    s_i = np.cross(x, a_p)
    axes = np.column_stack([x, a_p, s_i])
    return axes, np.array([axis @ covariance @ axis for axis in axes.T])


#: The region of points beyond the template brain (plus `EXTRA_AXIAL_MARGIN_MM` for the alignment's
#: error): a segmented "lesion" there is most likely not in the brain at all.
EXTRA_AXIAL = "extra-axial space"
EXTRA_AXIAL_MARGIN_MM = 6.0


@functools.lru_cache(maxsize=1)
def _mni_distance_to_brain() -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from each voxel of the MNI template grid to its brain mask, and the grid's inverse affine."""
    img = nib.load(str(nilearn_template("t1")))
    spacing = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    distance = ndimage.distance_transform_edt(np.asarray(img.dataobj) <= 0, sampling=spacing)
    return distance.astype(np.float32), np.linalg.inv(img.affine)


def outside_brain(mni: np.ndarray, margin_mm: float = EXTRA_AXIAL_MARGIN_MM) -> np.ndarray:
    """Whether MNI points (..., 3) lie more than `margin_mm` from the template's brain (or off its grid)."""
    distance, to_voxel = _mni_distance_to_brain()
    ijk = np.rint(np.asarray(mni, dtype=float) @ to_voxel[:3, :3].T + to_voxel[:3, 3]).astype(int)
    on_grid = np.all((ijk >= 0) & (ijk < distance.shape), axis=-1)
    far = np.ones(on_grid.shape, bool)
    far[on_grid] = distance[tuple(ijk[on_grid].T)] > margin_mm
    return far


def lobe(mni: np.ndarray) -> np.ndarray:
    """Lobe-level region name for MNI points (..., 3), without side; `EXTRA_AXIAL` outside the brain."""
    x, y, z = np.moveaxis(np.asarray(mni, dtype=float), -1, 0)
    ax = np.abs(x)
    central_sulcus = -18.0 - 0.35 * (z - 40.0)  # runs from about y=-7 at z=10 to y=-28 at z=70
    regions = np.full(x.shape, "parietal lobe", dtype=object)
    regions[y > central_sulcus] = "frontal lobe"
    temporal = (z < 8.0 - 0.1 * (y + 20)) & (ax > 28) & (y > -75) & (y < 25)
    regions[temporal] = "temporal lobe"
    regions[(y < -72 + 0.2 * (z - 20))] = "occipital lobe"
    regions[(ax >= 28) & (ax < 42) & (y > -25) & (y < 22) & (z > -12) & (z < 22)] = "insula"
    regions[(ax < 28) & (y > -35) & (y < 25) & (z > -12) & (z < 22)] = "deep grey matter and internal capsule"
    infratentorial = (y < -38) & (z < -18 - 0.3 * (y + 60))
    regions[infratentorial] = "cerebellum"
    regions[(ax < 14) & (y > -42) & (y < -12) & (z < -12)] = "brainstem"
    regions[outside_brain(mni)] = EXTRA_AXIAL
    return regions
