"""FMConfig: what rebuilds a report model (encoder and its input spec, adapter, the causal language
model's own config, the image placeholder token), saved as config.json with model_type "fm3d"."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

from fm.lm.adapter import AdapterConfig

MODEL_TYPE = "fm3d"
NUMBER_FORMS = ("verbatim", "rounded")


@strict
class FMConfig(PreTrainedConfig):
    """encoder: an encoders.registry name, built with `encoder_kwargs`; input_spec: its InputSpec
    (how a scan is prepared for it); adapter: fm.lm.adapter.AdapterConfig as a dict; text_config: the
    causal language model's config; image_token_id: the placeholder the visual tokens replace;
    number_forms: the numbers grounded decoding lets it write (fm.lm.grounded_decoding), "verbatim"
    as the findings write them (what a model trained on the template reports writes), or "rounded"
    also as reports round them, "32 mL", "5.9 cm" (a pretrained language model from fm lm init, or one
    trained on a cohort's reports)."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    encoder: str = "brain_id"
    encoder_kwargs: dict | None = None
    input_spec: dict | None = None
    adapter: dict | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 0
    freeze_encoder: bool = True
    tie_word_embeddings: bool = False
    number_forms: str = "verbatim"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.encoder_kwargs = dict(self.encoder_kwargs or {})
        self.adapter = AdapterConfig(**(self.adapter or {})).to_dict()
        if self.number_forms not in NUMBER_FORMS:
            raise ValueError(f"number_forms {self.number_forms!r}: one of {', '.join(NUMBER_FORMS)}")
        if self.input_spec is None:  # the encoder's own
            from encoders.registry import create_encoder

            self.input_spec = create_encoder(self.encoder, **self.encoder_kwargs).spec.to_dict()
