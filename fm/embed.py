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

#: Rows are written to disk after this many scans, so an interrupted run resumes from there.
CHECKPOINT_EVERY = 16


def content_hash(path: Path) -> str:
    """sha256 of a scan's bytes; for a folder, of each file's (name digest, content digest) pair
    in order, so no two different folders can run together into the same byte stream."""
    if not path.is_dir():
        return _file_digest(path).hex()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(hashlib.sha256(str(file.relative_to(path)).encode()).digest())
        digest.update(_file_digest(file))
    return digest.hexdigest()


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


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
    import pyarrow.parquet as pq

    from encoders.registry import create_encoder

    with torch.random.fork_rng():  # an encoder without pretrained weights is the same every run
        torch.manual_seed(0)
        model = create_encoder(encoder_name, pretrained, **(overrides or {}))
    weights = weights_hash(model)
    spec = json.dumps(model.spec.to_dict(), sort_keys=True)
    out = Path(out)
    rows = pq.read_table(out).to_pylist() if out.exists() else []
    done = {_key(r) for r in rows}
    errors: list[str] = []
    pending: list[tuple[dict, torch.Tensor]] = []
    added = 0

    def flush():
        nonlocal added
        if not pending:
            return
        try:
            with torch.no_grad():
                embeddings = model.forward_features(torch.cat([t for _, t in pending])).embedding
        except (RuntimeError, ValueError) as err:  # e.g. out of memory, a grid too small for the network
            errors.extend(f"{row['path']}: the encoder failed ({str(err).splitlines()[0]})" for row, _ in pending)
        else:
            for (row, _), vector in zip(pending, embeddings):
                rows.append({**row, "embedding": vector.double().tolist()})
                added += 1
        pending.clear()

    for index, path in enumerate(tqdm([Path(p) for p in paths], desc=f"embed {encoder_name}", unit="scan", disable=not progress)):
        try:
            row = {
                "path": str(path),
                "content_sha256": content_hash(path) if path.exists() else None,
                "encoder": encoder_name,
                "weights_sha256": weights,
                "pretrained": str(pretrained) if pretrained else None,
                "spec_json": spec,
                "num_features": model.num_features,
            }
            if _key(row) in done:
                continue
            tensor = model.preprocess(load_volume(path)).tensor
        except (InputFileError, ValueError) as err:
            errors.append(str(err) if isinstance(err, InputFileError) else f"{path}: {err}")
            continue
        if pending and tensor.shape != pending[0][1].shape:
            flush()  # a batch holds scans of one preprocessed shape
        done.add(_key(row))
        pending.append((row, tensor))
        if len(pending) == batch_size:
            flush()
        if index % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            _write(rows, out)  # an interrupted run keeps what it finished
    flush()
    _write(rows, out)
    return added, errors


def _key(row: dict) -> tuple:
    """What makes a row the same: this file's bytes at this path, this encoder, weights and input spec."""
    return (row["path"], row["content_sha256"], row["encoder"], row["weights_sha256"], row["spec_json"])


def _write(rows: list[dict], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    staged = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pylist(rows), staged)
    os.replace(staged, out)


def embeddings_of(out: str | Path) -> tuple[list[str], np.ndarray]:
    """(paths, embeddings matrix) from an `fm embed` parquet file."""
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    return [r["path"] for r in table], np.array([r["embedding"] for r in table], dtype=np.float64)
