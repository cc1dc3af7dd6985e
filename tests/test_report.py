"""The report pipeline with the bundled default segmenter: a scan with known findings gets the
right side and volume in every output, the files are readable, the mask lands on the scan's own
grid, structures cut by the image edge are incomplete (never 0), and nothing is overwritten."""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pypdf
import pytest
from PIL import Image

import phantoms
from fm.errors import InputFileError
from fm.examples import example_path
from fm.findings import Findings
from fm.io import load_volume, volume_from_array
from fm.labels import BRAIN_TUMOUR
from fm.measure import measure
from fm.pipeline import STAGES, ReportPipeline
from fm.render import REPORT_FILES, write_report_folder
from fm.report import NOTICE, Report

#: The example's one lesion, from its ground truth (fm/data/example_brain_t1_findings.json).
TRUTH = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
VOLUME_TOLERANCE = 0.25  # relative; the default model's OOD median error is in the closing note


@pytest.fixture(scope="module")
def pipeline():
    return ReportPipeline.from_pretrained()


@pytest.fixture(scope="module")
def example(pipeline):
    started = time.perf_counter()
    result = pipeline(example_path())
    result.wall_s = time.perf_counter() - started
    return result


def largest_lesion(report: Report):
    assert report.findings.lesions, report.narrative
    return report.findings.lesions[0]


def test_example_report_finds_the_right_parietal_lesion_with_its_volume(example):
    truth = TRUTH.lesions[0]
    lesion = largest_lesion(example.report)
    assert lesion.laterality.value == "right" == truth.laterality.value
    assert abs(lesion.volume_ml - truth.volume_ml) <= VOLUME_TOLERANCE * truth.volume_ml
    assert np.linalg.norm(np.subtract(lesion.centroid_ras_mm, truth.centroid_ras_mm)) < 10.0
    assert lesion.volume_interval_ml[0] <= lesion.volume_ml + 0.05 and lesion.volume_interval_ml[1] >= lesion.volume_ml - 0.05
    assert 0.5 < lesion.confidence <= 1.0
    assert "right" in example.report.structured["impression"][0]
    assert f"{lesion.volume_ml:.1f} mL" in example.report.narrative
    assert "left" not in example.report.structured["findings"]["lesions"][0]["location"]


def test_a_mirrored_scan_stored_in_another_orientation_says_left(pipeline, tmp_path):
    scan = load_volume(example_path())
    mirrored = scan.array[::-1].copy()  # the array is held RAS: flipping x puts the lesion on the left
    path = phantoms.write_nifti(tmp_path / "mirrored_pir.nii.gz", *phantoms.relayout(mirrored, scan.affine, "PIR"))
    report = pipeline(path).report
    lesion = largest_lesion(report)
    assert lesion.laterality.value == "left"
    grid_centre_x = scan.voxel_to_ras((np.array(scan.shape) - 1) / 2)[0]
    mirrored_truth = np.array(TRUTH.lesions[0].centroid_ras_mm) * [-1, 1, 1] + [2 * grid_centre_x, 0, 0]
    assert np.linalg.norm(np.subtract(lesion.centroid_ras_mm, mirrored_truth)) < 10.0
    assert abs(lesion.volume_ml - TRUTH.lesions[0].volume_ml) <= VOLUME_TOLERANCE * TRUTH.lesions[0].volume_ml
    assert report.findings.geometry.orientation == "PIR"
    assert "left" in report.structured["impression"][0]


def test_provenance_says_what_ran_and_how_long_each_stage_took(example, pipeline):
    p = example.report.provenance
    assert list(p.timings_s) == [s for s in STAGES if s != "report"]
    assert 0 < p.timings_s["segment"] and sum(p.timings_s.values()) <= example.wall_s
    assert p.model_id == "fm3d/default-segmenter" and p.model_sha256 == pipeline.model.sha256
    assert p.reoriented and p.resampled and p.network_spacing_mm == (1.5, 1.5, 1.5)  # LAS 1 mm scan
    assert p.input_file == str(example_path()) and p.device == "cpu" and not p.etta
    assert {"fm3d", "torch", "monai"} <= set(p.software)
    assert example.report.notice == NOTICE and "not for clinical use" in NOTICE


def test_report_files_are_written_readable_and_on_the_scans_grid(example, tmp_path):
    report, volume, seg = example.report, example.volume, example.segmentation
    paths = write_report_folder(report, volume, seg.labels, seg.label_set, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == sorted(REPORT_FILES)

    assert Report.from_json(paths["report.json"].read_text()) == report
    assert json.loads(paths["report.json"].read_text())["schema_version"] == "1.0"

    markdown = paths["report.md"].read_text()
    lesion = report.structured["findings"]["lesions"][0]
    assert NOTICE in markdown and lesion["location"] in markdown and f"| {lesion['volume_ml']:.1f} |" in markdown

    pdf = pypdf.PdfReader(paths["report.pdf"])
    text = " ".join(page.extract_text() for page in pdf.pages)
    assert len(pdf.pages) == 2
    assert "not for clinical use" in text and lesion["location"] in text and f"{lesion['volume_ml']:.1f}" in text

    overlay = Image.open(paths["overlay.png"])
    assert overlay.size[0] > 600 and overlay.mode in ("RGB", "RGBA")

    mask = nib.load(paths["mask.nii.gz"])
    source = nib.load(example_path())
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), volume.with_array(seg.labels).to_source_layout())
    assert np.asarray(mask.dataobj).dtype == np.uint8


def test_report_files_already_there_are_kept_unless_overwrite(example, tmp_path):
    seg = example.segmentation
    write_report_folder(example.report, example.volume, seg.labels, seg.label_set, tmp_path)
    before = (tmp_path / "report.md").read_text() + "user notes"
    (tmp_path / "report.md").write_text(before)
    with pytest.raises(InputFileError, match=f"{tmp_path}.*already holds report.json"):
        write_report_folder(example.report, example.volume, seg.labels, seg.label_set, tmp_path)
    assert (tmp_path / "report.md").read_text() == before
    write_report_folder(example.report, example.volume, seg.labels, seg.label_set, tmp_path, overwrite=True)
    assert (tmp_path / "report.md").read_text() == example.report.to_markdown()


def test_structures_cut_by_the_image_edge_are_incomplete_not_zero(example):
    """Ground truth of the example cropped through the brain: the cut structures must not get a volume."""
    scan = load_volume(example_path())
    labels = load_volume(example_path().with_name("example_brain_t1_labels.nii.gz")).array.astype(np.uint8)
    half = scan.shape[2] // 2
    cropped = volume_from_array(scan.array[:, :, half:].copy(), scan.affine @ _shift_k(half))
    findings = measure(labels[:, :, half:], cropped, BRAIN_TUMOUR)
    report = Report.from_findings(findings, example.report.provenance)
    rows = {row["name"]: row for row in report.structured["findings"]["structures"]}
    assert rows["left white matter"]["incomplete"] and rows["left white matter"]["volume_ml"] is None
    assert "incomplete (reaches the image edge)" in report.to_markdown()
    assert any("Coverage is incomplete" in line for line in report.structured["impression"])


def _shift_k(k: int) -> np.ndarray:
    shift = np.eye(4)
    shift[2, 3] = k
    return shift
