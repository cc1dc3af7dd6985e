"""Linear probes (fm.probe.linear, fm probe): group-aware splits, bootstrap intervals and paired tests on
cases whose answer is known, the clear refusals, the .npz adapter, and a whole run from a manifest
of small scans to the results and figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from fm.cli.fm_cli import main
from fm.core.errors import InputError, InputFileError
from fm.probe.features import ProbeCase, cases_from_npz, read_probe_manifest
from fm.probe.linear import ProbeResult, ProbeSettings, _outer_splits, bootstrap_intervals, check_cases, paired_test

SMALL_2D = "timm25d(model_name=resnet10t,size=(32;32;32),spacing_mm=(3;3;3))"


def blob_scans(folder: Path, n: int = 24, seed: int = 0) -> Path:
    """n small heads (two scans per subject); every second one holds a bright blob: the label."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows = []
    for index in range(n):
        array = rng.normal(1.0, 0.05, (24, 24, 24)).astype(np.float32)
        present = index % 2
        if present:
            x, y, z = rng.integers(6, 16, 3)
            array[x : x + 4, y : y + 4, z : z + 4] = 3.0
        nib.save(nib.Nifti1Image(array, np.diag([4.0, 4.0, 4.0, 1.0])), folder / f"scan{index:02d}.nii.gz")
        rows.append(
            {
                "path": f"scan{index:02d}.nii.gz",
                "label": "lesion" if present else "none",
                "group": f"s{index // 4}-{present}",
            }
        )
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def cases(labels, groups=None):
    groups = groups or [f"s{i}" for i in range(len(labels))]
    return [ProbeCase(f"case{i}", label, group) for i, (label, group) in enumerate(zip(labels, groups))]


def test_outer_folds_never_put_a_subject_on_both_sides():
    labels = [i % 2 for i in range(40)]
    groups = [f"s{i // 4}" for i in range(40)]  # four cases per subject
    settings = ProbeSettings("classification")
    y, g = np.array(labels), np.array(groups)
    for seed in (0, 1):
        splits = _outer_splits(y, g, cases(labels, groups), settings, seed)
        assert len(splits) == 5
        for train, test in splits:
            assert not set(g[train]) & set(g[test])
        assert sorted(np.concatenate([test for _, test in splits])) == list(range(40))
    values = np.linspace(0, 1, 40)
    for train, test in _outer_splits(values, g, cases(list(values), groups), ProbeSettings("regression"), 0):
        assert not set(g[train]) & set(g[test])
    fixed = [ProbeCase(f"c{i}", i % 2, f"s{i}", "test" if i < 10 else "train") for i in range(40)]
    ((train, test),) = _outer_splits(y, np.array([c.group for c in fixed]), fixed, settings, 0)
    assert list(test) == list(range(10)) and list(train) == list(range(10, 40))


def test_the_intervals_are_right_where_the_answer_is_known():
    settings = ProbeSettings("classification", bootstrap=300)
    y = np.array([0, 1] * 30)
    perfect = np.stack([1 - y, y], 1).astype(float)
    intervals = bootstrap_intervals(y, perfect, np.arange(60).astype(str), settings)
    assert intervals["auroc"] == (1.0, 1.0) and intervals["accuracy"] == (1.0, 1.0)
    noise = np.random.default_rng(0).random(60)
    low, high = bootstrap_intervals(y, np.stack([1 - noise, noise], 1), np.arange(60).astype(str), settings)["auroc"]
    assert low < 0.5 < high
    regression = ProbeSettings("regression", bootstrap=300)
    values = np.linspace(0, 10, 40)
    assert bootstrap_intervals(values, values + 2.0, np.arange(40).astype(str), regression)["mae"] == (2.0, 2.0)


def test_the_paired_test_points_the_right_way():
    settings = ProbeSettings("classification", bootstrap=500)
    labels = [0, 1] * 30
    y = np.array(labels)
    rng = np.random.default_rng(1)
    good = np.clip(y + rng.normal(0, 0.3, 60), 0, 1)
    noise = rng.random(60)
    as_result = lambda name, p: ProbeResult(name, np.stack([1 - p, p], 1), {}, {}, {})  # noqa: E731
    forward = paired_test(as_result("good", good), as_result("noise", noise), cases(labels), settings)
    backward = paired_test(as_result("noise", noise), as_result("good", good), cases(labels), settings)
    assert forward["difference"] > 0.2 and forward["ci"][0] > 0 and forward["p"] < 0.01
    assert backward["difference"] == pytest.approx(-forward["difference"]) and backward["ci"][1] < 0
    same = paired_test(as_result("noise", noise), as_result("noise again", noise), cases(labels), settings)
    assert same["difference"] == 0 and same["p"] == 1.0


def test_what_cannot_be_probed_is_refused_with_the_reason(tmp_path):
    settings = ProbeSettings("classification")
    with pytest.raises(InputError, match="one class only"):
        check_cases(cases(["a"] * 12), settings)
    with pytest.raises(InputError, match="class 'b' has 2 case"):
        check_cases(cases(["a"] * 12 + ["b"] * 2), settings)
    with pytest.raises(InputError, match="4 subjects for 5 outer folds"):
        check_cases(cases(["a", "b"] * 6, [f"s{i % 4}" for i in range(12)]), settings)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nthere.nii.gz,1\nmissing1.nii.gz,0\nmissing2.nii.gz,1\n")
    (tmp_path / "there.nii.gz").write_bytes(b"")
    with pytest.raises(InputFileError, match="lists 2 file.s. that do not exist: .*missing1.nii.gz, .*missing2.nii.gz"):
        read_probe_manifest(manifest)
    bad = CliRunner().invoke(main, ["probe", str(manifest), "--encoder", "anatcl", "--out", str(tmp_path / "o")])
    assert bad.exit_code == 1 and "lists 2 file(s)" in bad.output
    manifest.write_text("file,label\nthere.nii.gz,1\n")
    with pytest.raises(InputFileError, match="is not a manifest with the columns .path., .label."):
        read_probe_manifest(manifest)


def test_a_medmnist_style_npz_becomes_scans_and_a_manifest(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "organ.npz",
        train_images=rng.random((6, 8, 8, 8)),
        train_labels=np.arange(6).reshape(6, 1) % 2,
        test_images=rng.random((4, 8, 8, 8)),
        test_labels=np.arange(4).reshape(4, 1) % 2,
    )
    manifest = cases_from_npz(tmp_path / "organ.npz", tmp_path / "scans")
    read = read_probe_manifest(manifest)
    assert [c.split for c in read] == ["train"] * 6 + ["test"] * 4 and [c.label for c in read[:3]] == [0, 1, 0]
    stored = nib.load(read[0].path)
    assert stored.shape == (8, 8, 8) and np.allclose(
        stored.get_fdata(), np.load(tmp_path / "organ.npz")["train_images"][0]
    )


def test_fm_probe_compares_sources_and_writes_the_tables_and_figures(tmp_path):
    manifest = blob_scans(tmp_path / "scans")
    out = tmp_path / "probe"
    options = [
        "--encoder",
        "anatcl(widths=(8;16;32;64),size=(32;32;32))",
        "--baseline-2d",
        SMALL_2D,
        "--folds",
        "3",
        "--seeds",
        "2",
    ]
    done = CliRunner().invoke(
        main, ["probe", str(manifest), "--out", str(out), *options, "--bootstrap", "200", "--few-shot", "0.5,1"]
    )
    assert done.exit_code == 0, done.output
    results = json.loads((out / "results.json").read_text())
    sources = [r["source"] for r in results["results"]]
    assert sources == [
        "anatcl(size=(32, 32, 32),widths=(8, 16, 32, 64)) (random init)",
        "timm25d(model_name=resnet10t,size=(32, 32, 32),spacing_mm=(3, 3, 3)) (random init)",
        "intensity histogram",
    ]
    assert len(results["paired_tests"]) == 3 and results["subjects"] == 12
    histogram = results["results"][2]
    assert histogram["metrics"]["auroc"] > 0.9 and histogram["ci95"]["auroc"][0] > 0.7  # bright voxels: the label
    for name in ("results.csv", "results.md", "metrics.png", "roc.png", "fewshot.png"):
        assert (out / name).is_file(), name
    assert "| intensity histogram |" in (out / "results.md").read_text()
    # a rerun reads every feature from the cache: no scan is embedded twice
    again = CliRunner().invoke(main, ["probe", str(manifest), "--out", str(out), *options, "--bootstrap", "200"])
    assert again.exit_code == 0, again.output
    import pyarrow.parquet as pq

    assert all(pq.read_table(f).num_rows == 24 for f in (out / "features").glob("*.parquet"))


def test_a_segmenters_encoder_is_probed_with_its_own_input_spec_beside_its_random_twin():
    import torch

    from fm.probe.features import FeatureSource, segmenter_encoder
    from fm.probe.run import feature_sources
    from heads.model_folder import read_config
    from heads.segmenters import bundled_network_folder

    sources = feature_sources(["segmenter:synth-unet"])
    assert [s.label for s in sources] == [
        "synth-unet encoder",
        "synth-unet encoder (random init)",
        "timm25d (random init)",
        "intensity histogram",
    ]
    trained, spec = segmenter_encoder("synth-unet")
    twin, twin_spec = segmenter_encoder("synth-unet", trained=False)
    assert spec == twin_spec == read_config(bundled_network_folder()).input_spec
    assert spec.spacing_mm == (1.5, 1.5, 1.5)  # the segmenter's, not Brain-ID's published 1 mm
    weights = list(zip(trained.state_dict().values(), twin.state_dict().values()))
    assert len(weights) > 10 and not all(torch.equal(a, b) for a, b in weights)
    with pytest.raises(InputError, match="give NAME"):
        FeatureSource.parse("resnet50")
