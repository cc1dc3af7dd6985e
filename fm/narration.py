"""The language model's part in a report: load the report model (the bundled default, a folder or
a Hub id), let it write the narrative from the scan and its measured findings, and keep it only
when the faithfulness guard finds no contradiction (fm.report.Report.with_model_narrative)."""

from __future__ import annotations

from pathlib import Path

from fm.io import Volume
from fm.report import Report

DEFAULT_LM_ID = "fm3d/default-lm"


def default_lm_folder() -> Path:
    return Path(__file__).parent / "data" / "default_lm"


def load_report_model(model: str | Path | None = None):
    """The report model at `model` (None: the bundled default), or None when no default is bundled."""
    from fm.model import FMForReportGeneration  # torch and transformers: only here

    if model is None:
        if not (default_lm_folder() / "config.json").is_file():
            return None
        model = default_lm_folder()
    return FMForReportGeneration.from_pretrained(model).eval()


def narrate(report: Report, scans: Volume | list[Volume], report_model, model_id: str, **generate_kwargs) -> Report:
    """The report with the model's narrative of `scans` grounded in the report's findings, checked."""
    text = report_model.generate_report(
        model_input(scans, report_model), report.findings, max_new_tokens=400, **generate_kwargs
    )
    return report.with_model_narrative(text, model_id)


def model_input(scans: Volume | list[Volume], report_model) -> Volume | list[Volume]:
    """The scans the model's encoder takes: the first for a one-channel encoder, else one per channel."""
    volumes = [scans] if isinstance(scans, Volume) else list(scans)
    channels = report_model.input_spec.in_channels
    return volumes[0] if channels == 1 else volumes[:channels]
