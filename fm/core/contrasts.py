"""MRI contrast names: the ones the brain pipeline knows, and a guess from a file or series name.

The contrast decides how lesions are read (FLAIR and T2 show them bright, a contrast-enhanced T1
shows enhancement), so a guess is always stated in the report and can be overridden with
`--contrasts`.
"""

from __future__ import annotations

import re

from fm.core.errors import InputError, look_up

#: name -> what it is
CONTRASTS = {
    "t1": "T1-weighted",
    "t1c": "contrast-enhanced T1-weighted",
    "t2": "T2-weighted",
    "flair": "T2 FLAIR",
    "pd": "proton-density-weighted",
    "unknown": "contrast not stated",
}

# Checked in this order on the lower-cased name; the first that matches wins.
_PATTERNS = (
    ("flair", r"flair"),
    (
        "t1c",
        r"t1[-_ ]?(c|ce|gd|post|contrast)\b|t1[-_ ]?(c|ce|gd)[-_ .]|mprage[-_ ]?gd|\bgd\b|_gd[._]|t1gd|postcontrast",
    ),
    ("pd", r"(^|[^a-z])pd([^a-z]|$)|proton"),
    ("t2", r"t2"),
    ("t1", r"t1|mprage|spgr|bravo"),
)


def guess_contrast(name: str) -> str:
    """A contrast from a file name or DICOM SeriesDescription; 'unknown' when nothing matches."""
    lowered = name.lower()
    for contrast, pattern in _PATTERNS:
        if re.search(pattern, lowered):
            return contrast
    return "unknown"


def check_contrast_names(names) -> None:
    """An InputError naming the first name that is not a contrast this package knows, and the choices."""
    for name in names:
        look_up("contrast", name, CONTRASTS)


def parse_contrasts(text: str, count: int) -> list[str]:
    """`--contrasts flair,t1c` -> ['flair', 't1c'], one per scan; a clear error otherwise."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    check_contrast_names(names)
    if len(names) != count:
        raise InputError(f"--contrasts names {len(names)} contrasts for {count} scans")
    return names
