"""Three orthogonal views of a volume for people to look at, with side labels read from the affine.

Axial and coronal views follow the radiological convention (the patient's right on the image's
left); sagittal views put anterior on the left. Pixels are stretched to the voxel spacing so
anisotropic scans are not distorted.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import aff2axcodes
from PIL import Image, ImageDraw

from fm.io import Volume
from fm.labels import BRAIN_TUMOUR, LabelSet

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}

# view -> (fixed axis, vertical axis with its top side, horizontal axis with its left side)
_VIEWS = {
    "axial": ("SI", ("AP", "A"), ("LR", "R")),
    "coronal": ("AP", ("SI", "S"), ("LR", "R")),
    "sagittal": ("LR", ("SI", "S"), ("AP", "A")),
}


#: Overlay colours (RGB) by label id; labels without a colour are not drawn.
LABEL_COLOURS = {
    1: (70, 110, 255),
    2: (0, 200, 255),
    3: (120, 200, 90),
    4: (90, 170, 60),
    5: (245, 235, 150),
    6: (225, 205, 110),
    7: (255, 215, 0),
    8: (230, 40, 40),
    9: (255, 120, 255),
}


def label_colours(label_set: LabelSet) -> dict[int, tuple[int, int, int]]:
    """LABEL_COLOURS for the brain label set; other sets (BTCV, UKBOB) cycle through tab20."""
    if label_set.name == BRAIN_TUMOUR.name:
        return LABEL_COLOURS
    from matplotlib import colormaps

    table = colormaps["tab20"].colors
    return {label: tuple(int(255 * c) for c in table[i % len(table)]) for i, label in enumerate(label_set.foreground_ids)}


def orthogonal_views(
    volume: Volume,
    centre_ras=None,
    size: int = 256,
    labels: np.ndarray | None = None,
    opacity: float = 0.45,
    colours: dict[int, tuple[int, int, int]] = LABEL_COLOURS,
) -> dict[str, np.ndarray]:
    """{"axial", "coronal", "sagittal"} -> RGB uint8 images through `centre_ras` (default: the
    middle of the volume), each labelled with the patient side at every edge; `labels` (on the
    volume's grid) are blended in with `colours` (label id -> RGB)."""
    codes = aff2axcodes(volume.affine)
    axis_of = {pair: next(a for a, c in enumerate(codes) if c in pair) for pair in ("LR", "AP", "SI")}
    if centre_ras is None:
        centre = (np.array(volume.shape) - 1) / 2
    else:
        centre = np.linalg.solve(volume.affine, np.append(np.asarray(centre_ras, float), 1.0))[:3]
    centre = np.clip(np.round(centre).astype(int), 0, np.array(volume.shape) - 1)
    lo, hi = np.percentile(volume.array, [0.5, 99.5])
    scale = 255.0 / max(hi - lo, 1e-6)
    spacing = volume.spacing
    views = {}
    for name, (fixed, (vertical, top), (horizontal, left)) in _VIEWS.items():
        v_axis, h_axis, f_axis = axis_of[vertical], axis_of[horizontal], axis_of[fixed]
        def oriented(array):
            plane = np.take(array, centre[f_axis], axis=f_axis)
            if v_axis > h_axis:  # after np.take the two remaining axes keep their relative order
                plane = plane.T
            if codes[v_axis] == top:  # index grows towards the top side: row 0 must be the last index
                plane = plane[::-1, :]
            if codes[h_axis] == left:
                plane = plane[:, ::-1]
            return plane

        grey = np.clip((oriented(volume.array) - lo) * scale, 0, 255).astype(np.uint8)
        pixels = np.repeat(grey[..., None], 3, axis=-1)
        if labels is not None:
            plane_labels = oriented(labels)
            for label, colour in colours.items():
                hit = plane_labels == label
                pixels[hit] = ((1 - opacity) * pixels[hit] + opacity * np.array(colour)).astype(np.uint8)
        views[name] = _labelled(
            pixels,
            (spacing[v_axis], spacing[h_axis]),
            {"top": top, "bottom": _OPPOSITE[top], "left": left, "right": _OPPOSITE[left]},
            size,
        )
    return views


def _labelled(pixels: np.ndarray, spacing_vh, sides: dict[str, str], size: int) -> np.ndarray:
    height_mm, width_mm = pixels.shape[0] * spacing_vh[0], pixels.shape[1] * spacing_vh[1]
    zoom = size / max(height_mm, width_mm)
    shape = (max(1, round(width_mm * zoom)), max(1, round(height_mm * zoom)))
    image = Image.fromarray(pixels).resize(shape, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    w, h = image.size
    colour = (255, 220, 0)
    draw.text((w / 2, 2), sides["top"], fill=colour, anchor="mt")
    draw.text((w / 2, h - 2), sides["bottom"], fill=colour, anchor="mb")
    draw.text((2, h / 2), sides["left"], fill=colour, anchor="lm")
    draw.text((w - 2, h / 2), sides["right"], fill=colour, anchor="rm")
    return np.asarray(image)
