"""InputSpec: what an encoder expects of a scan (spacing, orientation, size, intensity, channels),
set in each family's pretrained config as timm's are. encoders.preprocess turns a scan into that
input with MONAI; encoders.base builds encoders around it."""

from __future__ import annotations

import dataclasses
from typing import Any

from fm.core.errors import look_up

#: InputSpec.intensity choices; encoders.preprocess holds the MONAI transform of each (MONAI is
#: not imported here), and a test checks the two name the same modes.
INTENSITY_MODES = ("minmax", "percentile", "zscore_nonzero", "ct_window", "none")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What an encoder expects: set in each family's pretrained config, like timm's."""

    spacing_mm: tuple[float, float, float] | None  # resample to this (None: keep the scan's)
    orientation: str  # axis codes of the array fed to the network, e.g. "RAS"
    size: tuple[int, int, int]  # crop/pad size, or the sliding-window size when `windowed`
    windowed: bool  # True: any size divisible by `divisible_by` works (sliding window)
    intensity: (
        str  # one of INTENSITY_MODES: "percentile" is 0.5-99.5 % to [0, 1], "none" leaves intensities as they are
    )
    in_channels: int
    modalities: tuple[str, ...]  # e.g. ("T1",) or ("T1c", "T1", "T2", "FLAIR")
    divisible_by: int = 1
    notes: str = ""

    def __post_init__(self):
        # An InputError: a spec can come from a model folder's config.json, not only from code.
        look_up("intensity mode", self.intensity, INTENSITY_MODES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
