"""Synthetic datasets on disk: images, labels, findings, reports and QA per sample, plus a parquet
manifest that `datasets` loads directly, and a preview montage for people to look at.

Layout of DIR (sample ids are `<split>-<seed>-<index>`):
    images/<id>.nii.gz     the scan (int16 with a scale factor; reads back as float)
    labels/<id>.nii.gz     segmentation labels (fm.core.labels.BRAIN_TUMOUR), same grid
    findings/<id>.json     fm.core.findings.Findings measured from the label map
    reports/<id>.json      {"structured": ..., "narrative": ...}
    qa/<id>.json           question/answer pairs
    rows/<id>.json         the sample's manifest row (lets an interrupted run resume)
    manifest-<split>.parquet
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from tqdm import tqdm

from fm.core.errors import InputFileError
from fm.core.io import load_volume
from fm.report.views import orthogonal_views
from fm.synth.generator import SynthSample, generate

_FOLDERS = ("images", "labels", "findings", "reports", "qa", "rows")


def write_sample(sample: SynthSample, out: Path) -> dict:
    """Write one sample's files; returns its manifest row (paths relative to `out`)."""
    sid = sample.sample_id
    image = nib.Nifti1Image(sample.image, sample.affine)
    image.set_data_dtype(np.int16)  # nibabel stores a scale factor: 4x smaller than float32
    labels = nib.Nifti1Image(sample.labels, sample.affine)
    labels.set_data_dtype(np.uint8)
    for img in (image, labels):
        img.set_qform(sample.affine, code=1)
        img.set_sform(sample.affine, code=1)
    nib.save(image, str(out / "images" / f"{sid}.nii.gz"))
    nib.save(labels, str(out / "labels" / f"{sid}.nii.gz"))
    (out / "findings" / f"{sid}.json").write_text(sample.findings.to_json())
    (out / "reports" / f"{sid}.json").write_text(
        json.dumps({"structured": sample.report, "narrative": sample.narrative}, indent=2)
    )
    (out / "qa" / f"{sid}.json").write_text(json.dumps(sample.qa, indent=2))
    findings = sample.findings
    row = {
        "sample_id": sid,
        "split": sample.params["split"],
        "seed": sample.params["seed"],
        "index": sample.params["index"],
        "image": f"images/{sid}.nii.gz",
        "labels": f"labels/{sid}.nii.gz",
        "findings": f"findings/{sid}.json",
        "contrast": sample.params["contrast"],
        "orientation": sample.params["orientation"],
        "spacing_mm": sample.params["spacing_mm"],
        "shape": sample.params["shape"],
        "atrophy": sample.params["atrophy"],
        "lesion_count": findings.lesion_count,
        "lesion_volume_ml": float(sum(lesion.volume_ml for lesion in findings.lesions)),
        "ventricle_volume_ml": findings.structure("lateral ventricles").volume_ml,
        "narrative": sample.narrative,
        "questions": [qa["question"] for qa in sample.qa],
        "answers": [qa["answer"] for qa in sample.qa],
        "params_json": json.dumps(sample.params),
    }
    (out / "rows" / f"{sid}.json").write_text(json.dumps(row))
    return row


def write_dataset(
    out: str | Path,
    n: int,
    seed: int,
    split: str,
    preview: bool = False,
    progress: bool = True,
    spacing_mm: tuple[float, float, float] | None = None,
) -> Path:
    """Generate samples 0..n-1 of `split` into `out` (skipping those already written) and write
    the manifest. Returns the manifest path. spacing_mm: every scan on this voxel spacing instead
    of the split's random one (small scans for quick runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    for folder in _FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for index in tqdm(range(n), desc=f"synth {split}", unit="scan", disable=not progress):
        done = out / "rows" / f"{split}-{seed}-{index:06d}.json"
        if done.exists():
            rows.append(json.loads(done.read_text()))
            continue
        rows.append(write_sample(generate(seed, index, split, spacing_mm=spacing_mm), out))
    manifest = out / f"manifest-{split}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    if preview:
        write_preview(out, [r["sample_id"] for r in rows[:6]], out / f"preview-{split}.png")
    return manifest


def load_synth_dataset(path: str | Path, split: str = "train"):
    """The manifest of a synthetic dataset folder as a `datasets.Dataset`."""
    import datasets

    manifest = Path(path) / f"manifest-{split}.parquet"
    if not manifest.is_file():
        written = sorted(
            p.name.removeprefix("manifest-").removesuffix(".parquet") for p in Path(path).glob("manifest-*.parquet")
        )
        raise InputFileError(
            manifest, f"no such split; this folder holds: {', '.join(written) or 'none (run fm synth)'}"
        )
    # named after the split it is, so `datasets` does not announce a "train" split for the test set
    return datasets.load_dataset("parquet", data_files={split: str(manifest)}, split=split)


def write_preview(out: Path, sample_ids: list[str], png: Path, size: int = 200) -> Path:
    """A montage, one row per sample: axial, coronal and sagittal views through its largest lesion
    (or the centre), first as the image alone, then with the labels blended in colour."""
    rows = []
    for sid in sample_ids:
        volume = load_volume(out / "images" / f"{sid}.nii.gz")
        labels = load_volume(out / "labels" / f"{sid}.nii.gz")  # same file grid, so the same layout
        findings = json.loads((out / "findings" / f"{sid}.json").read_text())
        centre = findings["lesions"][0]["centroid_ras_mm"] if findings["lesions"] else None
        plain = orthogonal_views(volume, centre_ras=centre, size=size)
        overlaid = orthogonal_views(volume, centre_ras=centre, size=size, labels=labels.array)
        tiles = []
        for views in (plain, overlaid):
            for name in ("axial", "coronal", "sagittal"):
                tile = np.zeros((size, size, 3), np.uint8)
                tile[: views[name].shape[0], : views[name].shape[1]] = views[name]
                tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(png)
    return png
