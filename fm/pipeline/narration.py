"""The language model's part in a report: let the report model (fm.lm.loading) write the narrative
from the scan and its measured findings, and keep it only when the faithfulness guard finds no
contradiction (fm.report.document.Report.with_model_narrative)."""

from __future__ import annotations

from fm.core.io import Volume
from fm.core.labels import LabelMap
from fm.pipeline.scan_features import session_features
from fm.report.document import Report


def narrate(
    report: Report,
    scans: Volume | list[Volume],
    report_model,
    model_id: str,
    attempts: int = 4,
    backend=None,
    label_map: LabelMap | None = None,
) -> Report:
    """The report with the model's narrative of `scans` grounded in the report's findings, checked.
    backend: where the language model runs (fm.serve.backends; default: in this process).
    label_map: the session's segmentation, for a model whose encoder reads it."""
    return narrate_all([report], [scans], report_model, model_id, attempts, backend, [label_map])[0]


def narrate_all(
    reports: list[Report],
    sessions: list,
    report_model,
    model_id: str,
    attempts: int = 4,
    backend=None,
    label_maps: list[LabelMap | None] | None = None,
) -> list[Report]:
    """narrate for several sessions' scans at once, each draft round one batch.
    The guard is the verifier: the greedy draft first, and while the guard finds a contradiction,
    up to `attempts` - 1 sampled drafts (seeded, temperature 0.7); the first faithful draft is
    kept, else the last is recorded as withheld and the template stands. A session whose
    segmentation the model cannot read (report_model.segmentation_refusal: a brain model given an
    abdominal label set) keeps its report as it is, without a model narrative."""
    from fm.serve.backends import GenerationRequest, TransformersBackend

    backend = backend or TransformersBackend(report_model)
    label_maps = label_maps or [None] * len(sessions)
    written = list(reports)
    pending = [i for i, m in enumerate(label_maps) if m is None or report_model.segmentation_refusal(m) is None]
    features = {i: session_features(report_model, sessions[i], label_maps[i]) for i in pending}
    prompts = {i: report_model.prompt(features[i], reports[i].findings) for i in pending}
    for attempt in range(attempts):
        sampling = {"temperature": 0.7 if attempt else 0.0, "seed": attempt}
        requests = [
            GenerationRequest(features[i], prompts[i], 400, grounded_in=reports[i].findings, **sampling)
            for i in pending
        ]
        for index, generation in zip(pending, backend.batch(requests)):
            written[index] = reports[index].with_model_narrative(generation.text, model_id)
        pending = [index for index in pending if not written[index].model_narrative.kept]
        if not pending:
            break
    return written
