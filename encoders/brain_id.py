"""Brain-ID: a contrast-agnostic brain representation from a 5-level 3D U-Net (the
pytorch-3dunet layout the authors used, key names `backbone.encoders.*` / `backbone.decoders.*`)
and its image head (`head.final_conv_image`).

Each level is two single convolutions, each GroupNorm -> Conv3d(3^3, no bias) -> LeakyReLU(0.01),
with 8 groups (1 where a layer has fewer than 8 input channels). Encoders max-pool by 2 before
their convolutions (floor, so odd sizes shrink); decoders upsample nearest to the skip's size and
concatenate [skip, upsampled]. The first convolution of an encoder level has half the level's
channels (at least its input's).

Checkpoint: `{"model": {...}, "optimizer", "epoch", "args": argparse.Namespace, "best_val_stats"}`.
Features ("the Brain-ID feature"): the last decoder level, f_maps channels at input resolution;
embedding: its global average; tokens: the bottleneck grid (coarse enough for an adapter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoders.base import Encoder, Features, tokens_of
from encoders.spec import InputSpec
from fm.core.errors import InputFileError


class _SingleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, groups: int = 8):
        super().__init__()
        self.add_module("groupnorm", nn.GroupNorm(groups if in_channels >= groups else 1, in_channels))
        self.add_module("conv", nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False))
        self.add_module("ReLU", nn.LeakyReLU(negative_slope=0.01, inplace=True))


class _DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, encoder: bool):
        super().__init__()
        middle = max(out_channels // 2, in_channels) if encoder else out_channels
        self.add_module("SingleConv1", _SingleConv(in_channels, middle))
        self.add_module("SingleConv2", _SingleConv(middle, out_channels))


class _EncoderLevel(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.pooling = nn.MaxPool3d(kernel_size=2) if pool else None
        self.basic_module = _DoubleConv(in_channels, out_channels, encoder=True)

    def forward(self, x):
        return self.basic_module(self.pooling(x) if self.pooling is not None else x)


class _DecoderLevel(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.basic_module = _DoubleConv(in_channels, out_channels, encoder=False)

    def forward(self, skip, x):
        # the upsampled copy is a temporary of the concatenation: at full resolution it is the
        # largest tensor there is, and holding it through the convolutions doubled the peak
        return self.basic_module(torch.cat((skip, F.interpolate(x, size=skip.shape[2:], mode="nearest")), dim=1))


class _UNet3D(nn.Module):
    def __init__(self, in_channels: int, f_maps: int, levels: int = 5):
        super().__init__()
        widths = [f_maps * 2**i for i in range(levels)]
        self.encoders = nn.ModuleList(
            _EncoderLevel(in_channels if i == 0 else widths[i - 1], w, pool=i > 0) for i, w in enumerate(widths)
        )
        reversed_widths = widths[::-1]
        self.decoders = nn.ModuleList(
            _DecoderLevel(reversed_widths[i] + reversed_widths[i + 1], reversed_widths[i + 1])
            for i in range(levels - 1)
        )

    def forward(self, x) -> list[torch.Tensor]:
        """[bottleneck, decoder outputs coarse to fine]."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.insert(0, x)
        outputs = [x]
        skips.pop(0)  # the bottleneck itself
        for decoder in self.decoders:
            x = decoder(skips.pop(0), x)  # each skip freed once used
            outputs.append(x)
        return outputs


class _ImageHead(nn.Module):
    def __init__(self, f_maps: int):
        super().__init__()
        self.final_conv_image = nn.Conv3d(f_maps, 1, kernel_size=1)

    def forward(self, x):
        return self.final_conv_image(x)


class BrainID(Encoder):
    family = "brain_id"
    tileable = True

    def __init__(self, f_maps: int = 64, in_channels: int = 1):
        super().__init__()
        self.backbone = _UNet3D(in_channels, f_maps)
        self.head = _ImageHead(f_maps)
        self._features = f_maps
        self._in_channels = in_channels

    @property
    def spec(self) -> InputSpec:
        return InputSpec(
            spacing_mm=(1.0, 1.0, 1.0),
            orientation="RAS",
            size=(220, 220, 220),
            windowed=False,
            intensity="minmax",
            in_channels=self._in_channels,
            modalities=("any MR contrast", "CT"),
            notes="Published demo preprocessing: min-max, ~1 mm keeping the field of view, RAS, centre crop to 220^3 if larger.",
        )

    @property
    def num_features(self) -> int:
        return self._features

    @property
    def feature_info(self) -> list[dict[str, int]]:
        # the decoder's levels, full resolution first: f_maps x 2^i channels at stride 2^i
        return [{"num_chs": self._features * 2**i, "reduction": 2**i} for i in range(len(self.backbone.encoders))]

    def preprocess(self, volume):
        """The authors' demo preprocessing, reproduced exactly (encoders.preprocess)."""
        from encoders.preprocess import brain_id_preprocess

        return brain_id_preprocess(volume, crop=self.spec.size[0])

    def forward_features(self, x: torch.Tensor) -> Features:
        levels = self.backbone(x)
        last = levels[-1]
        return Features(maps=levels[::-1], tokens=tokens_of(levels[0]), embedding=last.mean(dim=(2, 3, 4)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The image head on the Brain-ID feature (the anatomy the model recovers)."""
        return self.head(self.backbone(x)[-1])

    def original_state_dict(self, checkpoint: dict, path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        state = checkpoint.get("model")
        if not isinstance(state, dict):
            raise InputFileError(path, "has no 'model' entry (Brain-ID checkpoints keep their weights there)")
        return self, state
