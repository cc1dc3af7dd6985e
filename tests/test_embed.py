"""From scans to encoder inputs and embeddings: the published Brain-ID preprocessing, MONAI
preprocessing that keeps left on the left, mapping back to the scan, and `fm embed`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import phantoms
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from encoders.memory import GIB
from encoders.preprocess import brain_id_preprocess
from encoders.registry import create_encoder
from fm.cli.fm_cli import main
from fm.core.io import load_volume
from fm.probe.embed import embed_scans, embeddings_of, tiled_embedding

BRAIN_ID = Path(__file__).resolve().parent / "data" / "refvectors" / "brain_id"
CHECKPOINT = BRAIN_ID / "brainid_small_checkpoint.pth"


def test_brain_id_preprocessing_matches_the_published_demo():
    expected = torch.load(BRAIN_ID / "preproc_output.pt", weights_only=True)
    volume = load_volume(BRAIN_ID / "preproc_input.nii.gz")
    np.testing.assert_allclose(volume.source.affine, expected["affine_in"].numpy(), atol=1e-6)
    result = brain_id_preprocess(volume)
    torch.testing.assert_close(result.tensor, expected["preprocessed"].float(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(result.affine, expected["affine_out"].numpy(), atol=1e-4)


def test_brain_id_preprocessing_crops_large_scans_to_220_around_the_centre(tmp_path):
    array = np.zeros((240, 230, 100), np.float32)
    array[120, 115, 50] = 1.0
    volume = load_volume(phantoms.write_nifti(tmp_path / "big.nii", array, np.eye(4)))
    result = brain_id_preprocess(volume)
    assert tuple(result.tensor.shape[2:]) == (220, 220, 100)
    peak = np.unravel_index(int(result.tensor.argmax()), result.tensor.shape[2:])
    np.testing.assert_allclose(result.affine[:3, :3] @ np.array(peak) + result.affine[:3, 3], [120, 115, 50], atol=1e-6)


def test_monai_preprocessing_keeps_the_patients_right_on_the_right(tmp_path):
    reference, affine = phantoms.ras_reference()
    lps = load_volume(phantoms.write_nifti(tmp_path / "lps.nii.gz", *phantoms.relayout(reference, affine, "LPS")))
    for name, kwargs in (("anatcl", {}), ("swin_bob_brats", {"feature_size": 12})):
        encoder = create_encoder(name, **kwargs)
        before = lps.array.copy()
        prepared = encoder.preprocess([lps] * encoder.spec.in_channels if encoder.spec.in_channels > 1 else lps)
        np.testing.assert_array_equal(lps.array, before)  # the caller's volume is untouched
        spec = encoder.spec
        assert prepared.tensor.shape[1] == spec.in_channels
        if spec.windowed:
            assert all(n % spec.divisible_by == 0 for n in prepared.tensor.shape[2:])
        else:
            assert tuple(prepared.tensor.shape[2:]) == spec.size
        ijk = np.unravel_index(int(prepared.tensor[0, 0].argmax()), prepared.tensor.shape[2:])
        ras = prepared.affine[:3, :3] @ np.array(ijk) + prepared.affine[:3, 3]
        np.testing.assert_allclose(ras, phantoms.MARKER_RAS, atol=1.6)  # within a 1.5 mm voxel

        back = prepared.to_volume_grid(prepared.tensor[0, :1], lps)
        marker = np.unravel_index(int(back[0].argmax()), lps.shape)
        np.testing.assert_allclose(lps.voxel_to_ras(np.array(marker)), phantoms.MARKER_RAS, atol=2.6)


def test_multi_contrast_encoders_refuse_a_single_scan(tmp_path):
    scan = load_volume(phantoms.write_nifti(tmp_path / "t1.nii.gz", *phantoms.ras_reference()))
    encoder = create_encoder("swin_bob_brats", feature_size=12)
    with pytest.raises(ValueError, match=r"takes 4 co-registered scans \(T1c, T1, T2, FLAIR\), got 1"):
        encoder.preprocess(scan)


def test_embed_is_deterministic_resumable_and_format_independent(tmp_path):
    reference, affine = phantoms.ras_reference()
    array, grid = phantoms.relayout(reference, affine, "PIR")
    nifti = phantoms.write_nifti(tmp_path / "scan.nii.gz", array, grid)
    dicom = phantoms.write_series(tmp_path / "scan_dicom", phantoms.dicom_slices(array, grid))
    out = tmp_path / "emb.parquet"
    overrides = {"f_maps": 8}
    run = embed_scans(
        [nifti, dicom, tmp_path / "missing.nii"], "brain_id", out, str(CHECKPOINT), overrides, progress=False
    )
    assert run.added == 2 and len(run.errors) == 1 and "missing.nii: no such file" in run.errors[0]
    paths, vectors = embeddings_of(out)
    assert vectors.shape == (2, 8)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # same voxels and geometry, two formats

    again = embed_scans([nifti, dicom], "brain_id", out, str(CHECKPOINT), overrides, progress=False)
    assert (again.added, again.cached) == (0, 2) and pq.read_table(out).num_rows == 2

    constant = phantoms.write_nifti(tmp_path / "blank.nii.gz", np.zeros((20, 20, 20), np.float32), np.eye(4))
    more = embed_scans([constant, nifti], "brain_id", out, str(CHECKPOINT), overrides, progress=False)
    assert more.added == 0 and "blank.nii.gz" in more.errors[0] and "constant" in more.errors[0]

    wider = embed_scans(
        [nifti],
        "anatcl",
        out,
        str(CHECKPOINT.parent.parent / "anatcl" / "anatcl_small_checkpoint.pth"),
        {"widths": [8, 16, 32, 64]},
        progress=False,
    ).added
    cropped = embed_scans(
        [nifti],
        "anatcl",
        out,
        str(CHECKPOINT.parent.parent / "anatcl" / "anatcl_small_checkpoint.pth"),
        {"widths": [8, 16, 32, 64], "size": [96, 96, 96]},
        progress=False,
    ).added
    assert wider == 1 and cropped == 1, "a different input spec is a different embedding"
    assert pq.read_table(out).num_rows == 4

    other = tmp_path / "other.parquet"
    embed_scans([nifti], "brain_id", other, str(CHECKPOINT), overrides, progress=False)
    np.testing.assert_array_equal(embeddings_of(other)[1][0], vectors[0])
    row = pq.read_table(out).to_pylist()[0]
    assert (
        row["encoder"] == "brain_id"
        and len(row["content_sha256"]) == 64
        and '"intensity": "minmax"' in row["spec_json"]
    )


def test_cli_embed_with_a_published_checkpoint(tmp_path):
    scan = phantoms.write_nifti(tmp_path / "scan.nii.gz", *phantoms.ras_reference())
    out = tmp_path / "emb.parquet"
    result = CliRunner().invoke(
        main,
        [
            "embed",
            str(scan),
            "--encoder",
            "anatcl",
            "--pretrained",
            str(BRAIN_ID.parent / "anatcl" / "anatcl_small_checkpoint.pth"),
            "--set",
            "widths=8,16,32,64",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "embedded 1 scans" in result.output
    assert embeddings_of(out)[1].shape == (1, 64)


def test_embed_refuses_what_would_not_fit_and_says_which_tile_would(tmp_path):
    scan = phantoms.write_nifti(tmp_path / "scan.nii.gz", *phantoms.ras_reference())
    out = tmp_path / "emb.parquet"
    run = embed_scans(
        [scan], "brain_id", out, str(CHECKPOINT), {"f_maps": 8}, progress=False, max_memory_bytes=1.4 * GIB
    )
    (message,) = run.errors
    assert run.added == 0 and message.startswith(f"{scan}: brain_id on 96x100x54 voxels (fp32) needs about ")
    tile = int(re.search(r"above --max-memory 1.4 GiB; --tile (\d+) fits", message).group(1))
    assert (
        embed_scans(
            [scan],
            "brain_id",
            out,
            str(CHECKPOINT),
            {"f_maps": 8},
            progress=False,
            max_memory_bytes=1.4 * GIB,
            tile=tile,
        ).added
        == 1
    )


def test_tiles_as_large_as_the_volume_give_the_whole_volume_embedding_and_smaller_ones_another_row(tmp_path):
    scan = phantoms.write_nifti(tmp_path / "scan.nii.gz", *phantoms.ras_reference())
    out = tmp_path / "emb.parquet"
    whole = embed_scans([scan], "brain_id", out, str(CHECKPOINT), {"f_maps": 8}, progress=False)
    model = create_encoder("brain_id", CHECKPOINT, f_maps=8).eval()
    x = model.preprocess(load_volume(scan)).tensor
    with torch.inference_mode():
        one_tile = tiled_embedding(model, x[..., :32, :32, :32], 32)
        direct = model.forward_features(x[..., :32, :32, :32]).embedding
    torch.testing.assert_close(one_tile, direct)
    tiled = embed_scans([scan], "brain_id", out, str(CHECKPOINT), {"f_maps": 8}, progress=False, tile=16)
    assert whole.added == tiled.added == 1 and tiled.cached == 0, "a tiled embedding is not the whole-volume one"
    rows = pq.read_table(out).to_pylist()
    assert [json.loads(r["spec_json"])["tile"] for r in rows] == [None, 16]
    with pytest.raises(ValueError, match="anatcl takes one fixed-size whole-brain input"):
        embed_scans([scan], "anatcl", out, tile=32, progress=False)


def test_cli_embed_example_says_what_it_skipped_and_that_weights_are_random(tmp_path):
    out = tmp_path / "emb.parquet"
    first = CliRunner().invoke(
        main, ["embed", "--example", "--encoder", "anatcl", "--set", "widths=8,16,32,64", "--out", str(out)]
    )
    assert first.exit_code == 0, first.output
    assert "embedded 1 scans" in first.stdout and "random weights (no --pretrained)" in first.stderr
    again = CliRunner().invoke(
        main, ["embed", "--example", "--encoder", "anatcl", "--set", "widths=8,16,32,64", "--out", str(out)]
    )
    assert "embedded 0 scans into" in again.stdout and "(1 already there, skipped; 0 failed)" in again.stdout
    assert "Without it the weights are random" in " ".join(CliRunner().invoke(main, ["embed", "--help"]).output.split())


@pytest.mark.slow  # 27 s: two processes; the one-process embedding tests run by default
def test_two_torchrun_processes_share_the_scans_and_merge_the_single_process_rows(tmp_path):
    rng = np.random.default_rng(0)
    reference, affine = phantoms.ras_reference()
    scans = [
        str(
            phantoms.write_nifti(
                tmp_path / f"scan{i}.nii.gz", reference * (1 + 0.2 * i) + rng.random(reference.shape), affine
            )
        )
        for i in range(6)
    ]
    options = ["--encoder", "brain_id", "--pretrained", str(CHECKPOINT), "--set", "f_maps=8"]
    single = CliRunner().invoke(main, ["embed", *scans[:5], *options, "--out", str(tmp_path / "single.parquet")])
    assert single.exit_code == 0, single.output

    def torchrun(paths):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        command += ["-m", "fm", "embed", *paths, *options, "--out", str(tmp_path / "shared.parquet")]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    done = torchrun(scans[:5])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "embedded 5 scans" in done.stdout and "by 2 processes" in done.stdout
    paths, vectors = embeddings_of(tmp_path / "shared.parquet")
    single_paths, single_vectors = embeddings_of(tmp_path / "single.parquet")
    assert paths == single_paths == scans[:5]  # merged in the order given, not rank by rank
    np.testing.assert_array_equal(vectors, single_vectors)  # each scan alone in its batch: bit-identical
    assert not list(tmp_path.glob(".shared.parquet.rank*"))  # the ranks' parts were merged and removed

    again = torchrun(scans)  # resumes: only the new scan is embedded
    assert again.returncode == 0 and "embedded 1 scans" in again.stdout and "(5 already there" in again.stdout
    assert embeddings_of(tmp_path / "shared.parquet")[0] == scans
