"""Training examples from a cohort of your own: scans with their radiology reports (and, when you
have them, the findings `fm report --manifest` measured and questions with answers), for
`fm train lm --data`.

A cohort is a table with one row per session:
- `image`: the session's scan files, `;` between contrasts (as `fm report --manifest`), or a DICOM
  folder; relative paths start from the table's folder;
- `report`: the report text, free, any length (`section` picks FINDINGS or IMPRESSION when the
  reports have those headings);
- optional `id` (default: the row number), `subject` (the patient: a validation split never
  shares one with training), `split` (train / validation);
- optional `findings`: a findings or report.json file; or `findings_from`, the folder `fm report
  --manifest` wrote over the same cohort (DIR/<id>/report.json), so that the model learns to
  narrate what the pipeline measures;
- optional `qa`: a JSON file or an inline JSON list of {question, answer[, answer_type]}.
The table may be a CSV, JSON Lines or parquet file, a `datasets` folder (`save_to_disk`), or a
Hub dataset id. A row whose files are missing or unreadable is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

from tqdm import tqdm

from fm.core.errors import InputError, InputFileError
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.core.manifests import read_rows, resolved
from fm.core.session import load_session

SECTIONS = ("all", "findings", "impression")
_HEADING = re.compile(r"^\s*(findings|impression|conclusion|technique|history|indication|comparison)\s*:?\s*$|"
                      r"^\s*(findings|impression|conclusion)\s*:", re.I | re.M)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SkippedRow:
    row: int
    id: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.id}): {self.reason}"


@dataclasses.dataclass(frozen=True)
class CohortRow:
    id: str
    subject: str
    split: str | None
    image: str  # the scan files, ';' between them, resolved
    report: str  # the section asked for
    findings: str | None  # Findings JSON
    qa: tuple[dict, ...]
    segmentation: tuple[str, str] | None = None  # (mask file, label set name) beside a report.json


def is_cohort(data: str | Path) -> bool:
    """A cohort table (file, datasets folder, Hub id), not a folder `fm synth` wrote."""
    path = Path(data)
    if path.is_file():
        return True
    if path.is_dir():
        return (path / "dataset_info.json").is_file() or (path / "state.json").is_file()
    return "/" in str(data)  # a Hub dataset id


def read_cohort(
    data: str | Path,
    section: str = "all",
    findings_from: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
) -> tuple[list[CohortRow], list[SkippedRow]]:
    """The usable rows of the cohort at `data` and the skipped ones with their reasons. Every
    scan is opened once here, so a file that cannot be read is found before training starts."""
    if section not in SECTIONS:
        raise InputError(f"report section {section!r} is not one of {', '.join(SECTIONS)}")
    rows, base = _table(data)
    kept, skipped = [], []
    for index, row in enumerate(tqdm(rows, desc="reading the cohort", unit="row", disable=not progress)):
        row_id = str(row.get("id") or index)
        try:
            kept.append(_cohort_row(row, row_id, base, section, findings_from))
        except InputError as error:
            skipped.append(SkippedRow(index, row_id, str(error)))
    if skipped and strict:
        raise InputFileError(data, "rows cannot be used (--strict): " + "; ".join(map(str, skipped[:5])))
    if not kept:
        reasons = "; ".join(map(str, skipped[:5]))
        raise InputFileError(data, f"no row can be used: {reasons or 'the table is empty'}")
    return kept, skipped


def split_rows(rows: list[CohortRow], val_fraction: float, seed: int = 0) -> tuple[list[CohortRow], list[CohortRow]]:
    """(training, validation) rows: by the `split` column where rows give one, else `val_fraction`
    of the subjects drawn at random (seeded), all of a subject's sessions on one side."""
    if any(row.split for row in rows):
        validation = [row for row in rows if (row.split or "").lower() in ("validation", "val", "valid")]
        return [row for row in rows if row not in validation], validation
    subjects = sorted({row.subject for row in rows})
    random.Random(seed).shuffle(subjects)
    count = round(val_fraction * len(subjects)) if len(subjects) > 1 else 0
    held = set(subjects[:count])
    return [row for row in rows if row.subject not in held], [row for row in rows if row.subject in held]


def report_section(text: str, section: str) -> str:
    """The FINDINGS or IMPRESSION part of a report (the text under that heading, up to the next),
    or all of it."""
    text = text.strip()
    if section == "all":
        return text
    headings = list(_HEADING.finditer(text))
    for at, heading in enumerate(headings):
        name = (heading.group(1) or heading.group(2)).lower()
        if name == section or (section == "impression" and name == "conclusion"):
            end = headings[at + 1].start() if at + 1 < len(headings) else len(text)
            part = text[heading.end() : end].strip()
            if part:
                return part
    raise InputError(f"the report has no {section.upper()} section")


def _table(data: str | Path) -> tuple[list[dict], Path]:
    """The rows and the folder their relative paths start from."""
    path = Path(data)
    if path.is_file():
        return read_rows(path, ("image", "report"), ("id", "subject", "split", "findings", "qa")), path.parent
    import datasets

    try:
        table = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(str(data))
    except (OSError, ValueError, FileNotFoundError) as error:
        raise InputFileError(
            data, f"is neither a cohort table nor a datasets folder or Hub dataset ({error})"
        ) from None
    if isinstance(table, datasets.DatasetDict):
        table = datasets.concatenate_datasets(
            [part.add_column("split", [name] * len(part)) if "split" not in part.column_names else part
             for name, part in table.items()]
        )  # fmt: skip
    missing = [column for column in ("image", "report") if column not in table.column_names]
    if missing:
        raise InputFileError(data, f"has no column(s) {', '.join(missing)} (it has {', '.join(table.column_names)})")
    return table.to_list(), path if path.is_dir() else Path.cwd()


def _cohort_row(row: dict, row_id: str, base: Path, section: str, findings_from) -> CohortRow:
    files = [resolved(base / "x", part) for part in str(row["image"] or "").split(";") if part.strip()]
    if not files:
        raise InputError("no image")
    for file in files:
        if not file.exists():
            raise InputError(f"{file}: no such file")
    load_session([str(file) for file in files], None, load=load_volume)  # unreadable: InputError, named
    report = report_section(str(row["report"] or ""), section)
    if not report:
        raise InputError("empty report")
    findings, segmentation = _findings(row, row_id, base, findings_from)
    return CohortRow(
        id=row_id,
        subject=str(row.get("subject") or row_id),
        split=row.get("split") or None,
        image=";".join(str(file.resolve()) for file in files),
        report=report,
        findings=findings,
        qa=tuple(_qa(row.get("qa"), base)),
        segmentation=segmentation,
    )


def _findings(row: dict, row_id: str, base: Path, findings_from) -> tuple[str | None, tuple[str, str] | None]:
    """(Findings JSON, the segmentation they were measured on) of a row: a report.json that `fm
    report` wrote has its mask.nii.gz beside it, which an encoder that reads segmentations takes."""
    if row.get("findings"):
        file = resolved(base / "x", row["findings"])
    elif findings_from is not None:
        file = Path(findings_from) / row_id / "report.json"
    else:
        return None, None
    if not file.is_file():
        raise InputError(f"{file}: no findings file")
    try:
        data = json.loads(file.read_text())
        findings = Findings.from_json(json.dumps(data.get("findings", data)))
    except ValueError as error:
        raise InputError(f"{file}: not a findings or report.json file ({str(error).splitlines()[0]})") from None
    mask = file.with_name("mask.nii.gz")
    segmentation = (str(mask.resolve()), findings.provenance.label_set) if mask.is_file() else None
    return findings.to_json(), segmentation


def _qa(value, base: Path) -> list[dict]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        pairs = value
    else:
        text = str(value).strip()
        if not text.startswith("["):
            file = resolved(base / "x", text)
            if not file.is_file():
                raise InputError(f"{file}: no questions file")
            text = file.read_text()
        try:
            pairs = json.loads(text)
        except ValueError as error:
            raise InputError(f"questions are not a JSON list ({error})") from None
    if not all(isinstance(p, dict) and p.get("question") and p.get("answer") for p in pairs):
        raise InputError("each question needs 'question' and 'answer'")
    return pairs
