"""Findings maths: volumes, diameters, centroids, laterality and regions from label maps of known
analytic size, in several orientations and spacings."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import phantoms
import pytest

from fm.core.examples import nilearn_template
from fm.core.findings import Findings, Laterality, findings_json_schema
from fm.core.io import load_volume
from fm.core.labels import BRAIN_TUMOUR
from fm.core.measure import measure

OEDEMA, CORE, ENHANCING = 7, 8, 9


def grid(shape, spacing, rotation=np.eye(3), centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = np.asarray(centre) - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine


def ras_of(affine, shape) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def brain_with_lesions(ras: np.ndarray, lesions) -> np.ndarray:
    """Analytic labels at RAS points: an ellipsoidal 'brain' (grey left/right) holding spherical
    lesions given as (centre, radius, core radius)."""
    centre, semi = np.array([0.0, -18.0, 10.0]), np.array([68.0, 85.0, 62.0])
    inside = np.sum(((ras - centre) / semi) ** 2, axis=-1) <= 1
    labels = np.where(inside, np.where(ras[..., 0] < 0, 3, 4), 0).astype(np.uint8)
    for lesion_centre, radius, core in lesions:
        d = np.linalg.norm(ras - np.asarray(lesion_centre), axis=-1)
        labels[d <= radius] = OEDEMA
        labels[d <= core] = CORE
        labels[(d <= core) & (d > core - 2.5)] = ENHANCING
    return labels


def as_volume(tmp_path, labels, affine, name="labels.nii.gz"):
    return load_volume(phantoms.write_nifti(tmp_path / name, labels.astype(np.float32), affine))


def measured(tmp_path, affine, shape, lesions, **kwargs):
    labels = brain_with_lesions(ras_of(affine, shape), lesions)
    volume = as_volume(tmp_path, labels, affine)
    return measure(volume.array.astype(np.uint8), volume, BRAIN_TUMOUR, **kwargs)


def sphere_ml(r):
    return 4 / 3 * np.pi * r**3 / 1000


@pytest.mark.parametrize(
    "spacing,radius",
    [((1.0, 1.0, 1.0), 12.0), ((0.8, 1.0, 2.5), 20.0), ((1.5, 1.5, 1.5), 10.0)],
)
def test_sphere_volume_and_diameters(tmp_path, spacing, radius):
    shape = tuple(int(round(180 / s)) for s in spacing)
    findings = measured(tmp_path, grid(shape, spacing), shape, [((30.0, 0.0, 10.0), radius, radius * 0.5)])
    (lesion,) = findings.lesions
    assert lesion.volume_ml == pytest.approx(sphere_ml(radius), rel=0.02)
    assert lesion.subregion_volumes_ml["whole_tumour"] == lesion.volume_ml
    assert lesion.subregion_volumes_ml["tumour_core"] == pytest.approx(sphere_ml(radius * 0.5), rel=0.06)
    assert abs(lesion.longest_diameter_mm - 2 * radius) <= max(spacing)
    assert abs(lesion.short_axis_mm - 2 * radius) <= max(spacing)
    np.testing.assert_allclose(lesion.centroid_ras_mm, (30.0, 0.0, 10.0), atol=0.5)


def test_ellipsoid_long_and_short_axes(tmp_path):
    shape, spacing = (120, 120, 120), (1.0, 1.0, 1.0)
    affine = grid(shape, spacing)
    ras = ras_of(affine, shape)
    labels = brain_with_lesions(ras, [])
    a = np.radians(30)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    local = (ras - [25.0, 0.0, 10.0]) @ rot  # ellipsoid axes 20, 10, 8 mm rotated 30 degrees about z
    labels[np.sum((local / [20.0, 10.0, 8.0]) ** 2, axis=-1) <= 1] = OEDEMA
    volume = as_volume(tmp_path, labels, affine)
    (lesion,) = measure(volume.array.astype(np.uint8), volume, BRAIN_TUMOUR).lesions
    assert abs(lesion.longest_diameter_mm - 40) <= 1.5
    assert abs(lesion.short_axis_mm - 20) <= 1.5


@pytest.mark.parametrize("layout", ["RAS", "LPS", "PIR", "ILA", "oblique"])
def test_the_same_lesions_measure_the_same_in_every_orientation(tmp_path, layout):
    lesions = [((35.0, 10.0, 20.0), 11.0, 6.0), ((-30.0, -40.0, 5.0), 8.0, 4.0)]
    shape, spacing = (110, 120, 100), (1.4, 1.6, 1.5)
    if layout == "oblique":
        a = np.radians(20)
        rotation = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        affine = grid(shape, spacing, rotation, centre=(0, -18, 10))
        labels = brain_with_lesions(ras_of(affine, shape), lesions)
    else:
        ras_affine = grid(shape, spacing, centre=(0, -18, 10))
        labels, affine = phantoms.relayout(brain_with_lesions(ras_of(ras_affine, shape), lesions), ras_affine, layout)
    volume = as_volume(tmp_path, labels, affine)
    findings = measure(volume.array.astype(np.uint8), volume, BRAIN_TUMOUR)

    big, small = findings.lesions
    assert big.laterality == Laterality.right and small.laterality == Laterality.left
    np.testing.assert_allclose(big.centroid_ras_mm, lesions[0][0], atol=0.6)
    np.testing.assert_allclose(small.centroid_ras_mm, lesions[1][0], atol=0.6)
    assert big.volume_ml == pytest.approx(sphere_ml(11.0), rel=0.04)
    assert findings.multifocal and findings.lesion_count == 2
    assert findings.structure("right grey matter").volume_ml > 0


@pytest.mark.parametrize(
    "centre,expected",
    [
        ((-40.0, 0.0, 0.0), Laterality.left),
        ((0.0, 0.0, 0.0), Laterality.bilateral),
        ((4.0, 0.0, 0.0), Laterality.midline_crossing),
    ],
)
def test_laterality_classes(tmp_path, centre, expected):
    shape = (140, 160, 130)
    (lesion,) = measured(
        tmp_path, grid(shape, (1.2, 1.2, 1.2), centre=(0, -18, 10)), shape, [(centre, 10.0, 5.0)]
    ).lesions
    assert lesion.laterality == expected


def test_regions_on_the_mni_template(tmp_path):
    """Lesions placed at MNI landmarks inside the template's own brain mask land in the right lobe;
    one placed above the brain is called extra-axial, not given the nearest lobe."""
    img = nib.load(str(nilearn_template("t1")))
    ras = ras_of(img.affine, img.shape)
    labels = np.where(np.asarray(img.dataobj) > 0, 5, 0).astype(np.uint8)
    sites = {
        "frontal lobe": (35.0, 35.0, 30.0),
        "temporal lobe": (-50.0, -20.0, -15.0),
        "occipital lobe": (20.0, -90.0, 5.0),
        "parietal lobe": (-35.0, -55.0, 50.0),
        "cerebellum": (25.0, -65.0, -38.0),
        "extra-axial space": (12.0, 10.0, 98.0),
    }
    for centre in sites.values():
        labels[np.linalg.norm(ras - centre, axis=-1) <= 6] = OEDEMA
    volume = load_volume(
        phantoms.write_nifti(tmp_path / "mni.nii.gz", *phantoms.relayout(labels.astype(np.float32), img.affine, "LPS"))
    )
    findings = measure(volume.array.astype(np.uint8), volume, BRAIN_TUMOUR)
    by_centre = {tuple(np.round(lesion.centroid_ras_mm)): lesion for lesion in findings.lesions}
    for region, centre in sites.items():
        lesion = by_centre[tuple(np.round(centre))]
        assert lesion.region == region, (centre, lesion.region)
        assert lesion.laterality == (Laterality.right if centre[0] > 0 else Laterality.left)


def test_probabilities_give_confidence_and_a_volume_interval(tmp_path):
    shape = (120, 140, 110)
    affine = grid(shape, (1.3, 1.3, 1.3), centre=(0, -18, 10))
    labels = brain_with_lesions(ras_of(affine, shape), [((30.0, 0.0, 10.0), 10.0, 5.0)])
    volume = as_volume(tmp_path, labels, affine)
    labels = volume.array.astype(np.uint8)
    probabilities = np.zeros((10, *shape), np.float32)
    for label in range(10):
        probabilities[label][labels == label] = 0.8
    probabilities[0] += 0.2  # 20 % of every voxel's mass left on background
    findings = measure(labels, volume, BRAIN_TUMOUR, probabilities=probabilities, source="test-model")
    (lesion,) = findings.lesions
    assert lesion.confidence == pytest.approx(0.8, abs=1e-6)
    low, high = lesion.volume_interval_ml
    assert low == pytest.approx(0.8 * lesion.volume_ml, rel=1e-4) and high == pytest.approx(lesion.volume_ml)
    assert findings.structure("left grey matter").confidence == pytest.approx(0.8, abs=1e-6)
    # the phantom has no ventricles: a structure not found has no confidence (not a confident 1.0)
    ventricles = findings.structure("lateral ventricles")
    assert ventricles.volume_ml == 0 and ventricles.confidence is None
    assert findings.provenance.source == "test-model"


def test_structures_cut_by_the_image_edge_are_flagged(tmp_path):
    wide = (110, 160, 120)  # 154 x 192 x 144 mm: the 136 x 170 x 124 mm ellipsoid brain fits
    whole = measured(tmp_path, grid(wide, (1.4, 1.2, 1.2), centre=(0, -18, 10)), wide, [])
    assert not any(s.touches_border for s in whole.structures)
    narrow = (60, 160, 120)  # 84 mm wide: cut on both sides
    cut = measured(tmp_path, grid(narrow, (1.4, 1.2, 1.2), centre=(0, -18, 10)), narrow, [])
    assert cut.structure("left grey matter").touches_border and cut.structure("right grey matter").touches_border
    # the part outside the image was never imaged: no volume rather than the part inside
    assert cut.structure("left grey matter").volume_ml is None and whole.structure("left grey matter").volume_ml > 0


def scan_and_labels(tmp_path, image, labels, affine, layout):
    """A scan and its label map stored in `layout`, loaded back (held RAS in memory)."""

    def stored(name, array):
        return load_volume(
            phantoms.write_nifti(tmp_path / name, *phantoms.relayout(array.astype(np.float32), affine, layout))
        )

    return stored("scan.nii.gz", image), stored("labels.nii.gz", labels).array.astype(np.uint8)


@pytest.mark.parametrize("layout", ["RAS", "PIR"])
def test_a_structure_is_incomplete_only_where_the_scan_shows_it_at_the_edge(tmp_path, layout):
    """A brain-extracted scan (zero outside the brain) whose segmentation calls all of that zero
    background CSF, out to every face: CSF does not reach the field of view's edge, so it keeps its
    volume. A band of white matter running out through the top of the scan does reach it."""
    shape = (110, 160, 120)
    affine = grid(shape, (1.4, 1.2, 1.2), centre=(0, -18, 10))
    labels = brain_with_lesions(ras_of(affine, shape), [])  # the ellipsoid brain fits inside the grid
    labels[30:40, 75:85, 60:] = 5  # left white matter (x < 0) up to the last axial slice
    image = np.where(labels > 0, 100.0 + 10.0 * labels, 0.0)
    labels[labels == 0] = 1
    scan, labels = scan_and_labels(tmp_path, image, labels, affine, layout)

    findings = measure(labels, scan, BRAIN_TUMOUR)
    csf, white = findings.structure("cerebrospinal fluid"), findings.structure("left white matter")
    assert not csf.touches_border and csf.volume_ml > 1000
    assert white.touches_border and white.volume_ml is None
    grey = findings.structure("left grey matter")
    assert not grey.touches_border and grey.volume_ml > 0


def test_a_speck_of_a_structure_on_the_edge_does_not_make_it_incomplete(tmp_path):
    """The bundled network puts a few voxels of grey matter on the scalp at the edge of the example's
    field of view, detached from the hemisphere; a piece of it there of 1.2 mL does cut it."""
    shape = (110, 160, 120)
    affine = grid(shape, (1.4, 1.2, 1.2), centre=(0, -18, 10))
    labels = brain_with_lesions(ras_of(affine, shape), [])
    image = np.where(labels > 0, 120.0, 0.0)
    image[100:, 70:90, :3] = 60.0  # scalp-like signal at the bottom edge, right of the midline
    speck = labels.copy()
    speck[104:106, 80, 0] = 4  # 2 voxels, 0.004 mL of right grey matter on the edge
    scan, speck = scan_and_labels(tmp_path, image, speck, affine, "RAS")
    assert not measure(speck, scan, BRAIN_TUMOUR).structure("right grey matter").touches_border
    piece = labels.copy()
    piece[100:, 70:90, :3] = 4  # 1.2 mL
    scan, piece = scan_and_labels(tmp_path, image, piece, affine, "RAS")
    assert measure(piece, scan, BRAIN_TUMOUR).structure("right grey matter").touches_border


def test_pieces_of_one_lesion_are_one_lesion_and_specks_are_not_reported(tmp_path):
    shape, spacing = (110, 130, 36), (1.4, 1.4, 4.0)
    affine = grid(shape, spacing, centre=(0, -18, 10))
    labels = brain_with_lesions(ras_of(affine, shape), [((30.0, 0.0, 10.0), 10.0, 5.0)])
    k = int(np.argmin(np.abs(ras_of(affine, shape)[0, 0, :, 2] - 10.0)))
    labels[:, :, k] = np.where(np.isin(labels[:, :, k], (OEDEMA, CORE, ENHANCING)), 4, labels[:, :, k])  # a gap slice
    labels[20, 20, 20] = OEDEMA  # a single-voxel speck (0.008 mL)
    volume = as_volume(tmp_path, labels, affine)
    findings = measure(volume.array.astype(np.uint8), volume, BRAIN_TUMOUR)
    assert findings.lesion_count == 1
    (lesion,) = findings.lesions
    assert lesion.short_axis_mm <= lesion.longest_diameter_mm
    specks = measure(volume.array.astype(np.uint8), volume, BRAIN_TUMOUR, min_lesion_ml=0.0)
    assert specks.lesion_count == 2
    assert specks.lesions[1].longest_diameter_mm == pytest.approx(4.0) and specks.lesions[
        1
    ].short_axis_mm == pytest.approx(1.4)


def test_findings_json_round_trip_and_schema(tmp_path):
    shape = (110, 130, 100)
    findings = measured(
        tmp_path, grid(shape, (1.4, 1.4, 1.4), centre=(0, -18, 10)), shape, [((30.0, 0.0, 10.0), 9.0, 4.0)]
    )
    text = findings.to_json()
    assert Findings.from_json(text) == findings
    data = json.loads(text)
    assert data["lesion_count"] == 1 and data["multifocal"] is False
    assert data["lesions"][0]["laterality"] == "right"
    data["lesion_count"] = 3
    with pytest.raises(ValueError, match="lesion_count"):
        Findings.from_json(json.dumps(data))
    schema = findings_json_schema()
    lesion_schema = schema["$defs"]["LesionFinding"]["properties"]
    assert {"volume_ml", "longest_diameter_mm", "centroid_ras_mm", "laterality"} <= set(lesion_schema)
    assert schema["properties"]["schema_version"]["default"] == "1.1"


def test_a_cut_structure_has_no_volume_in_findings_json_old_or_new(tmp_path):
    """Findings 1.0 kept the part of a cut structure inside the image; it is withheld when read, and
    a current file that gives a cut structure a volume is refused."""
    narrow = (60, 160, 120)
    findings = measured(tmp_path, grid(narrow, (1.4, 1.2, 1.2), centre=(0, -18, 10)), narrow, [])
    data = json.loads(findings.to_json())
    cut = next(s for s in data["structures"] if s["touches_border"])
    cut["volume_ml"] = 123.4
    with pytest.raises(ValueError, match="given exactly when the structure does not reach the image edge"):
        Findings.from_json(json.dumps(data))
    data["schema_version"] = "1.0"
    assert Findings.from_json(json.dumps(data)).structure(cut["name"]).volume_ml is None


def test_found_lesions_are_matched_to_true_ones_by_position(tmp_path):
    from fm.core.lesion_matching import match_lesions

    shape, spacing = (120, 120, 120), (1.5, 1.5, 1.5)
    affine = grid(shape, spacing)
    truth = measured(tmp_path, affine, shape, [((30.0, 0.0, 10.0), 12.0, 6.0), ((-30.0, -20.0, 10.0), 8.0, 4.0)])
    # one true lesion found a little off and smaller, the other missed, and one found where there is none
    found = measured(tmp_path, affine, shape, [((33.0, 2.0, 10.0), 10.0, 5.0), ((0.0, -60.0, 10.0), 6.0, 3.0)])
    scored = match_lesions(found, truth)
    rows = {round(row["true_ml"]): row for row in scored["lesions"]}
    big, small = rows[round(sphere_ml(12.0))], rows[round(sphere_ml(8.0))]
    assert big["found"] and big["laterality_true"] == big["laterality_predicted"] == "right"
    assert big["volume_error"] == pytest.approx(1 - (10 / 12) ** 3, abs=0.05)
    assert not small["found"] and small["predicted_ml"] is None
    assert scored["false_positives"] == 1
