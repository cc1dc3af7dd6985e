"""`fm probe`: linear probes of frozen encoders on a labelled cohort (fm.probe.run)."""

from __future__ import annotations

from pathlib import Path

import click

from fm.cli.errors import reports_input_errors
from fm.cli.options import option_errors
from fm.core.errors import InputError


@click.command()
@click.argument("manifest", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--encoder",
    "encoders",
    multiple=True,
    metavar="SPEC",
    help="An encoder to probe (repeat for several): NAME, NAME(key=value,...), NAME@WEIGHTS (a checkpoint, a folder or hf-hub:org/name) or segmenter:NAME|FOLDER (a segmenter network's encoder, e.g. segmenter:synth-unet); each with weights is also probed at random init.",
)
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Folder for results and figures."
)
@click.option("--label", "label_column", default="label", show_default=True, help="The manifest's label column.")
@click.option("--task", type=click.Choice(["classification", "regression"]), help="Default: from the labels.")
@click.option("--probe", type=click.Choice(["linear", "knn", "mlp"]), default="linear", show_default=True)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Outer group-aware folds.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Repeats of the outer split.")
@click.option("--bootstrap", type=click.IntRange(min=100), default=1000, show_default=True)
@click.option("--few-shot", "fractions", help="Label fractions for the few-shot curve, e.g. 0.1,0.25,0.5,1.")
@click.option(
    "--baseline-2d",
    default="timm25d",
    show_default=True,
    metavar="SPEC",
    help="The 2D slice-wise baseline, e.g. timm25d(model_name=resnet50)@weights.pth.",
)
@click.option(
    "--cache", type=click.Path(path_type=Path, file_okay=False), help="Feature cache (default: OUT/features)."
)
@click.option(
    "--npz",
    is_flag=True,
    help="MANIFEST is a MedMNIST-style .npz of volumes and labels (written as NIfTI under OUT/npz first).",
)
@reports_input_errors
def probe(
    manifest, encoders, out, label_column, task, probe, folds, seeds, bootstrap, fractions, baseline_2d, cache, npz
):
    """Compare frozen encoders by linear probes on labelled scans, with the random-init twin of each,
    an intensity-histogram baseline and a 2D slice-wise timm baseline beside them.

    MANIFEST: a CSV or parquet with 'path' and the label column, optional 'group' (subject: never
    on both sides of a split) and 'split' (train/test, else group-aware cross-validation). Writes
    OUT/results.json, results.csv, results.md, metrics.png, roc.png and fewshot.png.

    \b
    Examples:
      fm probe cohort.csv --encoder segmenter:synth-unet --encoder anatcl@anatcl.pth --out probe/
      fm probe organ.npz --npz --encoder swin_bob@model_final.pt --out probe/ --few-shot 0.1,0.5,1
    """
    from fm.probe.features import cases_from_npz
    from fm.probe.run import run_probes

    if npz:
        manifest = cases_from_npz(manifest, out / "npz")
    with option_errors("--few-shot"):
        try:
            shares = tuple(float(part) for part in fractions.split(",")) if fractions else ()
        except ValueError:
            raise InputError(f"label fractions are numbers separated by commas: {fractions}") from None
        if any(not 0 < share <= 1 for share in shares):
            raise InputError(f"label fractions must lie in (0, 1]: {fractions}")
    run = run_probes(
        manifest, list(encoders), out, label_column, task, probe, folds, seeds, bootstrap, shares, cache, baseline_2d
    )
    click.echo((out / "results.md").read_text())
    click.echo(f"wrote {out}/results.json, results.csv, results.md and the figures ({len(run.results)} sources)")
