"""Answers the guard verifies (fm.pipeline.conversation.answer_all), as `fm eval vqa --answer` and
the held-out question set get them: a draft that contradicts the findings, or gives a quantity the
question did not ask for, is drafted again (sampled, seeded) up to the attempts; a draft that
passes is kept; questions about what is not measured never reach the model."""

from __future__ import annotations

import pytest
import torch

from fm.core.examples import example_label_map, example_path
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.lm.loading import load_report_model
from fm.pipeline.conversation import answer_all
from fm.report.faithfulness import check
from fm.serve.backends import TransformersBackend

QUESTIONS = [  # phrasings the bundled model was not trained on (fm.evaluate.question_set)
    "Count the lesions.",
    "What is the number of lesions?",
    "Is there more than one lesion?",
    "Can you identify a mass?",
    "Any focal lesion?",
    "What is the maximal extent of the lesion in mm?",
    "How long is the lesion in its largest dimension?",
    "What is the volume of the surrounding oedema?",
    "How old is the patient?",
]


class RecordingBackend(TransformersBackend):
    """The in-process backend, keeping every request answer_all sent it with the text it got."""

    def __init__(self, model):
        super().__init__(model)
        self.requests, self.texts = [], []

    def batch(self, requests):
        generations = super().batch(requests)
        self.requests += requests
        self.texts += [generation.text for generation in generations]
        return generations


@pytest.fixture(scope="module")
def backend():
    """The bundled model: to phrasings it was not trained on it often gives another quantity."""
    return RecordingBackend(load_report_model())


@pytest.fixture(scope="module")
def example(backend):
    findings = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
    with torch.no_grad():
        return backend.model.scan_features(load_volume(example_path()), example_label_map()), findings


@torch.no_grad()
def test_a_wrong_draft_is_drafted_again_and_a_passing_one_kept(backend, example):
    features, findings = example
    backend.requests.clear(), backend.texts.clear()
    answers = answer_all(backend, features, findings, QUESTIONS, max_new_tokens=8, attempts=3)
    assert answers[-1].declined == "age" and answers[-1].text.startswith("Not measured")
    assert not any("How old" in request.prompt for request in backend.requests), "declined without the model"
    redrafted = 0
    for question, answer in zip(QUESTIONS[:-1], answers):
        asked = [i for i, request in enumerate(backend.requests) if request.prompt.endswith(question + "\nAnswer:")]
        drafts, texts = [backend.requests[i] for i in asked], [backend.texts[i] for i in asked]
        assert 1 <= len(drafts) <= 3 and drafts[0].temperature == 0.0
        assert [(d.temperature, d.seed) for d in drafts[1:]] == [(0.7, seed) for seed in range(1, len(drafts))]
        # every draft before the last was held wrong by the guard; the last is the answer given
        for earlier in texts[:-1]:
            assert not check(earlier, findings, question=question).answers_the_question
        assert texts[-1].strip() == answer.text
        assert answer.verdict.answers_the_question or len(drafts) == 3
        redrafted += len(drafts) > 1
    assert redrafted >= 2, "none of the bundled model's wrong drafts was drafted again"


@torch.no_grad()
def test_from_the_image_alone_there_is_one_greedy_draft(backend, example):
    features, _ = example
    backend.requests.clear(), backend.texts.clear()
    answers = answer_all(backend, features, None, QUESTIONS[:3], max_new_tokens=4)
    assert len(backend.requests) == 3 and all(r.temperature == 0.0 for r in backend.requests)
    assert all(answer.verdict is None for answer in answers)
