"""Bad input gets one clear error naming the file and the problem, never a library traceback and
never a silently wrong volume."""

from __future__ import annotations

import copy
import tracemalloc
import zipfile

import nibabel as nib
import numpy as np
import phantoms
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from fm.core.dicom import MultipleSeriesError
from fm.core.errors import InputFileError
from fm.core.io import load_volume, save_volume


def small_nifti(path, array=None, affine=None):
    array = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8) if array is None else array
    return phantoms.write_nifti(path, array, np.eye(4) if affine is None else affine)


def raises(path_fragment, message, call, *args, **kwargs) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        call(*args, **kwargs)
    err = info.value
    assert isinstance(err, ValueError)
    assert path_fragment in str(err), f"message does not name the file: {err}"
    assert message in str(err), f"expected {message!r} in {err}"
    return err


def test_missing_file(tmp_path):
    raises("nope.nii.gz", "no such file", load_volume, tmp_path / "nope.nii.gz")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    raises("photo.png", "unsupported file type '.png'", load_volume, path)


def test_truncated_gzip(tmp_path):
    path = small_nifti(tmp_path / "cut.nii.gz", np.random.default_rng(0).random((30, 30, 30), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises("cut.nii.gz", "truncated or corrupt voxel data", load_volume, path)


def test_truncated_uncompressed_nifti(tmp_path):
    path = small_nifti(tmp_path / "cut.nii")
    path.write_bytes(path.read_bytes()[:-100])
    raises("cut.nii", "is truncated: the header needs", load_volume, path)


def test_wrong_magic_bytes(tmp_path):
    fake_nii = tmp_path / "fake.nii"
    fake_nii.write_bytes(b"this is not an image" * 30)
    raises("fake.nii", "not a NIfTI file (wrong magic bytes)", load_volume, fake_nii)

    plain = tmp_path / "plain.nii.gz"
    plain.write_bytes(small_nifti(tmp_path / "x.nii").read_bytes())  # uncompressed bytes, .gz name
    raises("plain.nii.gz", "is not gzip-compressed (wrong magic bytes)", load_volume, plain)

    fake_nrrd = tmp_path / "fake.nrrd"
    fake_nrrd.write_bytes(b"GIF89a" + bytes(200))
    raises("fake.nrrd", "corrupt or unreadable header", load_volume, fake_nrrd)

    fake_dcm = tmp_path / "fake.dcm"
    fake_dcm.write_bytes(bytes(300))
    raises("fake.dcm", "is not a DICOM file", load_volume, fake_dcm)


def test_2d_data(tmp_path):
    path = phantoms.write_nifti(tmp_path / "slice.nii", np.zeros((32, 32), np.float32), np.eye(4))
    raises("slice.nii", "holds 2D data", load_volume, path)

    reference, affine = phantoms.ras_reference()
    single = tmp_path / "one.dcm"
    phantoms.dicom_slices(reference, affine)[0].save_as(single, enforce_file_format=True)
    raises("one.dcm", "single 2D image", load_volume, single)


def test_an_empty_file_is_called_empty_whatever_its_name(tmp_path):
    for name in ("scan.nii.gz", "scan.nii", "scan.nrrd", "scan.dcm"):
        (tmp_path / name).write_bytes(b"")
        raises(name, "is empty (0 bytes)", load_volume, tmp_path / name)


def test_empty_dimension(tmp_path):
    path = phantoms.write_nifti(tmp_path / "empty.nii", np.zeros((8, 0, 8), np.float32), np.eye(4))
    raises("empty.nii", "has no voxels along a dimension", load_volume, path)


def test_more_than_four_dimensions(tmp_path):
    path = phantoms.write_nifti(tmp_path / "5d.nii.gz", np.zeros((8, 8, 8, 2, 3), np.float32), np.eye(4))
    raises("5d.nii.gz", "has 5 dimensions", load_volume, path)


def test_4d_needs_a_frame(tmp_path):
    path = phantoms.write_nifti(tmp_path / "bold.nii.gz", np.zeros((8, 8, 8, 3), np.float32), np.eye(4))
    raises("bold.nii.gz", "is 4D with 3 volumes; choose one with frame=", load_volume, path)
    raises("bold.nii.gz", "frame 3 is out of range", load_volume, path, frame=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    array = np.ones((8, 9, 10), np.float32)
    array[1, 2, 3] = bad
    path = phantoms.write_nifti(tmp_path / "nan.nii", array, np.eye(4))
    raises("nan.nii", "1 voxels are NaN or infinite", load_volume, path)


def patch_header(path, field: str, value):
    """Edit one NIfTI-1 header field in the file's bytes (nibabel refuses to save bad values)."""
    header = nib.Nifti1Header.from_fileobj(open(path, "rb"), check=False)
    header[field] = value
    data = bytearray(path.read_bytes())
    data[: len(header.binaryblock)] = header.binaryblock
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("spacing", [0.0, -1.0, np.nan])
def test_invalid_spacing_in_a_nifti_header(tmp_path, spacing):
    path = small_nifti(tmp_path / "spacing.nii")
    pixdim = nib.load(str(path)).header["pixdim"].copy()
    pixdim[2] = spacing
    patch_header(path, "pixdim", pixdim)
    patch_header(path, "sform_code", 0)
    raises("spacing.nii", "voxel spacing", load_volume, path)


def test_zero_spacing_in_a_metaimage_header(tmp_path):
    (tmp_path / "img.raw").write_bytes(np.zeros(8 * 8 * 8, np.int16).tobytes())
    header = tmp_path / "img.mhd"
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementSpacing = 1 0 1\n"
        "ElementType = MET_SHORT\nElementDataFile = img.raw\n"
    )
    raises("img.mhd", "spacing", load_volume, header)


def test_singular_affine(tmp_path):
    affine = np.eye(4)
    affine[:3, 2] = affine[:3, 0]  # third voxel axis parallel to the first
    img = nib.Nifti1Image(np.ones((8, 9, 10), np.float32), None)
    img.set_sform(affine, code=1)
    path = tmp_path / "singular.nii"
    nib.save(img, str(path))
    raises("singular.nii", "affine (voxel -> world transform) is singular", load_volume, path)


def test_header_without_orientation(tmp_path):
    path = small_nifti(tmp_path / "noorient.nii")
    patch_header(path, "qform_code", 0)
    patch_header(path, "sform_code", 0)
    raises("noorient.nii", "left and right are unknown", load_volume, path)


def test_huge_header_is_refused_before_any_voxel_is_read(tmp_path):
    path = phantoms.huge_header_nifti(tmp_path / "bomb.nii.gz")
    assert path.stat().st_size < 200

    tracemalloc.start()
    try:
        raises("bomb.nii.gz", "over the budget", load_volume, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"refusing the header allocated {peak / 1e6:.0f} MB"


def test_voxel_budget_is_configurable(tmp_path, monkeypatch):
    path = small_nifti(tmp_path / "small.nii")  # 336 voxels
    raises("small.nii", "336 voxels, over the budget of 300", load_volume, path, max_voxels=300)
    monkeypatch.setenv("FM_MAX_VOXELS", "100")
    raises("small.nii", "over the budget of 100", load_volume, path)
    assert load_volume(path, max_voxels=336).shape == (6, 7, 8)

    reference, affine = phantoms.ras_reference()
    folder = phantoms.write_series(tmp_path / "series", phantoms.dicom_slices(reference, affine))
    raises("series", "over the budget of 1,000", load_volume, folder, max_voxels=1000)


def test_nrrd_without_a_space_is_refused(tmp_path):
    path = tmp_path / "nospace.nrrd"
    path.write_bytes(
        b"NRRD0004\ntype: short\nendian: little\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n" + bytes(128)
    )
    raises("nospace.nrrd", "no 'space' field", load_volume, path)


def test_colour_image_is_refused(tmp_path):
    path = tmp_path / "photo.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((64, 64, 3), np.uint8), isVector=True), str(path))
    raises("photo.mha", "holds 2D data", load_volume, path)
    rgb_volume = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 9, 10, 3), np.uint8), isVector=True), str(rgb_volume))
    raises("rgb.mha", "3 components per voxel", load_volume, rgb_volume)


def test_invalid_budget_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("FM_MAX_VOXELS", "lots")
    with pytest.raises(ValueError, match="FM_MAX_VOXELS must be a number of voxels, not 'lots'"):
        load_volume(small_nifti(tmp_path / "small.nii"))


def test_zip_that_inflates_past_the_budget(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("IM0001.dcm", bytes(80_000_000))
    assert path.stat().st_size < 100_000
    raises("bomb.zip", "more than the voxel budget allows", load_volume, path, max_voxels=1_000_000)


def test_complex_voxels(tmp_path):
    path = phantoms.write_nifti(tmp_path / "complex.nii", np.ones((8, 9, 10), np.complex64), np.eye(4))
    raises("complex.nii", "is not a scalar real number", load_volume, path)


def test_bad_zip(tmp_path):
    path = tmp_path / "series.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    raises("series.zip", "is not a readable zip archive", load_volume, path)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    raises("empty.zip", "no DICOM images with patient geometry", load_volume, empty)


# ----------------------------------------------------------------------------------------------
# DICOM series that cannot be put on a regular grid


def series_with(tmp_path, edit, name="bad"):
    reference, affine = phantoms.ras_reference()
    slices = phantoms.dicom_slices(*phantoms.relayout(reference, affine, "LPS"))
    slices = edit(slices) or slices
    return phantoms.write_series(tmp_path / name, slices)


def _shift(ds, axis, mm):
    position = [float(v) for v in ds.ImagePositionPatient]
    position[axis] += mm
    ds.ImagePositionPatient = phantoms._ds(position)


def test_truncated_dicom_pixel_data(tmp_path):
    def truncate(slices):
        slices[3].PixelData = slices[3].PixelData[:100]

    raises("bad", "cannot decode pixel data", load_volume, series_with(tmp_path, truncate))


def test_displaced_slice(tmp_path):
    def displace(slices):
        _shift(slices[10], 0, 20.0)

    raises("bad", "is displaced 20.00 mm sideways", load_volume, series_with(tmp_path, displace))


def test_malformed_attribute_values(tmp_path):
    folder = series_with(tmp_path, lambda slices: None, "slope")
    victim = sorted(folder.iterdir())[2]
    element = b"\x28\x00\x53\x10DS\x04\x00"  # RescaleSlope, explicit VR little endian, 4 bytes
    data = victim.read_bytes()
    assert data.count(element + b"0.5 ") == 1
    victim.write_bytes(data.replace(element + b"0.5 ", element + b"0,5 "))  # a broken exporter's decimal comma
    raises("slope", "malformed DICOM attribute", load_volume, folder)

    def zero_orientation(slices):
        for ds in slices:
            ds.ImageOrientationPatient = [0, 0, 0, 0, 0, 0]

    raises("zero", "is not two orthonormal vectors", load_volume, series_with(tmp_path, zero_orientation, "zero"))


def test_multiframe_without_functional_groups(tmp_path):
    reference, affine = phantoms.ras_reference()
    ds = phantoms.dicom_slices(reference, affine)[0]
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    path = tmp_path / "old-multiframe.dcm"
    ds.save_as(path, enforce_file_format=True)
    raises("old-multiframe.dcm", "multi-frame image without per-frame geometry", load_volume, path)


def test_enhanced_frame_count_mismatch(tmp_path):
    reference, affine = phantoms.ras_reference()
    ds = phantoms.enhanced_multiframe(reference, affine)
    ds.NumberOfFrames = ds.NumberOfFrames + 1
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    raises("enhanced.dcm", "per-frame functional groups are present", load_volume, path)


def test_gantry_tilt(tmp_path):
    def tilt(slices):
        for k, ds in enumerate(slices):
            _shift(ds, 1, 0.3 * k)  # y moves with z: a sheared stack

    raises("bad", "gantry tilt of", load_volume, series_with(tmp_path, tilt))


def test_non_uniform_slice_spacing(tmp_path):
    def jitter(slices):
        for k, ds in enumerate(slices):
            _shift(ds, 2, 0.2 * (k % 2))

    raises("bad", "non-uniform slice spacing", load_volume, series_with(tmp_path, jitter))


def test_missing_slices(tmp_path):
    folder = series_with(tmp_path, lambda slices: slices[:10] + slices[13:])
    raises("bad", "is missing slices", load_volume, folder)
    raises("bad", "about 3 slices missing", load_volume, folder)


def test_mixed_sizes(tmp_path):
    def resize(slices):
        small = slices[5]
        small.Rows = small.Rows - 2
        small.PixelData = small.PixelData[: small.Rows * small.Columns * 2]

    raises("bad", "mixes image sizes", load_volume, series_with(tmp_path, resize))


def test_repeated_slice_positions(tmp_path):
    def duplicate(slices):
        extra = copy.deepcopy(slices[4])
        extra.SOPInstanceUID = generate_uid()
        return slices + [extra]

    raises("bad", "share slice position", load_volume, series_with(tmp_path, duplicate))


def test_several_series_without_a_choice_lists_them(tmp_path):
    reference, affine = phantoms.ras_reference()
    phantoms.write_series(tmp_path / "study" / "a", phantoms.dicom_slices(reference, affine, description="axial T1"))
    phantoms.write_series(tmp_path / "study" / "b", phantoms.dicom_slices(reference, affine, description="axial T2"))
    err = raises("study", "holds 2 DICOM series", load_volume, tmp_path / "study")
    assert isinstance(err, MultipleSeriesError)
    assert "'axial T1'" in str(err) and "'axial T2'" in str(err) and "48x40x36" in str(err)
    raises("study", "has no series '3'", load_volume, tmp_path / "study", series=3)


# ----------------------------------------------------------------------------------------------
# Outputs


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    volume = load_volume(small_nifti(tmp_path / "in.nii"))
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"keep me")
    raises("out.nii.gz", "already exists", save_volume, volume, out)
    assert out.read_bytes() == b"keep me"
    save_volume(volume, out, overwrite=True)
    assert load_volume(out).shape == volume.shape


def test_never_writes_over_the_input_scan(tmp_path):
    path = small_nifti(tmp_path / "scan.nii")
    before = path.read_bytes()
    volume = load_volume(path)
    raises("scan.nii", "is the scan this volume was read from", save_volume, volume, path, overwrite=True)
    assert path.read_bytes() == before


def test_never_writes_over_the_data_file_of_a_two_file_input(tmp_path):
    raw = tmp_path / "scan.raw"
    raw.write_bytes(np.arange(8 * 9 * 10, dtype=np.int16).tobytes())
    header = tmp_path / "input.mhd"
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 8 9 10\nElementSpacing = 1 1 1\n"
        "ElementType = MET_SHORT\nElementDataFile = scan.raw\n"
    )
    before = raw.read_bytes()
    volume = load_volume(header)
    # ITK names the data file of scan.mhd scan.raw: the input's own data file.
    raises(
        "scan.mhd",
        "would replace scan.raw, a file of the input scan",
        save_volume,
        volume,
        tmp_path / "scan.mhd",
        overwrite=True,
    )
    assert raw.read_bytes() == before
    assert not (tmp_path / "scan.mhd").exists()


def test_unwritable_output_type(tmp_path):
    volume = load_volume(small_nifti(tmp_path / "in.nii"))
    raises("out.dcm", "cannot write .dcm", save_volume, volume, tmp_path / "out.dcm")
