"""Swin-BOB (UKBOB) and MONAI Swin-UNETR: MONAI's SwinUNETR with the patch merging its published
weights were trained with.

MONAI 1.5 changed the order in which PatchMerging concatenates the eight sub-voxels of each 2^3
block; weights trained with MONAI <= 1.4 (Swin-BOB, the research-contributions BTCV/BraTS models,
MONAI's self-supervised `model_swinvit.pt`) then give logits off by up to 0.4 without any error.
`LegacyPatchMerging` restores the old order and is passed to SwinUNETR as `downsample`.

Checkpoints read: the trainer container `{"epoch", "best_acc", "state_dict"}` with SwinUNETR keys
(`swinViT.*`, `encoder1..4/10`, `decoder1..5`, `out.*`), and the self-supervised layout
`{"state_dict": {"module.patch_embed...", "module.layers1.0.blocks...mlp.fc1"...}}`, which holds the
Swin transformer only and is loaded strictly into `swinViT` (the decoder stays as initialised).

Embedding: global average of the last Swin stage (`swinViT(x)[4]`, 16 x feature_size channels);
tokens: that stage's grid; maps: the five Swin stages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import SwinUNETR
from monai.networks.nets.swin_unetr import PatchMergingV2
from torch import nn

from encoders.base import Encoder, Features, tokens_of
from encoders.spec import InputSpec
from fm.core.errors import InputFileError


class LegacyPatchMerging(PatchMergingV2):
    """Patch merging in the sub-voxel order of MONAI <= 1.4 (two of the eight slices repeat)."""

    def forward(self, x):
        if x.dim() != 5:
            return super().forward(x)
        _, d, h, w, _ = x.shape
        if d % 2 or h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2, 0, d % 2))
        parts = [
            x[:, 0::2, 0::2, 0::2, :],
            x[:, 1::2, 0::2, 0::2, :],
            x[:, 0::2, 1::2, 0::2, :],
            x[:, 0::2, 0::2, 1::2, :],
            x[:, 1::2, 0::2, 1::2, :],
            x[:, 0::2, 1::2, 0::2, :],
            x[:, 0::2, 0::2, 1::2, :],
            x[:, 1::2, 1::2, 1::2, :],
        ]
        return self.reduction(self.norm(torch.cat(parts, -1)))


class SwinBOB(Encoder):
    family = "swin_bob"
    tileable = True

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 72,
        feature_size: int = 48,
        depths: tuple[int, ...] = (2, 2, 2, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        legacy_patch_merging: bool = True,
        spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5),
        window: tuple[int, int, int] = (96, 96, 96),
        modalities: tuple[str, ...] = ("MR",),
    ):
        super().__init__()
        modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
        self.config_values = dict(spacing_mm=tuple(spacing_mm), window=tuple(window), modalities=modalities)
        self.unetr = SwinUNETR(
            in_channels=in_channels,
            out_channels=out_channels,
            feature_size=feature_size,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            norm_name="instance",
            normalize=True,
            spatial_dims=3,
            downsample=LegacyPatchMerging if legacy_patch_merging else "merging",
        )
        self._features = 16 * feature_size
        self._in_channels = in_channels

    @property
    def spec(self) -> InputSpec:
        return InputSpec(
            spacing_mm=self.config_values["spacing_mm"],
            orientation="RAS",
            size=self.config_values["window"],
            windowed=True,
            intensity="zscore_nonzero" if self.config_values["modalities"] != ("CT",) else "ct_window",
            in_channels=self._in_channels,
            modalities=self.config_values["modalities"],
            divisible_by=32,
            notes="Sliding-window segmentation over the window; embeddings encode the whole padded volume (size divisible by 32).",
        )

    @property
    def num_features(self) -> int:
        return self._features

    @property
    def feature_info(self) -> list[dict[str, int]]:
        # the patch embedding (stride 2) and the four Swin stages, each halving the grid and doubling the width
        return [{"num_chs": self._features // 16 * 2**i, "reduction": 2 ** (i + 1)} for i in range(5)]

    def forward_features(self, x: torch.Tensor) -> Features:
        if any(s % 32 for s in x.shape[2:]):
            raise ValueError(f"Swin-UNETR needs spatial sizes divisible by 32, got {tuple(x.shape[2:])}")
        hidden = self.unetr.swinViT(x, self.unetr.normalize)
        return Features(maps=list(hidden), tokens=tokens_of(hidden[4]), embedding=hidden[4].mean(dim=(2, 3, 4)))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the Swin-UNETR decoder (out_channels classes)."""
        return self.unetr(x)

    def original_state_dict(self, checkpoint: dict, path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        state = checkpoint.get("state_dict", checkpoint.get("model", checkpoint))
        if not isinstance(state, dict):
            raise InputFileError(path, "has no state_dict")
        keys = list(state)
        if keys and all(k.startswith("module.") for k in keys) and any(k.startswith("module.layers1") for k in keys):
            # MONAI self-supervised layout: the Swin transformer alone, timm-style MLP names.
            renamed = {
                k[len("module.") :].replace(".mlp.fc1.", ".mlp.linear1.").replace(".mlp.fc2.", ".mlp.linear2."): v
                for k, v in state.items()
            }
            return self.unetr.swinViT, renamed
        if keys and all(k.startswith("module.") for k in keys):
            state = {k[len("module.") :]: v for k, v in state.items()}  # saved from DataParallel
        return self.unetr, state
