"""De-identified copies of a source series' headers, for `fm report --deidentify`.

The DICOM SEG and SR copy their patient and study modules from the headers of the series they
reference (highdicom does this). To de-identify them, the headers they are built from are first
reduced to what those outputs read (image geometry, SOP class, modality) plus the patient and
study attributes, which are replaced as DICOM PS3.15's Basic Application Level Confidentiality
Profile says for them: names, IDs, dates and times emptied, UIDs replaced. The replacement UIDs
are consistent within one run (a SEG, the SR and the FHIR report still point at each other and at
the same study), and differ between runs; the mapping is not kept.
"""

from __future__ import annotations

import copy
import dataclasses
import secrets

import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fm.core.dicom import DERIVED_TYPE2, FRAME_TAGS, SourceSeries

METHOD = "DICOM PS3.15 Basic Profile, patient and study modules (fm3d)"
METHOD_CODE = codes.DCM.BasicApplicationConfidentialityProfile

#: Profile action U (replace with a consistent new UID).
_REPLACED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
_FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
#: Of a multi-frame image's functional groups only the geometry is kept (others carry frame times).
_GEOMETRY_GROUPS = ("PixelMeasuresSequence", "PlanePositionSequence", "PlaneOrientationSequence")


def deidentified(source: SourceSeries, key: str | None = None) -> SourceSeries:
    """A copy of `source` whose headers hold only what the outputs need, identifiers replaced.
    `key` seeds the replacement UIDs (a fresh random one by default)."""
    key = key or secrets.token_hex(16)
    datasets = [_deidentified_header(ds, key) for ds in source.datasets]
    return dataclasses.replace(source, datasets=datasets)


def mark_deidentified(ds: pydicom.Dataset) -> None:
    """Record on an output object that its patient module was replaced, and how."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    item = pydicom.Dataset()
    item.CodeValue = METHOD_CODE.value
    item.CodingSchemeDesignator = METHOD_CODE.scheme_designator
    item.CodeMeaning = METHOD_CODE.meaning
    ds.DeidentificationMethodCodeSequence = [item]
    ds.LongitudinalTemporalInformationModified = "REMOVED"


def _deidentified_header(ds: pydicom.Dataset, key: str) -> pydicom.Dataset:
    out = _copied(ds, FRAME_TAGS)
    for keyword in _FUNCTIONAL_GROUPS:
        if keyword in ds:
            setattr(out, keyword, [_copied(group, _GEOMETRY_GROUPS) for group in ds[keyword].value])
    for keyword in DERIVED_TYPE2:  # profile action Z: the patient and study attributes SEG and SR carry
        setattr(out, keyword, "")
    for keyword in _REPLACED_UIDS:
        if keyword in ds:
            setattr(out, keyword, generate_uid(entropy_srcs=[key, str(ds[keyword].value)]))
    out.file_meta = pydicom.dataset.FileMetaDataset()
    meta = getattr(ds, "file_meta", None)
    out.file_meta.TransferSyntaxUID = (
        meta.get("TransferSyntaxUID", ExplicitVRLittleEndian) if meta else ExplicitVRLittleEndian
    )
    out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    return out


def _copied(ds: pydicom.Dataset, keywords: tuple[str, ...]) -> pydicom.Dataset:
    """A new dataset holding copies of `ds`'s attributes among `keywords`, and nothing else."""
    out = pydicom.Dataset()
    for keyword in keywords:
        if keyword in ds:
            setattr(out, keyword, copy.deepcopy(ds[keyword].value))
    return out
