"""`fm segment` and `fm report`: a session's label map, or its report folder; a cohort with --manifest."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from fm.cli.errors import EXIT_BAD_INPUT, reports_input_errors
from fm.cli.options import (
    backend_options,
    generation_backend,
    input_options,
    model_options,
    option_errors,
    parse_overrides,
    run_pipeline,
    scan_or_example,
)
from fm.core.io import check_output_path, save_volume


@click.command()
@scan_or_example
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Label map to write (.nii.gz, .nrrd, .mha, ...), on the scan's own grid.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@model_options
@input_options
@reports_input_errors
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
    result = run_pipeline(
        scans, example, model, encoder_name, settings, etta, contrasts, force, frame, series, modality, max_voxels
    )
    written = save_volume(result.volume.with_array(result.segmentation.labels), out, overwrite=overwrite)
    click.echo(f"wrote {written}")


@click.command()
@scan_or_example
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
@backend_options
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
@model_options
@input_options
@reports_input_errors
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
    from fm.lm.loading import BackgroundLoad

    report_model = None if no_llm else BackgroundLoad(lm)  # loads while the scan is segmented
    result = run_pipeline(
        scans, example, model, encoder_name, settings, etta, contrasts, force, frame, series, modality, max_voxels
    )
    written = (
        result.report if no_llm else _with_model_narrative(result, lm, report_model, (backend, vllm_url, vllm_model))
    )
    click.echo("[writing] report files", err=True)
    paths = write_report_folder(
        written, result.volume, result.segmentation.labels, result.segmentation.label_set, out, overwrite, clinical
    )
    if clinical.dicom and SEG_FILE not in paths:
        click.echo("note: nothing was segmented, so no DICOM SEG or SR was written", err=True)
    click.echo("\n".join(result.report.structured["impression"]))
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


def _with_model_narrative(result, lm: str | None, loading, backend_options: tuple):
    """The pipeline's report with the language model's narrative, checked. loading: the report
    model at `lm`, being loaded (fm.lm.loading.BackgroundLoad)."""
    from fm.lm.loading import DEFAULT_LM_ID
    from fm.pipeline.narration import narrate

    click.echo("[narrative] language model", err=True)
    report_model = loading.result()
    if refusal := report_model.segmentation_refusal(result.label_map):
        click.echo(f"note: no narrative from the language model: {refusal}; the template stands", err=True)
        return result.report
    backend = generation_backend(report_model, *backend_options)
    written = narrate(
        result.report, result.session.volumes, report_model, lm or DEFAULT_LM_ID, backend=backend,
        label_map=result.label_map,
    )  # fmt: skip
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
    from fm.pipeline.cohort import read_manifest, report_manifest
    from fm.pipeline.report_pipeline import ReportPipeline

    def load_pipeline():
        with option_errors("--model/--encoder/--set/--etta"):
            pipeline = ReportPipeline.from_pretrained(model, encoder_name, etta=etta, **parse_overrides(settings))
        return functools.partial(pipeline, force=force)

    def load_narrator():
        if no_llm:
            return None
        from fm.lm.loading import DEFAULT_LM_ID, load_report_model
        from fm.pipeline.narration import narrate_all

        report_model = load_report_model(lm)
        backend = generation_backend(report_model, *backend_options)

        def narrate_batch(results):
            sessions = [r.session.volumes for r in results]
            return narrate_all(
                [r.report for r in results], sessions, report_model, lm or DEFAULT_LM_ID, backend=backend,
                label_maps=[r.label_map for r in results],
            )  # fmt: skip

        return narrate_batch

    scans = read_manifest(manifest)
    merged = report_manifest(scans, out, load_pipeline, load_narrator, batch_size, clinical)
    if merged is not None:  # rank 0
        summary, counts = merged
        click.echo(", ".join(f"{n} {status}" for status, n in counts.items()) + f"; summary: {summary}")
        if counts["failed"]:
            sys.exit(EXIT_BAD_INPUT)
