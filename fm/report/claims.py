"""What the faithfulness guard says of a sentence, and the sentence as it reads it: shared by the
guard (fm.report.faithfulness) and its reading of numbers (fm.report.quantities)."""

from __future__ import annotations

import dataclasses
import re

from fm.core.findings import LesionFinding
from fm.report import places as where

# a sentence that starts on what the one before was about ("It measures ...", "The lesion enhances")
CONTINUES = re.compile(
    r"^\s*(?:it|its|this|the\s+(?:lesion|mass|tumou?r|abnormality)|there\s+is\s+(?:surrounding|associated))\b", re.I
)


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


@dataclasses.dataclass
class Sentence:
    """One sentence being read, with what it names."""

    text: str
    subjects: list
    places: list[where.Place]
    crossing: bool | None
    lesions: list[LesionFinding]  # the lesions it speaks of
    asked: bool = False  # a question, which an answer's first sentence answers


def clause_end(text: str, position: int) -> int:
    found = re.compile(r"[,;:]|\b(?:but|while|whereas)\b").search(text, position)
    return found.start() if found else len(text)
