"""Label sets as data: which integer in a label map means which structure, which labels are lesion,
and how lesion labels nest into the regions that are reported and evaluated (BraTS convention:
whole tumour contains tumour core contains enhancing tumour)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LabelSet:
    name: str
    structures: dict[int, str]  # measured one by one (volume, completeness)
    lesion: dict[int, str]  # labels whose union forms lesions (connected components)
    nested: dict[str, tuple[int, ...]]  # reported sub-region -> the lesion labels it covers
    left: tuple[int, ...] = ()  # structures of the patient's left hemisphere (give the midline)
    right: tuple[int, ...] = ()

    def __post_init__(self):
        overlap = set(self.structures) & set(self.lesion)
        if overlap or 0 in self.structures or 0 in self.lesion:
            raise ValueError(f"label set {self.name}: ids must be unique and non-zero (clash: {sorted(overlap)})")

    @property
    def names(self) -> dict[int, str]:
        return {0: "background", **self.structures, **self.lesion}

    @property
    def foreground_ids(self) -> tuple[int, ...]:
        return tuple(sorted({*self.structures, *self.lesion}))


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
)


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
