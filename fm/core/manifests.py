"""Manifests: the CSV or parquet tables that list a cohort's files (fm report --manifest, fm probe,
fm eval). One reader, so that every command takes the same formats and resolves relative paths
the same way: from the manifest's own folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fm.core.errors import InputFileError


def read_rows(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a CSV, JSON Lines (.jsonl) or parquet manifest, refused with the columns it needs
    when one is missing."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such manifest")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif path.suffix == ".jsonl":
        try:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except ValueError as error:
            raise InputFileError(path, f"is not JSON Lines ({error})") from None
    else:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    if not rows or any(column not in rows[0] for column in required):
        wanted = ", ".join(repr(c) for c in required)
        extra = f" (optional: {', '.join(repr(c) for c in optional)})" if optional else ""
        raise InputFileError(path, f"is not a manifest with the columns {wanted}{extra}")
    return rows


def resolved(manifest: str | Path, value: str) -> Path:
    """A path from a manifest cell: absolute as given, relative to the manifest's folder otherwise."""
    file = Path(str(value).strip())
    return file if file.is_absolute() else Path(manifest).parent / file


def require_files(manifest: str | Path, files: list[Path]) -> None:
    """Refuse a manifest that lists files that are not there, naming the first few."""
    missing = [str(file) for file in files if not file.exists()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise InputFileError(manifest, f"lists {len(missing)} file(s) that do not exist: {shown}")
