"""A report as a FHIR DiagnosticReport, the resource an EHR takes an imaging result in.

FHIR R4B (4.3, the same structure as R4 for the DiagnosticReport, Observation and Device used
here), built with fhir.resources so
that the model validates every element. The measurements are contained Observations, one per
number: each structure's volume, each lesion's volume and two diameters, in UCUM units, coded in
SNOMED CT, with the body site and its side (a Laterality component) and the segmentation's
confidence. The text holds the "AI draft" notice, the impression and the narrative the report
shows. The imaging study is referenced by its DICOM Study Instance UID when the scan was DICOM.
"""

from __future__ import annotations

import html

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.narrative import Narrative
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from pydicom.sr.coding import Code

from fm.clinical.terminology import (
    CONFIDENCE,
    FHIR_SYSTEMS,
    MILLILITRE,
    MILLIMETRE,
    SCT,
    lesion_laterality,
    lesion_site,
    structure_concept,
)
from fm.core.findings import Laterality, LesionFinding, StructureFinding
from fm.report.document import Report

#: LOINC "Diagnostic imaging study" (the document kind of an imaging report).
IMAGING_REPORT = Code("18748-4", "LN", "Diagnostic imaging study")
_RADIOLOGY = Coding(system="http://terminology.hl7.org/CodeSystem/v2-0074", code="RAD", display="Radiology")
_IMAGING = Coding(
    system="http://terminology.hl7.org/CodeSystem/observation-category", code="imaging", display="Imaging"
)
#: FHIR spells UCUM millilitre "mL"; DICOM's coded unit is "ml". Both are valid UCUM.
_UCUM_CODES = {MILLILITRE.value: "mL"}


def diagnostic_report(report: Report, study_uid: str | None = None, patient_id: str | None = None) -> DiagnosticReport:
    """report: the Report; study_uid: the DICOM Study Instance UID of the scan, if any; patient_id:
    the source's Patient ID, given only when the output may identify the patient."""
    provenance = report.provenance
    device = Device(
        id="model",
        deviceName=[{"name": provenance.model_id, "type": "model-name"}],
        version=[{"value": provenance.model_version}],
        manufacturer="fm3d",
    )
    observations = [_structure_observation(s) for s in report.findings.structures if s.volume_ml is not None]
    observations += [observation for lesion in report.findings.lesions for observation in _lesion_observations(lesion)]
    for number, observation in enumerate(observations, start=1):
        observation.id = f"obs-{number}"
    study = (
        [Reference(type="ImagingStudy", identifier=Identifier(system="urn:dicom:uid", value=f"urn:oid:{study_uid}"))]
        if study_uid
        else None
    )
    subject = Reference(type="Patient", identifier=Identifier(value=patient_id)) if patient_id else None
    for observation in observations:
        observation.subject = subject
        observation.derivedFrom = study
    return DiagnosticReport(
        status="preliminary",
        category=[CodeableConcept(coding=[_RADIOLOGY])],
        code=_concept(IMAGING_REPORT, "AI-drafted imaging report"),
        subject=subject,
        issued=provenance.created_utc,
        imagingStudy=study,
        contained=[device, *observations],
        result=[Reference(reference=f"#{o.id}", display=o.code.text) for o in observations],
        conclusion=" ".join(report.structured["impression"]),
        text=Narrative(status="generated", div=_narrative_div(report)),
    )


def to_json(resource: DiagnosticReport) -> str:
    return resource.model_dump_json(indent=2, exclude_none=True)


def _structure_observation(structure: StructureFinding) -> Observation:
    concept = structure_concept(structure.name)
    # CSF is a substance, not a site: its observation names it in its text only
    site = None if concept.category == SCT.BodySubstance else _concept(concept.type, structure.name)
    side = _concept(concept.laterality) if concept.laterality else None
    volume = _quantity(structure.volume_ml, MILLILITRE)
    return _observation(f"Volume of {structure.name}", SCT.Volume, volume, site, side, structure.confidence)


def _lesion_observations(lesion: LesionFinding) -> list[Observation]:
    site_code = lesion_site(lesion)
    site = _concept(site_code, lesion.region) if site_code else CodeableConcept(text=lesion.region)
    side = _concept(lesion_laterality(lesion), _side_text(lesion))
    name = f"lesion {lesion.lesion_id}"
    measured = (
        ("Volume", SCT.Volume, lesion.volume_ml, MILLILITRE),
        ("Longest diameter", SCT.LongAxis, lesion.longest_diameter_mm, MILLIMETRE),
        ("Short-axis diameter", SCT.ShortAxis, lesion.short_axis_mm, MILLIMETRE),
    )
    return [
        _observation(f"{what} of {name}", code, _quantity(value, unit), site, side, lesion.confidence)
        for what, code, value, unit in measured
    ]


def _observation(
    text: str,
    code: Code,
    value: Quantity,
    site: CodeableConcept | None,
    side: CodeableConcept | None,
    confidence: float | None,
) -> Observation:
    components = []
    if side is not None:
        components.append(ObservationComponent(code=_concept(SCT.Laterality), valueCodeableConcept=side))
    if confidence is not None:
        components.append(
            ObservationComponent(
                code=_concept(CONFIDENCE, "Mean probability the model gave the segmented voxels"),
                valueQuantity=Quantity(
                    value=round(float(confidence), 4), unit="1", system=FHIR_SYSTEMS["UCUM"], code="1"
                ),
            )
        )
    return Observation(
        status="preliminary",
        category=[CodeableConcept(coding=[_IMAGING])],
        code=_concept(code, text),
        valueQuantity=value,
        bodySite=site,
        component=components or None,
        device=Reference(reference="#model"),
    )


def _side_text(lesion: LesionFinding) -> str:
    """The report's own word for the side: a lesion across the midline is coded by its larger part."""
    if lesion.laterality in (Laterality.left, Laterality.right, Laterality.bilateral):
        return lesion.laterality.value
    return f"{lesion.laterality.value}, mostly {'right' if lesion.right_fraction >= 0.5 else 'left'}"


def _quantity(value: float, unit: Code) -> Quantity:
    code = _UCUM_CODES.get(unit.value, unit.value)
    return Quantity(value=float(value), unit=code, system=FHIR_SYSTEMS["UCUM"], code=code)


def _concept(code: Code, text: str | None = None) -> CodeableConcept:
    coding = Coding(system=FHIR_SYSTEMS[code.scheme_designator], code=code.value, display=code.meaning)
    return CodeableConcept(coding=[coding], text=text or code.meaning)


def _narrative_div(report: Report) -> str:
    heading, narrative = report.shown_narrative
    paragraphs = [
        f"<p><b>{html.escape(report.notice)}</b></p>",
        "<p><b>Impression</b></p>",
        *(f"<p>{html.escape(line)}</p>" for line in report.structured["impression"]),
        f"<p><b>{html.escape(heading)}</b></p>",
        *(f"<p>{html.escape(line)}</p>" for line in narrative.splitlines() if line.strip()),
    ]
    return '<div xmlns="http://www.w3.org/1999/xhtml">' + "".join(paragraphs) + "</div>"
