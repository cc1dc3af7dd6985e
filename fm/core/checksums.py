"""Checksums of files and folders: what caches key on (fm.probe.embed) and what reports quote of a
model's weights (heads), in the core layer both may import."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes; for a folder, of each file's (name digest, content digest) pair
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
