"""Anatomical plausibility of a brain segmentation. A lesion lies in the brain, so a lesion
component that touches no brain tissue (CSF, ventricles, grey or white matter) is a false positive
of the network: it is relabelled background before anything is measured."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from heads.result import Segmentation

_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)


def drop_detached_lesions(segmentation: Segmentation) -> Segmentation:
    """The segmentation without lesion components that touch no tissue structure (26-connected).
    The probabilities are the network's and stay as they are."""
    label_set, labels = segmentation.label_set, segmentation.labels
    lesion = np.isin(labels, list(label_set.lesion))
    if not lesion.any():
        return segmentation
    components, _ = ndimage.label(lesion, structure=_NEIGHBOURS)
    tissue_ids = list(label_set.structures)
    kept = labels.copy()
    for component_id, box in enumerate(ndimage.find_objects(components), start=1):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)  # one voxel of margin
        own = components[grown] == component_id
        rim = ndimage.binary_dilation(own, structure=_NEIGHBOURS) & ~own
        if not np.isin(labels[grown][rim], tissue_ids).any():
            kept[grown][own] = 0  # kept[grown] is a view: this writes into kept
    return Segmentation(kept, segmentation.probabilities, label_set)
