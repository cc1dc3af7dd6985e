"""Views a person looks at must show the patient's right where radiologists expect it, whatever
the file's orientation; pass through the largest lesion; and let the anatomy show through colours
that tell every class apart."""

from __future__ import annotations

import itertools

import numpy as np
import phantoms
import pytest
from scipy import ndimage

from fm.core.io import load_volume
from fm.core.labels import BRAIN_TUMOUR
from fm.core.measure import measure
from fm.report.render import views_centre
from fm.report.views import LABEL_COLOURS, nearest_voxel, orthogonal_views


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


def labelled_phantom(tmp_path, lesions=(), brain_centre=(10.0, -5.0, 5.0)):
    """The RAS reference phantom with a sphere of 'brain' (left/right grey matter, white matter
    inside) around `brain_centre` holding spherical oedema lesions given as (centre, radius), all mm."""
    volume = load_volume(phantoms.write_nifti(tmp_path / "scan.nii.gz", *phantoms.ras_reference()))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), axis=-1)
    ras = volume.voxel_to_ras(ijk)
    from_centre = np.linalg.norm(ras - brain_centre, axis=-1)
    labels = np.zeros(volume.shape, np.uint8)
    labels[from_centre <= 30] = np.where(ras[from_centre <= 30, 0] < brain_centre[0], 3, 4)
    labels[from_centre <= 18] = np.where(ras[from_centre <= 18, 0] < brain_centre[0], 5, 6)
    for centre, radius in lesions:
        labels[np.linalg.norm(ras - centre, axis=-1) <= radius] = 7
    return volume, labels


def test_views_pass_through_the_largest_lesion_and_show_it_in_every_plane(tmp_path):
    volume, labels = labelled_phantom(tmp_path, lesions=[((-2.0, -10.0, 10.0), 5.0), ((22.0, 0.0, 0.0), 9.0)])
    findings = measure(labels, volume, BRAIN_TUMOUR)
    centre, what = views_centre(findings, volume, labels)
    largest = findings.lesions[0]
    assert largest.volume_ml > findings.lesions[1].volume_ml and "lesion 1" in what
    assert np.linalg.norm(np.subtract(centre, largest.centroid_ras_mm)) <= 0.5 * np.linalg.norm(volume.spacing)
    assert labels[tuple(nearest_voxel(volume, centre))] == 7  # the planes' centre lies in the lesion
    oedema = np.array(LABEL_COLOURS[7])
    for name, image in orthogonal_views(volume, centre_ras=centre, labels=labels).items():
        assert np.all(image == oedema, axis=-1).any(), f"no lesion outline in the {name} view"


def test_without_a_lesion_the_views_pass_through_the_centre_of_the_segmentation(tmp_path):
    volume, labels = labelled_phantom(tmp_path, brain_centre=(30.0, 10.0, 12.0))  # off the grid's middle
    findings = measure(labels, volume, BRAIN_TUMOUR)
    centre, what = views_centre(findings, volume, labels)
    assert not findings.lesions and what == "the centre of the segmentation"
    assert np.linalg.norm(np.subtract(centre, (30.0, 10.0, 12.0))) <= np.linalg.norm(volume.spacing)


def test_the_anatomy_shows_through_a_lesion_and_its_outline_is_crisp(tmp_path):
    volume, labels = labelled_phantom(tmp_path, lesions=[(phantoms.MARKER_RAS, 10.0)], brain_centre=phantoms.MARKER_RAS)
    plain = orthogonal_views(volume, centre_ras=phantoms.MARKER_RAS, size=400)["coronal"].astype(float)
    tinted = orthogonal_views(volume, centre_ras=phantoms.MARKER_RAS, size=400, labels=labels)["coronal"].astype(float)
    colour = np.array(LABEL_COLOURS[7])
    lesion = np.all(tinted == colour, axis=-1)  # the outline, drawn in full colour
    inside = ndimage.binary_fill_holes(lesion) & ~ndimage.binary_dilation(lesion, iterations=2)
    assert lesion.sum() < inside.sum() / 3  # an outline, not a fill
    # Under a translucent fill the bright marker and the darker rim around it stay apart.
    brightness = plain[..., 0][inside]
    bright = inside & (plain[..., 0] >= np.percentile(brightness, 90))
    dark = inside & (plain[..., 0] <= np.percentile(brightness, 10))
    assert tinted[bright].mean() - tinted[dark].mean() > 0.5 * (plain[bright].mean() - plain[dark].mean()) > 20
    assert np.abs(tinted[inside] - plain[inside]).mean() > 10  # and the lesion is tinted


def test_paired_structures_and_lesion_regions_differ_in_colour_under_the_tint(tmp_path):
    """Each class is told from every other at a glance, left from right included: tinted over the
    same grey, their colours are at least 30 apart (RGB, 0-255)."""
    shape = (len(LABEL_COLOURS), 8, 8)
    grey = np.full(shape, 100.0, np.float32)
    grey[..., 0], grey[..., -1] = 0.0, 200.0  # the intensity range; the axial plane shown is mid-grey
    volume = load_volume(phantoms.write_nifti(tmp_path / "grey.nii.gz", grey, np.eye(4)))
    labels = np.repeat(np.array(sorted(LABEL_COLOURS), np.uint8), 64).reshape(shape)
    axial = orthogonal_views(volume, size=len(LABEL_COLOURS) * 40, labels=labels)["axial"].astype(float)
    stripe = axial.shape[1] / len(LABEL_COLOURS)
    # radiological view: label ids run from the image's right (patient's left) to its left
    row = axial.shape[0] // 2
    shown = {
        label: axial[row, int((len(LABEL_COLOURS) - i - 0.5) * stripe)] for i, label in enumerate(sorted(LABEL_COLOURS))
    }
    for a, b in itertools.combinations(shown, 2):
        assert np.linalg.norm(shown[a] - shown[b]) >= 30, (a, b)
