"""A question about one scan, as `fm vqa`, `fm chat` and the demo ask it: the report model answers
with the scan's visual tokens, the measured findings (None: from the image alone) and the earlier
turns in its prompt, decoded so that it can only copy measured numbers, and streamed piece by piece.
The caller checks the finished answer against the findings (fm.report.faithfulness.check)."""

from __future__ import annotations

from collections.abc import Iterator

from fm.core.findings import Findings
from fm.lm.prompts import build_prompt


def stream_answer(
    backend,
    features,
    findings: Findings | None,
    question: str,
    history: list[tuple[str, str]],
    max_new_tokens: int = 128,
) -> Iterator[str]:
    """The answer's text pieces as the backend (fm.serve.backends) generates them."""
    from fm.serve.backends import GenerationRequest  # torch: only when a question is asked

    prompt = build_prompt(backend.model.num_visual_tokens(features), findings, question, history)
    yield from backend.stream(GenerationRequest(features, prompt, max_new_tokens, grounded_in=findings))
