"""`fm synth`: synthetic brain MRI with exact ground truth (fm.synth)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--n", "count", type=click.IntRange(min=1), required=True, help="Number of scans to generate.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Dataset seed; scan i is the same for the same seed."
)
@click.option(
    "--split",
    type=click.Choice(["train", "test"]),
    default="train",
    show_default=True,
    help="Distribution (test is out-of-distribution).",
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Output folder.")
@click.option(
    "--preview", is_flag=True, help="Also write preview-<split>.png, a montage of the first scans with labels."
)
def synth(count, seed, split, out, preview):
    """Generate synthetic brain MRI with exact ground truth.

    Each scan comes with its label map, findings measured from it, a structured and a narrative
    report, and question/answer pairs; manifest-<split>.parquet lists them for
    `datasets.load_dataset("parquet", ...)`. Scans already in OUT for this split and seed are
    kept, so an interrupted run resumes. The test split differs from train in contrast,
    resolution, lesion size and location (see fm.synth.generator.SPLITS).

    \b
    Examples:
      fm synth --n 100 --seed 0 --split train --out data/synth --preview
      fm synth --n 20 --seed 1 --split test --out data/synth
    """
    from fm.synth.dataset import write_dataset  # torch-heavy: imported only for this command

    manifest = write_dataset(out, count, seed, split, preview=preview)
    click.echo(f"wrote {count} {split} scans; manifest {manifest}")
    if preview:
        click.echo(f"preview {out / f'preview-{split}.png'}")
