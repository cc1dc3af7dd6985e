"""Coded concepts for the clinical outputs (DICOM SEG, DICOM SR, FHIR): what each label, lesion
region, side and unit is in SNOMED CT, DICOM (DCM) and UCUM.

The codes come from pydicom's dictionary of the DICOM standard's coded concepts (PS3.16), looked up
by keyword; only UCUM's millilitre, which the dictionary lacks, is written out. A label with no
SNOMED concept of its own gets the generic "Anatomical structure" code; its segment label still
names it.
"""

from __future__ import annotations

import dataclasses
import re

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from fm.core.findings import Laterality, LesionFinding

SCT = codes.SCT
MILLILITRE = Code("ml", "UCUM", "milliliter")
MILLIMETRE = codes.UCUM.Millimeter
NO_UNITS = codes.UCUM.NoUnits
#: The numeric evaluation of a finding's confidence: the mean probability the model gave its voxels.
CONFIDENCE = codes.DCM.Probability

#: The URIs FHIR uses for the coding schemes DICOM names by designator.
FHIR_SYSTEMS = {
    "SCT": "http://snomed.info/sct",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    "LN": "http://loinc.org",
}

#: Label names whose SNOMED concept is not the name itself (British spelling, a broader concept, a
#: substance or an abnormality rather than a body structure).
_BY_NAME = {
    "cerebrospinal fluid": (SCT.BodySubstance, SCT.CerebrospinalFluid),
    "lateral ventricles": (SCT.AnatomicalStructure, SCT.LateralVentricle),
    "grey matter": (SCT.Tissue, SCT.GrayMatter),
    "white matter": (SCT.Tissue, SCT.CerebralWhiteMatter),
    "oesophagus": (SCT.AnatomicalStructure, SCT.Esophagus),
    "peritumoral oedema": (SCT.MorphologicallyAbnormalStructure, SCT.Edema),
    "necrosis": (SCT.MorphologicallyAbnormalStructure, SCT.Necrosis),
    "necrotic / non-enhancing core": (SCT.MorphologicallyAbnormalStructure, SCT.Neoplasm),
    "non-enhancing tumour": (SCT.MorphologicallyAbnormalStructure, SCT.Neoplasm),
    "enhancing tumour": (SCT.MorphologicallyAbnormalStructure, SCT.Neoplasm),
    "lung upper lobe": (SCT.AnatomicalStructure, SCT.UpperLobeOfLung),
    "lung middle lobe": (SCT.AnatomicalStructure, SCT.StructureOfMiddleLobeOfLung),
    "lung lower lobe": (SCT.AnatomicalStructure, SCT.StructureOfLowerLobeOfLung),
    "thyroid gland": (SCT.AnatomicalStructure, SCT.Thyroid),
    "urinary bladder": (SCT.AnatomicalStructure, SCT.UrinaryBladderStructure),
    "costal cartilages": (SCT.AnatomicalStructure, SCT.CostalCartilage),
    "spinal canal": (SCT.AnatomicalStructure, SCT.SpinalCanalStructure),
}

#: fm.core.regions lobe-level regions -> the finding site of a lesion there. The deep grey matter and
#: internal capsule have no single concept: the cerebral hemisphere holds both.
_REGION_SITES = {
    "frontal lobe": SCT.FrontalLobe,
    "parietal lobe": SCT.ParietalLobe,
    "temporal lobe": SCT.TemporalLobe,
    "occipital lobe": SCT.OccipitalLobe,
    "insula": SCT.Insula,
    "deep grey matter and internal capsule": SCT.CerebralHemisphere,
    "cerebellum": SCT.Cerebellum,
    "brainstem": SCT.BrainStem,
}

LESION = (SCT.MorphologicallyAbnormalStructure, SCT.Lesion)


@dataclasses.dataclass(frozen=True)
class StructureConcept:
    """What a label is: a category and a type (as a DICOM SEG segment has them), and its side."""

    category: Code
    type: Code
    laterality: Code | None  # from a "left " / "right " prefix of the name


def structure_concept(name: str) -> StructureConcept:
    side, _, rest = name.partition(" ")
    laterality = {"left": SCT.Left, "right": SCT.Right}.get(side)
    base = rest if laterality is not None else name
    if name in _BY_NAME or base in _BY_NAME:
        category, type_ = _BY_NAME.get(name) or _BY_NAME[base]
        return StructureConcept(category, type_, laterality)
    keyword = "".join(word.capitalize() for word in re.split(r"[^a-z]+", base.lower()) if word)
    type_ = getattr(SCT, keyword, None)
    if type_ is None:
        return StructureConcept(SCT.AnatomicalStructure, SCT.AnatomicalStructure, laterality)
    return StructureConcept(SCT.AnatomicalStructure, type_, laterality)


def lesion_laterality(lesion: LesionFinding) -> Code:
    """The side of a lesion as a SNOMED qualifier. A lesion that crosses the midline but lies mostly
    on one side is given that side (its right fraction is in the report)."""
    if lesion.laterality is Laterality.bilateral:
        return SCT.Bilateral
    return SCT.Right if lesion.right_fraction >= 0.5 else SCT.Left


def lesion_site(lesion: LesionFinding) -> Code | None:
    """The SNOMED concept of the region holding most of the lesion; None outside the brain."""
    region = lesion.region
    for side in ("left ", "right "):
        region = region.removeprefix(side)
    return _REGION_SITES.get(region)
