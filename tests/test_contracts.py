"""Contracts every registry entry keeps, tested by being registered (as timm tests its models):
encoders' maps agree with `num_features` and `feature_info`, their input spec with its divisibility
rule, and a saved encoder or segmenter loads back to the same outputs. Segmenter folders describe
themselves: every config key is read, and one that does not fit is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.registry import create_encoder, list_encoders
from encoders.segmentation_grid import GROUPS
from fm.core.errors import InputFileError
from fm.core.labels import BTCV
from heads.folder_segmenter import build_net, save_segmenter_folder
from heads.model_folder import SegmenterConfig
from heads.segmenters import bundled_network_folder, create_segmenter

# Small constructor settings per family, so each runs in a second; a family missing here runs at its defaults.
SMALL = {
    "swin_bob": dict(feature_size=12),
    "swin_bob_btcv": dict(feature_size=12),
    "swin_bob_brats": dict(feature_size=12),
    "anatcl": dict(widths=(8, 16, 32, 64)),
    "brain_id": dict(f_maps=8),
}


def small_input(encoder) -> torch.Tensor:
    """A random input the encoder allows: windowed or fully convolutional encoders take any multiple
    of divisible_by (here not a multiple of every stride, so rounding is checked too); the others
    their spec's size. An encoder that reads the segmentation takes its channels after the scan's."""
    spec = encoder.spec
    size = (
        [spec.divisible_by * -(-40 // spec.divisible_by)] * 3 if spec.windowed or encoder.tileable else list(spec.size)
    )
    segmentation = len(GROUPS) if getattr(encoder, "reads_segmentation", False) else 0
    return torch.rand(1, spec.in_channels + segmentation, *size)


@pytest.mark.parametrize("name", list_encoders())
@torch.no_grad()
def test_encoder_maps_agree_with_what_it_declares(name):
    encoder = create_encoder(name, **SMALL.get(name, {}))
    x = small_input(encoder)
    features = encoder.forward_features(x)
    assert len(features.maps) == len(encoder.feature_info)
    for feature_map, info in zip(features.maps, encoder.feature_info):
        assert feature_map.shape[1] == info["num_chs"]
        if getattr(encoder, "reads_segmentation", False):  # a fixed grid over the brain, whatever its size
            assert feature_map.shape[2:] == encoder.grid
            continue
        # strided convolutions round up, pooling rounds down
        assert all(
            n // info["reduction"] <= m <= -(-n // info["reduction"])
            for m, n in zip(feature_map.shape[2:], x.shape[2:])
        )
    assert features.embedding.shape == (1, encoder.num_features)
    assert features.tokens.shape[0] == 1 and features.tokens.ndim == 3
    spec = encoder.spec
    if spec.windowed:
        assert all(n % spec.divisible_by == 0 for n in spec.size), "the default window must satisfy the spec's own rule"


@pytest.mark.parametrize("name", list_encoders())
@torch.no_grad()
def test_a_saved_encoder_loads_back_to_the_same_embedding(tmp_path, name):
    encoder = create_encoder(name, **SMALL.get(name, {}))
    encoder.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["family"] == encoder.family and config["input_spec"]["orientation"] == "RAS"
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "library_name: fm3d" in card and "## Input" in card
    again = create_encoder(name, tmp_path / "saved")
    x = small_input(encoder)
    torch.testing.assert_close(again.forward_features(x).embedding, encoder.forward_features(x).embedding)


def test_an_encoder_folder_must_describe_the_model_it_rebuilds(tmp_path):
    create_encoder("brain_id", f_maps=8).save_pretrained(tmp_path / "saved")
    path = tmp_path / "saved" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "input_spec": {**config["input_spec"], "spacing_mm": [2.0, 2.0, 2.0]}}))
    with pytest.raises(InputFileError, match="says input_spec .* but the encoder it describes has"):
        create_encoder("brain_id", tmp_path / "saved")
    path.write_text(json.dumps({**config, "depth": 7}))
    with pytest.raises(InputFileError, match="has keys the brain_id encoder does not take: depth"):
        create_encoder("brain_id", tmp_path / "saved")


def test_the_bundled_network_in_its_folder_format_segments_as_before():
    """The bundled folder was re-exported from format 1 (a training recipe plus a few keys, read by
    a hand-written loader) to format 2; its weights are the same file, and it must segment the
    example as the old loader did."""
    from fm.core.examples import example_path
    from fm.core.io import load_volume

    reference = json.loads((Path(__file__).parent / "data" / "synth_unet_example_reference.json").read_text())
    segmenter, info = create_segmenter("synth-unet")
    result = segmenter(load_volume(example_path()))
    counts = dict(zip(*(v.tolist() for v in np.unique(result.labels, return_counts=True))))
    assert result.label_set.name == info.label_set == reference["label_set"]
    assert set(counts) == {int(k) for k in reference["label_voxels"]}
    for label, expected in reference["label_voxels"].items():
        assert abs(counts[int(label)] - expected) <= 1e-4 * expected, (
            f"label {label}: {counts[int(label)]} voxels, was {expected}"
        )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: {**c, "seed": 1}, r"unknown keys \['seed'\]"),
        (lambda c: {k: v for k, v in c.items() if k != "postprocess"}, r"missing keys \['postprocess'\]"),
        (
            lambda c: {**c, "postprocess": ["smooth"]},
            "unknown post-processing step 'smooth'; choose from drop_detached_lesions, split_hemispheres",
        ),
        (
            lambda c: {**c, "label_set": {**c["label_set"], "structures": {"1": "csf"}}},
            "label set 'brain-tissue-v1' differs from the one of that name",
        ),
        (
            lambda c: {**c, "head": {**c["head"], "type": "transformer"}},
            "unknown head type 'transformer'; choose from light, encoder",
        ),
        (
            lambda c: {**c, "encoder": {**c["encoder"], "kwargs": {"f_maps": 8, "depth": 3}}},
            "brain_id does not take depth",
        ),
        (lambda c: {**c, "format_version": 1}, "not 'fm3d-segmenter' format 2"),
    ],
)
def test_every_segmenter_config_key_is_read_and_checked(tmp_path, change, message):
    folder = tmp_path / "model"
    shutil.copytree(bundled_network_folder(), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(config)))
    with pytest.raises(InputFileError, match=message):
        create_segmenter(folder)


@torch.no_grad()
def test_segmenters_saved_in_the_folder_format_load_back_to_the_same_outputs(tmp_path):
    """Both head types: the bundled light head (as training exports it) and Swin-UNETR's own decoder."""
    from encoders.registry import create_encoder as make

    bundled, _ = create_segmenter("synth-unet")
    light_config = SegmenterConfig.from_dict(json.loads((bundled_network_folder() / "config.json").read_text()))
    swin = make("swin_bob_btcv", feature_size=12)
    swin_config = SegmenterConfig(
        encoder="swin_bob_btcv",
        encoder_kwargs=dict(feature_size=12),
        head="encoder",
        head_width=None,
        num_classes=14,
        input_spec=swin.spec,
        label_set=BTCV,
        decoding="softmax",
        region_channels=(),
        roi_size=(64, 64, 64),
        overlap=0.25,
        postprocess=(),
        version="test",
    )
    swin_net = build_net(swin_config)
    x = torch.rand(1, 1, 64, 64, 64)
    for name, net, config in (("light", bundled.net, light_config), ("swin", swin_net, swin_config)):
        save_segmenter_folder(tmp_path / name, net, config)
        loaded, info = create_segmenter(tmp_path / name)
        assert (
            info.version == config.version
            and loaded.roi_size == config.roi_size
            and loaded.label_set is config.label_set
        )
        torch.testing.assert_close(loaded.logits(x), net.eval()(x))
    with pytest.raises(ValueError, match="the config does not describe this network"):
        save_segmenter_folder(tmp_path / "wrong", swin_net, light_config)
