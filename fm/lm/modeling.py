"""FMForReportGeneration: a 3D encoder (frozen by default), a vision adapter (fm.lm.adapter) and any
causal language model from transformers, as one transformers `PreTrainedModel`.

The scan goes through the encoder's own preprocessing (its InputSpec travels in the config), the
encoder's tokens through the adapter, and the visual tokens replace the image placeholder tokens
of the prompt (fm.lm.prompts) in the language model's input embeddings. An encoder that reads the
scan's segmentation (encoders.segmentation_grid) takes it beside the scan as a
fm.core.labels.LabelMap. The findings measured by the segmentation are written into the prompt;
without them the model answers from the image alone.

    model = FMForReportGeneration.from_parts("hf-or-local-causal-lm", encoder="brain_id", encoder_weights=...)
    model.save_pretrained("out")                      # config, safetensors, tokenizer, model card
    model = AutoModelForImageTextToText.from_pretrained("out")   # after `import fm`; no remote code
    model.generate_report(volume, findings, segmentation=label_map)   # label_map: for a segmentation-reading encoder
    model.answer(volume, "Which side is the lesion on?", findings, segmentation=label_map)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationMixin,
    LogitsProcessorList,
    PreTrainedModel,
)
from transformers.configuration_utils import PreTrainedConfig

from fm import register_with_transformers
from fm.core.errors import InputError
from fm.core.findings import Findings
from fm.core.io import Volume
from fm.lm.adapter import AdapterConfig, build_adapter
from fm.lm.configuration import FMConfig
from fm.lm.grounded_decoding import GroundedDecoding, Grounding
from fm.lm.prompts import IMAGE_TOKEN, build_prompt, end_of_turn_ids, has_chat_template

if TYPE_CHECKING:
    from encoders.spec import InputSpec
    from fm.core.labels import LabelMap

# The encoders (and MONAI behind them) are imported where they are used: transformers' Auto module
# loads this one (fm.register_with_transformers) and may do so while MONAI is still importing.


class FMPreTrainedModel(PreTrainedModel):
    config_class = FMConfig
    config: FMConfig
    base_model_prefix = "fm"
    input_modalities = ("image", "text")
    _supports_sdpa = True
    supports_gradient_checkpointing = True  # the language model's layers recompute; the encoder is frozen

    def _init_weights(self, module):
        """Each part keeps its own initialisation: the encoder and adapter PyTorch's (and any
        published weights loaded into them), the language model its own (a sub-model, dispatched
        to its own `_init_weights`)."""


class FMForReportGeneration(FMPreTrainedModel, GenerationMixin):
    def __init__(self, config: FMConfig):
        from encoders.registry import create_encoder

        super().__init__(config)
        self.encoder = create_encoder(config.encoder, **config.encoder_kwargs)
        if config.freeze_encoder:
            self.encoder.requires_grad_(False)
        token_width = self.encoder.feature_info[-1]["num_chs"]  # tokens come from the coarsest map
        self.adapter = build_adapter(AdapterConfig(**config.adapter), token_width, config.text_config.hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.tokenizer = None  # set by from_parts / from_pretrained; saved beside the weights
        self.post_init()

    # -- the parts ---------------------------------------------------------------------------

    @classmethod
    def from_parts(
        cls,
        language_model: str | Path | PreTrainedConfig,
        tokenizer=None,
        encoder: str = "brain_id",
        encoder_weights: str | Path | None = None,
        encoder_kwargs: dict | None = None,
        adapter: AdapterConfig | None = None,
        freeze_encoder: bool = True,
        input_spec: "InputSpec | None" = None,
    ) -> "FMForReportGeneration":
        """A new model from its parts: `language_model` a pretrained causal LM (path or Hub id) or a
        config to build one untrained; `tokenizer` its tokenizer (default: loaded from the same
        place); the encoder by registry name, with published or saved weights if given, fed as
        `input_spec` says (default: the encoder's own). The image placeholder is added to the
        tokenizer (and the embeddings) when it lacks one."""
        from encoders.registry import create_encoder

        encoder_kwargs = dict(encoder_kwargs or {})
        vision = create_encoder(encoder, encoder_weights, **encoder_kwargs)
        if isinstance(language_model, PreTrainedConfig):
            lm = AutoModelForCausalLM.from_config(language_model)
        else:
            lm = AutoModelForCausalLM.from_pretrained(language_model)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(language_model)
        if tokenizer is None:
            raise ValueError("a language model built from a config needs its tokenizer")
        if IMAGE_TOKEN not in tokenizer.get_vocab():  # beside the special tokens it has (a chat template's)
            extra = list(getattr(tokenizer, "extra_special_tokens", None) or [])
            tokenizer.add_special_tokens({"extra_special_tokens": [*extra, IMAGE_TOKEN]})
        if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
            lm.resize_token_embeddings(len(tokenizer))
        config = FMConfig(
            encoder=encoder,
            encoder_kwargs=encoder_kwargs,
            input_spec=(input_spec or vision.spec).to_dict(),
            adapter=(adapter or AdapterConfig()).to_dict(),
            text_config=lm.config,
            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
            freeze_encoder=freeze_encoder,
        )
        model = cls(config)
        model.encoder.load_state_dict(vision.state_dict())
        model.language_model.load_state_dict(lm.state_dict())
        model.language_model.to(lm.dtype)  # the language model keeps its own precision
        model.tokenizer = tokenizer
        model.generation_config.eos_token_id = _stop_ids(lm.generation_config.eos_token_id, tokenizer)
        return model.eval()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    @property
    def input_spec(self) -> "InputSpec":
        from heads.model_folder import input_spec_from_dict

        return input_spec_from_dict(dict(self.config.input_spec))

    # -- forward -----------------------------------------------------------------------------

    def encode_scan(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) prepared scans -> the encoder's coarsest map (B, channels, d, h, w), whose
        cells are the tokens the adapter reads. A frozen encoder's are worth keeping for training."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            return self.encoder.forward_features(pixel_values.to(self.dtype)).maps[-1]

    def visual_tokens(self, image_features: torch.Tensor) -> torch.Tensor:
        """The encoder's coarsest map -> (B, K, hidden) tokens in the language model's space."""
        tokens = image_features.flatten(2).transpose(1, 2)
        return self.adapter(tokens, tuple(image_features.shape[2:]))

    def prompt(
        self,
        image_features: torch.Tensor,
        findings: Findings | None,
        question: str | None = None,
        history: list[tuple[str, str]] | None = None,
    ) -> str:
        """The prompt about a scan (fm.lm.prompts.build_prompt: in the tokenizer's chat template when
        it has one), with room for its visual tokens."""
        return build_prompt(self.num_visual_tokens(image_features), findings, question, history, self.tokenizer)

    def tokenize_prompts(self, prompts: list[str], **kwargs) -> dict:
        """Prompt texts as ids: a chat template writes its own begin-of-text, the plain format gets
        the tokenizer's."""
        return self.tokenizer(prompts, add_special_tokens=not has_chat_template(self.tokenizer), **kwargs)

    def num_visual_tokens(self, image_features: torch.Tensor) -> int:
        """How many image placeholders a prompt needs for this scan's features."""
        return AdapterConfig(**self.config.adapter).num_tokens(tuple(image_features.shape[2:]))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ):
        """The language model's forward with the visual tokens in place of the image placeholders.
        The scan comes as `pixel_values` (prepared) or as its `image_features` (encode_scan's,
        computed once): a batch tensor, or a list of one-scan tensors when the scans' grids differ. Steps of generation after the first hold no placeholder: they read the
        KV cache, and the scan is not used again."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_prompt(input_ids, pixel_values=pixel_values, image_features=image_features)
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    def embed_prompt(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The language model's input embeddings of `input_ids` with the visual tokens in place of
        the image placeholders: what the language model reads, here or on a server (fm.serve.backends)."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        slots = input_ids == self.config.image_token_id
        if pixel_values is not None and image_features is None:
            image_features = _each(self.encode_scan, pixel_values)
        if image_features is not None and slots.any():
            visual = _each(self.visual_tokens, image_features).to(inputs_embeds.dtype)
            if int(slots.sum()) != visual.shape[0] * visual.shape[1]:
                raise ValueError(
                    f"the prompt holds {int(slots.sum())} image placeholders, the scan gives {visual.shape[0] * visual.shape[1]} visual tokens"
                )
            inputs_embeds = inputs_embeds.masked_scatter(slots[..., None].expand_as(inputs_embeds), visual)
        return inputs_embeds

    # -- generation --------------------------------------------------------------------------

    @property
    def reads_segmentation(self) -> bool:
        """Whether the encoder reads the scan's segmentation beside it (encoders.segmentation_grid)."""
        return bool(getattr(self.encoder, "reads_segmentation", False))

    def segmentation_refusal(self, segmentation: "LabelMap | None") -> str | None:
        """Why this model cannot read a session with `segmentation`, or None when it can: an
        encoder that reads the segmentation needs one, of a label set it knows (brain tissue)."""
        if not self.reads_segmentation:
            return None
        if segmentation is None:
            return (
                f"this report model's encoder ({self.config.encoder}) reads the scan's segmentation beside it; "
                "none was given (fm report, fm vqa and fm chat segment the scan first)"
            )
        from encoders.segmentation_grid import group_ids

        try:
            group_ids(segmentation.label_set)
        except InputError as error:
            return str(error)
        return None

    def prepare_scan(self, volume: Volume | list[Volume], segmentation: "LabelMap | None" = None) -> torch.Tensor:
        """A scan (or one per input channel) as the encoder's input, by the spec saved with the model;
        for an encoder that reads it, the segmentation's groups follow as channels on the same grid."""
        from encoders.preprocess import monai_preprocess

        prepared = monai_preprocess(volume, self.input_spec)
        if not self.reads_segmentation:
            return prepared.tensor
        if segmentation is None:
            raise InputError(self.segmentation_refusal(segmentation))
        from encoders.segmentation_grid import segmentation_channels

        labels = prepared.sample(torch.from_numpy(segmentation.labels[None].astype("float32")), segmentation.affine)
        channels = segmentation_channels(labels[0].round().long(), segmentation.label_set)
        return torch.cat([prepared.tensor, channels[None]], dim=1)

    def scan_features(self, volume: Volume | list[Volume], segmentation: "LabelMap | None" = None) -> torch.Tensor:
        """The encoder's coarsest map of a scan (and its segmentation, for an encoder that reads
        one): what every prompt about it reuses."""
        return self.encode_scan(self.prepare_scan(volume, segmentation))

    @torch.no_grad()
    def generate_text(
        self,
        image_features: torch.Tensor,
        prompt: str | list[str],
        max_new_tokens: int = 256,
        grounded_in: Findings | list[Findings | None] | None = None,
        asked: str | list[str | None] | None = None,
        **generate_kwargs,
    ) -> str | list[str]:
        """The model's text after `prompt`; greedy unless `generate_kwargs` say otherwise
        (do_sample=True, temperature, a streamer...). A list of prompts is generated as one batch
        (left-padded), about one scan (features with batch size 1) or one scan each.
        grounded_in: findings whose numbers and lesion regions are the only ones the text may
        state (fm.lm.grounded_decoding), for every prompt or one per prompt; None leaves the model free.
        asked: the question each text answers (one for all, or one per prompt), whose subject binds
        a grounded answer's numbers ("the left grey matter": its volume, not the lesion's)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        tokens = self.generate_tokens(image_features, prompts, max_new_tokens, grounded_in, asked, **generate_kwargs)
        texts = [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
        return texts[0] if isinstance(prompt, str) else texts

    @torch.no_grad()
    def generate_tokens(
        self,
        image_features: torch.Tensor,
        prompts: list[str],
        max_new_tokens: int = 256,
        grounded_in: Findings | list[Findings | None] | None = None,
        asked: str | list[str | None] | None = None,
        **generate_kwargs,
    ) -> list[list[int]]:
        """generate_text's tokens: for each prompt, the ids it generated, without padding or the
        end-of-text token."""
        if not prompts:
            return []
        if image_features.shape[0] == 1 and len(prompts) > 1:
            image_features = image_features.expand(len(prompts), *image_features.shape[1:])
        if self.tokenizer.pad_token is None:  # a language model's own tokenizer may have none
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # generation continues every row at its end
        encoded = self.tokenize_prompts(prompts, return_tensors="pt", padding=len(prompts) > 1)
        prompt_length = encoded["input_ids"].shape[1]
        per_row = grounded_in if isinstance(grounded_in, list) else [grounded_in] * len(prompts)
        questions = asked if isinstance(asked, list) else [asked] * len(prompts)
        if any(findings is not None for findings in per_row):
            rounded = self.config.number_forms == "rounded"
            groundings = [
                Grounding.of(findings, rounded, question) if findings is not None else None
                for findings, question in zip(per_row, questions)
            ]
            grounding = GroundedDecoding(self.tokenizer, groundings, prompt_length)
            generate_kwargs["logits_processor"] = LogitsProcessorList(
                [grounding, *generate_kwargs.get("logits_processor", [])]
            )
        output = self.generate(
            input_ids=encoded["input_ids"].to(self.device),
            attention_mask=encoded["attention_mask"].to(self.device),
            image_features=image_features.to(self.device),
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            **{"do_sample": False, **generate_kwargs},
        )
        return [
            until_end_of_text(row.tolist(), self.generation_config.eos_token_id) for row in output[:, prompt_length:]
        ]

    @torch.no_grad()
    def generate_report(
        self,
        volume: Volume | list[Volume],
        findings: Findings | None,
        grounded: bool = True,
        segmentation: "LabelMap | None" = None,
        **generate_kwargs,
    ) -> str:
        """The narrative report of a scan, grounded in `findings` (None: from the image alone).
        grounded: every number and region written is one of the findings' (fm.lm.grounded_decoding).
        segmentation: the scan's, for an encoder that reads it."""
        features = self.scan_features(volume, segmentation)
        prompt = self.prompt(features, findings)
        return self.generate_text(features, prompt, grounded_in=findings if grounded else None, **generate_kwargs)

    @torch.no_grad()
    def answer(
        self,
        volume: Volume | list[Volume],
        question: str,
        findings: Findings | None = None,
        history: list[tuple[str, str]] | None = None,
        grounded: bool = True,
        segmentation: "LabelMap | None" = None,
        **generate_kwargs,
    ) -> str:
        """The answer to `question` about the scan, after the earlier (question, answer) turns of
        `history`; with findings and `grounded`, every number and region in it is one of theirs."""
        features = self.scan_features(volume, segmentation)
        prompt = self.prompt(features, findings, question, history)
        grounded_in = findings if grounded else None
        return self.generate_text(features, prompt, grounded_in=grounded_in, asked=question, **generate_kwargs)

    # -- saving ------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, **kwargs):
        """transformers' config.json + model.safetensors, plus the tokenizer and a model card."""
        result = super().save_pretrained(save_directory, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)
        self.model_card().save(Path(save_directory) / "README.md")
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        hub_options = {k: kwargs[k] for k in ("cache_dir", "revision", "local_files_only", "token") if k in kwargs}
        model.tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **hub_options)
        return model

    def model_card(self) -> ModelCard:
        data = ModelCardData(
            library_name="fm3d",
            license="other",
            pipeline_tag="image-text-to-text",
            tags=["medical-imaging", "3d", "radiology-report-generation", "not-for-clinical-use", self.config.encoder],
        )
        spec = json.dumps(self.config.input_spec, indent=1)
        text = f"""---
{data.to_yaml()}
---

# fm3d report model: {self.config.encoder} encoder + {AdapterConfig(**self.config.adapter).kind} adapter + {self.config.text_config.model_type} language model

**AI draft, not for clinical use.** Research software: it has not been validated for diagnosis and
must not be used to make clinical decisions.

## Intended use

Drafting a narrative brain MRI report and answering questions about a scan, grounded in the
findings that this package's segmentation measured (volumes in mL, diameters in mm, sides from the
affine). Every narrative is checked against those findings before a report keeps it.

## Training data and limitations

See the training arguments saved with the model. Models trained on this package's synthetic
scans have not seen real patients; what they write about a real scan must be read against the
measured findings. Without findings in the prompt, answers come from the image alone and are less
reliable.

## Input

The scan is prepared by the encoder's input spec (stored in config.json):

```json
{spec}
```

## Use

```python
import fm
from transformers import AutoModelForImageTextToText

model = AutoModelForImageTextToText.from_pretrained("PATH_OR_HUB_ID")
print(model.generate_report(volume, findings))  # segmentation=LabelMap(...) if model.reads_segmentation
```
"""
        return ModelCard(text)


def _stop_ids(eos: int | list[int] | None, tokenizer) -> list[int]:
    """The language model's end-of-text id(s), the tokenizer's, and the chat template's end of turn."""
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    ids += [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return list(dict.fromkeys(ids + end_of_turn_ids(tokenizer)))


def until_end_of_text(tokens: list[int], eos: int | list[int] | None) -> list[int]:
    """A generated row up to (not including) its first end-of-text token: after it come only pads."""
    ends = set([eos] if isinstance(eos, int) else eos or [])
    for index, token in enumerate(tokens):
        if token in ends:
            return tokens[:index]
    return tokens


def _each(function, batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """`function` of a batch tensor, or of each (1, ...) tensor of a list, concatenated."""
    if isinstance(batch, torch.Tensor):
        return function(batch)
    return torch.cat([function(item) for item in batch])


register_with_transformers()  # when this module loaded transformers' Auto module itself, the hook had to wait
