"""The bundled default report model (fm/data/default_lm) on the bundled example: it loads through
the Auto classes with the segmenter's preprocessing, `fm report` keeps its narrative of the example
(the faithfulness guard finds no contradiction), and it answers closed questions as the findings
say."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText

import fm  # noqa: F401  (registers the model)
from fm.core.examples import example_label_map, example_path
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.lm.loading import default_lm_folder, load_report_model


@pytest.fixture(scope="module")
def model():
    return load_report_model()


@pytest.fixture(scope="module")
def example():
    return load_volume(example_path()), Findings.from_json(
        example_path().with_name("example_brain_t1_findings.json").read_text()
    )


def test_the_default_bundle_is_complete_and_loads_through_the_auto_classes(model):
    names = {path.name for path in default_lm_folder().iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= names
    assert "not for clinical use" in (default_lm_folder() / "README.md").read_text().lower()
    auto = AutoModelForImageTextToText.from_pretrained(default_lm_folder())
    assert type(auto) is type(model) and model.input_spec.spacing_mm == (1.5, 1.5, 1.5)


@torch.no_grad()
def test_closed_questions_are_answered_as_the_findings_say(model, example):
    volume, findings = example
    features = model.scan_features(volume, example_label_map())  # read by a segmentation-reading encoder
    questions = {
        "Which side is the largest lesion on?": "right",
        "How many lesions are there?": "1",
        "Is there a lesion in this scan?": "yes",
        "In which region is the largest lesion?": "parietal lobe",
        "Are the lateral ventricles enlarged?": "no",
    }
    from fm.lm.prompts import build_prompt

    prompts = [build_prompt(model.num_visual_tokens(features), findings, q) for q in questions]
    answers = model.generate_text(features, prompts, max_new_tokens=8, grounded_in=findings)  # as answer() decodes
    assert [a.rstrip(".").lower() for a in answers] == list(questions.values())


def test_fm_report_keeps_the_bundled_models_narrative_of_the_example(example_reports):
    """As a user runs it: the pipeline's findings, grounded decoding, the guard as verifier."""
    out = example_reports / "example"
    report = json.loads((out / "report.json").read_text())
    narrative = report["model_narrative"]
    assert narrative["kept"] and not narrative["omissions"] and narrative["model_id"] == "fm3d/default-lm", narrative
    assert "right parietal lobe" in narrative["text"]
    assert narrative["text"] in (out / "report.md").read_text()


@torch.no_grad()
def test_from_the_image_alone_it_tells_whether_and_on_which_side_there_is_a_lesion(model, example):
    """No findings in the prompt: what it says comes through the visual tokens. The example's right
    parietal lesion is found and placed; with the lesion relabelled as the white matter around it
    (same scan, same intensities), the answer turns to no lesion."""
    from fm.core.labels import LabelMap
    from fm.lm.prompts import build_prompt

    volume, _ = example
    labels = example_label_map()
    lesion = labels.labels >= min(labels.label_set.lesion)
    white_matter = {name: i for i, name in labels.label_set.structures.items()}["right white matter"]
    cleared = LabelMap(labels.labels.copy(), labels.affine, labels.label_set)
    cleared.labels[lesion] = white_matter
    questions = ["Is there a lesion in this scan?", "Which side is the largest lesion on?"]

    def ask(label_map):
        features = model.scan_features(volume, label_map)
        prompts = [build_prompt(model.num_visual_tokens(features), None, q) for q in questions]
        return [a.rstrip(".").lower() for a in model.generate_text(features, prompts, max_new_tokens=8)]

    assert ask(labels) == ["yes", "right"]
    assert ask(cleared)[0] == "no"
