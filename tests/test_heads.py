"""Segmentation heads: output shapes, label sets, sliding windows, nested regions, results on the
scan's own grid, and entropy test-time adaptation that leaves the model as it found it."""

from __future__ import annotations

import json

import numpy as np
import phantoms
import pytest
import torch
from torch import nn

from encoders.preprocess import Preprocessed, monai_preprocess
from encoders.registry import create_encoder
from fm.core.errors import InputFileError
from fm.core.io import load_volume, volume_from_array
from fm.core.labels import BRAIN_TUMOUR, BRATS, BTCV, UKBOB
from heads.decoding import nested_to_labels
from heads.etta import norm_affine_parameters, segment_with_etta
from heads.network_segmenter import LightSegmentationNet, Segmenter, SwinSegmentationNet


class Threshold(nn.Module):
    """A pointwise 'network': label 1 where the intensity is above half the maximum."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1, 1)
            self.conv.bias[:] = torch.tensor([0.5, -0.5])

    def forward(self, x):
        return self.conv(x) * 8


#: MR at 1.5 mm in RAS, min-max scaled: the tests' scans are in other layouts and spacings, so results must come back
MR_1P5MM = phantoms.mr_spec(1.5)


def identity_preprocess(volume):
    array = volume.array / volume.array.max()
    return Preprocessed(torch.from_numpy(np.ascontiguousarray(array))[None, None].float(), volume.affine.copy())


@torch.no_grad()
def test_head_output_shapes():
    swin = SwinSegmentationNet(create_encoder("swin_bob_btcv", feature_size=12))
    assert swin(torch.rand(1, 1, 64, 64, 64)).shape == (1, 14, 64, 64, 64)
    brain_id = create_encoder("brain_id", f_maps=8)
    light = LightSegmentationNet(brain_id, num_classes=10)
    assert light(torch.rand(1, 1, 37, 45, 41)).shape == (1, 10, 37, 45, 41)
    anatcl = create_encoder("anatcl", widths=(8, 16, 32, 64))
    assert LightSegmentationNet(anatcl, 14)(torch.rand(1, 1, 48, 40, 36)).shape == (1, 14, 48, 40, 36)


def test_label_sets():
    assert (
        list(BTCV.structures.values())[:3] == ["spleen", "right kidney", "left kidney"] and len(BTCV.structures) == 13
    )
    # UKBOB: one label per output channel of the released 72-channel head; id 20 (ribs, CT only) unused
    assert (
        max(UKBOB.names) + 1
        == create_encoder("swin_bob", feature_size=12).state_dict()["unetr.out.conv.conv.bias"].shape[0]
        == 72
    )
    assert UKBOB.names[2] == "right kidney" and UKBOB.names[71] == "spinal canal" and 20 not in UKBOB.names
    assert BRATS.nested["whole_tumour"] == (1, 2, 4)
    assert BRAIN_TUMOUR.left == (3, 5) and BRAIN_TUMOUR.right == (4, 6)


@torch.no_grad()
def test_sliding_window_equals_whole_volume_inference():
    net = Threshold().eval()
    segmenter = Segmenter(net, identity_preprocess, BRAIN_TUMOUR, roi_size=(16, 16, 16))
    x = torch.rand(1, 1, 40, 36, 30)
    torch.testing.assert_close(segmenter.logits(x), net(x), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_released_swin_checkpoint_segments_end_to_end(swin_bob_reference):
    encoder = create_encoder("swin_bob_btcv", swin_bob_reference / "swinbob_small_model_final.pt", feature_size=12)
    x = torch.load(swin_bob_reference / "input.pt", weights_only=True)["input"]
    expected = torch.load(swin_bob_reference / "outputs_reference.pt", weights_only=True)["logits_stride2"]
    volume = volume_from_array(x[0, 0].numpy(), np.diag([1.5, 1.5, 2.0, 1.0]))
    segmenter = Segmenter(
        SwinSegmentationNet(encoder),
        lambda v: Preprocessed(torch.from_numpy(v.array)[None, None], v.affine.copy()),
        BTCV,
        roi_size=(64, 64, 64),
    )
    result = segmenter(volume)
    np.testing.assert_array_equal(result.labels[::2, ::2, ::2], expected[0].argmax(0).numpy())
    assert result.probabilities.shape == (14, 64, 64, 64)


def test_nested_regions_become_braTS_labels():
    regions = torch.zeros(3, 4, 1, 1)  # channels: tumour_core, whole_tumour, enhancing_tumour
    regions[1, 1:] = 0.9  # whole tumour in voxels 1..3
    regions[0, 2:] = 0.8  # core in 2..3
    regions[2, 3] = 0.7  # enhancing in 3
    regions[2, 0] = 0.9  # 'enhancing' outside the whole tumour is not believed
    labels = nested_to_labels(regions, ("tumour_core", "whole_tumour", "enhancing_tumour"), BRATS)
    assert labels[:, 0, 0].tolist() == [0, 2, 1, 4]


@torch.no_grad()
def test_results_land_on_the_scans_own_grid(tmp_path):
    reference, affine = phantoms.ras_reference()
    scan = load_volume(phantoms.write_nifti(tmp_path / "lps.nii.gz", *phantoms.relayout(reference, affine, "LPS")))
    # MONAI preprocessing to RAS at 1.5 mm (the scan is 2 x 2.5 x 1.5 mm in LPS), so resampling back matters
    segmenter = Segmenter(
        Threshold().eval(), lambda v: monai_preprocess(v, MR_1P5MM), BRAIN_TUMOUR, roi_size=(32, 32, 32)
    )
    result = segmenter(scan)
    assert result.labels.shape == scan.shape and result.probabilities.shape == (10, *scan.shape)
    marked = np.argwhere(result.labels == 1)
    np.testing.assert_allclose(scan.voxel_to_ras(marked.mean(axis=0)), phantoms.MARKER_RAS, atol=1.0)
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-5)


def test_etta_restores_running_statistics_gradients_and_mode(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 10, 1))
    segmenter = Segmenter(net, identity_preprocess, BRAIN_TUMOUR, roi_size=(48, 40, 36))
    net.train()  # e.g. a model someone is fine-tuning
    scan = load_volume(phantoms.write_nifti(tmp_path / "scan.nii.gz", *phantoms.ras_reference()))
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    _, entropies = segment_with_etta(segmenter, scan, steps=3, lr=0.05)
    assert len(entropies) == 3 and net.training, "train/eval mode restored"
    for name, value in net.named_buffers():
        torch.testing.assert_close(value, buffers[name], atol=0, rtol=0)
    assert all(p.grad is None for p in net.parameters())


def test_etta_adapts_then_restores_the_model(tmp_path):
    torch.manual_seed(0)
    encoder = create_encoder("brain_id", f_maps=8)
    net = LightSegmentationNet(encoder, num_classes=10).eval()
    segmenter = Segmenter(net, identity_preprocess, BRAIN_TUMOUR, roi_size=(48, 40, 36))
    scan = load_volume(phantoms.write_nifti(tmp_path / "scan.nii.gz", *phantoms.ras_reference()))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = {k: p.requires_grad for k, p in net.named_parameters()}
    plain = segmenter(scan)
    adapted, entropies = segment_with_etta(segmenter, scan, steps=5, lr=0.05)
    assert entropies[-1] < entropies[0]
    assert np.abs(adapted.probabilities - plain.probabilities).max() > 1e-3, "the adapted weights were not used"
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)
    assert {k: p.requires_grad for k, p in net.named_parameters()} == flags
    again = segmenter(scan)
    np.testing.assert_array_equal(again.probabilities, plain.probabilities)
    assert len(norm_affine_parameters(net)) > 0


def test_segmenter_folders_are_checked_before_use(tmp_path):
    from fm.core.labels import BRAIN_TISSUE, BRAIN_TUMOUR
    from heads.segmenters import bundled_network_folder, create_segmenter

    segmenter, info = create_segmenter("synth-unet")
    config = json.loads((bundled_network_folder() / "config.json").read_text())
    assert info.model_id == "fm3d/default-segmenter" and len(info.sha256) == 16 and info.label_set == BRAIN_TUMOUR.name
    assert (
        segmenter.label_set is BRAIN_TISSUE
        and segmenter.postprocess is not None
        and segmenter.roi_size == tuple(config["inference"]["roi_size"])
    )

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((bundled_network_folder() / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputFileError, match="model.safetensors: is not a readable safetensors file"):
        create_segmenter(broken)
    checkpoint = tmp_path / "model_final.pt"
    checkpoint.write_bytes(b"x")
    with pytest.raises(InputFileError, match="is a file; a published checkpoint needs --encoder"):
        create_segmenter(checkpoint)
    with pytest.raises(ValueError, match="swin_bob_btcv needs --model"):
        create_segmenter("swin_bob_btcv")


def test_an_evaluation_record_counts_only_for_the_weights_it_measured(tmp_path):
    import shutil

    from heads.model_folder import EVALUATION_FILE
    from heads.segmenters import bundled_network_folder
    from heads.segmenters import create_segmenter as load_segmenter

    folder = tmp_path / "model"
    shutil.copytree(bundled_network_folder(), folder)
    sha256 = load_segmenter(folder)[1].sha256
    record = {"model_sha256": sha256, "split": "test", "seed": 1, "n": 8, "summary": {"sensitivity_1ml": 0.5}}
    (folder / EVALUATION_FILE).write_text(json.dumps(record))
    info = load_segmenter(folder)[1]
    assert info.lesion_sensitivity == 0.5 and info.evaluation == "8 synthetic test-split scans, seed 1"
    (folder / EVALUATION_FILE).write_text(json.dumps({**record, "model_sha256": "0" * 16}))  # weights retrained since
    assert load_segmenter(folder)[1].lesion_sensitivity is None
    (folder / EVALUATION_FILE).write_text("{}")
    with pytest.raises(InputFileError, match=f"{EVALUATION_FILE}: is not an evaluation record"):
        load_segmenter(folder)


def test_channelwise_argmax_matches_torch_and_keeps_the_first_of_ties():
    from heads.decoding import _first_argmax

    probabilities = torch.rand(10, 7, 6, 5)
    probabilities[3, 0, 0, 0] = probabilities[5, 0, 0, 0] = 2.0  # a tie: the lower label wins, as torch.argmax
    assert torch.equal(_first_argmax(probabilities).long(), probabilities.argmax(0))
    assert _first_argmax(probabilities)[0, 0, 0] == 3


class FixedProbabilities(nn.Module):
    """The same softmax probabilities (BRAIN_TISSUE classes) at every voxel."""

    def __init__(self, probabilities):
        super().__init__()
        self.register_buffer("logits", torch.tensor(probabilities).log().view(1, -1, 1, 1, 1))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, *x.shape[2:])


@pytest.mark.parametrize(
    "probabilities, label",
    [
        # bg, CSF, ventricles, GM, WM, oedema, core, enhancing
        ((0.0, 0.0, 0.0, 0.0, 0.4, 0.3, 0.0, 0.3), 5),  # lesion classes together 0.6: a lesion, oedema first of ties
        ((0.05, 0.0, 0.0, 0.3, 0.3, 0.35, 0.0, 0.0), 3),  # oedema the likeliest class but the region 0.35: grey matter
        ((0.0, 0.0, 0.0, 0.1, 0.6, 0.1, 0.1, 0.1), 4),  # plain argmax already agrees with the region
    ],
)
@torch.no_grad()
def test_softmax_lesions_are_decided_by_the_whole_tumour_region_first(probabilities, label):
    from fm.core.labels import BRAIN_TISSUE

    scan = volume_from_array(np.ones((12, 12, 12), np.float32), np.eye(4))
    result = Segmenter(FixedProbabilities(probabilities), identity_preprocess, BRAIN_TISSUE, roi_size=(16, 16, 16))(
        scan
    )
    assert set(np.unique(result.labels)) == {label}
    np.testing.assert_allclose(result.probabilities[:, 5, 5, 5], probabilities, atol=1e-5)


class NestedRegions(nn.Module):
    """Sigmoid channels (tumour_core, whole_tumour, enhancing_tumour) from intensity thresholds."""

    def forward(self, x):
        return torch.cat([x - 0.25, x - 0.1, x - 0.5], dim=1) * 40


@torch.no_grad()
def test_nested_outputs_land_on_the_scans_own_grid(tmp_path):
    reference, affine = phantoms.ras_reference()
    scan = load_volume(phantoms.write_nifti(tmp_path / "pir.nii.gz", *phantoms.relayout(reference, affine, "PIR")))
    segmenter = Segmenter(
        NestedRegions(),
        lambda v: monai_preprocess(v, MR_1P5MM),
        BRATS,
        roi_size=(32, 32, 32),
        output="nested",
        region_channels=("tumour_core", "whole_tumour", "enhancing_tumour"),
    )
    result = segmenter(scan)
    assert result.labels.shape == scan.shape and result.probabilities.shape == (5, *scan.shape)
    np.testing.assert_allclose(result.probabilities[[0, 1, 2, 4]].sum(0), 1.0, atol=1e-5)
    # the marker's bright centre is enhancing, surrounded by core, then oedema
    assert set(np.unique(result.labels)) == {0, 1, 2, 4}
    centre = np.argwhere(result.labels == 4).mean(axis=0)
    np.testing.assert_allclose(scan.voxel_to_ras(centre), phantoms.MARKER_RAS, atol=1.5)
    assert result.labels[0, 0, 0] == 0


@pytest.mark.parametrize("code", ["LAS", "PIR", "RPI"])
def test_hemispheres_come_from_the_affine_in_any_orientation(tmp_path, code):
    """The example's true tissue labels without sides get the sides of its true hemisphere labels back."""
    from fm.core.examples import example_path
    from fm.core.labels import BRAIN_TISSUE, BRAIN_TUMOUR_TO_TISSUE
    from heads.hemispheres import split_hemispheres
    from heads.network_segmenter import Segmentation

    scan = load_volume(example_path())
    truth = load_volume(example_path().with_name("example_brain_t1_labels.nii.gz")).array.astype(np.uint8)
    stored = load_volume(
        phantoms.write_nifti(tmp_path / f"{code}.nii.gz", *phantoms.relayout(scan.array, scan.affine, code))
    )
    truth_stored = stored.from_source_layout(phantoms.relayout(truth, scan.affine, code)[0]).array.astype(np.uint8)
    tissue = np.asarray(BRAIN_TUMOUR_TO_TISSUE, dtype=np.uint8)[truth_stored]
    probabilities = np.eye(8, dtype=np.float32)[tissue].transpose(3, 0, 1, 2)
    result = split_hemispheres(Segmentation(tissue, probabilities, BRAIN_TISSUE), stored)
    sided = np.isin(truth_stored, (3, 4, 5, 6))
    assert np.mean(result.labels[sided] == truth_stored[sided]) > 0.98
    assert np.array_equal(result.labels[~sided], truth_stored[~sided])
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-6)


def test_lesions_touching_no_brain_tissue_are_dropped():
    from fm.core.labels import BRAIN_TISSUE
    from heads.network_segmenter import Segmentation
    from heads.plausibility import drop_detached_lesions

    labels = np.zeros((40, 40, 40), np.uint8)
    labels[5:30, 5:30, 5:30] = 3  # grey matter
    labels[10:14, 10:14, 10:14] = 6  # a core inside it
    labels[13:16, 13:16, 13:16] = 7  # enhancing rim touching the core only: same component, kept
    labels[34:38, 34:38, 34:38] = 5  # oedema alone outside the brain
    labels[30:33, 30:33, 30:33] = 5  # touches grey matter diagonally at (29, 29, 29): kept
    probabilities = np.zeros((8, *labels.shape), np.float32)
    kept = drop_detached_lesions(Segmentation(labels, probabilities, BRAIN_TISSUE))
    assert (kept.labels[34:38, 34:38, 34:38] == 0).all()
    assert (kept.labels[10:16, 10:16, 10:16] == labels[10:16, 10:16, 10:16]).all()
    assert (kept.labels[30:33, 30:33, 30:33] == 5).all()
    assert kept.probabilities is probabilities and (labels[34:38, 34:38, 34:38] == 5).all(), "the input is not changed"
