"""Scan I/O: one `Volume` type, loaders for every format the package reads, and a saver that puts
derived arrays (masks, probability maps) back on the input's own grid.

Conventions, used everywhere in the package and never mixed:

- `Volume.array` is indexed ``[i, j, k]``: the voxel axes in the order of the affine's columns
  (nibabel's convention, "x-y-z"), not the z-y-x order of SimpleITK or DICOM pixel arrays.
- `Volume.affine` maps voxel indices ``(i, j, k, 1)`` to RAS+ millimetres: +x towards the
  patient's Right, +y Anterior, +z Superior. Left and right are only ever read from it.
- On load the axes are permuted and flipped (never resampled) to the layout closest to RAS, so
  array axis 0 runs left -> right, axis 1 posterior -> anterior, axis 2 inferior -> superior.
  The file's own layout is kept in `Volume.source`, and `save_volume` writes back onto it by
  default, so a mask made from a scan overlays that scan exactly in any viewer.

Readers: NIfTI-1/2 and FreeSurfer MGH/MGZ with nibabel, NRRD and MetaImage (MHA/MHD) with
SimpleITK, DICOM series with pydicom (see `fm.core.dicom`). Every problem with a user's file is raised
as `InputFileError` naming the file and the problem, and header sizes are checked against a
voxel budget before any voxel data is read.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from nibabel.spatialimages import HeaderDataError
from scipy import ndimage

from fm.core import dicom
from fm.core.dicom import LPS_TO_RAS
from fm.core.errors import InputError, InputFileError, OutputExistsError, look_up
from fm.core.limits import check_voxel_budget, voxel_budget

_NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
_ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_DICOM_SUFFIXES = (".dcm", ".zip")
READABLE_SUFFIXES = _NIBABEL_SUFFIXES + _ITK_SUFFIXES + _DICOM_SUFFIXES
WRITABLE_SUFFIXES = _NIBABEL_SUFFIXES + _ITK_SUFFIXES
#: save_volume's grid= choices: the input file's own grid, or the RAS-closest layout held in memory
GRIDS = ("source", "ras")

sitk.ProcessObject_SetGlobalWarningDisplay(False)  # ITK warnings become our errors, not stderr noise


@dataclasses.dataclass(frozen=True)
class SourceGrid:
    """Where a volume came from and how its voxels were laid out in the file."""

    path: str
    format: str
    affine: np.ndarray  # voxel -> RAS mm, for the array as stored in the file
    files: tuple[str, ...] = ()  # every file the scan was read from (a .mhd and its .raw, ...)

    @property
    def orientation(self) -> str:
        """Orientation code of the file's voxel axes, e.g. 'LPS' for an axial DICOM series."""
        return "".join(aff2axcodes(self.affine))

    def to_ras_transform(self) -> np.ndarray:
        """nibabel orientation transform from the file's axes to the RAS-closest layout."""
        return ornt_transform(io_orientation(self.affine), axcodes2ornt("RAS"))


@dataclasses.dataclass
class Volume:
    """A 3D scan: voxel array in RAS-closest layout, voxel -> RAS mm affine, and de-identified metadata.

    `array` is float32 for loaded images; derived volumes made with `with_array` may hold labels.
    """

    array: np.ndarray
    affine: np.ndarray
    source: SourceGrid
    modality: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes (lengths of the affine's columns)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Orientation code of the array axes: 'RAS' unless the scan is oblique to them."""
        return "".join(aff2axcodes(self.affine))

    def ras_bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """RAS extent of the voxel grid (outer voxel edges), as (min xyz, max xyz) in mm."""
        corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in self.shape], indexing="ij"))
        corners = corners.reshape(3, -1)
        ras = self.affine[:3, :3] @ corners + self.affine[:3, 3:4]
        return ras.min(axis=1), ras.max(axis=1)

    def voxel_to_ras(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (..., 3) -> RAS mm (..., 3)."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def with_array(self, array: np.ndarray, **meta: Any) -> "Volume":
        """A derived volume (mask, probability map) on this volume's grid, same source."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"derived array has shape {array.shape}, the volume has {self.array.shape}")
        return Volume(array, self.affine.copy(), self.source, self.modality, {**self.meta, **meta})

    def from_source_layout(self, array: np.ndarray, **meta: Any) -> "Volume":
        """A derived volume from an array laid out like the source file (the inverse of to_source_layout)."""
        return self.with_array(apply_orientation(np.asarray(array), self.source.to_ras_transform()), **meta)

    def to_source_layout(self) -> np.ndarray:
        """The array permuted and flipped back to the layout of the source file."""
        back = ornt_transform(axcodes2ornt("RAS"), io_orientation(self.source.affine))
        return apply_orientation(self.array, back)

    def summary(self) -> dict[str, Any]:
        """What `fm info` prints, as plain JSON-able values."""
        finite = self.array[np.isfinite(self.array)] if self.array.size else self.array
        lo, hi = self.ras_bounds_mm()
        return {
            "file": self.source.path,
            "format": self.source.format,
            "shape": list(self.shape),
            "source_shape": list(self.to_source_layout().shape),
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "source_orientation": self.source.orientation,
            "orientation": self.orientation,
            "ras_bounds_mm": {"min": [round(float(v), 3) for v in lo], "max": [round(float(v), 3) for v in hi]},
            "modality": self.modality,
            "intensity": {
                "min": float(finite.min()) if finite.size else None,
                "max": float(finite.max()) if finite.size else None,
                "mean": float(finite.mean()) if finite.size else None,
            },
            "meta": self.meta,
        }


# ----------------------------------------------------------------------------------------------
# Loading


def load_volume(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    series: str | int | None = None,
    modality: str | None = None,
    max_voxels: int | None = None,
) -> Volume:
    """Read a scan into a `Volume` in RAS-closest layout.

    path: a NIfTI (.nii, .nii.gz), MGH/MGZ, NRRD, MHA/MHD file, a DICOM file, a folder of DICOM
        files or a .zip of one.
    frame: which volume of a 4D file to take (required when it holds more than one).
    series: for DICOM folders holding several series, which one: its 1-based index in
        `fm.core.dicom.list_series` or its SeriesInstanceUID.
    modality: override the modality (e.g. "MR", "CT"); DICOM files state their own.
    max_voxels: refuse files whose header claims more voxels than this (default
        FM_MAX_VOXELS or fm.core.limits.DEFAULT_MAX_VOXELS), before reading any voxel data.
    """
    path = Path(path)
    budget = voxel_budget(max_voxels)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes)")
    kind = input_format(path)
    if kind == "dicom":
        if frame is not None:
            raise InputFileError(path, "frame= applies to 4D files, not to DICOM series")
        series_data = dicom.read_series(path, series=series, max_voxels=budget)
        array, affine, fmt = series_data.array, series_data.affine_ras, "DICOM"
        meta = series_data.meta
        modality = modality or series_data.modality
    else:
        if series is not None:
            raise InputFileError(path, "series= applies to DICOM folders only")
        reader = _read_nibabel if kind == "nibabel" else _read_itk
        array, affine, fmt, meta = reader(path, frame, budget)
    return _canonical_volume(path, array, affine, fmt, modality, meta)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def input_format(path: Path) -> str:
    """How a path is read: "dicom" (a folder, .zip or DICOM file), "nibabel" or "itk"."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    suffix = _suffix(path)
    if suffix in _NIBABEL_SUFFIXES:
        return "nibabel"
    if suffix in _ITK_SUFFIXES:
        return "itk"
    if suffix in _DICOM_SUFFIXES or dicom.has_dicom_preamble(path):
        return "dicom"
    raise InputFileError(
        path,
        f"unsupported file type {suffix or '(no extension)'!r}; "
        f"readable: {', '.join(READABLE_SUFFIXES)} or a folder of DICOM files",
    )


def _spatial_shape(path: Path, shape: tuple[int, ...], frame: int | None) -> tuple[int, ...]:
    """Validate dimensionality; returns the shape with trailing singleton dimensions dropped."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if 0 in shape:
        raise InputFileError(path, f"has no voxels along a dimension (shape {shape})")
    if len(shape) < 3 or min(shape[:3]) <= 1:
        raise InputFileError(path, f"holds 2D data (shape {shape}); a 3D volume is needed")
    if len(shape) > 4:
        raise InputFileError(path, f"has {len(shape)} dimensions (shape {shape}); at most 4 are supported")
    if len(shape) == 4:
        if frame is None:
            raise InputFileError(
                path, f"is 4D with {shape[3]} volumes; choose one with frame= (CLI: --frame N, 0-based)"
            )
        if not 0 <= frame < shape[3]:
            raise InputFileError(path, f"frame {frame} is out of range: the file has {shape[3]} volumes (0-based)")
    elif frame not in (None, 0):
        raise InputFileError(path, f"frame {frame} requested, but the file holds a single 3D volume")
    return shape


def _check_spacing(path: Path, spacing) -> None:
    spacing = np.asarray(spacing, dtype=float)[:3]
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputFileError(
            path, f"voxel spacing {tuple(float(s) for s in spacing)} mm is invalid: it must be finite and positive"
        )


def _read_nibabel(path: Path, frame: int | None, budget: int):
    suffix = _suffix(path)
    raw_header = _raw_nifti_header(path, suffix)
    if raw_header is not None:
        # Validate the header as written: nibabel silently turns a zero pixdim into 1 on load.
        _check_spacing(path, raw_header["pixdim"][1:4])
        if int(raw_header["qform_code"]) == 0 and int(raw_header["sform_code"]) == 0:
            raise InputFileError(
                path,
                "header has no orientation (qform_code = sform_code = 0), so left and right are unknown; "
                "set a qform or sform (e.g. nibabel set_qform, fslorient) and try again",
            )
    try:
        img = nib.load(str(path))
    except (ImageFileError, HeaderDataError, EOFError, OSError, zlib.error, ValueError) as err:
        raise InputFileError(path, f"corrupt or unreadable header ({_first_line(err)})") from None
    shape = _spatial_shape(path, img.shape, frame)
    check_voxel_budget(path, img.shape, budget)
    meta: dict[str, Any] = {}
    if raw_header is not None:
        fmt = "NIfTI-2" if isinstance(img, nib.Nifti2Image) else "NIfTI-1"
        meta.update(qform_code=int(raw_header["qform_code"]), sform_code=int(raw_header["sform_code"]))
        if suffix == ".nii":
            _check_uncompressed_size(path, img)
    else:
        fmt = "MGH" if suffix == ".mgh" else "MGZ"
        _check_spacing(path, img.header.get_zooms()[:3])
    if np.issubdtype(img.get_data_dtype(), np.complexfloating) or img.get_data_dtype().fields:
        raise InputFileError(path, f"voxel type {img.get_data_dtype()} is not a scalar real number")
    try:
        if len(shape) == 4 and len(img.shape) == 4:
            data = np.asarray(img.dataobj[..., frame])  # reads only that volume where the format allows
        else:
            data = np.asarray(img.dataobj).reshape(shape)
            data = data[..., frame] if len(shape) == 4 else data
    except (EOFError, OSError, zlib.error, ValueError) as err:
        raise InputFileError(path, f"truncated or corrupt voxel data ({_first_line(err)})") from None
    return data, np.asarray(img.affine, dtype=float), fmt, meta


def _raw_nifti_header(path: Path, suffix: str):
    """The NIfTI header exactly as stored (None for MGH/MGZ), after checking the magic bytes so a
    wrong file type is named plainly instead of failing somewhere inside a parser."""
    with open(path, "rb") as f:
        head = f.read(540)
    if suffix in (".nii.gz", ".mgz"):
        if head[:2] != b"\x1f\x8b":
            raise InputFileError(path, f"is not gzip-compressed (wrong magic bytes), although it is named {suffix}")
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(540)
        except (OSError, EOFError, zlib.error) as err:
            raise InputFileError(path, f"corrupt gzip stream ({_first_line(err)})") from None
    if suffix not in (".nii", ".nii.gz"):
        return None
    if len(head) >= 348 and head[344:348] == b"ni1\0":
        raise InputFileError(path, "is the header of a two-file NIfTI (.hdr/.img); convert it to a single .nii")
    if len(head) >= 348 and head[344:348] == b"n+1\0":
        return nib.Nifti1Header.from_fileobj(io.BytesIO(head), check=False)
    if len(head) >= 540 and head[4:8] == b"n+2\0":
        return nib.Nifti2Header.from_fileobj(io.BytesIO(head), check=False)
    if len(head) < 348:
        raise InputFileError(path, f"is truncated: {len(head)} bytes, shorter than a NIfTI header (348)")
    raise InputFileError(path, "is not a NIfTI file (wrong magic bytes)")


def _check_uncompressed_size(path: Path, img) -> None:
    needed = int(img.dataobj.offset) + int(np.prod(img.shape)) * img.get_data_dtype().itemsize
    have = path.stat().st_size
    if have < needed:
        raise InputFileError(path, f"is truncated: the header needs {needed:,} bytes, the file has {have:,}")


def _read_itk(path: Path, frame: int | None, budget: int):
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputFileError(path, f"corrupt or unreadable header ({_itk_reason(err)})") from None
    size = tuple(reader.GetSize())
    shape = _spatial_shape(path, size, frame)
    check_voxel_budget(path, size, budget)
    if reader.GetNumberOfComponents() > 1:
        raise InputFileError(
            path,
            f"has {reader.GetNumberOfComponents()} components per voxel (colour or vector image); a scalar volume is needed",
        )
    fmt = {".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage", ".mhd": "MetaImage"}[_suffix(path)]
    if fmt == "NRRD" and "NRRD_space" not in reader.GetMetaDataKeys():
        # ITK would assume LPS; without a named space the file does not say where left is.
        raise InputFileError(
            path, "NRRD header has no 'space' field (e.g. left-posterior-superior), so left and right are unknown"
        )
    _check_spacing(path, reader.GetSpacing()[:3])
    ndim = reader.GetDimension()
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(ndim, ndim)[:3, :3]
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * np.asarray(reader.GetSpacing()[:3], dtype=float)
    affine_lps[:3, 3] = reader.GetOrigin()[:3]
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise InputFileError(path, f"truncated or corrupt voxel data ({_itk_reason(err)})") from None
    data = sitk.GetArrayFromImage(image)  # (t, z, y, x) -> (x, y, z, t)
    data = data.transpose(tuple(range(data.ndim))[::-1]).reshape(shape)
    if len(shape) == 4:
        data = data[..., frame]
    return data, LPS_TO_RAS @ affine_lps, fmt, {}


def _input_files(path: Path) -> tuple[str, ...]:
    """The scan's own files, which no output may replace: a DICOM folder's files, or a two-file
    header (.mhd, .nhdr) with the data file it names."""
    path = Path(path)
    if path.is_dir():
        return tuple(str(p.resolve()) for p in path.rglob("*") if p.is_file())
    files = [path.resolve()]
    if _suffix(path) in (".mhd", ".nhdr"):
        keys = ("elementdatafile", "data file", "datafile")
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=" if _suffix(path) == ".mhd" else ":")
            if sep and key.strip().lower() in keys and value.strip().upper() != "LOCAL":
                files.append((path.parent / value.strip()).resolve())
    return tuple(str(f) for f in files)


def _itk_reason(err: RuntimeError) -> str:
    """ITK exceptions are multi-line with source locations; keep the sentence a user can act on."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if line.lower().startswith("description:"):
            return line.split(":", 1)[1].strip()
    return lines[-1] if lines else "unknown ITK error"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def volume_from_array(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    name: str = "<array>",
    modality: str | None = None,
    meta: dict | None = None,
) -> Volume:
    """A Volume from an in-memory array and its voxel -> RAS affine, validated and laid out
    exactly as load_volume would lay out the same data read from a file."""
    return _canonical_volume(Path(name), array, affine, "array", modality, dict(meta or {}))


def _canonical_volume(path: Path, array, affine, fmt: str, modality: str | None, meta: dict) -> Volume:
    """Validate geometry and voxels, then permute/flip to the layout closest to RAS."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise _refusal(path, fmt, "affine (voxel -> world transform) has non-finite entries")
    singular = np.linalg.svd(affine[:3, :3], compute_uv=False)
    if singular.min() <= 1e-6 * max(singular.max(), 1e-12):
        raise _refusal(path, fmt, "affine (voxel -> world transform) is singular: its voxel axes are not independent")
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise _refusal(path, fmt, f"voxel type {array.dtype} is not a scalar real number")
    array = array.astype(np.float32, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        raise _refusal(path, fmt, f"{int(bad.sum()):,} voxels are NaN or infinite")
    source = SourceGrid(str(path), fmt, affine, _input_files(path))
    to_ras = source.to_ras_transform()
    ras_array = np.ascontiguousarray(apply_orientation(array, to_ras))
    ras_affine = affine @ inv_ornt_aff(to_ras, array.shape)
    return Volume(ras_array, ras_affine, source, modality, meta)


def _refusal(path: Path, fmt: str, problem: str) -> InputError:
    """A file's problem names the file; an in-memory array has no file, only its name."""
    return InputError(f"{path}: {problem}") if fmt == "array" else InputFileError(path, problem)


# ----------------------------------------------------------------------------------------------
# Saving


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """The checks save_volume makes before writing (format, existing file, folder), for callers
    that want to fail before a long computation rather than after it."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITABLE_SUFFIXES:
        raise InputFileError(
            path, f"cannot write {suffix or 'files without an extension'}; writable: {', '.join(WRITABLE_SUFFIXES)}"
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(path, "already exists")
    if not path.parent.is_dir():
        raise InputFileError(path, f"output folder {path.parent} does not exist")
    return path


def save_volume(
    volume: Volume,
    path: str | os.PathLike,
    *,
    grid: str = "source",
    overwrite: bool = False,
) -> Path:
    """Write a volume to NIfTI, MGZ, NRRD or MetaImage (chosen by the file name's extension).

    grid="source" (default) writes on the input file's own grid and orientation, so a mask
    overlays its scan exactly; grid="ras" writes the RAS-closest layout held in memory.
    An existing file is never replaced unless overwrite=True, and the scan a volume was loaded
    from is never replaced at all. The write goes to a temporary folder first, so a failure
    leaves nothing half-written.
    """
    path = check_output_path(path, overwrite)
    suffix = _suffix(path)
    look_up("grid", grid, GRIDS)
    protected = set(volume.source.files)
    if str(path.resolve()) in protected:
        raise InputFileError(path, "is the scan this volume was read from; refusing to write over it")
    if grid == "source":
        array, affine = volume.to_source_layout(), volume.source.affine
    else:
        array, affine = volume.array, volume.affine
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fm-write-") as tmp:
        staged = Path(tmp) / path.name
        if suffix in _NIBABEL_SUFFIXES:
            _write_nibabel(array, affine, staged, suffix, volume.meta)
        else:
            _write_itk(array, affine, staged)
        written = sorted(Path(tmp).iterdir())
        inputs = [p.name for p in written if str((path.parent / p.name).resolve()) in protected]
        if inputs:
            raise InputFileError(path, f"would replace {', '.join(inputs)}, a file of the input scan")
        clashes = [p.name for p in written if (path.parent / p.name).exists() and p.name != path.name]
        if clashes and not overwrite:
            raise OutputExistsError(path, f"would replace existing {', '.join(clashes)}")
        for produced in written:
            shutil.move(str(produced), str(path.parent / produced.name))
    return path


def _write_nibabel(array: np.ndarray, affine: np.ndarray, path: Path, suffix: str, meta: dict) -> None:
    array = _storable(array, allowed=(np.uint8, np.int16, np.int32, np.float32))
    if suffix in (".mgz", ".mgh"):
        nib.save(nib.MGHImage(array, affine), str(path))
        return
    image_class = nib.Nifti2Image if max(array.shape) > 32767 else nib.Nifti1Image
    img = image_class(array, affine)
    img.set_qform(affine, code=int(meta.get("qform_code") or 1))
    img.set_sform(affine, code=int(meta.get("sform_code") or 1))
    nib.save(img, str(path))


def _write_itk(array: np.ndarray, affine_ras: np.ndarray, path: Path) -> None:
    image = sitk_image(_storable(array, allowed=(np.uint8, np.int16, np.int32, np.float32)), affine_ras)
    sitk.WriteImage(image, str(path), useCompression=path.suffix.lower() in (".nrrd", ".mha"))


def sitk_image(array: np.ndarray, affine_ras: np.ndarray) -> sitk.Image:
    """A SimpleITK image (LPS physical space) of an [i, j, k] array with a voxel -> RAS affine."""
    affine_lps = LPS_TO_RAS @ affine_ras
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in affine_lps[:3, 3]))
    image.SetDirection(tuple(float(v) for v in (affine_lps[:3, :3] / spacing).ravel()))
    return image


def sitk_array(image: sitk.Image) -> np.ndarray:
    """The [i, j, k] array of a SimpleITK image (the inverse of `sitk_image`'s array part)."""
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


def resample_array(
    array: np.ndarray,
    affine: np.ndarray,
    shape,
    target_affine: np.ndarray,
    order: int = 1,
    fill: float = 0.0,
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """`array` (voxel -> RAS `affine`) sampled at the voxels of the grid (shape, target_affine),
    through RAS millimetres; `fill` outside `array`, whose voxels cover half a voxel beyond their
    centres. transform: a 4x4 RAS map; the voxel at point p takes `array`'s value at transform @ p.

    Nearest-neighbour and linear sampling go through SimpleITK (threaded, and several times faster
    than SciPy's general spline code on a 1 mm brain); higher orders and grids whose axes are not
    orthogonal go through SciPy."""
    if order <= 1 and _orthogonal(affine) and _orthogonal(target_affine):
        return _resample_sitk(array, affine, shape, target_affine, order, fill, transform)
    mapped = target_affine if transform is None else np.asarray(transform, float) @ target_affine
    source_from_target = np.linalg.solve(affine, mapped)
    matrix = source_from_target[:3, :3]
    if np.allclose(matrix, np.diag(np.diag(matrix)), atol=1e-9):
        matrix = np.diag(matrix)  # axis-aligned grids: SciPy's faster path
    return ndimage.affine_transform(
        array, matrix, source_from_target[:3, 3], output_shape=tuple(shape), order=order, mode="constant", cval=fill
    )


def _orthogonal(affine: np.ndarray) -> bool:
    """The grid's axes are at right angles (SimpleITK describes only such grids)."""
    columns = np.asarray(affine, float)[:3, :3]
    columns = columns / np.linalg.norm(columns, axis=0)
    return bool(np.allclose(columns.T @ columns, np.eye(3), atol=1e-6))


def _resample_sitk(array, affine, shape, target_affine, order, fill, transform) -> np.ndarray:
    dtype = array.dtype
    source = sitk_image(array.astype(np.uint8) if dtype == np.bool_ else array, affine)
    target = LPS_TO_RAS @ np.asarray(target_affine, float)
    spacing = np.linalg.norm(target[:3, :3], axis=0)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in shape])
    resampler.SetOutputSpacing([float(s) for s in spacing])
    resampler.SetOutputOrigin([float(v) for v in target[:3, 3]])
    resampler.SetOutputDirection([float(v) for v in (target[:3, :3] / spacing).ravel()])
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if order == 0 else sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float(fill))
    if transform is not None:
        lps_transform = LPS_TO_RAS @ np.asarray(transform, float) @ LPS_TO_RAS  # the flip is its own inverse
        resampler.SetTransform(
            sitk.AffineTransform(lps_transform[:3, :3].ravel().tolist(), lps_transform[:3, 3].tolist())
        )
    return sitk_array(resampler.Execute(source)).astype(dtype, copy=False)


def _storable(array: np.ndarray, allowed: tuple) -> np.ndarray:
    """Cast to a dtype every target format stores: labels stay integers, images float32."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.type in allowed:
        return array
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dtype in (np.uint8, np.int16, np.int32):
            if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
                return array.astype(dtype)
    return array.astype(np.float32)
