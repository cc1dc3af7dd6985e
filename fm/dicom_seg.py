"""A report's label map as a DICOM Segmentation (SEG) on the frames of the series it was read from,
so that a PACS viewer lays it over the original images.

One segment per label present in the map (structures and lesion sub-regions), then one per lesion
(its whole extent, numbered as in the report), each with SNOMED CT codes (fm.terminology) and the
model as the segmentation algorithm. Segments are binary and may overlap (a lesion's segment
covers its sub-regions' voxels). highdicom builds and checks the object.
"""

from __future__ import annotations

import dataclasses

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from fm import __version__
from fm.dicom import SourceSeries
from fm.errors import InputError, InputFileError
from fm.findings import Findings
from fm.io import Volume
from fm.labels import LabelSet
from fm.measure import lesion_components
from fm.report import ReportProvenance
from fm.terminology import LESION, structure_concept

SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "AI segmentation (draft, not for clinical use)"
MANUFACTURER = "fm3d"


@dataclasses.dataclass(frozen=True)
class SegmentSpec:
    """One segment: its number in the SEG, what it is, and its voxels on the volume's grid."""

    number: int
    label: str
    description: hd.seg.SegmentDescription
    mask: np.ndarray
    label_id: int | None = None  # for a label's segment
    lesion_id: int | None = None  # for a lesion's segment


def segment_specs(
    labels: np.ndarray, findings: Findings, label_set: LabelSet, algorithm: hd.AlgorithmIdentificationSequence
) -> list[SegmentSpec]:
    """The segments of a label map: each label present, then each reported lesion."""
    specs: list[SegmentSpec] = []

    def add(label: str, category, type_, laterality, mask, **source) -> None:
        number = len(specs) + 1
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label[:64],
            segmented_property_category=category,
            segmented_property_type=type_,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=generate_uid(),
            tracking_id=label[:64],
        )
        if laterality is not None:
            # DICOM puts a side in the segmented property type's modifier, not in its code.
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept.from_code(laterality)
            ]
        specs.append(SegmentSpec(number, label, description, mask, **source))

    present = set(np.unique(labels).tolist())
    for label_id, name in {**label_set.structures, **label_set.lesion}.items():
        if label_id in present:
            concept = structure_concept(name)
            add(name, concept.category, concept.type, concept.laterality, labels == label_id, label_id=label_id)
    if findings.lesions:
        components = lesion_components(labels, label_set)
        for lesion in findings.lesions:
            add(
                f"lesion {lesion.lesion_id}",
                *LESION,
                None,
                components == lesion.component_id,
                lesion_id=lesion.lesion_id,
            )
    return specs


def algorithm_identification(model_id: str, model_version: str) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=model_id[:64], family=codes.DCM.ArtificialIntelligence, version=model_version[:64], source=MANUFACTURER
    )


def source_frames(volume: Volume, source: SourceSeries, mask: np.ndarray) -> np.ndarray:
    """A mask on the volume's grid as (source frames, rows, columns), frame order as highdicom
    expects it: the order of the source files for single-frame series, of the frames in a
    multi-frame object."""
    if not np.allclose(source.affine_ras, volume.source.affine, atol=1e-4):
        raise InputError(f"{volume.source.path}: the DICOM series no longer matches the scan that was segmented")
    stacked = volume.with_array(mask).to_source_layout()  # (columns, rows, slices)
    out = np.zeros((len(source.frames), stacked.shape[1], stacked.shape[0]), dtype=bool)
    for k, (dataset_index, frame_index) in enumerate(source.frames):
        out[dataset_index if frame_index is None else frame_index] = stacked[:, :, k].T
    return out


def build_segmentation(
    volume: Volume, source: SourceSeries, specs: list[SegmentSpec], provenance: ReportProvenance
) -> hd.seg.Segmentation:
    if not specs:
        raise InputError(f"{volume.source.path}: the segmentation is empty; there is nothing to write as a DICOM SEG")
    pixels = np.stack([source_frames(volume, source, spec.mask) for spec in specs], axis=-1)
    try:
        return _segmentation(source, pixels, specs, provenance)
    except ValueError as err:  # highdicom's checks of the source headers
        raise InputFileError(
            volume.source.path, f"cannot write a DICOM SEG on this series ({err}); use --no-dicom"
        ) from None


def _segmentation(source: SourceSeries, pixels: np.ndarray, specs: list[SegmentSpec], provenance: ReportProvenance):
    return hd.seg.Segmentation(
        source_images=source.datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[spec.description for spec in specs],
        series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=provenance.model_id[:64],
        software_versions=f"fm3d {__version__}",  # the model's version is in each segment's algorithm
        device_serial_number=provenance.model_sha256,  # the weights' checksum identifies this "device"
        series_description=SERIES_DESCRIPTION,
        content_label="SEGMENTATION",
        content_description=SERIES_DESCRIPTION,
    )
