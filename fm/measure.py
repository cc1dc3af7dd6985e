"""Label map + Volume (+ probabilities) -> Findings. One code path for ground truth and for a
model's prediction, so both are measured the same way.

Volumes use the true voxel volume from the affine; centroids are RAS mm; laterality and regions
come from the brain's own midline and MNI alignment (fm.atlas), which are read through the affine,
never from array axes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

from fm import __version__, atlas
from fm.findings import (
    Findings,
    InputGeometry,
    Laterality,
    LesionFinding,
    Provenance,
    StructureFinding,
)
from fm.io import Volume
from fm.labels import LabelSet

#: right_fraction >= RIGHT -> right; <= 1 - RIGHT -> left; at least BILATERAL on each side ->
#: bilateral; anything between -> midline-crossing.
LATERALITY_RULES = {"RIGHT": 0.9, "BILATERAL": 0.25}
_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connected components, as lesions grow


def measure(
    label_map: np.ndarray,
    volume: Volume,
    label_set: LabelSet,
    *,
    probabilities: np.ndarray | None = None,
    source: str = "ground truth",
) -> Findings:
    """Measure every structure and lesion of `label_map` (on `volume`'s grid).

    probabilities: optional (max label id + 1, *volume.shape) array, channel = label id; gives
        per-finding confidence and a soft-vs-hard volume interval for lesions.
    """
    labels = np.asarray(label_map)
    if labels.shape != volume.shape:
        raise ValueError(f"label map shape {labels.shape} differs from the volume's {volume.shape}")
    if probabilities is not None and probabilities.shape[1:] != labels.shape:
        raise ValueError(f"probabilities shape {probabilities.shape} does not match the label map {labels.shape}")
    voxel_ml = abs(np.linalg.det(volume.affine[:3, :3])) / 1000.0
    on_border = _labels_on_border(labels)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(label_set.names) + 1)

    structures = [
        StructureFinding(
            name=name,
            label_id=label,
            volume_ml=float(counts[label] * voxel_ml),
            touches_border=label in on_border,
            confidence=_mean_probability(probabilities, [label], labels == label),
        )
        for label, name in label_set.structures.items()
    ]
    brain = np.isin(labels, label_set.foreground_ids)
    lesions = _lesions(labels, brain, volume, label_set, probabilities, voxel_ml) if brain.sum() >= 100 else []
    return Findings(
        geometry=InputGeometry(
            shape=volume.shape,
            spacing_mm=volume.spacing,
            orientation=volume.source.orientation,
            affine_ras=volume.affine.round(6).tolist(),
        ),
        structures=structures,
        lesions=lesions,
        provenance=Provenance(source=source, label_set=label_set.name, software_version=__version__),
    )


def _labels_on_border(labels: np.ndarray) -> set[int]:
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    return set(np.unique(np.concatenate([f.ravel() for f in faces])).tolist())


def _mean_probability(probabilities, channels: list[int], mask: np.ndarray) -> float:
    if probabilities is None or not mask.any():
        return 1.0
    return float(np.clip(probabilities[channels].sum(axis=0)[mask].mean(), 0.0, 1.0))


def _lesions(labels, brain, volume: Volume, label_set: LabelSet, probabilities, voxel_ml) -> list[LesionFinding]:
    lesion_ids = list(label_set.lesion)
    components, n = ndimage.label(np.isin(labels, lesion_ids), structure=_FULL_CONNECTIVITY)
    if n == 0:
        return []
    to_mni = atlas.align_to_mni(brain, volume.affine)
    found = []
    for component_id, box in enumerate(ndimage.find_objects(components), start=1):
        local = components[box] == component_id
        offset = np.array([s.start for s in box])
        ijk = np.argwhere(local) + offset
        ras = volume.voxel_to_ras(ijk)
        mni = ras @ to_mni[:3, :3].T + to_mni[:3, 3]
        right_fraction = float(np.mean(mni[:, 0] > 0))
        lobes, votes = np.unique(atlas.lobe(mni), return_counts=True)
        longest, short = _diameters_mm(ras, volume.affine)
        local_labels = labels[box][local]
        mask = None
        if probabilities is not None:
            mask = np.zeros(labels.shape, dtype=bool)
            mask[box] = local
        found.append(
            dict(
                component_id=component_id,
                label_ids=sorted(int(v) for v in np.unique(local_labels)),
                volume_ml=float(len(ijk) * voxel_ml),
                subregion_volumes_ml={
                    name: float(np.isin(local_labels, ids).sum() * voxel_ml) for name, ids in label_set.nested.items()
                },
                centroid_ras_mm=tuple(float(v) for v in ras.mean(axis=0)),
                laterality=_laterality(right_fraction),
                right_fraction=right_fraction,
                region=str(lobes[np.argmax(votes)]),
                longest_diameter_mm=longest,
                short_axis_mm=short,
                touches_border=bool(np.any(offset == 0) or np.any(np.array([s.stop for s in box]) == labels.shape)),
                confidence=_mean_probability(probabilities, lesion_ids, mask),
                volume_interval_ml=_volume_interval(probabilities, lesion_ids, mask, voxel_ml),
            )
        )
    found.sort(key=lambda f: -f["volume_ml"])
    return [LesionFinding(lesion_id=i, **f) for i, f in enumerate(found, start=1)]


def _laterality(right_fraction: float) -> Laterality:
    if right_fraction >= LATERALITY_RULES["RIGHT"]:
        return Laterality.right
    if right_fraction <= 1 - LATERALITY_RULES["RIGHT"]:
        return Laterality.left
    if min(right_fraction, 1 - right_fraction) >= LATERALITY_RULES["BILATERAL"]:
        return Laterality.bilateral
    return Laterality.midline_crossing


def _volume_interval(probabilities, channels, mask, voxel_ml):
    """Hard-mask volume vs probability-weighted volume over the lesion and a one-voxel margin."""
    if probabilities is None:
        return None
    hard = float(mask.sum() * voxel_ml)
    near = ndimage.binary_dilation(mask, structure=_FULL_CONNECTIVITY)
    soft = float(probabilities[channels].sum(axis=0)[near].sum() * voxel_ml)
    return (min(hard, soft), max(hard, soft))


def _diameters_mm(ras: np.ndarray, affine: np.ndarray) -> tuple[float, float]:
    """Longest diameter and the longest extent perpendicular to it, edge to edge, in mm.

    Distances between voxel centres on the convex hull, plus the mean chord of one voxel along the
    measured direction: the centres of a sampled object fall short of its edges by that much on
    average (one voxel along an axis, 0.58 voxel along a cube's diagonal).
    """
    edges = affine[:3, :3]
    longest_dir, longest = _farthest_pair(ras)
    long_mm = longest + _voxel_width(edges, longest_dir)
    projected = ras - np.outer(ras @ longest_dir, longest_dir)
    short_dir, short = _farthest_pair(projected)
    short_mm = short + _voxel_width(edges, short_dir) if short > 0 else _voxel_width(edges, _orthogonal(longest_dir))
    return float(long_mm), float(short_mm)


def _farthest_pair(points: np.ndarray) -> tuple[np.ndarray, float]:
    points = np.unique(points.round(4), axis=0)
    if len(points) == 1:
        return np.array([1.0, 0.0, 0.0]), 0.0
    candidates = points
    if len(points) > 4:
        try:
            candidates = points[ConvexHull(points, qhull_options="QJ").vertices]
        except QhullError:
            candidates = points
    best, pair = -1.0, (0, 0)
    for start in range(0, len(candidates), 512):  # chunked: hull vertices can number thousands
        d = cdist(candidates[start : start + 512], candidates)
        i, j = np.unravel_index(np.argmax(d), d.shape)
        if d[i, j] > best:
            best, pair = float(d[i, j]), (start + i, j)
    if best <= 0:
        return np.array([1.0, 0.0, 0.0]), 0.0
    return (candidates[pair[0]] - candidates[pair[1]]) / best, best


def _voxel_width(edges: np.ndarray, direction: np.ndarray) -> float:
    """Mean chord along a unit direction of one voxel (a parallelepiped with these edge vectors):
    its volume over the area of its shadow on the plane perpendicular to the direction."""
    a, b, c = edges.T
    shadow = sum(abs(direction @ np.cross(p, q)) for p, q in ((b, c), (c, a), (a, b)))
    return float(abs(np.linalg.det(edges)) / shadow)


def _orthogonal(direction: np.ndarray) -> np.ndarray:
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    v = np.cross(direction, helper)
    return v / np.linalg.norm(v)
