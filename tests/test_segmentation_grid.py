"""The lesion-aware feature source (encoders.segmentation_grid): its tokens carry where a lesion is,
on the patient's side whatever the file's orientation, and a report model built on it reads the
segmentation beside the scan and refuses to run without one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import phantoms
import pytest
import torch
from transformers import LlamaConfig, PreTrainedTokenizerFast

import fm  # noqa: F401  (registers the model with transformers' Auto classes)
from encoders.registry import create_encoder
from encoders.segmentation_grid import GROUPS, LESION_GROUPS, TISSUE_GROUPS, segmentation_channels
from fm.core.errors import InputError
from fm.core.io import volume_from_array
from fm.core.labels import BRAIN_TUMOUR, BTCV, LabelMap
from fm.lm.adapter import AdapterConfig
from fm.lm.modeling import FMForReportGeneration

SPACING = 3.0
SHAPE = (48, 56, 48)  # 144 x 168 x 144 mm, a head's field of view
WHOLE_TUMOUR_MAX = len(GROUPS)  # the first max channel
POSITION_R = len(GROUPS) + len(LESION_GROUPS) + 3


def brain(lesion_ras_mm: tuple[float, float, float] | None, radius_mm: float = 12.0):
    """A RAS-ordered head: an ellipsoid brain (grey rim, white core, ventricles), with a spherical
    enhancing lesion at `lesion_ras_mm`; (scan array, label array, affine centred on the brain)."""
    affine = np.diag([SPACING] * 3 + [1.0])
    affine[:3, 3] = -SPACING * (np.array(SHAPE) - 1) / 2
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), -1)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    radius = np.sqrt(((ras / np.array([65.0, 80.0, 60.0])) ** 2).sum(-1))
    labels = np.zeros(SHAPE, np.int16)
    labels[radius < 1.0] = 3  # left grey matter (sides do not matter here: position carries them)
    labels[radius < 0.8] = 5
    labels[(np.abs(ras[..., 0]) < 12) & (np.abs(ras[..., 1]) < 25) & (np.abs(ras[..., 2] - 10) < 10)] = 2
    if lesion_ras_mm is not None:
        labels[np.linalg.norm(ras - np.array(lesion_ras_mm), axis=-1) < radius_mm] = 9
    intensity = np.array([0, 0.2, 0.3, 0.6, 0.6, 0.9, 0.9, 0.5, 0.4, 1.0], np.float32)[labels]
    scan = intensity + np.random.default_rng(0).normal(0, 0.02, SHAPE).astype(np.float32)
    return scan, labels, affine


def tokens(scan, labels, affine) -> torch.Tensor:
    """The encoder's map (channels, *grid) of a scan and its label map, prepared as a report model does."""
    from encoders.preprocess import monai_preprocess

    encoder = create_encoder("segmentation_grid")
    prepared = monai_preprocess(volume_from_array(scan, affine), encoder.spec)
    on_grid = prepared.sample(torch.from_numpy(labels[None].astype(np.float32)), affine)
    channels = segmentation_channels(on_grid[0].round().long(), BRAIN_TUMOUR)
    return encoder.forward_features(torch.cat([prepared.tensor, channels[None]], 1)).maps[0][0]


def lesion_side(cells: torch.Tensor) -> float:
    """Mean R position (-1 left .. +1 right) of the cells the lesion reaches."""
    reached = cells[WHOLE_TUMOUR_MAX] > 0.5
    assert reached.any(), "the lesion is in no token"
    return float(cells[POSITION_R][reached].mean())


@pytest.mark.parametrize("code", ["RAS", "LPS", "PIL", "SLA"])
def test_a_lesions_tokens_lie_on_its_side_in_every_orientation(code):
    left = brain((-35.0, 10.0, 15.0))
    right = brain((35.0, 10.0, 15.0))
    sides = []
    for scan, labels, affine in (left, right):
        array, moved = phantoms.relayout(scan, affine, code)
        label_array, moved_labels = phantoms.relayout(labels, affine, code)
        assert np.allclose(moved, moved_labels)
        sides.append(lesion_side(tokens(array, label_array, moved)))
    assert sides[0] < -0.2 and sides[1] > 0.2, f"{code}: left lesion at {sides[0]:.2f}, right at {sides[1]:.2f}"


def lesion_centre(cells: torch.Tensor) -> torch.Tensor:
    """The lesion's centre in the tokens: positions weighted by the whole tumour's share per cell."""
    share = cells[len(TISSUE_GROUPS)]
    return (cells[POSITION_R : POSITION_R + 3] * share).sum(dim=(1, 2, 3)) / share.sum()


def test_orientation_moves_the_lesion_by_under_a_voxel():
    """Resampling a flipped file lands the 1.5 mm grid half a voxel elsewhere, so cells differ at
    their edges; where the lesion is does not (0.05 of the brain's half-width is about 4 mm)."""
    scan, labels, affine = brain((-35.0, 10.0, 15.0))
    reference = lesion_centre(tokens(scan, labels, affine))
    for code in ("LPS", "PIL"):
        array, moved = phantoms.relayout(scan, affine, code)
        label_array, _ = phantoms.relayout(labels, affine, code)
        centre = lesion_centre(tokens(array, label_array, moved))
        assert torch.allclose(centre, reference, atol=0.05), f"{code}: {centre} vs {reference}"


def test_a_lesion_smaller_than_a_cell_survives_pooling():
    cells = tokens(*brain((30.0, -20.0, 10.0), radius_mm=4.0))  # 0.27 mL; a cell is about 35 x 40 x 30 mm
    assert float(cells[WHOLE_TUMOUR_MAX].max()) == 1.0
    shares = cells[len(TISSUE_GROUPS)]  # the whole tumour's mean share per cell
    assert 0 < float(shares.max()) < 0.2, "pooled by the mean alone it would fade"
    assert float(tokens(*brain(None))[WHOLE_TUMOUR_MAX].max()) == 0.0, "no lesion, no lesion channel"


def test_a_label_set_without_brain_tissue_is_refused():
    with pytest.raises(InputError, match="btcv-13.*brain segmentations"):
        segmentation_channels(torch.zeros(4, 4, 4, dtype=torch.long), BTCV)


@pytest.fixture(scope="module")
def report_model():
    from test_model import trained_bpe

    from fm.lm.prompts import IMAGE_TOKEN

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=trained_bpe(["<unk>", "<s>", "</s>", "<pad>"]),
        unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        extra_special_tokens=[IMAGE_TOKEN],
    )  # fmt: skip
    language = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    adapter = AdapterConfig(kind="perceiver", num_queries=8)
    return FMForReportGeneration.from_parts(language, tokenizer, encoder="segmentation_grid", adapter=adapter)


@torch.no_grad()
def test_the_report_model_reads_the_segmentation_and_saves_with_it(report_model, tmp_path):
    scan, labels, affine = brain((35.0, 10.0, 15.0))
    volume, label_map = volume_from_array(scan, affine), LabelMap(labels, affine, BRAIN_TUMOUR)
    with pytest.raises(InputError, match="segmentation_grid.*reads the scan's segmentation"):
        report_model.prepare_scan(volume)
    prepared = report_model.prepare_scan(volume, label_map)
    assert prepared.shape[1] == 1 + len(GROUPS)
    features = report_model.scan_features(volume, label_map)
    assert features.shape[2:] == (4, 4, 4)
    moved = LabelMap(*phantoms.relayout(labels, affine, "PIL"), BRAIN_TUMOUR)  # placed by its own affine
    centre = lesion_centre(report_model.scan_features(volume, moved)[0])
    assert torch.allclose(centre, lesion_centre(features[0]), atol=0.05)

    report_model.save_pretrained(tmp_path)
    again = FMForReportGeneration.from_pretrained(tmp_path).eval()
    assert again.reads_segmentation
    prompt = report_model.prompt(features, None, "Is there a lesion?")
    ids = report_model.tokenize_prompts([prompt], return_tensors="pt")["input_ids"]
    assert torch.equal(
        again(input_ids=ids, image_features=features).logits,
        report_model(input_ids=ids, image_features=features).logits,
    )


def test_a_cohort_row_brings_the_mask_fm_report_wrote_beside_its_findings(report_model, tmp_path):
    """`--findings-from` a folder of report folders: each row's mask.nii.gz is what the model reads
    beside the scan; a row whose findings have no mask is refused with what to give instead."""
    from fm.core.examples import example_path
    from fm.lm.cohort import read_cohort
    from fm.lm.train import ScanTextDataset, cohort_examples

    truth = example_path().with_name("example_brain_t1_findings.json")
    folder = tmp_path / "reports" / "with_mask"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({"findings": json.loads(truth.read_text())}))
    shutil.copy(example_path().with_name("example_brain_t1_labels.nii.gz"), folder / "mask.nii.gz")
    (tmp_path / "reports" / "no_mask").mkdir()
    (tmp_path / "reports" / "no_mask" / "report.json").write_text(truth.read_text())
    table = tmp_path / "cohort.csv"
    table.write_text(
        "id,image,report\n"
        f"with_mask,{example_path()},Enhancing right parietal lesion.\n"
        f"no_mask,{example_path()},Enhancing right parietal lesion.\n"
    )
    rows, skipped = read_cohort(table, findings_from=tmp_path / "reports", progress=False)
    assert not skipped and [row.segmentation is not None for row in rows] == [True, False]
    assert rows[0].segmentation == (str((folder / "mask.nii.gz").resolve()), "brain-tumour-v1")

    dataset = ScanTextDataset(cohort_examples(rows[:1], stage=1), report_model, max_length=4096)
    cells = dataset.image_features(dataset.examples[0].scan)[0]
    assert lesion_side(cells) > 0.2, "the example's lesion is right parietal"
    refused = ScanTextDataset(cohort_examples(rows[1:], stage=1), report_model, max_length=4096)
    with pytest.raises(InputError, match="no segmentation.*segmentation_grid.*--findings-from"):
        refused.encode_all()


def test_synthetic_training_scans_bring_their_label_maps(report_model, tmp_path):
    """fm synth writes each scan's label map; training shows it to an encoder that reads one, so the
    tokens hold a lesion exactly where the scan has one."""
    from fm.lm.train import ScanTextDataset, synth_examples
    from fm.synth.dataset import load_synth_dataset, write_dataset

    write_dataset(tmp_path, 2, seed=0, split="train", progress=False, spacing_mm=(4.0, 4.0, 4.0))
    dataset = ScanTextDataset(synth_examples(tmp_path, "train", stage=1), report_model, max_length=4096)
    for row in load_synth_dataset(tmp_path):
        scan = next(example.scan for example in dataset.examples if example.image.endswith(row["image"]))
        assert scan[1] == (str(tmp_path / row["labels"]), "brain-tumour-v1")
        cells = dataset.image_features(scan)[0]
        assert (float(cells[WHOLE_TUMOUR_MAX].max()) > 0) == (row["lesion_count"] > 0), row["sample_id"]
