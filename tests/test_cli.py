"""The `fm` command as a user runs it: the installed console script, its messages and exit codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import phantoms
import pytest
from click.testing import CliRunner

from fm.cli.fm_cli import main
from fm.core.examples import example_path
from fm.core.io import load_volume, resample_array, save_volume, volume_from_array


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def installed_fm() -> str:
    """The console script pip installed beside this interpreter."""
    fm = Path(sys.executable).parent / "fm"
    assert fm.is_file(), f"the `fm` console script is not installed at {fm}"
    return str(fm)


def test_console_script_prints_the_example_summary():
    fm = installed_fm()
    done = subprocess.run([fm, "info", "--example"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    example = load_volume(example_path())
    lo, hi = example.ras_bounds_mm()
    assert " x ".join(map(str, example.shape)) + " voxels" in done.stdout
    assert "LAS in the file; held as RAS" in done.stdout
    assert f"x {lo[0]:.1f} .. {hi[0]:.1f}  y {lo[1]:.1f} .. {hi[1]:.1f}  z {lo[2]:.1f} .. {hi[2]:.1f} mm" in done.stdout
    assert "modality     MR" in done.stdout

    mni = subprocess.run([fm, "info", "--example", "mni152"], capture_output=True, text=True, timeout=120)
    assert "197 x 233 x 189 voxels" in mni.stdout
    assert "RAS extent   x -98.5 .. 98.5  y -134.5 .. 98.5  z -72.5 .. 116.5 mm" in mni.stdout


def test_bad_input_is_one_line_and_a_non_zero_exit():
    fm = installed_fm()
    done = subprocess.run([fm, "info", "missing-scan.nii.gz"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: missing-scan.nii.gz: no such file or folder"
    assert "Traceback" not in done.stderr


def test_info_json_for_a_dicom_series(tmp_path, run):
    reference, affine = phantoms.ras_reference()
    folder = phantoms.write_series(
        tmp_path / "series", phantoms.dicom_slices(*phantoms.relayout(reference, affine, "PIR"))
    )
    result = run("info", folder, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["format"] == "DICOM"
    assert summary["shape"] == [48, 40, 36]
    assert summary["source_orientation"] == "PIR"
    assert summary["modality"] == "MR"
    assert summary["meta"]["dicom_series"]["slices"] == 48
    volume = load_volume(folder)
    lo, hi = volume.ras_bounds_mm()
    np.testing.assert_allclose(summary["ras_bounds_mm"]["min"], lo, atol=1e-3)
    np.testing.assert_allclose(summary["ras_bounds_mm"]["max"], hi, atol=1e-3)


def test_info_names_the_chosen_series(tmp_path, run):
    reference, affine = phantoms.ras_reference()
    study = tmp_path / "study"
    phantoms.write_series(study / "a", phantoms.dicom_slices(reference, affine, description="first"))
    phantoms.write_series(study / "b", phantoms.dicom_slices(reference, affine, description="second"))

    unchosen = run("info", study)  # no terminal: list the series and stop
    assert unchosen.exit_code == 1
    assert "holds 2 DICOM series" in unchosen.output and "'second'" in unchosen.output

    chosen = run("info", study, "--series", "2")
    assert chosen.exit_code == 0
    assert "DICOM series 2 of 2: number 7 'second', 36 slices" in chosen.output


def test_convert_keeps_existing_output_unless_overwrite(tmp_path, run):
    source = phantoms.write_nifti(tmp_path / "in.nii", *phantoms.ras_reference())
    out = tmp_path / "out.nrrd"
    assert run("convert", source, out).exit_code == 0
    first = out.read_bytes()

    again = run("convert", source, out, "--grid", "ras")
    assert again.exit_code == 1
    assert "out.nrrd: already exists; add --overwrite to replace" in again.output
    assert out.read_bytes() == first

    assert run("convert", source, out, "--overwrite").exit_code == 0
    np.testing.assert_array_equal(load_volume(out).array, load_volume(source).array)


def test_help_explains_each_subcommand_with_an_example(run):
    for command in ("info", "convert", "segment", "report", "weights list"):
        command = command.split()
        result = run(*command, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.output and f"fm {' '.join(command)} " in result.output


def test_asks_which_series_when_a_person_is_at_the_terminal(tmp_path):
    """With a terminal on stdin, `fm info` lists the series and reads the choice."""
    reference, affine = phantoms.ras_reference()
    study = tmp_path / "study"
    phantoms.write_series(study / "a", phantoms.dicom_slices(reference, affine, description="first"))
    phantoms.write_series(study / "b", phantoms.dicom_slices(reference, affine, description="second"))
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [installed_fm(), "info", str(study)], stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    os.close(terminal)
    os.write(controller, b"2\n")
    out, err = proc.communicate(timeout=120)
    os.close(controller)
    assert proc.returncode == 0, err
    assert "1. series 7 'first'" in err and "Which series" in err
    assert "DICOM series 2 of 2: number 7 'second'" in out


def test_report_writes_every_file_then_keeps_them(tmp_path, run):
    out = tmp_path / "report"
    done = run("report", "--example", "--out", out)
    assert done.exit_code == 0, done.output
    for name in ("report.json", "report.md", "report.pdf", "overlay.png", "mask.nii.gz"):
        assert (out / name).stat().st_size > 0, name
    for stage in ("load", "gate", "segment", "measure", "report"):
        assert f"] {stage}" in done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["structured"]["impression"][0] in done.stdout

    again = run("report", "--example", "--out", out)
    assert again.exit_code == 1
    assert f"error: {out}: already holds report.json" in again.stderr


def test_segment_and_report_run_a_published_swin_bob_checkpoint(tmp_path, run, swin_bob_reference):
    checkpoint = swin_bob_reference / "swinbob_small_model_final.pt"
    import torch

    from heads.segmenters import create_segmenter

    x = torch.load(swin_bob_reference / "input.pt", weights_only=True)["input"][0, 0].numpy()
    scan = phantoms.write_nifti(tmp_path / "ct.nii.gz", *phantoms.relayout(x, np.diag([1.5, 1.5, 2.0, 1.0]), "LPS"))
    out = tmp_path / "organs.nii.gz"
    options = ["--encoder", "swin_bob_btcv", "--model", checkpoint, "--set", "feature_size=12"]
    done = run("segment", scan, *options, "--out", out)
    assert done.exit_code == 0, done.output
    mask, source = load_volume(out), load_volume(scan)
    assert mask.source.orientation == "LPS" and mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    segmenter, _ = create_segmenter("swin_bob_btcv", pretrained=checkpoint, feature_size=12)
    expected = segmenter(source).labels
    np.testing.assert_array_equal(mask.array, expected)
    assert len(np.unique(expected)) > 1  # the checkpoint finds organs in its own reference input

    done = run("report", scan, *options, "--out", tmp_path / "report")
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert (
        report["findings"]["provenance"]["label_set"] == "btcv-13"
        and report["provenance"]["encoder"] == "swin_bob_btcv"
    )
    assert "lesions were not assessed" in report["structured"]["impression"][0]
    assert report["narrative"].startswith("FINDINGS:\nMeasured volumes: ")


def test_a_missing_scan_argument_is_named_as_missing(tmp_path, run):
    done = run("info")
    assert done.exit_code == 2 and "give a scan path or --example" in done.output and "not both" not in done.output
    done = run("info", tmp_path / "a.nii.gz", "--example")
    assert done.exit_code == 2 and "not both" in done.output
    done = run("report", "--out", tmp_path / "r")
    assert done.exit_code == 2 and "give one or more scans of one session, or --example" in done.output


def test_report_of_a_session_names_every_file_guessed_contrast_and_resampling(tmp_path, run):
    """Two contrasts of one session on different grids, their contrasts left to the file names:
    the report lists both files, says the contrasts were guessed and that the second was resampled."""
    from fm.core.examples import example_paths

    t1c, flair = (load_volume(p) for p in example_paths())
    first = save_volume(t1c, tmp_path / "sub_T1c.nii.gz")
    coarse = flair.affine.copy()
    coarse[:3, :3] *= 2
    shape = tuple(n // 2 for n in flair.shape)
    second = save_volume(
        volume_from_array(resample_array(flair.array.astype(np.float32), flair.affine, shape, coarse), coarse),
        tmp_path / "sub_FLAIR.nii.gz",
    )
    done = run("report", first, second, "--out", tmp_path / "report")
    assert done.exit_code == 0, done.output
    provenance = json.loads((tmp_path / "report" / "report.json").read_text())["provenance"]
    assert provenance["input_files"] == [str(first), str(second)]
    assert provenance["contrasts"] == ["t1c", "flair"] and provenance["contrasts_guessed"]
    assert provenance["resampled_inputs"] == [str(second)]


def test_segment_and_report_refuse_bad_input_with_one_line(tmp_path, run):
    not_a_scan = tmp_path / "notes.nii.gz"
    not_a_scan.write_text("not an image")
    done = run("segment", not_a_scan, "--out", tmp_path / "mask.nii.gz")
    assert done.exit_code == 1 and done.stderr.strip().splitlines()[-1].startswith(
        f"error: {not_a_scan}: is not gzip-compressed"
    )
    assert not (tmp_path / "mask.nii.gz").exists()

    (tmp_path / "empty").mkdir()
    done = run("report", "--example", "--model", tmp_path / "empty", "--out", tmp_path / "r")
    assert done.exit_code == 1 and "is not a segmenter folder (needs config.json and model.safetensors)" in done.stderr

    done = run("segment", "--example", "--encoder", "anatcl", "--out", tmp_path / "m.nii.gz")
    assert done.exit_code == 2 and "anatcl has no published segmentation head" in done.output

    existing = tmp_path / "kept.nii.gz"
    existing.write_bytes(b"user data")
    done = run("segment", "--example", "--out", existing)
    assert done.exit_code == 1 and "kept.nii.gz: already exists; add --overwrite to replace" in done.stderr
    assert existing.read_bytes() == b"user data"


def test_input_problems_that_name_no_file_are_one_line_too(tmp_path, run, monkeypatch):
    done = run("report", "--example", "--model", "synth-unet", "--out", tmp_path / "r")
    assert done.exit_code == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(" segments one scan; several contrasts need the default segmenter")
    )
    monkeypatch.setenv("FM_MAX_VOXELS", "lots")
    done = run("info", "--example")
    assert done.exit_code == 1 and done.stderr.strip() == "error: FM_MAX_VOXELS must be a number of voxels, not 'lots'"


def test_a_bug_in_a_pipeline_stage_keeps_its_traceback(tmp_path, monkeypatch):
    """Only InputError is the user's problem: any other exception escapes the CLI as it is."""
    bug = ValueError("a bug in the gate")

    def broken_gate(volume):
        raise bug

    monkeypatch.setattr("fm.pipeline.report_pipeline.check_scan", broken_gate)
    done = CliRunner().invoke(main, ["report", "--example", "--out", str(tmp_path / "r")])
    assert done.exception is bug and "error:" not in done.stderr


def test_a_bug_while_embedding_is_not_counted_as_a_bad_scan(tmp_path, monkeypatch):
    bug = ValueError("a bug in hashing")

    def broken_hash(path):
        raise bug

    monkeypatch.setattr("fm.probe.embed.content_hash", broken_hash)
    done = CliRunner().invoke(main, ["embed", "--example", "--encoder", "anatcl", "--out", str(tmp_path / "e.parquet")])
    assert done.exception is bug and "error:" not in done.stderr
