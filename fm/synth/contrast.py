"""Image intensities from labels: a Gaussian per label (presets or fully random), then the
acquisition: blur, thick-slice averaging, bias field and Rician-like noise.

Preset means are relative intensities per generation label, in the order
background, CSF, ventricles, L GM, R GM, L WM, R WM, oedema, necrotic core, enhancing, skull, scalp.
T1 is post-contrast (enhancing tissue bright); FLAIR suppresses free water.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from fm.core.mni_template import CORE, ENHANCING, GENERATION_LABELS, OEDEMA
from fm.synth.spatial import smooth_field

LESION_LABELS = (OEDEMA, CORE, ENHANCING)

PRESETS = {
    "T1": (0.0, 0.22, 0.20, 0.52, 0.52, 0.80, 0.80, 0.45, 0.18, 0.95, 0.12, 0.70),
    "T2": (0.0, 1.00, 1.00, 0.58, 0.58, 0.38, 0.38, 0.85, 0.95, 0.60, 0.08, 0.50),
    "FLAIR": (0.0, 0.10, 0.08, 0.60, 0.60, 0.45, 0.45, 0.95, 0.30, 0.72, 0.08, 0.50),
    "PD": (0.0, 0.82, 0.82, 0.80, 0.80, 0.64, 0.64, 0.88, 0.92, 0.72, 0.12, 0.62),
}
RANDOM = "random"


def label_intensities(rng: np.random.Generator, contrast: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per generation label for one sample."""
    if contrast == RANDOM:
        means = rng.uniform(0.0, 1.0, GENERATION_LABELS)
        means[0] = rng.uniform(0.0, 0.1)
        means[4], means[6] = means[3], means[5]  # hemispheres share a tissue's contrast
    else:
        means = np.asarray(PRESETS[contrast], float) + rng.normal(0, 0.03, GENERATION_LABELS)
        means[4], means[6] = means[3], means[5]
    stds = rng.uniform(0.01, 0.05, GENERATION_LABELS)
    stds[0] = 0.0
    stds[4], stds[6] = stds[3], stds[5]  # no side may be told from its noise either
    return np.clip(means, 0, None), stds


def render(
    rng: np.random.Generator,
    fine_labels: torch.Tensor,
    factors: tuple[int, int, int],
    means: np.ndarray,
    stds: np.ndarray,
    bias_amplitude: float,
    noise_level: float,
) -> np.ndarray:
    """Image on the output grid (fine grid averaged by `factors`), normalised to about [0, 1]."""
    labels = fine_labels.long()
    image = torch.from_numpy(means.astype(np.float32))[labels]
    # Smooth texture within each tissue: faint in normal tissue, marked in lesions.
    texture_amplitude = torch.full((GENERATION_LABELS,), 0.03)
    texture_amplitude[list(LESION_LABELS)] = 0.15
    texture = smooth_field(rng, tuple(labels.shape), 1, 24, 1.0)[0]
    image = image * (1 + texture_amplitude[labels] * texture)
    image += torch.from_numpy(stds.astype(np.float32))[labels] * torch.from_numpy(
        rng.standard_normal(tuple(labels.shape), dtype=np.float32)
    )
    # Point-spread: half a voxel everywhere, a slice profile (FWHM = thickness) along thick axes.
    sigma = [max(0.5, 0.42 * f) for f in factors]
    image = torch.from_numpy(ndimage.gaussian_filter(image.numpy(), sigma=sigma, mode="nearest"))
    if any(f > 1 for f in factors):
        image = F.avg_pool3d(image[None, None], kernel_size=factors, stride=factors)[0, 0]
    bias = torch.exp(smooth_field(rng, image.shape, 1, 4, bias_amplitude)[0])
    image = image * bias
    noise = noise_level * float(means.max())
    real = image + noise * torch.from_numpy(rng.standard_normal(tuple(image.shape), dtype=np.float32))
    imaginary = noise * torch.from_numpy(rng.standard_normal(tuple(image.shape), dtype=np.float32))
    image = torch.sqrt(real**2 + imaginary**2)  # magnitude of complex noise: a Rician floor
    scale = torch.quantile(image.flatten()[:: max(1, image.numel() // 2_000_000)], 0.995).clamp_min(1e-6)
    return (image / scale).numpy().astype(np.float32)
