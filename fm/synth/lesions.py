"""Tumour-like lesions painted into the template's labels (MNI space) before a sample is drawn,
so the deformation, mass effect and resampling act on them like on any anatomy.

Each lesion is an irregular blob (an ellipsoid whose radius is perturbed by smooth noise) with
nested sub-regions in the BraTS convention: oedema around a core, the core an enhancing rim
around necrosis. Three kinds vary the mix:
- glioma-like: large oedema, enhancing rim, necrotic centre;
- low-grade: non-enhancing core with little oedema;
- metastasis-like: small solid enhancing core in a wide oedema.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from fm.core import regions
from fm.core.mni_template import CORE, ENHANCING, LEFT_WM, OEDEMA, PARENCHYMA, RIGHT_WM, Template

KINDS = ("glioma-like", "low-grade", "metastasis-like")
INFRATENTORIAL = ("cerebellum", "brainstem")


@dataclasses.dataclass(frozen=True)
class LesionPlan:
    kind: str
    centre_mni: tuple[float, float, float]
    target_ml: float  # whole tumour before clipping to the brain and before mass effect
    core_fraction: float  # core radius / whole-tumour radius
    rim_mm: float  # enhancing rim thickness (0: no enhancement)
    axes: tuple[float, float, float]  # relative semi-axes, product 1
    noise_seed: int

    @property
    def radius_mm(self) -> float:
        return float((3 * self.target_ml * 1000 / (4 * np.pi)) ** (1 / 3))


def plan_lesions(
    rng: np.random.Generator,
    template: Template,
    count: int,
    volume_range_ml: tuple[float, float],
    allow_infratentorial: bool,
) -> list[LesionPlan]:
    """Up to `count` non-overlapping lesions centred in brain parenchyma."""
    candidates = np.argwhere(np.isin(template.labels, PARENCHYMA)[::2, ::2, ::2]) * 2
    plans: list[LesionPlan] = []
    for _ in range(count * 50):
        if len(plans) == count:
            break
        kind = KINDS[rng.integers(len(KINDS))]
        target = float(np.exp(rng.uniform(*np.log(volume_range_ml))))
        centre = template.mni(candidates[rng.integers(len(candidates))].astype(float))
        region = str(regions.lobe(centre))
        if region in INFRATENTORIAL and not allow_infratentorial:
            continue
        axes = np.exp(rng.normal(0, 0.15, 3))
        plan = LesionPlan(
            kind=kind,
            centre_mni=tuple(float(v) for v in centre),
            target_ml=target,
            core_fraction={
                "glioma-like": rng.uniform(0.45, 0.7),
                "low-grade": rng.uniform(0.75, 0.95),
                "metastasis-like": rng.uniform(0.25, 0.45),
            }[kind],
            rim_mm=0.0 if kind == "low-grade" else float(rng.uniform(1.5, 3.5)),
            axes=tuple(float(a) for a in axes / np.prod(axes) ** (1 / 3)),
            noise_seed=int(rng.integers(2**31)),
        )
        if all(np.linalg.norm(centre - np.array(p.centre_mni)) > 1.6 * (plan.radius_mm + p.radius_mm) for p in plans):
            plans.append(plan)
    return plans


def paint_lesions(labels: np.ndarray, template: Template, plans: list[LesionPlan]) -> None:
    """Write oedema / core / enhancing labels into `labels` (MNI grid, in place), parenchyma only."""
    spacing = np.linalg.norm(template.affine[:3, :3], axis=0)
    inverse = np.linalg.inv(template.affine)
    for plan in plans:
        reach = 1.6 * plan.radius_mm * max(plan.axes)
        centre_ijk = inverse[:3, :3] @ plan.centre_mni + inverse[:3, 3]
        lo = np.maximum(np.floor(centre_ijk - reach / spacing).astype(int), 0)
        hi = np.minimum(np.ceil(centre_ijk + reach / spacing).astype(int) + 1, labels.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        ijk = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1)
        offset_mm = (ijk - centre_ijk) * spacing
        radius = np.linalg.norm(offset_mm / (plan.radius_mm * np.asarray(plan.axes)), axis=-1)
        # Lobulated outline: the radius is scaled by a smooth field (correlation ~ a third of the
        # radius, +-15 %), then only the piece holding the centre is kept.
        noise_rng = np.random.default_rng(plan.noise_seed)
        bumps = ndimage.gaussian_filter(noise_rng.standard_normal(radius.shape), sigma=plan.radius_mm / 3 / spacing)
        radius = radius * np.exp(0.15 * np.clip(bumps / (bumps.std() + 1e-6), -2, 2))
        region = labels[box]
        # Oedema spreads along white matter and spares the cortex; the core takes any tissue.
        white = np.isin(region, (LEFT_WM, RIGHT_WM))
        tissue = (white | np.isin(region, PARENCHYMA) & (radius <= 1.15 * plan.core_fraction)) & (radius <= 1.0)
        pieces, _ = ndimage.label(tissue)
        centre_piece = pieces[tuple(np.clip(np.round(centre_ijk - lo).astype(int), 0, np.array(pieces.shape) - 1))]
        if centre_piece == 0:
            continue  # the centre fell on a sulcus after all: no lesion rather than a fragment
        whole = pieces == centre_piece
        core = whole & (radius <= plan.core_fraction)
        rim = plan.rim_mm / plan.radius_mm
        region[whole] = OEDEMA
        region[core] = CORE
        if plan.rim_mm > 0:
            enhancing = core & (radius > plan.core_fraction - rim)
            if plan.kind == "metastasis-like":
                enhancing = core  # solid enhancing nodule
            region[enhancing] = ENHANCING
