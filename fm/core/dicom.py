"""DICOM series: find the series in a folder, a .zip or a single (multi-frame) file, pick one, and
assemble it into a 3D array with a voxel -> RAS affine.

Geometry comes only from ImagePositionPatient / ImageOrientationPatient / PixelSpacing (or their
functional-group equivalents in enhanced multi-frame objects). Slices are ordered by their
position along the slice normal, never by file name or InstanceNumber. DICOM patient
coordinates are LPS; the affine is converted to RAS exactly once, at the end of `_assemble`.
Series that cannot be put on a regular grid (gantry tilt, missing slices, uneven spacing, mixed
sizes or orientations, repeated positions) are refused rather than silently mis-placed.

Only geometry and acquisition tags survive into `meta` (see `KEPT_TAGS`): names, IDs, dates,
UIDs and every other tag are dropped.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pydicom
from nibabel.orientations import aff2axcodes
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from fm.core.errors import InputFileError
from fm.core.limits import check_voxel_budget, voxel_budget

# DICOM and ITK store patient coordinates in LPS; flipping x and y converts either way.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Slice gaps may differ from their median by this fraction before a series is refused.
SLICE_SPACING_TOLERANCE = 0.01
#: Stacks sheared by more than this (degrees) along the slice normal are a gantry tilt.
TILT_TOLERANCE_DEG = 0.1

#: The only attributes of a source header that fm.clinical.deidentify keeps for the DICOM SEG and SR
#: drawn on its frames: the image's kind, pixel layout and place in the patient, no identifiers
#: (its UIDs are replaced there). Both lists of kept attributes live here, beside the reader.
FRAME_TAGS = (
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImageType",
)
#: The only DICOM attributes copied into Volume.meta: geometry and acquisition, no identifiers.
KEPT_TAGS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SeriesDescription",
    "SeriesNumber",
    "BodyPartExamined",
    "ImageType",
    "MagneticFieldStrength",
    "MRAcquisitionType",
    "ScanningSequence",
    "SequenceVariant",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "KVP",
    "ConvolutionKernel",
    "SliceThickness",
    "PixelSpacing",
    "ImageOrientationPatient",
)


@dataclasses.dataclass
class _Frame:
    """One 2D image of a series: a single-frame file, or one frame of a multi-frame object."""

    file: str  # path or zip member, for messages and for reading pixels
    frame_index: int | None  # index within a multi-frame object; None for single-frame files
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient: row cosine (3), column cosine (3)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    rows: int
    columns: int
    slope: float
    intercept: float


@dataclasses.dataclass
class SeriesInfo:
    """A series found in a folder: what `list_series` shows so a user can choose."""

    index: int  # 1-based position in the listing
    uid: str
    number: int | None
    description: str
    modality: str | None
    frames: list[_Frame]
    header: pydicom.Dataset  # header of one of its files, pixel data not read

    @property
    def size(self) -> str:
        f = self.frames[0]
        return f"{f.columns}x{f.rows}x{len(self.frames)}"

    @property
    def orientation(self) -> str:
        row, col = self.frames[0].orientation[:3], self.frames[0].orientation[3:]
        affine = np.eye(4)
        affine[:3, :3] = np.column_stack([row, col, np.cross(row, col)])
        return "".join(aff2axcodes(LPS_TO_RAS @ affine))

    def describe(self) -> str:
        number = "-" if self.number is None else str(self.number)
        return (
            f"{self.index}. series {number} {self.description or '(no description)'!r}: "
            f"{self.modality or '?'} {self.size} {self.orientation} uid={self.uid}"
        )


@dataclasses.dataclass
class SeriesData:
    array: np.ndarray  # (columns, rows, slices) = (i, j, k), float32, rescaled
    affine_ras: np.ndarray
    modality: str | None
    meta: dict[str, Any]


class MultipleSeriesError(InputFileError):
    """The folder holds several series and none was chosen; `.series` lists them."""

    def __init__(self, path, series: list[SeriesInfo]):
        self.series = series
        listing = "\n".join("  " + s.describe() for s in series)
        super().__init__(
            path,
            f"holds {len(series)} DICOM series; choose one with series= (CLI: --series N or UID):\n{listing}",
        )


def has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def list_series(path: str | Path) -> list[SeriesInfo]:
    """The image series in a DICOM folder, .zip or file, ordered by series number."""
    with _Source(Path(path), voxel_budget()) as source:
        return _discover(source)


def read_series(
    path: str | Path,
    series: str | int | None = None,
    max_voxels: int | None = None,
    spacing_tolerance: float = SLICE_SPACING_TOLERANCE,
) -> SeriesData:
    """Assemble one series into an (i, j, k) array and voxel -> RAS affine."""
    path = Path(path)
    max_voxels = voxel_budget(max_voxels)
    with _Source(path, max_voxels) as source:
        found = _discover(source)
        chosen = _choose(path, found, series)
        frames, affine_lps, slice_step = _assemble(path, chosen, spacing_tolerance)
        check_voxel_budget(path, (frames[0].columns, frames[0].rows, len(frames)), max_voxels)
        array = _read_pixels(path, source, frames)
    meta = _deidentified(chosen.header)
    meta["dicom_series"] = {
        "index": chosen.index,
        "of": len(found),
        "number": chosen.number,
        "description": chosen.description,
        "slices": len(frames),
    }
    meta["slice_spacing_mm"] = round(float(slice_step), 6)
    return SeriesData(array, LPS_TO_RAS @ affine_lps, chosen.modality, meta)


@dataclasses.dataclass
class SourceSeries:
    """The headers (no pixels) of the series a volume was read from, for the outputs that point
    back at it (DICOM SEG and SR). Slice k of the assembled (i, j, k) grid is frame
    `frames[k] = (dataset index, frame index or None for a single-frame file)`."""

    datasets: list[pydicom.Dataset]
    frames: list[tuple[int, int | None]]
    affine_ras: np.ndarray


#: Patient and study attributes an object derived from a series carries (type 2: present, possibly
#: empty). A source that lacks one gives an empty value, what the standard asks for when it is
#: unknown, never an invented one.
DERIVED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def read_source_headers(path: str | Path, series: str | int | None = None) -> SourceSeries:
    """The headers of the series `read_series(path, series)` assembles, in its slice order, each
    with the DERIVED_TYPE2 attributes present."""
    path = Path(path)
    with _Source(path, voxel_budget()) as source:
        chosen = _choose(path, _discover(source), series)
        frames, affine_lps, _ = _assemble(path, chosen, SLICE_SPACING_TOLERANCE)
        members = list(dict.fromkeys(f.file for f in frames))
        datasets = [source.read(member, header_only=True) for member in members]
    for ds in datasets:
        for keyword in DERIVED_TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")
    position = {member: i for i, member in enumerate(members)}
    frame_map = [(position[f.file], f.frame_index) for f in frames]
    return SourceSeries(datasets, frame_map, LPS_TO_RAS @ affine_lps)


# ----------------------------------------------------------------------------------------------
# Finding files and series


class _Source:
    """A folder, a .zip or a single file, yielding (name, dataset reader) for every member."""

    def __init__(self, path: Path, max_voxels: int):
        self.path = path
        self.max_voxels = max_voxels
        self._zip: zipfile.ZipFile | None = None

    def __enter__(self) -> "_Source":
        if self.path.is_file() and self.path.suffix.lower() == ".zip":
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as err:
                raise InputFileError(self.path, f"is not a readable zip archive ({err})") from None
            # Checked from the archive's directory before inflating anything: a few MB of zeros can
            # inflate to gigabytes. Allow 4 bytes a voxel plus room for headers and other files.
            expanded = sum(i.file_size for i in self._zip.infolist())
            allowed = 4 * self.max_voxels + 64 * 2**20
            if expanded > allowed:
                raise InputFileError(
                    self.path,
                    f"archive expands to {expanded / 2**30:.1f} GiB, more than the voxel budget allows "
                    f"({allowed / 2**30:.1f} GiB; raise it with max_voxels= / --max-voxels / FM_MAX_VOXELS)",
                )
        return self

    def __exit__(self, *exc) -> None:
        if self._zip is not None:
            self._zip.close()

    @property
    def is_single_file(self) -> bool:
        return self._zip is None and self.path.is_file()

    def members(self) -> list[str]:
        if self._zip is not None:
            return sorted(i.filename for i in self._zip.infolist() if not i.is_dir())
        if self.path.is_dir():
            return sorted(str(p) for p in self.path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [str(self.path)]

    def read(self, member: str, header_only: bool) -> pydicom.Dataset:
        try:
            if self._zip is not None:
                with self._zip.open(member) as f:
                    if header_only:  # the stream is seekable: only the header is inflated
                        return pydicom.dcmread(f, stop_before_pixels=True)
                    return pydicom.dcmread(io.BytesIO(f.read()))
            return pydicom.dcmread(member, stop_before_pixels=header_only)
        except (zipfile.BadZipFile, zlib.error) as err:
            raise InputFileError(self.path, f"{member}: corrupt archive member ({err})") from None


def _iter_headers(source: _Source) -> Iterator[tuple[str, pydicom.Dataset]]:
    for member in source.members():
        try:
            yield member, source.read(member, header_only=True)
        except InvalidDicomError:
            continue  # not a DICOM file (a README, a thumbnail): ignore it
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise InputFileError(source.path, f"{member}: corrupt DICOM header ({err})") from None


def _discover(source: _Source) -> list[SeriesInfo]:
    groups: dict[str, list[_Frame]] = defaultdict(list)
    headers: dict[str, pydicom.Dataset] = {}
    looked_at = without_geometry = 0
    numbers: dict[str, int | None] = {}
    for member, ds in _iter_headers(source):
        looked_at += 1
        try:
            frames = _frames_of(source.path, member, ds)
            uid = str(ds.get("SeriesInstanceUID", "unknown"))
            number = ds.get("SeriesNumber")
            number = int(number) if number not in (None, "") else None
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, struct.error) as err:
            if isinstance(err, InputFileError):
                raise
            raise InputFileError(source.path, f"{member}: malformed DICOM attribute ({err})") from None
        if not frames:
            without_geometry += 1
            continue
        groups[uid].extend(frames)
        headers.setdefault(uid, ds)
        numbers.setdefault(uid, number)
    if not groups and source.is_single_file and looked_at == 0:
        raise InputFileError(source.path, "is not a DICOM file (no DICM preamble or readable header)")
    if not groups:
        what = "folder" if source.path.is_dir() else "file"
        raise InputFileError(
            source.path,
            f"no DICOM images with patient geometry found in this {what} "
            f"({len(source.members())} files, {looked_at} DICOM, {without_geometry} without "
            "ImagePositionPatient/ImageOrientationPatient/PixelSpacing)",
        )
    infos = []
    for uid, frames in groups.items():
        ds = headers[uid]
        infos.append(
            SeriesInfo(
                index=0,
                uid=uid,
                number=numbers[uid],
                description=str(ds.get("SeriesDescription", "")),
                modality=str(ds.Modality) if ds.get("Modality") else None,
                frames=frames,
                header=ds,
            )
        )
    infos.sort(key=lambda s: (s.number is None, s.number or 0, s.description, s.uid))
    for i, info in enumerate(infos, start=1):
        info.index = i
    return infos


def _choose(path: Path, found: list[SeriesInfo], series: str | int | None) -> SeriesInfo:
    if series is None:
        if len(found) > 1:
            raise MultipleSeriesError(path, found)
        return found[0]
    key = str(series)
    for info in found:
        if key == info.uid or (key.isdigit() and int(key) == info.index):
            return info
    listing = "\n".join("  " + s.describe() for s in found)
    raise InputFileError(path, f"has no series {key!r} (give its 1-based index or its UID):\n{listing}")


def _frames_of(path: Path, member: str, ds: pydicom.Dataset) -> list[_Frame]:
    """Geometry of every frame in one DICOM object; [] for objects that are not slices."""
    if "Rows" not in ds:
        return []  # DICOMDIR, structured report, presentation state: no image

    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputFileError(
            path, f"{member}: colour images ({ds.SamplesPerPixel} samples per pixel) are not supported"
        )
    if "PerFrameFunctionalGroupsSequence" in ds:
        frames = _enhanced_frames(path, member, ds)
    elif int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputFileError(
            path, f"{member}: multi-frame image without per-frame geometry (functional groups); cannot place its frames"
        )
    elif not all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")):
        return []
    else:
        frames = [_single_frame(path, member, ds)]
    for frame in frames:
        row, col = frame.orientation[:3], frame.orientation[3:]
        if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
            raise InputFileError(
                path, f"{member}: ImageOrientationPatient {frame.orientation.tolist()} is not two orthonormal vectors"
            )
    return frames


def _single_frame(path: Path, member: str, ds: pydicom.Dataset) -> _Frame:
    return _Frame(
        file=member,
        frame_index=None,
        position=_floats(ds.ImagePositionPatient, 3, path, member, "ImagePositionPatient"),
        orientation=_floats(ds.ImageOrientationPatient, 6, path, member, "ImageOrientationPatient"),
        pixel_spacing=tuple(_floats(ds.PixelSpacing, 2, path, member, "PixelSpacing")),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        slope=float(ds.get("RescaleSlope", 1) or 1),
        intercept=float(ds.get("RescaleIntercept", 0) or 0),
    )


def _enhanced_frames(path: Path, member: str, ds: pydicom.Dataset) -> list[_Frame]:
    shared_groups = ds.get("SharedFunctionalGroupsSequence") or [None]
    shared = shared_groups[0]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    declared = int(ds.get("NumberOfFrames", 0) or 0)
    if declared != len(per_frame):
        raise InputFileError(
            path, f"{member}: NumberOfFrames is {declared} but {len(per_frame)} per-frame functional groups are present"
        )
    frames = []
    for index, group in enumerate(per_frame):

        def attr(sequence: str, keyword: str, default=None):
            for source in (group, shared):
                items = source.get(sequence) if source is not None else None
                if items and keyword in items[0]:
                    return items[0][keyword].value
            if default is None:
                raise InputFileError(path, f"{member}: frame {index + 1} has no {sequence} > {keyword}")
            return default

        frames.append(
            _Frame(
                file=member,
                frame_index=index,
                position=_floats(
                    attr("PlanePositionSequence", "ImagePositionPatient"), 3, path, member, "ImagePositionPatient"
                ),
                orientation=_floats(
                    attr("PlaneOrientationSequence", "ImageOrientationPatient"),
                    6,
                    path,
                    member,
                    "ImageOrientationPatient",
                ),
                pixel_spacing=tuple(
                    _floats(attr("PixelMeasuresSequence", "PixelSpacing"), 2, path, member, "PixelSpacing")
                ),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                slope=float(attr("PixelValueTransformationSequence", "RescaleSlope", 1.0)),
                intercept=float(attr("PixelValueTransformationSequence", "RescaleIntercept", 0.0)),
            )
        )
    return frames


def _floats(value, n: int, path: Path, member: str, keyword: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        out = np.array([])
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InputFileError(path, f"{member}: {keyword} is malformed ({value!r})")
    return out


# ----------------------------------------------------------------------------------------------
# Geometry and pixels


def _assemble(path: Path, series: SeriesInfo, tolerance: float) -> tuple[list[_Frame], np.ndarray, float]:
    """Order frames along the slice normal and check they form one regular grid."""
    frames = series.frames
    sizes = {(f.rows, f.columns) for f in frames}
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise InputFileError(path, f"series {series.index} mixes image sizes ({listed} rows x columns)")
    first = frames[0]
    if any(not np.allclose(f.orientation, first.orientation, atol=1e-4) for f in frames):
        raise InputFileError(
            path, f"series {series.index} mixes slice orientations (e.g. a localizer inside the series)"
        )
    if any(not np.allclose(f.pixel_spacing, first.pixel_spacing, rtol=1e-4) for f in frames):
        raise InputFileError(path, f"series {series.index} mixes pixel spacings")
    if len(frames) < 2:
        raise InputFileError(path, "holds a single 2D image; a 3D volume needs the whole series (pass its folder)")
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_cos, col_cos)
    frames = sorted(frames, key=lambda f: float(f.position @ normal))
    positions = np.array([f.position for f in frames])
    along = positions @ normal
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        k = int(np.argmin(gaps))
        raise InputFileError(
            path,
            f"series {series.index}: several images share slice position {along[k]:.3f} mm "
            "(several echoes, phases or time points in one series?)",
        )
    span = positions[-1] - positions[0]
    # Every slice must sit on the line through the first one along the normal. A drift that grows
    # with distance is a gantry tilt; anything else is a displaced slice.
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    tilt = np.degrees(np.arctan2(np.linalg.norm(in_plane[-1]), along[-1] - along[0]))
    if tilt > TILT_TOLERANCE_DEG:
        raise InputFileError(
            path,
            f"series {series.index} has a gantry tilt of {tilt:.2f} degrees (slices are sheared, not stacked "
            "along their normal); resample it to a regular grid first",
        )
    limit = 0.1 * min(first.pixel_spacing)
    drift = np.linalg.norm(in_plane, axis=1)
    if drift.max() > limit:
        k = int(np.argmax(drift))
        raise InputFileError(
            path,
            f"series {series.index}: the slice at position {along[k]:.3f} mm is displaced {drift[k]:.2f} mm "
            "sideways from the others; the images do not form one stack",
        )
    step = float(np.median(gaps))
    if np.any(gaps > 1.5 * step):
        k = int(np.argmax(gaps))
        missing = int(round(gaps[k] / step)) - 1
        raise InputFileError(
            path,
            f"series {series.index} is missing slices: a {gaps[k]:.3f} mm gap after position {along[k]:.3f} mm "
            f"where {step:.3f} mm is expected (about {max(missing, 1)} slices missing)",
        )
    deviation = np.max(np.abs(gaps - step)) / step
    if deviation > tolerance:
        raise InputFileError(
            path,
            f"series {series.index} has non-uniform slice spacing ({gaps.min():.4f} to {gaps.max():.4f} mm, "
            f"tolerance {tolerance:.0%})",
        )
    row_spacing, column_spacing = first.pixel_spacing
    affine_lps = np.eye(4)
    # Column i moves along a row (row cosine, spaced by the column spacing); j moves down a column.
    affine_lps[:3, 0] = row_cos * column_spacing
    affine_lps[:3, 1] = col_cos * row_spacing
    affine_lps[:3, 2] = span / (len(frames) - 1)
    affine_lps[:3, 3] = positions[0]
    return frames, affine_lps, step


def _read_pixels(path: Path, source: _Source, frames: list[_Frame]) -> np.ndarray:
    first = frames[0]
    out = np.empty((first.columns, first.rows, len(frames)), dtype=np.float32)
    cached_file, cached = None, None
    for k, frame in enumerate(frames):
        if frame.file != cached_file:
            cached_file, cached = frame.file, _decode(path, source, frame.file)
        ds, pixels = cached
        image = pixels[frame.frame_index] if frame.frame_index is not None else pixels
        if frame.frame_index is None and "ModalityLUTSequence" in ds:
            values = apply_modality_lut(image, ds)
        else:
            values = image.astype(np.float64) * frame.slope + frame.intercept
        out[:, :, k] = values.T  # pixel arrays are [row, column]; ours are [column, row]
    return out


def _decode(path: Path, source: _Source, member: str) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = source.read(member, header_only=False)
    try:
        pixels = ds.pixel_array
    except MemoryError:
        raise
    except Exception as err:  # pydicom raises many types for missing decoders and bad data
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        raise InputFileError(
            path, f"{member}: cannot decode pixel data (transfer syntax {name}): {str(err).splitlines()[0]}"
        ) from None
    if (
        "NumberOfFrames" in ds
        and int(ds.NumberOfFrames) == 1
        and pixels.ndim == 2
        and "PerFrameFunctionalGroupsSequence" in ds
    ):
        pixels = pixels[None]
    return ds, pixels


def _deidentified(ds: pydicom.Dataset) -> dict[str, Any]:
    meta = {}
    for keyword in KEPT_TAGS:
        try:
            value = ds[keyword].value if keyword in ds else None
        except (ValueError, TypeError, struct.error):
            continue  # a malformed informational tag is left out rather than failing the load
        if value not in (None, ""):
            meta[keyword] = _jsonable(value)
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is not None:
        meta["TransferSyntax"] = syntax.name
    return meta


def _jsonable(value):
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float)):
        return int(value) if isinstance(value, int) else float(value)
    return str(value)
