"""The language model's part in a report: load the report model (the bundled default, a folder or
a Hub id), let it write the narrative from the scan and its measured findings, and keep it only
when the faithfulness guard finds no contradiction (fm.report.Report.with_model_narrative)."""

from __future__ import annotations

from pathlib import Path

from fm.io import Volume
from fm.prompts import build_prompt
from fm.report import Report

DEFAULT_LM_ID = "fm3d/default-lm"


def default_lm_folder() -> Path:
    return Path(__file__).parent / "data" / "default_lm"


def load_report_model(model: str | Path | None = None):
    """The report model at `model`: a folder or Hub id, None for the bundled default."""
    from fm.model import FMForReportGeneration  # torch and transformers: only here

    return FMForReportGeneration.from_pretrained(model or default_lm_folder()).eval()


def narrate(
    report: Report, scans: Volume | list[Volume], report_model, model_id: str, attempts: int = 4, backend=None
) -> Report:
    """The report with the model's narrative of `scans` grounded in the report's findings, checked.
    backend: where the language model runs (fm.serve; default: in this process)."""
    return narrate_all([report], [scans], report_model, model_id, attempts, backend)[0]


def narrate_all(
    reports: list[Report], sessions: list, report_model, model_id: str, attempts: int = 4, backend=None
) -> list[Report]:
    """narrate for several sessions' scans at once, each draft round one batch.
    The guard is the verifier: the greedy draft first, and while the guard finds a contradiction,
    up to `attempts` - 1 sampled drafts (seeded, temperature 0.7); the first faithful draft is
    kept, else the last is recorded as withheld and the template stands."""
    from fm.serve import GenerationRequest, TransformersBackend

    backend = backend or TransformersBackend(report_model)
    features = [report_model.scan_features(model_input(scans, report_model)) for scans in sessions]
    prompts = [build_prompt(report_model.num_visual_tokens(f), r.findings) for f, r in zip(features, reports)]
    written = list(reports)
    pending = list(range(len(reports)))
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


def model_input(scans: Volume | list[Volume], report_model) -> Volume | list[Volume]:
    """The scans the model's encoder takes: the first for a one-channel encoder, else one per channel."""
    volumes = [scans] if isinstance(scans, Volume) else list(scans)
    channels = report_model.input_spec.in_channels
    return volumes[0] if channels == 1 else volumes[:channels]
