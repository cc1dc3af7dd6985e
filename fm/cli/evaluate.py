"""`fm eval segmentation|reports|vqa`: score this package's outputs (or anyone's) against references.
Each writes OUT/results.json (every case), OUT/results.md (the table) and prints the table."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fm.cli.errors import reports_input_errors
from fm.core.errors import InputError


def _predictions_option(what: str):
    return click.option(
        "--predictions",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help=f"The folder `fm report --manifest` wrote: each row's {what} is read from DIR/<id>/.",
    )


def _write(out: Path, results: dict, table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(table)
    click.echo(table)
    click.echo(f"wrote {out / 'results.json'} and {out / 'results.md'}")


def _label_set(value: str):
    """A label set by name, or from a JSON file in LabelSet.to_dict's layout."""
    from fm.core.labels import LABEL_SETS, LabelSet

    if value in LABEL_SETS:
        return LABEL_SETS[value]
    path = Path(value)
    if not path.is_file():
        raise click.BadParameter(
            f"{value!r} is neither one of {', '.join(sorted(LABEL_SETS))} nor a label set JSON file"
        )
    try:
        return LabelSet.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: is not a label set ({error})") from None


@click.group("eval")
def evaluate():
    """Score segmentations, reports and answers against references (yours or fm synth's).

    \b
    A held-out synthetic split, end to end:
      fm synth --n 20 --split test --out synth
      fm report --manifest synth/manifest-test.parquet --out reports
      fm eval segmentation synth/manifest-test.parquet --predictions reports --out eval/seg
      fm eval reports synth/manifest-test.parquet --predictions reports --out eval/reports
      fm eval vqa synth/manifest-test.parquet --predictions reports --answer --out eval/vqa
    """


@evaluate.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the results.")
@_predictions_option("mask.nii.gz")
@click.option(
    "--labels",
    "predicted_labels",
    default="brain-tumour-v1",
    show_default=True,
    help="The predictions' label set: a name (brain-tumour-v1, brats, btcv-13, ...) or a JSON file.",
)
@click.option("--reference-labels", help="The references' label set (default: the predictions'), e.g. brats.")
@click.option(
    "--tolerance", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Surface Dice tolerance in mm."
)
@reports_input_errors
def segmentation(manifest, out, predictions, predicted_labels, reference_labels, tolerance):
    """Dice, HD95 and surface Dice (mm, on each scan's spacing) and volume errors per region.

    MANIFEST (CSV, JSONL or parquet) has `labels` (the reference; or `reference`) and `prediction` label maps, or
    an `id` with --predictions. Regions are matched by name between the two label sets (structures
    and the nested whole tumour / tumour core / enhancing tumour). Also writes dice.png.

    \b
    Examples:
      fm eval segmentation pairs.csv --out seg_eval/
      fm eval segmentation brats.csv --predictions reports/ --reference-labels brats --out seg_eval/
    """
    from fm.evaluate.segmentation import dice_figure, evaluate_pairs, markdown_table, read_mask_pairs

    predicted = _label_set(predicted_labels)
    reference = _label_set(reference_labels) if reference_labels else predicted
    results = evaluate_pairs(read_mask_pairs(manifest, predictions), predicted, reference, tolerance)
    _write(out, results, markdown_table(results))
    click.echo(f"wrote {dice_figure(results, out / 'dice.png')}")


@evaluate.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the results.")
@_predictions_option("report.json")
@reports_input_errors
def reports(manifest, out, predictions):
    """Field-level precision/recall/F1 (presence, lesion, side, region), count, volume and diameter
    errors, and the narrative's contradictions, omissions, BLEU and ROUGE-L.

    MANIFEST has `findings` (the reference: a findings JSON or a report.json; or
    `reference`), the prediction as
    `report` (a report.json or its folder) or an `id` with --predictions, and optional
    `reference_text` (or `narrative`: the text, or a .txt/.md file).

    \b
    Examples:
      fm eval reports synth/manifest-test.parquet --predictions reports/ --out report_eval/
    """
    from fm.evaluate.reports import evaluate_reports, markdown_table, read_report_cases

    results = evaluate_reports(read_report_cases(manifest, predictions))
    _write(out, results, markdown_table(results))


@evaluate.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the results.")
@click.option("--answer", is_flag=True, help="Let the report model answer the questions without a prediction.")
@_predictions_option("report.json (the measured findings the model is given)")
@click.option("--no-findings", is_flag=True, help="With --answer: the model answers from the image alone.")
@click.option("--lm", help="With --answer: a report model folder or hf-hub:org/name (default: the bundled one).")
@reports_input_errors
def vqa(manifest, out, answer, predictions, no_findings, lm):
    """Closed-question accuracy with 95 % intervals and open-answer scores, per question kind.

    MANIFEST has `question`, `answer` (the reference) and `prediction`, optional `id`, `type`,
    `answer_type` (closed/open) and `path` (the scan, for --answer); a row of fm synth's manifest
    stands for its qa/<sample_id>.json. With --answer the model answers, given the findings of
    --predictions DIR/<id>/report.json as fm vqa is, or the image alone with --no-findings.

    \b
    Examples:
      fm eval vqa answers.jsonl --out vqa_eval/
      fm eval vqa synth/manifest-test.parquet --answer --no-findings --out vqa_eval/
    """
    from fm.evaluate.vqa import evaluate_answers, markdown_table, read_vqa_items
    from fm.pipeline.conversation import answer_items

    items = read_vqa_items(manifest)
    if answer:
        if predictions is None and not no_findings:
            raise click.UsageError("--answer needs --predictions DIR (the measured findings) or --no-findings")
        from fm.evaluate.reports import read_report
        from fm.lm.loading import load_report_model

        def findings_of(case: str):
            return None if no_findings else read_report(predictions / case / "report.json")[0]

        answer_items(items, load_report_model(lm), findings_of)
    elif any(item.prediction is None for item in items):
        raise InputError(f"{manifest}: some questions have no 'prediction'; --answer lets the model answer them")
    results = evaluate_answers(items)
    _write(out, results, markdown_table(results))
