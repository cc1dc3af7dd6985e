"""Geometry of a synthetic sample: the output grid (random spacing and orientation), the subject's
pose and shape relative to MNI (random affine + smooth non-linear warp + mass effect), and
sampling the template's labels through it with torch."""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

_DIRECTION = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
ORIENTATIONS = [
    "".join(letters) for axes in itertools.permutations(("RL", "AP", "SI")) for letters in itertools.product(*axes)
]  # all 48 axis-aligned orientation codes


def grid_affine(shape, spacing, code: str, centre_ras) -> np.ndarray:
    """Voxel -> RAS affine of a grid whose axes point along `code`, centred on `centre_ras`."""
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([_DIRECTION[c] for c in code]) * np.asarray(spacing, float)
    affine[:3, 3] = np.asarray(centre_ras, float) - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def subdivided(affine: np.ndarray, factors) -> np.ndarray:
    """Affine of a grid with each voxel split `factors` times, aligned so that averaging each
    block of fine voxels gives the coarse voxel."""
    factors = np.asarray(factors, float)
    fine = affine.copy()
    fine[:3, :3] = affine[:3, :3] / factors
    fine[:3, 3] = affine[:3, 3] - fine[:3, :3] @ ((factors - 1) / 2)
    return fine


def random_pose(
    rng: np.random.Generator, max_rotation_deg: float, scale_range, max_shear: float, max_shift_mm: float
) -> np.ndarray:
    """Subject RAS -> MNI affine: how this synthetic head differs from the template."""
    angles = np.radians(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    shear = np.eye(3) + np.triu(rng.uniform(-max_shear, max_shear, (3, 3)), 1)
    linear = rz @ ry @ rx @ shear @ np.diag(rng.uniform(*scale_range, 3))
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = rng.uniform(-max_shift_mm, max_shift_mm, 3)
    return out


def smooth_field(rng: np.random.Generator, shape, channels: int, coarse: int, amplitude: float) -> torch.Tensor:
    """A smooth random field (channels, *shape): Gaussian values on a coarse lattice, upsampled."""
    values = torch.from_numpy(rng.standard_normal((1, channels, coarse, coarse, coarse)).astype(np.float32))
    return F.interpolate(values * amplitude, size=tuple(shape), mode="trilinear", align_corners=True)[0]


def mni_coordinates(
    grid: np.ndarray,
    shape,
    subject_to_mni: np.ndarray,
    warp: torch.Tensor | None,
    mass_effects: list[tuple[np.ndarray, float, float]] = (),
) -> torch.Tensor:
    """MNI mm (X, Y, Z, 3) that each voxel centre of `grid` shows.

    warp: (3, X, Y, Z) displacement in mm added in MNI space.
    mass_effects: (centre_mni, radius_mm, strength) per lesion; tissue near the centre is drawn
        from closer to it, which pushes the surroundings outwards.
    """
    full = torch.from_numpy((subject_to_mni @ grid).astype(np.float32))
    # origin + i*column0 + j*column1 + k*column2, by broadcasting (no N x 3 index array)
    i, j, k = (torch.arange(n, dtype=torch.float32) for n in shape)
    mni = (
        full[:3, 3]
        + i[:, None, None, None] * full[:3, 0]
        + j[None, :, None, None] * full[:3, 1]
        + k[None, None, :, None] * full[:3, 2]
    )
    if warp is not None:
        mni = mni + warp.permute(1, 2, 3, 0)
    for centre, radius, strength in mass_effects:
        c = torch.from_numpy(np.asarray(centre, np.float32))
        offset = mni - c
        r2 = (offset**2).sum(-1, keepdim=True)
        mni = c + offset * (1 - strength * torch.exp(-r2 / (2 * (1.5 * radius) ** 2)))
    return mni


def sample_labels(template_labels: torch.Tensor, template_affine: np.ndarray, mni: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour labels of the template (a float tensor, so it is converted once per
    sample) at MNI points (X, Y, Z, 3); outside is 0."""
    inverse = torch.from_numpy(np.linalg.inv(template_affine).astype(np.float32))
    ijk = mni @ inverse[:3, :3].T + inverse[:3, 3]
    sizes = torch.tensor(template_labels.shape[-3:], dtype=torch.float32)
    normalised = 2 * ijk / (sizes - 1) - 1  # align_corners=True convention
    grid = normalised.flip(-1)[None]  # grid_sample wants (k, j, i) for a (D=i, H=j, W=k) volume
    sampled = F.grid_sample(template_labels[None, None], grid, mode="nearest", padding_mode="zeros", align_corners=True)
    return sampled[0, 0].to(torch.uint8)
