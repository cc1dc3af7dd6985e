"""AnatCL: a 3D ResNet-18 encoder (MONAI's ResNet, key names as published under `encoder.*`) and
the contrastive projection head (`head.0` Linear, ReLU, `head.2` Linear, then L2 normalisation).

Checkpoint: `{"opts": argparse.Namespace, "model": {...}, "optimizer", "epoch", "run_id"}`.
Embedding: the pooled encoder output (512-d at full width); the projection head is kept for
fidelity and exposed as `project`, but probes use the encoder embedding as the authors do.

Expected input: CAT12-style grey-matter maps in MNI space, 1.5 mm, values in [0, 1], no intensity
normalisation. The published material is ambiguous about the grid: CAT12 writes 121 x 145 x 121
at 1.5 mm, while the AnatCL code crops to 121 x 128 x 121. The network itself is size-agnostic
(adaptive pooling); this spec uses 121 x 128 x 121 (centre crop of the 145 axis), and a user with
the other convention can override `size`. Raw T1 scans are not grey-matter maps: embeddings of
them are out of the model's training distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from monai.networks.nets.resnet import ResNetBlock
from torch import nn

from encoders.base import Encoder, Features, tokens_of
from encoders.spec import InputSpec
from fm.core.errors import InputFileError


class AnatCL(Encoder):
    family = "anatcl"

    def __init__(
        self,
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        projection_dim: int = 128,
        size: tuple[int, int, int] = (121, 128, 121),
    ):
        super().__init__()
        self.size = tuple(size)
        self.widths = tuple(widths)
        self.encoder = ResNet(
            block=ResNetBlock,
            layers=[2, 2, 2, 2],
            block_inplanes=list(widths),
            spatial_dims=3,
            n_input_channels=1,
            conv1_t_size=7,
            conv1_t_stride=2,
            no_max_pool=False,
            shortcut_type="B",
            feed_forward=False,
            bias_downsample=False,
        )
        self.head = nn.Sequential(
            nn.Linear(widths[3], widths[3]), nn.ReLU(inplace=True), nn.Linear(widths[3], projection_dim)
        )
        self._features = widths[3]

    @property
    def spec(self) -> InputSpec:
        return InputSpec(
            spacing_mm=(1.5, 1.5, 1.5),
            orientation="RAS",
            size=self.size,
            windowed=False,
            intensity="none",
            in_channels=1,
            modalities=("CAT12 grey-matter map",),
            notes="MNI-registered grey-matter probability map in [0, 1]; 121x145x121 is the other common grid.",
        )

    @property
    def num_features(self) -> int:
        return self._features

    @property
    def feature_info(self) -> list[dict[str, int]]:
        # ResNet-18 layers 1-4 after the strided stem and its max-pool
        return [{"num_chs": w, "reduction": 4 * 2**i} for i, w in enumerate(self.widths)]

    def forward_features(self, x: torch.Tensor) -> Features:
        e = self.encoder
        stem = e.act(e.bn1(e.conv1(x)))
        stem = e.maxpool(stem)
        maps = []
        out = stem
        for layer in (e.layer1, e.layer2, e.layer3, e.layer4):
            out = layer(out)
            maps.append(out)
        return Features(maps=maps, tokens=tokens_of(maps[-1]), embedding=e.avgpool(maps[-1]).flatten(1))

    def project(self, embedding: torch.Tensor) -> torch.Tensor:
        """The contrastive projection, L2-normalised (what the AnatCL loss saw)."""
        return F.normalize(self.head(embedding), dim=1)

    def original_state_dict(self, checkpoint: dict, path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        state = checkpoint.get("model")
        if not isinstance(state, dict):
            raise InputFileError(path, "has no 'model' entry (AnatCL checkpoints keep their weights there)")
        return self, state
