"""The recipe for the default report model shipped in fm/data/default_lm: no pretrained language
model can be downloaded on the project's machines, so a small Llama-architecture model is trained
from scratch, with a byte-level BPE tokenizer trained on the same corpus, on fm.synth scans and
texts.

    fm synth --n 480 --seed 0 --split train --out runs/lmdata480
    python -m fm.lm.default_lm --data runs/lmdata480 --out runs/lm480 --export fm/data/default_lm

Steps: (1) the tokenizer, trained on every prompt and target the training will show, digits one
token each; (2) the untrained model, behind the bundled segmenter's Brain-ID encoder (frozen) and a
perceiver adapter; (3) stage 2, language: the whole language model and the adapter trained together
(`full_lm`: LoRA needs a pretrained model to adapt) on the scans' reports, questions and chats plus
`random_findings` sets of findings drawn at random, which teach the model to copy the measurements
(with the scans' texts alone it memorised them); copying appeared late, as a phase change between
steps 2500 and 4000; (4) stage 3, sight: the same language model behind `vision_encoder`
(segmentation_grid, which carries the lesions the Brain-ID features do not) and a new adapter, at a
lower learning rate and with each closed question also asked `image_only_copies` times without the
findings: at stage 2's rate, or as 5 % of the examples, a model never learnt to look at the image.
Stage 1 (the adapter alone) is off by default here: against a language model that has not learnt
language yet it measured no progress (loss 6.79 to 6.72 in 124 steps, ln 1024 = 6.93); it is for
pretrained language models (`fm train lm`). Each stage resumes when run again, and one whose final
model is in the run folder is skipped (the scans' encoder features are kept there); every step is
seeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, PreTrainedTokenizerFast

from fm.core.findings import Findings
from fm.lm.adapter import AdapterConfig
from fm.lm.modeling import FMForReportGeneration
from fm.lm.prompts import IMAGE_TOKEN, build_prompt
from fm.lm.train import LMTrainConfig, add_config_options, config_from_args, train_lm, training_examples

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN]


@dataclasses.dataclass(frozen=True)
class DefaultLMRecipe:
    vocab_size: int = 1024
    hidden_size: int = 192
    layers: int = 4
    heads: int = 6
    kv_heads: int = 2
    intermediate_size: int = 512
    max_positions: int = 2048
    num_queries: int = 32
    seed: int = 0
    stage1_steps: int = 0
    stage2_steps: int = 6000
    batch_size: int = 8
    stage1_lr: float = 1e-3
    stage2_lr: float = 1e-3
    random_findings: int = 6000
    vision_encoder: str = "segmentation_grid"
    vision_adapter: str = "mlp"
    stage3_steps: int = 3500
    stage3_lr: float = 3e-4
    stage3_random_findings: int = 2000
    image_only_copies: int = 2

    def common(self) -> dict:
        return dict(seed=self.seed, batch_size=self.batch_size, grad_accum=1, checkpoint_every=500)

    def stage2_config(self) -> LMTrainConfig:
        return LMTrainConfig(
            stage=2,
            steps=self.stage2_steps,
            lr=self.stage2_lr,
            full_lm=True,
            random_findings=self.random_findings,
            **self.common(),
        )

    def stage3_config(self) -> LMTrainConfig:
        return LMTrainConfig(
            stage=2,
            steps=self.stage3_steps,
            lr=self.stage3_lr,
            full_lm=True,
            random_findings=self.stage3_random_findings,
            image_only_copies=self.image_only_copies,
            **self.common(),
        )


def train_tokenizer(data: Path, recipe: DefaultLMRecipe) -> PreTrainedTokenizerFast:
    """Byte-level BPE over every prompt (findings written out) and every target of the training
    set, digits one token each: a number is then copied digit by digit, whatever stands before it."""
    texts = []
    for example in training_examples(data, "train", recipe.stage2_config()):
        findings = Findings.from_json(example.findings) if example.findings else None
        texts += [build_prompt(0, findings, example.question, list(example.history)), example.target]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens=[IMAGE_TOKEN],
    )


def untrained_model(tokenizer, recipe: DefaultLMRecipe) -> FMForReportGeneration:
    """The bundled segmenter's encoder and input spec, a perceiver adapter, a small Llama."""
    from heads.model_folder import read_config
    from heads.segmenters import bundled_network_folder, create_segmenter

    torch.manual_seed(recipe.seed)
    segmenter, _ = create_segmenter("synth-unet")
    folder_config = read_config(bundled_network_folder())
    language = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads,
        max_position_embeddings=recipe.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = FMForReportGeneration.from_parts(
        language,
        tokenizer,
        encoder=folder_config.encoder,
        encoder_kwargs=folder_config.encoder_kwargs,
        adapter=AdapterConfig(kind="perceiver", num_queries=recipe.num_queries),
        input_spec=folder_config.input_spec,
    )
    model.encoder.load_state_dict(segmenter.net.encoder.state_dict())
    return model


def with_vision(model: FMForReportGeneration, encoder: str, adapter: AdapterConfig) -> FMForReportGeneration:
    """`model`'s language model and tokenizer behind another encoder and a new, untrained adapter."""
    composed = FMForReportGeneration.from_parts(model.language_model.config, model.tokenizer, encoder, adapter=adapter)
    composed.language_model.load_state_dict(model.language_model.state_dict())
    composed.config.number_forms = model.config.number_forms
    composed.generation_config = model.generation_config
    return composed


def build(data: str | Path, out: str | Path, recipe: DefaultLMRecipe) -> Path:
    """Stages 1 (when asked) and 2 on the Brain-ID encoder, then stage 3 on the vision encoder; a
    stage whose final model is in `out` is not run again."""
    data, out = Path(data), Path(out)
    stage2 = out / "stage2" / "final"
    if not (stage2 / "config.json").is_file():
        if not (out / "init" / "config.json").is_file():
            untrained_model(train_tokenizer(data, recipe), recipe).save_pretrained(out / "init")
        start = out / "init"
        if recipe.stage1_steps:
            stage1 = LMTrainConfig(stage=1, steps=recipe.stage1_steps, lr=recipe.stage1_lr, **recipe.common())
            start = train_lm(start, data, out / "stage1", stage1, features_cache=out / "scan_features")
        stage2 = train_lm(start, data, out / "stage2", recipe.stage2_config(), features_cache=out / "scan_features")
    if not recipe.stage3_steps:
        return stage2
    vision = out / "vision_init"
    if not (vision / "config.json").is_file():
        torch.manual_seed(recipe.seed)
        adapter = AdapterConfig(kind=recipe.vision_adapter)
        with_vision(FMForReportGeneration.from_pretrained(stage2), recipe.vision_encoder, adapter).save_pretrained(
            vision
        )
    return train_lm(vision, data, out / "stage3", recipe.stage3_config(), features_cache=out / "scan_features")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fm.lm.default_lm", description="Build the default report model.")
    parser.add_argument("--data", required=True, help="a folder written by fm synth (train split)")
    parser.add_argument("--out", required=True, help="run folder (resumable)")
    parser.add_argument("--export", help="copy the final model here (fm/data/default_lm to ship it)")
    add_config_options(parser, DefaultLMRecipe)
    args = parser.parse_args(argv)
    final = build(args.data, args.out, config_from_args(DefaultLMRecipe, args))
    if args.export:
        shutil.copytree(final, args.export, dirs_exist_ok=True)
    print(final)


if __name__ == "__main__":
    main()
