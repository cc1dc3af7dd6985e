"""The input gate: is this scan a brain MRI the brain pipeline is for?

Two looks, both cheap next to segmenting:
- `check_scan(volume)` before anything is segmented (and before torch is imported): what the file
  says (DICOM Modality and BodyPartExamined), its shape (a single slice or a thin slab is 2D), its
  field of view (larger than a head: a body scan) and its intensities (Hounsfield units: CT);
- `check_brain(evidence)` after brain extraction, from what the extraction found: a brain-sized
  brain, an atlas fit at a plausible scale, grey matter that differs from white matter, and no
  bright shell of bone around it (CT stored without Hounsfield units, e.g. as 8-bit, shows bone
  as the brightest tissue and little grey-white contrast; no MRI contrast does either).

A scan that fails is refused with `OutOfScopeError`, one line saying what was seen; `force=True`
(`--force`) reports it anyway, and the report then carries `out_of_scope_notice(reasons)`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fm.errors import InputFileError
from fm.io import Volume

_MIN_SLICES = 8
_MIN_EXTENT_MM = 40.0  # thinner than this along an axis: a slab, not a head
_MAX_HEAD_EXTENT_MM = 400.0  # longer than this along any axis: more than a head
_MAX_HEAD_AREA_MM = 330.0  # wider than this along two axes: a body's cross-section
_HEAD_PARTS = ("", "HEAD", "BRAIN", "SKULL", "HEADNECK", "HEAD_NECK", "NECK")  # DICOM BodyPartExamined
_CT_AIR_HU = -500.0
_BRAIN_ML = (600.0, 2500.0)
_ATLAS_SCALE = (0.6, 1.6)  # linear scale of the scan-to-MNI map
_MIN_GREY_WHITE_SD = 0.3  # every MRI contrast tells grey from white matter; a CT barely does


class OutOfScopeError(InputFileError):
    """The file is readable, but not a brain MRI the pipeline is for."""


@dataclasses.dataclass(frozen=True)
class BrainEvidence:
    """What brain extraction found, for `check_brain`."""

    brain_volume_ml: float
    atlas_scale: float  # cube root of the scan-to-MNI map's determinant
    shell_to_brain: float | None  # median just outside the brain / the brain's 95th percentile; None if brain-extracted
    grey_white_contrast: float  # fitted grey-white mean difference in pooled SD (largest over the contrasts)


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
        reasons.append(
            f"2D: {' x '.join(map(str, volume.shape))} voxels, {' x '.join(f'{e:.0f}' for e in extent)} mm"
        )
    elif extent.max() > _MAX_HEAD_EXTENT_MM or np.sort(extent)[-2] > _MAX_HEAD_AREA_MM:
        reasons.append(f"field of view {' x '.join(f'{e:.0f}' for e in extent)} mm, larger than a head")
    step = max(1, volume.array.size // 2_000_000)
    sample = volume.array.reshape(-1)[::step]
    if float(np.mean(sample < _CT_AIR_HU)) > 0.05:
        reasons.append(f"intensities down to {float(sample.min()):.0f} look like CT Hounsfield units (air at -1000)")
    return reasons


def check_brain(evidence: BrainEvidence) -> list[str]:
    """Reasons the brain extraction's findings are not those of a brain MRI (empty: none)."""
    reasons = []
    low, high = _BRAIN_ML
    if not low <= evidence.brain_volume_ml <= high:
        reasons.append(f"brain extraction found {evidence.brain_volume_ml:.0f} mL of brain (a brain is {low:.0f}-{high:.0f} mL)")
    low, high = _ATLAS_SCALE
    if not low <= evidence.atlas_scale <= high:
        reasons.append(f"the brain atlas fits only at {evidence.atlas_scale:.2f}x its size")
    if evidence.shell_to_brain is not None and evidence.shell_to_brain > 1.0:
        reasons.append("a shell brighter than the brain surrounds it, as bone does in CT")
    if evidence.grey_white_contrast < _MIN_GREY_WHITE_SD:
        reasons.append(f"no grey-white matter contrast ({evidence.grey_white_contrast:.2f} SD)")
    return reasons


def enforce(path: str, reasons: list[str], force: bool) -> None:
    """Refuse with one line naming what was seen, unless forced."""
    if reasons and not force:
        raise OutOfScopeError(path, "not a brain MRI this pipeline is for: " + "; ".join(reasons) + " (--force reports it anyway)")


def out_of_scope_notice(reasons: list[str]) -> str:
    return "Outside intended use (" + "; ".join(reasons) + "): reported only because it was forced; the results are not meaningful."
