"""A Gaussian mixture fitted by EM to one scan's own intensities, with per-voxel class priors.

This is the contrast-adaptive core of the brain pipeline, in the manner of SPM's unified
segmentation and FreeSurfer's SAMSEG: each class (grey matter, white matter, ...) is a mixture of
a few Gaussians over the channels (one per co-registered contrast); a voxel's posterior is
its class prior times the class likelihood of its intensities, normalised. Nothing about the
contrast is learned beforehand, so T1, T2, FLAIR, PD and their combinations are handled alike.

An optional outlier class has a flat density over the intensities: a voxel goes to it when no
class explains its intensities where it lies (a lesion, in the brain pipeline). It keeps such
voxels from dragging the tissue Gaussians while they are fitted.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

_MIN_VARIANCE = 1e-4  # in the units of the data (the pipeline scales channels to unit spread)


@dataclasses.dataclass
class Mixture:
    """Gaussians, each belonging to one class, with weights that sum to 1 within their class."""

    means: np.ndarray  # (G, D)
    covariances: np.ndarray  # (G, D, D)
    weights: np.ndarray  # (G,)
    classes: np.ndarray  # (G,) class index of each Gaussian
    outlier_density: float | None = None  # flat density of the outlier class (the last prior column), if any

    @property
    def n_classes(self) -> int:
        """Classes with Gaussians (the outlier class, when there is one, comes after them)."""
        return int(self.classes.max()) + 1

    def class_means(self) -> np.ndarray:
        """(K, D) weighted mean intensity of each class."""
        return np.stack([self.class_gaussian(k)[0] for k in range(self.n_classes)])

    def class_gaussian(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and covariance (D, D) of class k as one Gaussian (moment-matched over its Gaussians)."""
        own = self.classes == k
        weights, means = self.weights[own], self.means[own]
        mean = weights @ means
        spread = sum(
            w * (cov + np.outer(m - mean, m - mean)) for w, m, cov in zip(weights, means, self.covariances[own])
        )
        return mean, spread

    def component_likelihoods(self, data: np.ndarray) -> np.ndarray:
        """(N, G) weight x Gaussian density of each voxel's intensities under each Gaussian."""
        n, d = data.shape
        cholesky = np.linalg.cholesky(self.covariances)  # (G, D, D)
        whitening = np.linalg.inv(cholesky)  # the D x D inverses are cheap, N solves are not
        # all Gaussians at once, channels along the rows: (G, D, N)
        centred = data.T[None] - self.means[:, :, None]
        distance = np.square(np.matmul(whitening, centred)).sum(1)  # (G, N) squared Mahalanobis
        log_norm = -0.5 * d * np.log(2 * np.pi) - np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(1)
        return (self.weights[:, None] * np.exp(log_norm[:, None] - 0.5 * distance)).T.astype(data.dtype, copy=False)

    def class_likelihoods(self, data: np.ndarray) -> np.ndarray:
        """(N, K) likelihood of each voxel's intensities under each class (K counts the outlier class)."""
        components = self.component_likelihoods(data)
        extra = self.outlier_density is not None
        out = np.zeros((len(data), self.n_classes + extra), dtype=data.dtype)
        for k in range(self.n_classes):
            out[:, k] = components[:, self.classes == k].sum(1)
        if extra:
            out[:, -1] = self.outlier_density
        return out

    def posteriors(self, data: np.ndarray, priors: np.ndarray) -> np.ndarray:
        """(N, K) class posteriors given per-voxel priors (N, K)."""
        joint = priors * self.class_likelihoods(data)
        return joint / np.maximum(joint.sum(1, keepdims=True), 1e-30)


def initial_mixture(data: np.ndarray, priors: np.ndarray, gaussians_per_class: tuple[int, ...]) -> Mixture:
    """Each class starts from robust statistics of the intensities its prior covers (prior-weighted
    median and median absolute deviation per channel), so that a lesion inside a class's territory
    does not widen it before EM has a chance to give the lesion to the outlier class. A class of
    several Gaussians spreads them across its weighted 10th-90th percentiles."""
    d = data.shape[1]
    means, covariances, weights, classes = [], [], [], []
    for k, count in enumerate(gaussians_per_class):
        w = priors[:, k]
        median = np.array([_weighted_quantile(data[:, c], w, 0.5) for c in range(d)])
        mad = np.array([_weighted_quantile(np.abs(data[:, c] - median[c]), w, 0.5) for c in range(d)])
        spread = np.maximum(1.4826 * mad, np.sqrt(_MIN_VARIANCE))
        quantiles = np.linspace(0.1, 0.9, count) if count > 1 else [0.5]
        for q in quantiles:
            means.append(np.array([_weighted_quantile(data[:, c], w, q) for c in range(d)]))
            covariances.append(np.diag((spread / np.sqrt(count)) ** 2))
            weights.append(1.0 / count)
            classes.append(k)
    return Mixture(np.array(means), np.array(covariances), np.array(weights), np.array(classes))


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def fit_mixture(
    data: np.ndarray,
    priors: np.ndarray,
    gaussians_per_class: tuple[int, ...],
    iterations: int = 40,
    tolerance: float = 1e-5,
    outlier_density: float | None = None,
    robust_classes: tuple[int, ...] = (),
    initial_priors: np.ndarray | None = None,
    lesions_bright_in: tuple[int, ...] = (),
) -> tuple[Mixture, np.ndarray]:
    """EM for the mixture given intensities (N, D) and class priors (N, K). With
    `outlier_density`, the last prior column is the outlier class's. Returns the fit and the
    class posteriors (N, K).

    robust_classes: classes of one Gaussian whose M-step takes the peak and width of the
        responsibility-weighted histogram per channel (`_BinnedPeaks`) instead of the mean and
        covariance. Where priors are only roughly right, a class's territory holds partial-volume
        voxels, neighbouring tissue and lesion; they would widen a least-squares Gaussian until it
        explains the lesion too, while a robust one keeps the width of the tissue itself.
    initial_priors: (N, K) weights for the starting statistics only, when the priors' confident
        core describes a class better than its whole territory.
    lesions_bright_in: channels where lesions are known to be brighter than tissue (FLAIR, T2):
        there a robust class's peak is looked for below its weighted median only, so that a
        lesion larger than the healthy part of a class's territory cannot become its peak."""
    gaussian_priors = priors[:, :-1] if outlier_density is not None else priors
    mixture = initial_mixture(data, gaussian_priors if initial_priors is None else initial_priors, gaussians_per_class)
    mixture.outlier_density = outlier_density
    d = data.shape[1]
    peaks = _BinnedPeaks(data, lesions_bright_in) if robust_classes else None
    previous = -np.inf
    gaussian_prior = gaussian_priors[:, mixture.classes]  # (N, G): each Gaussian under its class's prior
    outlier_prior = outlier_density * priors[:, -1] if outlier_density is not None else 0.0
    fitted = [g for g in range(len(mixture.weights)) if mixture.classes[g] not in robust_classes]
    # second moments of the intensities, so that every least-squares Gaussian's covariance is one product
    pairs = np.einsum("ni,nj->nij", data, data).reshape(len(data), d * d)
    for _ in range(iterations):
        joint = mixture.component_likelihoods(data) * gaussian_prior
        total = np.maximum(joint.sum(1) + outlier_prior, 1e-300)
        responsibilities = joint / total[:, None]
        log_likelihood = float(np.log(total).mean())
        mass = responsibilities.sum(0)
        kept = mass >= 1e-6  # a Gaussian that lost all its voxels keeps its last fit
        for g in np.flatnonzero(kept):
            if mixture.classes[g] in robust_classes:
                peak, spread = peaks(responsibilities[:, g])
                mixture.means[g] = peak
                mixture.covariances[g] = np.diag(spread**2 + _MIN_VARIANCE)
        fit = [g for g in fitted if kept[g]]
        weights = responsibilities[:, fit] / mass[fit]
        means = weights.T @ data  # (F, D)
        second = (weights.T @ pairs).reshape(len(fit), d, d)
        mixture.means[fit] = means
        mixture.covariances[fit] = second - np.einsum("fi,fj->fij", means, means) + _MIN_VARIANCE * np.eye(d)
        mixture.weights[kept] = mass[kept]
        for k in range(mixture.n_classes):
            own = mixture.classes == k
            mixture.weights[own] /= max(mixture.weights[own].sum(), 1e-12)
        if log_likelihood - previous < tolerance:
            break
        previous = log_likelihood
    return mixture, mixture.posteriors(data, priors)


class _BinnedPeaks:
    """The peak of a weighted intensity histogram per channel, and its width: the location of the
    smoothed histogram's maximum, and the narrower of its two half-widths at half maximum (as a
    standard deviation). A lesion or a neighbouring tissue in a class's territory adds a shoulder
    on one side of the tissue's own peak; the median and the median deviation move with it once it
    is large (a glioma's oedema can be a third of the white matter), the peak and its clean side
    do not."""

    _BINS = 1024
    _SMOOTH_BINS = 4.0

    def __init__(self, data: np.ndarray, below_median_in: tuple[int, ...] = ()):
        self.below_median_in = below_median_in
        self.low = data.min(0)
        self.width = np.maximum(data.max(0) - self.low, 1e-9) / self._BINS
        self.bins = np.clip(((data - self.low) / self.width).astype(np.int64), 0, self._BINS - 1)

    def __call__(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(peak, standard deviation) per channel."""
        channels = self.bins.shape[1]
        peak, spread = np.empty(channels), np.empty(channels)
        for c in range(channels):
            histogram = ndimage.gaussian_filter1d(
                np.bincount(self.bins[:, c], weights, minlength=self._BINS), self._SMOOTH_BINS
            )
            search = histogram
            if c in self.below_median_in:
                cumulative = np.cumsum(histogram)
                search = histogram[: max(1, int(np.searchsorted(cumulative, cumulative[-1] / 2)) + 1)]
            top = int(np.argmax(search))
            below = np.flatnonzero(histogram[:top] < histogram[top] / 2)
            above = np.flatnonzero(histogram[top:] < histogram[top] / 2)
            half_widths = [top - below[-1] if len(below) else np.inf, above[0] if len(above) else np.inf]
            half_width = min(half_widths) if np.isfinite(min(half_widths)) else self._SMOOTH_BINS
            peak[c] = self.low[c] + (top + 0.5) * self.width[c]
            spread[c] = half_width * self.width[c] / np.sqrt(2 * np.log(2))
        return peak, spread
