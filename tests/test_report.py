"""The report pipeline with the default (contrast-adaptive) segmenter: a scan with known findings gets the
right side and volume in every output, sides follow the affine end to end, the files are readable,
the mask lands on the scan's own grid, structures cut by the image edge are incomplete (never 0),
and nothing is overwritten."""

from __future__ import annotations

import json
import re
import time

import nibabel as nib
import numpy as np
import phantoms
import pypdf
import pytest
from PIL import Image

from fm.core.errors import InputFileError
from fm.core.examples import example_path
from fm.core.findings import Findings
from fm.core.io import load_volume, volume_from_array
from fm.core.labels import BRAIN_TUMOUR, BTCV
from fm.core.measure import measure
from fm.pipeline.report_folder import REPORT_FILES, write_report_folder
from fm.pipeline.report_pipeline import ADAPTIVE_STAGES, ReportPipeline
from fm.report.document import NOTICE, REPORT_SCHEMA_VERSION, Report
from fm.report.render import views_centre
from heads.segmenters import ADAPTIVE_MODEL_ID

#: The example's one lesion, from its ground truth (fm/data/example_brain_t1_findings.json).
TRUTH = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())


@pytest.fixture(scope="module")
def pipeline():
    return ReportPipeline.from_pretrained()


@pytest.fixture(scope="module")
def example(pipeline):
    started = time.perf_counter()
    result = pipeline(example_path())
    result.wall_s = time.perf_counter() - started
    return result


def truth_labels() -> np.ndarray:
    return load_volume(example_path().with_name("example_brain_t1_labels.nii.gz")).array.astype(np.uint8)


def test_a_known_right_lesion_is_reported_right_with_its_volume_in_every_output(example, tmp_path):
    """The report layer on the example's true segmentation: what the pipeline writes when the
    segmentation is right (the default model's own quality is measured in eval/, not here)."""
    scan = example.volume
    findings = measure(truth_labels(), scan, BRAIN_TUMOUR)
    report = Report.from_findings(findings, example.report.provenance)
    lesion, truth = report.findings.lesions[0], TRUTH.lesions[0]
    assert lesion.laterality.value == "right" and abs(lesion.volume_ml - truth.volume_ml) < 0.05
    row = report.structured["findings"]["lesions"][0]
    assert row["location"].startswith("right ") and "right" in report.structured["impression"][0]
    assert (
        f"{lesion.volume_ml:.1f} mL" in report.structured["impression"][0]
        and f"{lesion.volume_ml:.1f} mL" in report.narrative
    )

    paths = write_report_folder(report, scan, truth_labels(), BRAIN_TUMOUR, tmp_path)
    markdown = paths["report.md"].read_text()
    assert f"| 1 | {row['location']} | {row['volume_ml']:.1f} |" in markdown
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(paths["report.pdf"]).pages)
    assert row["location"] in text and f"{row['volume_ml']:.1f}" in text and "not for clinical use" in text
    assert Report.from_json(paths["report.json"].read_text()).findings.lesions[0].laterality.value == "right"


def test_sides_swap_for_a_mirrored_scan_stored_in_another_orientation(pipeline, example, tmp_path):
    """End to end with the default model: the same brain mirrored and stored PIR gets its grey- and
    white-matter sides swapped, because sides come from the affine."""
    scan = example.volume
    mirrored = scan.array[::-1].copy()  # the array is held RAS: flipping x swaps the patient's sides
    path = phantoms.write_nifti(tmp_path / "mirrored_pir.nii.gz", *phantoms.relayout(mirrored, scan.affine, "PIR"))
    result = pipeline(path)
    assert result.report.findings.geometry.orientation == "PIR"
    original, flipped_back = example.segmentation.labels, result.segmentation.labels[::-1]
    side = {3: "L", 5: "L", 4: "R", 6: "R"}
    sided = np.isin(original, list(side)) & np.isin(flipped_back, list(side))
    assert sided.mean() > 0.2  # most of the brain is grey or white matter in both
    original_right = np.isin(original[sided], (4, 6))
    mirrored_right = np.isin(flipped_back[sided], (4, 6))
    # The midline is the registered template's on each scan, so near it the two may differ by a few
    # millimetres; away from it every side must swap.
    assert np.mean(original_right != mirrored_right) > 0.8


def test_provenance_says_what_ran_and_how_long_each_stage_took(example, pipeline):
    p = example.report.provenance
    assert list(p.timings_s) == [s for s in ADAPTIVE_STAGES if s != "report"]
    assert 0 < p.timings_s["segment"] and sum(p.timings_s.values()) <= example.wall_s
    assert p.model_id == ADAPTIVE_MODEL_ID and p.model_sha256 == pipeline.model.sha256
    assert (
        p.reoriented and not p.resampled and p.network_spacing_mm == (1.0, 1.0, 1.0)
    )  # LAS 1 mm scan, segmented on its grid
    assert p.contrasts == ["t1"] and p.contrasts_guessed  # from the file name
    assert "guessed" in example.report.to_markdown()
    assert p.input_file == str(example_path()) and p.device == "cpu" and not p.etta
    assert {"fm3d", "torch", "monai"} <= set(p.software)
    assert example.report.notice == NOTICE and "not for clinical use" in NOTICE


def test_report_files_are_written_readable_and_on_the_scans_grid(example, tmp_path):
    report, volume, seg = example.report, example.volume, example.segmentation
    paths = write_report_folder(report, volume, seg.labels, seg.label_set, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == sorted(REPORT_FILES)

    assert Report.from_json(paths["report.json"].read_text()) == report
    assert json.loads(paths["report.json"].read_text())["schema_version"] == REPORT_SCHEMA_VERSION

    markdown = paths["report.md"].read_text()
    impression = report.structured["impression"][0]
    assert NOTICE in markdown and f"- {impression}" in markdown
    for row in report.structured["findings"]["structures"]:
        volume_text = "incomplete (reaches the image edge)" if row["volume_ml"] is None else f"{row['volume_ml']:.1f}"
        assert f"| {row['name']} | {volume_text} |" in markdown

    pdf = pypdf.PdfReader(paths["report.pdf"])
    text = " ".join(page.extract_text() for page in pdf.pages)
    assert len(pdf.pages) == 2
    assert "not for clinical use" in text and impression[:30] in text

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
    labels = truth_labels()
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


def test_a_structure_not_found_reads_not_found_without_a_confidence(example, tmp_path):
    labels = truth_labels()
    labels[labels == 2] = 1  # ventricles segmented as CSF: the structure is missing from the map
    probabilities = np.zeros((10, *labels.shape), np.float32)
    np.put_along_axis(probabilities, labels[None].astype(np.int64), 0.9, axis=0)
    findings = measure(labels, example.volume, BRAIN_TUMOUR, probabilities=probabilities)
    report = Report.from_findings(findings, example.report.provenance)
    markdown = report.to_markdown()
    assert "| lateral ventricles | not found | - |" in markdown
    assert "| cerebrospinal fluid | " in markdown and "| 0.90 |" in markdown
    paths = write_report_folder(report, example.volume, labels, BRAIN_TUMOUR, tmp_path)
    assert (
        Report.from_json(paths["report.json"].read_text()).findings.structure("lateral ventricles").confidence is None
    )


def test_a_report_says_when_a_missing_lesion_proves_nothing(example):
    """A model below the detection target (or never evaluated) gets a caveat in the impression;
    one that met it does not; organ-only label sets, which look for no lesion, get none."""
    findings = measure(truth_labels(), example.volume, BRAIN_TUMOUR)
    provenance = example.report.provenance

    def impression(**model):
        return Report.from_findings(findings, provenance.model_copy(update=model)).structured["impression"]

    weak = impression(model_lesion_sensitivity=0.25, model_evaluation="8 synthetic test-split scans, seed 1")
    assert weak[-1].startswith(
        "This model found 25% of lesions of 1 mL or more in its evaluation (8 synthetic test-split scans, seed 1)"
    )
    assert "does not exclude one" in weak[-1]
    assert "has not been evaluated" in impression(model_lesion_sensitivity=None, model_evaluation=None)[-1]
    assert not any("exclude" in line for line in impression(model_lesion_sensitivity=0.96, model_evaluation="20 scans"))
    organs = measure(np.zeros(example.volume.shape, np.uint8), example.volume, BTCV)
    unproven = Report.from_findings(organs, provenance.model_copy(update={"model_lesion_sensitivity": None}))
    assert not any("exclude" in line for line in unproven.structured["impression"])


def pdf_lines(path, page: int) -> list[tuple[str, float]]:
    """(text, font size in points) of each line drawn on a PDF page, pieces of one line joined
    (matplotlib writes ligatures such as 'fl' as separate pieces)."""
    pieces: dict[tuple[float, float], list[tuple[str, float]]] = {}

    def visit(text, cm, tm, font, size):
        if text.strip():
            pieces.setdefault((round(cm[4], 1), round(cm[5], 1)), []).append((text, size))

    pypdf.PdfReader(path).pages[page].extract_text(visitor_text=visit)
    return [("".join(t for t, _ in parts).strip(), min(size for _, size in parts)) for parts in pieces.values()]


def stated(number_text: str, text: str) -> bool:
    """Whether `text` states this number on its own (not as part of a longer one)."""
    return re.search(rf"(?<![\d.]){re.escape(number_text)}(?![\d])", text) is not None


def test_every_output_states_the_same_volumes_and_withholds_the_same(example, tmp_path):
    """The example's true labels with the top of the scan cut off: grey and white matter and CSF
    reach the new edge, the ventricles do not. A volume withheld in one output is withheld in
    report.json, report.md, the PDF and the narrative; every volume stated is the JSON's; and the
    narrative ends on the impression the structured report gives, detection caveat included."""
    scan, labels = load_volume(example_path()), truth_labels()
    top = 160  # axial slices kept; the ventricles end at slice 151, the cortex at 169
    cropped = volume_from_array(scan.array[:, :, :top].copy(), scan.affine)
    labels = labels[:, :, :top]
    report = Report.from_findings(measure(labels, cropped, BRAIN_TUMOUR), example.report.provenance)
    paths = write_report_folder(report, cropped, labels, BRAIN_TUMOUR, tmp_path)

    data = json.loads(paths["report.json"].read_text())
    markdown, json_text = paths["report.md"].read_text(), paths["report.json"].read_text()
    pdf_text = " ".join(page.extract_text() for page in pypdf.PdfReader(paths["report.pdf"]).pages)
    narrative = data["narrative"]
    assert narrative in markdown
    withheld = [s for s in data["findings"]["structures"] if s["touches_border"]]
    kept = [s for s in data["findings"]["structures"] if not s["touches_border"]]
    assert {s["name"] for s in withheld} >= {"cerebrospinal fluid", "left grey matter", "right white matter"}
    assert "lateral ventricles" in {s["name"] for s in kept}
    rows = {row["name"]: row for row in data["structured"]["findings"]["structures"]}
    for structure in withheld:
        name, inside_ml = structure["name"], (labels == structure["label_id"]).sum() * 0.001  # 1 mm voxels
        assert structure["volume_ml"] is None and rows[name]["volume_ml"] is None and rows[name]["incomplete"]
        assert f"| {name} | incomplete (reaches the image edge) |" in markdown
        for text in (json_text, markdown, pdf_text, narrative):
            assert not stated(f"{inside_ml:.1f}", text) and not stated(f"{inside_ml:.2f}", text), name
    for structure in kept:
        volume = f"{structure['volume_ml']:.1f}"
        assert f"{rows[structure['name']]['volume_ml']:.1f}" == volume
        assert f"| {structure['name']} | {volume} |" in markdown and f"{structure['name']} {volume}" in pdf_text
    lesion, row = data["findings"]["lesions"][0], data["structured"]["findings"]["lesions"][0]
    assert f"| {row['location']} | {lesion['volume_ml']:.1f}" in markdown and stated(
        f"{lesion['volume_ml']:.1f}", pdf_text
    )

    impression = data["structured"]["impression"]
    assert narrative.split("IMPRESSION:\n")[1] == "\n".join(f"- {line}" for line in impression)
    assert any("does not exclude one" in line for line in impression)
    assert any("Coverage is incomplete" in line for line in impression)
    flat_pdf = " ".join(pdf_text.split())
    for line in impression:
        assert " ".join(line.split()) in flat_pdf


def test_the_first_page_shows_where_the_views_pass_with_a_legible_legend(example, tmp_path):
    scan, labels = example.volume, truth_labels()
    report = Report.from_findings(measure(labels, scan, BRAIN_TUMOUR), example.report.provenance)
    paths = write_report_folder(report, scan, labels, BRAIN_TUMOUR, tmp_path)
    lines = dict(pdf_lines(paths["report.pdf"], 0))
    for label in np.unique(labels[labels > 0]):
        assert lines[BRAIN_TUMOUR.names[label]] >= 9
    planes = next(text for text in lines if text.startswith("Planes through RAS"))
    stated_centre = [float(v) for v in re.findall(r"-?\d+\.\d", planes)]
    assert np.allclose(stated_centre, views_centre(report.findings, scan, labels)[0], atol=0.05)
    assert np.linalg.norm(np.subtract(stated_centre, report.findings.lesions[0].centroid_ras_mm)) < 1.0


def test_a_language_model_narrative_is_shown_only_when_faithful_to_the_measurements(example, tmp_path):
    from fm.report.template_narrative import narrative_report

    report = example.report
    faithful = narrative_report(report.findings, seed=5)
    kept = report.with_model_narrative(faithful, "test-lm")
    assert kept.model_narrative.kept and kept.shown_narrative == (
        "Narrative (language model test-lm; AI draft, checked against the measurements)",
        faithful,
    )
    assert faithful in kept.to_markdown() and Report.from_json(kept.to_json()) == kept
    wrong = faithful + " There is a 12.3 mL lesion in the left occipital lobe."  # neither was measured
    withheld = report.with_model_narrative(wrong, "test-lm")
    assert not withheld.model_narrative.kept and withheld.model_narrative.contradictions
    heading, shown = withheld.shown_narrative
    assert heading.startswith("Narrative (template") and shown.startswith(report.narrative)
    assert "withheld: " in shown and wrong not in withheld.to_markdown()
    paths = write_report_folder(
        withheld, example.volume, example.segmentation.labels, example.segmentation.label_set, tmp_path / "r"
    )
    assert "draft was withheld" in paths["report.md"].read_text()


def test_a_kept_narrative_shows_what_the_guard_could_not_check(example):
    from fm.report.template_narrative import narrative_report

    report = example.report
    faithful = narrative_report(report.findings, seed=5) + " There is no midline shift."
    kept = report.with_model_narrative(faithful, "test-lm")
    assert kept.model_narrative.kept and len(kept.model_narrative.unchecked) == 1
    _, shown = kept.shown_narrative
    assert shown.endswith("Unchecked (about what the program does not measure): There is no midline shift.")
    assert "Unchecked (about what the program does not measure)" in kept.to_markdown()
    assert Report.from_json(kept.to_json()) == kept
