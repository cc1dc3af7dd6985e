"""Question-answer pairs about one scan, every answer read from its Findings.

Closed questions (yes/no, side, count, region, a lesion at a place) have short exact answers; open
ones (sizes, structure volumes, description) have answers with the measured numbers. Each kind is
asked in several phrasings, drawn with a seeded generator, so that a model learns the question's
meaning rather than its wording; none of them is a phrasing of the held-out set
(fm.evaluate.question_set), which measures exactly that. The answers follow the judge's rules: a
question about "the lesion" on a scan without one is answered that there is none, and one about
enhancement or oedema without a contrast-enhanced scan is declined. Questions on what the program
never measures (age, diagnosis, ...) are not asked: fm.pipeline.conversation declines them before
the model is asked, and a model taught to decline learnt to decline any question it had not seen.
"""

from __future__ import annotations

import random

from fm.core.findings import Findings, Laterality
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, lesion_noun, location, side_of, ventricles

#: how a question may name the largest lesion, and a lesion
_NOUNS = ("lesion", "tumour", "mass", "abnormality")
_THE = tuple(f"the {noun}" for noun in _NOUNS) + tuple(
    f"the {which} {noun}" for which in ("main", "largest", "biggest", "dominant") for noun in _NOUNS
)
_A = ("a lesion", "a tumour", "a mass", "an abnormality", "a focal lesion")
_VENTRICLES = ("ventricles", "lateral ventricles")

#: frames of each kind of question: {the} the largest lesion, {a} a lesion, {n} a lesion noun,
#: {v} the ventricles, {structure} and {place} what a question is about
_FRAMES = {
    "presence": (
        "Is there {a} in this scan?",
        "Does the scan show {a}?",
        "Do you see {a}?",
        "Is {a} present?",
        "Does this brain contain {a}?",
        "Is any {n} visible?",
        "Are there any {n}s?",
        "Does this brain show {a}?",
    ),
    "normal": (
        "Is this brain normal?",
        "Does the brain look normal?",
        "Is this a normal scan?",
        "Is the study normal?",
        "Is the MRI normal?",
        "Does this scan look normal?",
        "Is the brain normal on this scan?",
    ),
    "count": (
        "How many {n}s are there?",
        "How many separate {n}s can be seen?",
        "How many {n}s do you see?",
        "How many {n}s does the scan show?",
        "Tell me how many {n}s there are.",
        "How many {n}s are present?",
    ),
    "multiple": ("Are there multiple {n}s?", "Is there more than a single {n}?", "Are there several {n}s?"),
    "side": (
        "Which side is {the} on?",
        "On which side of the brain is {the}?",
        "Is {the} left or right?",
        "Which hemisphere holds {the}?",
        "What side is {the} on?",
        "Which side of the brain is affected?",
        "Is {the} in the left or the right hemisphere?",
    ),
    "region": (
        "In which region is {the}?",
        "Where is {the} located?",
        "Which lobe holds {the}?",
        "Where is {the}?",
        "In what part of the brain is {the}?",
        "Where in the brain is {the}?",
        "What is the location of {the}?",
        "Which lobe does {the} involve?",
    ),
    "midline": (
        "Does {the} cross the midline?",
        "Does {the} extend across the midline?",
        "Does {the} extend into both hemispheres?",
        "Does {the} involve both sides of the brain?",
    ),
    "enhancement": (
        "Does {the} enhance?",
        "Does {the} have an enhancing component?",
        "Is there contrast enhancement in {the}?",
        "Does {the} show enhancement?",
        "Does {the} enhance with contrast?",
        "Is {the} enhancing after contrast?",
    ),
    "ventricles": (
        "Are the {v} enlarged?",
        "Is there ventricular enlargement?",
        "Are the {v} dilated?",
        "Is there ventriculomegaly?",
        "Are the {v} large?",
    ),
    "ventricles normal": ("Are the {v} normal in size?", "Is ventricular size normal?", "Do the {v} look normal?"),
    "volume": (
        "What is the volume of {the}?",
        "How large is {the} in mL?",
        "How big is {the}?",
        "What is the size of {the} in mL?",
        "How large is {the}?",
        "What volume does {the} have?",
        "How many mL is {the}?",
    ),
    "diameter": (
        "What is the longest diameter of {the}?",
        "How long is {the} at its longest?",
        "What is the maximum diameter of {the}?",
        "How long is {the}?",
        "What is the largest dimension of {the}?",
        "How many mm does {the} measure at its longest?",
    ),
    "oedema": (
        "How much oedema surrounds {the}?",
        "What is the volume of perilesional oedema?",
        "How much oedema is there?",
        "What is the oedema volume?",
        "How much swelling surrounds {the}?",
        "How many mL of oedema are around {the}?",
    ),
    "describe": ("Describe {the}.", "What does {the} look like?"),
    "structure": (
        "What is the {structure} volume?",
        "How much {structure} is there?",
        "Give the volume of the {structure}.",
        "What volume does the {structure} have?",
        "How large is the {structure}?",
        "How many mL of {structure} are there?",
    ),
    "place": (
        "Is the {place} affected?",
        "Any {n} in the {place}?",
        "Does the {place} have {a}?",
        "Do you see {a} in the {place}?",
        "Is the {place} involved?",
    ),
}


def _phrasings(frames: tuple[str, ...]) -> tuple[str, ...]:
    """Every frame with every way of naming what it leaves open ({structure} and {place} stay)."""
    out = []
    for frame in frames:
        texts = [frame]
        for key, words in (("{the}", _THE), ("{a}", _A), ("{n}", _NOUNS), ("{v}", _VENTRICLES)):
            texts = [t.replace(key, w) for t in texts for w in words] if any(key in t for t in texts) else texts
        out += [t[0].upper() + t[1:] for t in texts]
    return tuple(dict.fromkeys(out))


def _without_held_out(phrasings: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The phrasings of each kind less those that, filled with any structure or place, are a question
    of the held-out set."""
    from fm.evaluate.question_set import PLACES, STRUCTURES, questions

    held_out = {asked.question for asked in questions()}

    def is_held_out(phrasing: str) -> bool:
        return any(phrasing.format(structure=s, place=p) in held_out for s in STRUCTURES for p in PLACES)

    return {kind: tuple(p for p in texts if not is_held_out(p)) for kind, texts in phrasings.items()}


#: the phrasings training asks, by kind: never one the held-out set asks
_ASK = _without_held_out({kind: _phrasings(frames) for kind, frames in _FRAMES.items()})
#: where a place question may point: the regions lesions are reported in, on either side
_REGIONS = ("frontal lobe", "parietal lobe", "temporal lobe", "occipital lobe", "insula", "cerebellum")
NO_LESION = "No lesion is seen."
NOT_ASSESSED_WITHOUT_T1C = "Not measured: {} is not assessed without a contrast-enhanced (T1c) scan."


def qa_pairs(findings: Findings, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs: list[dict[str, str]] = []

    def add(kind: str, answer_type: str, answer: str, **fill: str) -> None:
        question = rng.choice(_ASK[kind]).format(**fill)
        pairs.append({"question": question, "answer": answer, "type": kind, "answer_type": answer_type})

    lesions = findings.lesions
    add("presence", "closed", "yes" if lesions else "no")
    add("normal", "closed", "no" if lesions else "yes")
    add("count", "closed", str(len(lesions)))
    add("multiple", "closed", "yes" if len(lesions) > 1 else "no")
    judged = ventricles(findings)
    if judged is not None:
        add("ventricles", "closed", "yes" if judged[1] else "no")
        add("ventricles normal", "closed", "no" if judged[1] else "yes")
    measured = [s for s in findings.structures if s.volume_ml is not None]
    for structure in rng.sample(measured, min(3, len(measured))):
        add("structure", "open", f"{structure.volume_ml:.1f} mL", structure=structure.name)
    for _ in range(2):
        answer, place = _place_question(findings, rng)
        add("place", "closed", answer, place=place)
    if not lesions:
        for kind in rng.sample(("side", "region", "volume", "diameter"), 2):
            add(kind, "closed", NO_LESION)
        return pairs
    main = lesions[0]
    character = lesion_character(main)
    add("side", "closed", side_of(main))
    add("region", "closed", main.region)
    add("midline", "closed", "no" if main.laterality in (Laterality.left, Laterality.right) else "yes")
    assessed = character["enhancement"] != NOT_ASSESSED  # sub-regions need a contrast-enhanced scan
    if assessed:
        add("enhancement", "closed", "yes" if character["enhancing_ml"] > 0 else "no")
    else:
        add("enhancement", "open", NOT_ASSESSED_WITHOUT_T1C.format("enhancement"))
        add("oedema", "open", NOT_ASSESSED_WITHOUT_T1C.format("oedema"))
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


def _place_question(findings: Findings, rng: random.Random) -> tuple[str, str]:
    """(answer, place) of a question about a place: half the time where a lesion is, else anywhere.
    A lesion is at a place when its region matches and it lies on that side or on both."""
    lesions = findings.lesions
    if lesions and rng.random() < 0.5:
        lesion = rng.choice(lesions)
        side = side_of(lesion)
        side = rng.choice(("left", "right")) if side == "both sides" else side
        region = lesion.region
    else:
        side, region = rng.choice(("left", "right")), rng.choice(_REGIONS)
    there = any(lesion.region == region and side_of(lesion) in (side, "both sides") for lesion in lesions)
    return ("yes" if there else "no"), f"{side} {region}"
