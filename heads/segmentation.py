"""Segmentation on encoder features, from a scan to labels and probabilities on the scan's own grid.

- `SwinSegmentationNet`: the Swin-UNETR decoder itself, so released Swin-BOB / BTCV / BraTS
  segmentation checkpoints work end to end.
- `LightSegmentationNet`: a small decoder for the other families (a 1x1x1 convolution where the
  encoder already has a full-resolution map, as Brain-ID does; otherwise progressive upsampling
  through the encoder's multi-scale maps).
- `Segmenter`: preprocess -> sliding-window inference with Gaussian blending (MONAI) ->
  softmax, or nested sigmoid regions (whole tumour > tumour core > enhancing, as BraTS) ->
  probabilities resampled onto the input volume's grid -> labels.
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
from fm.io import Volume
from fm.labels import LabelSet
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
            nn.Sequential(nn.Conv3d(c + width, width, 3, padding=1, bias=False), nn.InstanceNorm3d(width, affine=True), nn.LeakyReLU(0.01))
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
        if output not in ("softmax", "nested"):
            raise ValueError(f"output must be 'softmax' or 'nested', not {output!r}")
        self.net = net.eval()
        self.preprocess = preprocess
        self.label_set = label_set
        self.roi_size = tuple(roi_size)
        self.output = output
        self.region_channels = tuple(region_channels)
        self.overlap = overlap
        self.postprocess = postprocess

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
            tensor, self.roi_size, 1, self.net, overlap=self.overlap, mode="gaussian", sw_device=self.device, device="cpu"
        )

    @torch.no_grad()
    def __call__(self, volume: Volume) -> Segmentation:
        prepared = self.preprocess(volume)
        logits = self.logits(prepared.tensor)
        return self.to_volume(logits, prepared, volume)

    def to_volume(self, logits: torch.Tensor, prepared: Preprocessed, volume: Volume) -> Segmentation:
        n_labels = max(self.label_set.names) + 1
        channels = torch.softmax(logits, dim=1)[0] if self.output == "softmax" else torch.sigmoid(logits)[0]
        # One resampling for the channels and the interpolation weight that falls inside the
        # network's grid: near its edge only part of a voxel's weight does, so values are divided
        # by it; outside the grid the voxel is background.
        if self.output == "softmax" and channels.shape[0] > n_labels:
            raise ValueError(f"the network has {channels.shape[0]} output channels, the label set {self.label_set.name} {n_labels}")
        sampled = prepared.to_volume_grid(torch.cat([channels, torch.ones_like(channels[:1])]), volume)
        coverage = sampled[-1]
        outside = coverage <= 1e-6
        on_grid = sampled[:-1]  # a view: normalised in place, one volume-sized copy at most
        on_grid.div_(coverage.clamp(min=1e-6)).masked_fill_(outside, 0.0)
        if self.output == "softmax":
            on_grid[0].masked_fill_(outside, 1.0)
            full = on_grid if on_grid.shape[0] == n_labels else torch.cat([on_grid, on_grid.new_zeros((n_labels - on_grid.shape[0], *volume.shape))])
            labels = _first_argmax(full)
            if self.label_set.region_first is not None:
                _decide_region_first(labels, full, self.label_set.nested[self.label_set.region_first])
        else:
            regions = on_grid.clamp(0, 1)
            labels = nested_to_labels(regions, self.region_channels, self.label_set)
            full = _nested_to_probabilities(regions, self.region_channels, self.label_set, n_labels)
        dtype = np.uint8 if n_labels <= 256 else np.int16
        result = Segmentation(labels.numpy().astype(dtype), full.numpy(), self.label_set)
        return self.postprocess(result, volume) if self.postprocess else result


def _first_argmax(probabilities: torch.Tensor) -> torch.Tensor:
    """argmax over channels (first channel wins ties), one channel at a time: torch's argmax over a
    leading dimension of a large volume is several times slower."""
    best = probabilities[0].clone()
    labels = torch.zeros(probabilities.shape[1:], dtype=torch.int16)
    for channel in range(1, probabilities.shape[0]):
        better = probabilities[channel] > best
        labels[better] = channel
        torch.maximum(best, probabilities[channel], out=best)
    return labels


def _decide_region_first(labels: torch.Tensor, probabilities: torch.Tensor, lesion_ids) -> None:
    """Softmax labels decided as BraTS evaluates them, region first: a voxel is in the region (the
    whole tumour) when its classes together pass 0.5, then takes the likeliest of them; otherwise the likeliest
    other class. Plain argmax calls (white matter 0.4, oedema 0.3, enhancing 0.3) white matter, and
    the lesion's reported confidence is that same summed probability. Changes `labels` in place."""
    lesion = torch.zeros(probabilities.shape[0], dtype=torch.bool)
    lesion[list(lesion_ids)] = True
    in_region = probabilities[lesion].sum(0) > 0.5
    labelled_lesion = lesion[labels.long()]
    for wrong, classes in ((in_region & ~labelled_lesion, lesion), (~in_region & labelled_lesion, ~lesion)):
        if wrong.any():
            ids = torch.nonzero(classes)[:, 0]
            labels[wrong] = ids[probabilities[classes][:, wrong].argmax(0)].to(labels.dtype)


def _exclusive_label(label_set: LabelSet, region: str, inner: str | None) -> int:
    own = set(label_set.nested[region]) - (set(label_set.nested[inner]) if inner else set())
    if len(own) != 1:
        raise ValueError(f"region {region} does not add exactly one label over {inner}: {sorted(own)}")
    return own.pop()


def _outer_to_inner(label_set: LabelSet, region_channels: tuple[str, ...]) -> list[str]:
    return sorted(region_channels, key=lambda r: -len(label_set.nested[r]))


def nested_to_labels(regions: torch.Tensor, region_channels: tuple[str, ...], label_set: LabelSet, threshold: float = 0.5) -> torch.Tensor:
    """Nested region probabilities (channels named by `region_channels`) -> a label map: each voxel
    takes the label its innermost region above threshold adds (enhancing, else core, else oedema)."""
    order = _outer_to_inner(label_set, region_channels)
    labels = torch.zeros(regions.shape[1:], dtype=torch.int64)
    inside = torch.ones(regions.shape[1:], dtype=torch.bool)
    for i, region in enumerate(order):
        inner = order[i + 1] if i + 1 < len(order) else None
        inside = inside & (regions[region_channels.index(region)] > threshold)  # nesting enforced
        labels[inside] = _exclusive_label(label_set, region, inner)
    return labels


def _nested_to_probabilities(regions, region_channels, label_set, n_labels) -> torch.Tensor:
    """Per-label probabilities from nested region probabilities (outer minus inner)."""
    order = _outer_to_inner(label_set, region_channels)
    full = torch.zeros((n_labels, *regions.shape[1:]))
    previous = None
    for i, region in enumerate(order):
        p = regions[region_channels.index(region)] if previous is None else torch.minimum(regions[region_channels.index(region)], previous)
        inner = order[i + 1] if i + 1 < len(order) else None
        p_inner = torch.minimum(regions[region_channels.index(inner)], p) if inner else torch.zeros_like(p)
        full[_exclusive_label(label_set, region, inner)] = p - p_inner
        previous = p
    full[0] = 1 - regions[region_channels.index(order[0])]
    return full
