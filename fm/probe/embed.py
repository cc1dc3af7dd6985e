"""Embeddings of many scans with one encoder, written to parquet: one row per scan, resumable
(scans already embedded with the same encoder and weights are skipped) and deterministic."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from encoders.memory import GIB, PRECISIONS, available_bytes, estimate_peak_bytes
from fm.core.checksums import content_hash
from fm.core.errors import InputError, InputFileError, look_up
from fm.core.io import load_volume

#: Rows are written to disk after this many scans, so an interrupted run resumes from there.
CHECKPOINT_EVERY = 16


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class EmbedRun:
    """What one `embed_scans` call did."""

    added: int = 0  # rows written now
    cached: int = 0  # scans skipped: their embedding with these weights and settings was already there
    errors: list[str] = dataclasses.field(default_factory=list)
    random_weights: bool = False  # no pretrained weights: the embeddings carry no learnt meaning
    weights_sha256: str = ""  # the encoder's weights, as its rows are keyed
    spec_json: str = ""  # its input spec and settings, as its rows are keyed


def embed_scans(
    paths: list[str | Path],
    encoder_name: str,
    out: str | Path,
    pretrained: str | None = None,
    overrides: dict | None = None,
    batch_size: int = 1,
    progress: bool = True,
    tile: int | None = None,
    precision: str = "fp32",
    max_memory_bytes: float | None = None,
    encoder=None,
    input_spec=None,
    device=None,
    cached_in: str | Path | None = None,
) -> EmbedRun:
    """Embed `paths` into the parquet file `out`.

    batch_size > 1 runs scans of one preprocessed shape together: faster, but the last bits of an
    embedding may then depend on its batch mates; the default of 1 gives bit-identical rows.
    tile: run the network on cubes of this many voxels a side and average their embeddings
    (bounded memory, close to but not the whole-volume embedding: bench_embed.py measures how close). precision "bf16" runs under CPU autocast.
    Before each forward pass its peak memory is estimated (encoders.memory); a scan whose pass
    would exceed max_memory_bytes (default: what the system has available) is refused with a
    message saying what would fit, instead of being killed by the kernel.
    encoder / input_spec: an encoder built elsewhere (e.g. a segmenter's, fm.probe.features) and
    the InputSpec it was trained with, instead of `encoder_name`'s own.
    device: where the network runs (default the CPU). cached_in: another parquet file whose rows
    also count as done (a torchrun rank writes its own part, skipping what the merged file holds).
    """
    import pyarrow.parquet as pq

    from encoders.preprocess import monai_preprocess

    look_up("precision", precision, PRECISIONS)
    model = encoder if encoder is not None else _encoder(encoder_name, pretrained, overrides or {})
    device = torch.device(device or "cpu")
    model = model.to(device)
    spec_used = input_spec or model.spec
    if tile is not None:
        tile = _checked_tile(model, tile)
    limit = max_memory_bytes or available_bytes()
    weights = weights_hash(model)
    settings = {**spec_used.to_dict(), "tile": tile, "precision": precision}
    spec = json.dumps(settings, sort_keys=True)
    out = Path(out)
    rows = pq.read_table(out).to_pylist() if out.exists() else []
    done = {_key(r) for r in rows}
    if cached_in is not None and Path(cached_in).exists():
        done |= {_key(r) for r in pq.read_table(cached_in).to_pylist()}
    run = EmbedRun(random_weights=pretrained is None, weights_sha256=weights, spec_json=spec)
    pending: list[tuple[dict, torch.Tensor]] = []

    def flush():
        if not pending:
            return
        try:
            with torch.inference_mode(), _autocast(precision, device):
                batch = torch.cat([t for _, t in pending]).to(device)
                embeddings = tiled_embedding(model, batch, tile) if tile else model.forward_features(batch).embedding
        except RuntimeError as err:  # torch's, e.g. for a grid too small for the network
            run.errors.extend(f"{row['path']}: the encoder failed ({str(err).splitlines()[0]})" for row, _ in pending)
        else:
            for (row, _), vector in zip(pending, embeddings):
                rows.append({**row, "embedding": vector.double().cpu().tolist()})
                run.added += 1
        pending.clear()

    for index, path in enumerate(
        tqdm([Path(p) for p in paths], desc=f"embed {encoder_name}", unit="scan", disable=not progress)
    ):
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
                run.cached += 1
                continue
            volume = load_volume(path)
            # a family's own preprocessing, unless the encoder was trained with another spec
            tensor = (monai_preprocess(volume, input_spec) if input_spec else model.preprocess(volume)).tensor
        except InputError as err:
            run.errors.append(str(err) if isinstance(err, InputFileError) else f"{path}: {err}")
            continue
        if pending and tensor.shape != pending[0][1].shape:
            flush()  # a batch holds scans of one preprocessed shape
        voxels = (tile**3 if tile else int(np.prod(tensor.shape[2:]))) * (len(pending) + 1)
        needed = estimate_peak_bytes(model.family, model.num_features, voxels, precision)
        if needed > limit:
            run.errors.append(_too_large(path, model, tensor.shape[2:], needed, limit, tile, precision))
            continue
        done.add(_key(row))
        pending.append((row, tensor))
        if len(pending) == batch_size:
            flush()
        if index % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            _write(rows, out)  # an interrupted run keeps what it finished
    flush()
    _write(rows, out)
    return run


def _encoder(name: str, pretrained, overrides: dict):
    """The encoder, the same every run when it has no pretrained weights."""
    from encoders.registry import create_encoder

    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            return create_encoder(name, pretrained, **overrides).eval()
        except InputError:
            raise
        except (ValueError, TypeError) as err:  # the constructor's own check of the settings
            settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "its defaults"
            raise InputError(f"{name} cannot be built with {settings}: {err}") from None


def _autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def _tile_step(model) -> int:
    """Tile sizes are multiples of this, and at least this (16: four poolings of Brain-ID)."""
    return max(model.spec.divisible_by, 16)


def _checked_tile(model, tile: int) -> int:
    if not model.tileable:
        raise InputError(
            f"{model.family} takes one fixed-size whole-brain input: its embedding cannot be pooled over tiles"
        )
    if tile < _tile_step(model) or tile % model.spec.divisible_by:
        raise InputError(
            f"a {model.family} tile must be a multiple of {model.spec.divisible_by} and at least {_tile_step(model)} voxels, not {tile}"
        )
    return tile


def _tile_starts(size: int, tile: int) -> list[int]:
    """Starts of equal tiles covering 0..size, spread evenly (the last ones overlap a little)."""
    if size <= tile:
        return [0]
    count = -(-size // tile)
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def tiled_embedding(model, batch: torch.Tensor, tile: int) -> torch.Tensor:
    """Mean of the embeddings of equal tiles (tile^3 voxels) covering the volume. A side shorter
    than the tile is padded with the volume's minimum (the background after preprocessing)."""
    pad = [max(0, tile - s) for s in batch.shape[2:]]
    if any(pad):
        batch = torch.nn.functional.pad(batch, [p for q in reversed(pad) for p in (0, q)], value=float(batch.min()))
    starts = itertools.product(*(_tile_starts(size, tile) for size in batch.shape[2:]))
    embeddings = [
        model.forward_features(batch[:, :, x : x + tile, y : y + tile, z : z + tile]).embedding.float()
        for x, y, z in starts
    ]
    return torch.stack(embeddings).mean(0)


def _too_large(path, model, shape, needed: float, limit: float, tile: int | None, precision: str) -> str:
    """The refusal: what was asked, what it needs, and the settings that would fit."""
    asked = f"tiles of {tile}^3" if tile else "x".join(map(str, shape)) + " voxels"
    message = f"{path}: {model.family} on {asked} ({precision}) needs about {needed / GIB:.1f} GiB, above --max-memory {limit / GIB:.1f} GiB"
    if model.tileable:
        step = _tile_step(model)
        fits = [
            t
            for t in range(step, max(shape) + step, step)
            if estimate_peak_bytes(model.family, model.num_features, t**3, precision) <= limit
        ]
        if fits:
            message += f"; --tile {fits[-1]} fits (about {estimate_peak_bytes(model.family, model.num_features, fits[-1] ** 3, precision) / GIB:.1f} GiB)"
    return message


def _key(row: dict) -> tuple:
    """What makes a row the same: this file's bytes at this path, this encoder, weights and input spec."""
    return (row["path"], row["content_sha256"], row["encoder"], row["weights_sha256"], row["spec_json"])


def _write(rows: list[dict], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    staged = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pylist(rows), staged)
    os.replace(staged, out)


@dataclasses.dataclass
class SharedEmbedRun:
    """What `embed_shared` did: this process's own run and, on rank 0, the totals of every rank."""

    run: EmbedRun
    world: int
    totals: tuple[int, int, int] | None  # (added, cached, failed) over every rank; None on other ranks


def embed_shared(paths: list[str], encoder_name: str, out: str | Path, **options) -> SharedEmbedRun:
    """embed_scans, shared among the processes of torchrun: each rank embeds every world-th scan
    into its own part (on its own GPU where there are GPUs), skipping what `out` already holds,
    and rank 0 merges the parts into `out` in the order given. Without torchrun: embed_scans."""
    from fm.core.distributed import device_for_rank, gathered, process_group

    with process_group() as (rank, world):
        run = embed_scans(
            paths[rank::world],
            encoder_name,
            rank_part(out, rank) if world > 1 else out,
            progress=rank == 0,
            device=device_for_rank(),
            cached_in=out if world > 1 else None,
            **options,
        )
        counts = gathered((run.added, run.cached, len(run.errors)))  # also waits until every part is written
        totals = None
        if rank == 0:
            if world > 1:
                merge_rank_parts(out, paths)
            totals = tuple(sum(c[i] for c in counts) for i in range(3))
    return SharedEmbedRun(run, world, totals)


def rank_part(out: str | Path, rank: int) -> Path:
    """Where torchrun rank `rank` writes its part of `out` until rank 0 merges the parts."""
    out = Path(out)
    return out.with_name(f".{out.name}.rank{rank}.parquet")


def merge_rank_parts(out: str | Path, paths: list[str | Path]) -> int:
    """Append every rank's part (leftovers of an interrupted run included) to `out`, in the order of
    `paths`, keeping the rows `out` already holds; remove the parts. Returns the rows added."""
    import pyarrow.parquet as pq

    out = Path(out)
    rows = pq.read_table(out).to_pylist() if out.exists() else []
    keys = {_key(row) for row in rows}
    parts = sorted(out.parent.glob(f".{out.name}.rank*.parquet"))
    order = {str(Path(p)): i for i, p in enumerate(paths)}
    new = sorted(
        (row for part in parts for row in pq.read_table(part).to_pylist()),
        key=lambda row: order.get(row["path"], len(order)),
    )
    added = 0
    for row in new:
        if _key(row) not in keys:
            rows.append(row)
            keys.add(_key(row))
            added += 1
    _write(rows, out)
    for part in parts:
        part.unlink()
    return added


def embeddings_of(out: str | Path) -> tuple[list[str], np.ndarray]:
    """(paths, embeddings matrix) from an `fm embed` parquet file."""
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    return [r["path"] for r in table], np.array([r["embedding"] for r in table], dtype=np.float64)
