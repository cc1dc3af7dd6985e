"""The synthetic data engine: determinism, ground truth that matches its label maps, text that
never contradicts the findings, honest split differences, and datasets that load back."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from fm.cli.fm_cli import main
from fm.core.errors import InputFileError
from fm.core.examples import example_path
from fm.core.findings import Findings, Laterality
from fm.core.io import load_volume
from fm.core.labels import BRAIN_TUMOUR
from fm.core.measure import measure
from fm.core.mni_template import load_template
from fm.core.regions import lobe
from fm.report.template_narrative import side_of, ventricles
from fm.synth import lesions
from fm.synth.dataset import load_synth_dataset, write_dataset
from fm.synth.generator import SPLITS, generate

COARSE = (1.8, 1.8, 1.8)  # fast samples for tests
LESION_IDS = list(BRAIN_TUMOUR.lesion)


@pytest.fixture(scope="module")
def samples():
    """A handful of samples from both splits, with lesions, in random orientations."""
    made = [generate(11, i, "train", spacing_mm=COARSE, lesion_count=2) for i in range(3)]
    made += [generate(11, i, "test", spacing_mm=COARSE, lesion_count=2) for i in range(3)]
    made.append(generate(11, 9, "train", spacing_mm=COARSE, lesion_count=0))
    made.append(generate(11, 5, "test", spacing_mm=(1.3, 1.3, 5.0), lesion_count=3))  # thick-slice path
    return made


def test_same_seed_same_scan(samples):
    again = generate(11, 0, "train", spacing_mm=COARSE, lesion_count=2)
    first = samples[0]
    np.testing.assert_array_equal(again.image, first.image)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert again.findings == first.findings and again.narrative == first.narrative and again.qa == first.qa
    other = generate(11, 1, "train", spacing_mm=COARSE, lesion_count=2)
    assert other.image.shape != first.image.shape or not np.array_equal(other.image, first.image)


def test_every_lesion_in_the_findings_is_in_the_label_map(samples):
    for sample in samples:
        volume = sample.volume()
        labels = volume.from_source_layout(sample.labels).array.astype(np.uint8)
        voxel_ml = abs(np.linalg.det(sample.affine[:3, :3])) / 1000
        lesion_voxels = np.isin(labels, LESION_IDS)
        reported = sum(lesion.volume_ml for lesion in sample.findings.lesions)
        # Every reported lesion is made of lesion voxels; what is not reported is specks only.
        assert reported <= lesion_voxels.sum() * voxel_ml + 1e-9
        assert lesion_voxels.sum() * voxel_ml - reported < 0.1 * max(1, len(sample.params["planned_lesions"])) + 0.2
        assert sample.findings.lesion_count <= len(sample.params["planned_lesions"]), "a planned lesion fell apart"
        assert all(lesion.volume_ml >= 0.1 for lesion in sample.findings.lesions)
        components, _ = ndimage.label(lesion_voxels, structure=np.ones((3, 3, 3)))
        for lesion in sample.findings.lesions:
            assert set(lesion.label_ids) <= set(LESION_IDS)
            assert lesion.subregion_volumes_ml["whole_tumour"] == pytest.approx(lesion.volume_ml)
            assert lesion.subregion_volumes_ml["tumour_core"] >= lesion.subregion_volumes_ml["enhancing_tumour"]
            ijk = np.linalg.solve(volume.affine[:3, :3], np.array(lesion.centroid_ras_mm) - volume.affine[:3, 3])
            assert components[tuple(np.round(ijk).astype(int))] > 0 or lesion.volume_ml < 1, "centroid off the lesion"


def test_lesion_side_agrees_with_the_hemisphere_labels_around_it(samples):
    """Hemisphere labels are decided in template space (x < 0 is left); laterality in findings is
    read through the affine in a random orientation. The two must agree."""
    checked = 0
    for sample in samples:
        volume = sample.volume()
        labels = volume.from_source_layout(sample.labels).array.astype(np.uint8)
        components, _ = ndimage.label(np.isin(labels, LESION_IDS), structure=np.ones((3, 3, 3)))
        for lesion in sample.findings.lesions:
            if lesion.laterality not in (Laterality.left, Laterality.right) or lesion.volume_ml < 0.5:
                continue
            ijk = np.linalg.solve(volume.affine[:3, :3], np.array(lesion.centroid_ras_mm) - volume.affine[:3, 3])
            component = components[tuple(np.round(ijk).astype(int))]
            if component == 0:
                continue
            ring = ndimage.binary_dilation(components == component, iterations=3)
            around = labels[ring]
            left, right = np.isin(around, (3, 5)).sum(), np.isin(around, (4, 6)).sum()
            assert (right > left) == (lesion.laterality == Laterality.right), (sample.sample_id, lesion.lesion_id)
            checked += 1
    assert checked >= 4


def test_text_never_contradicts_the_findings(samples):
    for sample in samples:
        findings = sample.findings
        sentences = sample.narrative.split("IMPRESSION")[0]
        for lesion in findings.lesions:  # each lesion's own numbers, in order of size
            assert f"{lesion.volume_ml:.1f} mL" in sentences and f"{lesion.longest_diameter_mm:.1f}" in sentences
            assert side_of(lesion) in sentences or lesion.laterality.value == "bilateral"
        positions = [sentences.index(f"{lesion.volume_ml:.1f} mL") for lesion in findings.lesions]
        assert positions == sorted(positions)
        judged = ventricles(findings)
        if judged is not None:
            assert ("enlarge" in sample.narrative) == judged[1]
        allowed = set()
        for lesion in findings.lesions:
            allowed |= {
                lesion.volume_ml,
                lesion.longest_diameter_mm,
                lesion.short_axis_mm,
                *lesion.subregion_volumes_ml.values(),
            }
            sub = lesion.subregion_volumes_ml
            allowed |= {sub["whole_tumour"] - sub["tumour_core"], sub["tumour_core"] - sub["enhancing_tumour"]}
        allowed |= {s.volume_ml for s in findings.structures if s.volume_ml is not None}  # None: cut by the image edge
        allowed_text = {f"{v:.1f}" for v in allowed}
        judged = ventricles(findings)
        if judged is not None:
            allowed_text.add(f"{100 * judged[2]:.1f}")
        numbers = re.findall(r"\d+\.\d", sample.narrative)
        assert numbers or not findings.lesions
        for number in numbers:
            assert number in allowed_text, (sample.sample_id, number)
        for lesion in findings.lesions:
            assert lesion.region in sample.narrative
        answers = {qa["type"]: qa["answer"] for qa in sample.qa}
        assert answers["presence"] == ("yes" if findings.lesions else "no")
        assert answers["count"] == str(findings.lesion_count)
        if findings.lesions:
            main_lesion = findings.lesions[0]
            assert answers["side"] == side_of(main_lesion)
            assert answers["region"] == main_lesion.region
            assert answers["volume"] == f"{main_lesion.volume_ml:.1f} mL"
        else:
            assert "no focal" in sample.narrative.lower() or "no mass" in sample.narrative.lower()


def test_narratives_vary_in_wording_not_in_facts(samples):
    from fm.report.template_narrative import narrative_report

    findings = samples[0].findings
    texts = {narrative_report(findings, seed=s) for s in range(12)}
    assert len(texts) >= 3
    for text in texts:
        assert f"{findings.lesions[0].volume_ml:.1f} mL" in text


def test_splits_differ_as_documented(samples):
    train = [s for s in samples if s.params["split"] == "train"]
    test = [s for s in samples if s.params["split"] == "test"]
    assert {s.params["contrast"] for s in train} <= {"T1", "T2", "random"}
    assert {s.params["contrast"] for s in test} <= {"FLAIR", "PD"}
    assert not set(SPLITS["train"].contrasts) & set(SPLITS["test"].contrasts)
    assert SPLITS["test"].thick_slice_mm[1] > SPLITS["train"].thick_slice_mm[1]
    assert SPLITS["test"].lesion_volume_ml[1] > SPLITS["train"].lesion_volume_ml[1]

    template = load_template()
    rng = np.random.default_rng(0)

    def regions(allow):
        plans = [p for _ in range(40) for p in lesions.plan_lesions(rng, template, 3, (1, 60), allow)]
        return {str(lobe(np.array(p.centre_mni))) for p in plans}

    assert not regions(False) & set(lesions.INFRATENTORIAL), "training placed a lesion below the tentorium"
    assert regions(True) & set(lesions.INFRATENTORIAL), "the test split never places infratentorial lesions"


def test_image_and_labels_line_up_on_the_thick_slice_path():
    sample = generate(8, 0, "train", spacing_mm=(1.2, 1.2, 4.5), contrast_name="T1", lesion_count=0, noise_level=0.01)
    mean = {label: sample.image[sample.labels == label].mean() for label in (1, 2, 3, 5)}
    # T1: white matter > grey matter > CSF; averaging across a misaligned grid would blur this order.
    assert mean[5] > mean[3] + 0.1 and mean[3] > mean[1] + 0.1 and mean[3] > mean[2] + 0.1


def test_pinning_one_factor_leaves_the_others_as_drawn():
    free = generate(21, 0, "train", spacing_mm=COARSE)
    pinned = generate(21, 0, "train", spacing_mm=COARSE, atrophy=0.5)
    for key in ("contrast", "orientation", "planned_lesions", "noise", "bias"):
        assert free.params[key] == pinned.params[key]


def test_atrophy_enlarges_the_ventricles():
    mild = generate(5, 0, "train", spacing_mm=COARSE, lesion_count=0, atrophy=0.0)
    severe = generate(5, 0, "train", spacing_mm=COARSE, lesion_count=0, atrophy=1.0)
    ventricles = [s.findings.structure("lateral ventricles").volume_ml for s in (mild, severe)]
    grey = [s.findings.structure("left grey matter").volume_ml for s in (mild, severe)]
    assert ventricles[1] > 1.8 * ventricles[0]
    assert grey[1] < 0.95 * grey[0]


def test_dataset_on_disk_loads_back_and_resumes(tmp_path):
    out = tmp_path / "synth"
    write_dataset(out, 2, 3, "test", preview=True, progress=False)
    first_image = out / "images" / "test-3-000000.nii.gz"
    stamp = first_image.stat().st_mtime_ns
    write_dataset(out, 3, 3, "test", progress=False)
    assert first_image.stat().st_mtime_ns == stamp, "resuming rewrote a finished sample"

    dataset = load_synth_dataset(out, "test")
    assert dataset.num_rows == 3 and dataset[2]["sample_id"] == "test-3-000002"
    assert str(dataset.split) == "test"
    with pytest.raises(InputFileError, match="manifest-train.parquet: no such split; this folder holds: test"):
        load_synth_dataset(out, "train")
    row = dataset[0]
    volume = load_volume(out / row["image"])
    labels = load_volume(out / row["labels"])
    stored = Findings.from_json((out / row["findings"]).read_text())
    remeasured = measure(labels.array.astype(np.uint8), volume, BRAIN_TUMOUR)
    assert [lesion.volume_ml for lesion in remeasured.lesions] == pytest.approx(
        [lesion.volume_ml for lesion in stored.lesions]
    )
    assert [lesion.laterality for lesion in remeasured.lesions] == [lesion.laterality for lesion in stored.lesions]
    assert row["lesion_count"] == stored.lesion_count
    assert (
        len(row["questions"]) == len(row["answers"]) == len(json.loads((out / "qa" / "test-3-000000.json").read_text()))
    )
    preview = Image.open(out / "preview-test.png")
    assert preview.size[1] == 2 * 200 and preview.size[0] == 6 * 200


def test_cli_synth(tmp_path):
    result = CliRunner().invoke(
        main, ["synth", "--n", "1", "--seed", "4", "--split", "train", "--out", str(tmp_path), "--preview"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "manifest-train.parquet").is_file() and (tmp_path / "preview-train.png").is_file()


def test_bundled_example_matches_its_ground_truth():
    volume = load_volume(example_path())
    assert volume.spacing == (1.0, 1.0, 1.0) and volume.source.orientation == "LAS"
    labels = load_volume(example_path().with_name("example_brain_t1_labels.nii.gz"))
    stored = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
    (lesion,) = measure(labels.array.astype(np.uint8), volume, BRAIN_TUMOUR).lesions
    assert lesion.volume_ml == pytest.approx(stored.lesions[0].volume_ml)
    assert lesion.laterality == Laterality.right and lesion.region == "parietal lobe"
    assert nib.load(str(example_path())).get_data_dtype() == np.uint8
