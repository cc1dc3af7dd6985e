"""The Report: Findings plus everything a reader needs to trust or question them, and its text
renderers (schema-versioned JSON, Markdown). The PDF and pictures are in fm.report.render, the
report folder in fm.pipeline.report_folder.

Every number in a Report comes from its Findings; the structured report and the template narrative
are made from them by fm.report.template_narrative. Provenance says which model, which software, which machine,
how long each stage took and what was done to the scan's grid on the way.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from fm.core.contrasts import CONTRASTS
from fm.core.errors import InputError
from fm.core.findings import Findings
from fm.core.labels import BRAIN_TUMOUR, lesions_assessed
from fm.report.template_narrative import narrative_report, structured_report

REPORT_SCHEMA_VERSION = "1.5"
# 1.1 added the model's lesion sensitivity to provenance; 1.2 the contrasts, input files and input gate;
# 1.3 findings 1.1 (no volume for a structure cut by the image edge), the narrative ends on the full impression;
# 1.4 the language model's narrative with the faithfulness guard's verdict; 1.5 its unchecked claims
_READABLE_SCHEMAS = ("1.0", "1.1", "1.2", "1.3", "1.4", REPORT_SCHEMA_VERSION)
#: The issue's detection target: below it (or unmeasured) a report without lesions says it excludes none.
VALIDATED_SENSITIVITY = 0.95
NOTICE = (
    "AI draft, not for clinical use. Produced automatically by a segmentation model; "
    "every measurement must be checked by a qualified reader."
)


class ReportProvenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    input_file: str = Field(description="the first scan: the grid of the labels and measurements")
    input_format: str
    input_files: list[str] = Field(
        default_factory=list, description="every scan of a multi-contrast session, first one first"
    )
    contrasts: list[str] = Field(default_factory=list, description="contrast of each scan (fm.core.contrasts)")
    contrasts_guessed: bool = Field(
        False, description="the contrasts were guessed from series descriptions or file names"
    )
    resampled_inputs: list[str] = Field(default_factory=list, description="scans resampled onto the first one's grid")
    out_of_scope: str | None = Field(
        None, description="why the input gate refused this scan, when reported with --force"
    )
    model_id: str
    model_version: str
    model_sha256: str = Field(description="first 16 hex digits of the weights file's SHA-256")
    encoder: str
    label_set: str
    software: dict[str, str] = Field(description="package -> version")
    device: str
    threads: int
    etta: bool = Field(description="entropy test-time adaptation was applied")
    reoriented: bool = Field(description="the scan's axes were reordered/flipped to RAS for the network")
    resampled: bool = Field(description="the network saw the scan on another voxel grid; results were resampled back")
    network_spacing_mm: tuple[float, float, float] = Field(
        description="voxel size the segmenter worked at (the scan's own for the default)"
    )
    model_lesion_sensitivity: float | None = Field(
        None, description="share of lesions >= 1 mL the model found in its evaluation"
    )
    model_evaluation: str | None = Field(
        None, description="what that sensitivity was measured on; None: never evaluated"
    )
    timings_s: dict[str, float] = Field(description="wall-clock seconds per stage, in order")
    created_utc: str
    deidentification: str | None = Field(
        None,
        description="how the DICOM and FHIR outputs were de-identified; None: they carry the source's identifiers",
    )


class ModelNarrative(BaseModel):
    """A language model's narrative and what the faithfulness guard found in it. The report shows
    it only when `kept` (no contradiction with the measurements); otherwise the template stands."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    model_id: str
    kept: bool
    contradictions: list[str] = Field(description="each claim that contradicts a measurement, with its sentence")
    omissions: list[str] = Field(description="abnormal findings the text does not mention")
    unchecked: list[str] = Field(
        default_factory=list,
        description="claims on what the program does not measure (midline shift, a diagnosis, ...): shown, never checked",
    )


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = REPORT_SCHEMA_VERSION
    notice: str = NOTICE
    findings: Findings
    structured: dict = Field(description="technique, findings (lesions, structures) and impression sections")
    narrative: str = Field(description="deterministic template narrative built only from the findings")
    provenance: ReportProvenance
    model_narrative: ModelNarrative | None = Field(
        None, description="a language model's narrative, checked against the findings"
    )

    @classmethod
    def from_findings(cls, findings: Findings, provenance: ReportProvenance) -> "Report":
        structured = structured_report(findings)
        caveat = detection_caveat(provenance)
        if caveat and lesions_assessed(findings.provenance.label_set):
            structured["impression"] = [*structured["impression"], caveat]
        if provenance.out_of_scope:
            structured["impression"] = [provenance.out_of_scope, *structured["impression"]]
        structured["technique"]["contrasts"] = _contrast_statement(provenance)
        narrative = narrative_report(findings, impression_lines=structured["impression"])  # one impression everywhere
        return cls(findings=findings, structured=structured, narrative=narrative, provenance=provenance)

    def with_model_narrative(self, text: str, model_id: str) -> "Report":
        """This report with a language model's narrative, kept only if the guard finds no contradiction."""
        from fm.report.faithfulness import check

        guard = check(text, self.findings)
        drafted = ModelNarrative(
            text=text,
            model_id=model_id,
            kept=guard.faithful,
            contradictions=[str(c) for c in guard.contradictions],
            omissions=guard.omissions,
            unchecked=[str(u) for u in guard.unchecked],
        )
        return self.model_copy(update={"model_narrative": drafted})

    @property
    def shown_narrative(self) -> tuple[str, str]:
        """(heading, text) of the narrative a reader sees: the language model's when the guard kept
        it, else the template's, saying why."""
        drafted = self.model_narrative
        if drafted is not None and drafted.kept:
            text = drafted.text
            if drafted.unchecked:
                sentences = " ".join(dict.fromkeys(u.split('": ')[0].strip('"') for u in drafted.unchecked))
                text += f"\n\nUnchecked (about what the program does not measure): {sentences}"
            return (
                f"Narrative (language model {drafted.model_id}; AI draft, checked against the measurements)",
                text,
            )
        if drafted is not None:
            reason = f"The language model's draft was withheld: {len(drafted.contradictions)} statement(s) contradict the measurements."
            return "Narrative (template, from the findings only)", f"{self.narrative}\n\n{reason}"
        return "Narrative (template, from the findings only)", self.narrative

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Report":
        data = json.loads(text)
        if data.get("schema_version") not in _READABLE_SCHEMAS:
            raise InputError(f"report schema {data.get('schema_version')!r} is not one of {_READABLE_SCHEMAS}")
        findings = Findings.from_json(json.dumps(data.pop("findings")))
        return cls.model_validate({**data, "findings": findings})

    def to_markdown(self) -> str:
        return render_markdown(self)


def detection_caveat(provenance: ReportProvenance) -> str | None:
    """What a reader must know when the model's lesion detection is unproven: found lesions may be
    real, but a missing one proves nothing. None when its evaluation met `VALIDATED_SENSITIVITY`."""
    sensitivity = provenance.model_lesion_sensitivity
    if sensitivity is None:
        return "This model's lesion detection has not been evaluated: the absence of a reported lesion does not exclude one."
    if sensitivity < VALIDATED_SENSITIVITY:
        return (
            f"This model found {sensitivity:.0%} of lesions of 1 mL or more in its evaluation ({provenance.model_evaluation}): "
            "the absence of a reported lesion does not exclude one."
        )
    return None


def _contrast_statement(provenance: ReportProvenance) -> str:
    """e.g. 'T2 FLAIR and contrast-enhanced T1-weighted (named by the user); ...'."""
    if not provenance.contrasts:
        return "not stated"
    names = [CONTRASTS.get(c, c) for c in provenance.contrasts]
    text = " and ".join(names) + (
        " (guessed from series descriptions or file names)" if provenance.contrasts_guessed else ""
    )
    if provenance.resampled_inputs:
        text += f"; {len(provenance.resampled_inputs)} resampled onto the first scan's grid"
    if "t1c" not in provenance.contrasts and provenance.label_set == BRAIN_TUMOUR.name:
        text += "; enhancement not assessed (no contrast-enhanced T1)"
    return text


def format_volume(value) -> str:
    return "incomplete (reaches the image edge)" if value is None else "not found" if value == 0 else f"{value:.1f}"


def format_confidence(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_markdown(report: Report) -> str:
    s, f, p = report.structured, report.findings, report.provenance
    t = s["technique"]
    lines = [
        "# Structured report",
        "",
        f"> **{report.notice}**",
        "",
        "## Technique",
        f"- Input: `{p.input_file}` ({p.input_format}), grid {t['grid']} voxels, spacing "
        f"{' x '.join(f'{v:g}' for v in t['spacing_mm'])} mm, orientation {t['orientation']}",
        *([f"- Also read: {', '.join(f'`{path}`' for path in p.input_files[1:])}"] if len(p.input_files) > 1 else []),
        f"- Contrasts: {t.get('contrasts', 'not stated')}",
        f"- Segmentation: {p.model_id} ({p.model_version}), label set {p.label_set}"
        + (", with entropy test-time adaptation" if p.etta else ""),
        f"- Segmented on a grid of {' x '.join(f'{v:g}' for v in p.network_spacing_mm)} mm"
        + (", scan reoriented to RAS" if p.reoriented else "")
        + ("; results resampled back onto the scan's grid" if p.resampled else ""),
        "",
        "## Findings",
    ]
    lesions = s["findings"]["lesions"]
    if lesions:
        lines += [
            "",
            "| # | Location | Volume (mL) | Interval (mL) | Longest x short (mm) | Enhancement | Oedema (mL) | Centroid RAS (mm) | Confidence |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row, lesion in zip(lesions, f.lesions):
            interval = (
                "-" if lesion.volume_interval_ml is None else "{:.1f} - {:.1f}".format(*lesion.volume_interval_ml)
            )
            volume = f"{row['volume_ml']:.1f}" + (" (incomplete)" if row["incomplete"] else "")
            lines.append(
                f"| {row['lesion_id']} | {row['location']} | {volume} | {interval} | "
                f"{row['longest_diameter_mm']:.1f} x {row['short_axis_mm']:.1f} | {row['enhancement']} | "
                f"{'-' if row['oedema_ml'] is None else format(row['oedema_ml'], '.1f')} | {', '.join(f'{v:.1f}' for v in row['centroid_ras_mm'])} | {row['confidence']:.2f} |"
            )
    else:
        lines += ["", "No focal lesion."]
    lines += ["", "| Structure | Volume (mL) | Confidence |", "|---|---|---|"]
    for row, structure in zip(s["findings"]["structures"], f.structures):
        lines.append(
            f"| {row['name']} | {format_volume(row['volume_ml'])} | {format_confidence(structure.confidence)} |"
        )
    lines += [
        "",
        "## Impression",
        *[f"- {line}" for line in s["impression"]],
        "",
        f"## {report.shown_narrative[0]}",
        "",
        report.shown_narrative[1],
        "",
    ]
    lines += [
        "## Provenance",
        f"- Model: {p.model_id}, {p.model_version}, weights sha256 {p.model_sha256}, encoder {p.encoder}",
        f"- Software: {', '.join(f'{k} {v}' for k, v in p.software.items())}",
        f"- Device: {p.device}, {p.threads} threads; created {p.created_utc}",
        f"- Timings (s): {', '.join(f'{k} {v:.2f}' for k, v in p.timings_s.items())}",
        "",
    ]
    return "\n".join(lines)
