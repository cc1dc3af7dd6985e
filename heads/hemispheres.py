"""Left and right from the scan's affine: the default segmenter predicts grey and white matter
without sides (BRAIN_TISSUE); each such voxel is then given the side of the brain's mid-sagittal
plane it lies on, which gives BRAIN_TUMOUR labels and probabilities.

The plane is found by symmetry: among planes near the scanner's sagittal plane (tilted up to
MAX_TILT_DEG about the vertical and the antero-posterior axes, shifted up to MAX_SHIFT_MM from the
brain's centroid), the one across which the brain best matches its mirror image (its outline, and
its brightest and darkest thirds). All in RAS millimetres: the patient's
right is the affine's +x side.
"""

from __future__ import annotations

import numpy as np

from fm.core.io import Volume
from fm.core.labels import BRAIN_TISSUE, BRAIN_TISSUE_SIDES, BRAIN_TUMOUR
from fm.core.midline import Midline
from heads.result import Segmentation

# BRAIN_TISSUE id -> BRAIN_TUMOUR id on the patient's (left, right)
_MIN_BRAIN_VOXELS = 100


MAX_TILT_DEG = 16.0
MAX_SHIFT_MM = 8.0
_CELL_MM = 2.0  # occupancy grid for the symmetry score
_POINTS = 15000  # voxels sampled per class for the score


def midsagittal_plane(tissue: np.ndarray, volume: Volume, seed: int = 0) -> Midline:
    """The brain's plane of symmetry (RAS mm), its normal towards the patient's right."""
    rng = np.random.default_rng(seed)
    brain = tissue > 0
    # The brain's outline, and its brightest and darkest thirds in the image itself: inner structure
    # that does not depend on how well the network told grey from white matter.
    low, high = np.percentile(volume.array[brain], [33, 67]) if brain.any() else (0.0, 0.0)
    classes = [brain, brain & (volume.array > high), brain & (volume.array < low)]
    points = []
    for mask in classes:
        ijk = np.argwhere(mask)
        if len(ijk) > _POINTS:
            ijk = ijk[rng.choice(len(ijk), _POINTS, replace=False)]
        points.append(volume.voxel_to_ras(ijk))
    centre = points[0].mean(axis=0)
    grids = [_occupancy(p, centre) for p in points]

    def score(yaw, roll, shift):
        normal = _normal(yaw, roll)
        return sum(_mirror_hits(p, grid, centre + shift * normal, normal) for p, grid in zip(points, grids))

    # coarse to fine: tilt on a 4 degree grid, then the shift, then tilt again at 1 and 0.5 degrees
    yaw, roll = max(
        ((y, r) for y in _steps(MAX_TILT_DEG, 4.0) for r in _steps(MAX_TILT_DEG, 4.0)), key=lambda c: score(*c, 0.0)
    )
    shift = max(_steps(MAX_SHIFT_MM, 1.0), key=lambda d: score(yaw, roll, d))
    for span, step in ((3.0, 1.0), (0.5, 0.5)):
        yaw, roll = max(
            ((yaw + y, roll + r) for y in _steps(span, step) for r in _steps(span, step)),
            key=lambda c: score(*c, shift),
        )
    normal = _normal(yaw, roll)
    return Midline.through(centre + shift * normal, normal)


def _steps(limit: float, step: float) -> np.ndarray:
    return np.arange(-limit, limit + step / 2, step)


def _normal(yaw_deg: float, roll_deg: float) -> np.ndarray:
    """RAS +x tilted by yaw (about the S axis) and roll (about the A axis)."""
    yaw, roll = np.radians(yaw_deg), np.radians(roll_deg)
    return np.array([np.cos(yaw) * np.cos(roll), np.sin(yaw), np.cos(yaw) * np.sin(roll)])


def _occupancy(points: np.ndarray, centre: np.ndarray) -> dict:
    cells = np.floor((points - centre) / _CELL_MM).astype(np.int64)
    lo = cells.min(axis=0) - 1
    shape = cells.max(axis=0) - lo + 2
    grid = np.zeros(shape, dtype=bool)
    grid[tuple((cells - lo).T)] = True
    return {"grid": grid, "lo": lo, "origin": centre}


def _mirror_hits(points: np.ndarray, occupancy: dict, point: np.ndarray, normal: np.ndarray) -> float:
    """Fraction of points whose mirror image across the plane lands on an occupied cell."""
    mirrored = points - 2 * ((points - point) @ normal)[:, None] * normal
    cells = np.floor((mirrored - occupancy["origin"]) / _CELL_MM).astype(np.int64) - occupancy["lo"]
    grid = occupancy["grid"]
    inside = np.all((cells >= 0) & (cells < grid.shape), axis=1)
    return float(grid[tuple(cells[inside].T)].sum()) / len(points)


def right_of_midline(tissue: np.ndarray, volume: Volume) -> np.ndarray:
    """Boolean map: voxels on the patient's right of the brain's mid-sagittal plane."""
    return midsagittal_plane(tissue, volume).right_of(volume.affine, volume.shape)


def split_hemispheres(segmentation: Segmentation, volume: Volume, right: np.ndarray | None = None) -> Segmentation:
    """BRAIN_TISSUE -> BRAIN_TUMOUR: grey and white matter get the side of `right` (a boolean map of
    the patient's right), by default found from the brain's symmetry."""
    if segmentation.label_set.name != BRAIN_TISSUE.name:
        raise ValueError(f"expected {BRAIN_TISSUE.name} labels, got {segmentation.label_set.name}")
    labels, probabilities = segmentation.labels, segmentation.probabilities
    if right is None:  # with no brain to split, everything is called left, and there is none
        enough = (labels > 0).sum() >= _MIN_BRAIN_VOXELS
        right = right_of_midline(labels, volume) if enough else np.zeros(labels.shape, dtype=bool)
    out_labels = np.zeros_like(labels)
    out_probabilities = np.zeros((max(BRAIN_TUMOUR.names) + 1, *labels.shape), dtype=np.float32)
    for tissue, (left_id, right_id) in BRAIN_TISSUE_SIDES.items():
        out_labels[labels == tissue] = left_id
        if left_id == right_id:
            out_probabilities[left_id] += probabilities[tissue]
            continue
        out_labels[(labels == tissue) & right] = right_id
        out_probabilities[left_id] = np.where(right, 0.0, probabilities[tissue])
        out_probabilities[right_id] = np.where(right, probabilities[tissue], 0.0)
    return Segmentation(out_labels, out_probabilities, BRAIN_TUMOUR)
