"""Reports against references: are the findings right, field by field, and is the narrative true to
the reference findings?

Per field (presence of a lesion, each lesion found, its side, its region, the lesion count),
precision, recall and F1 are pooled over all cases. A lesion is the same lesion in both when
fm.core.lesion_matching pairs their centroids; its side and region count as right only on a matched
lesion, so a missed lesion is a missed side too. Measurements: volume (mL) and longest diameter
(mm) errors of matched lesions, volume errors of the structures both name. Narrative
(fm.report.faithfulness): the share with a statement that contradicts the report's own findings (the
text's faithfulness), the share that tells the reader a side, count, region, enhancement or
ventricle judgement the reference contradicts (its numbers are the measurement errors above), the
share of abnormal reference findings it never mentions, and BLEU (sacrebleu) / ROUGE-L
(rouge-score) against a reference text when there is one. Nothing here downloads a model.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from fm.core.errors import InputFileError
from fm.core.findings import Findings
from fm.core.lesion_matching import match_lesions
from fm.core.manifests import read_rows, require_files, resolved
from fm.report.faithfulness import check
from fm.report.template_narrative import ventricles

FIELDS = ("presence", "lesion", "side", "region")


@dataclasses.dataclass
class ReportCase:
    case_id: str
    findings: Findings  # what the report says
    reference: Findings
    narrative: str | None = None  # the narrative a reader of the report sees
    reference_text: str | None = None


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall and F1 from counts; NaN where undefined (nothing predicted / nothing to find)."""
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def field_counts(findings: Findings, reference: Findings) -> tuple[dict[str, dict[str, int]], list[dict]]:
    """(true/false positive and false negative counts per field, the matched lesion rows)."""
    matched = match_lesions(findings, reference)
    rows = matched["lesions"]
    found = [row for row in rows if row["found"]]
    predicted, true = len(findings.lesions), len(reference.lesions)
    counts = {"presence": {"tp": int(predicted > 0 and true > 0), "fp": int(predicted > 0 and not true)}}
    counts["presence"]["fn"] = int(true > 0 and not predicted)
    for field, agrees in (
        ("lesion", lambda row: True),
        ("side", lambda row: row["laterality_predicted"] == row["laterality_true"]),
        ("region", lambda row: row["region_predicted"] == row["region_true"]),
    ):
        tp = sum(agrees(row) for row in found)
        counts[field] = {"tp": tp, "fp": predicted - tp, "fn": true - tp}
    return counts, rows


def case_scores(case: ReportCase, text_scorer=None) -> dict:
    counts, lesions = field_counts(case.findings, case.reference)
    found = [row for row in lesions if row["found"]]
    structures = {s.name: s.volume_ml for s in case.reference.structures if s.volume_ml is not None}
    scores = {
        "id": case.case_id,
        "counts": counts,
        "lesion_count": [len(case.findings.lesions), len(case.reference.lesions)],
        "lesion_volume_error_ml": [row["predicted_ml"] - row["true_ml"] for row in found],
        "lesion_volume_relative_error": [row["volume_error"] for row in found],
        "longest_diameter_error_mm": [row["predicted_longest_mm"] - row["true_longest_mm"] for row in found],
        "structure_volume_error_ml": {
            s.name: s.volume_ml - structures[s.name]
            for s in case.findings.structures
            if s.name in structures and s.volume_ml is not None
        },
    }
    if case.narrative is not None:
        own, against_reference = check(case.narrative, case.findings), check(case.narrative, case.reference)
        judged = ventricles(case.reference)
        scores["narrative"] = {
            "contradictions": [str(c) for c in own.contradictions],
            # numbers that differ from the reference are the measurement errors above, not the text's
            "reference_contradictions": [str(c) for c in against_reference.contradictions if not c.quantity],
            "omissions": against_reference.omissions,
            "abnormal_findings": len(case.reference.lesions) + int(judged is not None and judged[1]),
        }
        if case.reference_text and text_scorer is not None:
            scores["narrative"].update(text_scorer.sentence(case.narrative, case.reference_text))
    return scores


class TextScorer:
    """BLEU (sacrebleu) and ROUGE-L F (rouge-score) of a text against one reference."""

    def __init__(self):
        from rouge_score import rouge_scorer

        self._rouge = rouge_scorer.RougeScorer(["rougeL"])

    def sentence(self, text: str, reference: str) -> dict[str, float]:
        import sacrebleu

        return {"bleu": sacrebleu.sentence_bleu(text, [reference]).score, "rouge_l": self.rouge_l(text, reference)}

    def rouge_l(self, text: str, reference: str) -> float:
        return self._rouge.score(reference, text)["rougeL"].fmeasure

    @staticmethod
    def corpus_bleu(texts: list[str], references: list[str]) -> float:
        import sacrebleu

        return sacrebleu.corpus_bleu(texts, [references]).score


def _median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def summarise(cases: list[dict]) -> dict:
    summary = {
        field: prf(*(sum(case["counts"][field][key] for case in cases) for key in ("tp", "fp", "fn")))
        for field in FIELDS
    }
    counts = [case["lesion_count"] for case in cases]
    summary["count"] = {
        "accuracy": statistics.fmean(p == t for p, t in counts) if counts else float("nan"),
        "mean_absolute_error": statistics.fmean(abs(p - t) for p, t in counts) if counts else float("nan"),
    }
    keys = ("lesion_volume_error_ml", "lesion_volume_relative_error", "longest_diameter_error_mm")
    flat = {key: [v for case in cases for v in case[key]] for key in keys}
    summary["measurements"] = {
        "lesions_matched": len(flat["lesion_volume_error_ml"]),
        "lesion_volume_median_abs_error_ml": _median(abs(v) for v in flat["lesion_volume_error_ml"]),
        "lesion_volume_median_relative_error": _median(flat["lesion_volume_relative_error"]),
        "longest_diameter_median_abs_error_mm": _median(abs(v) for v in flat["longest_diameter_error_mm"]),
    }
    names = sorted({name for case in cases for name in case["structure_volume_error_ml"]})
    summary["structures_mean_abs_error_ml"] = {
        name: statistics.fmean(
            abs(case["structure_volume_error_ml"][name]) for case in cases if name in case["structure_volume_error_ml"]
        )
        for name in names
    }
    narrated = [case["narrative"] for case in cases if "narrative" in case]
    if narrated:
        abnormal = sum(n["abnormal_findings"] for n in narrated)
        summary["narrative"] = {
            "narratives": len(narrated),
            "contradiction_rate": statistics.fmean(bool(n["contradictions"]) for n in narrated),
            "reference_contradiction_rate": statistics.fmean(bool(n["reference_contradictions"]) for n in narrated),
            "omission_rate": sum(len(n["omissions"]) for n in narrated) / abnormal if abnormal else 0.0,
        }
        scored = [n for n in narrated if "bleu" in n]
        if scored:
            summary["narrative"]["bleu_mean"] = statistics.fmean(n["bleu"] for n in scored)
            summary["narrative"]["rouge_l_mean"] = statistics.fmean(n["rouge_l"] for n in scored)
    return summary


def evaluate_reports(cases: list[ReportCase], progress: bool = True) -> dict:
    from tqdm import tqdm

    scorer = TextScorer() if any(case.reference_text for case in cases) else None
    scored = [
        case_scores(case, scorer) for case in tqdm(cases, desc="score reports", unit="case", disable=not progress)
    ]
    return {"cases": scored, "summary": summarise(scored)}


def markdown_table(results: dict) -> str:
    summary = results["summary"]
    lines = [
        f"{len(results['cases'])} reports against their references.",
        "",
        "| field | precision | recall | F1 | TP | FP | FN |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for field in FIELDS:
        row = summary[field]
        lines.append(
            f"| {field} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['tp']} | {row['fp']} | {row['fn']} |"
        )
    m = summary["measurements"]
    lines += [
        "",
        f"Lesion count: accuracy {summary['count']['accuracy']:.3f}, mean absolute error {summary['count']['mean_absolute_error']:.2f}.",
        f"Matched lesions {m['lesions_matched']}: median volume error {m['lesion_volume_median_abs_error_ml']:.2f} mL "
        f"({100 * m['lesion_volume_median_relative_error']:.1f} %), median longest-diameter error "
        f"{m['longest_diameter_median_abs_error_mm']:.1f} mm.",
    ]
    if "narrative" in summary:
        n = summary["narrative"]
        line = (
            f"Narratives {n['narratives']}: contradicting their own findings {n['contradiction_rate']:.3f}, "
            f"the reference's (side, count, region, enhancement, ventricles) {n['reference_contradiction_rate']:.3f}, "
            f"omission rate {n['omission_rate']:.3f}"
        )
        if "bleu_mean" in n:
            line += f", BLEU {n['bleu_mean']:.1f}, ROUGE-L {n['rouge_l_mean']:.3f}"
        lines.append(line + ".")
    return "\n".join(lines) + "\n"


def read_findings(path: Path) -> Findings:
    """Findings from a findings JSON or from an fm report's report.json (its findings)."""
    try:
        data = json.loads(path.read_text())
        return Findings.from_json(json.dumps(data["findings"] if "findings" in data else data))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputFileError(path, f"is not a findings or report JSON ({str(error).splitlines()[0]})") from None


def read_report(path: Path) -> tuple[Findings, str]:
    """(findings, the narrative its reader sees: the language model's if the guard kept it, else the template)."""
    from fm.report.document import Report

    path = path / "report.json" if path.is_dir() else path
    try:
        report = Report.from_json(path.read_text())
    except (OSError, ValueError) as error:
        raise InputFileError(path, f"is not an fm report.json ({str(error).splitlines()[0]})") from None
    drafted = report.model_narrative
    return report.findings, drafted.text if drafted is not None and drafted.kept else report.narrative


def _text(manifest: Path, value) -> str | None:
    """A reference text: inline, or the contents of the .txt/.md file a cell names."""
    text = str(value or "").strip()
    if text.endswith((".txt", ".md")) and "\n" not in text:
        file = resolved(manifest, text)
        if not file.is_file():
            raise InputFileError(manifest, f"names the reference text {file}, which does not exist")
        return file.read_text()
    return text or None


def case_id(row: dict, number: int) -> str:
    return str(row.get("id") or row.get("sample_id") or number)


def read_report_cases(manifest: str | Path, predictions: str | Path | None = None) -> list[ReportCase]:
    """A manifest's report cases. Columns: `findings` (the reference: a findings JSON or a
    report.json; or `reference`), the prediction as `report` (a report.json or its folder) or, with `predictions`,
    `id` (or `sample_id`) naming the folder predictions/<id>/ that fm report --manifest wrote;
    optional `reference_text` (or `narrative`: inline text or a .txt/.md file). fm synth's
    manifest-<split>.parquet is such a manifest."""
    manifest = Path(manifest)
    rows = read_rows(manifest, (), ("id", "report", "reference", "reference_text"))
    pairs = []
    for number, row in enumerate(rows, start=1):
        reference = row.get("findings") or row.get("reference")
        if not reference:
            raise InputFileError(manifest, "needs a 'findings' (or 'reference') column on every row")
        if predictions is not None:
            report = Path(predictions) / case_id(row, number) / "report.json"
        elif row.get("report"):
            report = resolved(manifest, row["report"])
        else:
            raise InputFileError(manifest, "needs a 'report' column, or --predictions DIR with an 'id' column")
        pairs.append((row, number, report, resolved(manifest, reference)))
    require_files(manifest, [file for _, _, report, ref in pairs for file in (report, ref)])
    cases = []
    for row, number, report, reference in pairs:
        findings, narrative = read_report(report)
        text = _text(manifest, row.get("reference_text") or row.get("narrative"))
        cases.append(ReportCase(case_id(row, number), findings, read_findings(reference), narrative, text))
    return cases
