"""The faithfulness guard: what a narrative or an answer claims, checked against the Findings it
was written from. A language model's text is kept only when none of its checkable claims
contradicts a measurement.

Checked, sentence by sentence:
- lesion count ("no focal lesion", "single lesion", "three lesions", "multifocal");
- sides and regions of lesions ("left frontal lobe" must be where a lesion is);
- every number with a unit (mL, mm, % of intracranial volume) must be a rounding of a measured
  value (a lesion's volume, sub-region volumes, diameters; a structure's volume);
- enhancement claimed or denied against the lesions' enhancing volumes; and where a sentence
  places exactly one lesion (one side and region, where only that lesion lies), the enhancement
  pattern it gives (non-, rim-, solidly enhancing, oedema-like) must be that lesion's;
- ventricles called enlarged or normal against fm.report.template_narrative's rule.
Omissions: an abnormal finding (a lesion, enlarged ventricles) that the text never mentions.
"""

from __future__ import annotations

import dataclasses
import re

from fm.core.findings import Findings, Laterality, LesionFinding
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, ventricles

_NUMBER_WORDS = {"no": 0, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_COUNT = re.compile(
    r"\b(no|one|single|two|three|four|five|six|\d+)\s+(?:separate\s+|focal\s+|distinct\s+|parenchymal\s+|mass\s+)*lesions?\b",
    re.I,
)
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(?:\s*x\s*(\d+(?:\.\d+)?))?\s*(mL|mm|%)", re.I)
_SIDE = re.compile(r"\b(left|right)\b(?!\s+(?:grey|white|hemisphere|and\b))", re.I)
REGIONS = (  # lobe-level regions as fm.core.regions names them
    "frontal lobe",
    "parietal lobe",
    "temporal lobe",
    "occipital lobe",
    "insula",
    "cerebellum",
    "brainstem",
    "deep grey matter and internal capsule",
)
_SIDE_REGION = re.compile(r"\b(left|right)\s+(" + "|".join(REGIONS) + r")\b")
_ENHANCING = re.compile(r"\b(?<!non-)(rim-enhancing|solidly enhancing|enhancing|enhancement)\b", re.I)
# "non-enhancing" of a part ("a necrotic or non-enhancing component") says nothing of the lesion's enhancement
_NOT_ENHANCING = re.compile(
    r"\b(non-enhancing(?!\s+(?:or\s+necrotic\s+)?(?:component|core|tissue|part))|no (?:contrast )?enhancement|does not enhance)\b",
    re.I,
)
_PATTERN = re.compile(r"\b(non-enhancing|rim-enhancing|solidly enhancing|oedema-like)\b", re.I)
_OF_A_PART = re.compile(r"\s+(?:or\s+necrotic\s+)?(?:component|core|tissue|part)\b", re.I)
_VENTRICLES = re.compile(r"ventric", re.I)
_ENLARGED = re.compile(r"enlarge|dilat|hydrocephal", re.I)
_NORMAL = re.compile(r"normal in size|within normal limits|not enlarged|normal-sized|normal size", re.I)


@dataclasses.dataclass(frozen=True)
class Contradiction:
    sentence: str
    claim: str  # what the sentence says
    finding: str  # what was measured
    quantity: bool = False  # a number that differs from the measured ones (not a side, count, region, ...)

    def __str__(self) -> str:
        return f'"{self.sentence}": {self.claim}, but {self.finding}'


@dataclasses.dataclass(frozen=True)
class GuardResult:
    contradictions: list[Contradiction]
    omissions: list[str]  # abnormal findings the text does not mention

    @property
    def faithful(self) -> bool:
        return not self.contradictions


def check(text: str, findings: Findings) -> GuardResult:
    """Contradictions and omissions of `text` (a narrative or an answer) against `findings`."""
    sentences = split_sentences(text)
    contradictions = [c for sentence in sentences for c in _sentence_contradictions(sentence, findings)]
    return GuardResult(contradictions, _omissions(text, findings))


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? followed by space (decimal points stay inside numbers)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _sentence_contradictions(sentence: str, findings: Findings) -> list[Contradiction]:
    found: list[Contradiction] = []
    lesions = findings.lesions
    for match in _COUNT.finditer(sentence):
        word = match.group(1).lower()
        claimed = int(word) if word.isdigit() else _NUMBER_WORDS[word]
        if claimed != len(lesions):
            found.append(Contradiction(sentence, f"{claimed} lesion(s)", f"{len(lesions)} were measured"))
    if re.search(r"\bmultifocal\b", sentence, re.I) and len(lesions) < 2:
        found.append(Contradiction(sentence, "multifocal disease", f"{len(lesions)} lesion(s) were measured"))
    found += _place_contradictions(sentence, lesions)
    found += _quantity_contradictions(sentence, findings)
    found += _enhancement_contradictions(sentence, lesions)
    found += _placed_pattern_contradictions(sentence, lesions)
    judged = ventricles(findings)
    if judged is not None and _VENTRICLES.search(sentence):
        volume, enlarged, fraction = judged
        if _ENLARGED.search(sentence) and not _NORMAL.search(sentence) and not enlarged:
            found.append(
                Contradiction(
                    sentence, "enlarged ventricles", f"they measure {volume:.1f} mL ({100 * fraction:.1f} %), normal"
                )
            )
        if _NORMAL.search(sentence) and enlarged:
            found.append(
                Contradiction(
                    sentence, "normal ventricles", f"they measure {volume:.1f} mL ({100 * fraction:.1f} %), enlarged"
                )
            )
    return found


def _place_contradictions(sentence: str, lesions: list[LesionFinding]) -> list[Contradiction]:
    """ "left frontal lobe" must be a lesion's side and region; a region named alone must hold a
    lesion; a side named alone ("1 left, 1 right") must have a lesion on it."""
    lowered = sentence.lower()
    where = ", ".join(f"{lesion.laterality.value} {lesion.region}" for lesion in lesions) or "no lesion"
    found = []
    paired_spans = []
    for match in _SIDE_REGION.finditer(lowered):
        side, region = match.group(1), match.group(2)
        paired_spans.append(match.span())
        if not any(lesion.region == region and _on_side(lesion, side) for lesion in lesions):
            found.append(
                Contradiction(sentence, f"a lesion in the {side} {region}", f"lesions were measured in: {where}")
            )
    unpaired = [(m.start(), m.group(0)) for m in re.finditer("|".join(REGIONS), lowered)]
    for start, region in unpaired:
        if any(a <= start < b for a, b in paired_spans):
            continue
        if not any(lesion.region == region for lesion in lesions):
            found.append(Contradiction(sentence, f"a lesion in the {region}", f"lesions were measured in: {where}"))
    for match in _SIDE.finditer(sentence):
        if any(a <= match.start() < b for a, b in paired_spans):
            continue
        side = match.group(1).lower()
        if not any(_on_side(lesion, side) for lesion in lesions):
            found.append(Contradiction(sentence, f"a {side}-sided lesion", f"lesions were measured in: {where}"))
    return found


def _on_side(lesion: LesionFinding, side: str) -> bool:
    if lesion.laterality in (Laterality.bilateral,):
        return True
    if lesion.laterality == Laterality.midline_crossing:
        return True  # reported as "left/right ..., crossing the midline"
    return lesion.laterality.value == side


def _quantity_contradictions(sentence: str, findings: Findings) -> list[Contradiction]:
    allowed = _measured_quantities(findings)
    found = []
    for match in _QUANTITY.finditer(sentence):
        unit = match.group(3)
        unit = "mL" if unit.lower() == "ml" else unit.lower()
        for written in filter(None, (match.group(1), match.group(2))):
            value = float(written)
            decimals = len(written.split(".")[1]) if "." in written else 0
            tolerance = 0.5 * 10**-decimals + 1e-9  # the text may round a measurement, not change it
            if not any(abs(value - measured) <= tolerance for measured in allowed[unit]):
                nearest = min(allowed[unit], key=lambda m: abs(m - value), default=None)
                measured_text = (
                    f"the nearest measured value is {nearest:.1f} {unit}"
                    if nearest is not None
                    else f"nothing in {unit} was measured"
                )
                found.append(Contradiction(sentence, f"{written} {unit}", measured_text, quantity=True))
    return found


def _measured_quantities(findings: Findings) -> dict[str, list[float]]:
    millilitres = [s.volume_ml for s in findings.structures if s.volume_ml is not None]
    millimetres: list[float] = []
    for lesion in findings.lesions:
        millilitres.append(lesion.volume_ml)
        millilitres += list(lesion.subregion_volumes_ml.values())
        character = lesion_character(lesion)
        millilitres += [v for k, v in character.items() if k.endswith("_ml") and v is not None]
        millimetres += [lesion.longest_diameter_mm, lesion.short_axis_mm]
    judged = ventricles(findings)
    percents = [100 * judged[2]] if judged is not None else []
    return {"mL": millilitres, "mm": millimetres, "%": percents}


def _enhancement_contradictions(sentence: str, lesions: list[LesionFinding]) -> list[Contradiction]:
    characters = [lesion_character(lesion)["enhancement"] for lesion in lesions]
    found = []
    if NOT_ASSESSED in sentence.lower():
        return found
    denies = _NOT_ENHANCING.search(sentence)
    claims = _ENHANCING.search(_NOT_ENHANCING.sub("", sentence))
    enhancing = [c for c in characters if c in ("rim-enhancing", "solidly enhancing")]
    if claims and not enhancing:
        measured = ", ".join(characters) if characters else "no lesion"
        found.append(Contradiction(sentence, "an enhancing lesion", f"the lesion(s) measured: {measured}"))
    if denies and characters and all(c in ("rim-enhancing", "solidly enhancing") for c in characters):
        found.append(
            Contradiction(sentence, "no enhancement", f"every lesion measured enhances ({', '.join(characters)})")
        )
    return found


def _placed_pattern_contradictions(sentence: str, lesions: list[LesionFinding]) -> list[Contradiction]:
    """A sentence that names one place where exactly one lesion lies speaks of that lesion: an
    enhancement pattern it gives must be that lesion's ("the second lesion, non-enhancing, is in
    the left parietal lobe" of a solidly enhancing one is wrong, though another lesion is
    non-enhancing)."""
    places = {match.groups() for match in _SIDE_REGION.finditer(sentence.lower())}
    if len(places) != 1:
        return []
    side, region = places.pop()
    there = [lesion for lesion in lesions if lesion.region == region and _on_side(lesion, side)]
    if len(there) != 1:
        return []
    actual = lesion_character(there[0])["enhancement"]
    if actual == NOT_ASSESSED:
        return []
    found = []
    for match in _PATTERN.finditer(sentence):
        written = match.group(1).lower()
        if written == "non-enhancing" and _OF_A_PART.match(sentence, match.end()):
            continue  # "a non-enhancing component": a part of the lesion, not its pattern
        if written != actual and not (written == "non-enhancing" and actual == "oedema-like"):
            claim = f"a {written} lesion in the {side} {region}"
            found.append(Contradiction(sentence, claim, f"the lesion measured there is {actual}"))
    return found


def _omissions(text: str, findings: Findings) -> list[str]:
    lowered = text.lower()
    missed = []
    for lesion in findings.lesions:
        mentioned = (
            lesion.region in lowered or f"{lesion.volume_ml:.1f}" in text or f"{lesion.volume_ml:.0f} ml" in lowered
        )
        if not mentioned:
            missed.append(
                f"lesion {lesion.lesion_id} ({lesion.laterality.value} {lesion.region}, {lesion.volume_ml:.1f} mL)"
            )
    judged = ventricles(findings)
    if judged is not None and judged[1]:
        if not any(_VENTRICLES.search(s) and _ENLARGED.search(s) for s in split_sentences(text)):
            missed.append(f"enlarged lateral ventricles ({judged[0]:.1f} mL)")
    return missed
