"""A report model composed from any causal language model that transformers' Auto classes load
without remote code (`fm lm init`), and the report model behind every command's `--lm`.

The encoder defaults to the bundled report model's (segmentation_grid, which reads the scan's
segmentation, with its weights when it has any and its input spec), so a composed model reads
scans as the default one does; `encoder` picks a published one from the registry instead. The adapter between them is new and untrained:
`fm train lm` aligns it (stage 1) before the pair can describe a scan.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fm.core.errors import InputError
from fm.lm.adapter import AdapterConfig
from fm.lm.loading import default_lm_folder

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def hub_or_path(name: str | Path) -> str:
    """A folder, or a Hub id given as ORG/NAME or hf-hub:ORG/NAME."""
    text = str(name)
    return text.removeprefix("hf-hub:")


def is_report_model(name: str | Path) -> bool:
    """Whether `name` holds a composed report model (model_type fm3d), not a plain causal LM."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(hub_or_path(name)).model_type == "fm3d"
    except (OSError, ValueError) as error:
        raise InputError(f"{name}: neither a report model nor a causal language model ({error})") from None


def compose_report_model(
    language_model,
    encoder: str | None = None,
    encoder_weights: str | Path | None = None,
    encoder_kwargs: dict | None = None,
    adapter: str = "perceiver",
    queries: int = 32,
    precision: str | None = None,
    input_spec=None,
    tokenizer=None,
):
    """The causal LM at `language_model` (a folder or Hub id, or a transformers config to build one
    untrained, with its `tokenizer`) behind an encoder and a new adapter. encoder None: the bundled
    report model's encoder, weights and input spec. precision None keeps the language model's own
    dtype."""
    from fm.lm.modeling import FMForReportGeneration
    from heads.model_folder import input_spec_from_dict

    path = hub_or_path(language_model) if isinstance(language_model, (str, Path)) else language_model
    if isinstance(path, str) and is_report_model(path):
        raise InputError(
            f"{language_model}: is already a report model; give the causal language model it was built from"
        )
    config = AdapterConfig(kind=adapter, num_queries=queries)
    if encoder is None:
        bundled = FMForReportGeneration.config_class.from_pretrained(default_lm_folder())
        model = FMForReportGeneration.from_parts(
            path, tokenizer, encoder=bundled.encoder, encoder_kwargs=bundled.encoder_kwargs, adapter=config,
            input_spec=input_spec_from_dict(bundled.input_spec),
        )  # fmt: skip
        model.encoder.load_state_dict(_bundled_encoder_weights())
    else:
        model = FMForReportGeneration.from_parts(
            path, tokenizer, encoder=encoder, encoder_weights=encoder_weights, encoder_kwargs=encoder_kwargs, adapter=config,
            input_spec=input_spec,
        )  # fmt: skip
    if precision is not None:
        model.language_model.to(PRECISIONS[precision])
    model.config.number_forms = "rounded"  # a pretrained language model writes numbers as reports do
    return model


def _bundled_encoder_weights() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = load_file(default_lm_folder() / "model.safetensors")
    return {name.removeprefix("encoder."): value for name, value in weights.items() if name.startswith("encoder.")}
