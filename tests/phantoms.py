"""Test scans built in the tests: one physical object sampled on grids of any orientation, and
writers that put it in every format through libraries other than the code under test (nibabel,
SimpleITK's own NIfTI reader, pydicom), so a sign error in fm.core.io cannot cancel itself out."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

#: A bright marker on the patient's right (RAS x > 0), posterior and superior of centre.
MARKER_RAS = np.array([40.0, -10.0, 20.0])
MARKER_SIGMA_MM = 3.0

#: The reference grid: RAS layout, anisotropic spacing, covering the marker with margin.
RAS_SHAPE = (48, 40, 36)
RAS_SPACING = (2.0, 2.5, 1.5)

PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-123456",
    "PatientBirthDate": "19700101",
    "StudyDate": "20260102",
    "AccessionNumber": "ACC-998877",
    "InstitutionName": "St Example Hospital",
    "ReferringPhysicianName": "Smith^John",
}


def phantom(ras_points: np.ndarray) -> np.ndarray:
    """Intensity of the test object at RAS points (..., 3): a marker blob over a soft background
    that rises towards the patient's left and head, so no flip leaves the image unchanged."""
    d2 = np.sum((ras_points - MARKER_RAS) ** 2, axis=-1)
    marker = 1000.0 * np.exp(-d2 / (2 * MARKER_SIGMA_MM**2))
    background = 100.0 - 0.5 * ras_points[..., 0] + 0.25 * ras_points[..., 2]
    return marker + background


def ras_reference() -> tuple[np.ndarray, np.ndarray]:
    """The phantom on the RAS reference grid, with integer-valued voxels (exact in every format)."""
    affine = np.diag([*RAS_SPACING, 1.0])
    centre = (np.array(RAS_SHAPE) - 1) / 2
    affine[:3, 3] = -np.array(RAS_SPACING) * centre + np.array([10.0, -5.0, 5.0])
    return np.round(sample(affine, RAS_SHAPE)).astype(np.float32), affine


def sample(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    return phantom(ras).astype(np.float32)


def relayout(array: np.ndarray, affine: np.ndarray, code: str) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored with axes pointing along `code` (e.g. 'LPS', 'PIR')."""
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(code)))
    return apply_orientation(array, transform), affine @ inv_ornt_aff(transform, array.shape)


def oblique() -> tuple[np.ndarray, np.ndarray]:
    """The phantom sampled on a grid rotated 25 degrees about z and 15 about x (no axis is pure)."""
    a, b = np.radians(25), np.radians(15)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    shape = (44, 44, 40)
    spacing = np.array([2.2, 2.2, 2.0])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = np.array([10.0, -5.0, 5.0]) - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return np.round(sample(affine, shape)).astype(np.float32), affine


def marker_ras(volume) -> np.ndarray:
    """Intensity-weighted centre (RAS mm) of the voxels brighter than half the marker's peak."""
    arr = volume.array
    peak = arr.max()
    mask = arr > (peak + np.median(arr)) / 2
    ijk = np.argwhere(mask)
    weights = arr[mask] - np.median(arr)
    centre = (ijk * weights[:, None]).sum(axis=0) / weights.sum()
    return volume.voxel_to_ras(centre)


# ----------------------------------------------------------------------------------------------
# Writers


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, nifti2: bool = False) -> Path:
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def write_mgz(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.MGHImage(array.astype(np.float32), affine), str(path))
    return path


def write_via_itk(path: Path, array: np.ndarray, affine: np.ndarray, tmp: Path) -> Path:
    """NRRD / MHA / MHD made by SimpleITK from a NIfTI it read itself: ITK does the LPS maths."""
    nii = write_nifti(tmp / f"{path.stem}-itk-src.nii", array, affine)
    sitk.WriteImage(sitk.ReadImage(str(nii)), str(path))
    return path


# DICOM ------------------------------------------------------------------------------------------

SLOPE, INTERCEPT = 0.5, -100.0
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"


def _ds(values) -> list:
    return [DSfloat(float(v), auto_format=True) for v in values]


def dicom_geometry(affine_ras: np.ndarray):
    """Row/column cosines, pixel spacing and slice positions (LPS) of an (i, j, k) grid."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    col_spacing, row_spacing = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    row_cos, col_cos = lps[:3, 0] / col_spacing, lps[:3, 1] / row_spacing
    return row_cos, col_cos, (row_spacing, col_spacing), lps


def _stored(array: np.ndarray) -> np.ndarray:
    """Integer pixel values such that stored * SLOPE + INTERCEPT == array exactly."""
    stored = (array - INTERCEPT) / SLOPE
    assert np.allclose(stored, np.round(stored)), "array must be representable with the test's rescale"
    return np.round(stored).astype(np.int16)


def _base_dataset(sop_class: str, series_uid: str, description: str, study_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid])  # one frame of reference per series
    ds.SeriesNumber = 7
    ds.SeriesDescription = description
    ds.Modality = "MR"
    ds.Manufacturer = "TestVendor"
    ds.MagneticFieldStrength = 3
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def dicom_slices(
    array: np.ndarray,
    affine_ras: np.ndarray,
    description: str = "T1 test",
    series_uid: str | None = None,
) -> list[Dataset]:
    """One single-frame MR dataset per k-slice, in k order, geometry taken from the affine."""
    row_cos, col_cos, (row_spacing, col_spacing), lps = dicom_geometry(affine_ras)
    stored = _stored(array)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    out = []
    for k in range(array.shape[2]):
        ds = _base_dataset(MR_IMAGE, series_uid, description, study_uid)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds(lps[:3, :3] @ [0, 0, k] + lps[:3, 3])
        ds.ImageOrientationPatient = _ds([*row_cos, *col_cos])
        ds.PixelSpacing = _ds([row_spacing, col_spacing])
        ds.SliceThickness = DSfloat(float(np.linalg.norm(lps[:3, 2])), auto_format=True)
        ds.Rows, ds.Columns = array.shape[1], array.shape[0]
        ds.RescaleSlope, ds.RescaleIntercept = SLOPE, INTERCEPT
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # [row, column]
        out.append(ds)
    return out


def as_stored_values(array: np.ndarray, top: float = 3000.0) -> np.ndarray:
    """`array` scaled to [0, top] and rounded to values dicom_slices can store exactly."""
    scaled = (array - array.min()) / max(float(np.ptp(array)), 1e-6) * top
    return (np.round((scaled - INTERCEPT) / SLOPE) * SLOPE + INTERCEPT).astype(np.float32)


def write_series(
    folder: Path, slices: list[Dataset], shuffle_seed: int | None = 0, reverse_numbers: bool = False
) -> Path:
    """Write slices as files whose names and InstanceNumbers say nothing about their position."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(slices)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    for name_index, k in enumerate(order):
        ds = copy.deepcopy(slices[k])
        if reverse_numbers:
            ds.InstanceNumber = len(slices) - k
        ds.save_as(folder / f"IM{name_index:04d}.dcm", enforce_file_format=True)
    return folder


def enhanced_multiframe(array: np.ndarray, affine_ras: np.ndarray, shuffle_seed: int = 3) -> Dataset:
    """One Enhanced MR object holding every slice as a frame, frames stored in shuffled order."""
    row_cos, col_cos, (row_spacing, col_spacing), lps = dicom_geometry(affine_ras)
    stored = _stored(array)
    ds = _base_dataset(ENHANCED_MR_IMAGE, generate_uid(), "enhanced test", generate_uid())
    order = list(range(array.shape[2]))
    random.Random(shuffle_seed).shuffle(order)
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = array.shape[1], array.shape[0]
    shared = Dataset()
    measures, plane, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = _ds([row_spacing, col_spacing])
    measures.SliceThickness = DSfloat(float(np.linalg.norm(lps[:3, 2])), auto_format=True)
    plane.ImageOrientationPatient = _ds([*row_cos, *col_cos])
    transform.RescaleSlope, transform.RescaleIntercept = SLOPE, INTERCEPT
    transform.RescaleType = "US"
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in order:
        position = Dataset()
        position.ImagePositionPatient = _ds(lps[:3, :3] @ [0, 0, k] + lps[:3, 3])
        group = Dataset()
        group.PlanePositionSequence = Sequence([position])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = b"".join(np.ascontiguousarray(stored[:, :, k].T).tobytes() for k in order)
    return ds


def mr_spec(spacing_mm=None, size=(32, 32, 32), divisible_by=1):
    """A windowed, min-max scaled single-channel MR input spec for tests (RAS)."""
    from encoders.spec import InputSpec  # torch: only for the tests that run encoders

    spacing = None if spacing_mm is None else (spacing_mm,) * 3
    return InputSpec(
        spacing_mm=spacing,
        orientation="RAS",
        size=tuple(size),
        windowed=True,
        intensity="minmax",
        in_channels=1,
        modalities=("MR",),
        divisible_by=divisible_by,
    )


def huge_header_nifti(path: Path, shape=(4000, 4000, 4000)) -> Path:
    """A gzipped NIfTI of a few hundred bytes whose header claims `shape` float32 voxels."""
    import gzip

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_qform(np.eye(4), code=1)
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0\0\0\0")
    return path
