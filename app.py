"""Gradio demo: open a scan (or the bundled example) and see what the package reads from it:
geometry, orientation, and three labelled views with the patient's sides taken from the affine.

Run: .venv/bin/python app.py   (then open the printed local URL)
"""

from __future__ import annotations

import gradio as gr

from fm.errors import InputFileError
from fm.examples import example_modality, example_path
from fm.io import READABLE_SUFFIXES, load_volume
from fm.views import orthogonal_views


def inspect_scan(path: str | None, modality: str | None = None):
    """Summary and views for one uploaded file; a bad file becomes a message in the page."""
    if not path:
        raise gr.Error("Upload a scan or press 'Use the example scan'.")
    try:
        volume = load_volume(path, modality=modality)
    except InputFileError as err:
        raise gr.Error(str(err)) from None
    views = orthogonal_views(volume)
    return volume.summary(), views["axial"], views["coronal"], views["sagittal"]


def build_app() -> gr.Blocks:
    with gr.Blocks(title="fm3d: scan inspector") as demo:
        gr.Markdown(
            "## Scan inspector\nNIfTI, MGZ, NRRD, MHA/MHD, a DICOM file or a .zip of a DICOM series. "
            "Axial and coronal views are radiological (patient's right on the left)."
        )
        with gr.Row():
            upload = gr.File(label="Scan", file_types=list(READABLE_SUFFIXES), type="filepath")
            example = gr.Button("Use the example scan")
        with gr.Row():
            axial, coronal, sagittal = (gr.Image(label=name, type="numpy") for name in ("Axial", "Coronal", "Sagittal"))
        summary = gr.JSON(label="What was read")
        outputs = [summary, axial, coronal, sagittal]
        upload.change(inspect_scan, inputs=upload, outputs=outputs, api_name="inspect")
        example.click(lambda: inspect_scan(str(example_path()), example_modality()), outputs=outputs, api_name="example")
    return demo


if __name__ == "__main__":
    build_app().queue(default_concurrency_limit=2, max_size=16).launch()
