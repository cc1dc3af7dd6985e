"""The Gradio demo served on loopback and driven through gradio_client, as a browser would."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import phantoms  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from PIL import Image  # noqa: E402

from app import build_app  # noqa: E402
from fm.examples import example_path  # noqa: E402
from fm.io import load_volume  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client():
    demo = build_app()
    port = free_port()
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_uploaded_scan_gives_summary_and_three_views(client, tmp_path):
    array, affine = phantoms.relayout(*phantoms.ras_reference(), "LPS")
    scan = phantoms.write_nifti(tmp_path / "upload.nii.gz", array, affine)
    summary, axial, coronal, sagittal = client.predict(handle_file(str(scan)), None, -1, api_name="/inspect")
    assert summary["shape"] == [48, 40, 36]
    assert summary["source_orientation"] == "LPS"
    for view in (axial, coronal, sagittal):
        assert np.asarray(Image.open(view)).ndim == 3


def test_bad_upload_shows_the_problem(client, tmp_path):
    fake = tmp_path / "broken.nii"
    fake.write_bytes(b"not an image" * 40)
    with pytest.raises(AppError, match="not a NIfTI file"):
        client.predict(handle_file(str(fake)), None, -1, api_name="/inspect")


def test_series_and_frame_choices_reach_the_loader(client, tmp_path):
    reference, affine = phantoms.ras_reference()
    study = tmp_path / "study"
    phantoms.write_series(study / "a", phantoms.dicom_slices(reference, affine, description="first"))
    phantoms.write_series(
        study / "b", phantoms.dicom_slices(*phantoms.relayout(reference, affine, "PIR"), description="second")
    )
    archive = Path(shutil.make_archive(str(tmp_path / "study"), "zip", study))
    with pytest.raises(AppError, match="holds 2 DICOM series"):
        client.predict(handle_file(str(archive)), None, -1, api_name="/inspect")
    summary, *_ = client.predict(handle_file(str(archive)), 2, -1, api_name="/inspect")
    assert summary["meta"]["SeriesDescription"] == "second"

    bold = phantoms.write_nifti(tmp_path / "bold.nii.gz", np.stack([reference, reference + 1], axis=-1), affine)
    summary, *_ = client.predict(handle_file(str(bold)), None, 1, api_name="/inspect")
    assert summary["intensity"]["max"] == float(reference.max() + 1)


def test_example_button(client):
    summary, *_ = client.predict(api_name="/example")
    assert summary["shape"] == list(load_volume(example_path()).shape)
    assert summary["modality"] == "MR"


def test_report_on_the_example_shows_overlay_report_and_files(client):
    overlay, markdown, files = client.predict(api_name="/report_example")
    assert np.asarray(Image.open(overlay)).shape[2] in (3, 4)
    assert "not for clinical use" in markdown and "## Impression" in markdown
    assert sorted(Path(f).name for f in files) == ["mask.nii.gz", "report.json", "report.md", "report.pdf"]
    assert load_volume(next(f for f in files if f.endswith("mask.nii.gz"))).shape == load_volume(example_path()).shape


def test_report_of_a_bad_upload_shows_the_problem(client, tmp_path):
    fake = tmp_path / "broken.nii"
    fake.write_bytes(b"not an image" * 40)
    with pytest.raises(AppError, match="not a NIfTI file"):
        client.predict(handle_file(str(fake)), None, -1, api_name="/report")
