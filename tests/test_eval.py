"""The evaluators (fm.evaluate.segmentation, fm.evaluate.reports, fm.evaluate.vqa and `fm eval`) on cases whose
answers are known by construction, and end to end on the bundled example's own report."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from fm.cli.fm_cli import main
from fm.core.errors import InputError, InputFileError
from fm.core.examples import example_path, example_paths
from fm.core.findings import Findings, Laterality
from fm.core.labels import BRAIN_TUMOUR, BRATS
from fm.evaluate.reports import ReportCase, evaluate_reports, prf
from fm.evaluate.segmentation import MaskPair, evaluate_pairs, region_metrics, regions_between
from fm.evaluate.vqa import VQAItem, closed_correct, evaluate_answers, infer_answer_type, wilson_interval
from fm.report.template_narrative import narrative_report
from fm.synth.vqa import qa_pairs

EXAMPLE_FINDINGS = example_path().parent / "example_brain_t1_findings.json"
EXAMPLE_LABELS = example_path().parent / "example_brain_t1_labels.nii.gz"
TRUTH = Findings.from_json(EXAMPLE_FINDINGS.read_text())


def cube(shape=(24, 24, 24), start=(6, 6, 6), size=10, label=9) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    x, y, z = start
    labels[x : x + size, y : y + size, z : z + size] = label
    return labels


# -- segmentation ---------------------------------------------------------------------------


def test_dice_hd95_and_volumes_of_a_shifted_cube_use_the_real_spacing():
    regions = [r for r in regions_between(BRAIN_TUMOUR, BRAIN_TUMOUR) if r.name == "enhancing_tumour"]
    reference = cube()
    spacing = (1.0, 1.0, 2.0)
    along_x = region_metrics(cube(start=(7, 6, 6)), reference, spacing, regions)["enhancing_tumour"]
    along_z = region_metrics(cube(start=(6, 6, 7)), reference, spacing, regions)["enhancing_tumour"]
    for metrics in (along_x, along_z):
        assert metrics["dice"] == pytest.approx(0.9)  # 900 voxels shared of 1000 each
        assert metrics["reference_ml"] == pytest.approx(2.0)  # 1000 voxels of 2 mm^3
    assert along_x["hd95_mm"] == pytest.approx(1.0)  # one voxel along a 1 mm axis
    assert along_z["hd95_mm"] == pytest.approx(2.0)  # one voxel along the 2 mm axis
    assert along_x["surface_dice"] == pytest.approx(1.0)  # every boundary point within 2 mm
    strict = region_metrics(cube(start=(6, 6, 7)), reference, spacing, regions, tolerance_mm=1.0)
    assert strict["enhancing_tumour"]["surface_dice"] < 0.9  # the faces 2 mm apart are outside 1 mm


def test_missed_and_false_positive_regions_are_flagged_not_averaged():
    regions = regions_between(BRAIN_TUMOUR, BRAIN_TUMOUR)
    metrics = region_metrics(np.zeros((24, 24, 24), np.uint8), cube(), (1, 1, 1), regions)
    assert metrics["enhancing_tumour"]["dice"] == 0.0 and metrics["enhancing_tumour"]["missed"]
    assert np.isnan(metrics["enhancing_tumour"]["hd95_mm"])
    invented = region_metrics(cube(label=2), np.zeros((24, 24, 24), np.uint8), (1, 1, 1), regions)
    assert np.isnan(invented["lateral ventricles"]["dice"]) and invented["lateral ventricles"]["false_positive"]


def test_regions_are_matched_by_name_between_label_sets(tmp_path):
    """This package's tumour labels (7 oedema, 8 core, 9 enhancing) against BraTS's (2, 1, 4)."""
    ours = cube(label=7)
    ours[10:14, 10:14, 10:14] = 9
    ours[8:10, 8:10, 8:10] = 8
    theirs = np.select([ours == 7, ours == 8, ours == 9], [2, 1, 4], 0).astype(np.uint8)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(ours, affine), tmp_path / "pred.nii.gz")
    nib.save(nib.Nifti1Image(theirs, affine), tmp_path / "ref.nii.gz")
    pair = MaskPair("case", tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz")
    results = evaluate_pairs([pair], BRAIN_TUMOUR, BRATS, progress=False)
    assert [r["name"] for r in results["regions"]] == ["whole_tumour", "tumour_core", "enhancing_tumour"]
    assert all(row["dice_mean"] == pytest.approx(1.0) for row in results["summary"].values())
    stray = theirs.copy()
    stray[0, 0, 0] = 12
    nib.save(nib.Nifti1Image(stray, affine), tmp_path / "stray.nii.gz")
    with pytest.raises(InputFileError, match="stray.nii.gz: holds labels \\[12\\] that brats does not define"):
        evaluate_pairs([MaskPair("case", pair.prediction, tmp_path / "stray.nii.gz")], BRAIN_TUMOUR, BRATS)
    nib.save(nib.Nifti1Image(ours, np.diag([1.0, 1.0, 1.5, 1.0])), tmp_path / "other_grid.nii.gz")
    with pytest.raises(InputFileError, match="other_grid.nii.gz: is not on the grid of its reference"):
        evaluate_pairs(
            [MaskPair("case", tmp_path / "other_grid.nii.gz", tmp_path / "ref.nii.gz")],
            BRAIN_TUMOUR,
            BRATS,
            progress=False,
        )


# -- reports --------------------------------------------------------------------------------

RIGHT = TRUTH.lesions[0]
x, y, z = RIGHT.centroid_ras_mm
LEFT = RIGHT.model_copy(
    update={"lesion_id": 2, "laterality": Laterality.left, "centroid_ras_mm": (-x, y, z), "region": "frontal lobe"}
)


def with_lesions(lesions) -> Findings:
    return TRUTH.model_copy(update={"lesions": lesions})


def test_field_scores_of_reports_with_known_errors():
    """Case 1: both lesions found, one on the wrong side, 1.7 mL too small, plus an invented one;
    case 2: nothing to find and nothing found; case 3: a lesion missed."""
    invented = RIGHT.model_copy(update={"lesion_id": 3, "centroid_ras_mm": (0.0, -90.0, -40.0)})
    cases = [
        ReportCase(
            "1",
            with_lesions(
                [
                    RIGHT.model_copy(update={"volume_ml": RIGHT.volume_ml - 1.7}),
                    LEFT.model_copy(update={"laterality": Laterality.right}),
                    invented,
                ]
            ),
            with_lesions([RIGHT, LEFT]),
        ),
        ReportCase("2", with_lesions([]), with_lesions([])),
        ReportCase("3", with_lesions([]), with_lesions([RIGHT])),
    ]
    summary = evaluate_reports(cases, progress=False)["summary"]
    assert summary["lesion"] == prf(tp=2, fp=1, fn=1)
    assert (summary["lesion"]["precision"], summary["lesion"]["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert summary["side"] == prf(tp=1, fp=2, fn=2)  # the wrong side counts against both
    assert summary["region"] == prf(tp=2, fp=1, fn=1)
    assert summary["presence"] == prf(tp=1, fp=0, fn=1)
    assert summary["count"] == {"accuracy": pytest.approx(1 / 3), "mean_absolute_error": pytest.approx(2 / 3)}
    assert summary["measurements"]["lesions_matched"] == 2
    assert summary["measurements"]["lesion_volume_median_abs_error_ml"] == pytest.approx(1.7 / 2)


def test_a_narrative_is_checked_against_the_reference_findings():
    true_text = narrative_report(TRUTH)
    wrong_side = true_text.replace("right", "left")
    cases = [
        ReportCase("faithful", TRUTH, TRUTH, narrative=true_text, reference_text=true_text),
        ReportCase("wrong side", TRUTH, TRUTH, narrative=wrong_side, reference_text=true_text),
    ]
    results = evaluate_reports(cases, progress=False)
    faithful, wrong = (case["narrative"] for case in results["cases"])
    assert not faithful["contradictions"] and faithful["bleu"] == pytest.approx(100.0)
    assert wrong["contradictions"] and wrong["reference_contradictions"] and wrong["bleu"] < 100.0
    assert results["summary"]["narrative"]["reference_contradiction_rate"] == 0.5
    bigger = TRUTH.model_copy(update={"lesions": [RIGHT.model_copy(update={"volume_ml": 40.0})]})
    mismeasured = evaluate_reports([ReportCase("volume", bigger, TRUTH, narrative_report(bigger))], progress=False)
    narrative = mismeasured["cases"][0]["narrative"]
    assert not narrative["contradictions"] and not narrative["reference_contradictions"]  # an error of measurement
    assert mismeasured["summary"]["measurements"]["lesion_volume_median_abs_error_ml"] == pytest.approx(
        40.0 - RIGHT.volume_ml
    )


# -- VQA ------------------------------------------------------------------------------------


def test_closed_answers_match_after_normalisation_and_open_ones_by_number():
    assert closed_correct("Yes, a lesion is present.", "yes") and not closed_correct("No.", "yes")
    assert closed_correct("The Right.", "right") and not closed_correct("left", "right")
    assert infer_answer_type("frontal lobe") == "closed" and infer_answer_type("2") == "closed"
    assert infer_answer_type("31.7 mL") == "open"
    items = [
        VQAItem("a", "Is there a lesion?", "yes", "yes", "presence"),
        VQAItem("a", "Which side?", "right", "left", "side"),
        VQAItem("a", "Volume?", "31.7 mL", "32.0 mL", "volume"),
        VQAItem("a", "Diameter?", "58.7 mm", "40 mm", "diameter"),
        VQAItem("a", "Oedema?", "0.0 mL", "0.0 mL", "oedema"),  # a reference of zero
    ]
    summary = evaluate_answers(items)["summary"]
    assert summary["closed"]["accuracy"] == 0.5 and summary["closed"]["questions"] == 2
    assert summary["open"]["numeric_within_10pct"] == pytest.approx(2 / 3)
    assert summary["by_kind"]["closed/side"]["accuracy"] == 0.0
    with pytest.raises(InputError, match="1 question.s. have no 'prediction'"):
        evaluate_answers([VQAItem("a", "Is there a lesion?", "yes")])


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson_interval(8, 10)  # the worked example: 0.8 of 10 -> [0.490, 0.943]
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)


# -- fm eval, end to end on the bundled example ----------------------------------------------


def test_fm_eval_scores_the_example_report_against_its_truth(example_reports, tmp_path):
    example_report = example_reports  # REPORTS/example/, as fm report --manifest writes it
    manifest = tmp_path / "cohort.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "labels", "findings", "narrative"])
        writer.writerow(["example", EXAMPLE_LABELS, EXAMPLE_FINDINGS, narrative_report(TRUTH)])
    runner = CliRunner()
    segmentation = runner.invoke(
        main,
        ["eval", "segmentation", str(manifest), "--predictions", str(example_report), "--out", str(tmp_path / "s")],
    )
    assert segmentation.exit_code == 0, segmentation.output
    seg = json.loads((tmp_path / "s" / "results.json").read_text())["summary"]
    assert seg["whole_tumour"]["dice_mean"] > 0.7  # the default segmenter outlines the example's lesion
    assert (tmp_path / "s" / "dice.png").stat().st_size > 0 and "| whole_tumour |" in segmentation.output

    reports = runner.invoke(
        main, ["eval", "reports", str(manifest), "--predictions", str(example_report), "--out", str(tmp_path / "r")]
    )
    assert reports.exit_code == 0, reports.output
    rep = json.loads((tmp_path / "r" / "results.json").read_text())["summary"]
    assert rep["side"]["tp"] == 1 and rep["region"]["tp"] == 1  # right parietal, as the truth
    assert rep["narrative"]["contradiction_rate"] == 0.0  # the narrative is true to its own measurements
    assert rep["narrative"]["reference_contradiction_rate"] == 0.0  # and tells no wrong side or count

    questions = tmp_path / "questions.jsonl"
    session = ";".join(str(p) for p in example_paths())
    questions.write_text("".join(json.dumps({"id": "example", "path": session, **qa}) + "\n" for qa in qa_pairs(TRUTH)))
    vqa = runner.invoke(
        main,
        ["eval", "vqa", str(questions), "--answer", "--predictions", str(example_report), "--out", str(tmp_path / "v")],
    )
    assert vqa.exit_code == 0, vqa.output
    answered = json.loads((tmp_path / "v" / "results.json").read_text())
    assert answered["summary"]["closed"]["accuracy"] >= 0.75  # the measured findings are in its prompt
    assert all(item["prediction"] for item in answered["items"])


def test_fm_eval_refuses_bad_manifests_with_one_line(tmp_path):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("id,reference,prediction\na,missing_ref.nii.gz,missing_pred.nii.gz\n")
    done = CliRunner().invoke(main, ["eval", "segmentation", str(manifest), "--out", str(tmp_path / "o")])
    assert done.exit_code == 1 and "lists 2 file(s) that do not exist" in done.output
    assert "Traceback" not in done.output
    unanswered = tmp_path / "q.csv"
    unanswered.write_text("question,answer\nIs there a lesion?,yes\n")
    done = CliRunner().invoke(main, ["eval", "vqa", str(unanswered), "--out", str(tmp_path / "o")])
    assert done.exit_code == 1 and "--answer lets the model answer them" in done.output
