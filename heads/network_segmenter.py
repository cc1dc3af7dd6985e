"""Segmentation on encoder features, from a scan to labels and probabilities on the scan's own grid.

- `SwinSegmentationNet`: the Swin-UNETR decoder itself, so released Swin-BOB / BTCV / BraTS
  segmentation checkpoints work end to end.
- `LightSegmentationNet`: a small decoder for the other families (a 1x1x1 convolution where the
  encoder already has a full-resolution map, as Brain-ID does; otherwise progressive upsampling
  through the encoder's multi-scale maps).
- `Segmenter`: preprocess -> sliding-window inference with Gaussian blending (MONAI) ->
  probabilities (heads.decoding: softmax, or nested sigmoid regions as BraTS) resampled onto the
  input volume's grid -> labels, decided as the label set says.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from encoders.base import Encoder
from encoders.preprocess import Preprocessed
from encoders.swin_bob import SwinBOB
from fm.core.io import Volume
from fm.core.labels import LabelSet
from heads.decoding import LabelDecoder
from heads.result import Segmentation


class SwinSegmentationNet(nn.Module):
    """Swin-UNETR end to end: its own decoder and output layer."""

    def __init__(self, encoder: SwinBOB):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder.segment(x)


class LightSegmentationNet(nn.Module):
    """A light decoder over an encoder's multi-scale maps (finest first, as its `feature_info`
    says). An encoder whose finest map is at full resolution (Brain-ID decodes to it) needs only a
    1x1x1 convolution on that map."""

    def __init__(self, encoder: Encoder, num_classes: int, width: int = 16):
        super().__init__()
        self.encoder = encoder
        channels = [level["num_chs"] for level in encoder.feature_info]
        self.full_resolution = encoder.feature_info[0]["reduction"] == 1
        if self.full_resolution:
            self.out = nn.Conv3d(channels[0], num_classes, 1)
            return
        self.fuse = nn.ModuleList(
            nn.Sequential(
                nn.Conv3d(c + width, width, 3, padding=1, bias=False),
                nn.InstanceNorm3d(width, affine=True),
                nn.LeakyReLU(0.01),
            )
            for c in channels[:-1]
        )
        self.bottom = nn.Conv3d(channels[-1], width, 1)
        self.out = nn.Conv3d(width, num_classes, 1)

    def forward(self, x):
        maps = self.encoder.forward_features(x).maps
        if self.full_resolution:
            return self.out(maps[0])
        y = self.bottom(maps[-1])
        for fuse, skip in zip(reversed(self.fuse), reversed(maps[:-1])):
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = fuse(torch.cat([skip, y], dim=1))
        if y.shape[2:] != x.shape[2:]:
            y = F.interpolate(y, size=x.shape[2:], mode="trilinear", align_corners=False)
        return self.out(y)


class Segmenter:
    """Runs a segmentation network on a Volume and returns results on that volume's grid.

    output: "softmax" (channel c = label c) or "nested" (sigmoid channels named by
    `region_channels`, e.g. ("tumour_core", "whole_tumour", "enhancing_tumour") for BraTS).
    `label_set` names the network's classes; `postprocess(segmentation, volume)` may turn them into
    the reported label set (the default segmenter adds hemispheres from the affine).
    """

    def __init__(
        self,
        net: nn.Module,
        preprocess: Callable[[Volume], Preprocessed],
        label_set: LabelSet,
        roi_size: tuple[int, int, int],
        output: str = "softmax",
        region_channels: tuple[str, ...] = (),
        overlap: float = 0.5,
        postprocess: Callable[[Segmentation, Volume], Segmentation] | None = None,
    ):
        self.net = net.eval()
        self.preprocess = preprocess
        self.decoder = LabelDecoder(label_set, output, tuple(region_channels))
        self.roi_size = tuple(roi_size)
        self.overlap = overlap
        self.postprocess = postprocess

    @property
    def label_set(self) -> LabelSet:
        return self.decoder.label_set

    @property
    def output(self) -> str:
        return self.decoder.output

    @property
    def device(self) -> torch.device:
        parameter = next(self.net.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def logits(self, tensor: torch.Tensor) -> torch.Tensor:
        """Whole-volume inference when it fits one window, else Gaussian-blended windows; runs on
        the network's device, returns on the CPU."""
        if all(n <= r for n, r in zip(tensor.shape[2:], self.roi_size)):
            return self.net(tensor.to(self.device)).cpu()
        return sliding_window_inference(
            tensor,
            self.roi_size,
            1,
            self.net,
            overlap=self.overlap,
            mode="gaussian",
            sw_device=self.device,
            device="cpu",
        )

    @torch.no_grad()
    def __call__(self, volume: Volume) -> Segmentation:
        prepared = self.preprocess(volume)
        logits = self.logits(prepared.tensor)
        return self.to_volume(logits, prepared, volume)

    def to_volume(self, logits: torch.Tensor, prepared: Preprocessed, volume: Volume) -> Segmentation:
        channels = self.decoder.activate(logits)[0]
        # One resampling for the channels and the interpolation weight that falls inside the
        # network's grid: near its edge only part of a voxel's weight does, so values are divided
        # by it; outside the grid the voxel is background.
        sampled = prepared.to_volume_grid(torch.cat([channels, torch.ones_like(channels[:1])]), volume)
        coverage = sampled[-1]
        outside = coverage <= 1e-6
        on_grid = sampled[:-1]  # a view: normalised in place, one volume-sized copy at most
        on_grid.div_(coverage.clamp(min=1e-6)).masked_fill_(outside, 0.0)
        labels, probabilities = self.decoder.decode(on_grid, outside)
        dtype = np.uint8 if self.decoder.n_labels <= 256 else np.int16
        result = Segmentation(labels.numpy().astype(dtype), probabilities.numpy(), self.label_set)
        return self.postprocess(result, volume) if self.postprocess else result
