"""One synthetic brain MRI with exact ground truth, deterministic per (seed, split, index).

A sample is drawn in this order: global atrophy and lesions are painted into the MNI label
template; a random pose, smooth warp and mass effect map an output grid of random spacing and
orientation onto it; labels are sampled (nearest) on that grid and on a finer grid from which the
image is rendered (Gaussian intensities per label, slice profile, bias, noise). The findings come
from `fm.core.measure` on the output label map, the same code that measures a model's prediction.

The two splits differ on purpose, so the test split measures generalisation (see SPLITS).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import torch

from fm.core.errors import look_up
from fm.core.findings import Findings
from fm.core.io import Volume, volume_from_array
from fm.core.labels import BRAIN_TUMOUR
from fm.core.measure import measure
from fm.core.mni_template import SCALP, SKULL, load_template, with_atrophy
from fm.report.template_narrative import narrative_report, structured_report
from fm.synth import contrast, lesions, spatial
from fm.synth.vqa import qa_pairs

#: Field of view (mm, x/y/z in the subject's RAS) covering the head with a margin.
HEAD_FOV_MM = (176.0, 216.0, 184.0)
HEAD_CENTRE_MNI = (0.0, -18.0, 12.0)


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    contrasts: tuple[str, ...]  # presets drawn uniformly (contrast.RANDOM = a fully random mixture)
    spacing_mm: tuple[float, float]  # in-plane voxel size range
    thick_slice_probability: float
    thick_slice_mm: tuple[float, float]
    lesion_volume_ml: tuple[float, float]
    lesion_count_weights: tuple[float, ...]  # P(0, 1, 2, 3 lesions)
    infratentorial_lesions: bool
    bias_max: float
    noise_max: float


#: What differs between train and test (the out-of-distribution evaluation split):
#: - contrast: train sees T1- and T2-like presets and random mixtures; test sees only FLAIR- and
#:   PD-like presets (never drawn by name in training);
#: - resolution: test has thicker slices more often (3-5 mm in half the scans vs 2-4 mm in a quarter);
#: - lesions: test lesions may be larger (up to 80 mL vs 60 mL) and sit in the cerebellum or
#:   brainstem, where training never places one;
#: - acquisition: stronger bias fields and more noise in test.
SPLITS = {
    "train": SplitSpec(
        contrasts=("T1", "T2", contrast.RANDOM),
        spacing_mm=(0.9, 1.6),
        thick_slice_probability=0.25,
        thick_slice_mm=(2.0, 4.0),
        lesion_volume_ml=(1.0, 60.0),
        lesion_count_weights=(0.2, 0.45, 0.25, 0.1),
        infratentorial_lesions=False,
        bias_max=0.3,
        noise_max=0.04,
    ),
    "test": SplitSpec(
        contrasts=("FLAIR", "PD"),
        spacing_mm=(1.0, 1.8),
        thick_slice_probability=0.5,
        thick_slice_mm=(3.0, 5.0),
        lesion_volume_ml=(1.0, 80.0),
        lesion_count_weights=(0.2, 0.45, 0.25, 0.1),
        infratentorial_lesions=True,
        bias_max=0.5,
        noise_max=0.07,
    ),
}


@dataclasses.dataclass
class SynthSample:
    sample_id: str
    image: np.ndarray  # float32, laid out as the file on disk (random orientation)
    labels: np.ndarray  # uint8 segmentation labels (BRAIN_TUMOUR), same layout
    affine: np.ndarray  # voxel -> RAS mm of both
    findings: Findings
    report: dict
    narrative: str
    qa: list[dict[str, str]]
    params: dict  # everything drawn for this sample, JSON-able

    def volume(self) -> Volume:
        return volume_from_array(self.image, self.affine, name=self.sample_id, modality="MR")


def sample_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, zlib.crc32(split.encode()), index])


def generate(
    seed: int,
    index: int,
    split: str = "train",
    *,
    spacing_mm: tuple[float, float, float] | None = None,
    contrast_name: str | None = None,
    lesion_count: int | None = None,
    atrophy: float | None = None,
    orientation: str | None = None,
    noise_level: float | None = None,
) -> SynthSample:
    """Sample `index` of `split` for `seed`. Keyword overrides pin one factor (for examples and tests)."""
    spec = look_up("split", split, SPLITS)
    rng = np.random.default_rng(sample_seed(seed, split, index))
    template = load_template()

    # Every factor is drawn whether or not it is overridden, so pinning one leaves the rest as is.
    drawn_atrophy = float(rng.uniform(0, 1))
    drawn_count = int(rng.choice(len(spec.lesion_count_weights), p=spec.lesion_count_weights))
    atrophy = drawn_atrophy if atrophy is None else float(atrophy)
    count = drawn_count if lesion_count is None else int(lesion_count)
    plans = lesions.plan_lesions(rng, template, count, spec.lesion_volume_ml, spec.infratentorial_lesions)
    mni_labels = with_atrophy(template, atrophy)
    lesions.paint_lesions(mni_labels, template, plans)

    spacing = rng.uniform(*spec.spacing_mm, 3)
    thick_axis = int(rng.integers(3))
    if rng.random() < spec.thick_slice_probability:
        spacing[thick_axis] = rng.uniform(*spec.thick_slice_mm)
    spacing = spacing if spacing_mm is None else np.asarray(spacing_mm, float)
    drawn_code = spatial.ORIENTATIONS[rng.integers(len(spatial.ORIENTATIONS))]
    code = orientation or drawn_code
    axis_extent = [HEAD_FOV_MM["RLAPSI".index(c) // 2] for c in code]
    shape = tuple(int(np.ceil(extent / s)) for extent, s in zip(axis_extent, spacing))
    centre = np.asarray(HEAD_CENTRE_MNI) + rng.uniform(-6, 6, 3)
    out_grid = spatial.grid_affine(shape, spacing, code, centre)
    pose = spatial.random_pose(rng, max_rotation_deg=12, scale_range=(0.92, 1.08), max_shear=0.03, max_shift_mm=4)
    warp_mm = float(rng.uniform(0, 3))
    strengths = [float(rng.uniform(0.0, 0.3)) for _ in plans]
    mass_effects = [(np.array(p.centre_mni), p.radius_mm, s) for p, s in zip(plans, strengths)]
    drawn_contrast = spec.contrasts[rng.integers(len(spec.contrasts))]
    contrast_name = contrast_name or drawn_contrast
    means, stds = contrast.label_intensities(rng, contrast_name)
    bias = float(rng.uniform(0, spec.bias_max))
    noise = float(rng.uniform(0.005, spec.noise_max))
    noise = noise if noise_level is None else float(noise_level)

    template_tensor = torch.from_numpy(mni_labels).float()
    warp = spatial.smooth_field(rng, shape, 3, 5, warp_mm)
    out_labels = spatial.sample_labels(
        template_tensor, template.affine, spatial.mni_coordinates(out_grid, shape, pose, warp, mass_effects)
    )
    # Thick slices are rendered on a finer grid and averaged, as a slice profile integrates tissue.
    factors = tuple(int(np.ceil(s / 1.25)) if s > 2.0 else 1 for s in spacing)
    if factors == (1, 1, 1):
        fine_labels = out_labels
    else:
        fine_shape = tuple(n * f for n, f in zip(shape, factors))
        fine_warp = torch.nn.functional.interpolate(warp[None], size=fine_shape, mode="trilinear", align_corners=False)[
            0
        ]
        fine_mni = spatial.mni_coordinates(
            spatial.subdivided(out_grid, factors), fine_shape, pose, fine_warp, mass_effects
        )
        fine_labels = spatial.sample_labels(template_tensor, template.affine, fine_mni)
        del fine_mni
    image = contrast.render(rng, fine_labels, factors, means, stds, bias, noise)
    labels = out_labels.numpy()
    labels[np.isin(labels, (SKULL, SCALP))] = 0

    sample_id = f"{split}-{seed}-{index:06d}"
    image_volume = volume_from_array(image, out_grid, name=sample_id, modality="MR")
    label_volume = image_volume.from_source_layout(labels)
    findings = measure(label_volume.array.astype(np.uint8), image_volume, BRAIN_TUMOUR, source="ground truth")
    text_seed = int(rng.integers(2**31))
    params = {
        "seed": seed,
        "split": split,
        "index": index,
        "contrast": contrast_name,
        "spacing_mm": [round(float(s), 4) for s in spacing],
        "orientation": code,
        "shape": list(shape),
        "atrophy": round(atrophy, 4),
        "warp_mm": round(warp_mm, 3),
        "bias": round(bias, 4),
        "noise": round(noise, 4),
        # What was painted; the findings (measured afterwards) are the truth: lesions can merge,
        # be clipped to the brain or shrink below the reporting size.
        "planned_lesions": [{**dataclasses.asdict(p), "mass_effect": round(s, 3)} for p, s in zip(plans, strengths)],
    }
    return SynthSample(
        sample_id=sample_id,
        image=image,
        labels=labels.astype(np.uint8),
        affine=out_grid,
        findings=findings,
        report=structured_report(findings),
        narrative=narrative_report(findings, seed=text_seed),
        qa=qa_pairs(findings, seed=text_seed + 1),
        params=params,
    )
