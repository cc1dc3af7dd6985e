"""What one visitor of the Gradio demo (app.py) has: their scans, segmentation, report, report files
and conversation, in a folder of their own that is removed when their session ends. Nothing here
imports Gradio, so the demo's logic is tested as plain Python."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fm.core.errors import InputError, InputFileError
from fm.core.findings import Findings
from fm.core.labels import LabelMap
from fm.report.views import default_window, label_colours, plane_view, view_axes, view_slices

#: window presets: name -> intensity percentiles (low, high)
WINDOWS = {"Auto (0.5-99.5 %)": (0.5, 99.5), "Contrast (2-98 %)": (2.0, 98.0), "Full range": (0.0, 100.0)}
VIEW_NAMES = ("axial", "coronal", "sagittal")
NOTICE = "AI draft, not for clinical use: every number below is measured from the segmentation shown."


def public_message(error: InputError, uploads: list[Path]) -> str:
    """The error as a visitor may read it: the uploaded file by its own name, no server path."""
    message = f"{error.problem}" if isinstance(error, InputFileError) else str(error)
    for upload in uploads:
        message = message.replace(str(upload), upload.name)
    if isinstance(error, InputFileError):
        names = {upload.name for upload in uploads}
        name = Path(error.path).name
        message = f"{name if name in names else 'the upload'}: {message}"
    return message


def by_file_name(report):
    """The report naming its inputs by file name only: the page and the downloads show no server path."""
    p = report.provenance
    named = p.model_copy(
        update={
            "input_file": Path(p.input_file).name,
            "input_files": [Path(f).name for f in p.input_files],
            "resampled_inputs": [Path(f).name for f in p.resampled_inputs],
        }
    )
    return report.model_copy(update={"provenance": named})


@dataclasses.dataclass
class Analysis:
    """One analysed session: the scans, their segmentation and report, and the files written."""

    volumes: list
    labels: np.ndarray  # on the first scan's grid
    label_set: object
    report: object  # fm.report.document.Report
    files: dict[str, Path]
    windows: dict[str, tuple[float, float]]

    @property
    def volume(self):
        return self.volumes[0]

    @property
    def label_map(self) -> LabelMap:
        return LabelMap(self.labels, self.volume.affine, self.label_set)

    @property
    def findings(self) -> Findings:
        return self.report.findings


def _square(image: np.ndarray, size: int, margin: int = 12) -> np.ndarray:
    """The view centred on a black square canvas with a margin: the page shows the three views at
    one size, and no side label is cut by its frame."""
    size += 2 * margin
    canvas = np.zeros((size, size, 3), np.uint8)
    top, left = (size - image.shape[0]) // 2, (size - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


class DemoSession:
    """One visitor's state, kept in a gr.State: created on their first request, closed (folder
    removed) when Gradio deletes the state at the end of their session."""

    def __init__(self, root: Path):
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.analysis: Analysis | None = None
        self.features = None  # the report model's encoding of the scan, made on the first question
        self.history: list[tuple[str, str]] = []

    def clear(self) -> None:
        """Forget the last analysis (a new upload starts clean, failed or not)."""
        self.analysis, self.features, self.history = None, None, []
        for child in self.folder.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def analyse(self, paths: list[Path], contrasts, pipeline, narrate=None, progress=None) -> Analysis:
        """Segment, measure and report the scans of one session; write the report files here.
        narrate(report, volumes, label_map) -> report with the language model's narrative, or None."""
        from fm.clinical.outputs import ClinicalRequest, check_dicom_source
        from fm.pipeline.report_folder import write_report_folder

        self.clear()
        result = pipeline([str(p) for p in paths], progress=progress, contrasts=contrasts)
        report = by_file_name(result.report)
        if narrate is not None:
            if progress:
                progress("narrative")
            report = narrate(report, result.session.volumes, result.label_map)
        if progress:
            progress("write")
        seg = result.segmentation
        # the clinical outputs too: FHIR always, DICOM SEG and SR when the first scan is a DICOM
        # series they can point at (a series they cannot is still reported, without them)
        clinical = ClinicalRequest(fhir=True).outputs_for(paths[0])
        if clinical.dicom:
            try:
                check_dicom_source(paths[0])
            except InputError:
                clinical = dataclasses.replace(clinical, dicom=False)
        files = write_report_folder(
            report, result.volume, seg.labels, seg.label_set, self.folder / "report", clinical=clinical
        )
        volumes = list(result.session.volumes) if result.session else [result.volume]
        # every preset's bounds from one pass over the voxels
        bounds = np.percentile(result.volume.array, [q for pair in WINDOWS.values() for q in pair])
        windows = {name: (float(bounds[2 * i]), float(bounds[2 * i + 1])) for i, name in enumerate(WINDOWS)}
        self.analysis = Analysis(volumes, seg.labels, seg.label_set, report, files, windows)
        return self.analysis

    # -- views --------------------------------------------------------------------------------

    def slice_counts(self) -> dict[str, int]:
        volume = self.analysis.volume
        return {name: volume.shape[axis] for name, axis in view_axes(volume).items()}

    def start_slices(self) -> dict[str, int]:
        """Through the largest lesion's centroid, or the middle of the scan when there is none."""
        lesions = self.analysis.findings.lesions
        centre = max(lesions, key=lambda lesion: lesion.volume_ml).centroid_ras_mm if lesions else None
        return view_slices(self.analysis.volume, centre)

    def slices_at_row(self, row: int) -> dict[str, int] | None:
        """The slices through the measurements table's `row`: a lesion's centroid or a structure's
        centre of mass (None when the structure has no voxels)."""
        findings = self.analysis.findings
        if row < len(findings.lesions):
            return view_slices(self.analysis.volume, findings.lesions[row].centroid_ras_mm)
        structures = findings.structures
        if row - len(findings.lesions) >= len(structures):
            return None
        structure = structures[row - len(findings.lesions)]
        voxels = np.argwhere(self.analysis.labels == structure.label_id)
        if not len(voxels):
            return None
        centre = self.analysis.volume.voxel_to_ras(voxels.mean(axis=0))
        return view_slices(self.analysis.volume, centre)

    def colours(self, tissue: bool) -> dict[int, tuple[int, int, int]]:
        """Overlay colours: the lesion labels, and with `tissue` every structure too."""
        colours = label_colours(self.analysis.label_set)
        return colours if tissue else {k: v for k, v in colours.items() if k in self.analysis.label_set.lesion}

    def views(
        self, slices: dict[str, int], window: str, opacity: float, tissue: bool = False, size: int = 320
    ) -> list[np.ndarray]:
        analysis = self.analysis
        colours = self.colours(tissue)
        emphasised = tuple(analysis.label_set.lesion)
        shown = analysis.windows.get(window) or default_window(analysis.volume)
        return [
            _square(
                plane_view(
                    analysis.volume,
                    name,
                    slices[name],
                    size,
                    analysis.labels,
                    colours,
                    emphasised,
                    shown,
                    opacity,
                ),
                size,
            )
            for name in VIEW_NAMES
        ]

    def legend(self, tissue: bool = False) -> list[tuple[str, tuple[int, int, int]]]:
        """(name, colour) of each label present in the segmentation and drawn."""
        analysis = self.analysis
        present = set(np.unique(analysis.labels).tolist())
        colours = self.colours(tissue)
        return [
            (name, colours[label])
            for label, name in analysis.label_set.names.items()
            if label in present and label in colours
        ]

    # -- tables ---------------------------------------------------------------------------------

    def measurements(self) -> list[list]:
        """One row per lesion, then per structure: what, side, region, volume (mL), diameters (mm)."""
        findings = self.analysis.findings
        rows = []
        for lesion in findings.lesions:
            rows.append(
                [
                    f"lesion {lesion.lesion_id}",
                    lesion.laterality.value,
                    lesion.region,
                    round(lesion.volume_ml, 1),
                    round(lesion.longest_diameter_mm, 1),
                    round(lesion.short_axis_mm, 1),
                ]
            )
        for structure in findings.structures:
            volume = "cut by the image edge" if structure.volume_ml is None else round(structure.volume_ml, 1)
            rows.append([structure.name, "", "", volume, "", ""])
        return rows
