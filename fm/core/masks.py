"""Small mask helpers the input gate and the brain pipeline share."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def background_value(image: np.ndarray) -> float:
    """The most common value on the image's faces: air, or the fill value of a brain-extracted scan."""
    faces = np.concatenate([image[0].ravel(), image[-1].ravel(), image[:, 0].ravel(), image[:, -1].ravel()])
    values, counts = np.unique(faces, return_counts=True)
    return float(values[np.argmax(counts)])


def fill_holes(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """`mask` with its holes filled: what scipy.ndimage.binary_fill_holes gives, by one labelling of
    the background instead of a dilation repeated until it stops (two to three times faster on a 1 mm head).
    A hole is a background piece (connected through `structure`, faces by default) that does not
    reach the array's edge along an axis the structure connects across."""
    mask = np.asarray(mask, bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1) if structure is None else np.asarray(structure, bool)
    pieces, _ = ndimage.label(~mask, structure=structure)
    centre = tuple(n // 2 for n in structure.shape)
    edge_labels = []
    for axis in range(mask.ndim):
        reach = np.delete(structure, centre[axis], axis=axis)  # offsets that step along this axis
        if reach.any():
            edge_labels += [np.take(pieces, 0, axis=axis).ravel(), np.take(pieces, -1, axis=axis).ravel()]
    outside = np.zeros(pieces.max() + 1, bool)
    outside[np.concatenate(edge_labels) if edge_labels else []] = True
    return mask | ~outside[pieces]


def fill_holes_in_slices(mask: np.ndarray, axis: int) -> np.ndarray:
    """`mask` with the holes of each slice across `axis` filled: a hole open to the outside in 3D
    (a nasal cavity, a cavity reaching one side) is closed in the slices that cut it. One call,
    whose structuring element connects voxels within a slice only."""
    structure = ndimage.generate_binary_structure(3, 1)
    structure[tuple(slice(None) if a != axis else [0, 2] for a in range(3))] = False
    return fill_holes(mask, structure=structure)
