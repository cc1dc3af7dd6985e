"""Which of the mixture's outliers are lesions, and their sub-regions.

The mixture (heads.brain) sends a voxel to its flat outlier class when no tissue class explains
its intensities where it lies. Such voxels become a lesion only as connected components inside
the brain that are large enough and, in each contrast that shows lesions bright (FLAIR, T2, PD),
are brighter than normal parenchyma and than the same place in the other hemisphere (and, where
fluid is bright too, as in T2 and PD, are not fluid: far from the fitted CSF). Fluid a lesion surrounds (necrosis, a cyst) joins it. Which way
an unnamed contrast goes is read from the fitted tissue means: FLAIR-like when CSF is darkest and
grey matter brighter than white; T2/PD-like when CSF is brightest.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from fm.core.masks import fill_holes, fill_holes_in_slices

_FLUID, _GREY, _WHITE = 1, 2, 3  # classes of heads.brain.MIXTURE_CLASSES
BRIGHT_LESION_CONTRASTS = ("flair", "t2", "pd")
_NEIGHBOURS = np.ones((3, 3, 3), bool)
_FACES = ndimage.generate_binary_structure(3, 1)


@dataclasses.dataclass(frozen=True)
class LesionRules:
    outlier_prior: float = 0.02  # share of the brain prior given to the outlier class
    min_volume_ml: float = (
        1.0  # a lesion holds at least this much seed; smaller outlier groups are left to the tissue classes
    )
    fluid_distance: float = 2.0  # components closer than this (Mahalanobis) to the CSF Gaussian are fluid
    brighter_by_sd: float = 2.0  # in bright-lesion contrasts, above the brightest parenchyma by this many SD (to grow)
    seed_brighter_by_sd: float = 3.0  # ... and by this many SD for the outliers a lesion must hold (its seed)
    asymmetry_by_sd: float = 2.0  # seeds are brighter than their mirror image across the midline by this many SD
    grow_asymmetry_by_sd: float = 1.0  # ... and the voxels a lesion grows into by this many
    enhancing_by_sd: float = 4.0  # in a contrast-enhanced T1, above white matter by this many SD (seeds)
    enhancing_grow_by_sd: float = 2.0  # ... and the voxels joined to those seeds by this many (hysteresis)
    enhancing_margin_mm: float = 2.0  # enhancement may reach this far beyond the lesion's edge (the rim is its margin)
    t1_evidence_depth_mm: float = (
        10.0  # without a bright-lesion contrast, T1-dark evidence counts this far inside the brain only
    )
    rim_voxels: int = 2  # how far a lesion takes back abnormal voxels the opening removed
    cavity_enclosed: float = (
        0.5  # fluid is a lesion's cavity when this share of the lines of sight from it end on the lesion
    )
    cavity_reach_mm: float = 40.0  # ... looking this far

    def outlier_density(self, channels: int) -> float:
        """Flat density over [-0.5, 1.5] per scaled channel (the foreground's 2nd-98th percentile is [0, 1])."""
        return 0.5**channels


def lesion_directions(mixture, contrasts: tuple[str, ...]) -> list[bool]:
    """Per channel: whether lesions must be bright in it (named, or read from the tissue means)."""
    means = mixture.class_means()
    bright = []
    for c, contrast in enumerate(contrasts):
        if contrast == "unknown":
            csf, grey, white = means[_FLUID, c], means[_GREY, c], means[_WHITE, c]
            flair_like = csf < min(grey, white) and grey > white
            t2_like = csf > max(grey, white)
            bright.append(bool(flair_like or t2_like))
        else:
            bright.append(contrast in BRIGHT_LESION_CONTRASTS)
    return bright


def accept_lesions(
    posteriors, brain, channels, mixture, scale, contrasts, spacing, rules: LesionRules, deep, mirrored, parenchyma
) -> np.ndarray:
    """Boolean lesion mask on the box grid. posteriors: (prior classes + outlier, ...) with the
    outlier class last; channels: (C, ...) in scan units; mirrored: the channels reflected across
    the midline (needed when a contrast shows lesions bright, or a contrast-enhanced T1 is one);
    deep: where T1-like evidence counts (needed otherwise); parenchyma: the atlas's grey plus white
    matter prior, where enhancement counts without a bright-lesion contrast.

    Two levels of evidence, as hysteresis: a lesion is a connected region of abnormal voxels
    (in every bright-lesion contrast brighter than normal parenchyma and than the mirror image;
    not fluid where fluid is bright too) that holds at least `min_volume_ml` of seed voxels (outliers of the
    mixture, brighter and more asymmetric still). With no bright-lesion contrast, enhancement in a
    contrast-enhanced T1 is the evidence instead. The rules are applied voxel by voxel: a
    component that joined a lesion to unrelated outliers would otherwise be judged by their
    average. Regions are formed after an opening, then take back their rim (and, with a T1c, the
    enhancing rim they touch); what a lesion encloses in 3D or in a slice is added. Fluid that a
    lesion surrounds but does not close (a cavity reaching the brain's surface) is
    `add_cavities`' job."""
    inside = np.flatnonzero(brain)
    values = scale(channels.reshape(len(channels), -1)[:, inside].T)
    not_fluid = _mahalanobis_rows(values, *mixture.class_gaussian(_FLUID)) >= rules.fluid_distance
    bright = [c for c, is_bright in enumerate(lesion_directions(mixture, contrasts)) if is_bright]
    mirror = None if mirrored is None else scale(mirrored.reshape(len(mirrored), -1)[:, inside].T)
    if bright:
        grow = _brighter(values, bright, mixture, rules.brighter_by_sd)
        if _fluid_is_bright(bright, mixture):
            # T2/PD: CSF is brighter than parenchyma too. (In FLAIR it is dark and the brightness
            # test excludes it; there the fluid class, widened by necrosis and partial volume,
            # would also exclude a large tumour's moderately bright solid part.)
            grow &= not_fluid
        seed = grow & _brighter(values, bright, mixture, rules.seed_brighter_by_sd)
        # Seeds must also be brighter than their mirror image across the midline: normal bright
        # signal (periventricular caps, choroid plexus, a bias left over) is symmetric.
        # Growth must be asymmetric too, less so: else a lesion creeps along the ventricles' bright
        # lining, which both hemispheres have.
        grow &= _asymmetric(values, mirror, bright, mixture, rules.grow_asymmetry_by_sd)
        seed &= _asymmetric(values, mirror, bright, mixture, rules.asymmetry_by_sd)
    outlier = posteriors[-1].reshape(-1)[inside] > 0.5
    if not bright:
        # T1-like contrasts: an affine atlas cannot say that grey-matter-like signal in white
        # matter is abnormal (cortex varies by centimetres between brains), so only signal outside
        # the range of every tissue counts: darker than parenchyma yet far from fluid, deep in
        # the brain, and, in a contrast-enhanced T1, enhancement (below).
        deep_rows = deep.reshape(-1)[inside]
        grow = seed = (
            outlier
            & deep_rows
            & _beyond_tissue(values, mixture, rules.seed_brighter_by_sd)
            & _darker_than_parenchyma(values, mixture)
        )
        if "t1c" in contrasts:
            # Enhancement anywhere in the parenchyma the atlas maps (the sinuses, dura and choroid
            # plexus lie outside it) that is brighter than its mirror image (normal enhancement
            # comes in pairs or on the midline); thin pieces (vessels) go in the opening below.
            c = contrasts.index("t1c")
            enhancing = (
                outlier
                & _enhancing_rows(values, contrasts, mixture, rules)
                & (parenchyma.reshape(-1)[inside] >= 0.5)
                & _asymmetric(values, mirror, [c], mixture, rules.asymmetry_by_sd)
            )
            grow, seed = grow | enhancing, seed | enhancing
    weak = np.zeros(brain.shape, bool)
    weak.flat[inside[grow]] = True
    # Thin bright structures (a ventricle's lining, a vessel) bridge lesions to what is not one:
    # components are formed after an opening, and the lesion then takes back its own rim.
    opened = ndimage.binary_opening(weak, structure=_FACES)
    strong = np.zeros(brain.shape, bool)
    strong.flat[inside[seed & outlier]] = True
    components, n = ndimage.label(opened, structure=_NEIGHBOURS)
    if n == 0:
        return opened
    strong_voxels = ndimage.sum_labels(strong, components, index=np.arange(1, n + 1))
    lesion = np.concatenate([[False], strong_voxels * float(np.prod(spacing)) / 1000 >= rules.min_volume_ml])[
        components
    ]
    if bright and "t1c" in contrasts:
        # with FLAIR/T2 the evidence, an enhancing rim (often not bright there) joins the lesion it touches
        enhancing = outlier & _enhancing_rows(values, contrasts, mixture, rules)
        weak.flat[inside[enhancing & _thick(enhancing, inside, brain.shape)]] = True
    lesion |= weak & ndimage.binary_dilation(lesion, structure=_NEIGHBOURS, iterations=rules.rim_voxels)
    return _fill_enclosed(lesion) & brain


def _fluid_is_bright(channels: list[int], mixture) -> bool:
    """Whether the fitted fluid is brighter than grey and white matter in any of `channels`."""
    fluid = mixture.class_gaussian(_FLUID)[0]
    parenchyma = np.maximum(mixture.class_gaussian(_GREY)[0], mixture.class_gaussian(_WHITE)[0])
    return bool(np.any(fluid[channels] > parenchyma[channels]))


def _thick(rows: np.ndarray, inside: np.ndarray, shape) -> np.ndarray:
    """Rows whose voxels survive an opening by the 26-neighbourhood: enhancing vessels are one
    or two voxels wide, an enhancing tumour is thicker."""
    mask = np.zeros(shape, bool)
    mask.flat[inside[rows]] = True
    return ndimage.binary_opening(mask, structure=_NEIGHBOURS).reshape(-1)[inside]


def _darker_than_parenchyma(values: np.ndarray, mixture) -> np.ndarray:
    grey, _ = mixture.class_gaussian(_GREY)
    white, _ = mixture.class_gaussian(_WHITE)
    return np.all(values < np.minimum(grey, white), axis=1)


def _beyond_tissue(values: np.ndarray, mixture, by_sd: float) -> np.ndarray:
    """Rows more than `by_sd` (Mahalanobis) from fluid, grey and white matter alike."""
    far = np.ones(len(values), bool)
    for k in (_FLUID, _GREY, _WHITE):
        far &= _mahalanobis_rows(values, *mixture.class_gaussian(k)) > by_sd
    return far


def _asymmetric(values: np.ndarray, mirror: np.ndarray, channels: list[int], mixture, by_sd: float) -> np.ndarray:
    """Rows brighter than their mirror rows by `by_sd` of grey matter, in every given channel."""
    _, covariance = mixture.class_gaussian(_GREY)
    out = np.ones(len(values), bool)
    for c in channels:
        out &= values[:, c] - mirror[:, c] > by_sd * np.sqrt(covariance[c, c])
    return out


def _brighter(values: np.ndarray, channels: list[int], mixture, by_sd: float) -> np.ndarray:
    """Rows brighter than both grey and white matter by `by_sd` of each, in every given channel."""
    out = np.ones(len(values), bool)
    for k in (_GREY, _WHITE):
        mean, covariance = mixture.class_gaussian(k)
        for c in channels:
            out &= values[:, c] > mean[c] + by_sd * np.sqrt(covariance[c, c])
    return out


def _fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """The mask with what it encloses after a 2-voxel closing: holes in 3D and in every slice of
    each axis (a cavity open to one side in 3D is closed in some plane). Worked on the mask's
    bounding box."""
    if not mask.any():
        return mask
    box = _padded_box(mask, (3, 3, 3))
    closed = ndimage.binary_closing(mask[box], structure=_NEIGHBOURS, iterations=2) | mask[box]
    filled = fill_holes(closed)
    for axis in range(3):
        filled |= fill_holes_in_slices(closed, axis)
    out = mask.copy()
    out[box] |= filled
    return out


def _above_white(mixture, c: int, by_sd: float) -> float:
    """White matter's mean plus `by_sd` of its SD in channel c: in a contrast-enhanced T1, white
    matter is the brightest normal tissue, so what lies well above it enhances."""
    white_mean, white_cov = mixture.class_gaussian(_WHITE)
    return float(white_mean[c] + by_sd * np.sqrt(white_cov[c, c]))


def _enhancing_rows(values: np.ndarray, contrasts, mixture, rules: LesionRules) -> np.ndarray:
    """Rows of scaled values brighter than white matter by `enhancing_by_sd` in the
    contrast-enhanced T1."""
    c = contrasts.index("t1c")
    return values[:, c] > _above_white(mixture, c, rules.enhancing_by_sd)


def _enhancing_tumour(
    t1c, mirror, lesion, brain, mixture, c: int, spacing, rules: LesionRules
) -> tuple[np.ndarray, np.ndarray]:
    """Enhancing tumour, from a contrast-enhanced T1 (channel c) scaled as the mixture (`mirror`:
    the same reflected across the midline). Seeds are voxels brighter than white matter by `enhancing_by_sd`: inside the lesion,
    or beside it (within `enhancing_margin_mm`) in a thick piece of at least `min_volume_ml` that is
    also brighter than its mirror image (a large tumour's enhancing solid part can look like
    cortex in FLAIR and be left out of the lesion; normal enhancement, the choroid plexus,
    sinuses and vessels, comes in pairs or on the midline, and is thin). Enhancement is then
    grown by hysteresis into voxels brighter by `enhancing_grow_by_sd` (a rim's fainter stretches
    belong to it, isolated faint voxels do not), up to `enhancing_margin_mm` from the lesion and
    the pieces that joined it: the rim is the tumour's margin, and vessels and dura farther away
    are not reached. Returns the enhancement and the lesion with the pieces that joined it."""
    grey_sd = np.sqrt(mixture.class_gaussian(_GREY)[1][c, c])
    bright = brain & (t1c > _above_white(mixture, c, rules.enhancing_by_sd))
    beside = ndimage.binary_opening(bright & (t1c - mirror > rules.asymmetry_by_sd * grey_sd), structure=_FACES)
    pieces, n = ndimage.label(beside, structure=_NEIGHBOURS)
    near = _within_mm(lesion, rules.enhancing_margin_mm, spacing)
    if n:
        ml = ndimage.sum_labels(beside, pieces, index=np.arange(1, n + 1)) * float(np.prod(spacing)) / 1000
        touching = np.isin(np.arange(1, n + 1), pieces[near])
        beside = np.concatenate([[False], (ml >= rules.min_volume_ml) & touching])[pieces]
    seeds = (lesion & bright) | beside
    margin = near | _within_mm(beside, rules.enhancing_margin_mm, spacing)  # within reach of either
    candidates = margin & brain & (t1c > _above_white(mixture, c, rules.enhancing_grow_by_sd))
    components, _ = ndimage.label(candidates, structure=_NEIGHBOURS)
    kept = np.unique(components[seeds & candidates])
    return np.isin(components, kept[kept > 0]), lesion | beside


def _padded_box(mask: np.ndarray, pad) -> tuple[slice, ...]:
    """Slices of the mask's bounding box grown by `pad` voxels per axis (mask not empty)."""
    return tuple(
        slice(max(s.start - int(p), 0), s.stop + int(p))
        for s, p in zip(ndimage.find_objects(mask.astype(np.uint8))[0], pad)
    )


def _within_mm(mask: np.ndarray, mm: float, spacing) -> np.ndarray:
    """Voxels within `mm` of the mask, worked on its bounding box (a distance map of the whole
    brain would cost seconds)."""
    out = np.zeros(mask.shape, bool)
    if not mask.any():
        return out
    box = _padded_box(mask, np.ceil(mm / np.asarray(spacing, float)) + 1)
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=spacing) <= mm
    return out


def _inside_rims(enhancing: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Voxels of `within` inside the convex hull of each enhancing rim. A rim seen in a
    contrast-enhanced T1 is rarely closed (thin or faint stretches fall under any threshold), so
    what it encloses is taken as what its hull holds; one voxel's closing first joins the pieces
    of a broken rim."""
    out = np.zeros(enhancing.shape, bool)
    if not enhancing.any():
        return out
    crop = _padded_box(enhancing, np.full(3, 2))
    joined = ndimage.binary_closing(enhancing[crop], structure=_NEIGHBOURS) | enhancing[crop]
    components = np.zeros(enhancing.shape, np.int32)
    components[crop] = ndimage.label(joined, structure=_NEIGHBOURS)[0]
    for k, box in enumerate(ndimage.find_objects(components), start=1):
        rim = np.argwhere(components[box] == k)
        if np.ptp(rim, axis=0).min() < 2:  # flat: a hull of no volume
            continue
        facets = ConvexHull(rim).equations  # inside: normal . x + offset <= 0
        candidates = np.argwhere(within[box])
        inside = (candidates @ facets[:, :3].T + facets[:, 3] <= 0.5).all(1)  # half a voxel of tolerance
        corner = np.array([s.start for s in box])
        out[tuple((candidates[inside] + corner).T)] = True
    return out


def split_subregions(
    lesion, brain, channels, mirrored, mixture, scale, contrasts, spacing, rules: LesionRules
) -> dict[str, np.ndarray]:
    """Enhancing tumour (see _enhancing_tumour), core (enhancing plus what is dark in the T1c
    inside its rims) and oedema (the rest of the lesion); `mirrored`: the channels reflected
    across the midline.
    Enhancement and what its rims hold may add to the lesion. Without a contrast-enhanced T1
    nothing is told apart: the whole lesion is returned as 'oedema' and the caller reports
    sub-regions as not assessed."""
    empty = np.zeros(lesion.shape, bool)
    if "t1c" not in contrasts or not lesion.any():
        return {"oedema": lesion, "core": empty, "enhancing": empty}
    c = contrasts.index("t1c")
    t1c, mirror = scale.channel(channels[c], c), scale.channel(mirrored[c], c)
    enhancing, anchored = _enhancing_tumour(t1c, mirror, lesion, brain, mixture, c, spacing, rules)
    # Core is what the rims' hulls hold that is dark in the T1c: necrosis, as FLAIR may show it as
    # oedema or as grey as cortex. Oedema and normal tissue inside a hull that is not convex,
    # and faint enhancement at a solid part's edge, are not dark. The hulls come from the rims
    # where they are anchored (a vessel leaving a rim would stretch them).
    grey_mean, grey_cov = mixture.class_gaussian(_GREY)
    dark = t1c < grey_mean[c] - rules.brighter_by_sd * np.sqrt(grey_cov[c, c])
    core = enhancing | _inside_rims(enhancing & anchored, brain & dark)
    lesion = lesion | core
    return {"oedema": lesion & ~core, "core": core & ~enhancing, "enhancing": enhancing}


def _mahalanobis_rows(x: np.ndarray, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    d = x - mean
    return np.sqrt(np.einsum("nc,nc->n", d, np.linalg.solve(covariance, d.T).T))


def add_cavities(lesion: np.ndarray, fluid: np.ndarray, brain: np.ndarray, spacing, rules: LesionRules) -> np.ndarray:
    """The lesion with the fluid it surrounds: a necrotic or cystic centre looks like CSF, yet is
    part of the tumour. A fluid voxel joins when, looking along the 26 grid directions through
    fluid, at least `cavity_enclosed` of the lines that end on brain end on the lesion rather than
    on normal tissue (lines that leave the brain do not count: a cavity may reach the brain's
    surface). Sulci and ventricles beside a lesion are bordered by normal tissue on most sides.
    Worked on a grid of about 2 mm around the lesion."""
    if not lesion.any() or not fluid.any():
        return lesion
    step = np.maximum(1, np.round(2.0 / np.asarray(spacing, float))).astype(int)
    reach = np.ceil(rules.cavity_reach_mm / (np.asarray(spacing) * step)).astype(int)
    box = _padded_box(lesion, reach * step)
    coarse = tuple(slice(None, None, k) for k in step)
    # 0 outside the brain, 1 fluid, 2 lesion, 3 normal tissue
    kind = np.where(brain[box], 3, 0).astype(np.uint8)
    kind[fluid[box]] = 1
    kind[lesion[box]] = 2
    kind = kind[coarse]
    on_lesion = np.zeros(kind.shape, np.uint8)
    ended = np.zeros(kind.shape, np.uint8)
    for direction in itertools.product((-1, 0, 1), repeat=3):
        if direction == (0, 0, 0):
            continue
        hit = np.zeros(kind.shape, np.uint8)  # what the line from each voxel ends on (0: not yet)
        steps = int(min(r for r, d in zip(reach, direction) if d))
        for n in range(1, steps + 1):
            seen = _shifted(kind, np.array(direction) * n)
            hit = np.where((hit == 0) & (seen != 1), np.where(seen == 0, 4, seen), hit)
        on_lesion += hit == 2
        ended += (hit == 2) | (hit == 3)
    enclosed_coarse = (kind == 1) & (on_lesion >= rules.cavity_enclosed * np.maximum(ended, 1)) & (ended >= 8)
    index = np.indices(lesion[box].shape)
    enclosed = enclosed_coarse[tuple(np.minimum(i // k, n - 1) for i, k, n in zip(index, step, enclosed_coarse.shape))]
    # fine fluid voxels whose coarse cell was rim count with their enclosed neighbours
    cavity = ndimage.binary_dilation(enclosed, structure=_NEIGHBOURS, iterations=int(step.max())) & fluid[box]
    # only cavities that touch the lesion
    components, n = ndimage.label(cavity | lesion[box], structure=_NEIGHBOURS)
    touching = np.unique(components[lesion[box]])
    out = lesion.copy()
    out[box] |= cavity & np.isin(components, touching[touching > 0])
    return out


def _shifted(array: np.ndarray, offset) -> np.ndarray:
    """array[i + offset] at each i (0 where that falls outside)."""
    out = np.zeros_like(array)
    source = tuple(slice(max(o, 0), n + min(o, 0)) for o, n in zip(offset, array.shape))
    target = tuple(slice(max(-o, 0), n - max(o, 0)) for o, n in zip(offset, array.shape))
    out[target] = array[source]
    return out


def drop_specks(lesion: np.ndarray, spacing, rules: LesionRules) -> np.ndarray:
    """The lesion without pieces smaller than `min_volume_ml`: every lesion held that much seed,
    so a smaller piece is a corner the rim or cavity steps joined diagonally, not a finding."""
    components, n = ndimage.label(lesion, structure=_NEIGHBOURS)
    if n == 0:
        return lesion
    volumes = ndimage.sum_labels(lesion, components, index=np.arange(1, n + 1)) * float(np.prod(spacing)) / 1000
    return np.concatenate([[False], volumes >= rules.min_volume_ml])[components]
