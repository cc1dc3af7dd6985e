"""The brain's mid-sagittal plane, however it was found, and which side of it is the patient's right.

A plane is held as a linear function of RAS millimetres, `weights . ras + offset`, positive on the
patient's right; the affine alone decides that side (RAS +x), never an array axis. Three things
find one: the registered symmetric template's x = 0 (`Midline.of_template`, the default
segmenter), the brain's plane of symmetry (heads.hemispheres, for networks that predict tissue
without sides), and the plane between the two hemispheres' centroids of a segmentation that has
sides (`Midline.between`, which fm.core.measure uses for a lesion's side).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Midline:
    weights: np.ndarray  # (3,): the plane's normal towards the patient's right, unit length or not
    offset: float

    @classmethod
    def through(cls, point: np.ndarray, normal_to_right: np.ndarray) -> Midline:
        """The plane through `point` (RAS mm) with this normal, which points to the patient's right."""
        return cls(np.asarray(normal_to_right, float), -float(np.asarray(normal_to_right) @ point))

    @classmethod
    def of_template(cls, scan_to_mni: np.ndarray) -> Midline:
        """x = 0 of a symmetric template (MNI152), for a scan registered to it: `scan_to_mni` maps the
        scan's RAS mm to MNI mm, and MNI +x is the patient's right."""
        return cls(scan_to_mni[0, :3], float(scan_to_mni[0, 3]))

    @classmethod
    def between(cls, left_centroid: np.ndarray, right_centroid: np.ndarray) -> Midline:
        """The plane halfway between two hemispheres' centroids (RAS mm), perpendicular to the line
        joining them. The labels only say where the plane lies; the normal is turned to RAS +x."""
        normal = (right_centroid - left_centroid) / np.linalg.norm(right_centroid - left_centroid)
        return cls.through((left_centroid + right_centroid) / 2, normal * (1.0 if normal[0] >= 0 else -1.0))

    @property
    def normal(self) -> np.ndarray:
        """Unit normal towards the patient's right."""
        return self.weights / np.linalg.norm(self.weights)

    def is_right(self, ras: np.ndarray) -> np.ndarray:
        """For points (N, 3) in RAS mm: on the patient's right of the plane."""
        return ras @ self.weights + self.offset > 0

    def right_of(self, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        """Boolean map of a grid (voxel -> RAS `affine`, `shape`): voxels on the patient's right."""
        # the signed distance is linear in the voxel indices: a * i + b * j + c * k + d
        a, b, c, d = self.weights @ affine[:3] + np.array([0.0, 0.0, 0.0, self.offset])
        i, j, k = (np.arange(n, dtype=np.float32) for n in shape)
        return (a * i[:, None, None] + b * j[None, :, None] + c * k[None, None, :] + d) > 0
