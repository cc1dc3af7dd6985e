"""From an `fm.core.io.Volume` to the tensor an encoder expects, remembering the grid it ends on.

Swin-BOB and AnatCL use MONAI transforms (orientation, spacing, intensity, pad/crop). Brain-ID
reproduces the authors' demo preprocessing exactly, which MONAI's resampler does not (it samples
a different grid): min-max to [0, 1] over the volume; resize to ~1 mm keeping the field of view
(new size = round(size x spacing), Gaussian smoothing with sigma = ln(5)/pi x factor along axes
that shrink, zero-padded; linear interpolation on the grid of voxel centres that keeps the field
of view); reorder to RAS; centre crop to 220^3 where larger.

Every result carries `affine` (voxel -> RAS mm of the tensor's grid), so outputs on that grid
can be put back on the scan's grid (`to_volume_grid`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    DivisiblePad,
    NormalizeIntensity,
    Orientation,
    ResizeWithPadOrCrop,
    ScaleIntensity,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacing,
    Transform,
)

from encoders.spec import InputSpec
from fm.core.errors import InputError, look_up
from fm.core.io import Volume, volume_from_array

#: InputSpec.intensity mode (encoders.spec.INTENSITY_MODES) -> its MONAI transform (None: left as they are).
INTENSITY_TRANSFORMS: dict[str, Transform | None] = {
    "ct_window": ScaleIntensityRange(a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True),
    "zscore_nonzero": NormalizeIntensity(nonzero=True),
    # robust to a few very bright voxels
    "percentile": ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True),
    "minmax": ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True),
    "none": None,
}


@dataclasses.dataclass
class Preprocessed:
    tensor: torch.Tensor  # (1, C, D, H, W) float32
    affine: np.ndarray  # voxel -> RAS mm of the tensor grid

    def to_volume_grid(self, values: torch.Tensor, volume: Volume, mode: str = "bilinear") -> torch.Tensor:
        """Values on the tensor grid (C, D, H, W) resampled onto `volume`'s grid (C, *volume.shape)."""
        return _resample(values, np.linalg.inv(self.affine) @ volume.affine, volume.shape, mode)

    def sample(self, values: torch.Tensor, affine: np.ndarray, mode: str = "nearest") -> torch.Tensor:
        """Values (C, *grid) on another grid, placed by its `affine`, resampled onto the tensor grid
        (C, D, H, W); zero outside their grid (to_volume_grid's inverse)."""
        return _resample(values, np.linalg.inv(affine) @ self.affine, self.tensor.shape[2:], mode)


def _resample(values: torch.Tensor, target_to_values: np.ndarray, shape, mode: str) -> torch.Tensor:
    """values (C, *grid) sampled at every voxel of a `shape` grid, whose voxel -> values-voxel map is
    `target_to_values`."""
    m = torch.from_numpy(target_to_values.astype(np.float32))
    i, j, k = (torch.arange(n, dtype=torch.float32) for n in shape)  # float32: exact enough, half the memory
    coords = (
        m[:3, 3]
        + i[:, None, None, None] * m[:3, 0]
        + j[None, :, None, None] * m[:3, 1]
        + k[None, None, :, None] * m[:3, 2]
    )
    sizes = torch.tensor(values.shape[1:], dtype=torch.float32).clamp(min=2)  # a 1-voxel axis: no division by 0
    grid = (2 * coords / (sizes - 1) - 1).flip(-1)[None]
    return F.grid_sample(values[None].float(), grid, mode=mode, padding_mode="zeros", align_corners=True)[0]


def monai_preprocess(volume: Volume | Sequence[Volume], spec: InputSpec) -> Preprocessed:
    """Orientation, spacing, intensity and pad/crop as the spec says, with MONAI transforms.

    `volume` is one scan, or one scan per input channel (same grid, in the spec's modality order).
    """
    volumes = [volume] if isinstance(volume, Volume) else list(volume)
    if len(volumes) != spec.in_channels:
        raise InputError(
            f"this encoder takes {spec.in_channels} co-registered scans ({', '.join(spec.modalities)}), got {len(volumes)}"
        )
    first = volumes[0]
    for other in volumes[1:]:
        if other.shape != first.shape or not np.allclose(other.affine, first.affine, atol=1e-3):
            raise InputError(f"{other.source.path} is not on the grid of {first.source.path}; register the scans first")
    for v in volumes:
        if float(v.array.max()) == float(v.array.min()):
            raise InputError(f"{v.source.path} is constant ({float(v.array.min())}); there is nothing to encode")
    # A copy: MONAI's intensity transforms work in place and must not touch the caller's volume.
    stacked = torch.tensor(np.stack([v.array for v in volumes]), dtype=torch.float32)
    image = MetaTensor(stacked, affine=torch.from_numpy(first.affine))
    steps = [Orientation(axcodes=spec.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))]  # RAS+ labels, stated
    if spec.spacing_mm is not None:
        steps.append(Spacing(pixdim=spec.spacing_mm, mode="bilinear"))
    intensity = look_up("intensity mode", spec.intensity, INTENSITY_TRANSFORMS)
    if intensity is not None:
        steps.append(intensity)
    if spec.windowed:
        steps.append(DivisiblePad(k=spec.divisible_by))
    else:
        steps.append(ResizeWithPadOrCrop(spatial_size=spec.size))
    out = Compose(steps)(image)
    return Preprocessed(out.as_tensor().float()[None].contiguous(), out.affine.numpy().astype(float))


def brain_id_preprocess(volume: Volume, crop: int = 220) -> Preprocessed:
    """The Brain-ID demo preprocessing (see module docstring), on the file's own layout first."""
    array = torch.from_numpy(np.ascontiguousarray(volume.to_source_layout(), dtype=np.float32))
    affine = volume.source.affine.copy()
    array = torch.nan_to_num(array)
    array = array - array.min()
    if float(array.max()) == 0:
        raise InputError(f"{volume.source.path} is constant; there is nothing to encode")
    array = array / array.max()
    array, affine = _resize_to_1mm(array, affine)
    ras = volume_from_array(array.numpy(), affine, name=volume.source.path)  # fm.core.io's own reorientation to RAS
    array, affine = torch.from_numpy(ras.array), ras.affine
    starts = [max(n - crop, 0) // 2 for n in array.shape]
    array = array[tuple(slice(s, s + crop) for s in starts)]
    affine = affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.array(starts, float) + affine[:3, 3]
    return Preprocessed(array[None, None].contiguous(), affine)


def _resize_to_1mm(array: torch.Tensor, affine: np.ndarray, resolution: float = 1.0):
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    new_size = np.round(np.array(array.shape) * spacing / resolution).astype(int)
    shrink = np.array(array.shape) / new_size
    k = math.log(5) / math.pi  # Gaussian power at half the new sampling width falls to 1/5
    sigmas = np.where(shrink > 1, k * shrink, 0.0)  # smooth only along axes that shrink
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            array = _smooth_along(array, axis, sigma)
    scale = new_size / np.array(array.shape)
    for axis in range(3):
        array = _linear_resample_along(array, axis, int(new_size[axis]), float(scale[axis]))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] / scale
    new_affine[:3, 3] = affine[:3, 3] - affine[:3, :3] @ (0.5 - 0.5 / scale)
    return array, new_affine


def _smooth_along(array: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    half = int(np.ceil(2.5 * sigma))
    taps = np.exp(-((np.arange(-half, half + 1) / sigma) ** 2) / 2)
    kernel = torch.tensor(taps / taps.sum(), dtype=torch.float32)
    moved = array.movedim(axis, -1)
    flat = moved.reshape(-1, 1, moved.shape[-1])
    smoothed = F.conv1d(flat, kernel[None, None], padding=half)  # zero padding, as published
    return smoothed.reshape(moved.shape).movedim(-1, axis)


def _linear_resample_along(array: torch.Tensor, axis: int, size: int, scale: float) -> torch.Tensor:
    """Linear interpolation at the centres of `size` new voxels spanning the same extent."""
    n = array.shape[axis]
    start = (1.0 - scale) / (2.0 * scale)
    positions = torch.arange(start, start + size / scale, 1 / scale, dtype=torch.float32)[:size]
    positions = positions.clamp(0, n - 1)
    lower = positions.floor().long()
    upper = (lower + 1).clamp(max=n - 1)
    weight = (positions - lower.float()).reshape([-1 if a == axis else 1 for a in range(3)])
    return array.index_select(axis, lower) * (1 - weight) + array.index_select(axis, upper) * weight
