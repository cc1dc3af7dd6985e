"""Decoding grounded in the findings: while a report model writes from the measured findings,
every number it writes must be one the findings state, digit for digit (a full stop may follow) or,
for a model whose config says number_forms "rounded", also rounded as a report writes it ("32 mL"
for 31.7 mL, "5.9 cm" for 58.7 mm), and every brain region it names must be one a measured lesion
lies in (on the side it names). Where the text names one lesion or structure ("The second lesion
...", "The left grey matter measures", or the question an answer answers), its numbers must measure
that subject and its region be that lesion's (fm.lm.decoding_scope). A transformers
LogitsProcessor masks each token that would break a rule, so a small model that has learnt
*what* to say where cannot garble a measurement, give one structure another's number, or fall back
on the commonest lobe. What it picks among the grounded values is still its own choice, and the
faithfulness guard (fm.report.faithfulness) still checks that choice against the findings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re

import torch
from transformers import LogitsProcessor

from fm.core.findings import Findings, Laterality, LesionFinding, StructureFinding
from fm.lm.decoding_scope import INDEX_BEFORE, Scope, Subjects, sentence_at_end
from fm.lm.prompts import findings_text, lesion_line, structure_line
from fm.report import places as where
from fm.report.faithfulness import REGIONS, check, read_question
from fm.report.quantities import asked_quantity, is_yes_no_question, lesion_parts_named, structure_pattern
from fm.report.template_narrative import lesion_character, side_of, ventricles

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_RUN = re.compile(r"\d[\d.]*")  # a number as it is being written: digits and points from a digit on
_WRITING = re.compile(r"\d[\d.]*\Z")
_TAIL_TOKENS = 12  # enough tokens to hold the longest number or region word being written
#: the word that names each region in a text
REGION_WORDS = {region: region.split()[0] for region in REGIONS}


@dataclasses.dataclass(frozen=True)
class Grounding:
    numbers: frozenset[str]  # as the findings write them ('31.7', '2', '548.1') and their roundings ('32', '5.9' cm)
    # as the findings write them: only these may end a sentence ("The count is 2."); a rounding is
    # written before its unit, so a full stop after one is a number cut short ('4.' of 4.3 mL)
    verbatim: frozenset[str]
    region_words: frozenset[str]  # of the regions the lesions lie in
    sided_regions: frozenset[tuple[str, str]]  # ('left', 'parietal'): a side and a region word, as a lesion has them

    subjects: Subjects = Subjects()  # what the text may speak of, each with its own numbers and place
    lengths: frozenset[str] = frozenset()  # the numbers that are lengths: only these go before "x", "mm", "cm"
    amounts: frozenset[str] = frozenset()  # volumes, shares, counts: only these go before "mL", "cc", "%"
    lesion: Scope | None = None  # the lesion its sentence names, whose enhancement and crossing it may state
    refuted: frozenset[str] = frozenset()  # "yes" or "no": the first word of an answer the findings contradict
    opening: frozenset[str] = frozenset()  # the words an answer may start with ("yes", "no"); empty: any

    @classmethod
    def of(cls, findings: Findings, rounded: bool = False, question: str | None = None) -> "Grounding":
        """The grounding of `findings`; `rounded`: their measurements may also be written rounded
        (rounded_forms), not only digit for digit; `question`: the text is its answer, so it starts
        on the lesion or structure the question asks about."""
        places = [place for place in map(_place, findings.lesions) if place]
        words, sided = {word for _, word in places}, {place for place in places if place[0]}
        verbatim = frozenset(_NUMBER.findall(findings_text(findings)))
        numbers = verbatim | rounded_forms(findings) if rounded else verbatim
        subjects = _subjects(findings, rounded)
        scopes = [*subjects.lesions, *(scope for _, scope in subjects.structures)]
        lengths = frozenset().union(*(scope.lengths for scope in scopes))
        amounts = subjects.counts.union(*(scope.amounts for scope in scopes))
        refuted = opening = frozenset()
        if question:
            whole = Scope(numbers, verbatim, lengths=lengths, amounts=amounts)
            asked = _answer_scope(question, _question_subject(question, findings, subjects), subjects, whole)
            subjects = dataclasses.replace(subjects, asked=asked)
            refuted, opening = _answer_openings(question, findings)
        return cls(
            numbers, verbatim, frozenset(words), frozenset(sided), subjects, lengths, amounts, None, refuted, opening
        )

    def within(self, scope: Scope, named: bool) -> "Grounding":
        """This grounding narrowed to `scope`'s numbers and, where its own sentence `named` a lesion,
        to that lesion's place, enhancement and crossing."""
        narrowed = dataclasses.replace(
            self, numbers=scope.numbers, verbatim=scope.verbatim, lengths=scope.lengths, amounts=scope.amounts
        )
        if not (named and scope.character):  # a structure, or a lesion carried from a sentence before
            return narrowed
        if scope.place is None:  # a lesion outside the regions a text names by one word
            return dataclasses.replace(narrowed, region_words=frozenset(), sided_regions=frozenset(), lesion=scope)
        side, word = scope.place
        sided = frozenset({scope.place}) if side else frozenset()
        return dataclasses.replace(narrowed, region_words=frozenset({word}), sided_regions=sided, lesion=scope)

    def to_json(self) -> str:
        """The grounding as a request to the vLLM server carries it (fm.serve.vllm_plugin reads it)."""
        return json.dumps(
            {
                "numbers": sorted(self.numbers),
                "verbatim": sorted(self.verbatim),
                "region_words": sorted(self.region_words),
                "sided_regions": sorted(list(pair) for pair in self.sided_regions),
                "subjects": self.subjects.to_json(),
                "lengths": sorted(self.lengths),
                "amounts": sorted(self.amounts),
                "refuted": sorted(self.refuted),
                "opening": sorted(self.opening),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "Grounding":
        data = json.loads(text)
        sided = frozenset(tuple(pair) for pair in data["sided_regions"])
        numbers = frozenset(data["numbers"])
        verbatim = frozenset(data.get("verbatim", numbers))  # a request from before rounded forms
        subjects = Subjects.from_json(data["subjects"]) if "subjects" in data else Subjects()
        lengths, amounts = frozenset(data.get("lengths", [])), frozenset(data.get("amounts", []))
        refuted, opening = frozenset(data.get("refuted", [])), frozenset(data.get("opening", []))
        words = frozenset(data["region_words"])
        return cls(numbers, verbatim, words, sided, subjects, lengths, amounts, None, refuted, opening)

    @functools.cached_property
    def prefixes(self) -> frozenset[str]:
        return frozenset(number[:end] for number in self.numbers for end in range(1, len(number) + 1))

    def complete(self, run: str) -> bool:
        """Is `run` (digits and points) a whole grounded number, or a verbatim one and a full stop?"""
        return run in self.numbers or (run.endswith(".") and run[:-1] in self.verbatim)

    def fits(self, text: str) -> bool:
        """Every number in `text` is grounded; the last may still be growing (a prefix)."""
        runs = list(_RUN.finditer(text))
        for index, run in enumerate(runs):
            growing = index == len(runs) - 1 and run.end() == len(text)
            if not (self.complete(run.group()) or (growing and run.group() in self.prefixes)):
                return False
        return True

    def names_banned_region(self, tail: str, text: str) -> bool:
        """Does `text` finish a region word that no lesion lies in, or one after a side that no
        lesion in that region has?"""
        for match in _REGION_WORD.finditer(tail + text):
            if match.end() <= len(tail):
                continue
            side, word = (match.group(1) or "").lower(), match.group(2).lower()
            if word not in self.region_words or (side and (side, word) not in self.sided_regions):
                return True
        return False

    def refutes(self, written: str, piece: str) -> bool:
        """Does `piece`, after the answer's `written` text, finish its first word as one the answer
        may not start with ("yes" or "no" that the findings contradict, "not")?"""
        if not self.refuted or not _FIRST_WORD_OPEN.fullmatch(written):
            return False
        first = _FIRST_WORD.match(written + piece)
        return bool(first) and first.group(1).lower() in self.refuted

    def breaks_wording(self, tail: str, text: str, lead: str, enhancement_said: bool) -> bool:
        """Does `text`, after `tail`, give a number a unit it does not have ("84.1 mm" for a
        volume; `lead`: the number and any unit begun at the end, or ""), or, in a sentence that names
        one lesion, state an enhancement it lacks (the sentence's first: `enhancement_said` is
        False) or a midline crossing it lacks?"""
        unit = _UNIT.match(lead + text) if lead else None
        if unit and unit.end() > len(lead):
            as_length = unit.group(2).lower() in ("x", "×", "mm", "cm")
            if unit.group(1) not in (self.lengths if as_length else self.amounts):
                return True
        if self.lesion is None:
            return False
        joined = tail + text
        if not enhancement_said:
            said = [m for m in _ENHANCEMENT.finditer(joined) if m.end() > len(tail)]
            if said and not _enhancement_fits(said[0], self.lesion.character):
                return True
        return not self.lesion.crosses and any(m.end() > len(tail) for m in _CROSSING.finditer(joined))


_FIRST_WORD = re.compile(r"[^a-z\d]*([a-z]+)(?![a-z])", re.I)
_FIRST_WORD_OPEN = re.compile(r"[^a-z\d]*[a-z]*", re.I)  # the answer's first word not yet finished
_PAIR = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:mm|cm)?\s*[x×]\s*\Z", re.I)
_UNIT = re.compile(r"(\d+(?:\.\d+)?)\s*(x|×|mm|cm|ml|cc|%)(?![a-z])", re.I)
_UNIT_LEAD = re.compile(r"(?<![\d.])\d+(?:\.\d+)?\s*[a-z%×]{0,2}\Z", re.I)  # "84.1", "84.1 ", "84.1 m"
# an enhancement as soon as its first word is out: "rim", "solidly", "non", or "enhancing" alone
_ENHANCEMENT = re.compile(
    r"\b(rim|solidly|non)(?![a-z])(?:[\s-]*enhancing(?![a-z]))?|(?<![\w-])enhancing(?![a-z])", re.I
)
_CROSSING = re.compile(
    r"\bcross(?:es|ing)(?![a-z])|\bacross\s+the\s+midline|\bboth\s+(?:sides|hemispheres)|\bbilateral(?![a-z])", re.I
)


#: the words of breaks_wording's rules, whose last token a rule checks
_WORDING_WORDS = ("mm", "cm", "ml", "cc", "x", "enhancing", "-enhancing", "crossing", "crosses", "midline", "sides")
_WORDING_WORDS += ("hemispheres", "bilateral", "rim", "solidly", "non", "yes", "no", "not")


def _enhancement_fits(said: re.Match, character: str) -> bool:
    kind = (said.group(1) or "").lower()[:3]
    if kind == "non":
        return character in ("non-enhancing", "oedema-like")
    if kind == "rim":
        return character == "rim-enhancing"
    if kind == "sol":
        return character == "solidly enhancing"
    return character in ("rim-enhancing", "solidly enhancing")


def rounded_forms(findings: Findings) -> set[str]:
    """Each measurement of `findings` as a report may round it: to whole units, and a length in mm
    also in cm, to one decimal and whole. Rounded from the measured values, not from their
    one-decimal text (31.46 mL is "31", never "32"), as the guard (fm.report.quantities) checks them;
    the guard also checks the unit that follows."""
    volumes = [structure.volume_ml for structure in findings.structures if structure.volume_ml is not None]
    judged = ventricles(findings)
    forms = {f"{value:.0f}" for value in volumes + ([100 * judged[2]] if judged else [])}
    return forms.union(*(_rounded_lengths(lesion) | _rounded_amounts(lesion) for lesion in findings.lesions))


def _rounded_lengths(lesion: LesionFinding) -> set[str]:
    """A lesion's diameters rounded to whole mm, and in cm to one decimal and whole."""
    return _length_roundings(lesion.longest_diameter_mm) | _length_roundings(lesion.short_axis_mm)


def _length_roundings(length: float) -> set[str]:
    return {f"{length:.0f}", f"{length / 10:.1f}", f"{length / 10:.0f}"}


def _rounded_amounts(lesion: LesionFinding) -> set[str]:
    """A lesion's volume and its parts' volumes rounded to whole mL."""
    character = lesion_character(lesion)
    parts = (character[key] for key in ("oedema_ml", "necrotic_ml", "enhancing_ml", "core_ml"))
    return {f"{value:.0f}" for value in (lesion.volume_ml, *parts) if value is not None}


def _part_forms(lesion: LesionFinding, rounded: bool) -> tuple[tuple[str, frozenset[str]], ...]:
    """(part, its volume as the findings write it and, rounded, in whole mL) for oedema and necrosis."""
    character = lesion_character(lesion)
    return tuple(
        (kind, frozenset({f"{character[key]:.1f}"} | ({f"{character[key]:.0f}"} if rounded else set())))
        for kind, key in (("oedema", "oedema_ml"), ("necrotic", "necrotic_ml"))
        if character[key] is not None
    )


def _lesion_scope(lesion: LesionFinding, lesion_count: int, rounded: bool) -> Scope:
    verbatim = frozenset(_NUMBER.findall(lesion_line(lesion, lesion_count).split(":", 1)[1]))
    diameters = tuple(
        frozenset({f"{length:.1f}"} | (_length_roundings(length) if rounded else set()))
        for length in (lesion.longest_diameter_mm, lesion.short_axis_mm)
    )
    lengths = set().union(*diameters)
    parts = _part_forms(lesion, rounded)
    amounts = {f"{lesion.volume_ml:.1f}"}.union(*(forms for _, forms in parts))
    amounts |= _rounded_amounts(lesion) if rounded else set()
    numbers = verbatim | ((_rounded_lengths(lesion) | _rounded_amounts(lesion)) if rounded else frozenset())
    return Scope(
        numbers,
        verbatim,
        _place(lesion),
        frozenset(lengths) & numbers,
        frozenset(amounts) & numbers,
        parts,
        lesion_character(lesion)["enhancement"],
        where.crosses(lesion),
        tuple(forms & numbers for forms in diameters),
    )


def _structure_scope(structure: StructureFinding, findings: Findings, rounded: bool) -> Scope:
    verbatim = frozenset(_NUMBER.findall(structure_line(structure, findings).split(":", 1)[1]))
    numbers = verbatim | frozenset(f"{float(value):.0f}" for value in verbatim if rounded)
    return Scope(numbers, verbatim, amounts=numbers)


def _place(lesion: LesionFinding) -> tuple[str, str] | None:
    """(side, region word) of a lesion as a text places it; no side for one across the midline."""
    if lesion.region not in REGION_WORDS:
        return None
    return ("" if lesion.laterality == Laterality.bilateral else side_of(lesion), REGION_WORDS[lesion.region])


def _answer_scope(question: str, subject: Scope | None, subjects: Subjects, whole: Scope) -> Scope | None:
    """Where an answer to `question` starts: on the `subject` it asks about (or on every
    measurement, `whole`), with only the numbers of the quantity it asks for: counts for "how
    many", none for "which side", volumes for "how big", lengths for "how long"."""
    base = subject or whole
    asked = asked_quantity(question)
    if asked == "how many":  # the total, unless the question names a side ("How many on the left?")
        total = frozenset({str(len(subjects.lesions))})
        counts = subjects.counts if re.search(r"\b(?:left|right)\b", question, re.I) else total
        return Scope(counts, counts, amounts=counts)
    if asked == "a side or a place":
        return dataclasses.replace(
            base, numbers=frozenset(), verbatim=frozenset(), lengths=frozenset(), amounts=frozenset()
        )
    if asked == "a volume":
        return dataclasses.replace(
            base, numbers=base.amounts, verbatim=base.verbatim & base.amounts, lengths=frozenset()
        )
    if asked == "a length":
        return dataclasses.replace(
            base, numbers=base.lengths, verbatim=base.verbatim & base.lengths, amounts=frozenset()
        )
    return subject


def _answer_openings(question: str, findings: Findings) -> tuple[frozenset[str], frozenset[str]]:
    """(the first words an answer to `question` may not have, the only ones it may have, empty
    for any). A yes/no question is answered yes or no, and not with the one the guard holds as a
    contradiction (fm.report.faithfulness reads "No." to "Is there a lesion in the left frontal
    lobe?" as "There is no lesion in the left frontal lobe."); any other question is not answered
    "yes", nor "not" (what is not measured was declined before the model was asked), nor "no"
    unless no lesion was measured ("No lesion is seen." may answer "How many lesions?")."""
    if not is_yes_no_question(question):
        if not findings.lesions and _asks_of_a_lesion(question):
            return frozenset(), frozenset({"no"})  # "How big is the lesion?" with none: "No lesion is seen."
        # the program declined what it does not measure before asking: "Not measured" would be untrue
        return frozenset({"yes", "not"} | ({"no"} if findings.lesions else set())), frozenset()
    refuted = frozenset(w for w in ("yes", "no") if check(f"{w.capitalize()}.", findings, question).contradictions)
    refuted = refuted if len(refuted) == 1 else frozenset()
    return refuted, frozenset({"yes", "no"}) - refuted


def _asks_of_a_lesion(question: str) -> bool:
    """Does `question` ask about one lesion or a lesion's part ("How big is the lesion?", "How
    much oedema is there?")?"""
    return Subjects.names_one_lesion(question) or bool(lesion_parts_named(question))


def _question_subject(question: str, findings: Findings, subjects: Subjects) -> Scope | None:
    """The subject `question` asks about, as the guard reads the question: a structure it names,
    the one lesion it asks about ("the lesion" is the largest), the largest lesion's part, the
    largest lesion for "Which lobe?"; no number at all for a lesion when none was measured; None
    for no single one."""
    read = read_question(question, findings)
    structures = dict(zip((s.name for s in findings.structures), (scope for _, scope in subjects.structures)))
    named = [s.name for s in read.subjects if s.kind == "structure"]
    parts = lesion_parts_named(question)
    if named:
        return structures[named[-1]]
    if (read.places or Subjects.names_one_lesion(question)) and len(read.lesions) == 1:
        return subjects.lesions[findings.lesions.index(read.lesions[0])]
    if parts and subjects.lesions:  # "How much oedema is there?": the largest lesion's, as "the lesion" is
        return subjects.lesions[0].part(parts[0][1])
    if subjects.lesions and not read.subjects and asked_quantity(question) == "a side or a place":
        return subjects.lesions[0]  # "Which lobe is involved?": the largest lesion's
    if not subjects.lesions and _asks_of_a_lesion(question):
        return Scope(frozenset(), frozenset())  # a lesion asked about, and none measured: no number answers
    return None


def _subjects(findings: Findings, rounded: bool) -> Subjects:
    lesions = tuple(_lesion_scope(lesion, len(findings.lesions), rounded) for lesion in findings.lesions)
    structures = tuple((structure_pattern(s.name), _structure_scope(s, findings, rounded)) for s in findings.structures)
    counts = frozenset(_NUMBER.findall(findings_text(findings).splitlines()[1]))
    return Subjects(lesions, structures, counts)


_REGION_WORD = re.compile(
    r"(?:\b(left|right)\s+)?\b(" + "|".join(sorted(set(REGION_WORDS.values()))) + r")(?![a-z])", re.I
)


class GroundedDecoding(LogitsProcessor):
    """Masks every token after which the generated text would break the grounding (mask_row): a
    number not in it or not its subject's, a region, enhancement or crossing its lesion lacks, a
    unit its number lacks, an answer's first word the findings contradict. `grounding`: one for every row
    of the batch, or one per row (None leaves that row free: a batch may mix scans and tasks).
    `prompt_length`: where the generated tokens start in input_ids."""

    def __init__(self, tokenizer, grounding: Grounding | list[Grounding | None], prompt_length: int):
        self.tokenizer, self.grounding, self.prompt_length = tokenizer, grounding, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            grounding = self.grounding[row] if isinstance(self.grounding, list) else self.grounding
            if grounding is not None:
                scores[row] = mask_row(self.tokenizer, grounding, input_ids[row, self.prompt_length :], scores[row])
        return scores


def mask_row(
    tokenizer, grounding: Grounding, generated: torch.LongTensor | list[int], scores: torch.Tensor
) -> torch.Tensor:
    """One row's next-token `scores` with every token masked that would break the grounding after
    the `generated` tokens (in process, and in the vLLM server's plugin, fm.serve.vllm_plugin)."""
    generated = list(generated)
    tail = tokenizer.decode(generated[-_TAIL_TOKENS:], skip_special_tokens=True)
    running = _WRITING.search(tail)  # a number still being written at the very end?
    partial = running.group() if running else ""
    text = tokenizer.decode(generated, skip_special_tokens=True)
    before = text[: len(text) - len(partial)]
    scope, named = grounding.subjects.scope_at_end(before)
    if scope is not None and not INDEX_BEFORE.search(before):  # "Lesion 2": an index, not a measurement
        grounding = grounding.within(scope, named)
        pair = _PAIR.search(before)  # "82.6 x": the lesion's other diameter follows, not the same one again
        other = scope.other_diameter(pair.group(1)) if pair and named else None
        if other is not None:
            grounding = dataclasses.replace(grounding, numbers=other, verbatim=other & grounding.verbatim)
    sentence = sentence_at_end(text)
    lead = _UNIT_LEAD.search(sentence)
    lead = lead.group() if lead else ""
    enhancement_said = bool(_ENHANCEMENT.search(sentence))
    if partial and not grounding.complete(partial):
        keep = torch.zeros_like(scores, dtype=torch.bool)  # only its continuation may follow
    else:
        keep = torch.ones_like(scores, dtype=torch.bool)
    glued = not partial and text.endswith(".")  # "seen.0.6 mL": a number no reader (nor the guard) reads as one
    for token_id, piece in _rule_tokens(tokenizer).items():
        if token_id < keep.shape[0]:
            keep[token_id] = (
                not (glued and piece[:1].isdigit())
                and grounding.fits(partial + piece)
                and not grounding.names_banned_region(tail, piece)
                and not grounding.breaks_wording(tail, piece, lead, enhancement_said)
                and not grounding.refutes(text, piece)
            )
    if grounding.opening and _FIRST_WORD_OPEN.fullmatch(text):
        keep &= _opening_mask(tokenizer, grounding.opening, text).to(keep.device)[: keep.shape[0]]
    if not keep.any() and tokenizer.eos_token_id is not None:
        # a number no grounded one continues (sampling can write one): end the text rather than
        # leave no token at all, which sampling cannot draw from
        keep[tokenizer.eos_token_id] = True
    return scores.masked_fill(~keep, float("-inf"))


@functools.lru_cache(maxsize=32)  # per tokenizer and question kind: a scan of the whole vocabulary
def _opening_mask(tokenizer, words: frozenset[str], written: str) -> torch.Tensor:
    """Which tokens may follow `written` (no letters yet) so that the first word is one of `words`
    or on its way to one."""
    keep = torch.zeros(len(tokenizer), dtype=torch.bool)
    for token_id, piece in enumerate(_vocabulary(tokenizer)):
        first = re.match(r"[^a-z\d]*([a-z]*)(.?)", (written + piece).lower(), re.S)
        word, after = first.group(1), first.group(2)
        if not word:  # no digit before the first word: "5.8 %" is no answer to a yes/no question
            keep[token_id] = not after
        else:
            keep[token_id] = word in words if after else any(w.startswith(word) for w in words)
    return keep


@functools.lru_cache(maxsize=8)
def _vocabulary(tokenizer) -> list[str]:
    """Every token's text, by id."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [tokenizer.convert_tokens_to_string([piece]) for piece in pieces]


@functools.lru_cache(maxsize=8)  # per tokenizer: a scan of its whole vocabulary, not of each generation
def _rule_tokens(tokenizer) -> dict[int, str]:
    """The tokens that can break a rule, with their text: those with a digit, a point, a percent or
    times sign, and those whose first run of letters can finish a region's word, a unit, or a word of
    enhancement or midline crossing (all others end a number, which GroundedDecoding checks, and
    name nothing a rule is about)."""
    words = [*REGION_WORDS.values(), *_WORDING_WORDS]
    endings = {word[start:] for word in words for start in range(len(word))}
    checked = {}
    for token_id, text in enumerate(_vocabulary(tokenizer)):
        letters = re.match(r"[^a-z]*([a-z-]*)", text.lower()).group(1)
        if re.search(r"[\d.%×]", text) or letters in endings:
            checked[token_id] = text
    return checked
