"""A report's pictures and pages: the three-view overlay with a legend (overlay.png) and the PDF (the
same views and legend, then the tables; matplotlib only, no system binaries). fm.pipeline.report_folder
writes them beside report.json, report.md and the mask.

Every picture states what the structured report states: a volume withheld there (a structure cut by
the image edge) is withheld in each, and the narrative ends on the same impression.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from scipy import ndimage

from fm.core.findings import Findings
from fm.core.io import Volume
from fm.core.labels import LabelSet
from fm.report.document import Report, format_confidence, format_volume
from fm.report.views import label_colours, nearest_voxel, orthogonal_views

# Figures are made as matplotlib.figure.Figure objects, not through pyplot: no global figure
# registry, so concurrent reports (the Gradio app) cannot close each other's figures, and no
# backend is imposed on the caller.

_A4 = (8.27, 11.69)
#: Legend and caption text of the overlay (points): legible on paper and in overlay.png.
LEGEND_FONT_PT = 10


@dataclasses.dataclass(frozen=True)
class Overlay:
    """The three views of a report's figure and what a reader needs to read them."""

    views: dict[str, np.ndarray]  # axial, coronal, sagittal: RGB images
    legend: list[tuple[str, tuple[int, int, int], bool]]  # (label name, colour, outlined) of the labels present
    centre_ras_mm: tuple[float, float, float]  # the voxel centre all three planes pass through
    centre_is: str  # what that point is, e.g. "the centroid of lesion 1 (the largest)"


def views_centre(findings: Findings, volume: Volume, labels: np.ndarray) -> tuple[tuple[float, float, float], str]:
    """The point (RAS mm, the centre of a voxel of the scan's grid) the three views pass through, and
    what it is: the centroid of the largest lesion; without one, the centre of mass of everything
    segmented (for a brain, near the ventricles, with both hemispheres in the axial and coronal
    views); with nothing segmented, the middle of the scan."""
    if findings.lesions:
        point, what = findings.lesions[0].centroid_ras_mm, "the centroid of lesion 1 (the largest)"
    elif np.any(labels):
        point, what = volume.voxel_to_ras(ndimage.center_of_mass(labels > 0)), "the centre of the segmentation"
    else:
        point, what = volume.voxel_to_ras((np.array(volume.shape) - 1) / 2), "the middle of the scan"
    return tuple(float(v) for v in volume.voxel_to_ras(nearest_voxel(volume, point))), what


def make_overlay(
    findings: Findings, volume: Volume, labels: np.ndarray, label_set: LabelSet, size: int = 480
) -> Overlay:
    """Axial, coronal and sagittal views through `views_centre`, the segmentation blended in (lesions
    outlined), with a legend of the labels present."""
    centre, what = views_centre(findings, volume, labels)
    colours = label_colours(label_set)
    emphasised = tuple(label_set.lesion)
    views = orthogonal_views(
        volume, centre_ras=centre, size=size, labels=labels, colours=colours, emphasised=emphasised
    )
    present = set(np.unique(labels).tolist())
    legend = [
        (name, colours[label], label in emphasised)
        for label, name in label_set.names.items()
        if label in present and label in colours
    ]
    return Overlay(views, legend, centre, what)


def overlay_figure(overlay: Overlay) -> Figure:
    """overlay.png: the views and legend on black, as on the PDF's first page."""
    figure = Figure(figsize=(8.4, 8.4), facecolor="black")
    _draw_overlay(figure, (0.0, 0.0, 1.0, 1.0), overlay)
    return figure


def _draw_overlay(figure: Figure, rect: tuple[float, float, float, float], overlay: Overlay) -> None:
    """Views in a 2 x 2 grid on black inside `rect` (left, bottom, width, height in figure fractions):
    axial and coronal above, sagittal and the legend, with the planes' centre, below."""
    left, bottom, width, height = rect
    figure.patches.append(
        Rectangle((left, bottom), width, height, transform=figure.transFigure, color="black", zorder=-1)
    )
    cell_w, cell_h = width / 2, height / 2
    title_h = 0.045 * cell_h  # room for each view's name above it
    for (row, col), name in zip(((0, 0), (0, 1), (1, 0)), ("axial", "coronal", "sagittal")):
        ax = figure.add_axes([left + col * cell_w, bottom + (1 - row) * cell_h, cell_w, cell_h - title_h])
        ax.imshow(overlay.views[name])
        ax.set_title(name, color="white", fontsize=11, pad=2)
        ax.axis("off")
    ax = figure.add_axes([left + cell_w, bottom, cell_w, cell_h])
    ax.axis("off")
    x, y, z = overlay.centre_ras_mm
    ax.text(
        0.06,
        0.97,
        f"Planes through RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm,\n{overlay.centre_is}.\n"
        "Axial and coronal: the patient's right\non the image's left.",
        color="white",
        fontsize=LEGEND_FONT_PT,
        va="top",
        transform=ax.transAxes,
    )
    handles = [
        Patch(facecolor=np.array(colour) / 255, edgecolor="white" if outlined else "none", linewidth=1.5, label=name)
        for name, colour, outlined in overlay.legend
    ]
    if handles:
        ax.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(0.03, 0.02),
            fontsize=LEGEND_FONT_PT,
            frameon=False,
            labelcolor="white",
        )


def save_pdf(report: Report, overlay: Overlay, path: str | Path) -> Path:
    """Page 1: notice, technique, the overlay's views and legend, impression. Page 2: lesion and
    structure tables, the template narrative and provenance."""
    path = Path(path)
    metadata = {"Title": "Structured report (AI draft)", "Subject": report.notice, "Creator": "fm3d"}
    with PdfPages(path, metadata=metadata) as pdf:
        pdf.savefig(_first_page(report, overlay))
        pdf.savefig(_tables_page(report))
    return path


def _first_page(report: Report, overlay: Overlay) -> Figure:
    page = Figure(figsize=_A4)
    p, t = report.provenance, report.structured["technique"]
    inputs = ", ".join(Path(path).name for path in p.input_files) if p.input_files else Path(p.input_file).name
    technique = (
        f"Input: {inputs} ({p.input_format}); grid {t['grid']} voxels, "
        f"{' x '.join(f'{v:g}' for v in t['spacing_mm'])} mm, orientation {t['orientation']}.\n"
        f"Contrasts: {t.get('contrasts', 'not stated')}.\n"
        f"Segmentation: {p.model_id} ({p.model_version})" + (", ETTA on" if p.etta else "") + "."
    )
    y = _text_block(page, 0.965, "Structured report", fontsize=16, weight="bold")
    y = _text_block(page, y - 0.008, _wrap(report.notice, 105), fontsize=9, color="darkred")
    y = _text_block(page, y - 0.008, _wrap(technique, 105), fontsize=9)
    # A square panel the width of the text block, below the header: four cells of 3.7 inches.
    panel_h = 0.9 * _A4[0] / _A4[1]
    _draw_overlay(page, (0.05, y - 0.01 - panel_h, 0.9, panel_h), overlay)
    y = _text_block(page, y - 0.025 - panel_h, "Impression", fontsize=12, weight="bold")
    impression = "\n".join(_wrap(f"- {line}", 95) for line in report.structured["impression"])
    _text_block(page, y - 0.005, impression, fontsize=10)
    return page


def _text_block(page: Figure, top: float, text: str, fontsize: float, **style) -> float:
    """Write `text` with its top at `top` (figure fraction); returns where its last line ends."""
    page.text(0.05, top, text, fontsize=fontsize, va="top", linespacing=1.25, **style)
    line_height = 1.25 * fontsize / 72 / _A4[1]
    return top - (text.count("\n") + 1) * line_height


def _tables_page(report):
    page = Figure(figsize=_A4)
    s, f = report.structured, report.findings
    y = 0.96
    page.text(0.05, y, "Lesions", fontsize=12, weight="bold")
    lesion_rows = [
        [
            str(row["lesion_id"]),
            _wrap(row["location"], 28),
            f"{row['volume_ml']:.1f}" + ("\n(incomplete)" if row["incomplete"] else ""),
            "-" if lesion.volume_interval_ml is None else "{:.1f}-{:.1f}".format(*lesion.volume_interval_ml),
            f"{row['longest_diameter_mm']:.1f} x {row['short_axis_mm']:.1f}",
            row["enhancement"],
            f"{row['confidence']:.2f}",
        ]
        for row, lesion in zip(s["findings"]["lesions"], f.lesions)
    ]
    y = _table(
        page,
        y - 0.015,
        ["#", "Location", "Vol. (mL)", "Interval (mL)", "Diam. (mm)", "Enhancement", "Conf."],
        lesion_rows or [["-", "no focal lesion", "", "", "", "", ""]],
        widths=[0.05, 0.31, 0.12, 0.13, 0.14, 0.17, 0.08],
    )
    page.text(0.05, y - 0.02, "Structures", fontsize=12, weight="bold")
    structure_rows = [
        [row["name"], format_volume(row["volume_ml"]), format_confidence(structure.confidence)]
        for row, structure in zip(s["findings"]["structures"], f.structures)
    ]
    y = _table(page, y - 0.035, ["Structure", "Volume (mL)", "Confidence"], structure_rows, widths=[0.45, 0.4, 0.15])
    heading, shown = report.shown_narrative
    page.text(0.05, y - 0.02, heading, fontsize=12, weight="bold")
    narrative = "\n".join(_wrap(line, 105) for line in shown.splitlines())
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
    table = ax.table(
        cellText=rows, colLabels=header, colWidths=widths, loc="upper center", cellLoc="left", bbox=[0, 0, 1, 1]
    )
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
