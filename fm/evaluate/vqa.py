"""Answers to questions about scans against reference answers.

Closed questions (yes/no, a side, a count, a region) score by exact match after normalisation
(case, punctuation, a leading "yes,"/"no," of a longer answer). Open answers score by token F1 and,
when the reference holds a number, by the relative error of the answer's first number and whether
it carries the same unit; BLEU and ROUGE-L pool them as texts. All figures come per question kind
and overall, closed accuracy with a 95 % Wilson interval.

A question's answer type is `answer_type` when the manifest gives it; otherwise closed when the
reference is at most four words and no number other than a bare count.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from fm.core.errors import InputError, InputFileError
from fm.core.manifests import read_rows, require_files, resolved

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
UNITS = ("ml", "mm", "cm", "%")
#: an open numeric answer is "right" within this relative error of the reference
NUMERIC_TOLERANCE = 0.10


@dataclasses.dataclass
class VQAItem:
    case_id: str
    question: str
    answer: str  # the reference
    prediction: str | None = None
    kind: str = "unspecified"  # presence, side, count, region, volume, ...
    answer_type: str | None = None  # closed or open
    scan: tuple[Path, ...] = ()  # the session's scans it asks about, for the model to answer

    def __post_init__(self):
        self.answer_type = self.answer_type or infer_answer_type(self.answer)


def infer_answer_type(answer: str) -> str:
    words = normalise(answer).split()
    numbers = NUMBER.findall(answer)
    bare_count = len(words) == 1 and answer.strip().isdigit()
    return "closed" if len(words) <= 4 and (not numbers or bare_count) else "open"


def normalise(text: str) -> str:
    text = re.sub(r"[^\w\s%.-]", " ", text.lower())
    text = re.sub(r"\.(?!\d)", " ", text)  # sentence full stops, not decimal points
    return " ".join(word for word in text.split() if word not in ("the", "a", "an"))


def closed_correct(prediction: str, answer: str) -> bool:
    said, wanted = normalise(prediction), normalise(answer)
    if said == wanted:
        return True
    if wanted in ("yes", "no"):  # "Yes, a lesion is present." answers yes
        return said.split()[:1] == [wanted]
    return False


def token_f1(prediction: str, answer: str) -> float:
    said, wanted = normalise(prediction).split(), normalise(answer).split()
    common = sum((Counter(said) & Counter(wanted)).values())
    if not said or not wanted or not common:
        return float(said == wanted)
    precision, recall = common / len(said), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def _first_number(text: str) -> tuple[float, str | None] | None:
    match = NUMBER.search(text)
    if not match:
        return None
    rest = text[match.end() :].strip().lower()
    unit = next((u for u in UNITS if rest.startswith(u)), None)
    return float(match.group()), unit


def numeric_scores(prediction: str, answer: str) -> dict | None:
    """Relative error of the answer's first number and unit agreement; None when the reference has no number."""
    wanted = _first_number(answer)
    if wanted is None:
        return None
    said = _first_number(prediction)
    if said is None:
        return {"relative_error": float("inf"), "same_unit": False, "within_tolerance": False}
    if wanted[0]:
        error = abs(said[0] - wanted[0]) / abs(wanted[0])
    else:  # a reference of 0 (e.g. "0.0 mL" of oedema): right only when the answer is 0 too
        error = 0.0 if said[0] == 0 else math.inf
    return {
        "relative_error": error,
        "same_unit": said[1] == wanted[1],
        "within_tolerance": error <= NUMERIC_TOLERANCE and said[1] == wanted[1],
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound for small n and proportions near 0 or 1)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def score_item(item: VQAItem) -> dict:
    row = dataclasses.asdict(item) | {"scan": ";".join(map(str, item.scan))}
    if item.answer_type == "closed":
        row["correct"] = closed_correct(item.prediction, item.answer)
    else:
        row["token_f1"] = token_f1(item.prediction, item.answer)
        numeric = numeric_scores(item.prediction, item.answer)
        if numeric is not None:
            row.update(numeric)
    return row


def _closed_summary(rows: list[dict]) -> dict:
    right = sum(row["correct"] for row in rows)
    low, high = wilson_interval(right, len(rows))
    return {"questions": len(rows), "accuracy": right / len(rows), "ci95": [low, high]}


def _open_summary(rows: list[dict], text_scorer) -> dict:
    numeric = [row for row in rows if "relative_error" in row]
    summary = {"questions": len(rows), "token_f1_mean": statistics.fmean(row["token_f1"] for row in rows)}
    if numeric:
        summary["numeric_questions"] = len(numeric)
        summary["numeric_within_10pct"] = statistics.fmean(row["within_tolerance"] for row in numeric)
        summary["numeric_median_relative_error"] = statistics.median(row["relative_error"] for row in numeric)
    if text_scorer is not None:
        summary["bleu"] = text_scorer.corpus_bleu([r["prediction"] for r in rows], [r["answer"] for r in rows])
        summary["rouge_l_mean"] = statistics.fmean(
            text_scorer.sentence(r["prediction"], r["answer"])["rouge_l"] for r in rows
        )
    return summary


def evaluate_answers(items: list[VQAItem]) -> dict:
    from fm.evaluate.reports import TextScorer

    unanswered = [item for item in items if item.prediction is None]
    if unanswered:
        raise InputError(
            f"{len(unanswered)} question(s) have no 'prediction' to score; --answer lets the model answer them"
        )
    rows = [score_item(item) for item in items]
    closed = [row for row in rows if row["answer_type"] == "closed"]
    opened = [row for row in rows if row["answer_type"] == "open"]
    scorer = TextScorer() if opened else None
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[(row["answer_type"], row["kind"])].append(row)
    summary = {
        "closed": _closed_summary(closed) if closed else None,
        "open": _open_summary(opened, scorer) if opened else None,
        "by_kind": {
            f"{answer_type}/{kind}": _closed_summary(group) if answer_type == "closed" else _open_summary(group, scorer)
            for (answer_type, kind), group in sorted(by_kind.items())
        },
    }
    return {"summary": summary, "items": rows}


def markdown_table(results: dict) -> str:
    lines = [
        "| questions | kind | n | accuracy [95 % CI] or token F1 | numeric within 10 % |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, row in results["summary"]["by_kind"].items():
        answer_type, kind = key.split("/", 1)
        if answer_type == "closed":
            cell = f"{row['accuracy']:.3f} [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]"
            numeric = ""
        else:
            cell = f"F1 {row['token_f1_mean']:.3f}"
            numeric = f"{row['numeric_within_10pct']:.3f}" if "numeric_within_10pct" in row else ""
        lines.append(f"| {answer_type} | {kind} | {row['questions']} | {cell} | {numeric} |")
    closed = results["summary"]["closed"]
    if closed:
        lines.append(
            f"\nAll closed questions: accuracy {closed['accuracy']:.3f} "
            f"[{closed['ci95'][0]:.3f}, {closed['ci95'][1]:.3f}] over {closed['questions']}."
        )
    opened = results["summary"]["open"]
    if opened:
        lines.append(
            f"All open questions ({opened['questions']}): token F1 {opened['token_f1_mean']:.3f}, "
            f"BLEU {opened['bleu']:.1f}, ROUGE-L {opened['rouge_l_mean']:.3f}."
        )
    return "\n".join(lines) + "\n"


def read_vqa_items(manifest: str | Path) -> list[VQAItem]:
    """Questions from a CSV, JSONL or parquet manifest: `question`, `answer`, optional `prediction`,
    `id`, `type` (the kind), `answer_type`, and `path` (or `image`: the scan, for the model to
    answer). A row of fm synth's manifest-<split>.parquet (no `question`) stands for the questions
    of qa/<sample_id>.json beside it."""
    manifest = Path(manifest)
    items = []
    for number, row in enumerate(read_rows(manifest, ()), start=1):
        case = str(row.get("id") or row.get("sample_id") or number)
        files = str(row.get("path") or row.get("image") or "")
        scan = tuple(resolved(manifest, part) for part in files.split(";") if part.strip())
        if row.get("question"):
            if row.get("answer") in (None, ""):
                raise InputFileError(manifest, f"row {number} has a question and no reference answer")
            questions = [row]
        else:
            pairs = manifest.parent / "qa" / f"{case}.json"
            if not pairs.is_file():
                raise InputFileError(manifest, f"row {number} has no 'question' and there is no {pairs}")
            questions = json.loads(pairs.read_text())
        for qa in questions:
            items.append(
                VQAItem(
                    case,
                    str(qa["question"]),
                    str(qa["answer"]),
                    str(qa["prediction"]) if qa.get("prediction") not in (None, "") else None,
                    str(qa.get("type") or "unspecified"),
                    qa.get("answer_type") or None,
                    scan,
                )
            )
    require_files(manifest, sorted({file for item in items if item.prediction is None for file in item.scan}))
    return items
