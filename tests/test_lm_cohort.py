"""Training the report model on a cohort of one's own (fm.lm.cohort, `fm train lm --data TABLE`):
real scans (the bundled example and ../shared/realdata) with report texts written here in the
style of real radiology reports, measured findings where the cohort has them, a row whose scan is
missing. The missing row is reported and skipped, no patient is on both sides of the validation
split, stages 1 and 2 train with a validation loss logged, and a stopped run resumes."""

from __future__ import annotations

import csv
import json

import phantoms
import pytest
import torch
from test_lm_families import write_language_model

from fm.core.errors import InputFileError
from fm.core.examples import example_path
from fm.lm.cohort import read_cohort, report_section, split_rows
from fm.lm.compose import compose_report_model
from fm.lm.modeling import FMForReportGeneration
from fm.lm.train import LMTrainConfig, read_training_data, train_lm

REPORTS = {
    "example": (
        "CLINICAL HISTORY: Headache.\nFINDINGS: There is a solidly enhancing R parietal mass measuring 5.9 x 4.5 cm "
        "with surrounding vasogenic oedema. No midline shift. The ventricles are normal in size.\n"
        "IMPRESSION: Solitary enhancing right parietal lesion, approximately 32 cc."
    ),
    "brats5": (
        "FINDINGS:\nLarge heterogeneous mass centred in the left hemisphere with extensive surrounding FLAIR "
        "hyperintensity and a rim-enhancing necrotic core.\nIMPRESSION:\nFindings likely represent a high-grade glioma."
    ),
    "brats6": (
        "FINDINGS: Rim-enhancing lesion with central necrosis and marked perilesional oedema.\n"
        "IMPRESSION: Single enhancing intra-axial mass."
    ),
    "chris_t1": "FINDINGS: No focal lesion. Ventricles and sulci are normal for age.\nIMPRESSION: Normal MRI brain.",
    "chris_pd": "FINDINGS: No focal parenchymal signal abnormality.\nIMPRESSION: No acute intracranial abnormality.",
    "missing": "FINDINGS: Not available.\nIMPRESSION: Normal.",
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, realdata):
    """A cohort table beside its own files: one row's scan is missing; chris' two sessions are
    one subject."""
    root = tmp_path_factory.mktemp("cohort")
    brats5, brats6 = realdata / "brats_2013_pat0005_1", realdata / "brats_2013_pat0006_1"
    findings = root / "example_findings.json"
    findings.write_text(example_path().with_name("example_brain_t1_findings.json").read_text())
    qa = json.dumps([{"question": "Which side is the lesion on?", "answer": "right"}])
    rows = [
        ("example", "a", str(example_path()), REPORTS["example"], findings.name, qa),
        (
            "brats5",
            "b",
            f"{brats5 / 'Flair_subtrMeanDivStd.nii.gz'};{brats5 / 'T1c_subtrMeanDivStd.nii.gz'}",
            REPORTS["brats5"],
            "",
            "",
        ),  # fmt: skip
        ("brats6", "c", str(brats6 / "T1c_subtrMeanDivStd.nii.gz"), REPORTS["brats6"], "", ""),
        ("chris_t1", "chris", str(realdata / "chris_t1.nii.gz"), REPORTS["chris_t1"], "", ""),
        ("chris_pd", "chris", str(realdata / "chris_PD.nii.gz"), REPORTS["chris_pd"], "", ""),
        ("missing", "d", "scans/not_here.nii.gz", REPORTS["missing"], "", ""),
    ]
    table = root / "cohort.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "subject", "image", "report", "findings", "qa"])
        writer.writerows(rows)
    return table


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort-model")
    model = compose_report_model(
        write_language_model(root / "lm", "qwen2"),
        encoder="brain_id",
        encoder_kwargs={"f_maps": 8},
        queries=8,
        input_spec=phantoms.mr_spec(size=(48, 48, 48), divisible_by=16),
    )
    model.config.number_forms = "verbatim"  # as the bundled model: training on real reports makes it "rounded"
    model.save_pretrained(root / "init")
    return root / "init"


def test_report_sections_are_read_under_their_headings():
    assert (
        report_section(REPORTS["example"], "impression")
        == "Solitary enhancing right parietal lesion, approximately 32 cc."
    )
    assert report_section(REPORTS["brats5"], "findings").startswith("Large heterogeneous mass")
    assert report_section(REPORTS["brats5"], "findings").endswith("necrotic core.")
    with pytest.raises(Exception, match="no IMPRESSION section"):
        report_section("Normal brain.", "impression")


def test_a_missing_scan_is_reported_and_the_split_keeps_each_patient_on_one_side(cohort):
    rows, skipped = read_cohort(cohort, progress=False)
    assert [row.id for row in rows] == ["example", "brats5", "brats6", "chris_t1", "chris_pd"]
    assert [(s.id, "not_here.nii.gz" in s.reason and "no such file" in s.reason) for s in skipped] == [
        ("missing", True)
    ]
    assert rows[0].findings and json.loads(rows[0].findings)["lesions"] and rows[1].findings is None
    assert rows[1].image.count(";") == 1 and rows[0].qa[0]["answer"] == "right"
    for seed in range(6):
        train, validation = split_rows(rows, val_fraction=0.4, seed=seed)
        assert validation and train and len(train) + len(validation) == len(rows)
        assert not {row.subject for row in train} & {row.subject for row in validation}
    with pytest.raises(InputFileError, match="--strict"):
        read_cohort(cohort, strict=True, progress=False)


def test_stages_one_and_two_train_on_the_cohort_log_validation_and_resume(cohort, init, tmp_path):
    quick = dict(grad_accum=1, checkpoint_every=1, lr=5e-3, val_fraction=0.4, eval_every=1, eval_reports=1)
    train, validation = read_training_data(cohort, "train", LMTrainConfig(stage=2, **quick))
    assert validation and {e.target for e in validation if e.question is None} <= set(REPORTS.values())
    assert any(e.question == "Which side is the lesion on?" for e in train + validation)
    features = tmp_path / "features"  # the frozen encoder's features, computed once for the three runs
    stage1 = train_lm(
        init,
        cohort,
        tmp_path / "s1",
        LMTrainConfig(stage=1, steps=2, report_to="tensorboard", **quick),
        features_cache=features,
    )
    assert FMForReportGeneration.config_class.from_pretrained(stage1).number_forms == "rounded"
    assert (tmp_path / "s1" / "skipped_rows.csv").read_text().splitlines()[1].startswith("5,missing,")
    logged = list(csv.DictReader(open(tmp_path / "s1" / "log.csv")))
    # each validation (every step, and the final weights) scores the reports the model writes
    scored = [(int(row["step"]), float(row["value"])) for row in logged if row["name"] == "eval_rouge_l"]
    assert {"loss", "eval_loss", "eval_bleu"} <= {row["name"] for row in logged} and len(scored) >= 2
    assert all(0.0 <= value <= 1.0 for _, value in scored)
    events = b"".join(path.read_bytes() for path in (tmp_path / "s1" / "runs").rglob("events.out.tfevents.*"))
    assert b"eval/rouge_l" in events and b"train/loss" in events, "TensorBoard has the same figures"
    # a resumed run goes on from its last checkpoint: steps 1-2 are not trained again
    train_lm(init, cohort, tmp_path / "s1", LMTrainConfig(stage=1, steps=3, **quick), features_cache=features)
    steps = [int(row["step"]) for row in csv.DictReader(open(tmp_path / "s1" / "log.csv")) if row["name"] == "loss"]
    assert steps == [1, 2, 3]
    stage2 = train_lm(
        stage1, cohort, tmp_path / "s2", LMTrainConfig(stage=2, steps=1, lora_rank=4, **quick), features_cache=features
    )
    assert (stage2 / "model.safetensors").is_file() and (tmp_path / "s2" / "lora").is_dir()
    assert torch.isfinite(
        torch.tensor(
            [float(r["value"]) for r in csv.DictReader(open(tmp_path / "s2" / "log.csv")) if r["name"] == "eval_loss"]
        )
    ).all()
