"""Input handed over in memory (arrays, Volumes, option values) is refused with an InputError at the
check that finds the problem, the one type the CLI and the app report as the user's; option
strings are looked up in tables and a wrong one is refused with every choice named."""

from __future__ import annotations

import dataclasses

import numpy as np
import phantoms
import pytest

from encoders.memory import parse_size
from encoders.preprocess import INTENSITY_TRANSFORMS, brain_id_preprocess, monai_preprocess
from encoders.spec import INTENSITY_MODES
from fm.core.contrasts import parse_contrasts
from fm.core.errors import InputError, InputFileError, look_up
from fm.core.io import load_volume, save_volume, volume_from_array
from fm.core.labels import BRAIN_TUMOUR
from fm.core.measure import measure

SPEC = phantoms.mr_spec(size=(8, 8, 8))


def scan(array=None):
    array = np.random.default_rng(0).random((8, 8, 8), dtype=np.float32) if array is None else array
    return volume_from_array(array, np.eye(4), name="scan-in-memory")


def test_every_file_error_is_an_input_error_and_a_value_error():
    err = InputFileError("a.nii", "is empty")
    assert isinstance(err, InputError) and isinstance(err, ValueError)
    assert str(err) == "a.nii: is empty" and err.problem == "is empty" and err.path == "a.nii"


def test_look_up_returns_the_choice_or_names_every_choice():
    assert look_up("colour", "red", {"red": 1, "blue": 2}) == 1
    assert look_up("colour", "red", ("red", "blue")) == "red"
    with pytest.raises(InputError, match=r"unknown colour 'green'; choose from red, blue$"):
        look_up("colour", "green", ("red", "blue"))


def test_an_unknown_intensity_mode_is_refused_with_the_choices():
    with pytest.raises(
        InputError,
        match=r"unknown intensity mode 'zscore'; choose from minmax, percentile, zscore_nonzero, ct_window, none",
    ):
        dataclasses.replace(SPEC, intensity="zscore")


def test_every_intensity_mode_has_a_transform():
    assert set(INTENSITY_TRANSFORMS) == set(INTENSITY_MODES)
    for mode in INTENSITY_MODES:
        monai_preprocess(scan(), dataclasses.replace(SPEC, intensity=mode))


def test_intensity_none_leaves_the_intensities_and_minmax_scales_them():
    volume = scan(np.random.default_rng(1).random((8, 8, 8), dtype=np.float32) * 1000)
    kept = monai_preprocess(volume, dataclasses.replace(SPEC, intensity="none")).tensor[0, 0].numpy()
    np.testing.assert_allclose(kept, volume.array)
    scaled = monai_preprocess(volume, SPEC).tensor
    assert float(scaled.min()) == 0.0 and float(scaled.max()) == pytest.approx(1.0)


def test_a_constant_volume_in_memory_is_an_input_error():
    constant = scan(np.full((8, 8, 8), 7.0, np.float32))
    with pytest.raises(InputError, match=r"scan-in-memory is constant \(7.0\); there is nothing to encode") as info:
        monai_preprocess(constant, SPEC)
    assert not isinstance(info.value, InputFileError), "an array in memory has no file to name"
    with pytest.raises(InputError, match="scan-in-memory is constant"):
        brain_id_preprocess(constant)


def test_scans_of_the_wrong_number_or_grid_are_input_errors():
    two = dataclasses.replace(SPEC, in_channels=2, modalities=("T1", "T2"))
    with pytest.raises(InputError, match=r"this encoder takes 2 co-registered scans \(T1, T2\), got 1"):
        monai_preprocess(scan(), two)
    shifted = volume_from_array(scan().array, np.diag([2.0, 2.0, 2.0, 1.0]), name="other")
    with pytest.raises(InputError, match="other is not on the grid of scan-in-memory; register the scans first"):
        monai_preprocess([scan(), shifted], two)


def test_bad_arrays_in_memory_are_input_errors_without_a_file():
    with pytest.raises(InputError, match="scan-in-memory: 1 voxels are NaN or infinite") as info:
        scan(np.where(np.arange(512).reshape(8, 8, 8) == 3, np.nan, 0.0))
    assert not isinstance(info.value, InputFileError)
    with pytest.raises(InputError, match="affine .* is singular"):
        volume_from_array(np.zeros((4, 4, 4)), np.zeros((4, 4)))


def test_a_label_map_on_another_grid_is_an_input_error():
    with pytest.raises(InputError, match=r"label map shape \(4, 4, 4\) differs from the volume's \(8, 8, 8\)"):
        measure(np.zeros((4, 4, 4), np.uint8), scan(), BRAIN_TUMOUR)


def test_option_values_are_input_errors_naming_the_choices(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="unknown contrast 'dwi'; choose from t1, t1c, t2, flair, pd, unknown"):
        parse_contrasts("flair,dwi", 2)
    with pytest.raises(InputError, match="--contrasts names 1 contrasts for 2 scans"):
        parse_contrasts("flair", 2)
    with pytest.raises(InputError, match="unknown grid 'lps'; choose from source, ras"):
        save_volume(scan(), tmp_path / "out.nii.gz", grid="lps")
    with pytest.raises(InputError, match="'lots' is not a memory size"):
        parse_size("lots")
    path = phantoms.write_nifti(tmp_path / "s.nii.gz", *phantoms.ras_reference())
    monkeypatch.setenv("FM_MAX_VOXELS", "many")
    with pytest.raises(InputError, match="FM_MAX_VOXELS must be a number of voxels, not 'many'"):
        load_volume(path)
