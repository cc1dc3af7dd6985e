"""The outputs that take a report back into clinical systems: a DICOM SEG and a TID 1500 SR beside
the source series (for DICOM input), and a FHIR DiagnosticReport, optionally de-identified.

`ClinicalRequest` is what was asked for, `ClinicalOutputs` what a session gets (settled by its
first scan); `write_clinical_outputs` writes them into a folder (the report folder's staging
folder, so they land together with the other report files).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from fm.clinical.deidentify import METHOD, deidentified, mark_deidentified
from fm.core.dicom import MultipleSeriesError, SourceSeries, read_source_headers
from fm.core.errors import InputError, InputFileError
from fm.core.io import Volume, input_format
from fm.core.labels import LabelSet
from fm.report.document import Report

SEG_FILE = "dicom/seg.dcm"
SR_FILE = "dicom/sr.dcm"
FHIR_FILE = "report.fhir.json"
CLINICAL_FILES = (SEG_FILE, SR_FILE, FHIR_FILE)


@dataclasses.dataclass(frozen=True)
class ClinicalOutputs:
    dicom: bool = False  # DICOM SEG + SR (needs a DICOM series as the first scan)
    fhir: bool = False  # FHIR DiagnosticReport
    deidentify: bool = False  # patient and study identifiers replaced in all of them

    @property
    def files(self) -> tuple[str, ...]:
        return (*((SEG_FILE, SR_FILE) if self.dicom else ()), *((FHIR_FILE,) if self.fhir else ()))

    def annotate(self, report: Report) -> Report:
        """The report with its provenance saying how the clinical outputs were de-identified."""
        if not self.deidentify:
            return report
        provenance = report.provenance.model_copy(update={"deidentification": METHOD})
        return report.model_copy(update={"provenance": provenance})


@dataclasses.dataclass(frozen=True)
class ClinicalRequest:
    """fm report's --dicom/--fhir/--deidentify before a scan settles them: dicom=None means on
    exactly when the first scan is DICOM."""

    dicom: bool | None = None
    fhir: bool = False
    deidentify: bool = False

    def outputs_for(self, first_scan: str | Path | None) -> ClinicalOutputs:
        """The outputs for a session whose first scan is `first_scan`. DICOM outputs of a scan that
        is not DICOM, or de-identification of no output, are refused before any work; a missing
        scan is left to the loader to report, with its own message."""
        exists = first_scan is not None and Path(first_scan).exists()
        is_dicom = exists and input_format(Path(first_scan)) == "dicom"
        if self.dicom and exists and not is_dicom:
            raise InputError(
                "--dicom writes a DICOM SEG on the frames of the scan's own DICOM series: the first scan must be DICOM"
            )
        dicom = is_dicom if self.dicom is None else self.dicom
        if self.deidentify and not (dicom or self.fhir):
            raise InputError("--deidentify applies to the DICOM and FHIR outputs: add --fhir or give a DICOM series")
        return ClinicalOutputs(dicom=dicom, fhir=self.fhir, deidentify=self.deidentify)


#: What a SEG and an SR need from every source image to point back at it.
REQUIRED_SOURCE_ATTRIBUTES = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
)


def check_dicom_source(path: str | Path, series: str | int | None = None) -> None:
    """Refuse, before any work, a DICOM series the SEG and SR cannot reference. A folder of several
    series with none chosen is checked once the loader has asked which one."""
    try:
        _referencable(path, read_source_headers(path, series))
    except MultipleSeriesError:
        return


def source_series(volume: Volume, referenced: bool) -> SourceSeries:
    """The headers of the DICOM series `volume` was read from, in its slice order; `referenced`:
    checked for what a SEG and an SR need to point at them."""
    if volume.source.format != "DICOM":
        raise InputFileError(volume.source.path, "is not a DICOM series: a DICOM SEG needs the source's frames")
    path = volume.source.path
    source = read_source_headers(path, volume.meta["dicom_series"]["index"])
    return _referencable(path, source) if referenced else source


def _referencable(path, source: SourceSeries) -> SourceSeries:
    if len(source.datasets) > 1 and any(frame is not None for _, frame in source.frames):
        raise InputFileError(
            path,
            "is one series spread over several multi-frame objects; a DICOM SEG is drawn on one such object "
            "or on single-frame images: leave it out with --no-dicom",
        )
    for ds in source.datasets:
        missing = [keyword for keyword in REQUIRED_SOURCE_ATTRIBUTES if not ds.get(keyword)]
        if missing:
            raise InputFileError(
                path,
                f"has no {', '.join(missing)}, which a DICOM SEG and SR need to reference the series; "
                "leave them out with --no-dicom",
            )
    return source


def write_clinical_outputs(
    report: Report, volume: Volume, labels: np.ndarray, label_set: LabelSet, folder: Path, outputs: ClinicalOutputs
) -> dict[str, Path]:
    """Write the outputs `outputs` asks for under `folder`; returns {relative name: path}. An empty
    segmentation gives no SEG and no SR (there is nothing to draw or measure)."""

    source = None
    if outputs.dicom or (outputs.fhir and volume.source.format == "DICOM"):
        source = source_series(volume, referenced=outputs.dicom)
        if outputs.deidentify:
            source = deidentified(source)
    written = _write_dicom(report, volume, labels, label_set, source, folder, outputs) if outputs.dicom else {}
    if outputs.fhir:
        written |= _write_fhir(report, source, folder, outputs)
    return written


def _write_dicom(report, volume, labels, label_set, source, folder: Path, outputs: ClinicalOutputs) -> dict[str, Path]:
    from fm.clinical import dicom_seg, dicom_sr  # highdicom loads only for DICOM outputs

    algorithm = dicom_seg.algorithm_identification(report.provenance.model_id, report.provenance.model_version)
    specs = dicom_seg.segment_specs(labels, report.findings, label_set, algorithm)
    if not specs:  # nothing segmented: no SEG to draw, no measurement to report
        return {}
    seg = dicom_seg.build_segmentation(volume, source, labels, label_set, specs, report.provenance)
    sr = dicom_sr.build_measurement_report(report, seg, specs, source)
    written = {}
    for name, dataset in ((SEG_FILE, seg), (SR_FILE, sr)):
        if outputs.deidentify:
            mark_deidentified(dataset)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(path, enforce_file_format=True)
        written[name] = path
    return written


def _write_fhir(report: Report, source: SourceSeries | None, folder: Path, outputs: ClinicalOutputs) -> dict[str, Path]:
    from fm.clinical import fhir

    first = source.datasets[0] if source is not None else None
    resource = fhir.diagnostic_report(
        report,
        study_uid=str(first.StudyInstanceUID) if first is not None and "StudyInstanceUID" in first else None,
        patient_id=None if outputs.deidentify or first is None else (str(first.PatientID) or None),
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FHIR_FILE
    path.write_text(fhir.to_json(resource))
    return {FHIR_FILE: path}
