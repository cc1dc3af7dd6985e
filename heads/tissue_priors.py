"""Tissue priors for one scan: nilearn's MNI152 2009c maps registered to the scan by SimpleITK.

The priors are probabilities per voxel of the scan's own grid for the classes the mixture model
(heads.mixture) fits: outside the brain, cerebrospinal fluid outside the ventricles, lateral
ventricles, grey matter, white matter. They come from the MNI152 T1 template (brain-extracted: the
intracranial mask is T1 > 0), its grey- and white-matter maps, and the template's deep-CSF
ventricles (fm.core.mni_template); they are blurred after registration, because an affine map leaves
a few millimetres of anatomy unexplained and a prior of zero could never be overruled by the
scan's intensities.

Registration is affine (12 parameters), Mattes mutual information, multi-resolution, the template
moving onto the scan. It starts from the brain's rough position: the centre of the foreground's
upper part for whole heads, the centre of the foreground for brain-extracted scans. The scan
is used in its RAS-closest layout; SimpleITK works in LPS millimetres, and both images are
described to it from their RAS affines, so the transform is between physical points.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from fm.core.cache import cache_folder
from fm.core.examples import nilearn_template
from fm.core.io import resample_array, sitk_image

#: Classes of the prior maps, in this order.
PRIOR_CLASSES = ("outside", "csf", "ventricles", "grey", "white")
_WORK_MM = 2.0  # the grid the priors are built on: fine enough for a prior, cheap to register
_BLUR_MM = 2.0  # after registration, see the module docstring
_FLOOR = 1e-3  # every class stays possible everywhere


@dataclasses.dataclass(frozen=True)
class MNIPriors:
    maps: np.ndarray  # (5, X, Y, Z) float32 probabilities on the MNI work grid, summing to 1
    t1: np.ndarray  # the template T1 on the same grid, for registration
    affine: np.ndarray  # voxel -> MNI RAS mm


_CACHE_VERSION = 1  # raise when the maps' recipe changes


@functools.lru_cache(maxsize=1)
def mni_priors() -> MNIPriors:
    """The prior maps on a 2 mm MNI grid: built once (about 4 s) and kept in the user's cache
    folder (fm.core.cache), keyed by nilearn's version."""
    from importlib.metadata import version

    path = cache_folder() / f"mni_priors_v{_CACHE_VERSION}_nilearn{version('nilearn')}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return MNIPriors(stored["maps"].astype(np.float32), stored["t1"], stored["affine"])
    priors = _build_mni_priors()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.npz")
        np.savez_compressed(partial, maps=priors.maps.astype(np.float16), t1=priors.t1, affine=priors.affine)
        partial.replace(path)  # atomic: a concurrent reader sees the old state or the whole file
    except OSError:  # a read-only home: build again next time
        pass
    return MNIPriors(priors.maps.astype(np.float16).astype(np.float32), priors.t1, priors.affine)


def _build_mni_priors() -> MNIPriors:
    from fm.core.mni_template import VENTRICLES, load_template  # the one place the ventricles are derived

    t1_img = nib.load(str(nilearn_template("t1")))
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32)
    gm = np.asarray(nib.load(str(nilearn_template("gm"))).dataobj, dtype=np.float32) / 255
    wm = np.asarray(nib.load(str(nilearn_template("wm"))).dataobj, dtype=np.float32) / 255
    inside = ndimage.binary_fill_holes(t1 > 0).astype(np.float32)
    csf = np.clip(inside - gm - wm, 0, 1)
    ventricles = ndimage.gaussian_filter((load_template().labels == VENTRICLES).astype(np.float32), 1.0)
    ventricle_share = np.clip(ventricles, 0, 1)
    maps = np.stack([1 - inside, csf * (1 - ventricle_share), csf * ventricle_share, gm * inside, wm * inside])
    maps /= maps.sum(0, keepdims=True)

    factor = int(round(_WORK_MM / abs(t1_img.affine[0, 0])))
    maps = _block_mean(maps, factor)
    t1 = _block_mean(t1[None], factor)[0]
    affine = t1_img.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] += t1_img.affine[:3, :3] @ np.full(3, (factor - 1) / 2)
    return MNIPriors(maps.astype(np.float32), t1.astype(np.float32), affine)


def _block_mean(maps: np.ndarray, factor: int) -> np.ndarray:
    c, *shape = maps.shape
    cut = [n - n % factor for n in shape]
    maps = maps[:, : cut[0], : cut[1], : cut[2]]
    return maps.reshape(c, cut[0] // factor, factor, cut[1] // factor, factor, cut[2] // factor, factor).mean((2, 4, 6))


def work_grid(shape, affine: np.ndarray, spacing_mm: float = _WORK_MM) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid of `spacing_mm` voxels covering the same field of view as (shape, affine)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    factors = np.maximum(spacing_mm / spacing, 1.0)
    new_shape = tuple(int(max(1, np.ceil(n / f))) for n, f in zip(shape, factors))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * factors
    new_affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ ((factors - 1) / 2)
    return new_shape, new_affine


def register_template(image: np.ndarray, affine: np.ndarray, foreground: np.ndarray, brain_only: bool) -> np.ndarray:
    """4x4 map from the scan's RAS mm to MNI RAS mm, by affine registration of the MNI T1 template.

    image, foreground: the scan and its foreground (head or brain) on a grid with `affine`;
    brain_only: the scan is brain-extracted (its foreground is the brain), else a whole head.
    """
    priors = mni_priors()
    fixed = sitk_image(image, affine)
    moving = sitk_image(priors.t1, priors.affine)
    fixed_mask = sitk_image(foreground.astype(np.float32), affine)
    fixed_mask = sitk.Cast(fixed_mask > 0.5, sitk.sitkUInt8)

    scan_centre = _lps(_brain_centre_guess(foreground, affine, brain_only))

    method = sitk.ImageRegistrationMethod()
    # One thread: sums split over threads can differ in their last bits from run to run, and the
    # optimiser carries that into a different fit. A process object takes its thread count when it
    # is made, so the global default must not be relied on.
    method.SetNumberOfThreads(1)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, seed=1)  # not 0: 0 is sitkWallClock, a new sample every run
    method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=200, relaxationFactor=0.6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    # The similarity stage stops at half resolution: the affine stage refines at full resolution
    # anyway, and a full-resolution similarity level moved the result by under 0.7 mm (of 2 mm voxels)
    # for 40 % of the registration's time.
    method.SetShrinkFactorsPerLevel([4, 2])
    method.SetSmoothingSigmasPerLevel([4.0, 2.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()

    rigid = sitk.Similarity3DTransform()  # maps scan (fixed) points to template (moving) points
    rigid.SetCenter(tuple(scan_centre))
    rigid.SetTranslation(tuple(_lps(_mni_brain_centre()) - scan_centre))
    method.SetInitialTransform(rigid, inPlace=True)
    method.Execute(fixed, moving)

    full = sitk.AffineTransform(3)
    full.SetCenter(rigid.GetCenter())
    full.SetMatrix(rigid.GetMatrix())
    full.SetTranslation(rigid.GetTranslation())
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0])
    method.SetInitialTransform(full, inPlace=True)
    method.Execute(fixed, moving)
    return _ras_matrix(full)


def _lps(ras) -> np.ndarray:
    return np.asarray(ras, float) * np.array([-1.0, -1.0, 1.0])


def _ras_matrix(transform: sitk.AffineTransform) -> np.ndarray:
    """The SimpleITK transform (fixed LPS point -> moving LPS point) as a RAS 4x4 matrix."""
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    centre = np.array(transform.GetCenter())
    translation = np.array(transform.GetTranslation())
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = translation + centre - matrix @ centre
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip


@functools.lru_cache(maxsize=1)
def _mni_brain_centre() -> np.ndarray:
    priors = mni_priors()
    ijk = np.argwhere(priors.maps[0] < 0.5)
    return ijk.mean(0) @ priors.affine[:3, :3].T + priors.affine[:3, 3]


def _brain_centre_guess(foreground: np.ndarray, affine: np.ndarray, brain_only: bool) -> np.ndarray:
    """RAS mm of the brain's centre: the foreground's centre for a brain-extracted scan; for a head,
    the centre of the foreground's top 110 mm (the brain sits under the vertex; the neck and face
    below it vary with the field of view), 30 mm below the head's top."""
    ijk = np.argwhere(foreground)
    points = ijk @ affine[:3, :3].T + affine[:3, 3]
    if brain_only:
        return points.mean(0)
    top = np.percentile(points[:, 2], 99.5)
    upper = points[points[:, 2] > top - 110]
    centre = upper.mean(0)
    centre[2] = top - 55
    return centre


def priors_on_grid(scan_to_mni: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
    """The prior maps on the scan grid (shape, affine), given the scan RAS -> MNI RAS map."""
    priors = mni_priors()
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    maps = np.empty((len(PRIOR_CLASSES), *shape), np.float32)
    for c in range(len(PRIOR_CLASSES)):
        sampled = resample_array(priors.maps[c], priors.affine, shape, scan_to_mni @ affine)
        if c == 0:
            sampled[_outside_template(priors, shape, scan_to_mni @ affine)] = 1.0
        maps[c] = ndimage.gaussian_filter(sampled, _BLUR_MM / spacing)
    maps += _FLOOR
    maps /= maps.sum(0, keepdims=True)
    return maps


def _outside_template(priors: MNIPriors, shape, affine: np.ndarray) -> np.ndarray:
    """Voxels that map beyond the template's field of view (the resampling fills them with 0)."""
    inside = resample_array(np.ones(priors.maps.shape[1:], np.float32), priors.affine, shape, affine, order=0)
    return inside < 0.5
