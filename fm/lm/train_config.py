"""The report model's training options (fm.lm.train), each with its help text: `fm train lm`
(click) and `python -m fm.lm.train` (argparse, as torchrun starts it) both make their options from
this one table, so the two can never disagree. No torch here: the command line imports it to list
its options."""

from __future__ import annotations

import argparse
import dataclasses

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass
class LMTrainConfig:
    stage: int = dataclasses.field(
        default=1, metadata={"help": "1: align the adapter (LM frozen); 2: LoRA on the LM and the adapter."}
    )
    steps: int = dataclasses.field(default=500, metadata={"help": "Optimiser steps."})
    lr: float = dataclasses.field(
        default=1e-3, metadata={"help": "Peak learning rate (cosine schedule, short warm-up)."}
    )
    batch_size: int = dataclasses.field(default=1, metadata={"help": "Examples per device and step."})
    grad_accum: int = dataclasses.field(default=4, metadata={"help": "Steps of gradients summed per optimiser step."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the weights, the data order and the split."})
    lora_rank: int = dataclasses.field(default=16, metadata={"help": "Stage 2: LoRA rank."})
    lora_alpha: int = dataclasses.field(default=32, metadata={"help": "Stage 2: LoRA alpha."})
    image_only_share: float = dataclasses.field(
        default=0.2, metadata={"help": "Share of closed questions asked without the findings (the image-only mode)."}
    )
    image_only_copies: int = dataclasses.field(
        default=0,
        metadata={
            "help": "Stage 2: ask each closed question this many more times without the findings (teaches reading the image)."
        },
    )
    checkpoint_every: int = dataclasses.field(
        default=100, metadata={"help": "Save a checkpoint every N steps (a rerun resumes from the last)."}
    )
    max_length: int = dataclasses.field(
        default=2048, metadata={"help": "Longest example in tokens; a longer one is refused, naming its scan."}
    )
    full_lm: bool = dataclasses.field(
        default=False,
        metadata={"help": "Stage 2: train the whole language model instead of LoRA (one trained from scratch)."},
    )
    random_findings: int = dataclasses.field(
        default=0, metadata={"help": "Add N sets of random findings with their template texts (teach copying)."}
    )
    report_section: str = dataclasses.field(
        default="all",
        metadata={
            "help": "A cohort's reports: the FINDINGS or IMPRESSION section, or all of the text.",
            "choices": ("all", "findings", "impression"),
        },
    )
    findings_from: str = dataclasses.field(
        default="",
        metadata={
            "help": "A cohort's measured findings: the folder `fm report --manifest` wrote over it (DIR/<id>/report.json)."
        },
    )
    val_fraction: float = dataclasses.field(
        default=0.1,
        metadata={"help": "A cohort without a split column: this share of its subjects (patients) for validation."},
    )
    eval_every: int = dataclasses.field(
        default=0, metadata={"help": "Validation loss every N steps (0: once, at the end)."}
    )
    eval_reports: int = dataclasses.field(
        default=8,
        metadata={
            "help": "At each validation, write this many validation reports and log their BLEU, ROUGE-L and "
            "guard contradictions (0: the loss only)."
        },
    )
    report_to: str = dataclasses.field(
        default="none",
        metadata={
            "help": "Also log to tensorboard (out/runs), wandb or mlflow: comma-separated, as transformers' report_to."
        },
    )
    strict: bool = dataclasses.field(
        default=False, metadata={"help": "Refuse a cohort with unusable rows instead of skipping them."}
    )
    precision: str = dataclasses.field(
        default="fp32", metadata={"help": "Mixed precision of the training steps.", "choices": PRECISIONS}
    )
    gradient_checkpointing: bool = dataclasses.field(
        default=False, metadata={"help": "Recompute activations in the backward pass: less memory, more time."}
    )
    device: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "auto: the GPU when there is one (each torchrun rank its own), else the CPU.",
            "choices": DEVICES,
        },
    )


def add_config_options(parser: argparse.ArgumentParser, config_class) -> None:
    """One --option per field of a config dataclass, typed by its default (flags for booleans)."""
    defaults = config_class()
    for field in dataclasses.fields(config_class):
        value, option = getattr(defaults, field.name), f"--{field.name.replace('_', '-')}"
        help_text = field.metadata.get("help")
        if isinstance(value, bool):
            parser.add_argument(option, action="store_true", help=help_text)
        else:
            parser.add_argument(
                option, type=type(value), default=value, help=help_text, choices=field.metadata.get("choices")
            )


def config_from_args(config_class, args: argparse.Namespace):
    return config_class(**{field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)})
