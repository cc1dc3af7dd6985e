"""The input gate: is this scan a brain MRI the brain pipeline is for?

Two looks, both cheap next to segmenting:
- `check_scan(volume)` before anything is segmented (and before torch is imported): what the file
  says (DICOM Modality and BodyPartExamined), its shape (a single slice or a thin slab is 2D), its
  field of view (larger than a head: a body scan) and its intensities (Hounsfield units: CT; a
  head whose inside is at the background value: a CT phantom or a CT windowed as 8-bit);
- `check_brain(evidence)` after brain extraction, from what the extraction found: a brain-sized
  brain, an atlas fit at a plausible scale, tissue intensities in the order the named contrast
  has (grey darker than white in a T1, ...), and no bright bone around it (CT stored without
  Hounsfield units, e.g. as 8-bit, shows bone as the brightest tissue; no MRI contrast does).

A scan that fails is refused with `OutOfScopeError`, one line saying what was seen; `force=True`
(`--force`) reports it anyway, and the report then carries `out_of_scope_notice(reasons)`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fm.core.errors import InputFileError
from fm.core.io import Volume
from fm.core.masks import background_value, fill_holes_in_slices

_MIN_SLICES = 8
_MIN_EXTENT_MM = 40.0  # thinner than this along an axis: a slab, not a head
_MAX_HEAD_EXTENT_MM = 400.0  # longer than this along any axis: more than a head
_MAX_HEAD_AREA_MM = 330.0  # wider than this along two axes: a body's cross-section
_HEAD_PARTS = ("", "HEAD", "BRAIN", "SKULL", "HEADNECK", "HEAD_NECK", "NECK")  # DICOM BodyPartExamined
_CT_AIR_HU = -500.0
_MAX_HOLLOW = (
    0.2  # measured: an 8-bit head CT phantom 0.37; real MRI (T1, PD, FLAIR, T1c, brain-extracted or not) <= 0.012
)
_BRAIN_ML = (600.0, 2500.0)
_ATLAS_SCALE = (0.6, 1.6)  # linear scale of the scan-to-MNI map
_MAX_BRIGHT_OUTSIDE = 0.05  # real T1, PD, FLAIR, T1c MRI measured 0-1.6 %; the bone of a head CT is a fifth of the head


class OutOfScopeError(InputFileError):
    """The file is readable, but not a brain MRI the pipeline is for."""


@dataclasses.dataclass(frozen=True)
class BrainEvidence:
    """What brain extraction found, for `check_brain`."""

    brain_volume_ml: float
    atlas_scale: float  # cube root of the scan-to-MNI map's determinant
    shell_to_brain: float | None  # median just outside the brain / the brain's 95th percentile; None if brain-extracted
    bright_outside_brain: float  # share of the head that is among its brightest voxels and outside the atlas's brain
    tissue_order_problem: str | None = None  # tissue intensities in an order the named contrast never has


def check_scan(volume: Volume) -> list[str]:
    """Reasons this scan is not a brain MRI, from its header, shape and intensities (empty: none)."""
    reasons = []
    modality = (volume.modality or volume.meta.get("Modality") or "").upper()
    if modality and modality != "MR":
        reasons.append(f"modality {modality}, not MR")
    part = str(volume.meta.get("BodyPartExamined", "")).upper().replace(" ", "")
    if part not in _HEAD_PARTS:
        reasons.append(f"body part {part}, not head")
    extent = np.array(volume.shape) * np.array(volume.spacing)
    if min(volume.shape) < _MIN_SLICES or extent.min() < _MIN_EXTENT_MM:
        reasons.append(f"2D: {' x '.join(map(str, volume.shape))} voxels, {' x '.join(f'{e:.0f}' for e in extent)} mm")
    elif extent.max() > _MAX_HEAD_EXTENT_MM or np.sort(extent)[-2] > _MAX_HEAD_AREA_MM:
        reasons.append(f"field of view {' x '.join(f'{e:.0f}' for e in extent)} mm, larger than a head")
    step = max(1, volume.array.size // 2_000_000)
    sample = volume.array.reshape(-1)[::step]
    if float(np.mean(sample < _CT_AIR_HU)) > 0.05:
        reasons.append(f"intensities down to {float(sample.min()):.0f} look like CT Hounsfield units (air at -1000)")
    hollow = hollow_share(volume.array)
    if hollow > _MAX_HOLLOW:
        reasons.append(
            f"{hollow:.0%} of what the head's outline encloses is at the background value, which no brain MRI shows"
        )
    return reasons


def hollow_share(array: np.ndarray) -> float:
    """Share of the voxels enclosed by the subject's outline (holes filled in each axial slice,
    on every second voxel) that hold the background value (the commonest value on the faces).
    Brain tissue fills a brain MRI, stripped or not; a CT phantom, or a CT whose window puts brain
    at the value of air, is hollow."""
    coarse = array[::2, ::2, ::2]
    subject = coarse != background_value(coarse)
    enclosed = fill_holes_in_slices(subject, axis=2)
    return float((enclosed & ~subject).sum() / max(enclosed.sum(), 1))


def check_brain(evidence: BrainEvidence) -> list[str]:
    """Reasons the brain extraction's findings are not those of a brain MRI (empty: none)."""
    reasons = []
    low, high = _BRAIN_ML
    if not low <= evidence.brain_volume_ml <= high:
        reasons.append(
            f"brain extraction found {evidence.brain_volume_ml:.0f} mL of brain (a brain is {low:.0f}-{high:.0f} mL)"
        )
    low, high = _ATLAS_SCALE
    if not low <= evidence.atlas_scale <= high:
        reasons.append(f"the brain atlas fits only at {evidence.atlas_scale:.2f}x its size")
    if evidence.shell_to_brain is not None and evidence.shell_to_brain > 1.0:
        reasons.append("a shell brighter than the brain surrounds it, as bone does in CT")
    if evidence.tissue_order_problem:
        reasons.append(evidence.tissue_order_problem)
    if evidence.bright_outside_brain > _MAX_BRIGHT_OUTSIDE:
        reasons.append(
            f"{evidence.bright_outside_brain:.0%} of the head is brighter than the brain and outside it, as bone is in CT"
        )
    return reasons


def enforce(path: str, reasons: list[str], force: bool) -> None:
    """Refuse with one line naming what was seen, unless forced."""
    if reasons and not force:
        raise OutOfScopeError(
            path, "not a brain MRI this pipeline is for: " + "; ".join(reasons) + " (--force reports it anyway)"
        )


def out_of_scope_notice(reasons: list[str]) -> str:
    return (
        "Outside intended use ("
        + "; ".join(reasons)
        + "): reported only because it was forced; the results are not meaningful."
    )
