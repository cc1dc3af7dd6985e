"""The Gradio report demo served on loopback and driven through gradio_client, as visitors would:
the report it shows is fm report's, two visitors never see each other's data, bad uploads give a
message in the page (no server path) and clear what was shown, and no file outside the app's
own outputs is served."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import phantoms
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402

from fm.core.examples import example_contrasts, example_paths  # noqa: E402
from fm.core.io import load_volume  # noqa: E402
from fm.demo.page import DemoSettings, launch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    demo = launch(DemoSettings(max_upload_mb=64), port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def analyse(client: Client, files: list[Path], contrasts: str = ""):
    return client.predict([handle_file(str(f)) for f in files], contrasts, False, api_name="/analyse")


def shown(result) -> dict:
    """The outputs of an analysis, by name."""
    names = ["status", "axial", "coronal", "sagittal", "s_axial", "s_coronal", "s_sagittal"]
    names += ["legend", "table", "report", "narrative", "files", "chat"]
    return dict(zip(names, result))


@pytest.fixture(scope="module")
def example_result(server):
    client = Client(server, verbose=False)
    return client, shown(analyse(client, list(example_paths()), ",".join(example_contrasts())))


def test_the_uploaded_example_is_reported_as_fm_report_reports_it(example_result, example_reports):
    from fm.core.findings import Findings

    _, result = example_result
    assert "not for clinical use" in result["status"] and "right parietal lobe" in result["status"]
    report_json = next(f for f in result["files"] if f.endswith("report.json"))
    findings = json.loads(Path(report_json).read_text())["findings"]
    expected = json.loads((example_reports / "example" / "report.json").read_text())["findings"]
    assert findings["lesions"] == expected["lesions"] and findings["structures"] == expected["structures"]
    names = sorted(Path(f).name for f in result["files"])
    assert names == ["mask.nii.gz", "report.fhir.json", "report.json", "report.md", "report.pdf"]
    # the views open through the largest lesion, and the table lists it first with its units
    lesion = Findings.from_json(json.dumps(expected)).lesions[0]
    assert result["table"]["headers"][3] == "volume (mL)"
    assert result["table"]["data"][0][:4] == ["lesion 1", "right", lesion.region, round(lesion.volume_ml, 1)]
    for view in ("axial", "coronal", "sagittal"):
        assert result[view] is not None
    assert "enhancing tumour" in result["legend"] and "Faithfulness check" in result["narrative"]
    # the page and the downloads name the uploads by file name, never by a path on the server
    assert "/tmp" not in result["report"] and "example_brain_t1.nii.gz" in result["report"]
    provenance = json.loads(Path(report_json).read_text())["provenance"]
    assert provenance["input_files"] == [Path(p).name for p in example_paths()]


def test_two_visitors_do_not_see_each_others_scans(server, example_result, tmp_path):
    first, result = example_result
    second = Client(server, verbose=False)
    # the second visitor has analysed nothing: there are no views to draw for them
    assert second.predict(0, 0, 0, "Auto (0.5-99.5 %)", 0.35, False, api_name="/views") == (None, None, None)
    bad = tmp_path / "notes.nii.gz"
    bad.write_bytes(b"%PDF-1.4 not a scan" * 20)
    refused = shown(analyse(second, [bad]))
    assert refused["table"]["data"] in ([], [[""] * 6]) and "Could not report" in refused["status"]
    # ... and the first visitor's results are still theirs
    assert all(
        view is not None for view in first.predict(120, 100, 80, "Auto (0.5-99.5 %)", 0.35, False, api_name="/views")
    )
    again = first.predict(120, 100, 80, "Contrast (2-98 %)", 0.0, False, api_name="/views")
    assert all(view is not None for view in again)  # a window and opacity of their own, on their own scan


def test_questions_about_the_scan_are_answered_from_its_measurements(example_result):
    client, _ = example_result
    history, cleared = client.predict("Which side is the largest lesion on?", [], api_name="/ask")
    assert cleared == ""
    content = history[-1]["content"]  # Gradio 6 sends a message as a list of parts
    text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)
    assert history[-1]["role"] == "assistant" and "right" in text.lower()


def write_bad_uploads(folder: Path) -> dict[str, Path]:
    """The uploads a demo meets: each must be refused with a message that says why."""
    folder.mkdir()
    pdf = folder / "report.nii.gz"
    pdf.write_bytes(b"%PDF-1.4\n" + b"0" * 2000)
    truncated = folder / "truncated.nii.gz"
    truncated.write_bytes(Path(example_paths()[0]).read_bytes()[:5000])
    flat = folder / "photo.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((64, 64, 1), dtype=np.float32), np.eye(4)), flat)
    bomb = phantoms.huge_header_nifti(folder / "bomb.nii.gz", (10000, 10000, 10000))
    example = load_volume(example_paths()[0])
    ct = folder / "head_ct.nii.gz"
    nib.save(nib.Nifti1Image((example.array * 4 - 1000).astype(np.float32), example.affine), ct)
    return {"a PDF": pdf, "a truncated file": truncated, "a 2D image": flat, "10^12 voxels": bomb, "a CT": ct}


def test_bad_uploads_give_a_message_and_clear_the_page(example_result, tmp_path, caplog):
    client, before = example_result  # this visitor's example analysis is on the page
    assert before["axial"] is not None
    caplog.set_level("INFO", logger="fm.app")
    for what, upload in write_bad_uploads(tmp_path / "bad").items():
        result = shown(analyse(client, [upload]))
        assert result["status"].startswith("**Could not report this scan.**"), what
        assert upload.name in result["status"], what  # the visitor's own file name ...
        assert "/tmp" not in result["status"] and str(tmp_path) not in result["status"], what  # ... no server path
        assert result["axial"] is None and result["files"] in (None, []) and result["report"] == "", what
    assert "Hounsfield" in result["status"] or "CT" in result["status"]
    nothing = shown(client.predict([], "", False, api_name="/analyse"))
    assert "Upload a scan" in nothing["status"]
    # the console: one line per refusal, no traceback, no file name (it may name the patient)
    refusals = [r for r in caplog.records if r.name == "fm.app"]
    assert len(refusals) == 5 and all(r.levelname == "INFO" and r.exc_info is None for r in refusals)
    assert not any(upload.name in r.getMessage() for r in refusals for upload in (tmp_path / "bad").iterdir())


def test_an_upload_above_the_limit_is_refused(server, tmp_path):
    big = tmp_path / "big.nii.gz"
    with open(big, "wb") as handle:
        handle.truncate(65 * 1024 * 1024)  # the test server allows 64 MB
    with pytest.raises(Exception, match="(?i)too large|maximum|size"):
        analyse(Client(server, verbose=False), [big])


def test_only_the_apps_own_files_are_served(server):
    for target in ("/etc/passwd", str(ROOT / "pyproject.toml"), "../../../../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server}gradio_api/file={target}", timeout=10)
        assert refused.value.code in (403, 404)


def test_app_help_starts_no_server():
    done = subprocess.run([sys.executable, "app.py", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and "--max-upload-mb" in done.stdout and "--concurrency" in done.stdout


def test_a_session_folder_is_emptied_by_a_new_analysis_and_removed_with_the_session(tmp_path):
    from fm.demo.visitor import DemoSession

    session = DemoSession(tmp_path)
    (session.folder / "report").mkdir()
    (session.folder / "report" / "report.pdf").write_bytes(b"%PDF")
    session.clear()  # what a new upload does first, whether or not it succeeds
    assert session.folder.is_dir() and not any(session.folder.iterdir()) and session.analysis is None
    session.close()  # what the state's delete_callback does
    assert not session.folder.exists()


def test_a_click_on_a_finding_moves_the_views_to_it(example_reports):
    """What the measurements table's select event does, on the example's report and mask."""
    from fm.core.labels import BRAIN_TUMOUR
    from fm.demo.visitor import VIEW_NAMES, Analysis, DemoSession
    from fm.report.document import Report
    from fm.report.views import view_axes, view_slices

    folder = example_reports / "example"
    volume = load_volume(example_paths()[0])
    labels = load_volume(folder / "mask.nii.gz").array.astype(int)
    report = Report.from_json((folder / "report.json").read_text())
    session = DemoSession(folder.parent)
    session.analysis = Analysis([volume], labels, BRAIN_TUMOUR, report, {}, {})
    lesion = report.findings.lesions[0]
    assert session.slices_at_row(0) == view_slices(volume, lesion.centroid_ras_mm) == session.start_slices()
    ventricles = next(i for i, s in enumerate(report.findings.structures) if s.name == "lateral ventricles")
    slices = session.slices_at_row(len(report.findings.lesions) + ventricles)
    axial_axis = view_axes(volume)["axial"]
    through = np.take(labels, slices["axial"], axis=axial_axis)
    assert (through == report.findings.structures[ventricles].label_id).any()  # the slice cuts the ventricles
    assert session.slices_at_row(99) is None
    assert len(session.views(slices, "Auto (0.5-99.5 %)", 0.35)) == len(VIEW_NAMES)
    session.close()
