"""The text the language model reads: the image placeholder, the measured findings written out
(the grounding: every number the model may repeat comes from the segmentation), the task and the
conversation so far. One format for training and for generation, so what the model learnt is what
it is asked."""

from __future__ import annotations

from fm.findings import Findings

IMAGE_TOKEN = "<image>"
REPORT_TASK = "Write the findings and impression of this brain MRI report."
NO_FINDINGS = "Findings: not given (answer from the image alone)."


def findings_text(findings: Findings) -> str:
    """The measurements as short lines, volumes in mL and diameters in mm, sides as the report gives them."""
    lines = ["Findings:"]
    for lesion in findings.lesions:
        parts = [
            f"lesion {lesion.lesion_id}: {lesion.laterality.value} {lesion.region}",
            f"{lesion.volume_ml:.1f} mL",
            f"{lesion.longest_diameter_mm:.0f} x {lesion.short_axis_mm:.0f} mm",
        ]
        parts += [
            f"{region.replace('_', ' ')} {volume:.1f} mL"
            for region, volume in lesion.subregion_volumes_ml.items()
            if region != "whole_tumour" and volume > 0
        ]
        lines.append("- " + ", ".join(parts))
    if not findings.lesions:
        lines.append("- no lesion")
    for structure in findings.structures:
        volume = (
            "not measured (cut by the image edge)" if structure.volume_ml is None else f"{structure.volume_ml:.1f} mL"
        )
        lines.append(f"- {structure.name}: {volume}")
    return "\n".join(lines)


def build_prompt(
    num_visual_tokens: int,
    findings: Findings | None,
    question: str | None = None,
    history: list[tuple[str, str]] | None = None,
) -> str:
    """The prompt up to where the model's answer starts. question None: the report task.
    history: earlier (question, answer) turns of a conversation about the same scan."""
    parts = [IMAGE_TOKEN * num_visual_tokens, findings_text(findings) if findings is not None else NO_FINDINGS]
    for earlier_question, earlier_answer in history or []:
        parts += [f"Question: {earlier_question}", f"Answer: {earlier_answer}"]
    parts.append(f"Question: {question}\nAnswer:" if question is not None else f"Task: {REPORT_TASK}\nReport:")
    return "\n".join(parts)
