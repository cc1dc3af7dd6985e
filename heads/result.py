"""What every segmenter returns, and what it says about itself, in a module that imports neither
torch nor MONAI, so the default (atlas and mixture) pipeline starts without them."""

from __future__ import annotations

import dataclasses

import numpy as np

from fm.core.labels import LabelSet


@dataclasses.dataclass
class Segmentation:
    labels: np.ndarray  # uint8/int16 on the volume's (RAS-closest) grid
    probabilities: np.ndarray  # (max label id + 1, *volume.shape) float32, channel = label id
    label_set: LabelSet


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Which model segmented a scan, as reports carry it in their provenance."""

    model_id: str  # what the weights are: the default's id, a file or folder path, or hf-hub:org/name
    version: str  # e.g. trained steps for the default, "published checkpoint" for a file
    sha256: str  # first 16 hex digits of the weights file's checksum
    encoder: str
    label_set: str
    # From the folder's evaluation.json (eval/eval_segmenter.py --record), when it was made for these weights:
    lesion_sensitivity: float | None = None  # share of lesions >= 1 mL found
    evaluation: str | None = None  # what that figure was measured on
