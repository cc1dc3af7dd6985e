"""The faithfulness guard: what a narrative or an answer claims, checked against the Findings it
was written from. A language model's text is kept only when none of its checkable claims
contradicts a measurement; a claim about something the program does not measure is reported as
unchecked, never as checked.

Checked, sentence by sentence, in the phrasing of real reports as well as the template's:
- lesion count ("no focal lesion", "solitary", "three lesions", "multiple", "multifocal"; "two
  enhancing lesions" counts the enhancing ones; "no other lesion" claims nothing);
- places of lesions (fm.report.places: "R frontal", "left thalamus", "frontoparietal"; a place
  the sentence denies must hold no lesion), and crossing the midline, claimed or denied;
- every number with a unit (fm.report.quantities: mL, cc, mm, cm, % of intracranial volume;
  "a x b x c cm") must be a rounding of a measured value of what its clause names: a structure's volume, a lesion's volume,
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
from fm.report.claims import CONTINUES, Contradiction, Sentence, Unchecked, clause_end
from fm.report.places import REGIONS
from fm.report.quantities import (
    LESION_INDEX,
    answers_about_another_subject,
    answers_another_quantity,
    named_subjects,
    quantity_contradictions,
    third_dimensions,
)
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, ventricles
from fm.report.unmeasured import declines, is_decline, topics_in, unmeasured_topic

__all__ = ["REGIONS", "Contradiction", "GuardResult", "Unchecked", "check", "split_sentences"]

_NUMBER_WORDS = {
    "no": 0, "one": 1, "single": 1, "a single": 1, "solitary": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_SEVERAL = ("multiple", "several", "numerous", "a few")
_COUNT = re.compile(
    r"\b(no(?!\s+(?:more|fewer|less)\s+than)|one|a\s+single|single|solitary|two|three|four|five|six|seven|eight|nine|ten|\d+|multiple|several|numerous|a\s+few)"
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
    r"(\d+|none|nil|one|two|three|four|five)\b(?=\s*(?:[.;,(]|$))",
    re.I,
)
_HEADING_COUNTS = {"none": "no", "nil": "no"}
_COUNT_ENHANCES = re.compile(
    r"\s+(?:(?!(?:no|not|never)\b)\w+\s+)?(?:enhances?\b|shows?\s+(?:(?!(?:no|little|minimal)\b)\w+\s+)?enhancement)",
    re.I,
)
_MORE_THAN = re.compile(r"\b(?:more\s+than|over|in\s+excess\s+of)\s+$", re.I)
_AT_MOST = re.compile(r"\b(?:(?:no|not)\s+more\s+than|at\s+most|no\s+over)\s+$", re.I)
_NOT_A_TOTAL = re.compile(r"\b(?:other|additional|further|new|more|second|third|evidence)\b", re.I)
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
    r"\b(?:does|do)\s+not\s+(?:have|show|demonstrate|display|take\s+up)\s+(?:an?\s+|any\s+)?(?:[\w-]+\s+){0,2}?"
    r"(?:enhancement|enhancing\s+(?:component|part|portion|tissue|rim)|contrast|gadolinium)\b|"
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
_NOT_NORMAL = re.compile(r"\bnot\s+(?:of\s+)?normal(?:\s+in)?\s+size\b|\bnot\s+normal(?=\s*[.,;]|\s*$)", re.I)
_NORMAL = re.compile(
    r"normal\s+in\s+size|within\s+normal\s+limits|not\s+enlarged|normal-sized|normal\s+size|"
    r"\b(?:no|not|without)\b(?:\s+[\w-]+){0,3}?\s+(?:enlarge\w*|dilat\w*|hydrocephal\w*|ventriculomegaly|prominen\w*)|"
    r"(?:ventric\w*|vents)\s+(?:(?:are|is|appear)\s+)?(?:unremarkable|normal)|unremarkable\s+ventric",
    re.I,
)
_THERE_QUESTION = re.compile(r"^\s*(is|are)\s+there\s+(.+?)\s*\?*\s*$", re.I)
_PRONOUN = re.compile(r"\b(?:it|its)\b", re.I)
_THE_ENHANCING = re.compile(r"\bthe\s+(non-?)?enhancing\s+(?:lesion|mass|one|tumou?r)\b", re.I)
#: a question's "the lesion", "the main mass", "the biggest tumour": one lesion, the largest (lesion 1),
#: as the program's own answers take it
_THE_LESION = re.compile(
    r"\bthe\s+(?:(?:main|largest|biggest|dominant|index)\s+)?(?:lesion|abnormality|mass|tumou?r)\b", re.I
)


@dataclasses.dataclass(frozen=True)
class GuardResult:
    contradictions: list[Contradiction]
    omissions: list[str]  # abnormal findings the text does not mention
    unchecked: list[Unchecked] = dataclasses.field(default_factory=list)

    @property
    def faithful(self) -> bool:
        return not self.contradictions


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
    previous = asked = _read(question, findings, None, asked=True) if question else None
    answer_reads = []
    if question and sentences and (claim := _yes_no_claim(question, sentences[0])):
        contradictions += [
            dataclasses.replace(c, sentence=sentences[0], claim=f"{c.claim} (answering: {question})")
            # the claim restates the question, and speaks of the lesions it asks about ("the lesion": the largest)
            for c in _sentence_contradictions(_read(claim, findings, None, asked=True), findings, None)
        ]
    for sentence in sentences:
        if is_decline(sentence):  # the program's own answer: it names what it does not measure
            continue
        unchecked += [Unchecked(sentence, t) for t in topics_in(sentence)]
        # "The lesion measures 45 mL; midline shift cannot be assessed.": the declining clause claims nothing
        checked = _without_declining_clauses(sentence) if declines(sentence) else sentence
        if not checked:
            continue
        read = _read(checked, findings, previous)
        answer_reads.append((read, previous))
        found = _sentence_contradictions(read, findings, previous) + third_dimensions(read, findings, previous)
        for claim in found:
            (contradictions if isinstance(claim, Contradiction) else unchecked).append(
                dataclasses.replace(claim, sentence=sentence)
            )
        previous = read
    if question and sentences and topic is None:
        wrong = answers_another_quantity(question, text) or answers_about_another_subject(asked, answer_reads, findings)
        if wrong:
            unchecked.append(Unchecked(sentences[0], wrong))
    return GuardResult(contradictions, _omissions(text, findings), _unique(unchecked))


def _without_declining_clauses(sentence: str) -> str:
    """The sentence without its clauses that say something cannot be assessed or is not known."""
    clauses = re.split(r"[;,]|\b(?:but|and|while|whereas)\b", sentence)
    return ", ".join(c.strip() for c in clauses if c.strip(" .") and not declines(c)).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? followed by space (decimal points stay inside numbers, and so
    do the full stops of common abbreviations)."""
    text = re.sub(r"\b(approx|e\.g|i\.e|cf|vs|Dr|Fig|no)\.(?=\s)", lambda m: m.group(0)[:-1] + "\0", text)
    return [s.strip().replace("\0", ".") for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _yes_no_claim(question: str, answer: str) -> str | None:
    """A yes/no question answered "Yes" or "No" as the statement the answer makes: "Is there a
    lesion in the left frontal lobe?" "No" says "There is no lesion in the left frontal lobe.";
    "Does the right parietal lobe contain a lesion?" "Yes" says "The right parietal lobe contains a
    lesion."; "Are the lateral ventricles enlarged?" "No" says "The lateral ventricles are not enlarged."."""
    said = re.match(r"\s*(yes|no)\b", answer, re.I)
    if not said:
        return None
    yes = said.group(1).lower() == "yes"
    if asked := _THERE_QUESTION.match(question):
        verb, what = asked.group(1).lower(), re.sub(r"^(?:an?|any)\s+", "", asked.group(2))
        return f"There {verb} {what}." if yes else f"There {verb} no {what}."
    if asked := _EXISTS_QUESTION.match(question):  # "Can you identify a mass?", "Any focal lesion?"
        what = re.sub(r"^(?:an?|any)\s+", "", asked.group(1))
        return f"There is {'an' if what[0] in 'aeiou' else 'a'} {what}." if yes else f"There is no {what}."
    if asked := _CONTAIN_QUESTION.match(question):
        where, what = asked.group(2), re.sub(r"^(?:an?|any)\s+", "", asked.group(3))
        verb = "contain" if asked.group(1).lower() == "do" else "contains"
        return f"{where} {verb} {'an' if what[0] in 'aeiou' else 'a'} {what}." if yes else f"{where} {verb} no {what}."
    if asked := _DOES_QUESTION.match(question):  # "Does the lesion enhance?" "No": "The lesion does not enhance."
        auxiliary, subject, verb, rest = (asked.group(i) for i in range(1, 5))
        if not yes:
            return f"{subject} {auxiliary.lower()} not {verb}{rest}."
        if auxiliary.lower() == "does":
            verb = {"have": "has"}.get(verb.lower(), verb + ("es" if verb.endswith(("s", "sh", "ch", "x")) else "s"))
        return f"{subject} {verb}{rest}."
    if asked := _STATE_QUESTION.match(question):
        verb, subject, state = asked.group(1).lower(), asked.group(2), asked.group(3)
        return f"{subject} {verb} {state}." if yes else f"{subject} {verb} not {state}."
    return None


_EXISTS_QUESTION = re.compile(
    r"^\s*(?:(?:can|could|do|does)\s+(?:you|we|one)\s+(?:see|identify|find|detect|spot|appreciate)\s+|any\s+(?=\w))"
    r"((?:an?\s+|any\s+)?(?:[\w-]+\s+){0,2}?(?:lesion|mass|tumou?r|abnormality|focus|nodule))"
    r"(?:\s+(?:in|on)\s+(?:this|the)\s+(?:scan|image|brain|study))?\s*\?*\s*$",
    re.I,
)
_CONTAIN_QUESTION = re.compile(
    r"^\s*(does|do)\s+(the\s+.+?)\s+(?:contain|have|harbou?r|show|hold)\s+(an?\s+(?:lesion|mass|tumou?r|abnormality))\s*\?*\s*$",
    re.I,
)
_STATE_QUESTION = re.compile(
    r"^\s*(is|are)\s+(the\s+.+?)\s+((?:enhancing|enlarged|dilated|normal(?:\s+in\s+size)?|of\s+normal\s+size|"
    r"multifocal|bilateral|necrotic|cystic)(?:\s+(?:after|with|on|following)\s+(?:contrast|gadolinium)\w*)?)\s*\?*\s*$",
    re.I,
)
_DOES_QUESTION = re.compile(
    r"^\s*(does|do)\s+(the\s+.+?)\s+(enhance|show|have|take|cross|reach|extend|spread|involve|demonstrate|display|exhibit)\b(.*?)\s*\?*\s*$",
    re.I,
)


def read_question(question: str, findings: Findings) -> Sentence:
    """A question as the guard reads it: the structures it names, and the lesions it asks about
    (the largest for "the lesion"; those at the place it names)."""
    return _read(question, findings, None, asked=True)


def _read(sentence: str, findings: Findings, previous: Sentence | None, asked: bool = False) -> Sentence:
    """A sentence with what it names. asked: a question, whose place holds exactly the lesions it
    asks about (none, when none is there: "Is there a lesion in the left frontal lobe?" "58.7 mm")."""
    places = where.places_in(sentence)
    crossing = where.crossing_claim(sentence)
    named = [p for p in places if not p.denied]
    lesions = findings.lesions
    if len(named) == 1:  # one place: the sentence speaks of the lesions there
        there = where.lesions_at(named[0], findings.lesions, crossing is True)
        lesions = there if there or asked else findings.lesions
    subjects = named_subjects(sentence, findings)
    continues = CONTINUES.match(sentence) or _PRONOUN.search(sentence) or not subjects  # "It enhances.", "58.7 mm."
    if not named and previous is not None and continues:
        lesions = previous.lesions
    definite = {not match.group(1) for match in _THE_ENHANCING.finditer(sentence)}
    if not named and len(definite) == 1:  # "The enhancing lesion has ..." (but not beside "the non-enhancing one")
        enhancing = definite.pop()
        lesions = [lesion for lesion in findings.lesions if _enhances(lesion) is enhancing] or lesions
    elif asked and not named and _THE_LESION.search(sentence):
        lesions = findings.lesions[:1]  # "How big is the lesion?" answered with another lesion's volume is wrong
    return Sentence(sentence, subjects, places, crossing, lesions, asked)


def _sentence_contradictions(read: Sentence, findings: Findings, previous: Sentence | None) -> list[Contradiction]:
    found = _count_contradictions(read, findings)
    found += _place_contradictions(read, findings.lesions)
    found += quantity_contradictions(read, findings, previous)
    found += _enhancement_contradictions(read)
    found += _placed_pattern_contradictions(read)
    found += _part_contradictions(read)
    found += _ventricle_contradictions(read, findings)
    return found


# -- counts and places -------------------------------------------------------------------------


def _count_contradictions(read: Sentence, findings: Findings) -> list[Contradiction]:
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
        places = [p for p in read.places if p.start >= match.start() and p.start < clause_end(read.text, match.end())]
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
        if _AT_MOST.search(text[: match.start()]):  # "no more than one lesion": one at most
            if len(counted) > claimed:
                found.append(
                    Contradiction(read.text, f"at most {claimed} {kind}lesion(s)", f"{len(counted)} were measured")
                )
            continue
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


def _enhances(lesion: LesionFinding) -> bool | None:
    enhancement = lesion_character(lesion)["enhancement"]
    return None if enhancement == NOT_ASSESSED else enhancement in ("rim-enhancing", "solidly enhancing")


def _where_measured(lesions: list[LesionFinding]) -> str:
    return ", ".join(f"{lesion.laterality.value} {lesion.region}" for lesion in lesions) or "no lesion"


def _place_contradictions(read: Sentence, lesions: list[LesionFinding]) -> list[Contradiction]:
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
    # "grey matter 548 mL bilaterally" speaks of tissue, not of a lesion crossing the midline
    crossing_said = read.crossing is True and not of_tissue
    if crossing_said and read.lesions and not any(where.crosses(lesion) for lesion in read.lesions):
        found.append(
            Contradiction(read.text, "a lesion crossing the midline", f"none does: {_where_measured(read.lesions)}")
        )
    if read.crossing is False and read.lesions and all(where.crosses(lesion) for lesion in read.lesions):
        found.append(
            Contradiction(read.text, "a lesion confined to one side", f"it crosses: {_where_measured(read.lesions)}")
        )
    return found


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


def _enhancement_contradictions(read: Sentence) -> list[Contradiction]:
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


def _placed_pattern_contradictions(read: Sentence) -> list[Contradiction]:
    """A sentence that speaks of exactly one lesion gives its pattern: an enhancement pattern it
    gives must be that lesion's ("the second lesion, non-enhancing, is in the left parietal lobe"
    of a solidly enhancing one is wrong, though another lesion is non-enhancing)."""
    named = [p for p in read.places if not p.denied]
    indexed = _index_segments(read.text, read.lesions)
    if len(indexed) > 1:  # "Lesion 1 is non-enhancing and lesion 2 is solidly enhancing"
        return [
            c
            for lesion, segment in indexed
            for c in _placed_pattern_contradictions(Sentence(segment, [], [], None, [lesion]))
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
    indices = list(LESION_INDEX.finditer(text))
    by_id = {lesion.lesion_id: lesion for lesion in lesions}
    ends = [m.start() for m in indices[1:]] + [len(text)]
    return [
        (by_id[int(m.group(1))], text[m.start() : end]) for m, end in zip(indices, ends) if int(m.group(1)) in by_id
    ]


def _part_contradictions(read: Sentence) -> list[Contradiction]:
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


def _ventricle_contradictions(read: Sentence, findings: Findings) -> list[Contradiction]:
    judged = ventricles(findings)
    if judged is None or not _VENTRICLES.search(read.text):
        return []
    volume, enlarged, fraction = judged
    text = _NOT_NORMAL.sub("enlarged", read.text)  # "not of normal size": larger than normal, as measured here
    normal_said = bool(_NORMAL.search(text))
    enlarged_said = bool(_ENLARGED.search(_NORMAL.sub("", text)))
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
