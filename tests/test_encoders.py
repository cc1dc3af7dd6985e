"""Encoders load the published containers exactly and reproduce their authors' outputs; every
released full configuration has the published keys and shapes; the project's own format
round-trips, from a folder and from a Hub id resolved offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from encoders.checkpoint import load_container
from encoders.registry import create_encoder, list_encoders
from fm.core.errors import InputFileError

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "tests" / "data" / "refvectors"


def load(path: Path):
    data = torch.load(path, weights_only=True)
    return data["input"] if path.name == "input.pt" else data


def close(actual, expected, rtol=1e-4):
    torch.testing.assert_close(actual.float(), expected.float(), atol=1e-4, rtol=rtol)


@torch.no_grad()
def test_anatcl_reproduces_the_reference():
    model = create_encoder("anatcl", LOCAL / "anatcl" / "anatcl_small_checkpoint.pth", widths=(8, 16, 32, 64))
    x = load(LOCAL / "anatcl" / "input.pt")
    expected = load(LOCAL / "anatcl" / "outputs_small.pt")
    features = model.forward_features(x)
    close(features.embedding, expected["embedding"])
    close(model.project(features.embedding), expected["head_normalized"])
    close(features.maps[-1], expected["layer4_out"])
    torch.testing.assert_close(
        features.maps[0].double().sum(dim=(2, 3, 4)), expected["layer1_out_sum_f64"], rtol=1e-5, atol=1e-4
    )
    stem = model.encoder.maxpool(
        model.encoder.act(model.encoder.bn1(model.encoder.conv1(x)))
    )  # conv, BN, ReLU, max-pool
    assert list(stem.shape) == expected["stem_out_shape"].tolist()


@torch.no_grad()
def test_brain_id_reproduces_the_reference():
    model = create_encoder("brain_id", LOCAL / "brain_id" / "brainid_small_checkpoint.pth", f_maps=8)
    x = load(LOCAL / "brain_id" / "input.pt")
    expected = load(LOCAL / "brain_id" / "outputs_small.pt")
    levels = model.backbone(x)
    for i, level in enumerate(levels):
        close(level, expected[f"feat_{i}"])
    close(model.reconstruct(x), expected["image"])
    features = model.forward_features(x)
    close(features.embedding, expected["embedding_feat_last_gap"])
    close(levels[0].mean(dim=(2, 3, 4)), expected["embedding_bottleneck_gap"])
    assert features.maps[0].shape[1] == model.num_features == 8


@torch.no_grad()
def test_swin_bob_reproduces_the_reference_and_the_monai_change_would_not(swin_bob_reference):
    folder = swin_bob_reference
    x = load(folder / "input.pt")
    expected = load(folder / "outputs_reference.pt")
    model = create_encoder("swin_bob_btcv", folder / "swinbob_small_model_final.pt", feature_size=12)
    features = model.forward_features(x)
    for i in range(1, 5):
        close(features.maps[i], expected[f"swinvit_hidden_{i}"])
    close(features.embedding, expected["embedding_swinvit4_gap"])
    close(model.unetr.encoder10(features.maps[4]), expected["encoder10_out"])
    close(model.unetr.encoder10(features.maps[4]).mean(dim=(2, 3, 4)), expected["embedding_encoder10_gap"])
    logits = model.segment(x)
    assert list(logits.shape) == expected["logits_shape"].tolist()
    close(logits[:, :, ::2, ::2, ::2], expected["logits_stride2"])
    close(logits[..., 32], expected["logits_slice_z32"])
    torch.testing.assert_close(
        logits.double().sum(dim=(2, 3, 4)), expected["logits_sum_per_channel_f64"], rtol=1e-5, atol=1e-3
    )

    modern = create_encoder(
        "swin_bob_btcv", folder / "swinbob_small_model_final.pt", feature_size=12, legacy_patch_merging=False
    )
    assert (modern.segment(x)[:, :, ::2, ::2, ::2] - expected["logits_stride2"]).abs().max() > 0.05


@torch.no_grad()
def test_monai_self_supervised_layout_loads_every_key(swin_bob_reference):
    folder = swin_bob_reference
    x = load(folder / "input.pt")
    expected = load(folder / "outputs_reference.pt")
    model = create_encoder("swin_bob_btcv", folder / "model_swinvit_small.pt", feature_size=12)
    close(model.forward_features(x).maps[4], expected["swinvit_hidden_4"])


def full_configs():
    anatcl = json.loads((LOCAL / "anatcl" / "full_config_key_shapes.json").read_text())
    brain_id = json.loads((LOCAL / "brain_id" / "full_config_key_shapes.json").read_text())
    cases = [
        ("anatcl", {}, lambda m: m, next(iter(anatcl.values()))),
        ("brain_id", {}, lambda m: m, next(iter(brain_id.values()))),
    ]
    swin_file = ROOT.parent / "shared" / "refvectors" / "swin_bob" / "full_config_key_shapes.json"
    if not swin_file.is_file():
        return cases + [("swin_bob", {}, lambda m: m.unetr, None)]  # skipped (or failed in CI) below
    swin = json.loads(swin_file.read_text())
    for name, shapes in swin.items():
        if name.startswith("model_swinvit"):
            continue
        args = dict(part.split("=") for part in name.split("(")[1].rstrip(")").split(",") if "=" in part)
        kwargs = {k: int(args[k]) for k in ("in_channels", "out_channels", "feature_size")}
        cases.append(("swin_bob", kwargs, lambda m: m.unetr, shapes))
    return cases


@pytest.mark.parametrize("name,kwargs,module_of,shapes", full_configs())
def test_full_released_configurations_have_the_published_keys_and_shapes(name, kwargs, module_of, shapes, request):
    if shapes is None:
        request.getfixturevalue("swin_bob_reference")  # skips, or fails in CI
    model = create_encoder(name, **kwargs)
    ours = {k: list(v.shape) for k, v in module_of(model).state_dict().items()}
    assert ours == shapes


def test_full_size_self_supervised_keys_map_onto_the_swin_transformer(swin_bob_reference):
    shapes = json.loads((swin_bob_reference / "full_config_key_shapes.json").read_text())
    ssl = next(v for k, v in shapes.items() if k.startswith("model_swinvit"))
    model = create_encoder("swin_bob", in_channels=1, feature_size=48)
    container = {"state_dict": {k: torch.empty(shape) for k, shape in ssl.items()}}
    module, state = model.original_state_dict(container, "model_swinvit.pt")
    assert module is model.unetr.swinViT
    assert {k: list(v.shape) for k, v in state.items()} == {k: list(v.shape) for k, v in module.state_dict().items()}


def test_partial_or_foreign_checkpoints_are_refused(tmp_path):
    folder = LOCAL / "anatcl"
    with pytest.raises(InputFileError, match="wrong shape"):
        create_encoder("anatcl", folder / "anatcl_small_checkpoint.pth")  # full width vs small file
    brain = LOCAL / "brain_id" / "brainid_small_checkpoint.pth"
    with pytest.raises(InputFileError, match="no key matches the model"):
        create_encoder("anatcl", brain, strict=False)
    partial = tmp_path / "partial.pth"
    container = load_container(folder / "anatcl_small_checkpoint.pth")
    del container["model"]["head.2.weight"]
    container["model"]["extra.weight"] = torch.zeros(1)
    torch.save({"model": container["model"]}, partial)
    with pytest.raises(InputFileError, match=r"1 missing: head.2.weight; 1 unexpected: extra.weight"):
        create_encoder("anatcl", partial, widths=(8, 16, 32, 64))
    assert create_encoder("anatcl", partial, widths=(8, 16, 32, 64), strict=False) is not None


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": Payload()}, path)
    with pytest.raises(InputFileError, match="cannot be loaded safely"):
        create_encoder("anatcl", path)
    assert not marker.exists(), "loading ran code from the checkpoint"


def test_saved_folders_load_strictly_and_only_into_their_family(tmp_path):
    from safetensors.torch import load_file, save_file

    model = create_encoder("anatcl", widths=(8, 16, 32, 64))
    model.save_pretrained(tmp_path / "saved")
    with pytest.raises(InputFileError, match="holds a 'anatcl' encoder, not 'brain_id'"):
        create_encoder("brain_id", tmp_path / "saved")
    weights = load_file(str(tmp_path / "saved" / "model.safetensors"))
    del weights["encoder.conv1.weight"]
    save_file(weights, str(tmp_path / "saved" / "model.safetensors"))
    with pytest.raises(InputFileError, match="1 missing: encoder.conv1.weight"):
        create_encoder("anatcl", tmp_path / "saved")


@torch.no_grad()
def test_hub_id_resolves_from_an_offline_cache(tmp_path, monkeypatch):
    """The real Hub cache layout (refs/main -> snapshots/<commit>/...) with HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants as hub_constants

    model = create_encoder("anatcl", LOCAL / "anatcl" / "anatcl_small_checkpoint.pth", widths=(8, 16, 32, 64))
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--fm3d-test--anatcl-small" / "snapshots" / commit
    model.save_pretrained(snapshot)
    (cache / "models--fm3d-test--anatcl-small" / "refs").mkdir()
    (cache / "models--fm3d-test--anatcl-small" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    loaded = create_encoder("anatcl", "hf-hub:fm3d-test/anatcl-small")
    x = load(LOCAL / "anatcl" / "input.pt")
    close(loaded.forward_features(x).embedding, load(LOCAL / "anatcl" / "outputs_small.pt")["embedding"])


def test_registry_lists_the_three_families():
    assert {"swin_bob", "swin_bob_btcv", "swin_bob_brats", "anatcl", "brain_id"} <= set(list_encoders())
    with pytest.raises(KeyError, match="unknown encoder 'resnet'"):
        create_encoder("resnet")
