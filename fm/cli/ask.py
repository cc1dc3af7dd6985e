"""`fm vqa` and `fm chat`: questions about a scan, answered by the report model and checked by the guard."""

from __future__ import annotations

import sys

import click

from fm.cli.errors import reports_input_errors
from fm.cli.options import backend_options, generation_backend, run_pipeline
from fm.core.examples import DEFAULT_EXAMPLE, example_paths
from fm.core.io import load_volume
from fm.core.session import load_session


def _conversation_options(command):
    for option in reversed(
        [
            click.option("--lm", help="Report model: a folder or hf-hub:org/name (default: the bundled one)."),
            click.option("--no-findings", is_flag=True, help="Answer from the image alone: the scan is not segmented."),
            click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True),
        ]
    ):
        command = option(command)
    return backend_options(command)


def _conversation(scans, example, lm, no_findings, backend_options):
    """(generation backend, the scan's encoder features, findings or None) for fm vqa and fm chat."""
    from fm.lm.loading import BackgroundLoad
    from fm.pipeline.scan_features import session_features

    loading = BackgroundLoad(lm)  # while the scan is read and segmented
    backend = None
    if backend_options != ("transformers", None, None):  # a vLLM server, or a usage error: checked first
        backend = generation_backend(loading.result(), *backend_options)
    if no_findings:
        paths = [str(p) for p in example_paths(example)] if example else list(scans)
        if not paths:
            raise click.UsageError("give a scan or --example")
        volumes, findings, segmentation = load_session(paths, None, load=load_volume).volumes, None, None
    else:
        result = run_pipeline(
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
        volumes, findings, segmentation = result.session.volumes, result.report.findings, result.label_map
    report_model = loading.result()
    backend = backend or generation_backend(report_model, *backend_options)
    return backend, session_features(report_model, volumes, segmentation), findings


def _answer_and_check(conversation, question, history, max_new_tokens) -> str:
    """Streams the answer to stdout, then on stderr what the guard found (contradictions, claims it
    cannot check) when findings were given."""
    from fm.pipeline.conversation import checked, stream_answer

    backend, features, findings = conversation
    pieces = []
    for piece in stream_answer(backend, features, findings, question, history, max_new_tokens):
        click.echo(piece, nl=False)
        pieces.append(piece)
    click.echo()
    answer = checked(question, "".join(pieces), findings)
    for warning in answer.warnings:
        click.echo(f"warning: {warning}", err=True)
    return answer.text


@click.command()
@click.argument("scan_and_question", nargs=-1, metavar="[SCAN] QUESTION")
@click.option("--example", is_flag=True, help="Ask about the bundled example session instead of SCAN.")
@_conversation_options
@reports_input_errors
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


@click.command()
@click.argument("scan", required=False)
@click.option("--example", is_flag=True, help="Talk about the bundled example session instead of SCAN.")
@_conversation_options
@reports_input_errors
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
