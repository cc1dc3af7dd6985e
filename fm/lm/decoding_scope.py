"""Which lesion or structure the text being written speaks of, so that grounded decoding
(fm.lm.grounded_decoding) lets a number through only if it measures that subject: "The second
lesion ... measuring" may go on with the second lesion's volume and diameters, not the first's, and
name only the region the second lesion lies in, with its own enhancement. The faithfulness guard
(fm.report.faithfulness) still checks the finished text.

The reading works on text alone (the vLLM server's plugin has the grounding, not the findings):
ordinals ("the largest lesion", "the third lesion", "lesion 2") pick a lesion, a structure's name
picks the structure, plural lesion words ("3 lesions", "multifocal") and a heading free the text
again. A sentence with no subject of its own speaks of the one before ("There is 15.2 mL of
perilesional oedema.", "It is surrounded by ...").
"""

from __future__ import annotations

import dataclasses
import re

from fm.report.quantities import lesion_parts_named

_ORDINALS = {
    "largest": 1, "biggest": 1, "dominant": 1, "main": 1, "index": 1, "first": 1, "second": 2, "third": 3,
    "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
}  # fmt: skip
_LESION = r"(?:lesion|mass|tumou?r|focus|abnormality)"
_ORDINAL = re.compile(
    rf"\b(?:(?P<ordinal>{'|'.join(_ORDINALS)})\b(?=(?:[\s,-]+[\w-]+){{0,3}}?[\s,-]+{_LESION}\b)"
    rf"|the\s+(?P<alone>largest|biggest)\b(?!\s+(?:diameter|dimension|extent|axis))"
    rf"|{_LESION}\s+(?P<index>\d+)\b(?!\.\d))",
    re.I,
)
_MANY = re.compile(r"\b(?:lesions|masses|tumou?rs|foci|abnormalities|multifocal|multiple)\b", re.I)
_ONE = re.compile(rf"\b{_LESION}\b", re.I)
_HEADING = re.compile(r"^\s*[A-Z][A-Z ]+:", re.M)  # "IMPRESSION:" starts afresh
#: a number written right after a lesion word is its index ("Lesion 2:"), which no subject's numbers hold
INDEX_BEFORE = re.compile(rf"\b{_LESION}\s+\Z", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\D)|\n+")


def sentence_at_end(text: str) -> str:
    """The sentence `text` is writing."""
    return _SENTENCE_END.split(text)[-1]


@dataclasses.dataclass(frozen=True)
class Scope:
    """The subject a clause speaks of, as decoding binds it: the numbers that measure it (as the
    findings write them, and as a report may round them) and, for a lesion, which of them are
    lengths, those of its parts, its place, its enhancement and whether it crosses the midline."""

    numbers: frozenset[str]
    verbatim: frozenset[str]
    place: tuple[str, str] | None = None  # (side or "", region word) of a lesion
    lengths: frozenset[str] = frozenset()  # the numbers that are lengths: only these go before "x", "mm", "cm"
    amounts: frozenset[str] = frozenset()  # volumes, shares, counts: only these go before "mL", "cc", "%"
    parts: tuple[tuple[str, frozenset[str]], ...] = ()  # ("oedema", {"15.2", "15"}), ("necrotic", ...)
    character: str = ""  # fm.report.template_narrative.lesion_character's enhancement
    crosses: bool = False
    diameters: tuple[frozenset[str], ...] = ()  # the forms of the longest diameter, then of the short axis

    def to_json(self) -> dict:
        return {
            "numbers": sorted(self.numbers),
            "verbatim": sorted(self.verbatim),
            "place": self.place,
            "lengths": sorted(self.lengths),
            "amounts": sorted(self.amounts),
            "parts": [[kind, sorted(forms)] for kind, forms in self.parts],
            "character": self.character,
            "crosses": self.crosses,
            "diameters": [sorted(forms) for forms in self.diameters],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Scope":
        place = tuple(data["place"]) if data.get("place") else None
        parts = tuple((kind, frozenset(forms)) for kind, forms in data.get("parts", []))
        return cls(
            frozenset(data["numbers"]),
            frozenset(data["verbatim"]),
            place,
            frozenset(data.get("lengths", [])),
            frozenset(data.get("amounts", [])),
            parts,
            data.get("character", ""),
            data.get("crosses", False),
            tuple(frozenset(forms) for forms in data.get("diameters", [])),
        )

    def other_diameter(self, first: str) -> frozenset[str] | None:
        """After "`first` x", the forms the other diameter may take; None when `first` is both or neither."""
        if len(self.diameters) != 2:
            return None
        longest, short = (first in forms for forms in self.diameters)
        return self.diameters[1] if longest and not short else self.diameters[0] if short and not longest else None

    def part(self, kind: str) -> "Scope":
        """The scope of this lesion's `kind` part: its volume only."""
        forms = dict(self.parts).get(kind)
        if forms is None:
            return self
        return dataclasses.replace(
            self, numbers=forms, verbatim=forms & self.verbatim, lengths=frozenset(), amounts=forms
        )


@dataclasses.dataclass(frozen=True)
class Subjects:
    """What a text may speak of, for reading which one it speaks of: the lesions in the findings'
    order (lesion 1 the largest), the structures by the pattern that names them, the numbers a
    count may use, and the subject a question asks about (an answer starts on it)."""

    lesions: tuple[Scope, ...] = ()
    structures: tuple[tuple[str, Scope], ...] = ()  # (pattern naming it, scope)
    counts: frozenset[str] = frozenset()  # "lesions: 3 (2 left, 1 right)"
    asked: Scope | None = None

    def to_json(self) -> dict:
        return {
            "lesions": [lesion.to_json() for lesion in self.lesions],
            "structures": [[pattern, scope.to_json()] for pattern, scope in self.structures],
            "counts": sorted(self.counts),
            "asked": self.asked.to_json() if self.asked else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Subjects":
        return cls(
            tuple(Scope.from_json(lesion) for lesion in data["lesions"]),
            tuple((pattern, Scope.from_json(scope)) for pattern, scope in data["structures"]),
            frozenset(data["counts"]),
            Scope.from_json(data["asked"]) if data.get("asked") else None,
        )

    @staticmethod
    def names_one_lesion(text: str) -> bool:
        """Does `text` speak of one lesion ("How big is the lesion?"), not of several ("How many lesions?")?"""
        return bool(_ONE.search(text)) and not _MANY.search(text)

    def scope_at_end(self, text: str) -> tuple[Scope | None, bool]:
        """(the subject the end of `text` speaks of or None for no single one, whether its own
        sentence names it). A subject carried over from an earlier sentence binds numbers (with the
        counts allowed too: "There are 3 lesions."), not places: a new sentence may be about to
        name another lesion by its place. A lesion's part named since ("Surrounding oedema
        measures") narrows it to the part's volume."""
        scope = self.asked
        sentences = _SENTENCE_END.split(text)
        for position, sentence in enumerate(sentences):
            named_at, scope = self._read(sentence, scope)
            if position < len(sentences) - 1 or scope is None:
                continue
            # a lesion's part named since its subject: the number to come is that part's volume
            parts = [(start, kind) for start, kind in lesion_parts_named(sentence) if start > named_at]
            if parts:
                return scope.part(parts[-1][1]), named_at >= 0
            if named_at >= 0 or (position == 0 and scope is self.asked):  # an answer starts on what was asked
                return scope, True
            counts = self.counts
            return dataclasses.replace(
                scope, numbers=scope.numbers | counts, verbatim=scope.verbatim | counts, amounts=scope.amounts | counts
            ), False
        return scope, False

    def _read(self, sentence: str, scope: Scope | None) -> tuple[int, Scope | None]:
        """(where `sentence` last names a subject, -1 for nowhere; the subject at its end) for a
        sentence that starts on `scope`."""
        events: list[tuple[int, Scope | None]] = [(m.start(), None) for m in _HEADING.finditer(sentence)]
        events += [(m.start(), None) for m in _MANY.finditer(sentence)]
        for match in _ORDINAL.finditer(sentence):
            number = match.group("index") or _ORDINALS[(match.group("ordinal") or match.group("alone")).lower()]
            index = int(number) - 1
            events.append((match.start(), self.lesions[index] if index < len(self.lesions) else None))
        if len(self.lesions) == 1:
            events += [(m.start(), self.lesions[0]) for m in _ONE.finditer(sentence)]
        for pattern, structure in self.structures:
            events += [(m.start(), structure) for m in re.finditer(rf"\b(?:{pattern})\b", sentence, re.I)]
        if not events:
            return -1, scope
        return max(events, key=lambda event: event[0])
