"""Several co-registered contrasts of one session, as one set of channels on one grid.

`load_session(paths, contrasts)` reads each scan (fm.core.io.load_volume), names its contrast (given,
else guessed from the DICOM SeriesDescription or the file name, fm.core.contrasts), and puts every scan
on the first one's grid: scans already on it are used as they are, others are resampled
(trilinear, in RAS millimetres through both affines) and the session says so. Scans that do not
overlap the first are refused: they are not of the same head position, or not registered.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np

from fm.core.contrasts import check_contrast_names, guess_contrast
from fm.core.errors import InputError, InputFileError
from fm.core.io import Volume, load_volume, resample_array

_MIN_OVERLAP = 0.5  # share of the first scan's field of view another scan must cover


@dataclasses.dataclass
class Session:
    volumes: list[Volume]  # all on the first volume's grid
    contrasts: tuple[str, ...]
    contrasts_guessed: bool
    resampled: tuple[str, ...]  # files that were resampled onto the first one's grid
    files: tuple[str, ...]  # each scan's own file, in order (a resampled volume's source is the first's grid)

    @property
    def reference(self) -> Volume:
        return self.volumes[0]

    def channels(self) -> np.ndarray:
        """(C, X, Y, Z) float32: the contrasts stacked on the reference grid."""
        return np.stack([v.array.astype(np.float32, copy=False) for v in self.volumes])


def load_session(
    scans: list[str | os.PathLike | Volume],
    contrasts: list[str] | None = None,
    load: Callable[..., Volume] = load_volume,
) -> Session:
    """Read scans of one session (paths or Volumes) onto the first scan's grid."""
    if not scans:
        raise InputError("no scan given")
    if contrasts is not None and len(contrasts) != len(scans):
        raise InputError(f"{len(contrasts)} contrast names for {len(scans)} scans")
    volumes = [scan if isinstance(scan, Volume) else load(scan) for scan in scans]
    guessed = contrasts is None
    names = tuple(contrasts) if contrasts is not None else tuple(_guess(v) for v in volumes)
    check_contrast_names(names)
    repeated = {n for n in names if names.count(n) > 1 and n != "unknown"}
    if repeated:
        raise InputError(
            f"contrast {', '.join(sorted(repeated))} given twice; name each scan's contrast with --contrasts"
        )
    reference = volumes[0]
    on_grid, resampled = [reference], []
    for volume in volumes[1:]:
        if volume.shape == reference.shape and np.allclose(volume.affine, reference.affine, atol=1e-3):
            on_grid.append(volume)
            continue
        _check_overlap(volume, reference)
        on_grid.append(reference.with_array(resample_onto(volume, reference)))
        resampled.append(volume.source.path)
    return Session(on_grid, names, guessed, tuple(resampled), tuple(v.source.path for v in volumes))


def _guess(volume: Volume) -> str:
    description = (volume.meta.get("dicom_series") or {}).get("description") or ""
    from_series = guess_contrast(description) if description else "unknown"
    return from_series if from_series != "unknown" else guess_contrast(Path(volume.source.path).name)


def resample_onto(volume: Volume, reference: Volume) -> np.ndarray:
    """`volume`'s intensities at the voxels of `reference` (trilinear; its minimum outside `volume`)."""
    array = volume.array.astype(np.float32, copy=False)
    return resample_array(array, volume.affine, reference.shape, reference.affine, fill=float(array.min()))


def _check_overlap(volume: Volume, reference: Volume) -> None:
    lo, hi = reference.ras_bounds_mm()
    other_lo, other_hi = volume.ras_bounds_mm()
    shared = np.clip(np.minimum(hi, other_hi) - np.maximum(lo, other_lo), 0, None)
    overlap = float(np.prod(shared) / np.prod(hi - lo))
    if overlap < _MIN_OVERLAP:
        raise InputFileError(
            volume.source.path,
            f"covers {overlap:.0%} of {Path(reference.source.path).name}'s field of view; the scans of a session "
            "must be co-registered (same head position)",
        )
