"""Views a person looks at must show the patient's right where radiologists expect it, whatever
the file's orientation."""

from __future__ import annotations

import numpy as np
import pytest

import phantoms
from fm.io import load_volume
from fm.views import orthogonal_views


def brightest(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the marker as fractions of the image height and width."""
    grey = image[..., 0].astype(float)
    grey[:12, :] = grey[-12:, :] = 0  # ignore the side labels
    grey[:, :12] = grey[:, -12:] = 0
    row, col = np.unravel_index(np.argmax(grey), grey.shape)
    return row / grey.shape[0], col / grey.shape[1]


@pytest.mark.parametrize("layout", ["RAS", "LPS", "PIR", "oblique"])
def test_marker_on_the_patients_right_is_on_the_image_left(tmp_path, layout):
    if layout == "oblique":
        array, affine = phantoms.oblique()
    else:
        array, affine = phantoms.relayout(*phantoms.ras_reference(), layout)
    volume = load_volume(phantoms.write_nifti(tmp_path / "scan.nii.gz", array, affine))
    views = orthogonal_views(volume, centre_ras=phantoms.MARKER_RAS)

    axial_row, axial_col = brightest(views["axial"])
    coronal_row, coronal_col = brightest(views["coronal"])
    assert axial_col < 0.5 and coronal_col < 0.5, "radiological: patient's right on the image's left"
    # the marker is 15 mm above the centre of the grid: the top half of coronal and sagittal views
    sagittal_row, _ = brightest(views["sagittal"])
    assert coronal_row < 0.5 and sagittal_row < 0.5


def test_anisotropic_voxels_are_shown_at_true_proportions(tmp_path):
    array, affine = phantoms.ras_reference()  # 48 x 2.0 mm wide, 40 x 2.5 mm deep, 36 x 1.5 mm high
    volume = load_volume(phantoms.write_nifti(tmp_path / "scan.nii", array, affine))
    axial = orthogonal_views(volume, size=200)["axial"]
    height, width = axial.shape[:2]
    assert abs(width / height - (48 * 2.0) / (40 * 2.5)) < 0.02
