"""The report model from where it lives (the bundled default, a folder or a Hub id), and the scans
its encoder takes from a session."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fm.core.io import Volume

DEFAULT_LM_ID = "fm3d/default-lm"


def default_lm_folder() -> Path:
    return Path(str(files("fm").joinpath("data/default_lm")))


def load_report_model(model: str | Path | None = None):
    """The report model at `model`: a folder or Hub id, None for the bundled default."""
    from fm.lm.modeling import FMForReportGeneration  # torch and transformers: only here

    return FMForReportGeneration.from_pretrained(model or default_lm_folder()).eval()


def model_input(scans: Volume | list[Volume], report_model) -> Volume | list[Volume]:
    """The scans the model's encoder takes: the first for a one-channel encoder, else one per channel."""
    volumes = [scans] if isinstance(scans, Volume) else list(scans)
    channels = report_model.input_spec.in_channels
    return volumes[0] if channels == 1 else volumes[:channels]
