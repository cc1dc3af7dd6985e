"""`fm train lm` and `fm train seg`: the training recipes of the report model and the bundled network."""

from __future__ import annotations

from pathlib import Path

import click

from fm.cli.errors import reports_input_errors


@click.group()
def train():
    """Train the project's models (recipes in the repository, seeded and resumable)."""


def _config_options(command):
    """One option per field of fm.lm.train_config.LMTrainConfig, with its help text."""
    import dataclasses

    from fm.lm.train_config import LMTrainConfig

    defaults = LMTrainConfig()
    for field in reversed(dataclasses.fields(LMTrainConfig)):
        value, name = getattr(defaults, field.name), "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help")
        if isinstance(value, bool):
            command = click.option(name, field.name, is_flag=True, help=help_text)(command)
        else:
            kind = click.Choice(field.metadata["choices"]) if "choices" in field.metadata else type(value)
            command = click.option(name, field.name, type=kind, default=value, show_default=True, help=help_text)(
                command
            )
    return command


@train.command("lm")
@click.option(
    "--init",
    required=True,
    help="The report model to start from: a folder or Hub id (`fm lm init` makes one from any causal LM).",
)
@click.option(
    "--data",
    required=True,
    help="A folder `fm synth` wrote, or a cohort: a CSV, JSON Lines or parquet table, a `datasets` folder or a "
    "Hub dataset with the columns image (scans, ';' between contrasts, or a DICOM folder) and report, and "
    "optionally id, subject, split, findings, qa (docs/report-model.md).",
)
@click.option("--split", default="train", show_default=True, help="The split of an `fm synth` folder.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Run folder (resumable).")
@_config_options
@reports_input_errors
def train_lm(init, data, split, out, **options):
    """Train the report model: stage 1 aligns the adapter with the language model frozen, stage 2
    adds LoRA. Writes OUT/final (stage 2: LoRA merged), OUT/lora, OUT/log.csv and, for a cohort,
    OUT/skipped_rows.csv. Run the same command again to resume.

    \b
      fm train lm --init my-report-model --data cohort.csv --findings-from reports/ --out runs/lm1 --stage 1
      fm train lm --init runs/lm1/final --data cohort.csv --findings-from reports/ --out runs/lm2 --stage 2
      torchrun --nproc_per_node 2 -m fm.lm.train ...   # the same options, on several processes
    """
    from fm.lm.train import LMTrainConfig  # torch and transformers: only here
    from fm.lm.train import train_lm as run

    click.echo(run(init, data, out, LMTrainConfig(**options), split))


@train.command("seg")
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Run folder (checkpoint, log)."
)
@click.option("--steps", type=click.IntRange(min=1), default=4000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--f-maps",
    type=click.IntRange(min=8),
    default=8,
    show_default=True,
    help="Width of the U-Net's first level (a multiple of 8).",
)
@click.option(
    "--patch", type=click.IntRange(min=16), default=64, show_default=True, help="Cubic training patch size (voxels)."
)
@click.option(
    "--decay-steps",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Anneal the learning rate (cosine, to 5 %) over the last N steps.",
)
@click.option(
    "--balance-from",
    type=click.IntRange(min=0),
    help="From this step on, weight cross-entropy by class frequency ** -POWER (rare lesion classes).",
)
@click.option(
    "--balance-power",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="POWER for --balance-from (0.5: 1/sqrt, 1: inverse frequency).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=2e-3,
    show_default=True,
    help="Adam learning rate (before any decay).",
)
@click.option(
    "--lesion-fraction",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of patches placed on a lesion.",
)
@click.option(
    "--lesion-offset",
    type=click.FloatRange(0, 0.5),
    default=0.0,
    show_default=True,
    help="How far (share of the patch) the lesion may lie off such a patch's centre.",
)
@click.option(
    "--whole-tumour-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Weight of an extra loss on all lesion classes as one region.",
)
@click.option(
    "--init",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Start from this checkpoint's weights (a fine-tuning stage with its own schedule).",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 1),
    default=1,
    show_default=True,
    help="1: make scans in a second process; 0: in the training process.",
)
@click.option(
    "--export",
    "export_to",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write the shipped format here.",
)
@reports_input_errors
def train_seg(
    out,
    steps,
    seed,
    f_maps,
    patch,
    decay_steps,
    balance_from,
    balance_power,
    lr,
    lesion_fraction,
    lesion_offset,
    whole_tumour_weight,
    init,
    workers,
    export_to,
):
    """Train the default segmenter on synthetic scans only.

    Runs again with the same OUT continue from the last checkpoint (written every 100 steps);
    --steps can be raised to train longer.

    \b
    Examples:
      fm train seg --out runs/seg --steps 4000
      fm train seg --out runs/seg --steps 6000 --export fm/data/default_segmenter

    \b
    The shipped default segmenter (a run, then a fine-tuning stage from its checkpoint):
      fm train seg --out runs/seg --steps 4000 --decay-steps 1000 --balance-from 2400
      fm train seg --out runs/seg_ft --init runs/seg/checkpoint.pt --seed 1 --steps 2400 --lr 1e-3
        --decay-steps 1200 --balance-from 0 --balance-power 0.75 --lesion-fraction 0.6
        --lesion-offset 0.3 --export fm/data/default_segmenter
    """
    from heads.train_segmenter import SegTrainConfig, export
    from heads.train_segmenter import train as run_training

    if f_maps % 8:
        raise click.BadParameter("must be a multiple of 8 (GroupNorm with 8 groups)", param_hint="--f-maps")
    if decay_steps > steps:
        raise click.BadParameter(f"{decay_steps} is more than --steps {steps}", param_hint="--decay-steps")
    config = SegTrainConfig(
        steps=steps,
        seed=seed,
        f_maps=f_maps,
        patch=(patch,) * 3,
        lr=lr,
        decay_steps=decay_steps,
        balance_from_step=balance_from,
        balance_power=balance_power,
        lesion_fraction=lesion_fraction,
        lesion_offset=lesion_offset,
        whole_tumour_weight=whole_tumour_weight,
        init=None if init is None else str(init),
        workers=workers,
    )
    checkpoint = run_training(out, config)
    click.echo(f"checkpoint {checkpoint}")
    if export_to:
        click.echo(f"exported {export(checkpoint, export_to)}")
