"""The Encoder interface every family implements and the Features it returns (the InputSpec that
says what input it expects is encoders.spec).

An Encoder is an nn.Module that also saves to / loads from the project's own format (config.json
with the constructor arguments and the InputSpec, model.safetensors, a model card) through
huggingface_hub's PyTorchModelHubMixin, so a local folder and a Hub repo load the same way.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from torch import nn

from encoders.spec import InputSpec

if TYPE_CHECKING:
    from encoders.preprocess import Preprocessed


@dataclasses.dataclass
class Features:
    """maps: multi-scale feature maps, finest first, each (B, C_i, D_i, H_i, W_i);
    tokens: (B, N, C) for adapters; embedding: (B, C) for probes."""

    maps: list[torch.Tensor]
    tokens: torch.Tensor
    embedding: torch.Tensor


def tokens_of(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, D*H*W, C)."""
    return feature_map.flatten(2).transpose(1, 2)


class Encoder(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="fm3d",
    tags=["medical-imaging", "3d", "feature-extraction"],
    license="other",
):
    """Base class: subclasses set `family`, build their network in __init__ (JSON-able
    arguments only: they become config.json), and implement `forward_features`, `spec`,
    `num_features` and `original_state_dict`."""

    family: str = ""
    # Whether an embedding may be pooled over tiles of the input (fully convolutional or
    # windowed networks); a fixed-size whole-brain input (AnatCL) may not.
    tileable: bool = False

    @property
    def spec(self) -> InputSpec:
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        raise NotImplementedError

    @property
    def feature_info(self) -> list[dict[str, int]]:
        """One entry per map of `forward_features`, finest first, as timm's: {"num_chs": channels,
        "reduction": the map's stride against the input}. Heads are built from it."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> Features:
        return self.forward_features(x)

    def preprocess(self, volume) -> "Preprocessed":
        """An fm.core.io.Volume (or one per input channel, on one grid) as the (1, C, D, H, W) tensor
        this encoder expects, with its grid."""
        from encoders.preprocess import monai_preprocess

        return monai_preprocess(volume, self.spec)

    def original_state_dict(self, checkpoint: dict, path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        """From a published checkpoint container: (the submodule it belongs to, its state dict)."""
        raise NotImplementedError

    def save_pretrained(self, save_directory, **kwargs):
        """The mixin's config.json + model.safetensors, plus the family, InputSpec and a model card."""
        result = super().save_pretrained(save_directory, **kwargs)
        folder = Path(save_directory)
        config = json.loads((folder / "config.json").read_text())
        config.update(family=self.family, num_features=self.num_features, input_spec=self.spec.to_dict())
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        self.model_card().save(folder / "README.md")
        return result

    def model_card(self) -> ModelCard:
        data = ModelCardData(
            library_name="fm3d", license="other", tags=["medical-imaging", "3d", "feature-extraction", self.family]
        )
        spec_rows = "\n".join(f"| {k} | {v} |" for k, v in self.spec.to_dict().items())
        doc = inspect.getdoc(sys.modules[type(self).__module__]) or ""
        text = (
            f"---\n{data.to_yaml()}\n---\n\n# {self.family} encoder ({self.num_features} features)\n\n{doc}\n\n"
            f"## Input\n\n| field | value |\n| --- | --- |\n{spec_rows}\n\n"
            "## Use\n\n```python\nfrom encoders.registry import create_encoder\n"
            f'model = create_encoder("{self.family}", pretrained="hf-hub:ORG/NAME")\n```\n'
        )
        return ModelCard(text)
