"""The text the language model reads: the image placeholder, the measured findings written out
(the grounding: every number the model may repeat comes from the segmentation), the task and the
conversation so far. One format for training and for generation, so what the model learnt is what
it is asked."""

from __future__ import annotations

from fm.core.findings import Findings
from fm.report.template_narrative import lesion_character, lesion_volume, location, side_counts, ventricles

IMAGE_TOKEN = "<image>"
REPORT_TASK = "Write the findings and impression of this brain MRI report."
NO_FINDINGS = "Findings: not given (answer from the image alone)."


def findings_text(findings: Findings) -> str:
    """The measurements as short lines, each value written the way a report states it (volumes in
    mL and diameters in mm to one decimal, sides and regions in fm.report.template_narrative's words, derived
    values such as oedema and the ventricles' share of the intracranial volume worked out): the
    model copies, it never computes."""
    lines = ["Findings:", f"- lesions: {len(findings.lesions)}"]
    if findings.lesions:
        lines[-1] += f" ({side_counts(findings)})"
    for lesion in findings.lesions:
        character = lesion_character(lesion)
        # questions ask about "the main/largest lesion": name it, so the model need not rank volumes
        largest = " (largest)" if lesion.lesion_id == 1 and len(findings.lesions) > 1 else ""
        parts = [
            f"lesion {lesion.lesion_id}{largest}: {character['enhancement']}",
            location(lesion),
            lesion_volume(lesion),
            f"{lesion.longest_diameter_mm:.1f} x {lesion.short_axis_mm:.1f} mm",
        ]
        if character["oedema_ml"] is not None:
            parts.append(f"oedema {character['oedema_ml']:.1f} mL")
        if character["necrotic_ml"]:
            parts.append(f"necrotic core {character['necrotic_ml']:.1f} mL")
        lines.append("- " + "; ".join(parts))
    judged = ventricles(findings)
    for structure in findings.structures:
        if structure.volume_ml is None:
            lines.append(f"- {structure.name}: not measured (cut by the image edge)")
        elif structure.name == "lateral ventricles" and judged is not None:
            size = "enlarged" if judged[1] else "normal in size"
            lines.append(
                f"- {structure.name}: {judged[0]:.1f} mL, {100 * judged[2]:.1f} % of intracranial volume, {size}"
            )
        else:
            lines.append(f"- {structure.name}: {structure.volume_ml:.1f} mL")
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
