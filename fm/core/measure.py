"""Label map + Volume (+ probabilities) -> Findings. One code path for ground truth and for a
model's prediction, so both are measured the same way.

Volumes use the true voxel volume from the affine; centroids are RAS mm. Laterality is measured
against the brain's own mid-sagittal plane: between the left- and right-hemisphere labels when
the label set has them (the plane's right side is the affine's +x side), else x = 0 after the
moment alignment to MNI. Regions come from that alignment (fm.core.regions). Nothing is read from array
axes.

A lesion is a connected group of lesion voxels; pieces at most two voxels apart (a lesion cut by
thick slices) are one lesion, and groups smaller than `min_lesion_ml` are not reported.

A structure or lesion is incomplete when the field of view cuts it: it has voxels on the outermost
layer of the scan's own grid where the scan shows something (not the fill of a padded or
brain-extracted scan). A cut structure gets no volume (the part outside was never imaged); a cut
lesion keeps its volume, flagged, as a lower bound.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

from fm.core.errors import InputError
from fm.core.findings import (
    Findings,
    InputGeometry,
    Laterality,
    LesionFinding,
    Provenance,
    StructureFinding,
)
from fm.core.io import Volume
from fm.core.labels import LabelSet
from fm.core.midline import Midline
from fm.core.regions import align_to_mni, lobe
from fm.core.version import __version__

#: right_fraction >= RIGHT -> right; <= 1 - RIGHT -> left; at least BILATERAL on each side ->
#: bilateral; anything between -> midline-crossing.
LATERALITY_RULES = {"RIGHT": 0.9, "BILATERAL": 0.25}
_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connected components, as lesions grow
#: Lesions below this volume are not reported (specks of a segmentation, slivers of resampling).
MIN_LESION_ML = 0.1
#: A detached piece of a structure smaller than this on the image's edge is a speck of the
#: segmentation, not the structure cut by the field of view: it does not make the structure incomplete.
MIN_EDGE_PIECE_ML = 0.1


def measure(
    label_map: np.ndarray,
    volume: Volume,
    label_set: LabelSet,
    *,
    probabilities: np.ndarray | None = None,
    source: str = "ground truth",
    min_lesion_ml: float = MIN_LESION_ML,
    reported_regions: tuple[str, ...] | None = None,
) -> Findings:
    """Measure every structure and lesion of `label_map` (on `volume`'s grid).

    probabilities: optional (max label id + 1, *volume.shape) array, channel = label id; gives
        per-finding confidence and a soft-vs-hard volume interval for lesions.
    reported_regions: the nested lesion regions that were assessed (default: all of the label
        set's); e.g. only the whole tumour when no contrast-enhanced scan showed enhancement.
    """
    labels = np.asarray(label_map)
    if labels.shape != volume.shape:
        raise InputError(f"label map shape {labels.shape} differs from the volume's {volume.shape}")
    if probabilities is not None and probabilities.shape[1:] != labels.shape:
        raise InputError(f"probabilities shape {probabilities.shape} does not match the label map {labels.shape}")
    voxel_ml = abs(np.linalg.det(volume.affine[:3, :3])) / 1000.0
    edge = _edge_of_view(volume.array)
    cut = _structures_cut_by_the_edge(labels, edge, tuple(label_set.structures), voxel_ml)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(label_set.names) + 1)

    structures = [
        StructureFinding(
            name=name,
            label_id=label,
            volume_ml=None if label in cut else float(counts[label] * voxel_ml),
            touches_border=label in cut,
            confidence=_structure_confidence(probabilities, label, labels),
        )
        for label, name in label_set.structures.items()
    ]
    brain = np.isin(labels, label_set.foreground_ids)
    lesions = []
    if brain.sum() >= 100:
        regions = label_set.nested if reported_regions is None else {r: label_set.nested[r] for r in reported_regions}
        lesions = _lesions(labels, brain, volume, label_set, regions, probabilities, voxel_ml, min_lesion_ml, edge)
    source_affine = volume.source.affine
    return Findings(
        geometry=InputGeometry(
            shape=volume.to_source_layout().shape,
            spacing_mm=tuple(float(v) for v in np.linalg.norm(source_affine[:3, :3], axis=0)),
            orientation=volume.source.orientation,
            affine_ras=source_affine.round(6).tolist(),
        ),
        structures=structures,
        lesions=lesions,
        provenance=Provenance(source=source, label_set=label_set.name, software_version=__version__),
    )


def _edge_of_view(image: np.ndarray) -> np.ndarray:
    """Mask of the image's outermost layer of voxels where the scan shows something: voxels at the
    fill value that pads an image or surrounds a brain-extracted one (the commonest value on that
    layer) are left out, so a segmentation that reaches only that fill is not cut by the field of view."""
    layer = np.ones(image.shape, dtype=bool)
    layer[1:-1, 1:-1, 1:-1] = False
    values, counts = np.unique(image[layer], return_counts=True)
    return layer & (image != values[np.argmax(counts)])


def _structures_cut_by_the_edge(labels: np.ndarray, edge: np.ndarray, structure_ids, voxel_ml: float) -> set[int]:
    """Structure ids with a piece (26-connected) of at least MIN_EDGE_PIECE_ML on `edge`."""
    cut = set()
    for label in set(np.unique(labels[edge]).tolist()) & set(structure_ids):
        pieces, _ = ndimage.label(labels == label, structure=_FULL_CONNECTIVITY)
        piece_ml = np.bincount(pieces.ravel()) * voxel_ml
        if np.any(piece_ml[np.unique(pieces[edge & (pieces > 0)])] >= MIN_EDGE_PIECE_ML):
            cut.add(label)
    return cut


def _structure_confidence(probabilities, label: int, labels: np.ndarray) -> float | None:
    """Mean probability over the structure's voxels; None for a structure that was not found (there
    is nothing to be confident about, and 1.0 would read as a confident finding)."""
    inside = labels == label
    if not inside.any():
        return None
    if probabilities is None:
        return 1.0
    return float(np.clip(probabilities[label][inside].mean(), 0.0, 1.0))


def _midline(labels, volume: Volume, label_set: LabelSet) -> Midline | None:
    """The plane between the segmentation's hemispheres, when it has sides."""
    if not (label_set.left and label_set.right):
        return None
    centroids = []
    for side in (label_set.left, label_set.right):
        ijk = np.argwhere(np.isin(labels, side))
        if len(ijk) < 100:
            return None
        centroids.append(volume.voxel_to_ras(ijk.mean(axis=0)))
    return Midline.between(*centroids)


def lesion_components(labels: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """The lesions' connected components: LesionFinding.component_id at each lesion voxel, else 0."""
    return grouped_lesions(np.isin(labels, list(label_set.lesion)))


def grouped_lesions(lesion_mask: np.ndarray) -> np.ndarray:
    """What this package calls one lesion, as a component id at each voxel of `lesion_mask` (0 elsewhere):
    pieces at most two voxels apart are one lesion (a rim of oedema broken by a sliver of tissue)."""
    groups, _ = ndimage.label(
        ndimage.binary_dilation(lesion_mask, structure=_FULL_CONNECTIVITY), structure=_FULL_CONNECTIVITY
    )
    return np.where(lesion_mask, groups, 0)


def _lesions(
    labels, brain, volume: Volume, label_set: LabelSet, regions, probabilities, voxel_ml, min_ml, edge
) -> list[LesionFinding]:
    lesion_ids = list(label_set.lesion)
    components = lesion_components(labels, label_set)
    if not components.any():
        return []
    on_edge = set(np.unique(components[edge]).tolist())
    midline = _midline(labels, volume, label_set)
    to_mni = align_to_mni(brain, volume.affine, left_right=None if midline is None else midline.normal)
    lesion_probability = probabilities[lesion_ids].sum(axis=0) if probabilities is not None else None
    found = []
    for component_id, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        local = components[box] == component_id
        if local.sum() * voxel_ml < min_ml:
            continue
        offset = np.array([s.start for s in box])
        ijk = np.argwhere(local) + offset
        ras = volume.voxel_to_ras(ijk)
        mni = ras @ to_mni[:3, :3].T + to_mni[:3, 3]
        if midline is None:
            right_fraction = float(np.mean(mni[:, 0] > 0))
        else:
            right_fraction = float(np.mean(midline.is_right(ras)))
        lobes, votes = np.unique(lobe(mni), return_counts=True)
        longest, short = _diameters_mm(ras, volume.affine)
        local_labels = labels[box][local]
        confidence, interval = 1.0, None
        if lesion_probability is not None:
            confidence, interval = _lesion_probability_stats(
                lesion_probability, components, component_id, box, voxel_ml
            )
        found.append(
            dict(
                component_id=component_id,
                label_ids=sorted(int(v) for v in np.unique(local_labels)),
                volume_ml=float(len(ijk) * voxel_ml),
                subregion_volumes_ml={
                    name: float(np.isin(local_labels, ids).sum() * voxel_ml) for name, ids in regions.items()
                },
                centroid_ras_mm=tuple(float(v) for v in ras.mean(axis=0)),
                laterality=_laterality(right_fraction),
                right_fraction=right_fraction,
                region=str(lobes[np.argmax(votes)]),
                longest_diameter_mm=longest,
                short_axis_mm=short,
                touches_border=component_id in on_edge,
                confidence=confidence,
                volume_interval_ml=interval,
            )
        )
    found.sort(key=lambda f: -f["volume_ml"])
    return [LesionFinding(lesion_id=i, **f) for i, f in enumerate(found, start=1)]


def _lesion_probability_stats(lesion_probability, components, component_id, box, voxel_ml):
    """Mean lesion probability over the component, and hard-mask volume vs probability-weighted
    volume over the component and a one-voxel margin, all inside its bounding box."""
    padded = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, components.shape))
    mask = components[padded] == component_id
    probability = lesion_probability[padded]
    near = ndimage.binary_dilation(mask, structure=_FULL_CONNECTIVITY)
    hard = float(mask.sum() * voxel_ml)
    soft = float(probability[near].sum() * voxel_ml)
    confidence = float(np.clip(probability[mask].mean(), 0.0, 1.0))
    return confidence, (min(hard, soft), max(hard, soft))


def _laterality(right_fraction: float) -> Laterality:
    if right_fraction >= LATERALITY_RULES["RIGHT"]:
        return Laterality.right
    if right_fraction <= 1 - LATERALITY_RULES["RIGHT"]:
        return Laterality.left
    if min(right_fraction, 1 - right_fraction) >= LATERALITY_RULES["BILATERAL"]:
        return Laterality.bilateral
    return Laterality.midline_crossing


def _diameters_mm(ras: np.ndarray, affine: np.ndarray) -> tuple[float, float]:
    """Longest diameter and the longest extent perpendicular to it, edge to edge, in mm.

    Distances between voxel centres on the convex hull, plus the mean chord of one voxel along the
    measured direction: the centres of a sampled object fall short of its edges by that much on
    average (one voxel along an axis, 0.58 voxel along a cube's diagonal).
    """
    edges = affine[:3, :3]
    longest_dir, longest = _farthest_pair(ras)
    if longest == 0:  # a single voxel: its widest and next widest extents
        widths = np.sort(np.linalg.norm(edges, axis=0))[::-1]
        return float(widths[0]), float(widths[1])
    long_mm = longest + _voxel_width(edges, longest_dir)
    projected = ras - np.outer(ras @ longest_dir, longest_dir)
    short_dir, short = _farthest_pair(projected)
    short_mm = short + _voxel_width(edges, short_dir) if short > 0 else _voxel_width(edges, _orthogonal(longest_dir))
    return float(long_mm), float(min(short_mm, long_mm))


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
