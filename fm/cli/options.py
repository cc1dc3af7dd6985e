"""Options and argument handling of the `fm` commands that read scans or run the report model:
reading a scan (asking which DICOM series when a person is there), the segmenter and
language-model backend options, and running the report pipeline with a line per stage on stderr."""

from __future__ import annotations

import contextlib
import json
import sys
import time

import click

from fm.core.contrasts import parse_contrasts
from fm.core.dicom import MultipleSeriesError
from fm.core.errors import InputError, InputFileError
from fm.core.examples import DEFAULT_EXAMPLE, EXAMPLES, example_contrasts, example_modality, example_path, example_paths
from fm.core.io import Volume, load_volume
from fm.core.session import load_session
from fm.pipeline.gate import check_scan, enforce
from heads.segmenters import ADAPTIVE_MODEL_ID, BUNDLED_NETWORK


@contextlib.contextmanager
def option_errors(param_hint: str | None = None):
    """An InputError that names no file is about the command's options: click's usage error
    (exit 2, with the usage line). A file's problem passes on to reports_input_errors."""
    try:
        yield
    except InputFileError:
        raise
    except InputError as err:
        raise click.BadParameter(str(err), param_hint=param_hint) from None


def load_scan(path: str, frame, series, modality, max_voxels) -> Volume:
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


def scan_path(path: str | None, example: str | None, modality: str | None) -> tuple[str, str | None]:
    """The scan a command reads, given as a path or as --example NAME (with its modality)."""
    if path is None and example is None:
        raise click.UsageError("give a scan path or --example")
    if path is not None and example is not None:
        raise click.UsageError("give a scan path or --example, not both")
    if example:
        return str(example_path(example)), modality or example_modality(example)
    return path, modality


def input_options(command):
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


def parse_overrides(pairs: tuple[str, ...]) -> dict:
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


def model_options(command):
    """Options choosing the segmentation model (fm segment, fm report)."""
    options = [
        click.option(
            "--model",
            help="Segmenter: fm3d/atlas-em (default: contrast-adaptive, any MRI contrast, several at once), synth-unet (the bundled network), a folder (config.json + model.safetensors), hf-hub:org/name, or with --encoder swin_bob* a published checkpoint file or its https URL (`fm weights list`).",
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


def backend_options(command):
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


def generation_backend(report_model, backend: str, vllm_url: str | None, vllm_model: str | None):
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


def scan_or_example(command):
    command = click.option(
        "--example",
        is_flag=False,
        flag_value=DEFAULT_EXAMPLE,
        type=click.Choice(sorted(EXAMPLES)),
        help=f"Use a bundled example scan instead of SCANS (default: {DEFAULT_EXAMPLE}).",
    )(command)
    return click.argument("scans", nargs=-1, type=click.Path(path_type=str))(command)


def run_pipeline(
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
    with option_errors("--contrasts"):
        names = parse_contrasts(contrasts, len(scans)) if contrasts else None
    # load_scan asks which DICOM series to use when a folder holds several and a person is there
    session = load_session(list(scans), names, load=lambda path: load_scan(path, frame, series, modality, max_voxels))
    if model is None or model in (ADAPTIVE_MODEL_ID, BUNDLED_NETWORK):  # brain models; an organ model's scan is a body
        enforce(session.reference.source.path, check_scan(session.reference), force)

    from fm.pipeline.report_pipeline import ReportPipeline  # SimpleITK and the atlas; torch only for network models

    with option_errors("--model/--encoder/--set/--etta"):
        pipeline = ReportPipeline.from_pretrained(model, encoder_name, etta=etta, **parse_overrides(settings))

    def progress(stage):
        click.echo(f"[{time.perf_counter() - started:6.1f} s] {stage}", err=True)

    return pipeline(session, progress=progress, force=force)
