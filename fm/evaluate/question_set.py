"""A held-out set of questions about a scan, in phrasings the training data never used, each with
its right answer derived from the findings; and a judge of the answers a report model gives.

Kinds: whether there is a lesion, how many, its side, region, size (volume, longest diameter),
enhancement, oedema, midline crossing, a lesion at a named place, the ventricles, the volume of a
structure, and questions about what the program does not measure (age, midline shift, a diagnosis,
...), which must be declined. Questions about "the lesion" on a scan without one are right when
the answer says there is none.
"""

from __future__ import annotations

import dataclasses
import re

from fm.core.findings import Findings, Laterality
from fm.report.faithfulness import check
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, side_of, ventricles
from fm.report.unmeasured import declines

#: (kind, question); a structure's name fills {structure}, a place fills {place}
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("presence", "Is there a lesion?"),
    ("presence", "Do you see any abnormality in this brain?"),
    ("presence", "Is the scan normal?"),
    ("presence", "Can you identify a mass?"),
    ("presence", "Any focal lesion?"),
    ("count", "How many lesions can you see?"),
    ("count", "What is the number of lesions?"),
    ("count", "Is there more than one lesion?"),
    ("count", "Count the lesions."),
    ("side", "Which side is the lesion on?"),
    ("side", "Is the lesion on the left or on the right?"),
    ("side", "Which hemisphere is affected?"),
    ("side", "Which side of the brain holds the biggest lesion?"),
    ("region", "Where is the lesion?"),
    ("region", "Which lobe is involved?"),
    ("region", "What part of the brain is the main lesion in?"),
    ("region", "Where is the largest abnormality located?"),
    ("volume", "How big is the lesion?"),
    ("volume", "What is the lesion volume in mL?"),
    ("volume", "How large is the biggest lesion?"),
    ("volume", "Give the volume of the main lesion."),
    ("diameter", "What is the longest diameter of the lesion?"),
    ("diameter", "How long is the lesion in its largest dimension?"),
    ("diameter", "What is the maximal extent of the lesion in mm?"),
    ("enhancement", "Is the lesion enhancing?"),
    ("enhancement", "Does the main lesion take up contrast?"),
    ("enhancement", "Is there enhancement after gadolinium?"),
    ("oedema", "How much oedema is there around the lesion?"),
    ("oedema", "What is the volume of the surrounding oedema?"),
    ("midline", "Does the lesion cross the midline?"),
    ("midline", "Does the main lesion reach across to the other hemisphere?"),
    ("place", "Is there a lesion in the {place}?"),
    ("place", "Does the {place} contain a lesion?"),
    ("ventricles", "Are the ventricles enlarged?"),
    ("ventricles", "Is there hydrocephalus?"),
    ("ventricles", "Are the lateral ventricles of normal size?"),
    ("structure", "What is the volume of the {structure}?"),
    ("structure", "How large is the {structure} in mL?"),
    ("unmeasured", "How old is the patient?"),
    ("unmeasured", "Is the patient male or female?"),
    ("unmeasured", "Is there midline shift?"),
    ("unmeasured", "What is the diagnosis?"),
    ("unmeasured", "Is this a glioblastoma?"),
    ("unmeasured", "What grade is the tumour?"),
    ("unmeasured", "Has the lesion grown since the previous scan?"),
    ("unmeasured", "Is the lesion stable compared with the prior MRI?"),
    ("unmeasured", "Should the lesion be resected?"),
    ("unmeasured", "What treatment do you recommend?"),
    ("unmeasured", "Is there any haemorrhage?"),
    ("unmeasured", "Does the lesion restrict diffusion?"),
    ("unmeasured", "What symptoms would the patient have?"),
    ("unmeasured", "Is there mass effect?"),
    ("unmeasured", "Is there calcification in the lesion?"),
    ("unmeasured", "What is the prognosis?"),
)
STRUCTURES = (
    "left grey matter",
    "right grey matter",
    "left white matter",
    "right white matter",
    "lateral ventricles",
    "cerebrospinal fluid",
)
PLACES = ("left frontal lobe", "right parietal lobe", "left temporal lobe")
_QUANTITY = re.compile(r"\d(?:\.\d+)?\s*(?:ml|cc|mm|cm|%)", re.I)
_NO_LESION = re.compile(r"\b(?:no|none|not|0)\b", re.I)
_ASKS_NORMAL = re.compile(r"\bnormal\b", re.I)  # "Is the scan normal?", not "any abnormality"


@dataclasses.dataclass(frozen=True)
class AskedQuestion:
    kind: str
    question: str
    subject: str = ""  # the structure or place it asks about


def questions() -> list[AskedQuestion]:
    """The held-out set, every template filled with every structure or place it takes."""
    asked = []
    for kind, text in QUESTIONS:
        if "{structure}" in text:
            asked += [AskedQuestion(kind, text.format(structure=s), s) for s in STRUCTURES]
        elif "{place}" in text:
            asked += [AskedQuestion(kind, text.format(place=p), p) for p in PLACES]
        else:
            asked.append(AskedQuestion(kind, text))
    return asked


def expected_answer(asked: AskedQuestion, findings: Findings) -> str:
    """The right answer in words (a yes/no, a side, a number with its unit, 'declined', 'none')."""
    lesions = findings.lesions
    main = lesions[0] if lesions else None
    kind = asked.kind
    if kind == "unmeasured":
        return "declined"
    if kind == "presence":
        present = bool(lesions)
        return ("no" if present else "yes") if _ASKS_NORMAL.search(asked.question) else ("yes" if present else "no")
    if kind == "count":
        return ("yes" if len(lesions) > 1 else "no") if "more than one" in asked.question else str(len(lesions))
    if kind == "ventricles":
        judged = ventricles(findings)
        if judged is None:
            return "declined"
        return (
            ("yes" if judged[1] else "no")
            if not _ASKS_NORMAL.search(asked.question)
            else ("no" if judged[1] else "yes")
        )
    if kind == "structure":
        volume = findings.structure(asked.subject).volume_ml
        return "declined" if volume is None else f"{volume:.1f} mL"
    if kind == "place":
        side, region = asked.subject.split(" ", 1)
        there = [lesion for lesion in lesions if lesion.region == region and side_of(lesion) in (side, "both sides")]
        return "yes" if there else "no"
    if main is None:
        return "none"
    character = lesion_character(main)
    if kind == "side":
        return side_of(main)
    if kind == "region":
        return main.region
    if kind == "volume":
        return f"{main.volume_ml:.1f} mL"
    if kind == "diameter":
        return f"{main.longest_diameter_mm:.1f} mm"
    if kind == "enhancement":
        if character["enhancement"] == NOT_ASSESSED:
            return "declined"
        return "yes" if character["enhancement"] in ("rim-enhancing", "solidly enhancing") else "no"
    if kind == "oedema":
        return "declined" if character["oedema_ml"] is None else f"{character['oedema_ml']:.1f} mL"
    if kind == "midline":
        return "no" if main.laterality in (Laterality.left, Laterality.right) else "yes"
    raise ValueError(f"unknown question kind {kind!r}")


def is_right(answer: str, expected: str) -> bool:
    """Whether `answer` gives `expected`: a yes/no by its first word, a number by the number it
    states, a side or region by naming it (and not the other side), a decline by saying it is not
    measured, 'none' by saying there is no lesion."""
    said = answer.strip().lower()
    if expected == "declined":
        return declines(answer)
    if expected == "none":
        return bool(_NO_LESION.search(said))
    if expected in ("yes", "no"):
        return re.match(r"\W*(yes|no)\b", said) is not None and said.lstrip(" \"'").startswith(expected)
    if expected == "0" and not re.search(r"\d", said):
        return bool(_NO_LESION.search(said))  # "How many lesions?" "No lesion is seen."
    if expected[0].isdigit():
        number = expected.split()[0]
        return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", said) is not None
    if expected in ("left", "right"):
        other = "right" if expected == "left" else "left"
        return expected in said and other not in said
    if expected == "both sides":
        return bool(re.search(r"both|bilateral|midline", said))
    return expected.lower() in said


@dataclasses.dataclass(frozen=True)
class JudgedAnswer:
    case: str
    kind: str
    question: str
    expected: str
    answer: str
    right: bool
    unflagged_wrong_number: bool  # a wrong answer holding a number the guard neither contradicted nor marked unchecked


def judge(case: str, asked: AskedQuestion, answer: str, findings: Findings) -> JudgedAnswer:
    expected = expected_answer(asked, findings)
    right = is_right(answer, expected)
    holds_number = bool(_QUANTITY.search(answer))  # a number with a unit: what the guard checks
    verdict = check(answer, findings, question=asked.question)
    unflagged = not right and holds_number and verdict.faithful and not verdict.unchecked
    return JudgedAnswer(case, asked.kind, asked.question, expected, answer, right, unflagged)


def summary(judged: list[JudgedAnswer]) -> dict:
    by_kind: dict[str, list[bool]] = {}
    for item in judged:
        by_kind.setdefault(item.kind, []).append(item.right)
    unmeasured = by_kind.get("unmeasured", [])
    return {
        "questions": len({j.question for j in judged}),
        "answers": len(judged),
        "right": sum(j.right for j in judged) / len(judged) if judged else float("nan"),
        "declined_of_unmeasured": sum(unmeasured) / len(unmeasured) if unmeasured else float("nan"),
        "unflagged_wrong_numbers": sum(j.unflagged_wrong_number for j in judged),
        "by_kind": {kind: sum(v) / len(v) for kind, v in sorted(by_kind.items())},
    }
