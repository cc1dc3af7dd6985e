"""The default segmenter's goals (issue 31) beside what was measured, met or not, in one table.

Each row names the command whose output it reads: real scans from `python -m eval.eval_real`
(its JSON), the out-of-distribution synthetic split from `python eval/eval_segmenter.py`
(eval/results/adaptive_ood.json), speed from `python -m eval.bench --only report`
(eval/results/bench/bench.json). A figure whose file is missing is shown as not measured.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REAL = "python -m eval.eval_real"
OOD = "python eval/eval_segmenter.py --model fm3d/atlas-em --n 8 --out eval/results/adaptive_ood.json"
BENCH = "python -m eval.bench --only report"


@dataclasses.dataclass(frozen=True)
class Goal:
    what: str
    target: str
    measured: str
    met: bool | None  # None: not measured
    command: str


def _at_least(what, value, target, command) -> Goal:
    if value is None:
        return Goal(what, f">= {target:.2f}", "not measured", None, command)
    return Goal(what, f">= {target:.2f}", f"{value:.2f}", value >= target, command)


def _within(what, found, reference, share, command) -> Goal:
    if found is None or not reference:
        return Goal(what, f"within {share:.0%}", "not measured", None, command)
    error = found / reference - 1
    return Goal(
        what, f"within {share:.0%}", f"{found:.1f} vs {reference:.1f} mL ({error:+.0%})", abs(error) <= share, command
    )


def _at_most(what, value, limit, target: str, shown: str, command) -> Goal:
    """A goal met when `value` is `limit` or less; `shown` formats the value ("{:.1f} s")."""
    if value is None:
        return Goal(what, target, "not measured", None, command)
    return Goal(what, target, shown.format(value), value <= limit, command)


def real_scan_goals(real: dict) -> list[Goal]:
    brats = real.get("brats", {})

    def dice(case, run, region):
        return brats.get(case, {}).get(run, {}).get("dice", {}).get(region)

    p5, p6 = "brats_2013_pat0005_1", "brats_2013_pat0006_1"
    core = brats.get(p5, {}).get("flair+t1c", {}).get("tumour_core_ml") or {}
    rows = [
        _at_least("pat0006 whole tumour Dice, FLAIR + T1c", dice(p6, "flair+t1c", "whole_tumour"), 0.70, REAL),
        _at_least("pat0006 whole tumour Dice, FLAIR alone", dice(p6, "flair", "whole_tumour"), 0.65, REAL),
        _at_least("pat0005 whole tumour Dice, FLAIR alone", dice(p5, "flair", "whole_tumour"), 0.80, REAL),
        _at_least("pat0005 tumour core Dice, FLAIR + T1c", dice(p5, "flair+t1c", "tumour_core"), 0.60, REAL),
        _at_least("pat0005 enhancing tumour Dice, FLAIR + T1c", dice(p5, "flair+t1c", "enhancing_tumour"), 0.75, REAL),
        _within("pat0005 tumour core volume", core.get("found"), core.get("reference"), 0.25, REAL),
    ]
    example = real.get("example", {}).get("lesion_ml", {})
    if example.get("found") and example.get("reference"):
        rows.append(_within("bundled example lesion volume", example["found"][0], example["reference"][0], 0.15, REAL))
    difference = real.get("t1_pd_difference", {})
    for structure, share in (("grey matter", 0.10), ("white matter", 0.10), ("lateral ventricles", 0.20)):
        rows.append(
            _at_most(
                f"chris T1 vs PD, {structure}",
                difference.get(structure),
                share,
                f"within {share:.0%}",
                "{:.0%} apart",
                REAL,
            )
        )
    healthy = real.get("healthy", {})
    false_lesions = sum(len(row["lesions_0_5ml"]) for row in healthy.values())
    rows.append(
        Goal(
            "healthy real scans: no lesion",
            "0 lesions >= 0.5 mL",
            f"{false_lesions} in {len(healthy)} scans",
            false_lesions == 0 if healthy else None,
            REAL,
        )
    )
    return rows


def ood_goals(ood: dict | None) -> list[Goal]:
    regions = (ood or {}).get("summary", {}).get("plain", {}).get("regions", {})

    def mean_dice(*names):
        values = [regions[n]["dice"] for n in names if n in regions]
        return sum(values) / len(values) if values else None

    summary = (ood or {}).get("summary", {}).get("plain", {})
    rows = [
        _at_least("OOD synthetic grey matter Dice", mean_dice("left grey matter", "right grey matter"), 0.90, OOD),
        _at_least("OOD synthetic white matter Dice", mean_dice("left white matter", "right white matter"), 0.90, OOD),
        _at_least("OOD synthetic lateral ventricles Dice", mean_dice("lateral ventricles"), 0.85, OOD),
        _at_least("OOD synthetic CSF Dice", mean_dice("cerebrospinal fluid"), 0.75, OOD),
        _at_least("OOD synthetic detection of lesions >= 1 mL", summary.get("sensitivity_1ml"), 0.90, OOD),
    ]
    fp = summary.get("false_positives_per_scan")
    rows.append(_at_most("OOD synthetic false positives per scan", fp, 0.2, "<= 0.2", "{:.2f}", OOD))
    return rows


def speed_goals(bench: dict | None) -> list[Goal]:
    rows = {row["case"]: row for row in (bench or {}).get("rows", []) if row.get("group") == "report"}
    total = rows.get("total", {})
    return [
        _at_most("fm report --example, median on 2 cores", total.get("median_s"), 10, "<= 10 s", "{:.1f} s", BENCH),
        _at_most("fm report --example, peak memory", total.get("peak_rss_gib"), 3, "<= 3 GiB", "{:.1f} GiB", BENCH),
    ]


def unmeasured_goals() -> list[Goal]:
    """Goals no result file here holds: listed so that the table is the issue's whole list."""
    freesurfer = "real skull-stripped T1 against FreeSurfer, Dice"
    return [
        Goal(f"{freesurfer}: grey matter", ">= 0.85", "not measured", None, "scans this project does not have"),
        Goal(f"{freesurfer}: white matter", ">= 0.85", "not measured", None, "scans this project does not have"),
        Goal(f"{freesurfer}: lateral ventricles", ">= 0.80", "not measured", None, "scans this project does not have"),
        Goal(
            "held-out fm synth split end to end: whole-tumour detection",
            ">= 80 %",
            "not measured (4 of 11 when last run)",
            None,
            "fm report --manifest, then fm eval",
        ),
    ]


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def all_goals(real: dict) -> list[Goal]:
    return (
        real_scan_goals(real)
        + ood_goals(_load(RESULTS / "adaptive_ood.json"))
        + speed_goals(_load(RESULTS / "bench" / "bench.json"))
        + unmeasured_goals()
    )


def markdown(goals: list[Goal]) -> str:
    lines = ["| goal | target | measured | met | measured by |", "| --- | --- | --- | --- | --- |"]
    for goal in goals:
        met = "not measured" if goal.met is None else "yes" if goal.met else "**no**"
        lines.append(f"| {goal.what} | {goal.target} | {goal.measured} | {met} | `{goal.command}` |")
    return "\n".join(lines) + "\n"
