"""Findings drawn at random, with no scan behind them, in the brain-tumour-v1 label set that
`fm report` measures. They are text for teaching a report model to copy what its prompt's findings
say (fm.lm.train's `random_findings` examples): a few hundred synthetic scans give a few hundred sets
of numbers, which a small model memorises; thousands of random ones it can only copy.

The ranges cover what fm.synth scans and the shipped segmenter on real brain MRI give, and more:
lesion counts 0-4, volumes 0.1-150 mL on a log scale, every enhancement pattern including "not
assessed" (no contrast-enhanced scan), every laterality, structures cut by the image edge.
"""

from __future__ import annotations

import math
import random

from fm.core.findings import (
    Findings,
    InputGeometry,
    Laterality,
    LesionFinding,
    Provenance,
    StructureFinding,
)
from fm.core.labels import BRAIN_TUMOUR
from fm.core.regions import EXTRA_AXIAL

REGIONS = {  # lobe-level regions of fm.core.regions.lobe, weighted roughly as tumours occur
    "frontal lobe": 6,
    "parietal lobe": 5,
    "temporal lobe": 5,
    "occipital lobe": 2,
    "deep grey matter and internal capsule": 2,
    "insula": 1,
    "cerebellum": 1,
    "brainstem": 1,
    EXTRA_AXIAL: 0.2,
}
#: (median mL, spread as the sd of its logarithm) per structure
STRUCTURE_VOLUMES_ML = {
    "cerebrospinal fluid": (140.0, 0.35),
    "lateral ventricles": (55.0, 0.5),
    "left grey matter": (520.0, 0.2),
    "right grey matter": (520.0, 0.2),
    "left white matter": (320.0, 0.2),
    "right white matter": (320.0, 0.2),
}
LESION_COUNTS = {0: 0.25, 1: 0.4, 2: 0.22, 3: 0.1, 4: 0.03}
SOURCES = ("ground truth", "fm3d/atlas-em", "synth-unet")


def random_findings(rng: random.Random) -> Findings:
    """One plausible set of brain-tumour-v1 findings, every field consistent with the others."""
    structures = [_structure(label_id, name, rng) for label_id, name in BRAIN_TUMOUR.structures.items()]
    count = rng.choices(list(LESION_COUNTS), weights=list(LESION_COUNTS.values()))[0]
    volumes = sorted((math.exp(rng.uniform(math.log(0.1), math.log(150.0))) for _ in range(count)), reverse=True)
    assessed = rng.random() > 0.3  # sub-regions measured only with a contrast-enhanced scan
    lesions = [_lesion(rank + 1, volume, assessed, rng) for rank, volume in enumerate(volumes)]
    spacing = tuple(round(rng.uniform(0.8, 2.0), 3) for _ in range(3))
    return Findings(
        geometry=InputGeometry(
            shape=tuple(rng.randint(120, 260) for _ in range(3)),
            spacing_mm=spacing,
            orientation=rng.choice(("RAS", "LPS", "LAS", "RSP")),
            affine_ras=[[spacing[0], 0, 0, -90], [0, spacing[1], 0, -126], [0, 0, spacing[2], -72], [0, 0, 0, 1]],
        ),
        structures=structures,
        lesions=lesions,
        provenance=Provenance(source=rng.choice(SOURCES), label_set=BRAIN_TUMOUR.name, software_version="random"),
    )


def _structure(label_id: int, name: str, rng: random.Random) -> StructureFinding:
    cut = name != "lateral ventricles" and rng.random() < 0.06
    median, spread = STRUCTURE_VOLUMES_ML[name]
    return StructureFinding(
        name=name,
        label_id=label_id,
        volume_ml=None if cut else median * math.exp(rng.gauss(0.0, spread)),
        touches_border=cut,
        confidence=round(rng.uniform(0.6, 1.0), 3),
    )


def _lesion(lesion_id: int, volume_ml: float, assessed: bool, rng: random.Random) -> LesionFinding:
    laterality = rng.choices(list(Laterality), weights=(0.42, 0.42, 0.08, 0.08))[0]
    right_fraction = {
        Laterality.left: rng.uniform(0.0, 0.02),
        Laterality.right: rng.uniform(0.98, 1.0),
        Laterality.bilateral: rng.uniform(0.3, 0.7),
        Laterality.midline_crossing: rng.choice((rng.uniform(0.03, 0.3), rng.uniform(0.7, 0.97))),
    }[laterality]
    subregions = {"whole_tumour": volume_ml}
    if assessed:
        pattern = rng.choices(("oedema-like", "non-enhancing", "enhancing"), weights=(0.15, 0.2, 0.65))[0]
        core = 0.0 if pattern == "oedema-like" else volume_ml * rng.uniform(0.05, 0.9)
        enhancing = core * rng.uniform(0.1, 1.0) if pattern == "enhancing" else 0.0
        subregions |= {"tumour_core": core, "enhancing_tumour": enhancing}
    longest = (1000.0 * volume_ml) ** (1 / 3) * rng.uniform(1.3, 2.6)
    x_side = 1.0 if right_fraction > 0.5 else -1.0  # RAS: +x is the patient's right
    return LesionFinding(
        lesion_id=lesion_id,
        component_id=lesion_id,
        label_ids=[7, 8, 9] if assessed else [7],
        volume_ml=volume_ml,
        subregion_volumes_ml=subregions,
        centroid_ras_mm=(x_side * rng.uniform(5, 60), rng.uniform(-90, 60), rng.uniform(-40, 70)),
        laterality=laterality,
        right_fraction=right_fraction,
        region=rng.choices(list(REGIONS), weights=list(REGIONS.values()))[0],
        longest_diameter_mm=longest,
        short_axis_mm=longest * rng.uniform(0.5, 0.98),
        touches_border=rng.random() < 0.05,
        confidence=round(rng.uniform(0.5, 1.0), 3),
    )
