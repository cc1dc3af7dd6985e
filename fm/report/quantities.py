"""Every number with a unit in a sentence, bound to what it measures and checked against that
measurement: a structure's volume, a lesion's volume or diameters, or its oedema, necrotic,
enhancing or core part, never any measured value ("left grey matter 43.7 mL" contradicts a 43.7 mL
lesion). Part of the faithfulness guard (fm.report.faithfulness)."""

from __future__ import annotations

import dataclasses
import re

from fm.core.findings import Findings, LesionFinding
from fm.report import places as where
from fm.report.claims import CONTINUES, Contradiction, Sentence, Unchecked, clause_end
from fm.report.template_narrative import lesion_character, ventricles

_UNITS = {  # unit as written -> (unit measured, factor)
    "ml": ("mL", 1.0), "mls": ("mL", 1.0), "cc": ("mL", 1.0), "cm3": ("mL", 1.0), "cm³": ("mL", 1.0),
    "mm3": ("mL", 0.001), "mm³": ("mL", 0.001), "mm": ("mm", 1.0), "cm": ("mm", 10.0), "%": ("%", 1.0),
}  # fmt: skip
_NUM = r"(\d+(?:\.\d+)?)"
QUANTITY = re.compile(
    rf"(?<![\w.]){_NUM}(?:\s*(?:mm|cm))?(?:\s*(?:x|×|by)\s*{_NUM}(?:\s*(?:mm|cm))?)?(?:\s*(?:x|×|by)\s*{_NUM})?"
    r"[\s-]*(ml|mls|cc|cm3|cm³|mm3|mm³|mm|cm|%)(?![\w³])",
    re.I,
)
_HEDGE = re.compile(
    r"(?:approximately|approx|about|around|roughly|nearly|almost|~|up\s+to|circa|some|estimated\s+at|"
    r"just\s+(?:under|over|below|above)|a\s+little\s+(?:under|over)|close\s+to|slightly\s+(?:under|over))\s*$",
    re.I,
)
HEDGE_TOLERANCE = 0.10  # a hedged number may be this far from the measured value, relatively
#: What a question asks for, tried in order, and the units an answer to it may give.
_ASKED_QUANTITIES = (
    ("a volume", re.compile(r"\bvolume|how\s+(?:big|large|much)|\bml\b|\bcc\b", re.I), {"mL", "%"}),
    ("a length", re.compile(r"diameter|how\s+long|extent|dimension|\bmm\b|\bcm\b|\bsize\b", re.I), {"mm"}),
    ("how many", re.compile(r"how\s+many|number\s+of|more\s+than\s+one|\bcount\b", re.I), set()),
    (
        "a side or a place",
        re.compile(r"which\s+(?:side|hemisphere|lobe|region)|left\s+or|where|what\s+part", re.I),
        set(),
    ),
    ("yes or no", re.compile(r"^\s*(?:is|are|does|do|can|could|has|have|was|were|any)\b", re.I), set()),
)

# A number is checked against the measured values of the structure or lesion part its clause names,
# never against any measured value: "left grey matter 43.7 mL" contradicts a 43.7 mL lesion.

#: Lesion parts a clause may name, most specific first (a kind may be named by several phrasings).
_LESION_PARTS = (
    (
        "oedema",
        r"(?:vasogenic\s+)?o?edema(?!-like)\w*|vasogenic\s+change|perilesional\s+(?:signal|hyperintensity)|t2/flair\s+(?:signal|hyperintensity)",
    ),
    (
        "necrotic",
        r"(?:necro\w*|cyst\w*)(?:\s+core)?|non-enhancing\s+(?:or\s+necrotic\s+)?(?:component|core|tissue|part|portion)",
    ),
    ("enhancing", r"(?<!non-)enhancing\s+(?:component|part|portion|tissue|rim|region|volume|tumou?r)"),
    ("core", r"tumou?r\s+core|solid\s+(?:component|core|part|portion)|core"),
    ("lesion", r"whole\s+tumou?r"),
    (
        "lesion",
        r"lesions?|mass(?:es)?(?!\s+effect)|tumou?rs?|neoplasms?|abnormalit(?:y|ies)|hyperintensit(?:y|ies)|signal\s+change|foci|focus",
    ),
)
_STRUCTURE_WORDS = {  # other ways of naming a structure of the label sets
    "lateral ventricles": r"(?:lateral\s+)?ventric\w*|lat\.?\s+vents",
    "cerebrospinal fluid": r"cerebrospinal\s+fluid|csf|sulcal\s+spaces?",
}
_NEGATED = re.compile(r"\b(?:without|no)\s+(?:an?\s+)?(?:[a-z]+\s+)?$", re.I)
_ENHANCES_AFTER = re.compile(
    r"\s+(?:is\s+|are\s+)?enhanc(?:es|ing)\b(?!\s+(?:lesion|mass|tumou?r|component|part|portion|rim))", re.I
)
_PART_AFTER = re.compile(r"\s+(?:is|are)\s+(necrotic|cystic|o?edema\w*|enhancing)\b", re.I)
_PART_WORDS = {"necr": "necrotic", "cyst": "necrotic", "oede": "oedema", "edem": "oedema", "enha": "enhancing"}
_MODIFIER_BEFORE = re.compile(
    r"\b(?:surrounding\s+(?:the|a|an)\s+|(?:around|in|within|of|from|at|near|adjacent\s+to|involving)\s+(?:the\s+|a\s+|an\s+)?|"
    r"(?:including|excluding|plus)\s+(?:[\w-]+\s+)?)$",
    re.I,
)
# "necrotic mass", "cystic lesion": a part's word used of the whole lesion
_LESION_NOUN_AFTER = re.compile(r"[\s-]+(?:lesions?|mass(?:es)?|tumou?rs?|neoplasms?)\b", re.I)
#: Text between a number and the subject it qualifies: "41.0 mL of perilesional oedema", "a 43.7 mL lesion".
_BEFORE_SUBJECT = re.compile(
    r"[\s-]+(?:of\s+(?:the\s+)?)?(?:(?!(?:and|or|but|the|with|while|whereas|than|is|are|was|to|in|at)\b)[a-z][\w-]*\s+){0,2}",
    re.I,
)


_OF_THE_WHOLE = re.compile(r"\bof\s+(?:its|a\s+total(?:\s+of)?|the\s+total)\s+$", re.I)


@dataclasses.dataclass(frozen=True)
class _Subject:
    """Something a clause names that carries measured quantities (or is not measured), and where."""

    kind: (
        str  # a lesion part (_LESION_PARTS), "structure", "tissue" (grey or white matter without a side), "unmeasured"
    )
    name: str  # the structure, tissue or unmeasured topic; "" for lesion parts
    start: int
    end: int


_ABBREVIATIONS = (
    (r"^left", r"(?:left|(?-i:L|Lt))"),
    (r"^right", r"(?:right|(?-i:R|Rt))"),
    (r"gr\[ae\]y\\s\+matter$", r"(?:gr[ae]y\s+matter|(?-i:GM))"),
    (r"white\\s\+matter$", r"(?:white\s+matter|(?-i:WM))"),
)


def _abbreviated(words: str) -> str:
    """A sided tissue's pattern that also takes the abbreviations ("L GM", "Rt WM")."""
    if not re.search(r"matter$", words):
        return words
    for full, either in _ABBREVIATIONS:
        words = re.sub(full, lambda _: either, words)
    return words


def structure_pattern(name: str) -> str:
    """A regular expression for the ways a text names the structure `name` of the label sets."""
    if name in _STRUCTURE_WORDS:
        return _STRUCTURE_WORDS[name]
    words = r"\s+".join(re.escape(w) for w in name.split()).replace("grey", "gr[ae]y")
    words = re.sub(r"^(left|right)\\s\+", r"\1\\s+(?:cerebral\\s+)?", words)  # "left cerebral white matter"
    return _abbreviated(words)  # "L GM", "Rt WM"


def named_subjects(text: str, findings: Findings) -> list[_Subject]:
    """What `text` names, in order; a name inside a longer one ("grey matter" in "left grey matter",
    or in "deep grey matter and internal capsule") counts as the longer one only. Places of
    lesions ("R frontal") name the lesion there."""
    patterns = [(kind, "", pattern) for kind, pattern in _LESION_PARTS]
    patterns += [("structure", structure.name, structure_pattern(structure.name)) for structure in findings.structures]
    patterns += [
        ("tissue", "grey matter", r"gr[ae]y\s+matter|(?-i:GM)"),
        ("tissue", "white matter", r"white\s+matter|(?-i:WM)"),
    ]
    patterns += [("unmeasured", "midline shift or herniation", r"midline\s+shift|shift|herniation|effacement")]
    patterns += [("unmeasured", "a third lesion dimension", r"cranio-?caudal\w*|supero-?inferior\w*")]
    found = [
        _Subject(kind, name, m.start(), m.end())
        for kind, name, pattern in patterns
        for m in re.finditer(rf"\b(?:{pattern})\b", text, re.I)
    ]
    found += [_Subject("lesion", "", p.start, p.end) for p in where.places_in(text) if not p.denied]
    # "without a solid core", "no oedema": what a clause denies is not what its numbers measure
    found = [s for s in found if not _NEGATED.search(text[max(0, s.start - 12) : s.start])]
    found = [
        s
        for s in found
        if s.kind in ("lesion", "structure", "tissue", "unmeasured") or not _LESION_NOUN_AFTER.match(text, s.end)
    ]
    found.sort(key=lambda s: (s.start, -(s.end - s.start)))
    kept: list[_Subject] = []
    for subject in found:
        if any(k.start <= subject.start and subject.end <= k.end for k in kept):
            continue
        last = kept[-1] if kept else None
        gap = text[last.end : subject.start] if last else ""
        if last and last.kind == subject.kind == "lesion" and not gap.strip(" -"):
            kept[-1] = dataclasses.replace(last, end=subject.end)  # "the left frontal" + "lesion": one name
        elif (
            last
            and last.kind in _PART_KINDS
            and subject.kind == "lesion"
            and _PART_NOUN.fullmatch(gap + text[subject.start : subject.end])
        ):
            kept[-1] = dataclasses.replace(last, end=subject.end)  # "necrotic focus": the part, not the lesion
        else:
            kept.append(subject)
    return kept


def _subject_of(text: str, start: int, end: int, subjects: list[_Subject], context: _Subject | None):
    """The subject a number at text[start:end] measures: the one it qualifies ("41.0 mL of
    oedema", "a 5 mm lesion"), else the nearest named before it in the sentence, else the nearest
    after it, else `context` (the previous sentence's, or the question's)."""
    after = [s for s in subjects if s.start >= end]
    parts_before = [s for s in subjects if s.end <= start and s.kind in _PART_KINDS]
    if parts_before and _OF_THE_WHOLE.search(text[:start]):
        return _Subject("lesion", "", start, start)  # "oedema making up 33 of its 45 mL": 45 is the whole's
    if after and _BEFORE_SUBJECT.fullmatch(text[end : after[0].start]):
        if after[0].kind == "lesion" and parts_before and re.match(r"\s+of\s+(?:the|its|this)\b", text[end:], re.I):
            return parts_before[-1]  # "oedema accounts for 26 mL of the abnormality": the part's share
        return after[0]
    if _ENHANCES_AFTER.match(text, end):  # "of which 5 mL enhances"
        return _Subject("enhancing", "", end, end)
    if part := _PART_AFTER.match(text, end):  # "of which 1.0 mL is necrotic"
        return _Subject(_PART_WORDS[part.group(1).lower()[:4]], "", end, end)
    before = [s for s in subjects if s.end <= start]
    if before:
        # "Oedema around the left frontal lesion measures 3.2 mL": what a preposition brings in
        # qualifies the subject before it, so the number measures the oedema
        heads = [s for s in before if not _MODIFIER_BEFORE.search(text[: s.start])]
        return (heads or before)[-1]
    if context is not None and CONTINUES.match(text):
        return context  # "Its volume is 30 mL, with 25 mL of oedema": 30 mL is the lesion's
    # the nearest named after it, unless another number stands between ("32 mL, of which 26 mL is oedema")
    if after and not QUANTITY.search(text, end, after[0].start):
        return after[0]
    return context


def _measured(subject: _Subject | None, unit: str, read: Sentence, findings: Findings) -> tuple[str, list[float]]:
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
    kind = subject.kind
    if unit == "mm" and kind in _PART_KINDS:
        kind = "lesion"  # a part has a volume, not diameters: "Longest dimension 7.1 cm" after "... necrosis."
    what = subject.name or ("the lesion" if kind == "lesion" else f"the lesion's {kind} part")
    return what, _values(kind, subject.name, unit, findings, read.lesions)


_LONGEST = re.compile(r"\b(?:max(?:imum|imal)?|longest|greatest|largest|maximal|long\s+axis|widest)\b", re.I)
_SHORT_AXIS = re.compile(
    r"\b(?:short(?:est)?[\s-]+axis|short\s+dimension|width|wide|minimum|transverse|perpendicular)\b", re.I
)
_PART_KINDS = ("oedema", "necrotic", "enhancing", "core")
_PART_MENTIONS = tuple(
    (kind, re.compile(rf"\b(?:{pattern})\b", re.I)) for kind, pattern in _LESION_PARTS if kind in _PART_KINDS
)


def lesion_parts_named(text: str) -> list[tuple[int, str]]:
    """(where, which) for each lesion part `text` names ("oedema", "necrotic", "enhancing", "core"),
    in the guard's words for them, in order."""
    return sorted((match.start(), kind) for kind, pattern in _PART_MENTIONS for match in pattern.finditer(text))


_LENGTH_KINDS = ("lesion", *_PART_KINDS)  # a part's length is the lesion's
_PART_NOUN = re.compile(r"\s+(?:foci|focus)", re.I)


def _values(kind: str, name: str, unit: str, findings: Findings, lesions: list[LesionFinding]) -> list[float]:
    """The measured values of `kind` in `unit`; lengths come as each lesion's (longest, short axis)
    in turn, which _one_lesions_diameters relies on."""
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
                values.append(lesion.volume_ml)
            else:
                values += [lesion.longest_diameter_mm, lesion.short_axis_mm]
        elif unit == "mL":
            key = {"oedema": "oedema_ml", "necrotic": "necrotic_ml", "enhancing": "enhancing_ml", "core": "core_ml"}[
                kind
            ]
            values += [character[key]] if character[key] is not None else []
    return values


def _quantities(read: Sentence, findings: Findings, previous: Sentence | None):
    """(match, unit, factor, subject, what, allowed values, written numbers) for each number with a unit."""
    # what the sentence before was about; a number is never bound to an unmeasured topic across sentences
    context = next((s for s in previous.subjects if s.kind != "unmeasured"), None) if previous else None
    previous_end = 0
    matches = list(QUANTITY.finditer(read.text))
    for match in matches:
        start_of_words, previous_end = previous_end, match.end()
        unit, factor = _UNITS[match.group(4).lower()]
        subject = _subject_of(read.text, match.start(), match.end(), read.subjects, context)
        if subject is not None and subject.kind == "unmeasured":
            continue  # "a midline shift of 4 mm": unchecked, not contradicted
        subject = _sided(subject, read.text, match, findings)
        subject, indexed = _indexed(subject, read, match, findings)
        written = [w for w in match.group(1, 2, 3) if w]
        if subject is not None and subject.kind == "tissue" and len(matches) == 1 and _EACH_SIDE.search(read.text):
            for side in ("left", "right"):  # "548 mL bilaterally": each side's
                sided = dataclasses.replace(subject, kind="structure", name=f"{side} {subject.name}")
                yield match, unit, factor, *_measured(sided, unit, indexed, findings), written
            continue
        what, allowed = _measured(subject, unit, indexed, findings)
        if unit == "mm" and len(written) == 1 and allowed and (subject is None or subject.kind in _LENGTH_KINDS):
            role = _diameter_of_role(read.text, start_of_words, match, read.lesions)
            if not role and previous is not None and previous.asked:  # "What is the longest diameter?" "22.2 mm"
                role = _diameter_named(previous.text, read.lesions)
            allowed = role or allowed
        yield match, unit, factor, what, allowed, written


_SIDE_BEFORE = re.compile(r"\b(?:the\s+)?(left|right|(?-i:L|R|Lt|Rt))\s*:?\s*$", re.I)
_SIDE_AFTER = re.compile(r"\s*(?:on\s+the\s+|in\s+the\s+)?(left|right)\b", re.I)
_EACH_SIDE = re.compile(r"\bbilaterally\b|\beach\s+side\b|\bon\s+both\s+sides\b", re.I)
LESION_INDEX = re.compile(r"\blesion\s+(\d+)\b", re.I)


def _sided(subject: _Subject | None, text: str, match: re.Match, findings: Findings) -> _Subject | None:
    """Grey or white matter given a side beside its number: "GM R 568.5 mL, L 548.1 mL", "318.6 mL
    on the left", "the left white matter measures 321 mL and the right 319 mL"."""
    if subject is None or subject.kind not in ("tissue", "structure") or not subject.name.endswith("matter"):
        return subject
    side = _SIDE_BEFORE.search(text[: match.start()]) or _SIDE_AFTER.match(text, match.end())
    if not side:
        return subject
    tissue = subject.name.removeprefix("left ").removeprefix("right ")
    name = f"{'left' if side.group(1).lower().startswith('l') else 'right'} {tissue}"
    measured = any(structure.name == name for structure in findings.structures)
    return dataclasses.replace(subject, kind="structure", name=name) if measured else subject


def _indexed(subject: _Subject | None, read: Sentence, match: re.Match, findings: Findings):
    """(subject, sentence) for a number in a list by lesion number ("Oedema: lesion 1, 6.2 mL;
    lesion 2, 2.1 mL"): the part the list is of, of that lesion alone; in clauses that each name a
    place ("the temporal one is 3 cm; the cerebellar one 2 cm"), of the lesion at its clause's place."""
    named = [p for p in read.places if not p.denied]
    start = read.text.rfind(";", 0, match.start()) + 1
    end = read.text.find(";", match.end())
    end = len(read.text) if end < 0 else end
    own = [p for p in named if start <= p.start < end]
    if len(own) == 1 and len(named) > 1 and (there := where.lesions_at(own[0], findings.lesions)):
        read = dataclasses.replace(read, lesions=there)
    indices = list(LESION_INDEX.finditer(read.text[start : match.start()]))
    index = indices[-1] if indices else None
    lesions = [lesion for lesion in findings.lesions if index and lesion.lesion_id == int(index.group(1))]
    if not lesions:
        return subject, read
    parts = [s for s in read.subjects if s.kind in _PART_KINDS and s.end <= match.start()]
    if subject is not None and subject.kind == "lesion" and parts:
        subject = parts[-1]
    return subject, dataclasses.replace(read, lesions=lesions)


def _diameter_named(words: str, lesions: list[LesionFinding]) -> list[float]:
    """The diameter `words` (a question) ask for: the short axis, the longest, or [] for either."""
    if _SHORT_AXIS.search(words):
        return [lesion.short_axis_mm for lesion in lesions]
    if _LONGEST.search(words):
        return [lesion.longest_diameter_mm for lesion in lesions]
    return []


def _diameter_of_role(text: str, previous_end: int, match: re.Match, lesions: list[LesionFinding]) -> list[float]:
    """The one diameter a single number names: "maximum diameter 58.7 mm", "45.4 mm across",
    "short axis of 4.5 cm"; [] when it names neither."""
    after = re.split(r"\d|\band\b", text[match.end() : clause_end(text, match.end())])[0]
    before = text[previous_end : match.start()]
    short, longest = [lesion.short_axis_mm for lesion in lesions], [lesion.longest_diameter_mm for lesion in lesions]
    if _SHORT_AXIS.search(after):  # what follows the number names it first
        return short
    if _LONGEST.search(after):
        return longest
    own_longest = previous_end == 0 and _LONGEST.search(before)  # "At its widest it is 6 cm across"
    if re.search(r"\bacross\b", after, re.I) and not own_longest:
        # "58.7 mm in longest diameter and 45.4 mm across": the short axis; "3 cm across" alone: a size
        return short if _LONGEST.search(text) else []
    if _SHORT_AXIS.search(before):
        return short
    if _LONGEST.search(before):
        return longest
    return []


def _matches(written: str, factor: float, measured: float, hedged: bool) -> bool:
    decimals = len(written.split(".")[1]) if "." in written else 0
    tolerance = 0.5 * 10**-decimals * factor + 1e-9  # the text may round a measurement, not change it
    if hedged:
        tolerance = max(tolerance, HEDGE_TOLERANCE * measured)
    return abs(float(written) * factor - measured) <= tolerance


_RESPECTIVELY = re.compile(r"\brespectively\b", re.I)
_SIDED_TISSUES = re.compile(r"\b(left|right)\s+and\s+(left|right)\s+(?:cerebral\s+)?(gr[ae]y|white)\s+matter", re.I)
_BARE_NUMBER = re.compile(rf"(?<![\w.]){_NUM}(?![\w.]*\d)")


def _respective_contradictions(read: Sentence, findings: Findings, previous: Sentence | None):
    """Numbers given "respectively" to a series, each checked against its own member: "left and
    right white matter volumes are 321.2 and 318.6 mL respectively", or the lesions at the places
    the sentence (or the one before) names, in order ("They measure 4.2 mL and 31.7 mL
    respectively"). None when the sentence gives no such series."""
    quantities = list(QUANTITY.finditer(read.text))
    if not _RESPECTIVELY.search(read.text) or not quantities:
        return None
    unit, factor = _UNITS[quantities[-1].group(4).lower()]
    tissues = _SIDED_TISSUES.search(read.text)
    if tissues:
        volumes = {s.name: s.volume_ml for s in findings.structures}
        tissue = "grey matter" if tissues.group(3).lower().startswith("gr") else "white matter"
        series = [
            (name, [volumes[name]] if name in volumes else [])
            for name in (f"{side.lower()} {tissue}" for side in tissues.group(1, 2))
        ]
    else:
        places = [p for p in read.places if not p.denied] or [
            p for p in (previous.places if previous else []) if not p.denied
        ]
        kind = "lesion" if unit != "mL" else next((s.kind for s in read.subjects if s.kind in _PART_KINDS), "lesion")
        series = [
            (f"the {place} lesion", _values(kind, "", unit, findings, where.lesions_at(place, findings.lesions)))
            for place in places
        ]
    numbers = _BARE_NUMBER.findall(read.text[: quantities[-1].end()])
    if unit == "%" or len(series) < 2 or len(numbers) != len(series):
        return None
    return [
        Contradiction(
            read.text,
            f"{number} {quantities[-1].group(4)} for {what}",
            f"{what} measured {' or '.join(f'{m:.1f} {unit}' for m in values) or 'nothing'}",
            quantity=True,
        )
        for number, (what, values) in zip(numbers, series)
        if not any(_matches(number, factor, value, False) for value in values)
    ]


def quantity_contradictions(read: Sentence, findings: Findings, previous: Sentence | None) -> list[Contradiction]:
    respective = _respective_contradictions(read, findings, previous)
    if respective is not None:
        return respective
    found = []
    for match, unit, factor, what, allowed, written in _quantities(read, findings, previous):
        hedged = bool(_HEDGE.search(read.text[: match.start()]))
        if len(written) == 3 and unit == "mm":  # "a x b x c cm": the third dimension is not measured
            written = sorted(written, key=float, reverse=True)
            distinct = sorted(set(allowed))
            short = distinct[-2] if len(distinct) > 1 else max(distinct, default=0.0)
            extra = [w for w in written[1:] if not any(_matches(w, factor, m, hedged) for m in allowed)]
            if len(extra) < 2 and all(float(w) * factor <= short + 1e-9 for w in extra):
                written = [w for w in written if w not in extra or w == written[0]]
        before = len(found)
        for number in written:
            if not any(_matches(number, factor, measured, hedged) for measured in allowed):
                measured_text = (
                    f"{what} measured {' or '.join(f'{m:.1f} {unit}' for m in sorted(set(allowed)))}"
                    if allowed
                    else f"nothing in {unit} was measured for {what}"
                )
                found.append(Contradiction(read.text, f"{number} {match.group(4)}", measured_text, quantity=True))
        if (
            len(found) == before
            and len(written) == 2
            and unit == "mm"
            and not _one_lesions_diameters(written, factor, allowed, hedged)
        ):
            pairs = " or ".join(f"{allowed[i]:.1f} x {allowed[i + 1]:.1f} mm" for i in range(0, len(allowed) - 1, 2))
            claim = f"{written[0]} x {written[1]} {match.group(4)}"
            found.append(Contradiction(read.text, claim, f"{what} measured {pairs}", quantity=True))
    return found


def _one_lesions_diameters(written: list[str], factor: float, allowed: list[float], hedged: bool) -> bool:
    """Are the two numbers of "A x B mm" one lesion's two diameters, in either order, and not one
    diameter twice ("82.6 x 82.6 mm" for a 96.9 x 82.6 mm lesion)? `allowed`: lengths as _values
    lists them, each lesion's (longest, short axis) in turn."""
    pairs = [(allowed[i], allowed[i + 1]) for i in range(0, len(allowed) - 1, 2)]
    first, second = written
    return any(
        (_matches(first, factor, a, hedged) and _matches(second, factor, b, hedged))
        or (_matches(first, factor, b, hedged) and _matches(second, factor, a, hedged))
        for a, b in pairs
    )


def third_dimensions(read: Sentence, findings: Findings, previous: Sentence | None) -> list[Unchecked]:
    return [
        Unchecked(read.text, "a third lesion dimension")
        for match, unit, _, _, _, written in _quantities(read, findings, previous)
        if len(written) == 3 and unit == "mm"
    ]


def answers_about_another_subject(asked: Sentence, answer: list[tuple[Sentence, Sentence | None]], findings: Findings):
    """What is wrong when an answer's numbers all measure something other than the one structure or
    lesion part its question names ("What is the volume of the surrounding oedema?" answered with
    the ventricles' volume): each number may be true, but none answers. `answer`: each sentence read
    with the one before it (the question, for the first)."""
    named = [s for s in asked.subjects if s.kind != "unmeasured"]
    if len(named) != 1:
        return None
    wanted = _measured(named[0], "mL", asked, findings)[0]
    given = {what for read, previous in answer for _, _, _, what, _, _ in _quantities(read, findings, previous)}
    if not given or wanted in given:
        return None
    return f"an answer about {', '.join(sorted(given))} to a question about {wanted}"


def asked_quantity(question: str) -> str | None:
    """What a question asks for: "a volume", "a length", "how many", "a side or a place", "yes or
    no", or None when none of these."""
    return next((kind for kind, pattern, _ in _ASKED_QUANTITIES if pattern.search(question)), None)


_YES_NO_QUESTION = re.compile(r"^\s*(?:is|are|does|do|can|could|has|have|was|were|any)\b", re.I)


def is_yes_no_question(question: str) -> bool:
    """Is `question` answered yes or no ("Is there more than one lesion?", "Are the ventricles of
    normal size?"), not a choice ("Is it on the left or the right?")?"""
    return bool(_YES_NO_QUESTION.match(question)) and asked_quantity(question) != "a side or a place"


def answers_another_quantity(question: str, answer: str) -> str | None:
    """What is wrong when an answer gives a quantity the question does not ask for ("4.3 mL" to
    "How many lesions?", "37.5 mm" to "Is there a lesion in the right parietal lobe?"): that
    number may be a true measurement of something, but it is no answer, and cannot pass as one."""
    units = {_UNITS[m.group(4).lower()][0] for m in QUANTITY.finditer(answer)}
    if not units:
        return None
    for kind, pattern, allowed in _ASKED_QUANTITIES:
        if pattern.search(question):
            return (
                None if units <= allowed else f"an answer in {' and '.join(sorted(units))} to a question about {kind}"
            )
    return None
