"""A report's label map as a DICOM Segmentation (SEG) on the frames of the series it was read from,
so that a PACS viewer lays it over the original images.

One segment per label present in the map (structures and lesion sub-regions), then one per lesion
(its whole extent, numbered as in the report), each with SNOMED CT codes (fm.clinical.terminology) and the
model as the segmentation algorithm. Segments are binary and may overlap (a lesion's segment
covers its sub-regions' voxels). highdicom builds and checks the object.
"""

from __future__ import annotations

import dataclasses

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from fm.clinical.terminology import LESION, structure_concept
from fm.core.dicom import SourceSeries
from fm.core.errors import InputError, InputFileError
from fm.core.findings import Findings
from fm.core.io import Volume
from fm.core.labels import LabelSet
from fm.core.measure import lesion_components
from fm.core.version import __version__
from fm.report.document import ReportProvenance

SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "AI segmentation (draft, not for clinical use)"
MANUFACTURER = "fm3d"


@dataclasses.dataclass(frozen=True)
class SegmentSpec:
    """One segment: its number in the SEG, what it is, and which voxels it holds (a label, or a
    lesion's connected component)."""

    number: int
    description: hd.seg.SegmentDescription
    label_id: int | None = None  # for a label's segment
    lesion_id: int | None = None  # for a lesion's segment
    component_id: int | None = None  # the lesion's component in fm.core.measure.lesion_components


def segment_specs(
    labels: np.ndarray, findings: Findings, label_set: LabelSet, algorithm: hd.AlgorithmIdentificationSequence
) -> list[SegmentSpec]:
    """The segments of a label map: each label present, then each reported lesion."""
    specs: list[SegmentSpec] = []

    def add(label: str, category, type_, laterality, **voxels) -> None:
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
        specs.append(SegmentSpec(number, description, **voxels))

    present = set(np.unique(labels).tolist())
    for label_id, name in {**label_set.structures, **label_set.lesion}.items():
        if label_id in present:
            concept = structure_concept(name)
            add(name, concept.category, concept.type, concept.laterality, label_id=label_id)
    for lesion in findings.lesions:
        add(f"lesion {lesion.lesion_id}", *LESION, None, lesion_id=lesion.lesion_id, component_id=lesion.component_id)
    return specs


def algorithm_identification(model_id: str, model_version: str) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=model_id[:64], family=codes.DCM.ArtificialIntelligence, version=model_version[:64], source=MANUFACTURER
    )


def source_frames(volume: Volume, source: SourceSeries, array: np.ndarray) -> np.ndarray:
    """An array on the volume's grid as (source frames, rows, columns), frame order as highdicom
    expects it: the order of the source files for single-frame series, of the frames in a
    multi-frame object."""
    if not np.allclose(source.affine_ras, volume.source.affine, atol=1e-4):
        raise InputError(f"{volume.source.path}: the DICOM series no longer matches the scan that was segmented")
    stacked = volume.with_array(array).to_source_layout()  # (columns, rows, slices)
    out = np.zeros((len(source.frames), stacked.shape[1], stacked.shape[0]), dtype=array.dtype)
    for k, (dataset_index, frame_index) in enumerate(source.frames):
        out[dataset_index if frame_index is None else frame_index] = stacked[:, :, k].T
    return out


def segmentation_pixels(
    volume: Volume, source: SourceSeries, labels: np.ndarray, label_set: LabelSet, specs: list[SegmentSpec]
) -> np.ndarray:
    """highdicom's pixel array for `specs`. Without lesion segments no two segments overlap, and a
    label map of segment numbers (one byte a voxel: 72 organs of a CT fit) is enough; a lesion's
    segment overlaps its sub-regions', so with lesions each segment gets its own plane."""
    if not any(spec.lesion_id for spec in specs):
        numbers = np.zeros(max(label_set.names) + 1, dtype=np.uint16 if len(specs) > 255 else np.uint8)
        for spec in specs:
            numbers[spec.label_id] = spec.number
        return source_frames(volume, source, numbers[labels])
    on_source = source_frames(volume, source, labels.astype(np.int32))
    components = source_frames(volume, source, lesion_components(labels, label_set).astype(np.int32))
    planes = np.zeros((*on_source.shape, len(specs)), dtype=bool)
    for index, spec in enumerate(specs):
        planes[..., index] = (
            (on_source == spec.label_id) if spec.lesion_id is None else (components == spec.component_id)
        )
    return planes


def build_segmentation(
    volume: Volume,
    source: SourceSeries,
    labels: np.ndarray,
    label_set: LabelSet,
    specs: list[SegmentSpec],
    provenance: ReportProvenance,
) -> hd.seg.Segmentation:
    pixels = segmentation_pixels(volume, source, labels, label_set, specs)
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
