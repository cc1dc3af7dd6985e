"""Three orthogonal views of a volume for people to look at, with side labels read from the affine.

Axial and coronal views follow the radiological convention (the patient's right on the image's
left); sagittal views put anterior on the left. Pixels are stretched to the voxel spacing so
anisotropic scans are not distorted.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from nibabel.orientations import aff2axcodes
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from fm.core.io import Volume
from fm.core.labels import BRAIN_TUMOUR, LabelSet

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}

# view -> (fixed axis, vertical axis with its top side, horizontal axis with its left side)
_VIEWS = {
    "axial": ("SI", ("AP", "A"), ("LR", "R")),
    "coronal": ("AP", ("SI", "S"), ("LR", "R")),
    "sagittal": ("LR", ("SI", "S"), ("AP", "A")),
}


#: Overlay colours (RGB) by label id. Fluid is blue (CSF) and pale cyan (ventricles); the
#: hemispheres differ in hue (left green, right violet) and grey from white matter in lightness, so
#: sides and tissues can be told apart under a light tint; lesion sub-regions take warm colours no
#: tissue uses (oedema yellow, necrotic core red, enhancing tumour rose). Tinted over the same grey,
#: any two differ by at least 38 (RGB, 0-255). Labels without a colour are not drawn.
LABEL_COLOURS = {
    1: (0, 70, 255),
    2: (80, 235, 255),
    3: (0, 165, 50),
    4: (150, 50, 240),
    5: (175, 255, 110),
    6: (255, 175, 255),
    7: (255, 230, 0),
    8: (255, 60, 0),
    9: (255, 0, 160),
}
#: Tissue is tinted lightly, so the anatomy under it stays readable; emphasised labels (lesions)
#: are filled more strongly and outlined in full colour, so their extent reads at a glance.
TISSUE_OPACITY = 0.25
LESION_OPACITY = 0.35


def label_colours(label_set: LabelSet) -> dict[int, tuple[int, int, int]]:
    """LABEL_COLOURS for the brain label set; other sets (BTCV, UKBOB) cycle through tab20."""
    if label_set.name == BRAIN_TUMOUR.name:
        return LABEL_COLOURS
    from matplotlib import colormaps

    table = colormaps["tab20"].colors
    return {
        label: tuple(int(255 * c) for c in table[i % len(table)]) for i, label in enumerate(label_set.foreground_ids)
    }


def nearest_voxel(volume: Volume, ras) -> np.ndarray:
    """Index (i, j, k) of the voxel of `volume` nearest a RAS point (mm), inside the grid."""
    ijk = np.linalg.solve(volume.affine, np.append(np.asarray(ras, float), 1.0))[:3]
    return np.clip(np.round(ijk).astype(int), 0, np.array(volume.shape) - 1)


def view_axes(volume: Volume) -> dict[str, int]:
    """{"axial", "coronal", "sagittal"} -> the array axis each view slices across (from the affine)."""
    codes = aff2axcodes(volume.affine)
    return {name: next(a for a, c in enumerate(codes) if c in fixed) for name, (fixed, _, _) in _VIEWS.items()}


def view_slices(volume: Volume, centre_ras=None) -> dict[str, int]:
    """The slice index of each view through the voxel nearest `centre_ras` (default: the middle)."""
    if centre_ras is None:
        centre = np.round((np.array(volume.shape) - 1) / 2).astype(int)
    else:
        centre = nearest_voxel(volume, centre_ras)
    return {name: int(centre[axis]) for name, axis in view_axes(volume).items()}


def default_window(volume: Volume) -> tuple[float, float]:
    """The 0.5-99.5 % intensity range: a window that ignores a few extreme voxels."""
    lo, hi = np.percentile(volume.array, [0.5, 99.5])
    return float(lo), float(hi)


def plane_view(
    volume: Volume,
    name: str,
    index: int,
    size: int = 256,
    labels: np.ndarray | None = None,
    colours: dict[int, tuple[int, int, int]] = LABEL_COLOURS,
    emphasised: Collection[int] = tuple(BRAIN_TUMOUR.lesion),
    window: tuple[float, float] | None = None,
    lesion_opacity: float = LESION_OPACITY,
) -> np.ndarray:
    """One view ("axial", "coronal" or "sagittal") as an RGB uint8 image through slice `index` of
    its axis, labelled with the patient side at every edge. Intensities are shown through `window`
    (low, high; default the 0.5-99.5 % range); `labels` (on the volume's grid) are blended in with
    `colours`: emphasised labels (lesions) at `lesion_opacity` and outlined, tissue lighter."""
    codes = aff2axcodes(volume.affine)
    axis_of = {pair: next(a for a, c in enumerate(codes) if c in pair) for pair in ("LR", "AP", "SI")}
    fixed, (vertical, top), (horizontal, left) = _VIEWS[name]
    v_axis, h_axis, f_axis = axis_of[vertical], axis_of[horizontal], axis_of[fixed]
    index = int(np.clip(index, 0, volume.shape[f_axis] - 1))

    def oriented(array):
        plane = np.take(array, index, axis=f_axis)
        if v_axis > h_axis:  # after np.take the two remaining axes keep their relative order
            plane = plane.T
        if codes[v_axis] == top:  # index grows towards the top side: row 0 must be the last index
            plane = plane[::-1, :]
        if codes[h_axis] == left:
            plane = plane[:, ::-1]
        return plane

    lo, hi = window if window is not None else default_window(volume)
    grey = np.clip((oriented(volume.array) - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    # Pixels are stretched to the voxel spacing; labels are drawn at this display size so their
    # outlines are one crisp pixel, not a blurred voxel edge.
    spacing = volume.spacing
    height_mm, width_mm = grey.shape[0] * spacing[v_axis], grey.shape[1] * spacing[h_axis]
    zoom = size / max(height_mm, width_mm)
    width, height = max(1, round(width_mm * zoom)), max(1, round(height_mm * zoom))
    shown = np.asarray(Image.fromarray(grey).resize((width, height), Image.Resampling.BILINEAR))
    pixels = np.repeat(shown[..., None], 3, axis=-1).astype(np.float32)
    if labels is not None and lesion_opacity > 0:
        _blend(pixels, _nearest_resize(oriented(labels), height, width), colours, emphasised, lesion_opacity)
    return _labelled(
        pixels.round().astype(np.uint8),
        {"top": top, "bottom": _OPPOSITE[top], "left": left, "right": _OPPOSITE[left]},
    )


def orthogonal_views(
    volume: Volume,
    centre_ras=None,
    size: int = 256,
    labels: np.ndarray | None = None,
    colours: dict[int, tuple[int, int, int]] = LABEL_COLOURS,
    emphasised: Collection[int] = tuple(BRAIN_TUMOUR.lesion),
) -> dict[str, np.ndarray]:
    """{"axial", "coronal", "sagittal"} -> RGB uint8 images (longest side `size` pixels) through the
    voxel nearest `centre_ras` (default: the middle of the volume): `plane_view` of each."""
    window = default_window(volume)
    return {
        name: plane_view(volume, name, index, size, labels, colours, emphasised, window)
        for name, index in view_slices(volume, centre_ras).items()
    }


def _nearest_resize(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.minimum(((np.arange(height) + 0.5) * plane.shape[0] / height).astype(int), plane.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * plane.shape[1] / width).astype(int), plane.shape[1] - 1)
    return plane[np.ix_(rows, cols)]


def _blend(
    pixels: np.ndarray, plane_labels: np.ndarray, colours, emphasised: Collection[int], lesion_opacity: float
) -> None:
    """Tint `pixels` (H x W x 3 float, in place) with each label's colour; outline emphasised labels.
    Tissue keeps its default proportion to the lesions' opacity."""
    for label, colour in colours.items():
        hit = plane_labels == label
        if not hit.any():
            continue
        opacity = lesion_opacity if label in emphasised else lesion_opacity * TISSUE_OPACITY / LESION_OPACITY
        pixels[hit] = (1 - opacity) * pixels[hit] + opacity * np.asarray(colour, np.float32)
        if label in emphasised:
            pixels[hit & ~ndimage.binary_erosion(hit, border_value=1)] = colour


def _labelled(image: np.ndarray, sides: dict[str, str]) -> np.ndarray:
    """The image with the patient side written at the middle of each edge."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    w, h = picture.size
    font = ImageFont.load_default(size=max(11, round(max(w, h) / 24)))
    colour = (255, 220, 0)
    draw.text((w / 2, 2), sides["top"], fill=colour, anchor="mt", font=font)
    draw.text((w / 2, h - 2), sides["bottom"], fill=colour, anchor="mb", font=font)
    draw.text((2, h / 2), sides["left"], fill=colour, anchor="lm", font=font)
    draw.text((w - 2, h / 2), sides["right"], fill=colour, anchor="rm", font=font)
    return np.asarray(picture)
