"""`fm encoders` and `fm embed`: the registered encoders, and embeddings of scans (fm.probe.embed)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from encoders.memory import PRECISIONS
from fm.cli.errors import EXIT_BAD_INPUT, reports_input_errors
from fm.cli.options import option_errors, parse_overrides
from fm.core.examples import example_path


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--example", is_flag=True, help="Embed the bundled example scan instead of PATHS.")
@click.option("--encoder", "encoder_name", required=True, help="Encoder name (see `fm encoders`).")
@click.option(
    "--pretrained",
    help="Published checkpoint file, a saved encoder folder, hf-hub:org/name, or an https URL (downloaded once into the cache; `fm weights list` names the published ones). Without it the weights are random (seeded): the rows test the plumbing, they carry no learnt features.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Encoder constructor override, e.g. widths=8,16,32,64.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Parquet file (extended if it exists).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Scans run together (1: bit-identical rows whatever the batch).",
)
@click.option(
    "--tile",
    type=click.IntRange(min=1),
    help="Run the network on cubes of this many voxels a side and average their embeddings (bounded memory; brain_id, swin_bob*). Default: the whole volume.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="bf16: CPU autocast, about half the memory and time for brain_id (see eval/bench_embed.py for the difference).",
)
@click.option(
    "--max-memory",
    "max_memory",
    metavar="SIZE",
    help="Refuse a scan whose forward pass is estimated above this, e.g. 16GiB (default: the memory available now).",
)
@reports_input_errors
def embed(paths, example, encoder_name, pretrained, settings, out, batch_size, tile, precision, max_memory):
    """Embed scans with an encoder: one parquet row per scan.

    Each row holds the path, the scan's content hash, the encoder and weights hashes, the input
    spec (with --tile and --precision) and the embedding. Scans already in OUT with the same
    encoder, weights and settings are skipped, so a run can be resumed or extended. Any format
    `fm info` reads works. Before each scan the peak memory is estimated: a scan that would not
    fit is refused with the --tile that would. Under torchrun the ranks share the scans (each on
    its own GPU where there are GPUs) and rank 0 merges their parts into OUT.

    \b
    Examples:
      fm embed --example --encoder anatcl --out emb.parquet
      torchrun --nproc-per-node 8 -m fm embed scans/*.nii.gz --encoder anatcl --out emb.parquet
      fm embed scans/*.nii.gz --encoder brain_id --pretrained brainid.pth --out emb.parquet
      fm embed scans/*.nii.gz --encoder brain_id --pretrained brainid.pth --tile 128 --out emb.parquet
      fm embed dicom_study/ --encoder anatcl --pretrained hf-hub:org/anatcl --out emb.parquet
    """
    from encoders.memory import parse_size
    from encoders.registry import list_encoders

    if example == bool(paths):
        raise click.UsageError("give scan paths or --example" + (", not both" if example else ""))
    if encoder_name not in list_encoders():
        raise click.BadParameter(
            f"unknown encoder {encoder_name!r}; choose from {', '.join(list_encoders())}", param_hint="--encoder"
        )
    with option_errors("--max-memory"):
        limit = parse_size(max_memory) if max_memory else None
    from fm.probe.embed import embed_shared  # torch-heavy

    scans = [str(example_path())] if example else list(paths)
    with option_errors():  # settings the encoder cannot take (a tile for AnatCL)
        shared = embed_shared(
            scans,
            encoder_name,
            out,
            pretrained=pretrained,
            overrides=parse_overrides(settings),
            batch_size=batch_size,
            tile=tile,
            precision=precision,
            max_memory_bytes=limit,
        )
    run = shared.run
    for message in run.errors:
        click.echo(f"error: {message}", err=True)
    if shared.totals is not None:  # rank 0
        added, cached, failed = shared.totals
        if run.random_weights:
            click.echo(
                f"note: {encoder_name} has random weights (no --pretrained): these embeddings carry no learnt features",
                err=True,
            )
        processes = f" by {shared.world} processes" if shared.world > 1 else ""
        click.echo(f"embedded {added} scans into {out}{processes} ({cached} already there, skipped; {failed} failed)")
    if run.errors:
        sys.exit(EXIT_BAD_INPUT)


@click.command()
def encoders():
    """List the registered encoders."""
    from encoders.registry import describe_encoder, list_encoders

    for name in list_encoders():
        click.echo(f"{name:<16}{describe_encoder(name)}")
