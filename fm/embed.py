"""Embeddings of many scans with one encoder, written to parquet: one row per scan, resumable
(scans already embedded with the same encoder and weights are skipped) and deterministic."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fm.errors import InputFileError
from fm.io import load_volume


def content_hash(path: Path) -> str:
    """sha256 of a scan's bytes (a folder: of its files' relative names and bytes, in order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def embed_scans(
    paths: list[str | Path],
    encoder_name: str,
    out: str | Path,
    pretrained: str | None = None,
    overrides: dict | None = None,
    batch_size: int = 1,
    progress: bool = True,
) -> tuple[int, list[str]]:
    """Embed `paths` into the parquet file `out`; returns (rows written now, error messages).

    batch_size > 1 runs scans of one preprocessed shape together: faster, but the last bits of an
    embedding may then depend on its batch mates; the default of 1 gives bit-identical rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from encoders.registry import create_encoder

    torch.manual_seed(0)  # an encoder without pretrained weights is still the same every run
    model = create_encoder(encoder_name, pretrained, **(overrides or {}))
    weights = weights_hash(model)
    out = Path(out)
    rows = pq.read_table(out).to_pylist() if out.exists() else []
    done = {(r["content_sha256"], r["encoder"], r["weights_sha256"]) for r in rows}
    errors: list[str] = []
    pending: list[tuple[dict, torch.Tensor]] = []
    added = 0

    def flush():
        nonlocal added
        if not pending:
            return
        with torch.no_grad():
            embeddings = model.forward_features(torch.cat([t for _, t in pending])).embedding
        for (row, _), vector in zip(pending, embeddings):
            rows.append({**row, "embedding": vector.double().tolist()})
            added += 1
        pending.clear()

    for path in tqdm([Path(p) for p in paths], desc=f"embed {encoder_name}", unit="scan", disable=not progress):
        try:
            digest = content_hash(path) if path.exists() else None
            if digest and (digest, encoder_name, weights) in done:
                continue
            volume = load_volume(path)
        except InputFileError as err:
            errors.append(str(err))
            continue
        tensor = model.preprocess(volume).tensor
        if pending and tensor.shape != pending[0][1].shape:
            flush()  # a batch holds scans of one preprocessed shape
        row = {
            "path": str(path),
            "content_sha256": digest,
            "encoder": encoder_name,
            "weights_sha256": weights,
            "pretrained": str(pretrained) if pretrained else None,
            "spec_json": json.dumps(model.spec.to_dict()),
            "num_features": model.num_features,
        }
        done.add((digest, encoder_name, weights))
        pending.append((row, tensor))
        if len(pending) == batch_size:
            flush()
    flush()
    staged = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pylist(rows), staged)
    os.replace(staged, out)
    return added, errors


def embeddings_of(out: str | Path) -> tuple[list[str], np.ndarray]:
    """(paths, embeddings matrix) from an `fm embed` parquet file."""
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    return [r["path"] for r in table], np.array([r["embedding"] for r in table], dtype=np.float64)
