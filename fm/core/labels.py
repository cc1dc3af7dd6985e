"""Label sets as data: which integer in a label map means which structure, which labels are lesion,
and how lesion labels nest into the regions that are reported and evaluated (BraTS convention:
whole tumour contains tumour core contains enhancing tumour)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclasses.dataclass(frozen=True)
class LabelSet:
    name: str
    structures: dict[int, str]  # measured one by one (volume, completeness)
    lesion: dict[int, str]  # labels whose union forms lesions (connected components)
    nested: dict[str, tuple[int, ...]]  # reported sub-region -> the lesion labels it covers
    left: tuple[int, ...] = ()  # structures of the patient's left hemisphere (give the midline)
    right: tuple[int, ...] = ()
    # A softmax network's labels are decided for this region first (as BraTS evaluates it): a voxel
    # is in it when its labels' probabilities together pass 0.5. None: plain argmax.
    region_first: str | None = None

    def __post_init__(self):
        overlap = set(self.structures) & set(self.lesion)
        if overlap or 0 in self.structures or 0 in self.lesion:
            raise ValueError(f"label set {self.name}: ids must be unique and non-zero (clash: {sorted(overlap)})")
        if self.region_first is not None and self.region_first not in self.nested:
            raise ValueError(
                f"label set {self.name}: region_first {self.region_first!r} is not one of its regions {sorted(self.nested)}"
            )

    @property
    def names(self) -> dict[int, str]:
        return {0: "background", **self.structures, **self.lesion}

    @property
    def foreground_ids(self) -> tuple[int, ...]:
        return tuple(sorted({*self.structures, *self.lesion}))

    def to_dict(self) -> dict:
        """JSON-able (ids become strings, as JSON object keys must)."""
        return {
            "name": self.name,
            "structures": {str(k): v for k, v in self.structures.items()},
            "lesion": {str(k): v for k, v in self.lesion.items()},
            "nested": {k: list(v) for k, v in self.nested.items()},
            "left": list(self.left),
            "right": list(self.right),
            "region_first": self.region_first,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LabelSet":
        """Inverse of `to_dict`; a label set with a known name must be that set, not a variant of it."""
        label_set = cls(
            name=data["name"],
            structures={int(k): v for k, v in data["structures"].items()},
            lesion={int(k): v for k, v in data["lesion"].items()},
            nested={k: tuple(v) for k, v in data["nested"].items()},
            left=tuple(data.get("left", ())),
            right=tuple(data.get("right", ())),
            region_first=data.get("region_first"),
        )
        known = LABEL_SETS.get(label_set.name)
        if known is not None and known != label_set:
            raise ValueError(f"label set {label_set.name!r} differs from the one of that name this package defines")
        return known or label_set


#: Brain tissue with hemispheres, plus a nested tumour, as made by fm.synth and segmented by the
#: default model. Left/right labels are anatomical (the patient's side), decided in RAS space.
BRAIN_TUMOUR = LabelSet(
    name="brain-tumour-v1",
    structures={
        1: "cerebrospinal fluid",
        2: "lateral ventricles",
        3: "left grey matter",
        4: "right grey matter",
        5: "left white matter",
        6: "right white matter",
    },
    lesion={7: "peritumoral oedema", 8: "necrotic / non-enhancing core", 9: "enhancing tumour"},
    nested={"whole_tumour": (7, 8, 9), "tumour_core": (8, 9), "enhancing_tumour": (9,)},
    left=(3, 5),
    right=(4, 6),
    region_first="whole_tumour",
)


#: What the default segmenter's network predicts: BRAIN_TUMOUR without hemispheres. Which side a
#: grey- or white-matter voxel is on is decided afterwards from the scan's affine and the brain's
#: mid-sagittal plane (heads.hemispheres), not guessed by a network from a patch that may not
#: contain the midline.
BRAIN_TISSUE = LabelSet(
    name="brain-tissue-v1",
    structures={1: "cerebrospinal fluid", 2: "lateral ventricles", 3: "grey matter", 4: "white matter"},
    lesion={5: "peritumoral oedema", 6: "necrotic / non-enhancing core", 7: "enhancing tumour"},
    nested={"whole_tumour": (5, 6, 7), "tumour_core": (6, 7), "enhancing_tumour": (7,)},
    region_first="whole_tumour",
)

#: BRAIN_TISSUE label id -> its BRAIN_TUMOUR ids on the patient's (left, right); one id twice where a
#: structure has no side. The one table between the two sets, both ways.
BRAIN_TISSUE_SIDES = {0: (0, 0), 1: (1, 1), 2: (2, 2), 3: (3, 4), 4: (5, 6), 5: (7, 7), 6: (8, 8), 7: (9, 9)}


def _sides_merged() -> tuple[int, ...]:
    merged = [0] * (max(BRAIN_TUMOUR.names) + 1)
    for tissue, sides in BRAIN_TISSUE_SIDES.items():
        for tumour in sides:
            merged[tumour] = tissue
    return tuple(merged)


#: BRAIN_TUMOUR label id -> BRAIN_TISSUE label id (sides merged)
BRAIN_TUMOUR_TO_TISSUE = _sides_merged()


#: BTCV abdominal CT (Synapse multi-organ): the 13 organs of the Swin-UNETR BTCV checkpoints.
BTCV = LabelSet(
    name="btcv-13",
    structures={
        1: "spleen",
        2: "right kidney",
        3: "left kidney",
        4: "gallbladder",
        5: "oesophagus",
        6: "liver",
        7: "stomach",
        8: "aorta",
        9: "inferior vena cava",
        10: "portal and splenic veins",
        11: "pancreas",
        12: "right adrenal gland",
        13: "left adrenal gland",
    },
    lesion={},
    nested={},
)

#: BraTS glioma labels as the Swin-UNETR BraTS checkpoints write them (sigmoid channels TC, WT, ET).
BRATS = LabelSet(
    name="brats",
    structures={},
    lesion={1: "necrotic / non-enhancing core", 2: "peritumoral oedema", 4: "enhancing tumour"},
    nested={"whole_tumour": (1, 2, 4), "tumour_core": (1, 4), "enhancing_tumour": (4,)},
)

#: BraTS 2012-2016 expert labels (e.g. the BraTS 2013 OTMultiClass files): non-enhancing tumour has
#: its own label 3, which the later BraTS convention above merged into 1.
BRATS_2013 = LabelSet(
    name="brats-2013",
    structures={},
    lesion={1: "necrosis", 2: "peritumoral oedema", 3: "non-enhancing tumour", 4: "enhancing tumour"},
    nested={"whole_tumour": (1, 2, 3, 4), "tumour_core": (1, 3, 4), "enhancing_tumour": (4,)},
)

#: UKBOB (Swin-BOB pretraining): TotalVibeSegmentator's MRI labels, as listed in the UK_BOB
#: repository (UKBOB/filtering/organ_filtering.py, ids 0-72). The model has 72 output channels and
#: its training code one-hot encodes the raw label ids, so channel c is label c for c = 0..71:
#: id 72 ("other bone") has no channel, and id 20 is TotalVibeSegmentator's slot for ribs, which
#: it labels in CT only (empty in MRI), so it is not reported. The released UKBOB weights were not
#: available to check this against.
UKBOB = LabelSet(
    name="ukbob-72",
    structures={
        1: "spleen",
        2: "right kidney",
        3: "left kidney",
        4: "gallbladder",
        5: "liver",
        6: "stomach",
        7: "pancreas",
        8: "right adrenal gland",
        9: "left adrenal gland",
        10: "left lung upper lobe",
        11: "left lung lower lobe",
        12: "right lung upper lobe",
        13: "right lung middle lobe",
        14: "right lung lower lobe",
        15: "oesophagus",
        16: "trachea",
        17: "thyroid gland",
        18: "intestine",
        19: "duodenum",
        21: "urinary bladder",
        22: "prostate",
        23: "sacrum",
        24: "heart",
        25: "aorta",
        26: "pulmonary vein",
        27: "brachiocephalic trunk",
        28: "right subclavian artery",
        29: "left subclavian artery",
        30: "right common carotid artery",
        31: "left common carotid artery",
        32: "left brachiocephalic vein",
        33: "right brachiocephalic vein",
        34: "left atrial appendage",
        35: "superior vena cava",
        36: "inferior vena cava",
        37: "portal vein and splenic vein",
        38: "left iliac artery",
        39: "right iliac artery",
        40: "left iliac vein",
        41: "right iliac vein",
        42: "left humerus",
        43: "right humerus",
        44: "left scapula",
        45: "right scapula",
        46: "left clavicle",
        47: "right clavicle",
        48: "left femur",
        49: "right femur",
        50: "left hip bone",
        51: "right hip bone",
        52: "spinal cord",
        53: "left gluteus maximus",
        54: "right gluteus maximus",
        55: "left gluteus medius",
        56: "right gluteus medius",
        57: "left gluteus minimus",
        58: "right gluteus minimus",
        59: "left autochthonous back muscles",
        60: "right autochthonous back muscles",
        61: "left iliopsoas",
        62: "right iliopsoas",
        63: "sternum",
        64: "costal cartilages",
        65: "subcutaneous fat",
        66: "muscle",
        67: "inner fat",
        68: "intervertebral discs",
        69: "vertebral bodies",
        70: "vertebral posterior elements",
        71: "spinal canal",
    },
    lesion={},
    nested={},
)


#: Label sets by name (Findings carry the name of the set they were measured with).
LABEL_SETS = {label_set.name: label_set for label_set in (BRAIN_TUMOUR, BRAIN_TISSUE, BTCV, BRATS, BRATS_2013, UKBOB)}


def lesions_assessed(label_set_name: str) -> bool:
    """Whether a model with this label set looks for lesions at all (organ-only sets do not)."""
    label_set = LABEL_SETS.get(label_set_name)
    return label_set is None or bool(label_set.lesion)


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """A segmentation as a model reads it beside the scan: integer labels on a grid whose affine
    (voxel -> RAS mm) places them, and the label set that names them. The grid need not be the
    scan's: readers resample through the affines."""

    labels: "np.ndarray"
    affine: "np.ndarray"
    label_set: LabelSet

    @classmethod
    def load(cls, path, label_set: LabelSet | str) -> "LabelMap":
        """A label-map file (NIfTI and the other formats fm.core.io reads) named by `label_set`."""
        from fm.core.errors import InputFileError
        from fm.core.io import load_volume

        if isinstance(label_set, str):
            if label_set not in LABEL_SETS:
                raise InputFileError(path, f"names label set {label_set!r}, which this package does not know")
            label_set = LABEL_SETS[label_set]
        volume = load_volume(path)
        return cls(volume.array.round().astype("int16"), volume.affine, label_set)
