"""Contrast-adaptive brain segmentation of one session: one or several co-registered contrasts on
one grid -> brain mask, tissue, ventricles and lesions (BRAIN_TISSUE labels) on that grid.

The path, in the manner of SAMSEG and SPM's unified segmentation (no training, nothing learned
about any contrast beforehand):

1. a 2 mm working copy of the channels; whether the scan is already brain-extracted (most of its
   voxels share one background value, as in BraTS or SynthStrip output) and its foreground;
2. the MNI152 template registered to it (heads.tissue_priors) gives priors for outside-the-brain, CSF,
   ventricles, grey and white matter;
3. a Gaussian mixture over the channels is fitted by EM to this scan's intensities under those
   priors (heads.mixture), with a flat outlier class for what no tissue explains where it lies;
4. the posteriors are computed on the scan's own grid; the brain mask is where the brain classes
   win (one connected piece, holes filled), and nothing outside it is tissue or lesion;
5. lesions are outlier components inside the brain that pass heads.lesions' rules, with the
   fluid they surround (a necrotic or cystic centre); with a
   contrast-enhanced T1 among the channels they are split into enhancing tumour, necrotic or
   non-enhancing core (what the enhancing rim encloses) and oedema.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from fm.core.io import Volume, resample_array
from fm.core.labels import BRAIN_TISSUE
from fm.core.masks import background_value, fill_holes, fill_holes_in_slices
from fm.core.midline import Midline
from heads import tissue_priors
from heads.bias import correct_bias
from heads.hemispheres import split_hemispheres
from heads.lesions import (
    BRIGHT_LESION_CONTRASTS,
    LesionRules,
    accept_lesions,
    add_cavities,
    drop_specks,
    lesion_directions,
    split_subregions,
)
from heads.mixture import Mixture, fit_mixture
from heads.result import Segmentation

# The mixture's classes: outside, fluid (CSF and ventricles share one intensity model, as in
# SAMSEG; the prior decides which of the two a fluid voxel is), grey, white. Several Gaussians for
# what is outside the brain (bone and air, muscle, fat), one for each tissue: a broader model
# would explain lesions away.
MIXTURE_CLASSES = ("outside", "fluid", "grey", "white")
_GAUSSIANS = (3, 1, 1, 1)
_ROBUST = (2, 3)  # parenchyma: see heads.mixture.fit_mixture (fluid is skewed by partial volume, and fitted as it is)
# A brain-extracted scan: a quarter or more of its voxels hold one fill value, and what is left is
# no bigger than a brain (adult intracranial volume is 1.2-1.9 L; a head within a brain MRI's
# field of view is 2.5 L or more, with air at one value too in many scans).
_BRAIN_EXTRACTED_SHARE = 0.25
_BRAIN_EXTRACTED_MAX_ML = 2200.0
_FIT_VOXELS = 200_000  # EM on at most this many voxels of the working grid
# BRAIN_TISSUE id of each prior class (outside is background)
_CLASS_LABELS = (0, 1, 2, 3, 4)
_OEDEMA, _CORE, _ENHANCING = 5, 6, 7


@dataclasses.dataclass
class BrainAnalysis:
    """What the segmentation found out about the scan, beyond the labels (for the gate and the report)."""

    brain_extracted_input: bool
    brain_mask: np.ndarray  # bool, scan grid
    brain_volume_ml: float
    scan_to_mni: np.ndarray  # 4x4, scan RAS mm -> MNI RAS mm
    class_means: dict[str, list[float]]  # fitted mean intensity per class, per channel, in the scan's units
    contrasts: tuple[str, ...]
    subregions_assessed: bool  # enhancing / core told apart (needs a contrast-enhanced T1)
    shell_to_brain: float | None  # median just outside the brain / brain's 95th percentile (None: nothing there)
    bright_outside_brain: (
        float  # share of the head in the top fifth of the intensity range and outside the atlas's brain
    )
    tissue_order_problem: (
        str | None
    )  # fitted tissue intensities in an order no such contrast has (the atlas did not fit)

    @property
    def atlas_scale(self) -> float:
        """How much the MNI brain was scaled to fit this one (cube root of the map's determinant, inverted)."""
        return float(abs(np.linalg.det(self.scan_to_mni[:3, :3])) ** (-1 / 3))


@dataclasses.dataclass
class BrainResult:
    segmentation: Segmentation  # BRAIN_TISSUE: no sides
    analysis: BrainAnalysis

    def with_sides(self, volume: Volume) -> Segmentation:
        """BRAIN_TUMOUR labels: grey and white matter sided by the registered template's midline."""
        return split_hemispheres(
            self.segmentation,
            volume,
            Midline.of_template(self.analysis.scan_to_mni).right_of(volume.affine, volume.shape),
        )


class ContrastAdaptiveSegmenter:
    """Segments brain MRI of any contrast by an atlas-prior Gaussian mixture fitted to the scan."""

    def __init__(self, rules: LesionRules | None = None, seed: int = 0):
        self.rules = rules or LesionRules()
        self.seed = seed

    def __call__(self, channels: np.ndarray, affine: np.ndarray, contrasts: tuple[str, ...]) -> BrainResult:
        """channels: (C, X, Y, Z) co-registered contrasts on one grid (voxel -> RAS `affine`)."""
        channels = np.asarray(channels, dtype=np.float32)
        if channels.ndim != 4 or len(contrasts) != channels.shape[0]:
            raise ValueError(
                f"expected (channels, x, y, z) with one contrast name each, got {channels.shape} and {contrasts}"
            )
        shape = channels.shape[1:]
        spacing = np.linalg.norm(affine[:3, :3], axis=0)

        background = background_value(channels[0])
        filled = channels[0] != background
        brain_extracted = (
            1 - float(np.mean(filled)) >= _BRAIN_EXTRACTED_SHARE
            and filled.sum() * np.prod(spacing) / 1000 <= _BRAIN_EXTRACTED_MAX_ML
        )
        foreground = _foreground(channels[0], background, brain_extracted)
        work_shape, work_affine = tissue_priors.work_grid(shape, affine)
        work_foreground = resample_array(foreground.astype(np.float32), affine, work_shape, work_affine) > 0.5
        scan_to_mni = tissue_priors.register_template(
            resample_array(channels[0], affine, work_shape, work_affine), work_affine, work_foreground, brain_extracted
        )
        work_priors = tissue_priors.priors_on_grid(scan_to_mni, work_shape, work_affine)
        # The bias field is fitted inside the atlas's brain: scalp and fat follow other fields.
        atlas_brain = resample_array((work_priors[0] < 0.5).astype(np.float32), work_affine, shape, affine) > 0.5
        channels = np.stack([correct_bias(c, affine, foreground & atlas_brain) for c in channels])
        work = np.stack([resample_array(c, affine, work_shape, work_affine) for c in channels])

        scale = _ChannelScale.fit(channels, foreground)
        region = work_foreground & (work_priors[0] < 0.999)
        data = scale(work[:, region].T)
        priors = self._with_outliers(_merge_fluid(work_priors[:, region].T), brain_extracted)
        rng = np.random.default_rng(self.seed)
        fit_rows = rng.choice(len(data), min(len(data), _FIT_VOXELS), replace=False)
        outlier_density = self.rules.outlier_density(len(channels))
        mixture, _ = fit_mixture(
            data[fit_rows],
            priors[fit_rows],
            _GAUSSIANS,
            outlier_density=outlier_density,
            robust_classes=_ROBUST,
            initial_priors=_confident(work_priors[:, region].T[fit_rows]),
            lesions_bright_in=tuple(c for c, name in enumerate(contrasts) if name in BRIGHT_LESION_CONTRASTS),
        )

        # Posteriors on the scan's own grid, inside the box where the brain can be.
        box = _box(work_priors[0] < 0.99, work_affine, affine, shape)
        box_shape = tuple(s.stop - s.start for s in box)
        box_affine = affine.copy()
        box_affine[:3, 3] = affine[:3, :3] @ np.array([s.start for s in box]) + affine[:3, 3]
        box_priors = np.stack(
            [resample_array(p, work_affine, box_shape, box_affine) for p in work_priors]
        )  # smooth maps: linear interpolation is enough
        box_priors /= np.maximum(box_priors.sum(0, keepdims=True), 1e-6)
        box_fluid_prior, box_parenchyma = box_priors[1] + box_priors[2], box_priors[3] + box_priors[4]
        box_foreground = foreground[box]
        box_data = scale(channels[(slice(None), *box)][:, box_foreground].T)
        box_priors = box_priors[:, box_foreground].T
        posteriors = mixture.posteriors(box_data, self._with_outliers(_merge_fluid(box_priors), brain_extracted))
        posteriors = _split_fluid(posteriors, box_priors)

        full = np.zeros((len(tissue_priors.PRIOR_CLASSES) + 1, *box_shape), np.float32)
        full[0] = 1.0
        full[:, box_foreground] = posteriors.T
        brain = _brain_mask(full, box_foreground, spacing)
        full[1:, ~brain] = 0.0
        full[0, ~brain] = 1.0

        box_channels = channels[(slice(None), *box)]
        # Lesion evidence is the mirror image in bright-lesion contrasts and for enhancement (normal
        # enhancement, the choroid plexus, sinuses and vessels, comes in pairs or on the midline),
        # depth in T1-like ones.
        mirrored = deep = None
        bright_lesions = any(lesion_directions(mixture, contrasts))
        if bright_lesions or "t1c" in contrasts:
            mirrored = np.stack([_mirrored(c, box_affine, scan_to_mni) for c in box_channels])
        if not bright_lesions:
            deep = ndimage.distance_transform_edt(brain, sampling=spacing) >= self.rules.t1_evidence_depth_mm
            deep &= box_fluid_prior < 0.3
        lesion = accept_lesions(
            full, brain, box_channels, mixture, scale, contrasts, spacing, self.rules, deep, mirrored, box_parenchyma
        )
        fluid = brain & (full[1] + full[2] > np.maximum(full[3], full[4]))
        lesion = drop_specks(add_cavities(lesion, fluid, brain, spacing, self.rules), spacing, self.rules)
        tissue = brain & ~lesion
        full[:, tissue] = _majority_tissue(full[:, tissue].T, scale(box_channels[:, tissue].T), mixture).T
        labels, probabilities = self._labels(
            full, brain, lesion, box_channels, mirrored, mixture, scale, contrasts, spacing
        )

        out_labels = np.zeros(shape, np.uint8)
        out_labels[box] = labels
        out_probabilities = np.zeros((len(BRAIN_TISSUE.names), *shape), np.float32)
        out_probabilities[0] = 1.0
        out_probabilities[(slice(None), *box)] = probabilities
        brain_mask = np.zeros(shape, bool)
        brain_mask[box] = brain
        means = scale.inverse(mixture.class_means())
        analysis = BrainAnalysis(
            brain_extracted_input=bool(brain_extracted),
            brain_mask=brain_mask,
            brain_volume_ml=float(brain.sum() * np.prod(spacing) / 1000),
            scan_to_mni=scan_to_mni,
            class_means={name: [round(float(v), 4) for v in means[k]] for k, name in enumerate(MIXTURE_CLASSES)},
            contrasts=tuple(contrasts),
            subregions_assessed="t1c" in contrasts,
            # on every second voxel: a ratio of medians needs no more
            shell_to_brain=_shell_to_brain(
                channels[0, ::2, ::2, ::2],
                brain_mask[::2, ::2, ::2],
                foreground[::2, ::2, ::2],
                background,
                2 * spacing,
            ),
            bright_outside_brain=_bright_outside_brain(work[0], work_foreground, work_priors[0], background),
            tissue_order_problem=_tissue_order_problem(mixture, contrasts),
        )
        return BrainResult(Segmentation(out_labels, out_probabilities, BRAIN_TISSUE), analysis)

    def _with_outliers(self, priors: np.ndarray, brain_extracted: bool) -> np.ndarray:
        """Append the outlier (lesion) prior: a share of the brain prior. In a brain-extracted scan,
        the foreground is brain: the outside class is ruled out."""
        priors = priors.copy()
        if brain_extracted:
            priors[:, 0] = 1e-6
        brain = 1 - priors[:, 0]
        outlier = self.rules.outlier_prior * brain
        priors[:, 1:] *= 1 - self.rules.outlier_prior
        priors = np.concatenate([priors, outlier[:, None]], axis=1)
        return priors / priors.sum(1, keepdims=True)

    def _labels(
        self, full, brain, lesion, channels, mirrored, mixture, scale, contrasts, spacing
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels and per-label probabilities (BRAIN_TISSUE ids) on the box."""
        subregions = split_subregions(lesion, brain, channels, mirrored, mixture, scale, contrasts, spacing, self.rules)
        # enhancement and what its rims hold may reach past the lesion
        lesion = subregions["oedema"] | subregions["core"] | subregions["enhancing"]
        probabilities = np.zeros((len(BRAIN_TISSUE.names), *full.shape[1:]), np.float32)
        tissue = full[: len(tissue_priors.PRIOR_CLASSES)]
        # Outlier voxels that were not accepted as lesion go to the likeliest tissue.
        tissue_share = tissue / np.maximum(tissue.sum(0, keepdims=True), 1e-12)
        not_lesion = ~lesion
        for k, label in enumerate(_CLASS_LABELS):
            probabilities[label] += np.where(not_lesion, tissue_share[k], tissue[k])
        lesion_probability = np.where(lesion, full[-1], 0.0)
        labels = np.argmax(probabilities[: len(_CLASS_LABELS)], axis=0).astype(np.uint8)
        labels[~brain] = 0
        for label, mask in (
            (_OEDEMA, subregions["oedema"]),
            (_CORE, subregions["core"]),
            (_ENHANCING, subregions["enhancing"]),
        ):
            labels[mask] = label
            probabilities[label] = np.where(mask, lesion_probability, 0.0)
        return labels, probabilities


def _confident(priors: np.ndarray) -> np.ndarray:
    """(N, 5) atlas priors -> (N, 4) weights for the mixture's starting point: each class where its
    prior is confident (raised to the 4th power), fluid from the ventricles only. The sulcal CSF
    prior of a brain-extracted or atrophied brain mostly covers tissue; the ventricles' core is
    fluid in any brain."""
    merged = _merge_fluid(priors)
    merged[:, 1] = priors[:, 2]
    return merged**4


def _merge_fluid(priors: np.ndarray) -> np.ndarray:
    """(N, 5) atlas priors -> (N, 4) mixture priors: CSF and ventricles summed."""
    return np.concatenate([priors[:, :1], priors[:, 1:3].sum(1, keepdims=True), priors[:, 3:]], axis=1)


def _split_fluid(posteriors: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """(N, 4 + outlier) mixture posteriors -> (N, 5 + outlier): fluid shared by the atlas's CSF:ventricle odds."""
    ventricle_share = priors[:, 2] / np.maximum(priors[:, 1] + priors[:, 2], 1e-12)
    fluid = posteriors[:, 1]
    return np.concatenate(
        [
            posteriors[:, :1],
            (fluid * (1 - ventricle_share))[:, None],
            (fluid * ventricle_share)[:, None],
            posteriors[:, 2:],
        ],
        axis=1,
    )


# Fluid and a tissue must lie this many of the tissue's SDs apart (along the line between them)
# for a voxel between them to be read as a mixture of the two: with less contrast (a PD) the
# fluid's own noise would be.
_MIXTURE_CONTRAST_SD = 3.0


def _majority_tissue(posteriors: np.ndarray, data: np.ndarray, mixture: Mixture) -> np.ndarray:
    """(N, 5 + outlier) posteriors with the cortex's partial-volume voxels given to the tissue that
    fills most of them. A voxel labelled CSF whose intensities lie more than halfway from the
    fluid's mean towards grey (or white) matter's is mostly that tissue: the fluid class is wide
    (it also takes the partial-volume rim of the cortex), so the likelihoods alone would give such
    voxels to CSF, and CSF would grow at the expense of the cortex. The ventricles are left to
    their prior: in some contrasts (a PD) they are hard to tell from white matter by intensity.
    Applied after the lesions are decided, to the tissue labels only."""
    fluid_mean = mixture.class_gaussian(MIXTURE_CLASSES.index("fluid"))[0]
    csf = posteriors[:, 1]
    won = csf >= np.delete(posteriors, 1, axis=1).max(1)
    best_share, best_column = np.full(len(data), 0.5), np.zeros(len(data), int)
    for name, column in (("grey", 3), ("white", 4)):
        mean, covariance = mixture.class_gaussian(MIXTURE_CLASSES.index(name))
        step = mean - fluid_mean
        length = float(np.linalg.norm(step))
        spread = float(np.sqrt(step @ covariance @ step)) / max(length, 1e-12)
        if length < _MIXTURE_CONTRAST_SD * spread:
            continue
        share = (data - fluid_mean) @ step / length**2  # 0 at the fluid's mean, 1 at the tissue's
        better = won & (share > best_share)
        best_share[better], best_column[better] = share[better], column
    moved = best_column > 0
    out = posteriors.copy()
    out[moved, best_column[moved]] += csf[moved]
    out[moved, 1] = 0.0
    return out


@dataclasses.dataclass(frozen=True)
class _ChannelScale:
    """Per-channel affine rescaling to about [0, 1] over the foreground (2nd-98th percentile), so
    the mixture's variance floor and the outlier density mean the same for any scanner's units."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, channels: np.ndarray, foreground: np.ndarray) -> "_ChannelScale":
        values = channels[:, foreground]
        step = max(1, values.shape[1] // 1_000_000)
        low, high = np.percentile(values[:, ::step], [2, 98], axis=1)
        return cls(low, np.maximum(high, low + 1e-6))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """(N, C) scan units -> (N, C) scaled."""
        return ((values - self.low) / (self.high - self.low)).astype(np.float64)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * (self.high - self.low) + self.low

    def channel(self, image: np.ndarray, c: int) -> np.ndarray:
        """One channel's image (any shape) scaled."""
        return (image - self.low[c]) / (self.high[c] - self.low[c])


def _foreground(image: np.ndarray, background: float, brain_extracted: bool) -> np.ndarray:
    """Voxels that hold the subject: for a brain-extracted scan, those not at the fill value; for a
    head, those brighter than a tenth of the 95th percentile above the background (air is dark in
    every MRI contrast), with holes (sinuses, dark skull) filled."""
    if brain_extracted:
        return fill_holes(image != background)
    above = image[image > background]
    if above.size == 0:
        return np.zeros(image.shape, bool)
    mask = image > background + 0.1 * (np.percentile(above, 95) - background)
    mask = ndimage.binary_opening(mask, iterations=1)
    # holes open to the outside in 3D (the nasal cavity, ear canals) are closed in axial slices
    return fill_holes_in_slices(fill_holes(mask), axis=2)


# Grey-white order every scan of a named contrast shows, as (darker, brighter); a fit that breaks it
# has put the atlas where the anatomy is not (a slab of the vertex fitted as the cerebellum). Only
# the robustly fitted parenchyma is compared: the fluid class also takes partial volume and
# necrosis, and its mean moves with them (a large glioma's FLAIR put it above white matter).
# FLAIR's grey-white contrast is too weak to require an order.
_TISSUE_ORDER = {"t1": ("grey", "white"), "t1c": ("grey", "white"), "t2": ("white", "grey"), "pd": ("white", "grey")}
_ORDER_MARGIN_SD = 0.25  # the brighter class's mean must exceed the darker's by this many pooled SD


def _tissue_order_problem(mixture: Mixture, contrasts) -> str | None:
    for c, contrast in enumerate(contrasts):
        if contrast not in _TISSUE_ORDER:
            continue
        darker, brighter = _TISSUE_ORDER[contrast]
        (low, low_cov), (high, high_cov) = (
            mixture.class_gaussian(MIXTURE_CLASSES.index(name)) for name in (darker, brighter)
        )
        if high[c] - low[c] <= _ORDER_MARGIN_SD * np.sqrt((low_cov[c, c] + high_cov[c, c]) / 2):
            return f"{darker} matter came out no darker than {brighter} matter in the {contrast.upper()}: the brain atlas did not fit this scan"
    return None


def _bright_outside_brain(image, foreground, outside_prior, background: float) -> float:
    """Share of the foreground that is both among the brightest (top fifth of the range from the
    background to the 99.9th percentile) and outside the registered atlas's brain. Bone does
    this in CT; scalp fat in a T1 or PD is a percent or two."""
    if not foreground.any():
        return 0.0
    top = np.percentile(image[foreground], 99.9)
    bright = foreground & (image > background + 0.8 * (top - background)) & (outside_prior > 0.5)
    return float(bright.sum() / foreground.sum())


def _mirrored(image: np.ndarray, affine: np.ndarray, scan_to_mni: np.ndarray) -> np.ndarray:
    """The image reflected across the brain's midline (MNI x = 0 of the registered template):
    each voxel gets the intensity of its mirror point in the other hemisphere."""
    mirror = np.linalg.solve(scan_to_mni, np.diag([-1.0, 1.0, 1.0, 1.0]) @ scan_to_mni)
    # A mirror point beyond the image (outside the brain: the image is a box around the atlas's
    # brain, which is symmetric) takes the image's typical edge value, as nearest-edge sampling did.
    faces = np.concatenate([np.take(image, i, axis=a).ravel() for a in range(3) for i in (0, -1)])
    return resample_array(image, affine, image.shape, affine, transform=mirror, fill=float(np.median(faces)))


def _shell_to_brain(image, brain, foreground, background: float, spacing) -> float | None:
    """Median of the head 2-8 mm outside the brain over the brain's 95th percentile, both above
    the background: above 1 when bone is the brightest tissue, as in CT. None when most of that
    shell is background (a brain-extracted scan)."""
    outside_mm = ndimage.distance_transform_edt(~brain, sampling=spacing)
    around = (outside_mm > 2) & (outside_mm <= 8)
    shell = around & foreground & (image != background)
    if shell.sum() < 0.2 * around.sum() or not brain.any():
        return None
    reference = np.percentile(image[brain], 95) - background
    return float((np.median(image[shell]) - background) / max(reference, 1e-6))


def _box(region: np.ndarray, region_affine: np.ndarray, affine: np.ndarray, shape) -> tuple[slice, slice, slice]:
    """Slices of the scan grid (shape, affine) covering `region` (a mask on another grid) plus 4 mm."""
    ijk = np.argwhere(region)
    if len(ijk) == 0:
        return tuple(slice(0, n) for n in shape)
    corners = np.array(
        [
            [a, b, c]
            for a in (ijk[:, 0].min() - 1, ijk[:, 0].max() + 1)
            for b in (ijk[:, 1].min() - 1, ijk[:, 1].max() + 1)
            for c in (ijk[:, 2].min() - 1, ijk[:, 2].max() + 1)
        ],
        float,
    )
    scan_ijk = np.linalg.solve(affine, region_affine) @ np.c_[corners, np.ones(8)].T
    lo = np.floor(scan_ijk[:3].min(1)).astype(int)
    hi = np.ceil(scan_ijk[:3].max(1)).astype(int) + 1
    return tuple(slice(int(max(0, a)), int(min(n, b))) for a, b, n in zip(lo, hi, shape))


def _brain_mask(posteriors: np.ndarray, foreground: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Where the brain classes (and the outlier class) together beat outside: the largest connected
    piece, opened by one voxel to cut thin bridges to the scalp, holes filled."""
    brain = foreground & (posteriors[0] < 0.5)
    brain = ndimage.binary_opening(brain, structure=ndimage.generate_binary_structure(3, 1))
    components, n = ndimage.label(brain)
    if n == 0:
        return brain
    sizes = ndimage.sum_labels(np.ones_like(components), components, index=np.arange(1, n + 1))
    return fill_holes(components == 1 + int(np.argmax(sizes)))
