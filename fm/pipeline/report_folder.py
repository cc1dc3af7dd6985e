"""A report folder: report.json, report.md, report.pdf, overlay.png and mask.nii.gz, with the DICOM
and FHIR outputs asked for, written together (staged, then moved in) so a failure leaves nothing
half-written, and never over a user's files unless asked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from fm.clinical.outputs import CLINICAL_FILES, ClinicalOutputs, write_clinical_outputs
from fm.core.errors import InputFileError
from fm.core.io import Volume, save_volume
from fm.core.labels import LabelSet
from fm.report.document import Report
from fm.report.render import make_overlay, overlay_figure, save_pdf

REPORT_FILES = ("report.json", "report.md", "report.pdf", "overlay.png", "mask.nii.gz")


def check_report_folder(folder: str | Path, overwrite: bool = False, clinical: ClinicalOutputs | None = None) -> Path:
    """Refuse a folder that is a file, or that already holds report files (unless overwrite)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputFileError(folder, "exists and is not a folder")
    names = REPORT_FILES + (clinical.files if clinical else ())
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite:
        raise InputFileError(folder, f"already holds {', '.join(existing)}; pass --overwrite to replace them")
    return folder


def write_report_folder(
    report: Report,
    volume: Volume,
    labels: np.ndarray,
    label_set: LabelSet,
    folder: str | Path,
    overwrite: bool = False,
    clinical: ClinicalOutputs | None = None,
) -> dict[str, Path]:
    """Write every report file into `folder` (created if needed), and the DICOM and FHIR outputs
    `clinical` asks for. The files are made in a staging folder first and moved in together, so a
    failure leaves nothing half-written; existing report files are kept unless `overwrite`. The
    mask is on the input scan's own grid."""
    folder = check_report_folder(folder, overwrite, clinical)
    folder.mkdir(parents=True, exist_ok=True)
    if clinical is not None:
        report = clinical.annotate(report)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fm-report-") as tmp:
        staged = {name: Path(tmp) / name for name in REPORT_FILES}
        if clinical is not None:
            staged |= write_clinical_outputs(report, volume, labels, label_set, Path(tmp), clinical)
        save_volume(volume.with_array(labels), staged["mask.nii.gz"])
        staged["report.json"].write_text(report.to_json())
        staged["report.md"].write_text(report.to_markdown())
        overlay = make_overlay(report.findings, volume, labels, label_set)  # made once, for the PNG and the PDF
        overlay_figure(overlay).savefig(staged["overlay.png"], dpi=110, facecolor="black")
        save_pdf(report, overlay, staged["report.pdf"])
        for name, path in staged.items():
            (folder / name).parent.mkdir(exist_ok=True)
            os.replace(path, folder / name)  # replaces a link itself, never the file it points to
        if overwrite:  # an earlier run's clinical files, stale beside the new report
            for name in set(CLINICAL_FILES) - set(staged):
                (folder / name).unlink(missing_ok=True)
    return {name: folder / name for name in staged}
