"""The voxel budget: headers claiming more voxels than this are refused before any voxel data is
read, so a tiny crafted file cannot make the process allocate gigabytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fm.core.errors import InputError, InputFileError

#: 2**29 voxels is 2 GiB as float32, above a 512 x 512 x 2000 CT.
DEFAULT_MAX_VOXELS = 2**29


def voxel_budget(max_voxels: int | None = None) -> int:
    """The budget in force: the argument, else FM_MAX_VOXELS, else DEFAULT_MAX_VOXELS."""
    if max_voxels is not None:
        return int(max_voxels)
    raw = os.environ.get("FM_MAX_VOXELS")
    if raw is None:
        return DEFAULT_MAX_VOXELS
    try:
        return int(float(raw))
    except ValueError:
        raise InputError(f"FM_MAX_VOXELS must be a number of voxels, not {raw!r}") from None


def check_voxel_budget(path: str | Path, shape: tuple[int, ...], budget: int) -> None:
    n = int(np.prod(np.asarray(shape, dtype=np.float64)))
    if n > budget:
        dims = " x ".join(str(s) for s in shape)
        raise InputFileError(
            path,
            f"header claims {dims} = {n:,} voxels, over the budget of {budget:,} "
            "(raise it with max_voxels= / --max-voxels / FM_MAX_VOXELS if the scan is real)",
        )
