"""The report model from where it lives (the bundled default, a folder or a Hub id), and the scans
its encoder takes from a session."""

from __future__ import annotations

import sys
import threading
from importlib.resources import files
from pathlib import Path

from fm.core.io import Volume

DEFAULT_LM_ID = "fm3d/default-lm"


def default_lm_folder() -> Path:
    return Path(str(files("fm").joinpath("data/default_lm")))


def load_report_model(model: str | Path | None = None):
    """The report model at `model`: a folder or Hub id (ORG/NAME or hf-hub:ORG/NAME), None for the
    bundled default. A plain causal LM is composed with the bundled encoder on the spot
    (fm.lm.compose), and stderr says that its adapter is untrained."""
    from fm.lm.compose import compose_report_model, hub_or_path, is_report_model  # torch: only here
    from fm.lm.modeling import FMForReportGeneration

    if model is not None and not is_report_model(model):
        print(
            f"note: {model} is a causal language model, not a report model: composed with the bundled "
            "encoder and an untrained adapter, it cannot see the scan until `fm train lm` aligns it "
            "(`fm lm init` saves such a composition)",
            file=sys.stderr,
        )
        return compose_report_model(model).eval()
    return FMForReportGeneration.from_pretrained(hub_or_path(model or default_lm_folder())).eval()


class BackgroundLoad:
    """load_report_model(model) started on a daemon thread, so that loading the language model
    (importing torch and transformers, reading the weights) overlaps the segmentation that
    `fm report` runs first; result() waits for it and raises what loading raised."""

    def __init__(self, model: str | Path | None = None):
        self._model, self._error = None, None
        self._thread = threading.Thread(target=self._load, args=(model,), daemon=True, name="load report model")
        self._thread.start()

    def _load(self, model) -> None:
        try:
            self._model = load_report_model(model)
        except BaseException as error:  # raised again in the caller's thread
            self._error = error

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._model


def model_input(scans: Volume | list[Volume], report_model) -> Volume | list[Volume]:
    """The scans the model's encoder takes: the first for a one-channel encoder, else one per channel."""
    volumes = [scans] if isinstance(scans, Volume) else list(scans)
    channels = report_model.input_spec.in_channels
    return volumes[0] if channels == 1 else volumes[:channels]
