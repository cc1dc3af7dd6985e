"""`fm report --manifest scans.csv --out DIR`: reports for a cohort. Each row of the manifest is
one session (one scan, or its co-registered contrasts); its report folder is DIR/<id>/. A rerun
skips the sessions whose folder is complete, one session's failure is recorded and the rest go on,
and the language model writes the narratives of a batch of sessions at once through the chosen
backend (fm.serve.backends). Under torchrun each rank reports its slice of the manifest (rows rank,
rank + world, ...) and rank 0 merges the ranks' summaries into DIR/summary.csv.

Manifest: a CSV with a `path` column (several files of one session joined by ';', relative paths
read from the manifest's folder), optional `id` (default: the first file's name without its
extension) and `contrasts` (as --contrasts takes them, e.g. flair,t1c).
"""

from __future__ import annotations

import csv
import dataclasses
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from fm.clinical.outputs import SEG_FILE, SR_FILE, ClinicalOutputs, ClinicalRequest
from fm.core.errors import InputError, InputFileError
from fm.pipeline.report_folder import REPORT_FILES

SUMMARY_FIELDS = ("id", "path", "status", "seconds", "lesions", "narrative", "error")


@dataclasses.dataclass(frozen=True)
class CohortScan:
    id: str
    paths: tuple[str, ...]
    contrasts: tuple[str, ...] | None


@dataclasses.dataclass
class Outcome:
    scan: CohortScan
    status: str  # "reported", "skipped" (complete from an earlier run) or "failed"
    seconds: float = 0.0
    lesions: int | None = None
    narrative: str = ""  # "model" (kept), "template" (withheld or no language model)
    error: str = ""  # one line

    def row(self) -> dict:
        return {
            "id": self.scan.id,
            "path": ";".join(self.scan.paths),
            "status": self.status,
            "seconds": f"{self.seconds:.1f}",
            "lesions": "" if self.lesions is None else self.lesions,
            "narrative": self.narrative,
            "error": self.error,
        }


def read_manifest(path: str | Path) -> list[CohortScan]:
    """The sessions a manifest (CSV, JSONL or parquet) lists, with unique ids safe as folder names.
    fm synth's manifest-<split>.parquet is one: its `image` and `sample_id` stand for `path` and `id`."""
    from fm.core.contrasts import parse_contrasts
    from fm.core.manifests import read_rows, resolved

    path = Path(path)
    rows = read_rows(path, (), ("path", "id", "contrasts"))
    if not any(key in rows[0] for key in ("path", "image")):
        raise InputFileError(path, "is not a manifest: it needs a 'path' column (and optional 'id', 'contrasts')")
    scans, seen = [], set()
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        files = [part.strip() for part in str(row.get("path") or row.get("image") or "").split(";") if part.strip()]
        if not files:
            raise InputFileError(path, f"line {number} has no path")
        files = [str(resolved(path, file)) for file in files]
        scan_id = _folder_name(str(row.get("id") or row.get("sample_id") or "").strip() or _stem(files[0]))
        if scan_id in seen:
            raise InputFileError(path, f"line {number}: id {scan_id!r} is used twice; give each row its own id")
        seen.add(scan_id)
        contrasts = str(row.get("contrasts") or "").strip()
        try:
            names = tuple(parse_contrasts(contrasts, len(files))) if contrasts else None
        except InputError as error:
            raise InputFileError(path, f"line {number}: {error}") from None
        scans.append(CohortScan(scan_id, tuple(files), names))
    return scans


def is_complete(folder: Path, clinical: ClinicalOutputs | None = None) -> bool:
    if not all((folder / name).is_file() for name in REPORT_FILES):
        return False
    missing = {name for name in (clinical.files if clinical else ()) if not (folder / name).is_file()}
    # an empty segmentation has no SEG or SR (nothing to draw or measure): complete without them
    return not missing or (missing <= {SEG_FILE, SR_FILE} and not np.any(nib.load(folder / "mask.nii.gz").dataobj))


def report_cohort(
    scans: list[CohortScan],
    out: str | Path,
    pipeline,
    narrate_batch: Callable[[list], list] | None = None,
    batch_size: int = 8,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    clinical: ClinicalRequest = ClinicalRequest(),
) -> list[Outcome]:
    """Report this rank's share of `scans` into `out`. pipeline: a fm.pipeline.report_pipeline.ReportPipeline.
    narrate_batch(results) -> reports: the language model's narratives for a batch of pipeline
    results (None: template narratives only). clinical: the DICOM and FHIR outputs asked for.
    Returns this rank's outcomes; also written to out/.summary-rank{rank}.csv, so ranks can be
    merged (merge_summaries)."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mine = scans[rank::world]
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    desc = f"reports (rank {rank})" if world > 1 else "reports"
    bar = tqdm(total=len(mine), unit="scan", desc=desc, disable=not progress)
    for first in range(0, len(mine), batch_size):
        batch = mine[first : first + batch_size]
        segmented = _segmented(batch, out, pipeline, clinical, outcomes, bar)  # skipped and failed: in outcomes
        if segmented:
            clock = time.perf_counter()
            results = [result for _, result, _, _ in segmented]
            try:
                reports = narrate_batch(results) if narrate_batch else [result.report for result in results]
            except Exception as error:  # e.g. the vLLM server went away: these sessions fail, a rerun retries them
                reports, failure = None, error
            shared = (time.perf_counter() - clock) / len(segmented)
            for index, (scan, result, seconds, outputs) in enumerate(segmented):
                if reports is None:
                    outcomes.append(_failed(scan, failure, seconds + shared))
                else:
                    folder = out / scan.id
                    outcomes.append(_written(scan, result, reports[index], folder, outputs, seconds + shared))
                bar.update()
        minutes = (time.perf_counter() - started) / 60
        bar.set_postfix(scans_per_min=f"{sum(o.status == 'reported' for o in outcomes) / max(minutes, 1e-9):.1f}")
    bar.close()
    _write_summary(out / f".summary-rank{rank}.csv", outcomes)
    return outcomes


def _segmented(
    batch: list[CohortScan], out: Path, pipeline, clinical: ClinicalRequest, outcomes: list[Outcome], bar
) -> list[tuple]:
    """(scan, pipeline result, seconds, its clinical outputs) of each scan of `batch` not reported
    yet; the complete ones (skipped) and the ones that fail go to `outcomes` (and tick the bar)."""
    segmented = []
    for scan in batch:
        clock = time.perf_counter()
        try:
            outputs = clinical.outputs_for(scan.paths[0])
        except InputError as error:  # e.g. --dicom for a session whose first scan is not DICOM
            outcomes.append(_failed(scan, error, time.perf_counter() - clock))
            bar.update()
            continue
        if is_complete(out / scan.id, outputs):
            outcomes.append(Outcome(scan, "skipped"))
            bar.update()
            continue
        try:
            result = pipeline(list(scan.paths), contrasts=list(scan.contrasts) if scan.contrasts else None)
        except Exception as error:  # one session's problem must not stop the cohort
            outcomes.append(_failed(scan, error, time.perf_counter() - clock))
            bar.update()
        else:
            segmented.append((scan, result, time.perf_counter() - clock, outputs))
    return segmented


def _written(scan: CohortScan, result, report, folder: Path, clinical: ClinicalOutputs, seconds: float) -> Outcome:
    """Write one session's report folder; its outcome."""
    from fm.pipeline.report_folder import write_report_folder

    clock = time.perf_counter()
    labels, label_set = result.segmentation.labels, result.segmentation.label_set
    try:  # overwrite: an incomplete folder holds only what an interrupted run of this wrote
        write_report_folder(report, result.volume, labels, label_set, folder, overwrite=True, clinical=clinical)
    except Exception as error:
        return _failed(scan, error, seconds + time.perf_counter() - clock)
    narrative = "model" if report.model_narrative and report.model_narrative.kept else "template"
    return Outcome(scan, "reported", seconds + time.perf_counter() - clock, len(report.findings.lesions), narrative)


def report_manifest(
    scans: list[CohortScan],
    out: str | Path,
    load_pipeline: Callable[[], Callable],
    load_narrator: Callable[[], Callable | None],
    batch_size: int,
    clinical: ClinicalRequest,
) -> tuple[Path, dict[str, int]] | None:
    """report_cohort for this process's share of `scans`: all of them, or under torchrun every
    world-th row. Each process loads its models once its share of the cores is set
    (`load_pipeline()`: scans -> PipelineResult; `load_narrator()`: a batch of results -> reports,
    or None for the template only). Rank 0 waits for every rank, then merges their summaries and
    returns (summary path, counts by outcome); the other ranks return None."""
    from fm.core.distributed import barrier, process_group

    with process_group() as (rank, world):
        report_cohort(scans, out, load_pipeline(), load_narrator(), batch_size, rank, world, clinical=clinical)
        barrier()  # every rank's summary is written
        return merge_summaries(out, scans, world) if rank == 0 else None


def merge_summaries(out: str | Path, scans: list[CohortScan], world: int) -> tuple[Path, dict[str, int]]:
    """out/summary.csv: every rank's rows, in the manifest's order; and how many rows have each status."""
    out = Path(out)
    rows = {}
    for rank in range(world):
        with open(out / f".summary-rank{rank}.csv", newline="") as handle:
            rows.update({row["id"]: row for row in csv.DictReader(handle)})
    ordered = [rows[scan.id] for scan in scans if scan.id in rows]
    target = out / "summary.csv"
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(ordered)
    for rank in range(world):
        (out / f".summary-rank{rank}.csv").unlink()
    counts = {status: sum(row["status"] == status for row in ordered) for status in ("reported", "skipped", "failed")}
    return target, counts


def _write_summary(path: Path, outcomes: list[Outcome]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(outcome.row() for outcome in outcomes)


def _failed(scan: CohortScan, error: Exception, seconds: float) -> Outcome:
    if not isinstance(error, InputError):  # not the user's input: a bug here, worth its traceback in the log
        traceback.print_exception(error)
    line = " ".join(str(error).split()) or type(error).__name__
    return Outcome(scan, "failed", seconds, error=line)


def _stem(path: str) -> str:
    name = Path(path.rstrip("/")).name
    return re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.mha|\.mhd|\.mgz|\.dcm)$", "", name, flags=re.I) or name


def _folder_name(text: str) -> str:
    """An id as a single safe folder name: no separators, no leading dots."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")
    if not name:
        raise InputError(f"id {text!r} gives no usable folder name")
    return name
