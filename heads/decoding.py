"""How a segmentation network's output channels become labels, owned by the label set they are
labels of, in the manner of nnU-Net's LabelManager: the activation (softmax over classes, or a
sigmoid per nested region as the BraTS networks write them) and the rule from probabilities to a
label map (argmax, with the label set's region decided first; or the innermost region above 0.5).
"""

from __future__ import annotations

import dataclasses

import torch

from fm.core.errors import look_up
from fm.core.labels import LabelSet

#: output decodings a network may have
DECODINGS = ("softmax", "nested")


@dataclasses.dataclass(frozen=True)
class LabelDecoder:
    """output: "softmax" (channel c = label c) or "nested" (sigmoid channels named by
    `region_channels`, e.g. ("tumour_core", "whole_tumour", "enhancing_tumour") for BraTS)."""

    label_set: LabelSet
    output: str = "softmax"
    region_channels: tuple[str, ...] = ()

    def __post_init__(self):
        look_up("output decoding", self.output, DECODINGS)
        unknown = sorted(set(self.region_channels) - set(self.label_set.nested))
        if unknown or (self.output == "nested") != bool(self.region_channels):
            raise ValueError(
                f"region channels {list(self.region_channels)} do not fit {self.output} output of {self.label_set.name}"
            )

    @property
    def n_labels(self) -> int:
        return max(self.label_set.names) + 1

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, channels, ...) logits -> per-channel probabilities."""
        if self.output == "softmax":
            if logits.shape[1] > self.n_labels:
                raise ValueError(
                    f"the network has {logits.shape[1]} output channels, the label set {self.label_set.name} {self.n_labels}"
                )
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits)

    def decode(self, channels: torch.Tensor, outside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Activated channels on the scan's grid (changed in place) and where the network's grid
        did not reach -> (label map, per-label probabilities with channel = label id)."""
        if self.output == "nested":
            regions = channels.clamp(0, 1)
            labels = nested_to_labels(regions, self.region_channels, self.label_set)
            return labels, _nested_to_probabilities(regions, self.region_channels, self.label_set, self.n_labels)
        channels[0].masked_fill_(outside, 1.0)  # outside the network's grid: background
        missing = self.n_labels - channels.shape[0]  # labels the network has no channel for
        full = channels if missing == 0 else torch.cat([channels, channels.new_zeros((missing, *channels.shape[1:]))])
        labels = _first_argmax(full)
        if self.label_set.region_first is not None:
            _decide_region_first(labels, full, self.label_set.nested[self.label_set.region_first])
        return labels, full


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


def nested_to_labels(
    regions: torch.Tensor, region_channels: tuple[str, ...], label_set: LabelSet, threshold: float = 0.5
) -> torch.Tensor:
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
        p = (
            regions[region_channels.index(region)]
            if previous is None
            else torch.minimum(regions[region_channels.index(region)], previous)
        )
        inner = order[i + 1] if i + 1 < len(order) else None
        p_inner = torch.minimum(regions[region_channels.index(inner)], p) if inner else torch.zeros_like(p)
        full[_exclusive_label(label_set, region, inner)] = p - p_inner
        previous = p
    full[0] = 1 - regions[region_channels.index(order[0])]
    return full
