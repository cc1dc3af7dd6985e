"""The faithfulness guard: what a narrative or an answer claims, checked against the Findings it
was written from. A language model's text is kept only when none of its checkable claims
contradicts a measurement; a claim about something the program does not measure is reported as
unchecked, never as checked.

Checked, sentence by sentence, in the phrasing of real reports as well as the template's:
- lesion count ("no focal lesion", "solitary", "three lesions", "multiple", "multifocal"; "two
  enhancing lesions" counts the enhancing ones; "no other lesion" claims nothing);
- places of lesions (fm.report.places: "R frontal", "left thalamus", "frontoparietal"; a place
  the sentence denies must hold no lesion), and crossing the midline, claimed or denied;
- every number with a unit (mL, cc, mm, cm, % of intracranial volume; "a x b x c cm") must be a
  rounding of a measured value of what its clause names: a structure's volume, a lesion's volume,
  diameters, or its oedema, necrotic, enhancing or core part (the lesion at the place the sentence
  names, when it names one). A hedged number ("approximately", "about", "up to") may be 10 % off.
  A number whose clause names nothing is bound to what the previous sentence (or the question
  answered) named; one bound to something unmeasured ("midline shift of 4 mm") is unchecked;
- enhancement claimed or denied for the lesions the sentence speaks of (and the pattern, non-,
  rim- or solidly enhancing, given to the one lesion a sentence places); any enhancement claim
  when it was not assessed;
- oedema and necrosis claimed or denied;
- ventricles called enlarged ("prominent", "hydrocephalus") or normal ("no hydrocephalus").
Unchecked: claims on the topics of fm.report.unmeasured (midline shift, diagnosis, haemorrhage,
change since a prior scan, ...) and a third lesion dimension. An answer to a question about such a
topic must say it is not measured.
Omissions: an abnormal finding (a lesion, enlarged ventricles) that the text never mentions.
"""

from __future__ import annotations

import dataclasses
import re

from fm.core.findings import Findings, LesionFinding
from fm.report import places as where
from fm.report.places import REGIONS
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, ventricles
from fm.report.unmeasured import declines, is_decline, topics_in, unmeasured_topic

__all__ = ["REGIONS", "Contradiction", "GuardResult", "Unchecked", "check", "split_sentences"]

_NUMBER_WORDS = {
    "no": 0, "one": 1, "single": 1, "a single": 1, "solitary": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_SEVERAL = ("multiple", "several", "numerous", "a few")
_COUNT = re.compile(
    r"\b(no|one|a\s+single|single|solitary|two|three|four|five|six|seven|eight|nine|ten|\d+|multiple|several|numerous|a\s+few)"
    r"\s+((?:[\w-]+\s+){0,3}?)(lesions?|mass(?:es)?(?!\s+effect)|foci|focus|nodules?|metastases|tumou?rs?)\b",
    re.I,
)
# "the larger of the two lesions is ...", "... is the dominant lesion", "the cerebellar lesion is the larger"
_LARGEST = re.compile(
    r"\b(?:larg(?:er|est)|dominant|biggest|main|index)(?:\s+of\s+the\s+\w+)?\s+(?:\w+\s+)?(?:lesions?|mass|tumou?r|one)|"
    r"\b(?:is|being)\s+the\s+(?:larg(?:er|est)|dominant|biggest)\b",
    re.I,
)
_SMALLER = re.compile(
    r"\b(?:small(?:er|est)|second|minor)(?:\s+of\s+the\s+\w+)?\s+(?:\w+\s+)?(?:lesions?|mass|tumou?r|one)|"
    r"\b(?:is|being)\s+the\s+small(?:er|est)\b",
    re.I,
)
# "Enhancing lesions: 2." read as "2 enhancing lesions"
_COUNT_HEADING = re.compile(
    r"\A\W*((?:non-?)?enhancing\s+)?(?:lesions?|masses|foci|lesion\s+count|number\s+of\s+lesions)\s*:\s*"
    r"(\d+|none|nil|one|two|three|four|five)\b(?!\s*(?:\)|x\b|×|\.\d|mm|cm|ml|cc|%))",
    re.I,
)
_HEADING_COUNTS = {"none": "no", "nil": "no"}
_COUNT_ENHANCES = re.compile(r"\s+(?:\w+\s+)?(?:enhances?|shows?\s+(?:\w+\s+)?enhancement)\b", re.I)
_MORE_THAN = re.compile(r"\b(?:more\s+than|over|in\s+excess\s+of)\s+$", re.I)
_NOT_A_TOTAL = re.compile(r"\b(?:other|additional|further|new|more|second|third|evidence)\b", re.I)
_UNITS = {  # unit as written -> (unit measured, factor)
    "ml": ("mL", 1.0), "mls": ("mL", 1.0), "cc": ("mL", 1.0), "cm3": ("mL", 1.0), "cm³": ("mL", 1.0),
    "mm3": ("mL", 0.001), "mm³": ("mL", 0.001), "mm": ("mm", 1.0), "cm": ("mm", 10.0), "%": ("%", 1.0),
}  # fmt: skip
_NUM = r"(\d+(?:\.\d+)?)"
_QUANTITY = re.compile(
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

_ENHANCES = re.compile(
    r"(?<!non-)(?<!non)(?<!\w)(?:(?:ring|rim|peripheral(?:ly)?|avid(?:ly)?|solid(?:ly)?|homogeneous(?:ly)?|"
    r"heterogeneous(?:ly)?|nodular|intense(?:ly)?|marked(?:ly)?)[\s-]*)?(?:enhanc(?:ing|es|ement|e)|enh)\b|"
    r"\blights?\s+up\s+(?:with|after|on)\b|\btakes?\s+up\s+(?:the\s+)?(?:contrast|gadolinium)",
    re.I,
)
# "non-enhancing" of a part ("a necrotic or non-enhancing component") says nothing of the lesion's enhancement
_OF_A_PART = r"(?!\s+(?:(?:or\s+)?necrotic\s+)?(?:component|core|tissue|part|portion|cent(?:re|er)))"
_DOES_NOT_ENHANCE = re.compile(
    rf"\bnon-?enhancing\b{_OF_A_PART}|\bnon-?enh\b|\bunenhancing\b|"
    r"\b(?:no|without|lacks?|lack\s+of|absence\s+of|absent)\s+(?:[\w-]+\s+){0,2}?(?:enhancement|enh)\b|"
    r"\b(?:does|do)\s+not\s+(?:\w+\s+)?enhance\b|\bnot\s+enhancing\b|"
    r"\b(?:no|without)\s+(?:an?\s+)?enhancing\s+(?:component|part|portion|tissue|rim)",
    re.I,
)
# a statement of technique, not of the lesion: "post-contrast imaging was not performed"
_NO_CONTRAST_GIVEN = re.compile(
    r"not\s+assessed|not\s+(?:performed|given|administered|available|acquired)|non-contrast|unenhanced\s+(?:scan|study|images?)|"
    r"\b(?:no|without)\s+(?:iv\s+|intravenous\s+)?(?:contrast|gadolinium)(?!\s+enhancement)|"
    r"(?:cannot|could\s+not)\s+be\s+(?:assessed|evaluated|determined)|not\s+assessable|pre-?contrast\s+(?:study|scan|only)|"
    r"\bno\s+post-?(?:contrast|gad\w*)",
    re.I,
)
_PATTERNS = (
    (
        "rim-enhancing",
        re.compile(
            r"\b(?:rim|ring|peripheral(?:ly)?)[\s-]*enh|\benhanc\w*\s+(?:peripherally|in\s+an?\s+(?:rim|ring))", re.I
        ),
    ),
    (
        "solidly enhancing",
        re.compile(
            r"\b(?:solid(?:ly)?|homogeneous(?:ly)?)[\s-]*enh|\benhanc\w*\s+(?:solidly|homogeneously|uniformly)", re.I
        ),
    ),
    ("non-enhancing", re.compile(rf"\bnon-?enhancing\b{_OF_A_PART}", re.I)),
    ("oedema-like", re.compile(r"\boedema-like\b|\bedema-like\b", re.I)),
)
_EVERY = re.compile(
    r"\b(?:both|all|each|every|neither|none)\s+(?:of\s+the\s+)?(?:\w+\s+)?(?:lesions?|masses|mass|tumou?rs?|spots?)\b|"
    r"^\W*(?:both|all)\b(?!\s+(?:hemispheres|sides))",
    re.I,
)
_OEDEMA = re.compile(r"(?<!transependymal\s)\b(?:vasogenic\s+)?o?edema(?!-like)\w*|\bvasogenic\b", re.I)
_NECROSIS = re.compile(r"\bnecro\w*|\bcystic\b", re.I)
_DENIED_PART = re.compile(
    r"\b(?:no|without|absent|nor|neither|lacks?|lack\s+of|absence\s+of|free\s+of)\s+(?!(?:in|within|at|from)\b)(?:[\w-]+\s+){0,3}?$",
    re.I,
)
# "OEDEMA: none.", "Oedema is absent."
_DENIED_PART_AFTER = re.compile(
    r"^\w*\s*(?::\s*(?:none|nil|no\b|absent)|\s+(?:is|are)\s+(?:absent|not\s+(?:seen|present|identified))|"
    r"\s*:?\s*0(?:\.0+)?\s*(?:ml|mls|cc)\b)",
    re.I,
)
_VENTRICLES = re.compile(
    r"(?<!peri)(?<!third\s)(?<!fourth\s)ventric|hydrocephal|\blat\.?\s+vents\b", re.I
)  # the lateral ones
_ENLARGED = re.compile(r"enlarge|dilat|hydrocephal|ventriculomegaly|prominen", re.I)
_NORMAL = re.compile(
    r"normal\s+in\s+size|within\s+normal\s+limits|not\s+enlarged|normal-sized|normal\s+size|"
    r"\b(?:no|not|without)\b(?:\s+[\w-]+){0,3}?\s+(?:enlarge\w*|dilat\w*|hydrocephal\w*|ventriculomegaly|prominen\w*)|"
    r"(?:ventric\w*|vents)\s+(?:(?:are|is|appear)\s+)?(?:unremarkable|normal)|unremarkable\s+ventric",
    re.I,
)
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
_THERE_QUESTION = re.compile(r"^\s*(is|are)\s+there\s+(.+?)\s*\?*\s*$", re.I)
_PRONOUN = re.compile(r"\b(?:it|its)\b", re.I)
# a sentence that starts on what the one before was about ("It measures ...", "The lesion enhances")
_CONTINUES = re.compile(
    r"^\s*(?:it|its|this|the\s+(?:lesion|mass|tumou?r|abnormality)|there\s+is\s+(?:surrounding|associated))\b", re.I
)


_THE_ENHANCING = re.compile(r"\bthe\s+(non-?)?enhancing\s+(?:lesion|mass|one|tumou?r)\b", re.I)


@dataclasses.dataclass(frozen=True)
class Contradiction:
    sentence: str
    claim: str  # what the sentence says
    finding: str  # what was measured
    quantity: bool = False  # a number that differs from the measured ones (not a side, count, region, ...)

    def __str__(self) -> str:
        return f'"{self.sentence}": {self.claim}, but {self.finding}'


@dataclasses.dataclass(frozen=True)
class Unchecked:
    """A claim the findings can neither confirm nor contradict."""

    sentence: str
    topic: str  # what it is about: a topic of fm.report.unmeasured, or "a third lesion dimension"

    def __str__(self) -> str:
        return f'"{self.sentence}": {self.topic} is not measured, so this is unchecked'


@dataclasses.dataclass(frozen=True)
class GuardResult:
    contradictions: list[Contradiction]
    omissions: list[str]  # abnormal findings the text does not mention
    unchecked: list[Unchecked] = dataclasses.field(default_factory=list)

    @property
    def faithful(self) -> bool:
        return not self.contradictions


@dataclasses.dataclass
class _Sentence:
    """One sentence being read, with what it names."""

    text: str
    subjects: list
    places: list[where.Place]
    crossing: bool | None
    lesions: list[LesionFinding]  # the lesions it speaks of


def check(text: str, findings: Findings, question: str | None = None) -> GuardResult:
    """Contradictions, omissions and unchecked claims of `text` (a narrative, or the answer to
    `question`) against `findings`. A number whose sentence names nothing it could measure ("It
    measures 5 mm.", "43.7 mL") is bound to what the previous sentence is about, or for an answer's
    first sentence to what the question asks about. An answer to a question about something not
    measured (fm.report.unmeasured) contradicts the findings unless it says so."""
    sentences = split_sentences(text)
    contradictions: list[Contradiction] = []
    unchecked: list[Unchecked] = []
    topic = unmeasured_topic(question) if question else None
    if topic is not None and not declines(text):
        first = sentences[0] if sentences else text
        contradictions.append(Contradiction(first, f"an answer about {topic}", f"{topic} is not measured"))
    previous = _read(question, findings, None, asked=True) if question else None
    if question and sentences and (claim := _yes_no_claim(question, sentences[0])):
        contradictions += [
            dataclasses.replace(c, sentence=sentences[0], claim=f"{c.claim} (answering: {question})")
            for c in _sentence_contradictions(_read(claim, findings, None), findings, None)
        ]
    for sentence in sentences:
        if declines(sentence):  # "Midline shift cannot be assessed.": claims nothing to contradict
            if not is_decline(sentence):  # the program's own answer names what it does not measure
                unchecked += [Unchecked(sentence, t) for t in topics_in(sentence)]
            continue
        read = _read(sentence, findings, previous)
        contradictions += _sentence_contradictions(read, findings, previous)
        unchecked += [Unchecked(sentence, t) for t in topics_in(sentence)]
        unchecked += _third_dimensions(read, findings, previous)
        previous = read
    if question and sentences and topic is None and (asked := _answers_another_quantity(question, text)):
        unchecked.append(Unchecked(sentences[0], asked))
    return GuardResult(contradictions, _omissions(text, findings), _unique(unchecked))


def _answers_another_quantity(question: str, answer: str) -> str | None:
    """What is wrong when an answer gives a quantity the question does not ask for ("4.3 mL" to
    "How many lesions?", "37.5 mm" to "Is there a lesion in the right parietal lobe?"): that
    number may be a true measurement of something, but it is no answer, and cannot pass as one."""
    units = {_UNITS[m.group(4).lower()][0] for m in _QUANTITY.finditer(answer)}
    if not units:
        return None
    for kind, pattern, allowed in _ASKED_QUANTITIES:
        if pattern.search(question):
            return (
                None if units <= allowed else f"an answer in {' and '.join(sorted(units))} to a question about {kind}"
            )
    return None


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? followed by space (decimal points stay inside numbers, and so
    do the full stops of common abbreviations)."""
    text = re.sub(r"\b(approx|e\.g|i\.e|cf|vs|Dr|Fig|no)\.(?=\s)", lambda m: m.group(0)[:-1] + "\0", text)
    return [s.strip().replace("\0", ".") for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _yes_no_claim(question: str, answer: str) -> str | None:
    """ "Is there a lesion in the left frontal lobe?" answered "Yes" or "No" as the statement it makes."""
    asked = _THERE_QUESTION.match(question)
    said = re.match(r"\s*(yes|no)\b", answer, re.I)
    if not (asked and said):
        return None
    verb, what = asked.group(1).lower(), re.sub(r"^(?:an?|any)\s+", "", asked.group(2))
    return f"There {verb} {what}." if said.group(1).lower() == "yes" else f"There {verb} no {what}."


def _read(sentence: str, findings: Findings, previous: _Sentence | None, asked: bool = False) -> _Sentence:
    """A sentence with what it names. asked: a question, whose place holds exactly the lesions it
    asks about (none, when none is there: "Is there a lesion in the left frontal lobe?" "58.7 mm")."""
    places = where.places_in(sentence)
    crossing = where.crossing_claim(sentence)
    named = [p for p in places if not p.denied]
    lesions = findings.lesions
    if len(named) == 1:  # one place: the sentence speaks of the lesions there
        there = where.lesions_at(named[0], findings.lesions, crossing is True)
        lesions = there if there or asked else findings.lesions
    subjects = _subjects(sentence, findings)
    # "It enhances.", "58.7 mm.": of what the sentence before spoke; "No necrosis." alone: of every lesion
    continues = _CONTINUES.match(sentence) or _PRONOUN.search(sentence) or (not subjects and _QUANTITY.search(sentence))
    if not named and previous is not None and continues:
        lesions = previous.lesions
    if not named and (definite := _THE_ENHANCING.search(sentence)):  # "The enhancing lesion has ..."
        enhancing = not definite.group(1)
        lesions = [lesion for lesion in findings.lesions if _enhances(lesion) is enhancing] or lesions
    return _Sentence(sentence, subjects, places, crossing, lesions)


def _sentence_contradictions(read: _Sentence, findings: Findings, previous: _Sentence | None) -> list[Contradiction]:
    found = _count_contradictions(read, findings)
    found += _place_contradictions(read, findings.lesions)
    found += _quantity_contradictions(read, findings, previous)
    found += _enhancement_contradictions(read)
    found += _placed_pattern_contradictions(read)
    found += _part_contradictions(read)
    found += _ventricle_contradictions(read, findings)
    return found


# -- counts and places -------------------------------------------------------------------------


def _count_contradictions(read: _Sentence, findings: Findings) -> list[Contradiction]:
    found = []
    lesions = findings.lesions
    text = _COUNT_HEADING.sub(
        lambda m: f"{_HEADING_COUNTS.get(m.group(2).lower(), m.group(2))} {m.group(1) or ''}lesions", read.text
    )
    for match in _COUNT.finditer(text):
        word, qualifiers = re.sub(r"\s+", " ", match.group(1).lower()), match.group(2)
        if _NOT_A_TOTAL.search(qualifiers) or re.search(r"\d|\b(?:mm|cm|ml|cc)\b", qualifiers, re.I):
            continue  # "no other lesion", "3 mm lesion": not a count of all lesions
        verb_enhances = _COUNT_ENHANCES.match(text, match.end())  # "One lesion enhances"
        if re.match(r"of\s+(?:the|its|these)\b", qualifiers, re.I) and not verb_enhances:
            continue  # "one of the two lesions": part of the count, not the count
        counted = lesions
        enhancing = where_enhancing = None
        places = [p for p in read.places if p.start >= match.start() and p.start < _clause_end(read.text, match.end())]
        places = places or [p for p in read.places if p.denied]  # "Brainstem and cerebellum: no lesion."
        if places and word == "no":  # "no lesion in the left hemisphere": none there
            counted = [lesion for p in places for lesion in where.lesions_at(p, lesions)]
        # "two enhancing lesions": the enhancing ones; "solitary": the only lesion of all
        if (re.search(r"enhanc", qualifiers, re.I) or verb_enhances) and word != "solitary":
            enhancing = not re.search(r"non-?enhanc", qualifiers, re.I)
            where_enhancing = [lesion for lesion in counted if _enhances(lesion) is enhancing]
            counted = where_enhancing
        kind = "" if enhancing is None else ("enhancing " if enhancing else "non-enhancing ")
        if word in _SEVERAL:
            if len(counted) < 2:
                found.append(Contradiction(read.text, f"several {kind}lesions", f"{len(counted)} were measured"))
            continue
        claimed = int(word) if word.isdigit() else _NUMBER_WORDS[word]
        if _MORE_THAN.search(text[: match.start()]):  # "more than one lesion": at least two
            if len(counted) <= claimed:
                found.append(
                    Contradiction(read.text, f"more than {claimed} {kind}lesion(s)", f"{len(counted)} were measured")
                )
            continue
        if claimed != len(counted):
            found.append(Contradiction(read.text, f"{claimed} {kind}lesion(s)", f"{len(counted)} were measured"))
    if re.search(r"\bmultifocal\b", read.text, re.I) and len(lesions) < 2:
        found.append(Contradiction(read.text, "multifocal disease", f"{len(lesions)} lesion(s) were measured"))
    return found


def _clause_end(text: str, position: int) -> int:
    found = re.compile(r"[,;:]|\b(?:but|while|whereas)\b").search(text, position)
    return found.start() if found else len(text)


def _enhances(lesion: LesionFinding) -> bool | None:
    enhancement = lesion_character(lesion)["enhancement"]
    return None if enhancement == NOT_ASSESSED else enhancement in ("rim-enhancing", "solidly enhancing")


def _where_measured(lesions: list[LesionFinding]) -> str:
    return ", ".join(f"{lesion.laterality.value} {lesion.region}" for lesion in lesions) or "no lesion"


def _place_contradictions(read: _Sentence, lesions: list[LesionFinding]) -> list[Contradiction]:
    """A place named must hold a lesion (on its side, when it names one), a place denied must hold
    none, a side named alone must have a lesion on it, and crossing the midline claimed or denied
    must be true of the lesions the sentence speaks of."""
    found = []
    crossing_named = read.crossing is True
    for place in read.places:
        # a lesion crossing the midline lies partly on both sides: a side said to be clear must be
        there = where.lesions_at(place, lesions, crossing_named or place.denied)
        clause = read.text[: place.end].rsplit(";", 1)[-1]  # "No further lesion; the left hemisphere is clear"
        if place.denied and there and not _NOT_A_TOTAL.search(clause):
            found.append(
                Contradiction(
                    read.text, f"no lesion in the {place}", f"lesions were measured in: {_where_measured(lesions)}"
                )
            )
        elif not place.denied and not there:
            found.append(
                Contradiction(
                    read.text, f"a lesion in the {place}", f"lesions were measured in: {_where_measured(lesions)}"
                )
            )
    # "The frontal lesion is on the right": the side of the lesions the sentence places, else of any
    placed = read.lesions if any(not p.denied for p in read.places) else lesions
    of_tissue = read.subjects and all(s.kind in ("structure", "tissue") for s in read.subjects)
    for side, denied in [] if of_tissue else where.sides_alone(read.text, read.places):  # "grey matter on the left"
        on_it = [lesion for lesion in placed if where.on_side(lesion, side, crossing_named)]
        if not denied and len(lesions) > 1 and _EVERY.search(read.text) and len(on_it) < len(placed):
            found.append(
                Contradiction(
                    read.text, f"every lesion {side}-sided", f"lesions were measured in: {_where_measured(lesions)}"
                )
            )
        if not denied and not on_it:
            found.append(
                Contradiction(
                    read.text, f"a {side}-sided lesion", f"lesions were measured in: {_where_measured(lesions)}"
                )
            )
    named = [p for p in read.places if not p.denied]
    if len(named) == 1 and len(lesions) > 1 and _EVERY.search(read.text):  # "both lesions are in the right hemisphere"
        elsewhere = [lesion for lesion in lesions if lesion not in where.lesions_at(named[0], lesions, crossing_named)]
        if elsewhere:
            found.append(
                Contradiction(
                    read.text,
                    f"every lesion in the {named[0]}",
                    f"lesions were measured in: {_where_measured(lesions)}",
                )
            )
    if len(lesions) > 1 and len(read.lesions) == 1 and any(not p.denied for p in read.places):
        largest = read.lesions[0].lesion_id == 1
        if _LARGEST.search(read.text) and not largest:
            found.append(
                Contradiction(
                    read.text,
                    f"the largest lesion in the {read.places[0]}",
                    f"lesion 1 is in the {_where_measured(lesions[:1])}",
                )
            )
        if _SMALLER.search(read.text) and largest:
            found.append(
                Contradiction(read.text, f"a smaller lesion in the {read.places[0]}", "it is the largest lesion")
            )
    if read.crossing is True and read.lesions and not any(where.crosses(lesion) for lesion in read.lesions):
        found.append(
            Contradiction(read.text, "a lesion crossing the midline", f"none does: {_where_measured(read.lesions)}")
        )
    if read.crossing is False and read.lesions and all(where.crosses(lesion) for lesion in read.lesions):
        found.append(
            Contradiction(read.text, "a lesion confined to one side", f"it crosses: {_where_measured(read.lesions)}")
        )
    return found


# -- numbers, each bound to what it measures ---------------------------------------------------
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


def _subjects(text: str, findings: Findings) -> list[_Subject]:
    """What `text` names, in order; a name inside a longer one ("grey matter" in "left grey matter",
    or in "deep grey matter and internal capsule") counts as the longer one only. Places of
    lesions ("R frontal") name the lesion there."""
    patterns = [(kind, "", pattern) for kind, pattern in _LESION_PARTS]
    for structure in findings.structures:
        words = r"\s+".join(re.escape(w) for w in structure.name.split()).replace("grey", "gr[ae]y")
        words = re.sub(r"^(left|right)\\s\+", r"\1\\s+(?:cerebral\\s+)?", words)  # "left cerebral white matter"
        words = _abbreviated(words)  # "L GM", "Rt WM"
        patterns.append(("structure", structure.name, _STRUCTURE_WORDS.get(structure.name, words)))
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
    if context is not None and _CONTINUES.match(text):
        return context  # "Its volume is 30 mL, with 25 mL of oedema": 30 mL is the lesion's
    # the nearest named after it, unless another number stands between ("32 mL, of which 26 mL is oedema")
    if after and not _QUANTITY.search(text, end, after[0].start):
        return after[0]
    return context


def _measured(subject: _Subject | None, unit: str, read: _Sentence, findings: Findings) -> tuple[str, list[float]]:
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
_LENGTH_KINDS = ("lesion", *_PART_KINDS)  # a part's length is the lesion's
_PART_NOUN = re.compile(r"\s+(?:foci|focus)", re.I)


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
                values.append(lesion.volume_ml)
            else:
                values += [lesion.longest_diameter_mm, lesion.short_axis_mm]
        elif unit == "mL":
            key = {"oedema": "oedema_ml", "necrotic": "necrotic_ml", "enhancing": "enhancing_ml", "core": "core_ml"}[
                kind
            ]
            values += [character[key]] if character[key] is not None else []
    return values


def _quantities(read: _Sentence, findings: Findings, previous: _Sentence | None):
    """(match, unit, factor, subject, what, allowed values, written numbers) for each number with a unit."""
    # what the sentence before was about; a number is never bound to an unmeasured topic across sentences
    context = next((s for s in previous.subjects if s.kind != "unmeasured"), None) if previous else None
    previous_end = 0
    for match in _QUANTITY.finditer(read.text):
        unit, factor = _UNITS[match.group(4).lower()]
        subject = _subject_of(read.text, match.start(), match.end(), read.subjects, context)
        if subject is not None and subject.kind == "unmeasured":
            continue  # "a midline shift of 4 mm": unchecked, not contradicted
        subject = _sided(subject, read.text, match, findings)
        subject, indexed = _indexed(subject, read, match, findings)
        written = [w for w in match.group(1, 2, 3) if w]
        if subject is not None and subject.kind == "tissue" and _EACH_SIDE.search(read.text):
            for side in ("left", "right"):  # "548 mL bilaterally": each side's
                sided = dataclasses.replace(subject, kind="structure", name=f"{side} {subject.name}")
                yield match, unit, factor, *_measured(sided, unit, indexed, findings), written
            continue
        what, allowed = _measured(subject, unit, indexed, findings)
        if unit == "mm" and len(written) == 1 and allowed and (subject is None or subject.kind in _LENGTH_KINDS):
            allowed = _diameter_of_role(read.text, previous_end, match, read.lesions) or allowed
        previous_end = match.end()
        yield match, unit, factor, what, allowed, written


_SIDE_BEFORE = re.compile(r"\b(?:the\s+)?(left|right|(?-i:L|R|Lt|Rt))\s*:?\s*$", re.I)
_SIDE_AFTER = re.compile(r"\s*(?:on\s+the\s+|in\s+the\s+)?(left|right)\b", re.I)
_EACH_SIDE = re.compile(r"\bbilaterally\b|\beach\s+side\b|\bon\s+both\s+sides\b|\bsymmetric(?:al)?(?:ly)?\b", re.I)
_LESION_INDEX = re.compile(r"\blesion\s+(\d+)\b", re.I)


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


def _indexed(subject: _Subject | None, read: _Sentence, match: re.Match, findings: Findings):
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
    indices = list(_LESION_INDEX.finditer(read.text[: match.start()]))
    index = indices[-1] if indices else None
    lesions = [lesion for lesion in findings.lesions if index and lesion.lesion_id == int(index.group(1))]
    if not lesions:
        return subject, read
    parts = [s for s in read.subjects if s.kind in _PART_KINDS and s.end <= match.start()]
    if subject is not None and subject.kind == "lesion" and parts:
        subject = parts[-1]
    return subject, dataclasses.replace(read, lesions=lesions)


def _diameter_of_role(text: str, previous_end: int, match: re.Match, lesions: list[LesionFinding]) -> list[float]:
    """The one diameter a single number names: "maximum diameter 58.7 mm", "45.4 mm across",
    "short axis of 4.5 cm"; [] when it names neither."""
    after = re.split(r"\d|\band\b", text[match.end() : _clause_end(text, match.end())])[0]
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


def _respective_contradictions(read: _Sentence, findings: Findings, previous: _Sentence | None):
    """Numbers given "respectively" to a series, each checked against its own member: "left and
    right white matter volumes are 321.2 and 318.6 mL respectively", or the lesions at the places
    the sentence (or the one before) names, in order ("They measure 4.2 mL and 31.7 mL
    respectively"). None when the sentence gives no such series."""
    quantities = list(_QUANTITY.finditer(read.text))
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


def _quantity_contradictions(read: _Sentence, findings: Findings, previous: _Sentence | None) -> list[Contradiction]:
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
        for number in written:
            if not any(_matches(number, factor, measured, hedged) for measured in allowed):
                measured_text = (
                    f"{what} measured {' or '.join(f'{m:.1f} {unit}' for m in sorted(set(allowed)))}"
                    if allowed
                    else f"nothing in {unit} was measured for {what}"
                )
                found.append(Contradiction(read.text, f"{number} {match.group(4)}", measured_text, quantity=True))
    return found


def _third_dimensions(read: _Sentence, findings: Findings, previous: _Sentence | None) -> list[Unchecked]:
    return [
        Unchecked(read.text, "a third lesion dimension")
        for match, unit, _, _, _, written in _quantities(read, findings, previous)
        if len(written) == 3 and unit == "mm"
    ]


# -- enhancement, oedema, necrosis, ventricles -------------------------------------------------


_ENHANCEMENT_HEADING = re.compile(r"^\s*(?:contrast\s+)?enhancement\s*:\s*", re.I)


def _enhancement_text(text: str) -> str:
    """A heading read as the sentence it stands for: "ENHANCEMENT: Solid, homogeneous." as "Solid,
    homogeneous enhancement.", "ENHANCEMENT: none." as "No enhancement."."""
    heading = _ENHANCEMENT_HEADING.match(text)
    if not heading:
        return text
    rest = text[heading.end() :].rstrip(" .")
    return "No enhancement." if re.match(r"(?:none|nil|absent|no)\b", rest, re.I) else f"{rest} enhancement."


def _enhancement_contradictions(read: _Sentence) -> list[Contradiction]:
    text = _enhancement_text(read.text)
    if _NO_CONTRAST_GIVEN.search(text):
        return []
    denies = _DOES_NOT_ENHANCE.search(text)
    claims = _ENHANCES.search(_DOES_NOT_ENHANCE.sub("", text))
    if not (claims or denies) or not read.lesions:
        return []
    characters = [lesion_character(lesion)["enhancement"] for lesion in read.lesions]
    if all(c == NOT_ASSESSED for c in characters):
        claim = "an enhancing lesion" if claims else "no enhancement"
        return [Contradiction(read.text, claim, "enhancement was not assessed (no contrast-enhanced scan)")]
    if len(read.lesions) == 1 and any(pattern.search(text) for _, pattern in _PATTERNS):
        return []  # the pattern given to the one lesion is checked by _placed_pattern_contradictions
    found = []
    if claims and _EVERY.search(text) and not all(c in ("rim-enhancing", "solidly enhancing") for c in characters):
        return [Contradiction(read.text, "every lesion enhancing", f"the lesion(s) measured: {', '.join(characters)}")]
    if claims and not any(c in ("rim-enhancing", "solidly enhancing") for c in characters):
        found.append(
            Contradiction(read.text, "an enhancing lesion", f"the lesion(s) measured: {', '.join(characters)}")
        )
    if denies and all(c in ("rim-enhancing", "solidly enhancing") for c in characters):
        found.append(
            Contradiction(read.text, "no enhancement", f"every lesion measured enhances ({', '.join(characters)})")
        )
    return found


def _placed_pattern_contradictions(read: _Sentence) -> list[Contradiction]:
    """A sentence that speaks of exactly one lesion gives its pattern: an enhancement pattern it
    gives must be that lesion's ("the second lesion, non-enhancing, is in the left parietal lobe"
    of a solidly enhancing one is wrong, though another lesion is non-enhancing)."""
    named = [p for p in read.places if not p.denied]
    indexed = _index_segments(read.text, read.lesions)
    if len(indexed) > 1:  # "Lesion 1 is non-enhancing and lesion 2 is solidly enhancing"
        return [
            c
            for lesion, segment in indexed
            for c in _placed_pattern_contradictions(_Sentence(segment, [], [], None, [lesion]))
        ]
    if len(read.lesions) != 1 or len(named) > 1:
        return []
    actual = lesion_character(read.lesions[0])["enhancement"]
    if actual == NOT_ASSESSED:
        return []
    place = f" in the {named[0]}" if named else ""
    text = _enhancement_text(read.text)
    found = []
    for written, pattern in _PATTERNS:
        if pattern.search(text) and written != actual and not (written == "non-enhancing" and actual == "oedema-like"):
            found.append(
                Contradiction(read.text, f"a {written} lesion{place}", f"the lesion measured there is {actual}")
            )
    return found


def _index_segments(text: str, lesions: list[LesionFinding]) -> list[tuple[LesionFinding, str]]:
    """(lesion, its part of the text) for each "lesion N" the text names, from it to the next."""
    indices = list(_LESION_INDEX.finditer(text))
    by_id = {lesion.lesion_id: lesion for lesion in lesions}
    ends = [m.start() for m in indices[1:]] + [len(text)]
    return [
        (by_id[int(m.group(1))], text[m.start() : end]) for m, end in zip(indices, ends) if int(m.group(1)) in by_id
    ]


def _part_contradictions(read: _Sentence) -> list[Contradiction]:
    """Oedema and necrosis said to be present or absent, for the lesions the sentence speaks of."""
    found = []
    for part, pattern, key in (("oedema", _OEDEMA, "oedema_ml"), ("necrosis", _NECROSIS, "necrotic_ml")):
        match = pattern.search(read.text)
        if not match or not read.lesions:
            continue
        amounts = [lesion_character(lesion)[key] for lesion in read.lesions]
        if any(a is None for a in amounts):
            continue  # not assessed without a contrast-enhanced scan
        denied = bool(
            _DENIED_PART.search(read.text[: match.start()]) or _DENIED_PART_AFTER.match(read.text[match.end() :])
        )
        # "no necrosis", "neither lesion contains necrosis": wrong when any lesion spoken of has some
        if denied and any(a >= 0.05 for a in amounts):
            found.append(
                Contradiction(read.text, f"no {part}", f"{' and '.join(f'{a:.1f} mL' for a in amounts)} measured")
            )
        if not denied and all(a <= 0 for a in amounts):
            found.append(Contradiction(read.text, part, "none was measured"))
    return found


def _ventricle_contradictions(read: _Sentence, findings: Findings) -> list[Contradiction]:
    judged = ventricles(findings)
    if judged is None or not _VENTRICLES.search(read.text):
        return []
    volume, enlarged, fraction = judged
    normal_said = bool(_NORMAL.search(read.text))
    enlarged_said = bool(_ENLARGED.search(_NORMAL.sub("", read.text)))
    measured = f"they measure {volume:.1f} mL ({100 * fraction:.1f} %)"
    if enlarged_said and not enlarged:
        return [Contradiction(read.text, "enlarged ventricles", f"{measured}, normal")]
    if normal_said and not enlarged_said and enlarged:
        return [Contradiction(read.text, "normal ventricles", f"{measured}, enlarged")]
    return []


def _omissions(text: str, findings: Findings) -> list[str]:
    lowered = text.lower()
    places = where.places_in(text)
    missed = []
    for lesion in findings.lesions:
        mentioned = (
            lesion.region in lowered
            or any(lesion.region in p.regions and not p.denied for p in places)
            or f"{lesion.volume_ml:.1f}" in text
            or f"{lesion.volume_ml:.0f} ml" in lowered
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


def _unique(claims: list[Unchecked]) -> list[Unchecked]:
    return list(dict.fromkeys(claims))
