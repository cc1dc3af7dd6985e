"""Intensity non-uniformity (bias field) of a scan, estimated by N4 (SimpleITK) on a coarse grid
inside the foreground and applied on the scan's own grid. A smooth multiplicative field makes
the same tissue brighter at one end of the head than at the other (surface coils, thick-slice PD);
the mixture model (heads.mixture) assumes one intensity distribution per tissue, so the field
comes out first."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from fm.io import resample_array, sitk_array, sitk_image
from heads import atlas

_ITERATIONS = (50, 50, 50)  # three fitting levels (B-spline meshes 1, 2, 4 spans wide)
_FIELD_MM = 4.0  # the field is smooth (a B-spline of a few control points): 4 mm voxels hold it, in a tenth of the time of 2 mm


def correct_bias(channel: np.ndarray, affine: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """`channel` divided by its N4 bias field (estimated at 4 mm inside `foreground`). Intensities
    are shifted to start at 1 for the fit (N4 works on logarithms; z-scored scans are negative)."""
    work_shape, work_affine = atlas.work_grid(channel.shape, affine, _FIELD_MM)
    work = resample_array(channel, affine, work_shape, work_affine)
    mask = resample_array(foreground.astype(np.float32), affine, work_shape, work_affine) > 0.5
    if mask.sum() < 1000:
        return channel
    offset = 1.0 - float(work[mask].min())
    image = sitk_image(np.where(mask, work + offset, 1.0), work_affine)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(_ITERATIONS))
    corrector.Execute(image, sitk.Cast(sitk_image(mask.astype(np.float32), work_affine), sitk.sitkUInt8))
    log_field = sitk_array(corrector.GetLogBiasFieldAsImage(image))
    field = np.exp(resample_array(log_field, work_affine, channel.shape, affine, order=1))
    # outside the working grid's reach the resampling gives 0, i.e. a field of 1
    return ((channel + offset) / field - offset).astype(np.float32)
