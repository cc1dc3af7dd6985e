"""What the program does not measure, and how an answer says so.

The segmentation gives lesions (count, side, region, size, enhancement, oedema, necrosis) and the
volumes of brain structures. Everything else a reader may ask about or a model may write (midline
shift, a diagnosis, the patient's age, change since a prior scan, ...) cannot be checked against
the findings: a question about it is declined, and a sentence claiming it is shown as unchecked.
"""

from __future__ import annotations

import re

from fm.core.findings import Findings
from fm.report.quantities import asked_quantity, lesion_parts_named, structure_pattern
from fm.report.template_narrative import NOT_ASSESSED, lesion_character, ventricles

#: Topics the findings hold nothing on, each with the words that raise it.
TOPICS: dict[str, str] = {
    "midline shift": r"midline\s+shift|shift\s+of\s+the\s+midline|subfalcine|\bshift\b",
    "mass effect": r"mass\s+effect|effac\w*|compress\w*|herniat\w*|sulcal\s+crowding|displac\w*",
    "haemorrhage": r"h(?:a)?emorrha\w*|bleed\w*|blood\s+products|h(?:a)?emosiderin|microbleeds?|susceptibility",
    "diffusion": r"diffusion|restrict\w*|\badc\b|\bdwi\b",
    "signal characteristics": r"\b(?:hyper|hypo|iso)intense\b|\bt[12]\s+(?:signal|shine)",
    "calcification": r"calcif\w*",
    "perfusion": r"perfusion|\br?cbv\b",
    "diagnosis": (
        r"consistent\s+with|suggest\w*|compatible\s+with|represent(?:s|ed|ing)?\b(?!\s+(?:\d|about|approximately|around))|"
        r"in\s+keeping\s+with|differential|\bacute\b|\bdesh\b|"
        r"diagnos\w*|glioma|glioblastoma|astrocytoma|oligodendroglioma|metasta\w*|meningioma|lymphoma|abscess|"
        r"demyelinat\w*|multiple\s+sclerosis|infarct\w*|isch(?:a)?emi\w*|stroke|malignan\w*|benign|what\s+is\s+it\b|"
        r"favou?r\w*|glial|infiltrat\w*|cannot\s+be\s+excluded|normal\s+pressure\s+hydrocephalus|\bnph\b"
    ),
    "tumour grade": r"\bgrade\b|high-grade|low-grade|\bwho\s+(?:grade|classification)",
    "age": r"\bage\b|\bhow\s+old\b|years?\s+old|\baged\b",
    "sex": r"\bsex\b|\bgender\b|\bmale\b|\bfemale\b|\bman\b|\bwoman\b",
    "clinical history": (
        r"\bhistory\b|symptom\w*|present(?:ed|ing)\s+with|complain\w*|seizures?|headaches?|gait|cognitive|"
        r"correlat\w*|advis\w*|unstead\w*|dizz\w*|\bweakness\b|numbness"
    ),
    "white matter disease and atrophy": (
        r"white\s+matter\s+(?:hyperintensit\w*|lesions|changes|disease)|small\s+vessel|microangiopath\w*|"
        r"leuk\w*araiosis|gliosis|atroph\w*|volume\s+loss|transependymal|gr[ae]y-white|differentiation"
    ),
    "a third lesion dimension": r"cranio-?caudal\w*|supero-?inferior\w*|\bz-axis",
    "image quality": (
        r"artefact\w*|artifact\w*|\bmotion\b|degrad\w*|suboptimal|non-?diagnostic|image\s+quality|"
        r"limited\s+(?:study|examination|assessment)"
    ),
    "change since a prior scan": (
        r"\bprior\b|previous\w*|\binterval\b|compared\s+(?:with|to)|since\s+(?:the\s+)?(?:last|prior|previous|earlier)|"
        r"\bbt-?rads\b|\brano\b|\bstable\b|unchanged|\bno\s+change|\bago\b|since\s+the\s+(?:mri|ct|scan|study|examination)|\bgrown\b|\bgrowing\b|\bshrunk\w*|progress\w*|regress\w*|\bnew\b|follow-up"
    ),
    "treatment": (
        r"treat\w*|surg\w*|resect\w*|operat\w*|biops\w*|radiotherap\w*|chemotherap\w*|therapy|recommend\w*|"
        r"management|prognos\w*|survival|neurosurg\w*|\bconsider\b|dexamethasone|steroids?\b|anti-?(?:convulsant|epileptic)\w*"
    ),
    "other anatomy": (
        r"(?<!inside\sthe\s)skull|calvari\w*|paranasal|\bsinus(?:es)?\b|orbits?\b|vessels?\b|flow\s+voids?|arter\w*|venous|"
        r"mastoid\w*|pituitary|scalp|collections?\b|aqueduct\w*|(?:third|fourth)\s+ventricle|foram\w*|cistern\w*|(?<!crossing\sthe\s)(?<!across\sthe\s)corpus\s+callosum|genu|splenium|hippocamp\w*|falx|falcine|tentori\w*"
    ),
}
_TOPIC_PATTERNS = {topic: re.compile(rf"\b(?:{pattern})", re.I) for topic, pattern in TOPICS.items()}
_DECLINES = re.compile(
    r"\bnot\s+(?:measured|assessed|determined|known|available|evaluated)\b|"
    r"\bcannot\s+(?:be\s+)?(?:determined|assessed|measured|said|told|tell|say)\b|"
    r"\bdoes\s+not\s+(?:measure|assess|determine)\b|\bno\s+information\b",
    re.I,
)

WHAT_IS_MEASURED = (
    "lesions (number, side, region, size, enhancement, oedema and necrosis) and the volumes of brain structures"
)


def topics_in(text: str) -> list[str]:
    """The unmeasured topics `text` raises, in TOPICS order."""
    return [topic for topic, pattern in _TOPIC_PATTERNS.items() if pattern.search(text)]


def unmeasured_topic(question: str) -> str | None:
    """The first unmeasured topic a question asks about, or None when the findings may answer it."""
    found = topics_in(question)
    return found[0] if found else None


def decline(topic: str) -> str:
    """The answer to a question about `topic`: it is not measured, and what is."""
    return f"Not measured: {topic} is not assessed by this program, which measures {WHAT_IS_MEASURED} from the image."


def is_decline(text: str) -> bool:
    """Whether `text` is this program's answer to a question on an unmeasured topic (decline())."""
    return text.lstrip().startswith("Not measured:")


def declines(text: str) -> bool:
    """Whether `text` says that what was asked is not measured."""
    return bool(_DECLINES.search(text))


# -- what the program measures, but not on this scan -------------------------------------------

_ASKS_ENHANCEMENT = re.compile(r"enhanc\w*|contrast|gadolinium|take\s+up", re.I)
_ASKS_VENTRICLES = re.compile(r"ventric\w*|hydroceph\w*", re.I)


def not_measured_here(question: str, findings: Findings | None) -> str | None:
    """The answer to a question about something the program measures, but that these findings lack:
    a lesion's enhancement, oedema or necrosis without a contrast-enhanced scan, the size of
    ventricles or the volume of a structure cut by the image edge. None when the findings hold it,
    or are not given (an answer from the image alone)."""
    if findings is None:
        return None
    main = findings.lesions[0] if findings.lesions else None
    if main is not None and lesion_character(main)["enhancement"] == NOT_ASSESSED:
        if _ASKS_ENHANCEMENT.search(question) or lesion_parts_named(question):
            return (
                "Not measured: the lesion's enhancement, oedema and necrosis are not assessed on this scan "
                "(they need a contrast-enhanced T1 with the FLAIR)."
            )
    for structure in findings.structures:
        if structure.volume_ml is None and re.search(rf"\b(?:{structure_pattern(structure.name)})\b", question, re.I):
            return f"Not measured: the image edge cuts through the {structure.name} on this scan, so no volume is given for it."
    asks_size = asked_quantity(question) != "a volume"  # their volume is measured even when their size is not judged
    if _ASKS_VENTRICLES.search(question) and asks_size and ventricles(findings) is None:
        return (
            "Not measured: the size of the lateral ventricles is not judged on this scan, because the image edge "
            "cuts through the brain and its intracranial volume is not known."
        )
    return None
