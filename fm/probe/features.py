"""What a linear probe reads (fm.probe.linear): the labelled cases of a manifest, and one feature matrix
per feature source, extracted once and cached.

A source is an encoder (`NAME`, `NAME(key=value,...)`, `NAME@WEIGHTS` with WEIGHTS a checkpoint
file, a folder or hf-hub:org/name), embedded through fm.probe.embed and its parquet cache (keyed by the
scan's bytes, the encoder's weights and its input spec), or the intensity-histogram baseline:
a 32-bin histogram of the foreground's normalised intensities plus its volume in mL.

Arrays rather than scans (a MedMNIST-style .npz of volumes and labels) become NIfTI files and a
manifest first: `cases_from_npz`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from fm.core.errors import InputError, InputFileError

HISTOGRAM = "intensity histogram"
HISTOGRAM_BINS = 32
# NAME(key=value,...)@WEIGHTS; a tuple value is written with semicolons: size=(64;64;64)
_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:\((?P<args>.*)\))?(?:@(?P<weights>[^()]+))?$")


@dataclasses.dataclass(frozen=True)
class ProbeCase:
    path: str
    label: str | float
    group: str  # the subject: never on both sides of a split
    split: str | None = None  # "train" / "test" from the manifest, if it fixes them


@dataclasses.dataclass(frozen=True)
class FeatureSource:
    """An encoder (with weights, or at random init) or the histogram baseline."""

    encoder: str | None  # None: the histogram baseline
    weights: str | None = None
    overrides: tuple[tuple[str, object], ...] = ()
    segmenter: str | None = None  # the encoder of this segmenter network (name or folder), with its input spec

    @property
    def label(self) -> str:
        if self.segmenter:
            return f"{self.segmenter} encoder" + ("" if self.weights else " (random init)")
        if self.encoder is None:
            return HISTOGRAM
        settings = f"({','.join(f'{k}={v}' for k, v in self.overrides)})" if self.overrides else ""
        return f"{self.encoder}{settings}" + (f"@{self.weights}" if self.weights else " (random init)")

    def random_twin(self) -> "FeatureSource":
        return dataclasses.replace(self, weights=None)

    @classmethod
    def parse(cls, spec: str) -> "FeatureSource":
        from encoders.registry import check_settings, list_encoders

        if spec.strip().lower() in ("histogram", HISTOGRAM):
            return cls(None)
        if spec.startswith("segmenter:"):
            network = spec[len("segmenter:") :]
            return cls("segmenter", weights=network, segmenter=network)
        match = _SPEC.match(spec.strip())
        if not match or match["name"] not in list_encoders():
            raise InputError(
                f"encoder {spec!r}: give NAME, NAME(key=value,...) or NAME@WEIGHTS with NAME one of {', '.join(list_encoders())}"
            )
        overrides = {}
        for part in filter(None, (match["args"] or "").split(",")):
            key, _, value = part.partition("=")
            overrides[key.strip()] = _value(value.strip())
        check_settings(match["name"], overrides)
        return cls(match["name"], match["weights"], tuple(sorted(overrides.items())))


def read_probe_manifest(path: str | Path, label_column: str = "label") -> list[ProbeCase]:
    """A CSV or parquet manifest: `path` and the label column, optional `group` (subject id;
    default: each case its own) and `split` (train/test). Relative paths are read from the
    manifest's folder; every file must exist."""
    from fm.core.manifests import read_rows, require_files, resolved

    path = Path(path)
    rows = read_rows(path, ("path", label_column), ("group", "split"))
    cases = []
    for row in rows:
        file = resolved(path, row["path"])
        split = (str(row.get("split") or "").strip().lower()) or None
        if split not in (None, "train", "test"):
            raise InputFileError(path, f"split {split!r} for {row['path']}: use train or test")
        group = str(row.get("group") or "").strip() or str(file)
        cases.append(ProbeCase(str(file), _value(str(row[label_column])), group, split))
    require_files(path, [Path(case.path) for case in cases])
    splits = {case.split for case in cases}
    if splits != {None} and splits != {"train", "test"}:
        raise InputFileError(path, "give every case a split (train or test), with both present, or none")
    return cases


def cases_from_npz(npz: str | Path, folder: str | Path, spacing_mm: float = 1.0) -> Path:
    """A MedMNIST-style .npz (arrays `<split>_images` (N, D, H, W) or (N, D, H, W, 1) and
    `<split>_labels`, or `images` and `labels`) as NIfTI files in `folder`, on a RAS grid of
    `spacing_mm`, and the manifest listing them (returned). Labels with one column become scalars."""
    import nibabel as nib

    npz, folder = Path(npz), Path(folder)
    try:
        arrays = np.load(npz)
    except Exception as error:  # numpy raises several types for files that are not .npz
        raise InputFileError(npz, f"is not a readable .npz file ({error})") from None
    pairs = [(split, f"{split}_images", f"{split}_labels") for split in ("train", "val", "test")]
    pairs = [p for p in pairs if p[1] in arrays] or [(None, "images", "labels")]
    if any(images not in arrays or labels not in arrays for _, images, labels in pairs):
        raise InputFileError(
            npz, f"needs images and labels arrays (or <split>_images/_labels); it has {sorted(arrays)}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([spacing_mm] * 3 + [1.0])
    rows = []
    for split, images, labels in pairs:
        volumes, targets = arrays[images], arrays[labels].reshape(len(arrays[images]), -1)
        if volumes.ndim == 5 and volumes.shape[-1] == 1:
            volumes = volumes[..., 0]
        if volumes.ndim != 4:
            raise InputFileError(npz, f"{images} has shape {volumes.shape}; volumes need (N, D, H, W)")
        for index, (volume, target) in enumerate(zip(volumes, targets)):
            file = folder / f"{split or 'case'}-{index:05d}.nii.gz"
            if not file.exists():
                nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), file)
            label = target[0].item() if len(target) == 1 else json.dumps(target.tolist())
            rows.append({"path": file.name, "label": label, "split": {"val": "train"}.get(split, split) or ""})
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def source_features(
    source: FeatureSource, cases: list[ProbeCase], cache: Path, hashes: dict[str, str], progress: bool = True
) -> np.ndarray:
    """(cases, features) for `source`, computed once: a rerun reads the cache. hashes: each case
    file's content hash (content_hashes), read once for every source."""
    cache.mkdir(parents=True, exist_ok=True)
    if source.encoder is None:
        return _histogram_matrix(cases, cache / "histogram.parquet", hashes, progress)
    from fm.probe.embed import embed_scans

    out = cache / f"{_slug(source.label)}.parquet"
    paths = [c.path for c in cases]
    if source.segmenter:
        encoder, spec = segmenter_encoder(source.segmenter, trained=source.weights is not None)
        run = embed_scans(paths, encoder.family, out, progress=progress, encoder=encoder, input_spec=spec)
    else:
        run = embed_scans(paths, source.encoder, out, source.weights, dict(source.overrides), progress=progress)
    if run.errors:
        raise InputError(f"{source.label} could not embed {len(run.errors)} scan(s): {run.errors[0]}")
    return _rows_for(out, cases, hashes, {"weights_sha256": run.weights_sha256, "spec_json": run.spec_json})


def content_hashes(cases: list[ProbeCase]) -> dict[str, str]:
    """Each case file's content hash, as fm.probe.embed keys its rows."""
    from fm.core.checksums import content_hash

    return {case.path: content_hash(Path(case.path)) for case in cases}


def segmenter_encoder(network: str, trained: bool = True):
    """(encoder, the input spec it was trained with) of a segmenter network: a registered name
    (synth-unet, the bundled one), a folder or hf-hub:org/name; trained=False: the same
    architecture at random init (seeded), its twin."""
    import torch

    from encoders import HUB_PREFIX
    from encoders.registry import create_encoder, hub_snapshot
    from heads.model_folder import read_config
    from heads.segmenters import BUNDLED_NETWORK, bundled_network_folder, create_segmenter

    segmenter, _ = create_segmenter(network)
    net = getattr(segmenter, "net", None)
    if net is None or not hasattr(net, "encoder"):
        raise InputError(f"{network} is not a network segmenter with an encoder (e.g. {BUNDLED_NETWORK} or a folder)")
    if network == BUNDLED_NETWORK:
        folder = bundled_network_folder()
    else:
        folder = hub_snapshot(network) if network.startswith(HUB_PREFIX) else Path(network)
    config = read_config(folder)
    if trained:
        return net.encoder.eval(), config.input_spec
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_encoder(config.encoder, **config.encoder_kwargs).eval(), config.input_spec


def histogram_features(path: str) -> np.ndarray:
    """The baseline: a histogram of the foreground's intensities (0.5-99.5 % percentiles to [0, 1],
    foreground above 5 % of that range) as densities, and the foreground's volume in mL."""
    from fm.core.io import load_volume

    volume = load_volume(path)
    values = volume.array.astype(np.float64).ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0, 1)
    foreground = scaled[scaled > 0.05]
    density, _ = np.histogram(foreground, bins=HISTOGRAM_BINS, range=(0.05, 1.0), density=True)
    voxel_ml = abs(np.linalg.det(volume.affine[:3, :3])) / 1000
    return np.append(density, foreground.size * voxel_ml)


def _histogram_matrix(cases: list[ProbeCase], out: Path, hashes: dict[str, str], progress: bool) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    cached = pq.read_table(out).to_pylist() if out.exists() else []
    rows = {(r["path"], r["content_sha256"]): r["features"] for r in cached}
    known = len(rows)
    matrix = []
    for case in tqdm(cases, desc=HISTOGRAM, unit="scan", disable=not progress):
        key = (case.path, hashes[case.path])
        if key not in rows:
            rows[key] = histogram_features(case.path).tolist()
        matrix.append(rows[key])
    if len(rows) > known:
        table = [{"path": p, "content_sha256": h, "features": f} for (p, h), f in rows.items()]
        pq.write_table(pa.Table.from_pylist(table), out)
    return np.array(matrix, dtype=np.float64)


def _rows_for(out: Path, cases: list[ProbeCase], hashes: dict[str, str], match: dict) -> np.ndarray:
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    by_key = {
        (r["path"], r["content_sha256"]): r["embedding"] for r in rows if all(r[k] == v for k, v in match.items())
    }
    return np.array([by_key[(c.path, hashes[c.path])] for c in cases], dtype=np.float64)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


def _value(text: str):
    """A manifest or setting value as a number when it reads as one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.startswith("(") or text.startswith("["):
        return tuple(_value(part.strip()) for part in text.strip("()[]").split(";"))
    return text
