"""timm25d, the 2D slice-wise baseline: one token per slice along the chosen axis, pooled into the
embedding; weights from a timm checkpoint (.pth or .safetensors), a saved folder or a Hub id
(offline, from a pre-populated cache), through the same registry as the 3D families."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from encoders.registry import create_encoder, list_encoders
from fm.core.errors import InputError, InputFileError

SMALL = dict(model_name="resnet10t", size=(16, 20, 24))


def small(**overrides):
    torch.manual_seed(0)
    return create_encoder("timm25d", **{**SMALL, **overrides})


@torch.no_grad()
@pytest.mark.parametrize("axis,dim", [("sagittal", 2), ("coronal", 3), ("axial", 4)])
def test_one_token_per_slice_in_order_along_the_axis(axis, dim):
    model = small(axis=axis)
    x = torch.rand(2, 1, 16, 20, 24)
    features = model.forward_features(x)
    slices = x.shape[dim]
    assert features.tokens.shape == (2, slices, model.num_features)
    assert features.embedding.shape == (2, model.num_features)
    assert torch.allclose(features.embedding, features.tokens.mean(1))
    reduced = [-(-n // 32) for n in x.shape[2:]]  # resnet10t: stride 32, rounded up
    assert features.maps[0].shape == (2, model.num_features, *reduced)
    changed = x.clone()
    changed.select(dim, 5).fill_(1.0)  # one slice made bright: only its token moves
    moved = (model.forward_features(changed).tokens - features.tokens).abs().sum(-1)[0]
    assert moved[5] > 0 and torch.count_nonzero(moved) == 1


def test_the_registry_knows_it_and_refuses_bad_settings():
    assert "timm25d" in list_encoders()
    with pytest.raises(InputError, match="slice axis"):
        small(axis="oblique")
    with pytest.raises(InputError, match="slice pooling"):
        small(pool="max")


@torch.no_grad()
def test_saved_folders_and_timm_checkpoints_load_the_same_weights(tmp_path):
    model = small(pool="attention")
    x = torch.rand(1, 1, 16, 20, 24)
    expected = model.forward_features(x).embedding
    model.save_pretrained(tmp_path / "saved")
    assert torch.equal(create_encoder("timm25d", tmp_path / "saved").forward_features(x).embedding, expected)

    mean_pooled = small()
    reference = mean_pooled.forward_features(x).embedding
    published = {**mean_pooled.backbone.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(published, tmp_path / "resnet10t.pth")
    save_file(published, tmp_path / "resnet10t.safetensors")
    for file in ("resnet10t.pth", "resnet10t.safetensors"):
        torch.manual_seed(1)  # a different random init, overwritten by the file
        loaded = create_encoder("timm25d", tmp_path / file, **SMALL)
        assert torch.equal(loaded.forward_features(x).embedding, reference), file
    with pytest.raises(InputFileError, match="no key matches"):
        create_encoder("timm25d", tmp_path / "resnet10t.pth", model_name="vit_tiny_patch16_224")


@torch.no_grad()
def test_a_hub_id_resolves_from_an_offline_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    model = small()
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--fm3d-test--timm25d-small"
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    x = torch.rand(1, 1, 16, 20, 24)
    loaded = create_encoder("timm25d", "hf-hub:fm3d-test/timm25d-small")
    assert torch.equal(loaded.forward_features(x).embedding, model.forward_features(x).embedding)


@torch.no_grad()
def test_a_transformer_backbone_takes_any_slice_size_and_gives_a_3d_map():
    model = small(model_name="vit_tiny_patch16_224")
    features = model.forward_features(torch.rand(1, 1, 32, 48, 64))
    assert model.feature_info == [{"num_chs": 192, "reduction": 16}]
    assert features.maps[0].shape == (1, 192, 2, 3, 4) and features.tokens.shape == (1, 64, 192)
