"""A report's measurements as a DICOM Comprehensive 3D SR following TID 1500 (Measurement Report),
the form in which PACS and AI platforms exchange measurements of segmented regions.

One measurement group (TID 1411, volumetric ROI) per segmented structure and per lesion, each
pointing at its segment in the SEG written beside it and, through it, at the source series:
volume (mL; none for a structure cut by the edge of the image); for a lesion its longest and short-axis diameters (mm), its finding site and side;
and the segmentation's confidence (mean probability) as a numeric evaluation. Every value is the
report's own, to the precision the Findings hold.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from fm.clinical.dicom_seg import MANUFACTURER, SegmentSpec
from fm.clinical.terminology import (
    CONFIDENCE,
    MILLILITRE,
    MILLIMETRE,
    NO_UNITS,
    SCT,
    lesion_laterality,
    lesion_site,
    structure_concept,
)
from fm.core.dicom import SourceSeries
from fm.core.findings import LesionFinding, StructureFinding
from fm.report.document import Report

SERIES_NUMBER = 9902
SERIES_DESCRIPTION = "AI measurements (draft, not for clinical use)"


def build_measurement_report(
    report: Report, segmentation: hd.seg.Segmentation, specs: list[SegmentSpec], source: SourceSeries
) -> hd.sr.Comprehensive3DSR:
    provenance = report.provenance
    algorithm = hd.sr.AlgorithmIdentification(name=provenance.model_id, version=provenance.model_version)
    by_label = {spec.label_id: spec for spec in specs if spec.label_id is not None}
    by_lesion = {spec.lesion_id: spec for spec in specs if spec.lesion_id is not None}
    groups = [
        _structure_group(structure, by_label[structure.label_id], segmentation, algorithm)
        for structure in report.findings.structures
        if structure.label_id in by_label
    ]
    groups += [
        _lesion_group(lesion, by_lesion[lesion.lesion_id], segmentation, algorithm)
        for lesion in report.findings.lesions
    ]
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            # the same model (id and weights) is the same observer in every report
            uid=generate_uid(entropy_srcs=[provenance.model_id, provenance.model_sha256]),
            name=provenance.model_id[:64],
            manufacturer_name=MANUFACTURER,
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[*source.datasets, segmentation],
        content=content[0],
        series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SERIES_DESCRIPTION,
    )


def _structure_group(
    structure: StructureFinding, spec: SegmentSpec, segmentation, algorithm
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    concept = structure_concept(structure.name)
    # A structure cut by the edge of the image has a segment but no volume, as in every report.
    measurements = []
    if structure.volume_ml is not None:
        measurements.append(_measurement(SCT.Volume, structure.volume_ml, MILLILITRE, algorithm))
    if structure.confidence is not None:
        measurements.append(_measurement(CONFIDENCE, structure.confidence, NO_UNITS, algorithm))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=spec.description.TrackingUID, identifier=structure.name[:64]),
        referenced_segment=_segment(segmentation, spec),
        finding_type=concept.type,
        finding_sites=[hd.sr.FindingSite(concept.type, laterality=concept.laterality)] if concept.laterality else None,
        measurements=measurements or None,
    )


def _lesion_group(
    lesion: LesionFinding, spec: SegmentSpec, segmentation, algorithm
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    site = lesion_site(lesion)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=spec.description.TrackingUID, identifier=f"lesion {lesion.lesion_id}"
        ),
        referenced_segment=_segment(segmentation, spec),
        finding_type=SCT.Lesion,
        finding_sites=[hd.sr.FindingSite(site, laterality=lesion_laterality(lesion))] if site else None,
        measurements=[
            _measurement(SCT.Volume, lesion.volume_ml, MILLILITRE, algorithm),
            _measurement(SCT.LongAxis, lesion.longest_diameter_mm, MILLIMETRE, algorithm),
            _measurement(SCT.ShortAxis, lesion.short_axis_mm, MILLIMETRE, algorithm),
            _measurement(CONFIDENCE, lesion.confidence, NO_UNITS, algorithm),
        ],
    )


def _segment(segmentation: hd.seg.Segmentation, spec: SegmentSpec) -> hd.sr.ReferencedSegment:
    """The segment, and the series it was drawn on (one reference, not one per image)."""
    return hd.sr.ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID,
        sop_instance_uid=segmentation.SOPInstanceUID,
        segment_number=spec.number,
        source_series=hd.sr.SourceSeriesForSegmentation(segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID),
    )


def _measurement(name, value: float, unit, algorithm) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, algorithm_id=algorithm)
