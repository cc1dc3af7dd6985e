"""Questions about one scan, as `fm vqa`, `fm chat`, the demo and `fm eval vqa` ask them: one path,
so that the four can never disagree.

A question about something the program does not measure (fm.report.unmeasured: age, midline
shift, a diagnosis, ...), or about a quantity this scan's findings lack (enhancement without a
contrast-enhanced scan, a structure cut by the image edge), is answered "not measured" without
asking the model, which could only invent. Any other is answered by the report model with the scan's visual tokens, the measured
findings (None: from the image alone) and the earlier turns in its prompt, decoded so that it can
only copy measured numbers, and the finished answer is checked against the findings
(fm.report.faithfulness.check, which also holds any answer to an unmeasured question that does
not decline as a contradiction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from fm.core.findings import Findings
from fm.report.faithfulness import GuardResult, check
from fm.report.unmeasured import decline, not_measured_here, unmeasured_topic


@dataclasses.dataclass(frozen=True)
class Answer:
    question: str
    text: str
    verdict: GuardResult | None  # None when the model answered from the image alone

    @property
    def warnings(self) -> list[str]:
        """What a reader must be told with the answer: each contradiction, and each unchecked claim."""
        if self.verdict is None:
            return []
        return [f"contradicts the measurements: {c}" for c in self.verdict.contradictions] + [
            f"unchecked: {u}" for u in self.verdict.unchecked
        ]


def stream_answer(
    backend,
    features,
    findings: Findings | None,
    question: str,
    history: list[tuple[str, str]],
    max_new_tokens: int = 128,
) -> Iterator[str]:
    """The answer's text pieces as the backend (fm.serve.backends) generates them, or the decline."""
    declined = declined_answer(question, findings)
    if declined is not None:
        yield declined
        return
    yield from backend.stream(_request(backend, features, findings, question, history, max_new_tokens))


def declined_answer(question: str, findings: Findings | None) -> str | None:
    """The program's own answer to a question it must not pass to the model: about a topic it never
    measures (fm.report.unmeasured.TOPICS), or about a quantity these findings lack
    (not_measured_here); None for any other question."""
    topic = unmeasured_topic(question)
    return decline(topic) if topic is not None else not_measured_here(question, findings)


def checked(question: str, text: str, findings: Findings | None) -> Answer:
    """The finished answer with the guard's verdict (none from the image alone: nothing to check against)."""
    text = text.strip()
    verdict = check(text, findings, question=question) if findings is not None else None
    return Answer(question, text, verdict)


def answer_all(
    backend, features, findings: Findings | None, questions: list[str], max_new_tokens: int = 128
) -> list[Answer]:
    """Several independent questions about one scan, generated as one batch. Greedy, one draft:
    redrafting while the guard holds an answer wrong was measured to keep more wrong numbers the guard
    cannot see (docs/report-model.md)."""
    declined = {q: declined_answer(q, findings) for q in questions}
    asked = [q for q in questions if declined[q] is None]
    generations = backend.batch([_request(backend, features, findings, q, [], max_new_tokens) for q in asked])
    written = dict(zip(asked, (g.text for g in generations)))
    return [checked(q, written[q] if q in written else declined[q], findings) for q in questions]


def answer_items(items, report_model, findings_of=None, max_new_tokens: int = 32, progress: bool = True):
    """Fill in each unanswered item's prediction (fm.evaluate.vqa.VQAItem: case_id, question,
    scan, prediction) by answer_all, each scan encoded once. findings_of(case_id) -> Findings or
    None: what the prompt is given (None: the image alone)."""
    from tqdm import tqdm

    from fm.core.errors import InputError
    from fm.core.io import load_volume
    from fm.core.session import load_session
    from fm.pipeline.scan_features import session_features
    from fm.serve.backends import TransformersBackend

    backend = TransformersBackend(report_model)
    pending: dict[tuple, list] = {}
    for item in items:
        if item.prediction is None:
            if not item.scan:
                raise InputError(f"{item.case_id}: no prediction and no scan (a 'path' column) to answer from")
            pending.setdefault((item.case_id, item.scan), []).append(item)
    for (case, scan), group in tqdm(pending.items(), desc="answer questions", unit="scan", disable=not progress):
        findings = findings_of(case) if findings_of else None
        volumes = load_session([str(file) for file in scan], None, load=load_volume).volumes
        features = session_features(report_model, volumes)  # segmented first, for an encoder that reads it
        answers = answer_all(backend, features, findings, [item.question for item in group], max_new_tokens)
        for item, answer in zip(group, answers):
            item.prediction = answer.text
    return items


def _request(backend, features, findings, question, history, max_new_tokens):
    from fm.serve.backends import GenerationRequest  # torch: only when a question is asked

    prompt = backend.model.prompt(features, findings, question, history)
    return GenerationRequest(features, prompt, max_new_tokens, grounded_in=findings, asked=question)
