"""Question-answer pairs about one scan, every answer read from its Findings.

Closed questions (yes/no, side, count, region) have short exact answers; open ones (size,
description) have answers with the measured numbers. Question wording is varied with a seeded
generator; answers are not.
"""

from __future__ import annotations

import random

from fm.core.findings import Findings, Laterality
from fm.report.places import lesions_at, places_in
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, lesion_noun, location, side_of, ventricles

_ASK = {
    "presence": (
        "Is there a lesion in this scan?", "Is a focal lesion present?", "Does this brain show a tumour?",
        "Is any lesion visible?", "Does the scan contain a focal abnormality?", "Is a mass seen?",
        "Are there any lesions?",
    ),
    "count": (
        "How many lesions are there?", "How many separate lesions can be seen?", "How many lesions were found?",
        "What is the lesion count?", "How many masses are present?", "Number of lesions?",
    ),
    "side": (
        "Which side is the largest lesion on?", "On which side of the brain is the main lesion?",
        "Is the main lesion left or right?", "Which hemisphere holds the largest lesion?",
        "Which side is affected by the main lesion?", "Left or right: where is the biggest lesion?",
    ),
    "region": (
        "In which region is the largest lesion?", "Where is the main lesion located?", "Where does the main lesion lie?",
        "Which lobe holds the largest lesion?", "In what part of the brain is the largest lesion?",
        "Location of the main lesion?",
    ),
    "midline": (
        "Does the largest lesion cross the midline?", "Does the main lesion extend across the midline?",
        "Does the largest lesion involve both hemispheres?", "Is the main lesion bilateral?",
        "Does the biggest lesion cross over to the other side?",
    ),
    "enhancement": (
        "Does the largest lesion enhance?", "Does the main lesion have an enhancing component?",
        "Is the main lesion contrast-enhancing?", "Does the biggest lesion enhance with contrast?",
        "Is there contrast enhancement in the main lesion?", "Does the largest lesion show enhancement?",
    ),
    "ventricles": (
        "Are the lateral ventricles enlarged?", "Is there ventricular enlargement?", "Are the ventricles dilated?",
        "Is there ventriculomegaly?", "Are the lateral ventricles normal in size?",
    ),
    "volume": (
        "What is the volume of the largest lesion?", "How large is the main lesion in mL?",
        "What volume does the main lesion have?", "How many mL is the biggest lesion?", "Volume of the main lesion?",
        "What size is the largest lesion in millilitres?",
    ),
    "diameter": (
        "What is the longest diameter of the largest lesion?", "How long is the main lesion at its longest?",
        "What is the maximum diameter of the main lesion?", "How wide is the largest lesion at its widest?",
        "Longest diameter of the biggest lesion?", "What is the greatest dimension of the main lesion in mm?",
    ),
    "oedema": (
        "How much oedema surrounds the largest lesion?", "What is the volume of perilesional oedema?",
        "How much oedema is around the main lesion?", "What volume of oedema surrounds the biggest lesion?",
        "Oedema volume around the main lesion?",
    ),
    "describe": ("Describe the largest lesion.", "What does the main lesion look like?", "Describe the main lesion."),
    "place": (
        "Is any lesion located in the {place}?", "Does the scan show a lesion in the {place}?",
        "Is the {place} involved by a lesion?", "Is there an abnormality in the {place}?",
        "Is the {place} affected?",
    ),
    "structure": (
        "How much {structure} is there?", "What volume does the {structure} have?", "Volume of the {structure}?",
        "How many mL of {structure} were measured?", "What is the {structure} volume?",
    ),
}  # fmt: skip
#: places a question may name: every lobe on either side
_PLACES = tuple(
    f"{side} {lobe} lobe" for side in ("left", "right") for lobe in ("frontal", "parietal", "temporal", "occipital")
)


def qa_pairs(findings: Findings, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs: list[dict[str, str]] = []

    def add(kind: str, answer_type: str, answer: str, **names: str) -> None:
        question = rng.choice(_ASK[kind]).format(**names)
        pairs.append({"question": question, "answer": answer, "type": kind, "answer_type": answer_type})

    lesions = findings.lesions
    add("presence", "closed", "yes" if lesions else "no")
    add("count", "closed", str(len(lesions)))
    measured = [s for s in findings.structures if s.volume_ml is not None]
    if measured:
        structure = rng.choice(measured)
        add("structure", "open", f"{structure.volume_ml:.1f} mL", structure=structure.name)
    occupied = [p for p in _PLACES if _lesions_at(p, lesions)]
    if occupied and rng.random() < 0.5:  # as often a place that holds a lesion as one that does not
        add("place", "closed", "yes", place=rng.choice(occupied))
    elif len(occupied) < len(_PLACES):
        add("place", "closed", "no", place=rng.choice([p for p in _PLACES if p not in occupied]))
    judged = ventricles(findings)
    if judged is not None:
        add("ventricles", "closed", "yes" if judged[1] else "no")
    if not lesions:
        return pairs
    main = lesions[0]
    character = lesion_character(main)
    add("side", "closed", side_of(main))
    add("region", "closed", main.region)
    add("midline", "closed", "no" if main.laterality in (Laterality.left, Laterality.right) else "yes")
    assessed = character["enhancement"] != NOT_ASSESSED  # sub-regions need a contrast-enhanced scan
    if assessed:
        add("enhancement", "closed", "yes" if character["enhancing_ml"] > 0 else "no")
    add("volume", "open", f"{main.volume_ml:.1f} mL")
    add("diameter", "open", f"{main.longest_diameter_mm:.1f} mm")
    description = (
        f"A {lesion_noun(main)} in the {location(main)}, {main.longest_diameter_mm:.1f} x "
        f"{main.short_axis_mm:.1f} mm ({main.volume_ml:.1f} mL)"
    )
    if assessed:
        add("oedema", "open", f"{character['oedema_ml']:.1f} mL")
        description += f", with {character['oedema_ml']:.1f} mL of surrounding oedema"
    add("describe", "open", description + ".")
    return pairs


def _lesions_at(place: str, lesions) -> list:
    """The lesions at a place named in words ("left frontal lobe"), as the guard reads it."""
    return lesions_at(places_in(place)[0], lesions)
