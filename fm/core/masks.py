"""Small mask helpers the input gate and the brain pipeline share."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def background_value(image: np.ndarray) -> float:
    """The most common value on the image's faces: air, or the fill value of a brain-extracted scan."""
    faces = np.concatenate([image[0].ravel(), image[-1].ravel(), image[:, 0].ravel(), image[:, -1].ravel()])
    values, counts = np.unique(faces, return_counts=True)
    return float(values[np.argmax(counts)])


def fill_holes_in_slices(mask: np.ndarray, axis: int) -> np.ndarray:
    """`mask` with the holes of each slice across `axis` filled: a hole open to the outside in 3D
    (a nasal cavity, a cavity reaching one side) is closed in the slices that cut it. One SciPy
    call, whose structuring element connects voxels within a slice only."""
    structure = ndimage.generate_binary_structure(3, 1)
    structure[tuple(slice(None) if a != axis else [0, 2] for a in range(3))] = False
    return ndimage.binary_fill_holes(mask, structure=structure)
