"""Question-answer pairs about one scan, every answer read from its Findings.

Closed questions (yes/no, side, count, region) have short exact answers; open ones (size,
description) have answers with the measured numbers. Question wording is varied with a seeded
generator; answers are not.
"""

from __future__ import annotations

import random

from fm.core.findings import Findings, Laterality
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, lesion_noun, location, side_of, ventricles

_ASK = {
    "presence": ("Is there a lesion in this scan?", "Is a focal lesion present?", "Does this brain show a tumour?"),
    "count": ("How many lesions are there?", "How many separate lesions can be seen?"),
    "side": ("Which side is the largest lesion on?", "On which side of the brain is the main lesion?"),
    "region": ("In which region is the largest lesion?", "Where is the main lesion located?"),
    "midline": ("Does the largest lesion cross the midline?", "Does the main lesion extend across the midline?"),
    "enhancement": ("Does the largest lesion enhance?", "Does the main lesion have an enhancing component?"),
    "ventricles": ("Are the lateral ventricles enlarged?", "Is there ventricular enlargement?"),
    "volume": ("What is the volume of the largest lesion?", "How large is the main lesion in mL?"),
    "diameter": ("What is the longest diameter of the largest lesion?", "How long is the main lesion at its longest?"),
    "oedema": ("How much oedema surrounds the largest lesion?", "What is the volume of perilesional oedema?"),
    "describe": ("Describe the largest lesion.", "What does the main lesion look like?"),
}


def qa_pairs(findings: Findings, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs: list[dict[str, str]] = []

    def add(kind: str, answer_type: str, answer: str) -> None:
        pairs.append({"question": rng.choice(_ASK[kind]), "answer": answer, "type": kind, "answer_type": answer_type})

    lesions = findings.lesions
    add("presence", "closed", "yes" if lesions else "no")
    add("count", "closed", str(len(lesions)))
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
