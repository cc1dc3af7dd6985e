"""Reports written only from Findings: a structured report (sections of measured statements) and a
narrative in clinical style. The narrative picks among several phrasings with a seeded generator,
so training text varies while every number and side is copied from the findings, never invented.
This is the baseline the language model must match.
"""

from __future__ import annotations

import random

from fm.core.findings import Findings, Laterality, LesionFinding
from fm.core.labels import lesions_assessed

#: Lateral ventricles are reported as enlarged above this fraction of the intracranial volume
#: (all labelled brain and CSF); the MNI152 template's is 2.3 %, which keeps the judgement
#: independent of head size.
VENTRICLES_ENLARGED_FRACTION = 0.04
_MIDLINE_REGIONS = ("brainstem", "deep grey matter and internal capsule")
_ORDINALS = ("largest", "second", "third", "fourth", "fifth")

_SIDE = {
    Laterality.left: "left",
    Laterality.right: "right",
    Laterality.bilateral: "bilateral",
    Laterality.midline_crossing: "midline-crossing",
}


#: What a lesion's enhancement is called when its sub-regions were not measured (no contrast-enhanced scan).
NOT_ASSESSED = "enhancement not assessed"


def lesion_character(lesion: LesionFinding) -> dict[str, float | str]:
    """Descriptors derived from a lesion's nested sub-region volumes."""
    whole = lesion.subregion_volumes_ml.get("whole_tumour", lesion.volume_ml)
    core = lesion.subregion_volumes_ml.get("tumour_core", 0.0)
    enhancing = lesion.subregion_volumes_ml.get("enhancing_tumour", 0.0)
    necrotic = max(core - enhancing, 0.0)
    if "tumour_core" not in lesion.subregion_volumes_ml:  # sub-region volumes are unknown, not zero
        return {
            "enhancement": NOT_ASSESSED,
            "oedema_ml": None,
            "core_ml": None,
            "enhancing_ml": None,
            "necrotic_ml": None,
        }
    if core <= 0:
        enhancement = "oedema-like"  # signal change without a solid core
    elif enhancing <= 0:
        enhancement = "non-enhancing"
    elif necrotic > 0.2 * core:
        enhancement = "rim-enhancing"
    else:
        enhancement = "solidly enhancing"
    return {
        "enhancement": enhancement,
        "oedema_ml": max(whole - core, 0.0),
        "core_ml": core,
        "enhancing_ml": enhancing,
        "necrotic_ml": necrotic,
    }


def location(lesion: LesionFinding) -> str:
    if lesion.laterality in (Laterality.left, Laterality.right):
        return f"{_SIDE[lesion.laterality]} {lesion.region}"
    if lesion.laterality == Laterality.bilateral:
        if lesion.region in _MIDLINE_REGIONS:
            return f"{lesion.region}, on both sides of the midline"
        return f"{lesion.region}, extending across the midline into both hemispheres"
    return f"{side_of(lesion)} {lesion.region}, crossing the midline"


def side_of(lesion: LesionFinding) -> str:
    """The side a lesion is reported on: left, right, 'left, crossing the midline', or 'both sides'."""
    if lesion.laterality in (Laterality.left, Laterality.right):
        return _SIDE[lesion.laterality]
    if lesion.laterality == Laterality.bilateral:
        return "both sides"
    return "right" if lesion.right_fraction > 0.5 else "left"


def lesion_volume(lesion: LesionFinding) -> str:
    """'12.3 mL', or for a lesion cut by the image edge '12.3 mL or more (it reaches the image edge)'."""
    return f"{lesion.volume_ml:.1f} mL" + (" or more (it reaches the image edge)" if lesion.touches_border else "")


def lesion_noun(lesion: LesionFinding) -> str:
    character = lesion_character(lesion)
    if character["enhancement"] == NOT_ASSESSED:
        return f"lesion ({NOT_ASSESSED}: no contrast-enhanced scan)"
    if character["enhancement"] == "oedema-like":
        return "area of oedema-like signal change without a solid core"
    return f"{character['enhancement']} lesion"


def structured_report(findings: Findings) -> dict:
    """Sections of short statements, each carrying the numbers it rests on."""
    g = findings.geometry
    technique = {
        "grid": "x".join(map(str, g.shape)),
        "spacing_mm": [round(s, 2) for s in g.spacing_mm],
        "orientation": g.orientation,
        "source": findings.provenance.source,
    }
    lesions = []
    for lesion in findings.lesions:
        character = lesion_character(lesion)
        lesions.append(
            {
                "lesion_id": lesion.lesion_id,
                "location": location(lesion),
                "laterality": lesion.laterality.value,
                "region": lesion.region,
                "volume_ml": round(lesion.volume_ml, 1),
                "longest_diameter_mm": round(lesion.longest_diameter_mm, 1),
                "short_axis_mm": round(lesion.short_axis_mm, 1),
                "enhancement": character["enhancement"],
                "oedema_ml": _round(character["oedema_ml"]),
                "necrotic_core_ml": _round(character["necrotic_ml"]),
                "enhancing_ml": _round(character["enhancing_ml"]),
                "centroid_ras_mm": [round(v, 1) for v in lesion.centroid_ras_mm],
                "incomplete": lesion.touches_border,
                "confidence": round(lesion.confidence, 3),
            }
        )
    structures = [
        {
            "name": s.name,
            "volume_ml": _round(s.volume_ml),
            "incomplete": s.touches_border,
        }
        for s in findings.structures
    ]
    return {
        "technique": technique,
        "findings": {"lesions": lesions, "structures": structures},
        "impression": impression(findings),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def ventricles(findings: Findings) -> tuple[float, bool, float] | None:
    """(lateral ventricle volume in mL, enlarged?, fraction of the intracranial volume), or None
    when it cannot be judged (no such structure, or the intracranial volume is cut by the edge)."""
    try:
        v = findings.structure("lateral ventricles")
    except KeyError:
        return None
    if any(s.touches_border for s in findings.structures):
        return None
    intracranial = sum(s.volume_ml for s in findings.structures) + sum(lesion.volume_ml for lesion in findings.lesions)
    fraction = v.volume_ml / intracranial if intracranial > 0 else 0.0
    return v.volume_ml, fraction > VENTRICLES_ENLARGED_FRACTION, fraction


def side_counts(findings: Findings) -> str:
    """How many lesions lie on each side: '2 left, 1 across the midline' (sides in sorted order)."""
    counts: dict[str, int] = {}
    for lesion in findings.lesions:
        key = side_of(lesion) if lesion.laterality in (Laterality.left, Laterality.right) else "across the midline"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {key}" for key, n in sorted(counts.items()))


def impression(findings: Findings) -> list[str]:
    lines = []
    if not lesions_assessed(findings.provenance.label_set):
        lines.append(
            f"Structure volumes only: the {findings.provenance.label_set} label set has no lesion classes, so lesions were not assessed."
        )
    elif not findings.lesions:
        lines.append("No focal lesion.")
    elif len(findings.lesions) == 1:
        lesion = findings.lesions[0]
        lines.append(f"Single {lesion_noun(lesion)} in the {location(lesion)}, {lesion_volume(lesion)}.")
    else:
        lines.append(
            f"Multifocal disease: {len(findings.lesions)} lesions ({side_counts(findings)}), "
            f"the largest {lesion_volume(findings.lesions[0])} in the {location(findings.lesions[0])}."
        )
    judged = ventricles(findings)
    if judged is not None and judged[1]:
        lines.append(
            f"Enlarged lateral ventricles ({judged[0]:.1f} mL, {100 * judged[2]:.1f} % of intracranial volume)."
        )
    if any(s.touches_border for s in findings.structures):
        lines.append("Coverage is incomplete: structures reaching the edge of the image are not fully measured.")
    return lines


_LESION_OPENERS = (
    "There is a {noun} in the {loc}",
    "A {noun} is seen in the {loc}",
    "In the {loc} there is a {noun}",
    "A {noun} is centred in the {loc}",
)
_ORDINAL_OPENERS = (
    "The {ordinal} lesion is {enh} and lies in the {loc}",
    "The {ordinal} lesion, {enh}, is in the {loc}",
)
_SIZE_PHRASES = (
    ", measuring {long:.1f} x {short:.1f} mm ({vol:.1f} mL).",
    ", measuring {vol:.1f} mL in volume, {long:.1f} mm in longest diameter and {short:.1f} mm across.",
    " ({long:.1f} x {short:.1f} mm; volume {vol:.1f} mL).",
)
_OEDEMA_PHRASES = (
    "Surrounding oedema measures {oedema:.1f} mL.",
    "It is surrounded by {oedema:.1f} mL of oedema.",
    "There is {oedema:.1f} mL of perilesional oedema.",
)
_NECROSIS_PHRASES = (
    "The core contains {necrotic:.1f} mL of non-enhancing or necrotic tissue.",
    "A necrotic or non-enhancing component of {necrotic:.1f} mL is present centrally.",
)
_NORMAL_PHRASES = (
    "No focal parenchymal lesion is identified.",
    "There is no focal lesion.",
    "No mass lesion or abnormal signal focus is seen.",
)
_VENTRICLE_PHRASES = {
    "normal": (
        "The lateral ventricles are normal in size ({vol:.1f} mL, {pct:.1f} % of intracranial volume).",
        "Ventricular size is within normal limits ({vol:.1f} mL, {pct:.1f} % of intracranial volume).",
    ),
    "enlarged": (
        "The lateral ventricles are enlarged ({vol:.1f} mL, {pct:.1f} % of intracranial volume).",
        "There is ventricular enlargement, the lateral ventricles measuring {vol:.1f} mL ({pct:.1f} % of intracranial volume).",
    ),
}


def narrative_report(findings: Findings, seed: int = 0, impression_lines: list[str] | None = None) -> str:
    """FINDINGS and IMPRESSION in clinical prose, every number taken from `findings`.

    impression_lines: the impression to close with, default `impression(findings)`; a Report
        passes its own, which adds what depends on the model (its detection caveat), so that the
        narrative read alone says what the structured report says."""
    rng = random.Random(seed)
    sentences = []
    if not lesions_assessed(findings.provenance.label_set):
        measured = [
            f"{s.name} {s.volume_ml:.1f} mL" for s in findings.structures if not s.touches_border and s.volume_ml > 0
        ]
        cut = [s.name for s in findings.structures if s.touches_border]
        sentences.append("Measured volumes: " + (", ".join(measured) if measured else "none") + ".")
        if cut:
            sentences.append(f"Incompletely imaged (not measured): {', '.join(cut)}.")
    elif not findings.lesions:
        sentences.append(rng.choice(_NORMAL_PHRASES))
    elif len(findings.lesions) > 1:
        sentences.append(f"There are {len(findings.lesions)} separate lesions.")
    for rank, lesion in enumerate(findings.lesions):
        character = lesion_character(lesion)
        if len(findings.lesions) > 1:
            ordinal = _ORDINALS[rank] if rank < len(_ORDINALS) else "next"
            enh = (
                character["enhancement"]
                if character["enhancement"] != "oedema-like"
                else "oedema-like without a solid core"
            )
            opener = rng.choice(_ORDINAL_OPENERS).format(ordinal=ordinal, enh=enh, loc=location(lesion))
        else:
            opener = rng.choice(_LESION_OPENERS).format(noun=lesion_noun(lesion), loc=location(lesion))
        size = rng.choice(_SIZE_PHRASES).format(
            long=lesion.longest_diameter_mm, short=lesion.short_axis_mm, vol=lesion.volume_ml
        )
        sentences.append(opener + size)
        if character["enhancement"] not in ("oedema-like", NOT_ASSESSED) and character["oedema_ml"] >= 0.1:
            sentences.append(rng.choice(_OEDEMA_PHRASES).format(oedema=character["oedema_ml"]))
        if character["enhancement"] == "rim-enhancing":
            sentences.append(rng.choice(_NECROSIS_PHRASES).format(necrotic=character["necrotic_ml"]))
        if lesion.touches_border:
            sentences.append("It extends to the edge of the imaged volume, so its size is underestimated.")
    judged = ventricles(findings)
    if judged is not None:
        phrase = rng.choice(_VENTRICLE_PHRASES["enlarged" if judged[1] else "normal"])
        sentences.append(phrase.format(vol=judged[0], pct=100 * judged[2]))
    if impression_lines is None:
        impression_lines = impression(findings)
    return (
        "FINDINGS:\n" + " ".join(sentences) + "\n\nIMPRESSION:\n" + "\n".join(f"- {line}" for line in impression_lines)
    )
