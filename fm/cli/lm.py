"""`fm lm init`: a report model composed from any causal language model on disk or on the Hub."""

from __future__ import annotations

from pathlib import Path

import click

from fm.cli.errors import reports_input_errors


@click.group("lm")
def lm():
    """Report models made from your own language model."""


@lm.command("init")
@click.option(
    "--lm",
    "language_model",
    required=True,
    help="A causal language model: a folder or a Hub id (ORG/NAME or hf-hub:ORG/NAME) that transformers' "
    "Auto classes load without remote code (Llama, Qwen2, Gemma, Phi-3, GPT-2, ...).",
)
@click.option(
    "--encoder",
    help="An encoder of the registry (`fm encoders`), e.g. brain_id or swin_bob. Default: the bundled report "
    "model's encoder (segmentation_grid: the segmentation and intensity on a coarse grid, no weights; training "
    "then needs each scan's segmentation, --findings-from), with its input spec.",
)
@click.option(
    "--encoder-weights",
    type=click.Path(path_type=Path, exists=True),
    help="Published weights for --encoder (`fm weights list`); without them a named encoder is random.",
)
@click.option(
    "--adapter",
    type=click.Choice(["perceiver", "mlp", "pool"]),
    default="perceiver",
    show_default=True,
    help="Between encoder and language model: learned queries, an MLP over every token, or a spatial pool.",
)
@click.option(
    "--queries", type=click.IntRange(min=1), default=32, show_default=True, help="Visual tokens of the perceiver."
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    help="The language model's weights in this precision (default: as stored).",
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Folder for the bundle.")
@reports_input_errors
def init(language_model, encoder, encoder_weights, adapter, queries, precision, out):
    """Compose a report model and save it as one bundle (config, safetensors, tokenizer with the
    image placeholder, model card) that `fm report --lm`, `fm vqa --lm`, `fm chat --lm`,
    `fm train lm --init`, `fm export vllm` and transformers' AutoModelForImageTextToText take.
    Its adapter is untrained: `fm train lm` aligns it. AI draft tooling, not for clinical use.

    \b
      fm lm init --lm Qwen/Qwen2.5-0.5B-Instruct --out my-report-model
      fm train lm --init my-report-model --data runs/synth --out runs/lm1 --stage 1
    """
    from fm.lm.compose import compose_report_model  # torch and transformers: only here
    from fm.lm.prompts import has_chat_template, system_role

    if out.exists() and any(out.iterdir()):
        raise click.UsageError(f"{out} exists and is not empty: choose a new folder")
    if encoder_weights and not encoder:
        raise click.UsageError("--encoder-weights needs --encoder")
    model = compose_report_model(
        language_model, encoder, encoder_weights, adapter=adapter, queries=queries, precision=precision
    )
    model.save_pretrained(out)
    lm_config = model.config.text_config
    if has_chat_template(model.tokenizer):
        prompts = "its chat template" + (
            "" if system_role(model.tokenizer) else " (no system role: findings in the user turn)"
        )
    else:
        prompts = "the plain prompt format (the tokenizer has no chat template)"
    click.echo(
        f"wrote {out}: {lm_config.model_type} language model ({model.language_model.dtype}), "
        f"{model.config.encoder} encoder, {adapter} adapter (untrained); prompts in {prompts}"
    )
