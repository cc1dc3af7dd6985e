"""The faithfulness guard scored on a labelled corpus of radiology-style text.

A corpus (YAML) holds short reports, each a list of sentences labelled `ok`, `contradiction` (a
claim the findings disagree with) or `unchecked` (a claim about something the program does not
measure), and the name of the findings it is read against; the findings are the bundled example's
with lesions and volumes replaced as a second YAML file says. The guard reads each report whole
(so "It measures ..." is bound to what the sentence before named), and each sentence it calls
contradictory or unchecked is matched back to its labelled sentence.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import yaml

from fm.core.errors import InputFileError
from fm.core.examples import example_path
from fm.core.findings import Findings, Laterality, LesionFinding
from fm.report.faithfulness import check

LABELS = ("ok", "contradiction", "unchecked")


@dataclasses.dataclass(frozen=True)
class LabelledSentence:
    report: int  # index of its report in the corpus
    findings: str
    text: str
    label: str  # one of LABELS
    said: str  # what the guard called it: "contradiction", "unchecked" or "ok"
    why: tuple[str, ...]  # the guard's contradictions or unchecked claims in it


def example_findings() -> Findings:
    return Findings.from_json((example_path().parent / "example_brain_t1_findings.json").read_text())


def load_findings(path: Path) -> dict[str, Findings]:
    """The named findings of a corpus: the example's, with `lesions` and `volumes_ml` replaced."""
    base = example_findings()
    named = {}
    for name, change in _read_yaml(path).items():
        change = change or {}
        lesions = base.lesions
        if "lesions" in change:
            lesions = [_lesion(index + 1, spec) for index, spec in enumerate(change["lesions"])]
        volumes = change.get("volumes_ml", {})
        structures = [s.model_copy(update={"volume_ml": volumes.get(s.name, s.volume_ml)}) for s in base.structures]
        named[name] = base.model_copy(update={"lesions": lesions, "structures": structures})
    return named


def _lesion(lesion_id: int, spec: dict) -> LesionFinding:
    laterality = Laterality(spec["laterality"])
    right_fraction = spec.get("right_fraction", {"left": 0.0, "right": 1.0}.get(laterality.value, 0.5))
    subregions = {"whole_tumour": spec["volume_ml"]}
    if "core_ml" in spec:
        subregions |= {"tumour_core": spec["core_ml"], "enhancing_tumour": spec["enhancing_ml"]}
    longest, short = spec["diameters_mm"]
    return LesionFinding(
        lesion_id=lesion_id,
        component_id=lesion_id,
        label_ids=[7, 8, 9] if "core_ml" in spec else [7],
        volume_ml=spec["volume_ml"],
        subregion_volumes_ml=subregions,
        centroid_ras_mm=(30.0 if right_fraction > 0.5 else -30.0, -20.0, 30.0),
        laterality=laterality,
        right_fraction=right_fraction,
        region=spec["region"],
        longest_diameter_mm=longest,
        short_axis_mm=short,
        touches_border=False,
        confidence=1.0,
    )


def score(corpus_path: Path, findings_path: Path) -> list[LabelledSentence]:
    """Every labelled sentence of the corpus with what the guard said of it."""
    named = load_findings(findings_path)
    scored = []
    for index, report in enumerate(_read_yaml(corpus_path)):
        name = report["findings"]
        if name not in named:
            raise InputFileError(corpus_path, f"report {index} names findings {name!r}, not in {findings_path.name}")
        sentences = [(label, text.strip()) for label, text in (next(iter(s.items())) for s in report["report"])]
        for label, text in sentences:
            if label not in LABELS:
                raise InputFileError(corpus_path, f"report {index}: label {label!r} is not one of {LABELS}")
        text = " ".join(sentence for _, sentence in sentences)
        starts = [0]
        for _, sentence in sentences[:-1]:
            starts.append(starts[-1] + len(sentence) + 1)
        result = check(text, named[name])
        said: dict[int, list[tuple[str, str]]] = {}
        for kind, claims in (("contradiction", result.contradictions), ("unchecked", result.unchecked)):
            for claim in claims:
                at = _sentence_index(text, claim.sentence, starts)
                said.setdefault(at, []).append((kind, str(claim)))
        for at, (label, sentence) in enumerate(sentences):
            kinds = [kind for kind, _ in said.get(at, [])]
            verdict = "contradiction" if "contradiction" in kinds else ("unchecked" if kinds else "ok")
            why = tuple(claim for _, claim in said.get(at, []))
            scored.append(LabelledSentence(index, name, sentence, label, verdict, why))
    return scored


def _sentence_index(text: str, guard_sentence: str, starts: list[int]) -> int:
    """The labelled sentence in which the guard's sentence starts."""
    position = text.find(guard_sentence)
    return max(i for i, start in enumerate(starts) if start <= max(position, 0))


def summary(scored: list[LabelledSentence]) -> dict:
    """Recall of contradictions, false alarms (sound sentences called contradictory), and how the
    unmeasured claims were treated."""
    counts = Counter((s.label, s.said) for s in scored)
    labelled = Counter(s.label for s in scored)
    wrong = labelled["contradiction"]
    sound = labelled["ok"] + labelled["unchecked"]
    flagged = sum(n for (label, said), n in counts.items() if said == "contradiction")
    return {
        "reports": len({s.report for s in scored}),
        "sentences": len(scored),
        "labelled": dict(labelled),
        "contradiction_recall": counts["contradiction", "contradiction"] / wrong if wrong else float("nan"),
        "contradiction_precision": counts["contradiction", "contradiction"] / flagged if flagged else float("nan"),
        "false_alarm_rate": (counts["ok", "contradiction"] + counts["unchecked", "contradiction"]) / sound
        if sound
        else float("nan"),
        "unchecked_recall": counts["unchecked", "unchecked"] / labelled["unchecked"]
        if labelled["unchecked"]
        else float("nan"),
        "ok_called_unchecked": counts["ok", "unchecked"],
        "confusion": {f"{label} -> {said}": n for (label, said), n in sorted(counts.items())},
    }


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputFileError(path, f"cannot read the guard corpus: {error}") from None
