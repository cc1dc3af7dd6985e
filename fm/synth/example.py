"""The bundled example session: one synthetic 1 mm brain with one lesion, made by this engine as a
contrast-enhanced T1 (the engine's T1 preset enhances) and as a FLAIR of the same head (same labels,
grid and noise draw, other intensities), cropped to the head and stored as uint8 so that it ships
inside the package.

Rebuild it with `python -m fm.synth.example` (deterministic: same bytes of voxel data every time).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from fm.core.io import volume_from_array
from fm.core.labels import BRAIN_TUMOUR
from fm.core.measure import measure
from fm.synth.generator import generate

DATA = Path(__file__).resolve().parents[1] / "data"
IMAGE = DATA / "example_brain_t1.nii.gz"
FLAIR = DATA / "example_brain_flair.nii.gz"
LABELS = DATA / "example_brain_t1_labels.nii.gz"
FINDINGS = DATA / "example_brain_t1_findings.json"
SEED, INDEX = 2026, 3  # a right parietal enhancing lesion with oedema
MARGIN_MM = 6


def make_example(out: Path = DATA) -> None:
    settings = dict(spacing_mm=(1.0, 1.0, 1.0), lesion_count=1, atrophy=0.15, orientation="LAS", noise_level=0.004)
    sample = generate(SEED, INDEX, "train", contrast_name="T1", **settings)
    flair = generate(SEED, INDEX, "train", contrast_name="FLAIR", **settings)
    assert np.array_equal(flair.labels, sample.labels)  # every factor but the contrast is drawn alike
    head = sample.image > 0.08 * sample.image.max()
    lo = np.maximum(np.argwhere(head).min(axis=0) - MARGIN_MM, 0)
    hi = np.minimum(np.argwhere(head).max(axis=0) + MARGIN_MM + 1, sample.image.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    affine = sample.affine.copy()
    affine[:3, 3] = sample.affine[:3, :3] @ lo + sample.affine[:3, 3]
    image, flair_image = (
        np.clip(s.image[crop] / np.percentile(s.image[crop], 99.9) * 255, 0, 255).round().astype(np.uint8)
        for s in (sample, flair)
    )
    labels = sample.labels[crop]

    out.mkdir(parents=True, exist_ok=True)
    for array, path in ((image, out / IMAGE.name), (flair_image, out / FLAIR.name), (labels, out / LABELS.name)):
        img = nib.Nifti1Image(array, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header["descrip"] = b"fm3d synthetic example"
        nib.save(img, str(path))
    volume = volume_from_array(image, affine, name=IMAGE.name, modality="MR")
    findings = measure(volume.from_source_layout(labels).array.astype(np.uint8), volume, BRAIN_TUMOUR)
    (out / FINDINGS.name).write_text(findings.to_json())
    print(
        json.dumps(
            {
                "shape": image.shape,
                "lesions": [
                    lesion.model_dump(include={"volume_ml", "laterality", "region"}) for lesion in findings.lesions
                ],
            }
        )
    )


if __name__ == "__main__":
    make_example()
