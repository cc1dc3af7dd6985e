"""Gradio demo: open a scan (or the bundled example) and see what the package reads from it:
geometry, orientation, and three labelled views with the patient's sides taken from the affine;
then segment it and read the structured report (with its PDF, JSON and mask to download).

Run: .venv/bin/python app.py   (then open the printed local URL)
"""

from __future__ import annotations

import functools
import tempfile

import gradio as gr

from fm.errors import InputError
from fm.examples import example_modality, example_path
from fm.io import READABLE_SUFFIXES, load_volume
from fm.views import orthogonal_views

# One-file formats only: the data file of a two-file .mhd/.nhdr cannot come with a single upload.
UPLOADABLE = [s for s in READABLE_SUFFIXES if s not in (".mhd", ".nhdr")]


def inspect_scan(
    path: str | None, series: float | None = None, frame: float | None = None, modality: str | None = None
):
    """Summary and views for one uploaded file; a bad file becomes a message in the page."""
    if not path:
        raise gr.Error("Upload a scan or press 'Use the example scan'.")
    try:
        volume = load_volume(
            path,
            series=int(series) if series else None,
            frame=int(frame) if frame is not None and frame >= 0 else None,
            modality=modality,
        )
    except InputError as err:
        raise gr.Error(str(err)) from None
    views = orthogonal_views(volume)
    return volume.summary(), views["axial"], views["coronal"], views["sagittal"]


@functools.cache
def reports_folder() -> tempfile.TemporaryDirectory:
    """One folder for every report this app writes, removed when the app exits."""
    return tempfile.TemporaryDirectory(prefix="fm-reports-")


@functools.cache
def report_pipeline():
    """The default segmenter, loaded once on the first report request."""
    from fm.pipeline import ReportPipeline

    return ReportPipeline.from_pretrained()


def report_scan(path: str | None, series: float | None = None, frame: float | None = None, modality: str | None = None):
    """Segment and report one scan: overlay picture, Markdown report, and the report files."""
    from fm.render import write_report_folder

    if not path:
        raise gr.Error("Upload a scan or press 'Use the example scan' first.")
    options = dict(
        series=int(series) if series else None,
        frame=int(frame) if frame is not None and frame >= 0 else None,
        modality=modality,
    )
    try:
        result = report_pipeline()(path, **options)
    except InputError as err:  # the user's scan; anything else is a bug and keeps its traceback
        raise gr.Error(str(err)) from None
    folder = tempfile.mkdtemp(dir=reports_folder().name)
    seg = result.segmentation
    paths = write_report_folder(result.report, result.volume, seg.labels, seg.label_set, folder)
    files = [str(paths[name]) for name in ("report.pdf", "report.json", "report.md", "mask.nii.gz")]
    return str(paths["overlay.png"]), result.report.to_markdown(), files


def build_app() -> gr.Blocks:
    with gr.Blocks(title="fm3d: scan inspector") as demo:
        gr.Markdown(
            "## Scan inspector\nNIfTI, MGZ, NRRD, MHA/MHD, a DICOM file or a .zip of a DICOM series. "
            "Axial and coronal views are radiological (patient's right on the left)."
        )
        with gr.Row():
            upload = gr.File(label="Scan", file_types=UPLOADABLE, type="filepath")
            with gr.Column():
                series = gr.Number(label="DICOM series (1-based; blank for the only one)", precision=0, value=None)
                frame = gr.Number(label="Frame of a 4D file (0-based; -1 for none)", precision=0, value=-1)
                example = gr.Button("Use the example scan")
        with gr.Row():
            axial, coronal, sagittal = (gr.Image(label=name, type="numpy") for name in ("Axial", "Coronal", "Sagittal"))
        summary = gr.JSON(label="What was read")
        outputs = [summary, axial, coronal, sagittal]
        inputs = [upload, series, frame]
        upload.change(inspect_scan, inputs=inputs, outputs=outputs, api_name="inspect")
        gr.on([series.submit, frame.submit], inspect_scan, inputs=inputs, outputs=outputs, api_name=False)
        example.click(
            lambda: inspect_scan(str(example_path()), modality=example_modality()), outputs=outputs, api_name="example"
        )
        gr.Markdown(
            "## Segment and report\nAn AI draft, not for clinical use: every number is measured from the segmentation shown."
        )
        with gr.Row():
            run_report = gr.Button("Segment and report the uploaded scan", variant="primary")
            run_example_report = gr.Button("Segment and report the example scan")
        overlay = gr.Image(label="Segmentation overlay", type="filepath")
        report_text = gr.Markdown()
        report_files = gr.File(label="Report files", file_count="multiple")
        report_outputs = [overlay, report_text, report_files]
        run_report.click(report_scan, inputs=inputs, outputs=report_outputs, api_name="report")
        run_example_report.click(
            lambda: report_scan(str(example_path()), modality=example_modality()),
            outputs=report_outputs,
            api_name="report_example",
        )
    return demo


if __name__ == "__main__":
    build_app().queue(default_concurrency_limit=2, max_size=16).launch()
