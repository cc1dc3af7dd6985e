"""Left stays left: the same physical object, stored in every orientation and format, must load to
the same RAS positions and the same voxels, and derived volumes must land back on the file's grid."""

from __future__ import annotations

import json
import zipfile

import nibabel as nib
import numpy as np
import phantoms
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, RLELossless

from fm.core.io import load_volume, save_volume

ORIENTATIONS = ["RAS", "LAS", "LPS", "PIR", "ILA"]


def write_format(fmt: str, folder, array, affine, name="scan"):
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "nii":
        return phantoms.write_nifti(folder / f"{name}.nii", array, affine)
    if fmt == "nii.gz":
        return phantoms.write_nifti(folder / f"{name}.nii.gz", array, affine)
    if fmt == "nifti2":
        return phantoms.write_nifti(folder / f"{name}.nii", array, affine, nifti2=True)
    if fmt == "mgz":
        return phantoms.write_mgz(folder / f"{name}.mgz", array, affine)
    if fmt in ("nrrd", "mha", "mhd"):
        return phantoms.write_via_itk(folder / f"{name}.{fmt}", array, affine, folder)
    if fmt == "dicom":
        return phantoms.write_series(folder / name, phantoms.dicom_slices(array, affine))
    raise AssertionError(fmt)


FORMATS = ["nii", "nii.gz", "nifti2", "mgz", "nrrd", "mha", "mhd", "dicom"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("code", ORIENTATIONS)
def test_every_layout_loads_to_the_same_ras_voxels(tmp_path, fmt, code):
    reference, ras_affine = phantoms.ras_reference()
    array, affine = phantoms.relayout(reference, ras_affine, code)
    volume = load_volume(write_format(fmt, tmp_path, array, affine))

    # A DICOM stack's third axis is its slice normal (row x column), whatever order files came in.
    assert volume.source.orientation[: 2 if fmt == "dicom" else 3] == code[: 2 if fmt == "dicom" else 3]
    assert volume.orientation == "RAS"
    np.testing.assert_allclose(volume.affine, ras_affine, atol=1e-4)
    np.testing.assert_array_equal(volume.array, reference)
    marker = phantoms.marker_ras(volume)
    np.testing.assert_allclose(marker, phantoms.MARKER_RAS, atol=0.5)
    assert marker[0] > 0, "the marker is on the patient's right"


@pytest.mark.parametrize("fmt", FORMATS)
def test_oblique_grid_keeps_the_marker_in_place(tmp_path, fmt):
    array, affine = phantoms.oblique()
    volume = load_volume(write_format(fmt, tmp_path, array, affine))

    np.testing.assert_allclose(phantoms.marker_ras(volume), phantoms.MARKER_RAS, atol=0.5)
    # Held in the nearest-RAS layout: every voxel keeps the world position the file gave it.
    source_ijk = np.random.default_rng(0).integers(0, array.shape, size=(50, 3))
    world = source_ijk @ affine[:3, :3].T + affine[:3, 3]
    held_ijk = np.linalg.solve(volume.affine[:3, :3], (world - volume.affine[:3, 3]).T).T
    np.testing.assert_allclose(held_ijk, np.round(held_ijk), atol=1e-4)
    held = volume.array[tuple(np.round(held_ijk).astype(int).T)]
    np.testing.assert_array_equal(held, array[tuple(source_ijk.T)])


@pytest.mark.parametrize("code", ["LPS", "PIR", "LIP", "LPI"])  # axial, sagittal, coronal, feet-first axial
def test_dicom_series_matches_nifti_of_the_same_data(tmp_path, code):
    reference, ras_affine = phantoms.ras_reference()
    array, affine = phantoms.relayout(reference, ras_affine, code)
    nifti = load_volume(phantoms.write_nifti(tmp_path / "same.nii.gz", array, affine))
    folder = phantoms.write_series(
        tmp_path / "series", phantoms.dicom_slices(array, affine), shuffle_seed=1, reverse_numbers=True
    )
    dicom = load_volume(folder)

    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-4)
    np.testing.assert_array_equal(dicom.array, nifti.array)
    np.testing.assert_allclose(phantoms.marker_ras(dicom), phantoms.MARKER_RAS, atol=0.5)
    assert dicom.modality == "MR"


@pytest.mark.parametrize("layout", ["LPS", "PIR", "LIP", "oblique"])
def test_dicom_series_agrees_with_itk(tmp_path, layout):
    """ITK's own DICOM series reader (GDCM) is an independent judge of our DICOM geometry."""
    if layout == "oblique":
        array, affine = phantoms.oblique()
    else:
        array, affine = phantoms.relayout(*phantoms.ras_reference(), layout)
    folder = phantoms.write_series(tmp_path / "series", phantoms.dicom_slices(array, affine))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    itk_values = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    itk_affine = np.eye(4)
    itk_affine[:3, :3] = direction * np.array(image.GetSpacing())
    itk_affine[:3, 3] = image.GetOrigin()
    itk_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ itk_affine

    volume = load_volume(folder)
    np.testing.assert_allclose(volume.source.affine, itk_affine, atol=1e-4)
    np.testing.assert_array_equal(volume.to_source_layout(), itk_values)


def test_oblique_dicom_matches_nifti(tmp_path):
    array, affine = phantoms.oblique()
    nifti = load_volume(phantoms.write_nifti(tmp_path / "oblique.nii", array, affine))
    dicom = load_volume(phantoms.write_series(tmp_path / "oblique", phantoms.dicom_slices(array, affine)))
    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-4)
    np.testing.assert_array_equal(dicom.array, nifti.array)


def test_dicom_zip_and_single_enhanced_multiframe_file(tmp_path):
    reference, ras_affine = phantoms.ras_reference()
    array, affine = phantoms.relayout(reference, ras_affine, "PIR")
    folder = phantoms.write_series(tmp_path / "sag", phantoms.dicom_slices(array, affine))
    archive = tmp_path / "sag.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"export/{f.name}")
    enhanced = tmp_path / "enhanced.dcm"
    phantoms.enhanced_multiframe(array, affine).save_as(enhanced, enforce_file_format=True)

    for path in (archive, enhanced):
        volume = load_volume(path)
        np.testing.assert_allclose(volume.affine, ras_affine, atol=1e-4)
        np.testing.assert_array_equal(volume.array, reference)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_dicom_decodes_to_the_same_voxels(tmp_path, syntax):
    reference, ras_affine = phantoms.ras_reference()
    slices = phantoms.dicom_slices(*phantoms.relayout(reference, ras_affine, "LPS"))
    for ds in slices:
        ds.compress(syntax)
    volume = load_volume(phantoms.write_series(tmp_path / "compressed", slices))
    np.testing.assert_array_equal(volume.array, reference)
    assert volume.meta["TransferSyntax"] == syntax.name


def test_dicom_metadata_is_deidentified(tmp_path):
    reference, ras_affine = phantoms.ras_reference()
    volume = load_volume(phantoms.write_series(tmp_path / "s", phantoms.dicom_slices(reference, ras_affine)))
    text = json.dumps(volume.meta)
    for value in phantoms.PHI.values():
        assert value not in text
    for uid_key in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID"):
        assert uid_key not in volume.meta
    assert volume.meta["Manufacturer"] == "TestVendor"
    assert volume.meta["SeriesDescription"] == "T1 test"
    assert volume.meta["dicom_series"]["slices"] == reference.shape[2]


def test_choosing_a_series_from_a_folder_with_two(tmp_path):
    reference, ras_affine = phantoms.ras_reference()
    folder = tmp_path / "study"
    phantoms.write_series(folder / "a", phantoms.dicom_slices(reference, ras_affine, description="axial T1"))
    sagittal = phantoms.relayout(reference, ras_affine, "PIR")
    second = phantoms.dicom_slices(*sagittal, description="sagittal T1")
    for ds in second:
        ds.SeriesNumber = 9
    phantoms.write_series(folder / "b", second)

    by_index = load_volume(folder, series=2)
    assert by_index.meta["SeriesDescription"] == "sagittal T1"
    assert by_index.source.orientation == "PIR"
    by_uid = load_volume(folder, series=str(second[0].SeriesInstanceUID))
    np.testing.assert_array_equal(by_uid.array, by_index.array)


# ----------------------------------------------------------------------------------------------
# Saving


@pytest.mark.parametrize("fmt", ["nii.gz", "mgz", "nrrd", "mha", "mhd"])
@pytest.mark.parametrize("code", ["LPS", "PIR"])
def test_round_trip_on_the_source_grid_is_exact(tmp_path, fmt, code):
    reference, ras_affine = phantoms.ras_reference()
    array, affine = phantoms.relayout(reference, ras_affine, code)
    original = load_volume(write_format(fmt, tmp_path / "in", array, affine))
    saved = save_volume(original, tmp_path / f"out.{fmt}")
    again = load_volume(saved)

    assert again.source.orientation == code
    np.testing.assert_allclose(again.source.affine, original.source.affine, atol=1e-5)
    np.testing.assert_array_equal(again.array, original.array)


def test_mask_from_a_dicom_series_overlays_it_in_the_files_own_layout(tmp_path):
    reference, ras_affine = phantoms.ras_reference()
    array, affine = phantoms.relayout(reference, ras_affine, "PIR")
    scan = load_volume(phantoms.write_series(tmp_path / "sag", phantoms.dicom_slices(array, affine)))
    mask = scan.with_array((scan.array > 600).astype(np.uint8))
    path = save_volume(mask, tmp_path / "mask.nii.gz")

    raw = nib.load(str(path))
    assert "".join(nib.aff2axcodes(raw.affine)) == "PIR"
    np.testing.assert_allclose(raw.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(raw.dataobj), (array > 600).astype(np.uint8))
    assert raw.get_data_dtype() == np.uint8


def test_itk_reads_our_nrrd_where_nibabel_put_the_marker(tmp_path):
    """An independent reader (ITK) must find the marker where we wrote it."""
    reference, ras_affine = phantoms.ras_reference()
    volume = load_volume(phantoms.write_nifti(tmp_path / "in.nii", *phantoms.relayout(reference, ras_affine, "LAS")))
    out = save_volume(volume, tmp_path / "out.nrrd")
    image = sitk.ReadImage(str(out))
    zyx = np.unravel_index(np.argmax(sitk.GetArrayViewFromImage(image)), image.GetSize()[::-1])
    lps = np.array(image.TransformIndexToPhysicalPoint(tuple(int(v) for v in zyx[::-1])))
    np.testing.assert_allclose(lps * [-1, -1, 1], phantoms.MARKER_RAS, atol=2.5)


def test_ras_grid_output_is_the_canonical_layout(tmp_path):
    reference, ras_affine = phantoms.ras_reference()
    volume = load_volume(phantoms.write_nifti(tmp_path / "in.nii", *phantoms.relayout(reference, ras_affine, "PIR")))
    raw = nib.load(str(save_volume(volume, tmp_path / "ras.nii.gz", grid="ras")))
    np.testing.assert_allclose(raw.affine, ras_affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(raw.dataobj), reference)


@pytest.mark.parametrize("fmt", ["nii.gz", "mha"])
def test_4d_file_gives_the_chosen_frame(tmp_path, fmt):
    reference, ras_affine = phantoms.ras_reference()
    array, affine = phantoms.relayout(reference, ras_affine, "LPS")
    stack = np.stack([array, array * 2, array * 3], axis=-1)
    path = write_format(fmt, tmp_path, stack, affine, name="fmri")
    volume = load_volume(path, frame=2)
    np.testing.assert_array_equal(volume.array, reference * 3)
    np.testing.assert_allclose(volume.affine, ras_affine, atol=1e-4)
