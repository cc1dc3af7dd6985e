"""timm25d: any 2D backbone from timm run slice by slice through a 3D scan, the slices' features
pooled into one embedding. The baseline a reviewer asks for beside the 3D foundation models: "does
an ImageNet network applied per slice do as well?".

Each slice (along `axis` of the RAS-oriented volume: sagittal, coronal or axial) is repeated to the
backbone's three input channels and normalised with its pretrained mean and standard deviation, so
published ImageNet weights load unchanged. timm's pooled pre-logits features of every slice form
the tokens (one per slice, in order along the axis); the embedding is their mean or, with
`pool="attention"`, timm's latent attention pooling (learnt: random until trained). The feature
map (for adapters and heads) is the backbone's last map of every slice, the slices averaged in
runs of the backbone's stride, so the 3D map is reduced alike along every axis.

Weights: `timm.create_model(name, pretrained=False)` here (nothing can be downloaded); a timm
checkpoint file (the backbone's own key names, .pth or .safetensors as timm's Hub repositories
hold them), or a folder / hf-hub id in this project's format, loads as for the other families.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.layers import AttentionPoolLatent
from torch import nn

from encoders.base import Encoder, Features
from encoders.spec import InputSpec
from fm.core.errors import InputFileError, look_up

#: The volume's array axis (after RAS orientation, batch and channel first) for each slice direction.
SLICE_AXES = {"sagittal": 2, "coronal": 3, "axial": 4}
POOLS = ("mean", "attention")


class Timm25D(Encoder):
    family = "timm25d"
    tileable = False

    def __init__(
        self,
        model_name: str = "resnet18",
        axis: str = "axial",
        pool: str = "mean",
        size: tuple[int, int, int] = (128, 128, 128),
        spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5),
        slice_batch: int = 64,
    ):
        super().__init__()
        look_up("slice axis", axis, SLICE_AXES)
        look_up("slice pooling", pool, POOLS)
        self.model_name, self.axis, self.pool = model_name, axis, pool
        self.size, self.spacing_mm, self.slice_batch = tuple(size), tuple(spacing_mm), slice_batch
        try:  # transformers (ViTs) take any slice size only when asked; convolutional networks always do
            self.backbone = timm.create_model(model_name, pretrained=False, num_classes=0, dynamic_img_size=True)
        except TypeError:
            self.backbone = timm.create_model(model_name, pretrained=False, num_classes=0)
        config = self.backbone.pretrained_cfg
        self.register_buffer(
            "mean", torch.tensor(config.get("mean", (0.5, 0.5, 0.5))).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(config.get("std", (0.5, 0.5, 0.5))).view(1, -1, 1, 1), persistent=False
        )
        width = self.backbone.num_features
        self.attention = AttentionPoolLatent(width, num_heads=_heads(width)) if pool == "attention" else None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(
            spacing_mm=self.spacing_mm,
            orientation="RAS",
            size=self.size,
            windowed=False,
            intensity="percentile",
            in_channels=1,
            modalities=("any",),
            notes=f"2D {self.model_name} on each {self.axis} slice; intensities 0.5-99.5 % to [0, 1], then the backbone's normalisation",
        )

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    @property
    def feature_info(self) -> list[dict[str, int]]:
        # one map: the backbone's last in-plane map of every slice, the slices averaged in runs of
        # the same stride, so that the 3D map is reduced alike on every axis
        return [{"num_chs": self.num_features, "reduction": self._reduction()}]

    def slice_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, X, Y, Z) -> (the pooled features of each slice (B, slices, C), in order along the
        axis; the last in-plane maps of each slice (B, slices, C, h, w))."""
        dim = SLICE_AXES[self.axis]
        slices = x.movedim(dim, 2)  # (B, 1, S, a, b): the other two axes keep their order
        batch, _, count = slices.shape[:3]
        planes = slices.transpose(1, 2).reshape(batch * count, 1, *slices.shape[3:])
        planes = (planes.expand(-1, self.mean.shape[1], -1, -1) - self.mean) / self.std
        pooled, maps = [], []
        for chunk in planes.split(self.slice_batch):
            final = self.backbone.forward_features(chunk)
            pooled.append(self.backbone.forward_head(final, pre_logits=True))
            maps.append(final if final.ndim == 4 else self._grid_map(chunk))
        maps = torch.cat(maps)
        return torch.cat(pooled).view(batch, count, -1), maps.view(batch, count, *maps.shape[1:])

    def forward_features(self, x: torch.Tensor) -> Features:
        tokens, maps = self.slice_features(x)
        embedding = self.attention(tokens) if self.attention is not None else tokens.mean(1)
        stride = self._reduction()
        stacked = maps.permute(0, 2, 3, 4, 1)  # (B, C, h, w, S): runs of slices pooled like a stride
        batch, channels, h, w, count = stacked.shape
        pooled = F.avg_pool1d(stacked.reshape(-1, 1, count), stride, stride, ceil_mode=True)
        volume_map = pooled.view(batch, channels, h, w, -1).permute(0, 1, 4, 2, 3)  # (B, C, S', h, w)
        return Features(maps=[volume_map.movedim(2, SLICE_AXES[self.axis])], tokens=tokens, embedding=embedding)

    def _reduction(self) -> int:
        return int(self.backbone.feature_info[-1]["reduction"])

    def _grid_map(self, planes: torch.Tensor) -> torch.Tensor:
        """A backbone whose features are tokens (a ViT): its last block as an NCHW map."""
        return self.backbone.forward_intermediates(planes, indices=1, intermediates_only=True, output_fmt="NCHW")[-1]

    def original_state_dict(self, checkpoint: dict, path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        """A timm checkpoint: the backbone's state dict, flat or under 'state_dict' / 'model'; the
        classifier it was published with is dropped (this backbone has none)."""
        state = checkpoint.get("state_dict") or checkpoint.get("model") or checkpoint
        if not all(isinstance(value, torch.Tensor) for value in state.values()):
            raise InputFileError(path, "is not a timm state dict (its entries are not all tensors)")
        classifier = self.backbone.default_cfg.get("classifier", "fc")
        return self.backbone, {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}


def _heads(width: int) -> int:
    """Attention heads for the pooling: 8 where the width allows, else its largest divisor up to 8."""
    return next(heads for heads in (8, 4, 2, 1) if width % heads == 0)
