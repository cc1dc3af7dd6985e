"""A report's files: the three-view overlay with a legend (overlay.png), the PDF (the same figure,
then the tables; matplotlib only, no system binaries), and `write_report_folder`, which writes
report.json, report.md, report.pdf, overlay.png and mask.nii.gz together.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fm.errors import InputFileError
from fm.io import Volume, save_volume
from fm.labels import LabelSet
from fm.report import Report, format_confidence, format_volume
from fm.views import label_colours, orthogonal_views

# Figures are made as matplotlib.figure.Figure objects, not through pyplot: no global figure
# registry, so concurrent reports (the Gradio app) cannot close each other's figures, and no
# backend is imposed on the caller.

_A4 = (8.27, 11.69)
REPORT_FILES = ("report.json", "report.md", "report.pdf", "overlay.png", "mask.nii.gz")


def check_report_folder(folder: str | Path, overwrite: bool = False) -> Path:
    """Refuse a folder that is a file, or that already holds report files (unless overwrite)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputFileError(folder, "exists and is not a folder")
    existing = [name for name in REPORT_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise InputFileError(folder, f"already holds {', '.join(existing)}; pass --overwrite to replace them")
    return folder


def write_report_folder(report: Report, volume: Volume, labels: np.ndarray, label_set: LabelSet, folder: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """Write every report file into `folder` (created if needed). The files are made in a staging
    folder first and moved in together, so a failure leaves nothing half-written; existing report
    files are kept unless `overwrite`. The mask is on the input scan's own grid."""
    folder = check_report_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fm-report-") as tmp:
        staged = {name: Path(tmp) / name for name in REPORT_FILES}
        save_volume(volume.with_array(labels), staged["mask.nii.gz"])
        staged["report.json"].write_text(report.to_json())
        staged["report.md"].write_text(report.to_markdown())
        overlay = overlay_figure(report, volume, labels, label_set)  # drawn once, for the PNG and the PDF
        overlay.savefig(staged["overlay.png"], dpi=110, facecolor=overlay.get_facecolor())
        save_pdf(report, overlay, staged["report.pdf"])
        for name, path in staged.items():
            os.replace(path, folder / name)  # replaces a link itself, never the file it points to
    return {name: folder / name for name in REPORT_FILES}


def overlay_figure(report: Report, volume: Volume, labels: np.ndarray, label_set: LabelSet, size: int = 320):
    """Axial, coronal and sagittal views through the largest lesion (or the middle of the scan),
    segmentation blended in, with a legend of the labels present."""
    centre = report.findings.lesions[0].centroid_ras_mm if report.findings.lesions else None
    colours = label_colours(label_set)
    views = orthogonal_views(volume, centre_ras=centre, size=size, labels=labels, colours=colours)
    figure = Figure(figsize=(11, 4.4), facecolor="black")
    axes = figure.subplots(1, 3)
    for ax, (name, image) in zip(axes, views.items()):
        ax.imshow(image)
        ax.set_title(name, color="white", fontsize=10)
        ax.axis("off")
    present = set(np.unique(labels).tolist())
    handles = [
        Patch(color=np.array(colours[label]) / 255, label=name)
        for label, name in label_set.names.items()
        if label in present and label in colours
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5) or 1, fontsize=8, frameon=False, labelcolor="white")
    where = "through the centre of lesion 1" if centre is not None else "through the middle of the scan"
    figure.suptitle(f"Segmentation overlay, {where} (radiological convention: patient's right on image left)", color="white", fontsize=10)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.16, wspace=0.03)
    return figure


def save_pdf(report: Report, overlay: Figure, path: str | Path) -> Path:
    """Page 1: notice, technique, overlay figure, impression. Page 2: lesion and structure tables,
    the template narrative and provenance."""
    path = Path(path)
    metadata = {"Title": "Structured report (AI draft)", "Subject": report.notice, "Creator": "fm3d"}
    with PdfPages(path, metadata=metadata) as pdf:
        pdf.savefig(_first_page(report, overlay))
        pdf.savefig(_tables_page(report))
    return path


def _first_page(report: Report, overlay: Figure) -> Figure:
    page = Figure(figsize=_A4)
    p, t = report.provenance, report.structured["technique"]
    page.text(0.05, 0.96, "Structured report", fontsize=16, weight="bold")
    page.text(0.05, 0.935, report.notice, fontsize=8.5, color="darkred", wrap=True)
    inputs = ", ".join(Path(path).name for path in p.input_files) if p.input_files else Path(p.input_file).name
    technique = (
        f"Input: {inputs} ({p.input_format}); grid {t['grid']} voxels, "
        f"{' x '.join(f'{v:g}' for v in t['spacing_mm'])} mm, orientation {t['orientation']}.\n"
        f"Contrasts: {t.get('contrasts', 'not stated')}.\n"
        f"Segmentation: {p.model_id} ({p.model_version})" + (", ETTA on" if p.etta else "") + "."
    )
    page.text(0.05, 0.87, _wrap(technique, 110), fontsize=8.5, va="top")
    canvas = FigureCanvasAgg(overlay)
    canvas.draw()
    picture = np.asarray(canvas.buffer_rgba())
    ax = page.add_axes([0.03, 0.47, 0.94, 0.36])
    ax.imshow(picture)
    ax.axis("off")
    page.text(0.05, 0.43, "Impression", fontsize=12, weight="bold")
    impression = "\n".join(_wrap(f"- {line}", 100) for line in report.structured["impression"])
    page.text(0.05, 0.41, impression, fontsize=9.5, va="top")
    return page


def _tables_page(report):
    page = Figure(figsize=_A4)
    s, f = report.structured, report.findings
    y = 0.96
    page.text(0.05, y, "Lesions", fontsize=12, weight="bold")
    lesion_rows = [
        [
            str(row["lesion_id"]),
            _wrap(row["location"], 28),
            f"{row['volume_ml']:.1f}" + (" (incomplete)" if row["incomplete"] else ""),
            "-" if lesion.volume_interval_ml is None else "{:.1f}-{:.1f}".format(*lesion.volume_interval_ml),
            f"{row['longest_diameter_mm']:.1f} x {row['short_axis_mm']:.1f}",
            row["enhancement"],
            f"{row['confidence']:.2f}",
        ]
        for row, lesion in zip(s["findings"]["lesions"], f.lesions)
    ]
    y = _table(
        page, y - 0.015, ["#", "Location", "Vol. (mL)", "Interval (mL)", "Diam. (mm)", "Enhancement", "Conf."],
        lesion_rows or [["-", "no focal lesion", "", "", "", "", ""]], widths=[0.05, 0.31, 0.12, 0.13, 0.14, 0.17, 0.08],
    )
    page.text(0.05, y - 0.02, "Structures", fontsize=12, weight="bold")
    structure_rows = [
        [row["name"], "incomplete (edge)" if row["volume_ml"] is None else format_volume(row["volume_ml"]), format_confidence(structure.confidence)]
        for row, structure in zip(s["findings"]["structures"], f.structures)
    ]
    y = _table(page, y - 0.035, ["Structure", "Volume (mL)", "Confidence"], structure_rows, widths=[0.5, 0.3, 0.2])
    page.text(0.05, y - 0.02, "Narrative (template, from the findings only)", fontsize=12, weight="bold")
    narrative = "\n".join(_wrap(line, 105) for line in report.narrative.splitlines())
    page.text(0.05, y - 0.04, narrative, fontsize=8.5, va="top")
    p = report.provenance
    provenance = (
        f"Model {p.model_id}, {p.model_version}, sha256 {p.model_sha256}, encoder {p.encoder}, label set {p.label_set}. "
        f"Software: {', '.join(f'{k} {v}' for k, v in p.software.items())}. Device {p.device}, {p.threads} threads. "
        f"Timings (s): {', '.join(f'{k} {v:.2f}' for k, v in p.timings_s.items())}. Created {p.created_utc}."
    )
    page.text(0.05, 0.08, _wrap(provenance, 120), fontsize=7, va="top", color="dimgray")
    return page


def _table(page, top: float, header: list[str], rows: list[list[str]], widths: list[float]) -> float:
    """Draw a table whose top edge is at `top` (figure fraction); returns its bottom edge."""
    lines = max(1, *(cell.count("\n") + 1 for row in rows for cell in row))
    height = 0.022 * (len(rows) + 1) * (1 + 0.6 * (lines - 1))
    ax = page.add_axes([0.05, top - height, 0.9, height])
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, colWidths=widths, loc="upper center", cellLoc="left", bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
    return top - height


def _wrap(text: str, width: int) -> str:
    """Each line of `text` wrapped at `width` characters (its own line breaks are kept)."""
    return "\n".join("\n".join(textwrap.wrap(line, width)) or line for line in text.split("\n"))
