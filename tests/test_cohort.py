"""`fm report --manifest`: a cohort's reports, as a user runs them. A failing session is listed
with its one-line error and the others are reported; a rerun skips what is complete and redoes
what an interruption left half-written; under torchrun two processes share the manifest and one
summary comes out."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from fm.cli.fm_cli import main
from fm.core.examples import example_paths
from fm.core.io import load_volume, resample_array, save_volume, volume_from_array


def coarse_copy(source: Path, target: Path) -> None:
    """`source` at 2 mm: what is tested here is the cohort's bookkeeping, which the resolution does
    not change, and each session segments in a third of the time."""
    volume = load_volume(source)
    affine = volume.affine.copy()
    affine[:3, :3] *= 2
    shape = [size // 2 for size in volume.array.shape]
    save_volume(volume_from_array(resample_array(volume.array, volume.affine, shape, affine), affine), target)


@pytest.fixture()
def cohort(tmp_path) -> Path:
    """A manifest of three sessions: the example's two contrasts (at 2 mm), its T1 alone under
    another name, and a PDF renamed .nii.gz."""
    scans = tmp_path / "scans"
    scans.mkdir()
    t1c, flair = example_paths()
    coarse_copy(t1c, scans / "sub-01_t1c.nii.gz")
    coarse_copy(flair, scans / "sub-01_flair.nii.gz")
    shutil.copy(scans / "sub-01_t1c.nii.gz", scans / "sub-02_t1c.nii.gz")
    (scans / "sub-03_t1.nii.gz").write_bytes(b"%PDF-1.4 not a scan")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "id,path,contrasts\n"
        'sub-01,scans/sub-01_t1c.nii.gz;scans/sub-01_flair.nii.gz,"t1c,flair"\n'
        "sub-02,scans/sub-02_t1c.nii.gz,t1c\n"
        ",scans/sub-03_t1.nii.gz,\n"
    )
    return manifest


def summary(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_a_cohort_is_reported_resumed_and_its_failure_listed(tmp_path, cohort):
    out = tmp_path / "reports"
    args = ["report", "--manifest", str(cohort), "--out", str(out), "--batch-size", "2", "--fhir"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 1, done.output  # a session failed: the status says so
    assert "2 reported, 0 skipped, 1 failed" in done.output and "Traceback" not in done.output
    rows = summary(out)
    assert list(rows) == ["sub-01", "sub-02", "sub-03_t1"]  # the manifest's order; the file names the unnamed row
    assert rows["sub-01"]["status"] == rows["sub-02"]["status"] == "reported"
    failure = rows["sub-03_t1"]
    assert failure["status"] == "failed" and "sub-03_t1.nii.gz" in failure["error"] and "\n" not in failure["error"]
    for session, contrasts in (("sub-01", ["t1c", "flair"]), ("sub-02", ["t1c"])):
        report = json.loads((out / session / "report.json").read_text())
        assert report["provenance"]["contrasts"] == contrasts
        assert report["model_narrative"]["model_id"] == "fm3d/default-lm"  # the language model's stage ran
        assert rows[session]["narrative"] == ("model" if report["model_narrative"]["kept"] else "template")
        assert rows[session]["lesions"] == str(len(report["findings"]["lesions"]))
        fhir = DiagnosticReport.model_validate_json((out / session / "report.fhir.json").read_text())
        assert fhir.conclusion == " ".join(report["structured"]["impression"])

    # an interrupted run left sub-02 without its PDF: a rerun redoes it and skips sub-01
    (out / "sub-02" / "report.pdf").unlink()
    first = (out / "sub-01" / "report.json").stat().st_mtime_ns
    done = CliRunner().invoke(main, ["report", "--manifest", str(cohort), "--out", str(out), "--no-llm"])
    assert "1 reported, 1 skipped, 1 failed" in done.output, done.output
    rows = summary(out)
    assert rows["sub-01"]["status"] == "skipped" and rows["sub-02"]["status"] == "reported"
    assert (out / "sub-02" / "report.pdf").is_file() and (out / "sub-01" / "report.json").stat().st_mtime_ns == first
    assert not (out / "sub-02" / "report.fhir.json").exists()  # this run asked for none: the old one is gone


def test_a_manifest_that_cannot_be_read_is_refused_before_any_scan(tmp_path):
    bad = tmp_path / "cohort.csv"
    bad.write_text("file\nscan.nii.gz\n")
    done = CliRunner().invoke(main, ["report", "--manifest", str(bad), "--out", str(tmp_path / "out")])
    assert done.exit_code == 1 and "'path' column" in done.output and str(bad) in done.output
    bad.write_text("id,path\na,x.nii.gz\na,y.nii.gz\n")
    done = CliRunner().invoke(main, ["report", "--manifest", str(bad), "--out", str(tmp_path / "out")])
    assert done.exit_code == 1 and "used twice" in done.output
    done = CliRunner().invoke(main, ["report", "--manifest", str(bad), "--example", "--out", str(tmp_path / "out")])
    assert done.exit_code == 2


@pytest.mark.slow  # 34 s: the same cohort on two processes; the one-process test runs by default
def test_two_torchrun_processes_share_the_manifest_and_merge_one_summary(tmp_path, cohort):
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "fm", "report", "--manifest", str(cohort), "--out", str(out), "--no-llm"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0  # one session fails
    assert "2 reported, 0 skipped, 1 failed" in done.stdout, done.stdout + done.stderr
    rows = summary(out)
    assert [row["status"] for row in rows.values()] == ["reported", "reported", "failed"]
    assert not list(out.glob(".summary-rank*"))  # the ranks' parts were merged
    assert {path.name for path in out.iterdir() if path.is_dir()} == {"sub-01", "sub-02"}


def test_fm_synth_manifests_are_cohort_manifests(tmp_path):
    """A parquet manifest names its scans `image` and its ids `sample_id`, as fm synth writes them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fm.pipeline.cohort import read_manifest

    manifest = tmp_path / "manifest-test.parquet"
    rows = [
        {"sample_id": "test-5-000000", "image": "images/a.nii.gz"},
        {"sample_id": "test-5-000001", "image": "b.nii.gz"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    scans = read_manifest(manifest)
    assert [scan.id for scan in scans] == ["test-5-000000", "test-5-000001"]
    assert scans[0].paths == (str(tmp_path / "images" / "a.nii.gz"),)
