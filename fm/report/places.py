"""Where a sentence puts a lesion, read the way radiologists write it: sides in full or abbreviated
("left", "R", "Lt", "right-sided"), lobes with or without "lobe" ("R frontal", "left parietal
white matter", "frontoparietal"), deep structures and the brainstem by their parts ("thalamus",
"pons"), and whether the lesion crosses the midline. A place said not to hold a lesion ("no lesion
in the left frontal lobe", "the left frontal lobe is unremarkable") is a negated place.
"""

from __future__ import annotations

import dataclasses
import re

from fm.core.findings import Laterality, LesionFinding
from fm.report.template_narrative import side_of

REGIONS = (  # lobe-level regions as fm.core.regions names them
    "frontal lobe",
    "parietal lobe",
    "temporal lobe",
    "occipital lobe",
    "insula",
    "cerebellum",
    "brainstem",
    "deep grey matter and internal capsule",
    "extra-axial space",  # fm.core.regions.EXTRA_AXIAL: beyond the template brain
)
_DEEP = "deep grey matter and internal capsule"
_CEREBRAL = ("frontal lobe", "parietal lobe", "temporal lobe", "occipital lobe", "insula", _DEEP)
_LOBES = {"front": "frontal lobe", "pariet": "parietal lobe", "tempor": "temporal lobe", "occipit": "occipital lobe"}
#: (words, the regions they name); combined lobes ("frontoparietal") name either
_REGION_WORDS = (
    (r"(?:fronto|parieto|temporo|occipito)-?(?:frontal|parietal|temporal|occipital)", None),
    (r"bifrontal", ("frontal lobe",)),
    (r"frontal(?:\s+lobes?)?", ("frontal lobe",)),
    (r"parietal(?:\s+lobes?)?", ("parietal lobe",)),
    (r"temporal(?:\s+lobes?)?", ("temporal lobe",)),
    (r"occipital(?:\s+lobes?)?", ("occipital lobe",)),
    (r"insula|insular(?:\s+cortex)?", ("insula",)),
    (r"cerebell(?:um|ar)(?:\s+hemispheres?)?", ("cerebellum",)),
    (r"brain\s*stem|pons|pontine|midbrain|medulla(?:\s+oblongata)?", ("brainstem",)),
    (
        r"deep\s+gr[ae]y\s+matter(?:\s+and\s+internal\s+capsule)?|basal\s+ganglia|thalam(?:us|i|ic)|"
        r"internal\s+capsule|lentiform(?:\s+nucleus)?|caudate(?:\s+nucleus)?|putamen|globus\s+pallidus",
        (_DEEP,),
    ),
    (r"extra-axial(?:\s+spaces?)?", ("extra-axial space",)),
    (r"(?:cerebral\s+)?hemispheres?", _CEREBRAL),
)
# "frontal horn", "temporal bone", "frontal sinus": anatomy that holds no lesion of ours
_NOT_BRAIN = r"(?!\s+(?:horns?|sinus(?:es)?|bones?|scalp|calvari\w*|skull|squama|collections?|fluid))"
_REGION = "|".join(f"(?:{words})" for words, _ in _REGION_WORDS)
_SIDE_WORD = r"(?:(?i:left|right)(?:-sided)?|R|L|Rt|Lt)"
_MODIFIERS = r"(?:(?i:superior|inferior|anterior|posterior|medial|lateral|mesial|deep|mid|upper|lower|parasagittal|high|subcortical|juxtacortical|cortical|periventricular)\s+){0,2}"
_PLACE = re.compile(rf"\b(?:(?P<side>{_SIDE_WORD})\s+{_MODIFIERS})?(?P<region>(?i:{_REGION})){_NOT_BRAIN}\b")
# a side alone ("a left-sided lesion", "on the right"), but not a side of a structure nor a count ("2 left")
_SIDE_ALONE = re.compile(
    r"(?<!\d\s)\b(?P<side>left|right)(?:-sided)?\b"
    r"(?!\s+(?:(?:cerebral|cerebellar)\s+)?(?:gr[ae]y|white|hemisphere|lateral\s+ventricle|ventricle|and\b|or\b))",
    re.I,
)
# "Side: L": an abbreviated side under a heading (in full, _SIDE_ALONE reads it)
_SIDE_HEADING = re.compile(r"(?:\bside\s*:\s*|\bon\s+the\s+)(?P<side>(?-i:L|R|Lt|Rt))\b", re.I)
_CROSSES = re.compile(
    r"\b(?:cross(?:es|ing)?|extend(?:s|ing)?\s+across|(?<!\d\s)across)\s+(?:the\s+)?(?:midline|corpus\s+callosum)|"
    r"\bcross(?:es|ing)\s+(?:in)?to\s+the\s+(?:left|right|other|opposite|contralateral)|"
    r"\b(?:reach|extend|spread|pass)(?:es|s|ing)?\s+(?:across\s+)?(?:in)?to\s+the\s+(?:other|opposite|contralateral)\s+(?:side|hemisphere)|"
    r"\bbilateral(?!\s+(?:lateral\s+)?ventric)|\bboth\s+(?:hemispheres|sides)|\bbifrontal|\bbutterfly|\btranscallosal",
    re.I,
)
_DOES_NOT_CROSS = re.compile(
    r"\b(?:does\s+not|doesn't|not|without)\s+(?:\w+\s+)?(?:cross(?:ing)?|extend(?:ing)?\s+across)\s+(?:the\s+)?midline|"
    r"\b(?:does\s+not|doesn't|not)\s+(?:reach|extend|spread|pass)\w*\s+(?:across\s+)?(?:in)?to\s+the\s+(?:other|opposite|contralateral)\s+(?:side|hemisphere)|"
    r"\bconfined\s+to\s+(?:the\s+)?(?:left|right|(?-i:L|R|Lt|Rt))\b|\b(?:nothing|none)\s+(?:\w+\s+)?cross(?:es)?\s+(?:the\s+)?midline|(?<!and\s)(?<!or\s)\b(?:left|right)\s+(?:[\w-]+\s+){0,2}only\b",
    re.I,
)
# "no lesion in", "without involvement of", "does not involve": the place that follows holds no lesion
_DENIED_BEFORE = re.compile(
    r"(?:\b(?:no|without|nor|absent|free\s+of)\b(?:\s+[\w-]+){0,3}?\s+(?:lesions?|mass(?:es)?|abnormalit\w*|"
    r"involvement|extension|disease|signal\s+abnormalit\w*|foci|focus)\b[^,;]*|"
    r"\bnothing\b(?:(?!\b(?:else|apart|except|other\s+than|besides|but)\b)[^,;])*|"
    r"\b(?:does|do)\s+not\s+(?:involve|affect|extend|reach)\w*(?:\s+into)?)\s*(?:of\s+|in\s+|into\s+|within\s+)?"
    r"(?:the\s+|either\s+|both\s+)?$",
    re.I,
)
# what follows a place (or a list of places: "frontal, parietal and occipital lobes") that denies it a lesion
_DENIED_AFTER = re.compile(
    r"^(?:\s*(?:,|and|or)\s+(?:the\s+|both\s+|either\s+)?[\w-]+(?:\s+lobes?)?)*\s*"
    r"(?:\s(?:is|are|appears?|remains?)\s+(?:otherwise\s+)?(?:normal|unremarkable|spared|clear|free\s+of)|"
    r"\s(?:contains?|shows?|has|have)\s+no\b|:\s*(?:no\b|nil\b|normal|unremarkable|clear|negative)|"
    r"\s(?:is|are)\s+not\s+(?:involved|affected)|\s+(?:clear|normal|unremarkable|spared)\s*(?:[.;,]|$))",
    re.I,
)
# "..., as are the cerebellum and brainstem" after a list said to be clear
_DENIED_TOO = re.compile(
    r"(?:clear|normal|unremarkable|spared|free\s+of\s+[\w\s]+?)\s*,?\s+as\s+(?:are|is)\s+(?:the\s+)?"
    r"(?:[\w-]+(?:\s+lobes?)?\s*(?:,|and|or)\s+(?:the\s+)?)*$",
    re.I,
)
# the places of a list after a denied one: "no lesion in the basal ganglia, thalami, brainstem or cerebellum";
# a place that goes on into a clause of its own ("..., and the right parietal lobe contains a mass") is not one
_LIST_GAP = re.compile(r"\s*(?:,|,?\s*(?:and|or|nor))\s*(?:the\s+|either\s+)?", re.I)
_LIST_ITEM_END = re.compile(r"(?:\s+lobes?)?\s*(?:,|\band\b|\bor\b|\bnor\b|[.;:]|$)", re.I)
# "No cerebellar or brainstem lesion": the places stand as adjectives of what is denied
_DENIED_ADJECTIVE = re.compile(
    r"\b(?:no|without)\s+(?:(?:evidence|of|a|an|any|other|further|new|additional|focal|definite|or|and|the|left|right)\s+|[\w-]+\s+or\s+){0,4}$",
    re.I,
)


@dataclasses.dataclass(frozen=True)
class Place:
    side: str | None  # "left", "right", or None when the region is named without one
    regions: tuple[str, ...]  # the regions it may be (one, or two for "frontoparietal")
    denied: bool  # the sentence says no lesion is there
    start: int
    end: int

    def __str__(self) -> str:
        region = " or ".join(self.regions)
        return f"{self.side} {region}" if self.side else region


_RELATIVE_BEFORE = re.compile(r"\b(?:other|opposite|contralateral)\s+$", re.I)


def places_in(sentence: str) -> list[Place]:
    """Every place the sentence names, in order."""
    found = []
    for match in _PLACE.finditer(sentence):
        if _RELATIVE_BEFORE.search(sentence[: match.start()]):
            continue  # "reaches across to the other hemisphere": where it goes from its own side, not a place
        side = _side(match.group("side")) if match.group("side") else None
        region_words = match.group("region").lower()
        regions = next(
            (names for words, names in _REGION_WORDS if names and re.fullmatch(words, region_words)),
            None,
        ) or tuple(name for stem, name in _LOBES.items() if stem in region_words)
        if regions == _CEREBRAL and not region_words.startswith("cerebral") and _cerebellar(found):
            regions = ("cerebellum",)  # "cerebellum, extending across the midline into both hemispheres"
        before = _clause_before(sentence, match.start())
        denied = bool(
            _DENIED_BEFORE.search(before)
            or _DENIED_ADJECTIVE.search(before)
            or _DENIED_AFTER.match(sentence[match.end() :])
            or _DENIED_TOO.search(sentence[: match.start()])
            or (
                found
                and found[-1].denied
                and _LIST_GAP.fullmatch(sentence[found[-1].end : match.start()])
                and _LIST_ITEM_END.match(sentence, match.end())
            )
        )
        found.append(Place(side, regions, denied, match.start(), match.end()))
    return found


def _cerebellar(found: list[Place]) -> bool:
    """Is the last place named the cerebellum, whose hemispheres a sentence may go on to name?"""
    return bool(found) and found[-1].regions == ("cerebellum",) and not found[-1].denied


def sides_alone(sentence: str, places: list[Place]) -> list[tuple[str, bool]]:
    """(side, denied) for each side named outside a place ("a right-sided lesion")."""
    found = []
    for match in [*_SIDE_ALONE.finditer(sentence), *_SIDE_HEADING.finditer(sentence)]:
        if any(p.start <= match.start() < p.end for p in places):
            continue
        denied = bool(_DENIED_BEFORE.search(_clause_before(sentence, match.start())))
        found.append((_side(match.group("side")), denied))
    return found


def crossing_claim(sentence: str) -> bool | None:
    """True when the sentence says a lesion crosses the midline (or is bilateral), False when it
    says one does not, None when it says neither."""
    if _DOES_NOT_CROSS.search(sentence):
        return False
    if _CROSSES.search(sentence):
        return True
    return None


def crosses(lesion: LesionFinding) -> bool:
    return lesion.laterality in (Laterality.bilateral, Laterality.midline_crossing)


def on_side(lesion: LesionFinding, side: str, crossing_named: bool = False) -> bool:
    """A bilateral lesion is on both sides; one crossing the midline is on the side holding most of
    it, and on either when the sentence also says it crosses ("left thalamus, crossing the midline")."""
    if lesion.laterality == Laterality.bilateral:
        return True
    if lesion.laterality == Laterality.midline_crossing:
        return crossing_named or side_of(lesion) == side
    return lesion.laterality.value == side


def lesions_at(place: Place, lesions: list[LesionFinding], crossing_named: bool = False) -> list[LesionFinding]:
    return [
        lesion
        for lesion in lesions
        if lesion.region in place.regions and (place.side is None or on_side(lesion, place.side, crossing_named))
    ]


def _side(word: str) -> str:
    return "left" if word.lower().startswith("l") else "right"


def _clause_before(sentence: str, position: int) -> str:
    """The text of the clause up to `position`: from the last , ; : or 'but'/'while' before it."""
    before = sentence[:position]
    cut = max((m.end() for m in re.finditer(r"[,;:]|\b(?:but|while|whereas|and)\b", before)), default=0)
    return before[cut:]
