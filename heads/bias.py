"""Intensity non-uniformity (bias field) of a scan, estimated by N4 (SimpleITK) on a coarse grid
inside the foreground and applied on the scan's own grid. A smooth multiplicative field makes
the same tissue brighter at one end of the head than at the other (surface coils, thick-slice PD);
the mixture model (heads.mixture) assumes one intensity distribution per tissue, so the field
comes out first."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from fm.core.io import resample_array, sitk_array, sitk_image
from heads import tissue_priors

_STIFF_ITERATIONS = (50, 50, 50)  # three fitting levels: B-spline meshes 1, 2 and 4 spans wide
_FINE_ITERATIONS = (10, 10, 10, 20)  # four levels, up to 8 spans: fitted on top of the stiff field, it starts close
_TYPICAL_SD = 2.0  # the finer field is fitted to voxels within this many robust SD of the median only
_FIELD_MM = (
    4.0  # the field is smooth (a B-spline of a few control points): 4 mm voxels hold it, in a tenth of the time of 2 mm
)


def correct_bias(channel: np.ndarray, affine: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """`channel` divided by its N4 bias field (estimated at 4 mm inside `foreground`). Intensities
    are shifted to start at 1 for the fit (N4 works on logarithms; z-scored scans are negative).

    Two passes: a stiff field first, fitted to the whole foreground; then a finer one on top,
    fitted only where the stiffly corrected intensity is typical, so that it follows a strong coil
    profile without taking a large lesion's brightness (or a fluid pocket's darkness) for
    non-uniformity and removing it."""
    work_shape, work_affine = tissue_priors.work_grid(channel.shape, affine, _FIELD_MM)
    work = resample_array(channel, affine, work_shape, work_affine)
    mask = resample_array(foreground.astype(np.float32), affine, work_shape, work_affine) > 0.5
    if mask.sum() < 1000:
        return channel
    offset = 1.0 - float(work[mask].min())
    shifted = np.where(mask, work + offset, 1.0)
    stiff = _log_field(shifted, mask, work_affine, _STIFF_ITERATIONS)
    corrected = np.log(shifted) - stiff
    typical = _typical(corrected[mask])
    residual = _log_field(
        np.where(mask, np.exp(corrected), 1.0), mask & typical(corrected), work_affine, _FINE_ITERATIONS
    )
    field = np.exp(resample_array(stiff + residual, work_affine, channel.shape, affine, order=1))
    # outside the working grid's reach the resampling gives 0, i.e. a field of 1
    return ((channel + offset) / field - offset).astype(np.float32)


def _log_field(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, iterations) -> np.ndarray:
    """N4's log bias field of `image` (positive) fitted inside `mask`."""
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(iterations))
    itk_image = sitk_image(image, affine)
    corrector.Execute(itk_image, sitk.Cast(sitk_image(mask.astype(np.float32), affine), sitk.sitkUInt8))
    return sitk_array(corrector.GetLogBiasFieldAsImage(itk_image))


def _typical(values: np.ndarray):
    """A test for log intensities within _TYPICAL_SD robust SD (median absolute deviation) of the median."""
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    return lambda x: np.abs(x - median) <= _TYPICAL_SD * max(spread, 1e-6)
