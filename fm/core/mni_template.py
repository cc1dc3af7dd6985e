"""The label template every synthetic sample is drawn from, derived from the MNI152 2009c maps that
nilearn ships (1 mm, 197 x 233 x 189): the T1 template and the grey- and white-matter maps.

How the labels are derived (all in MNI space, in this order):
1. intracranial mask: T1 > 0 (the template is brain-extracted), holes filled;
2. tissue: inside the mask, the largest of p(GM), p(WM) and p(CSF) = 1 - p(GM) - p(WM);
3. lateral ventricles: CSF more than 15 mm inside the mask, in components of at least 1 mL
   (deep CSF is ventricular; sulcal CSF lies near the surface);
4. hemispheres: grey and white matter split at the mid-sagittal plane x = 0 (the template is
   symmetric), x < 0 being the patient's left;
5. a head around the brain for realism (generation only, never segmented): a 4 mm "skull" shell
   and a 5 mm "scalp" shell outside the mask.
Smooth fields for the atrophy model are kept too (see `with_atrophy`).
"""

from __future__ import annotations

import dataclasses
import functools

import nibabel as nib
import numpy as np
from scipy import ndimage

from fm.core.examples import nilearn_template
from fm.core.labels import BRAIN_TUMOUR

CSF, VENTRICLES, LEFT_GM, RIGHT_GM, LEFT_WM, RIGHT_WM = 1, 2, 3, 4, 5, 6
OEDEMA, CORE, ENHANCING = 7, 8, 9
SKULL, SCALP = 10, 11  # generation-only labels, background in the segmentation label set
GENERATION_LABELS = 12
PARENCHYMA = (LEFT_GM, RIGHT_GM, LEFT_WM, RIGHT_WM)

assert set(BRAIN_TUMOUR.structures) == {CSF, VENTRICLES, LEFT_GM, RIGHT_GM, LEFT_WM, RIGHT_WM}
assert set(BRAIN_TUMOUR.lesion) == {OEDEMA, CORE, ENHANCING}


@dataclasses.dataclass(frozen=True)
class Template:
    labels: np.ndarray  # uint8, MNI grid, generation labels 0..11
    affine: np.ndarray  # voxel -> MNI RAS mm
    ventricle_field: np.ndarray  # float32, ventricle mask smoothed by a 2 mm Gaussian
    grey_probability: np.ndarray  # float32, p(GM) where within 3 mm of sulcal CSF, else 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.labels.shape

    def mni(self, ijk: np.ndarray) -> np.ndarray:
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """Build (once per process, about 3 s) the labelled MNI template."""
    t1_img = nib.load(str(nilearn_template("t1")))
    affine = t1_img.affine
    t1 = np.asarray(t1_img.dataobj)
    gm = np.asarray(nib.load(str(nilearn_template("gm"))).dataobj, dtype=np.float32) / 255
    wm = np.asarray(nib.load(str(nilearn_template("wm"))).dataobj, dtype=np.float32) / 255
    spacing = np.linalg.norm(affine[:3, :3], axis=0)

    inside = ndimage.binary_fill_holes(t1 > 0)
    csf_p = np.clip(1 - gm - wm, 0, 1)
    tissue = np.argmax(np.stack([csf_p, gm, wm]), axis=0)  # 0 csf, 1 gm, 2 wm
    labels = np.zeros(t1.shape, np.uint8)

    depth = ndimage.distance_transform_edt(inside, sampling=spacing)
    deep_csf, n = ndimage.label(inside & (tissue == 0) & (depth > 15))
    sizes = ndimage.sum_labels(np.ones_like(deep_csf), deep_csf, index=np.arange(1, n + 1))
    ventricles = np.isin(deep_csf, 1 + np.flatnonzero(sizes * np.prod(spacing) >= 1000))

    x = (np.arange(t1.shape[0]) * affine[0, 0] + affine[0, 3])[:, None, None]
    right = np.broadcast_to(x >= 0, t1.shape)
    labels[inside & (tissue == 0)] = CSF
    labels[inside & (tissue == 1)] = np.where(right, RIGHT_GM, LEFT_GM)[inside & (tissue == 1)]
    labels[inside & (tissue == 2)] = np.where(right, RIGHT_WM, LEFT_WM)[inside & (tissue == 2)]
    labels[ventricles] = VENTRICLES

    outside_mm = ndimage.distance_transform_edt(~inside, sampling=spacing)
    labels[(outside_mm > 0) & (outside_mm <= 4)] = SKULL
    labels[(outside_mm > 4) & (outside_mm <= 9)] = SCALP

    ventricle_field = ndimage.gaussian_filter(ventricles.astype(np.float32), sigma=2.0 / spacing)
    outer_csf = (~inside) | (labels == CSF)
    near_surface = ndimage.distance_transform_edt(~outer_csf, sampling=spacing) <= 3.0
    grey_probability = np.where(near_surface, gm, 1.0).astype(np.float32)
    return Template(labels, affine, ventricle_field, grey_probability)


def with_atrophy(template: Template, atrophy: float) -> np.ndarray:
    """Template labels with global atrophy in [0, 1]. Ventricles grow along level sets of their
    smoothed mask and the outer cortex thins where its grey-matter probability is lowest, so
    volumes change continuously with the parameter (a 1 mm distance threshold would move in steps)."""
    labels = template.labels.copy()
    if atrophy <= 0:
        return labels
    parenchyma = np.isin(labels, PARENCHYMA)
    labels[parenchyma & (template.ventricle_field > 0.5 - 0.42 * atrophy)] = VENTRICLES
    cortex = np.isin(labels, (LEFT_GM, RIGHT_GM))
    labels[cortex & (template.grey_probability < 0.42 + 0.23 * atrophy)] = CSF  # GM labels have p(GM) >= 0.4
    return labels
