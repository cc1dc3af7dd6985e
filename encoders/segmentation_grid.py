"""Visual tokens that see what the segmenter sees: the scan's segmentation and intensities pooled to
a coarse grid over the brain, each cell with its position.

The published encoders' tokens, and the bundled segmenter's Brain-ID bottleneck, carry no lesion
(issue 14 measured image-only answers at the majority baseline): a segmentation network decides
lesions in its full-resolution layers. This feature source starts from the decision instead. The
input is the prepared scan (channel 0) followed by one channel per tissue group of the
segmentation resampled onto the same grid (`segmentation_channels`). The voxels of any group give
the brain's bounding box, cut into `grid` cells; each cell is one token of

    share of each group | max of each lesion group | share of brain | mean and standard deviation
    of the intensity | the cell's centre in [-1, 1] along R, A, S (left to right, posterior to
    anterior, inferior to superior)

so a left lesion's tokens differ from a right one's, and a lesion smaller than a cell survives
pooling in the max channels. The default grid, 4 cells a side, has no cell across the midline of a
centred brain; 16 channels divide among a perceiver's heads. The input is RAS-oriented (the spec), so positions follow the
patient's anatomy whatever the file's orientation. No weights: the adapter learns to read them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoders.base import Encoder, Features, tokens_of
from encoders.spec import InputSpec
from fm.core.errors import InputError
from fm.core.labels import LabelSet

#: The tissue groups, matched by name in any brain label set (sides merged: position carries them).
TISSUE_GROUPS = ("cerebrospinal fluid", "lateral ventricles", "grey matter", "white matter")
#: The lesion groups, from the label set's lesion labels and nested regions.
LESION_GROUPS = ("whole_tumour", "tumour_core", "enhancing_tumour")
GROUPS = TISSUE_GROUPS + LESION_GROUPS


def group_ids(label_set: LabelSet) -> dict[str, tuple[int, ...]]:
    """Label ids of each group in `label_set`; refuses a label set with no brain tissue."""
    ids = {
        group: tuple(i for i, name in label_set.structures.items() if name.endswith(group)) for group in TISSUE_GROUPS
    }
    if not any(ids.values()):
        raise InputError(
            f"label set {label_set.name!r} has no brain tissue ({', '.join(TISSUE_GROUPS)}): "
            "the segmentation_grid encoder reads brain segmentations"
        )
    ids["whole_tumour"] = tuple(label_set.lesion)
    for region in LESION_GROUPS[1:]:
        ids[region] = tuple(label_set.nested.get(region, ()))
    return ids


def segmentation_channels(labels: torch.Tensor, label_set: LabelSet) -> torch.Tensor:
    """(D, H, W) integer labels -> (len(GROUPS), D, H, W) float indicators, one per group."""
    ids = group_ids(label_set)
    return torch.stack([torch.isin(labels, torch.tensor(ids[group], dtype=labels.dtype)) for group in GROUPS]).float()


class SegmentationGrid(Encoder):
    family = "segmentation_grid"
    tileable = False  # the grid spans the brain's box: a tile would see another box
    reads_segmentation = True  # its input carries the segmentation's channels after the scan's

    def __init__(self, grid: tuple[int, int, int] = (4, 4, 4), in_channels: int = 1):
        super().__init__()
        self.grid = tuple(grid)
        self._in_channels = in_channels

    @property
    def spec(self) -> InputSpec:
        # the bundled segmenter's input (fm/data/default_segmenter/config.json)
        return InputSpec(
            spacing_mm=(1.5, 1.5, 1.5),
            orientation="RAS",
            size=(64, 64, 64),
            windowed=True,
            intensity="percentile",
            in_channels=self._in_channels,
            modalities=("any MR contrast",),
            notes="Followed by the segmentation's groups as channels (encoders.segmentation_grid).",
        )

    @property
    def num_features(self) -> int:
        return len(GROUPS) + len(LESION_GROUPS) + 1 + 2 + 3

    @property
    def feature_info(self) -> list[dict[str, int]]:
        # one map, the grid over the brain's box; its stride depends on the brain's size
        return [{"num_chs": self.num_features, "reduction": 8}]

    def forward_features(self, x: torch.Tensor) -> Features:
        """x: (B, scans + len(GROUPS), D, H, W) -> one (B, num_features, *grid) map."""
        scans = x.shape[1] - len(GROUPS)
        if scans < 1:
            raise InputError(
                f"segmentation_grid takes the scan and {len(GROUPS)} segmentation channels, got {x.shape[1]} channels"
            )
        cells = torch.cat([self._cells(item[None, :scans], item[None, scans:]) for item in x])
        return Features(maps=[cells], tokens=tokens_of(cells), embedding=cells.mean(dim=(2, 3, 4)))

    def _cells(self, image: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        box = _bounding_box(groups[0].amax(0) > 0)
        image, groups = image[box], groups[box]
        intensity = image.mean(1, keepdim=True)
        mean = F.adaptive_avg_pool3d(intensity, self.grid)
        spread = (F.adaptive_avg_pool3d(intensity**2, self.grid) - mean**2).clamp(min=0).sqrt()
        axes = (torch.linspace(-1, 1, n, dtype=image.dtype, device=image.device) for n in self.grid)
        position = torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]
        lesions = groups[:, len(TISSUE_GROUPS) :]
        brain = groups[:, : len(TISSUE_GROUPS) + 1].amax(1, keepdim=True)  # tissue or lesion
        pooled = [F.adaptive_avg_pool3d(groups, self.grid), F.adaptive_max_pool3d(lesions, self.grid)]
        return torch.cat([*pooled, F.adaptive_avg_pool3d(brain, self.grid), mean, spread, position], dim=1)

    def original_state_dict(self, checkpoint: dict, path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        raise InputError("segmentation_grid has no weights to load")


def _bounding_box(mask: torch.Tensor) -> tuple[slice, ...]:
    """Index of (1, C, D, H, W) cutting out the bounding box of `mask` (D, H, W), or everything when
    it is empty; adaptive pooling then gives every cell at least one voxel."""
    if not mask.any():
        return (slice(None), slice(None))
    bounds = []
    for axis in range(3):
        present = mask.any(dim=tuple(a for a in range(3) if a != axis)).nonzero()
        bounds.append(slice(int(present[0]), int(present[-1]) + 1))
    return (slice(None), slice(None), *bounds)
