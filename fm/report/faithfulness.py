"""The faithfulness guard: what a narrative or an answer claims, checked against the Findings it
was written from. A language model's text is kept only when none of its checkable claims
contradicts a measurement.

Checked, sentence by sentence:
- lesion count ("no focal lesion", "single lesion", "three lesions", "multifocal");
- sides and regions of lesions ("left frontal lobe" must be where a lesion is);
- every number with a unit (mL, mm, % of intracranial volume) must be a rounding of a measured
  value of what its clause names: a structure's volume, a lesion's volume, sub-region volumes or
  diameters, its oedema, necrotic, enhancing or core part (the lesion at the place the sentence
  names, when it names one); a number whose clause names nothing is bound to what the previous
  sentence (or the question answered) named, and checked against every measurement only when
  nothing was named at all;
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


def check(text: str, findings: Findings, question: str | None = None) -> GuardResult:
    """Contradictions and omissions of `text` (a narrative, or the answer to `question`) against
    `findings`. A number whose sentence names nothing it could measure ("It measures 5 mm.",
    "43.7 mL") is bound to what the previous sentence is about, or for an answer's first sentence
    to what the question asks about."""
    # what a sentence (or the question) is about, for the next sentence's "It measures ...": the first
    # thing it names ("A lesion ... with an enhancing component": the lesion)
    context = next(iter(_subjects(question, findings)), None) if question else None
    contradictions = []
    for sentence in split_sentences(text):
        subjects = _subjects(sentence, findings)
        contradictions += _sentence_contradictions(sentence, findings, subjects, context)
        context = subjects[0] if subjects else context
    return GuardResult(contradictions, _omissions(text, findings))


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? followed by space (decimal points stay inside numbers)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _sentence_contradictions(
    sentence: str, findings: Findings, subjects: list[_Subject], context: _Subject | None
) -> list[Contradiction]:
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
    found += _quantity_contradictions(sentence, findings, subjects, context)
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


# -- numbers, each bound to what it measures ---------------------------------------------------
# A number is checked against the measured values of the structure or lesion part its clause names,
# never against any measured value: "left grey matter 43.7 mL" contradicts a 43.7 mL lesion.

#: Lesion parts a clause may name, most specific first (a kind may be named by several phrasings).
_LESION_PARTS = (
    ("oedema", r"o?edema(?!-like)\w*|vasogenic\s+change|perilesional\s+(?:signal|hyperintensity)"),
    (
        "necrotic",
        r"necro\w*|cyst\w*|non-enhancing\s+(?:or\s+necrotic\s+)?(?:component|core|tissue|part|portion)",
    ),
    ("enhancing", r"(?<!non-)enhancing\s+(?:component|part|portion|tissue|rim|region|volume)"),
    ("core", r"tumou?r\s+core|solid\s+(?:component|core|part|portion)"),
    (
        "lesion",
        r"lesions?|mass(?:es)?|tumou?rs?|neoplasms?|abnormalit(?:y|ies)|hyperintensit(?:y|ies)|signal\s+change|"
        + "|".join(rf"(?:(?:left|right)\s+)?{re.escape(region)}" for region in REGIONS),
    ),
)
_STRUCTURE_WORDS = {  # other ways of naming a structure of the label sets
    "lateral ventricles": r"(?:lateral\s+)?ventric\w*",
    "cerebrospinal fluid": r"cerebrospinal\s+fluid|csf|sulcal\s+spaces?",
}
_NEGATED = re.compile(r"\b(?:without|no)\s+(?:an?\s+)?(?:[a-z]+\s+)?$", re.I)
#: Text between a number and the subject it qualifies: "41.0 mL of perilesional oedema", "a 43.7 mL lesion".
_BEFORE_SUBJECT = re.compile(
    r"\s+(?:of\s+(?:the\s+)?)?(?:(?!(?:and|or|but|the|with|while|whereas|than|is|are|was|to|in|at)\b)[a-z][\w-]*\s+){0,2}",
    re.I,
)


@dataclasses.dataclass(frozen=True)
class _Subject:
    """Something a clause names that carries measured quantities, and where it is named."""

    kind: str  # a lesion part (_LESION_PARTS), "structure", or "tissue" (grey or white matter without a side)
    name: str  # the structure or tissue; "" for lesion parts
    start: int
    end: int


def _subjects(text: str, findings: Findings) -> list[_Subject]:
    """What `text` names, in order; a name inside a longer one ("grey matter" in "left grey matter",
    or in "deep grey matter and internal capsule") counts as the longer one only."""
    patterns = [(kind, "", pattern) for kind, pattern in _LESION_PARTS]
    for structure in findings.structures:
        words = r"\s+".join(re.escape(w) for w in structure.name.split()).replace("grey", "gr[ae]y")
        patterns.append(("structure", structure.name, _STRUCTURE_WORDS.get(structure.name, words)))
    patterns += [("tissue", "grey matter", r"gr[ae]y\s+matter"), ("tissue", "white matter", r"white\s+matter")]
    found = [
        _Subject(kind, name, m.start(), m.end())
        for kind, name, pattern in patterns
        for m in re.finditer(rf"\b(?:{pattern})\b", text, re.I)
    ]
    # "without a solid core", "no oedema": what a clause denies is not what its numbers measure
    found = [s for s in found if not _NEGATED.search(text[max(0, s.start - 12) : s.start])]
    found.sort(key=lambda s: (s.start, -(s.end - s.start)))
    kept: list[_Subject] = []
    for subject in found:
        if not any(k.start <= subject.start and subject.end <= k.end for k in kept):
            kept.append(subject)
    return kept


def _subject_of(sentence: str, start: int, end: int, subjects: list[_Subject], context: _Subject | None):
    """The subject a number at sentence[start:end] measures: the one it qualifies ("41.0 mL of
    oedema", "a 5 mm lesion"), else the nearest named before it in the sentence, else the nearest
    after it, else `context` (the previous sentence's, or the question's)."""
    after = [s for s in subjects if s.start >= end]
    if after and _BEFORE_SUBJECT.fullmatch(sentence[end : after[0].start]):
        return after[0]
    before = [s for s in subjects if s.end <= start]
    if before:
        return before[-1]
    return after[0] if after else context


def _lesions_at_the_place(sentence: str, lesions: list[LesionFinding]) -> tuple[str, list[LesionFinding]] | None:
    """("side region", the lesions there) when the sentence names exactly one side and region."""
    places = {match.groups() for match in _SIDE_REGION.finditer(sentence.lower())}
    if len(places) != 1:
        return None
    side, region = places.pop()
    return f"{side} {region}", [lesion for lesion in lesions if lesion.region == region and _on_side(lesion, side)]


def _lesions_named(sentence: str, lesions: list[LesionFinding]) -> list[LesionFinding]:
    """The lesions a sentence speaks of: those at the one side and region it names, else all."""
    placed = _lesions_at_the_place(sentence, lesions)
    return placed[1] if placed and placed[1] else lesions


def _measured(subject: _Subject | None, unit: str, sentence: str, findings: Findings) -> tuple[str, list[float]]:
    """(what is measured, its measured values in `unit`) for a number bound to `subject`; with no
    subject, every measured value in that unit (the number is checked, but not bound)."""
    if unit == "%":  # the one percentage measured: the lateral ventricles' share of the intracranial volume
        judged = ventricles(findings)
        return "the lateral ventricles' share of the intracranial volume", [100 * judged[2]] if judged else []
    if subject is None:
        values = [
            v
            for kind in ("structure", *(k for k, _ in _LESION_PARTS))
            for v in _values(kind, "", unit, findings, findings.lesions)
        ]
        return "any measurement", values
    lesions = _lesions_named(sentence, findings.lesions)
    what = subject.name or ("the lesion" if subject.kind == "lesion" else f"the lesion's {subject.kind} part")
    return what, _values(subject.kind, subject.name, unit, findings, lesions)


def _values(kind: str, name: str, unit: str, findings: Findings, lesions: list[LesionFinding]) -> list[float]:
    volumes = {s.name: s.volume_ml for s in findings.structures if s.volume_ml is not None}
    if kind == "structure":
        if name:
            return [volumes[name]] if unit == "mL" and name in volumes else []
        return list(volumes.values()) if unit == "mL" else []
    if kind == "tissue":
        sides = [v for n, v in volumes.items() if n.endswith(name)]
        return ([*sides, sum(sides)] if sides else []) if unit == "mL" else []
    values: list[float] = []
    for lesion in lesions:
        character = lesion_character(lesion)
        if kind == "lesion":
            if unit == "mL":
                values += [lesion.volume_ml, *lesion.subregion_volumes_ml.values()]
            else:
                values += [lesion.longest_diameter_mm, lesion.short_axis_mm]
        elif unit == "mL":
            key = {"oedema": "oedema_ml", "necrotic": "necrotic_ml", "enhancing": "enhancing_ml", "core": "core_ml"}[
                kind
            ]
            values += [character[key]] if character[key] is not None else []
    return values


def _quantity_contradictions(
    sentence: str, findings: Findings, subjects: list[_Subject], context: _Subject | None
) -> list[Contradiction]:
    found = []
    for match in _QUANTITY.finditer(sentence):
        unit = match.group(3)
        unit = "mL" if unit.lower() == "ml" else unit.lower()
        subject = _subject_of(sentence, match.start(), match.end(), subjects, context)
        what, allowed = _measured(subject, unit, sentence, findings)
        for written in filter(None, (match.group(1), match.group(2))):
            value = float(written)
            decimals = len(written.split(".")[1]) if "." in written else 0
            tolerance = 0.5 * 10**-decimals + 1e-9  # the text may round a measurement, not change it
            if not any(abs(value - measured) <= tolerance for measured in allowed):
                measured_text = (
                    f"{what} measured {' or '.join(f'{m:.1f} {unit}' for m in sorted(set(allowed)))}"
                    if allowed
                    else f"nothing in {unit} was measured for {what}"
                )
                found.append(Contradiction(sentence, f"{written} {unit}", measured_text, quantity=True))
    return found


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
    placed = _lesions_at_the_place(sentence, lesions)
    if placed is None or len(placed[1]) != 1:
        return []
    place, there = placed
    actual = lesion_character(there[0])["enhancement"]
    if actual == NOT_ASSESSED:
        return []
    found = []
    for match in _PATTERN.finditer(sentence):
        written = match.group(1).lower()
        if written == "non-enhancing" and _OF_A_PART.match(sentence, match.end()):
            continue  # "a non-enhancing component": a part of the lesion, not its pattern
        if written != actual and not (written == "non-enhancing" and actual == "oedema-like"):
            claim = f"a {written} lesion in the {place}"
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
