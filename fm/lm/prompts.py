"""The text the language model reads: the image placeholder, the measured findings written out
(the grounding: every number the model may repeat comes from the segmentation), the task and the
conversation so far. One builder for generation, training, VQA evaluation and vLLM, so what the
model learnt is what it is asked: a language model whose tokenizer has a chat template is prompted
in that template (apply_chat_template), any other in the project's plain format."""

from __future__ import annotations

from fm.core.findings import Findings, LesionFinding, StructureFinding
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
    lines += [lesion_line(lesion, len(findings.lesions)) for lesion in findings.lesions]
    lines += [structure_line(structure, findings) for structure in findings.structures]
    return "\n".join(lines)


def lesion_line(lesion: LesionFinding, lesion_count: int) -> str:
    """findings_text's line for one lesion."""
    character = lesion_character(lesion)
    # questions ask about "the main/largest lesion": name it, so the model need not rank volumes
    largest = " (largest)" if lesion.lesion_id == 1 and lesion_count > 1 else ""
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
    return "- " + "; ".join(parts)


def structure_line(structure: StructureFinding, findings: Findings) -> str:
    """findings_text's line for one structure of `findings`."""
    if structure.volume_ml is None:
        return f"- {structure.name}: not measured (cut by the image edge)"
    judged = ventricles(findings) if structure.name == "lateral ventricles" else None
    if judged is not None:
        size = "enlarged" if judged[1] else "normal in size"
        return f"- {structure.name}: {judged[0]:.1f} mL, {100 * judged[2]:.1f} % of intracranial volume, {size}"
    return f"- {structure.name}: {structure.volume_ml:.1f} mL"


#: What a chat model is told it does, before the measurements (system role, or the first user turn
#: where the template has no system role).
INSTRUCTIONS = (
    "You describe a brain MRI. The measurements below come from its segmentation: state numbers only "
    "as they are given, and say that anything else is not measured."
)


def build_prompt(
    num_visual_tokens: int,
    findings: Findings | None,
    question: str | None = None,
    history: list[tuple[str, str]] | None = None,
    tokenizer=None,
) -> str:
    """The prompt up to where the model's answer starts. question None: the report task.
    history: earlier (question, answer) turns of a conversation about the same scan.
    tokenizer: a tokenizer with a chat template gets the conversation in its template
    (apply_chat_template); without one (or None), the project's plain format."""
    if has_chat_template(tokenizer):
        messages = chat_messages(num_visual_tokens, findings, question, history, system_role(tokenizer))
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [IMAGE_TOKEN * num_visual_tokens, findings_text(findings) if findings is not None else NO_FINDINGS]
    for earlier_question, earlier_answer in history or []:
        parts += [f"Question: {earlier_question}", f"Answer: {earlier_answer}"]
    parts.append(f"Question: {question}\nAnswer:" if question is not None else f"Task: {REPORT_TASK}\nReport:")
    return "\n".join(parts)


def encode_example(
    tokenizer,
    num_visual_tokens: int,
    findings: Findings | None,
    question: str | None,
    history: list[tuple[str, str]] | None,
    target: str,
) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of a training example: the loss falls on the answer ids only,
    which end as the model must learn to stop (the template's end of the assistant's turn, or
    the end-of-text token in the plain format)."""
    if not has_chat_template(tokenizer):
        prompt = build_prompt(num_visual_tokens, findings, question, history)
        answer = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return tokenizer(prompt)["input_ids"], answer
    messages = chat_messages(num_visual_tokens, findings, question, history, system_role(tokenizer))
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": target}], tokenize=False)
    if not whole.startswith(prompt):
        raise ValueError("the tokenizer's chat template writes the conversation so far differently with an answer")
    return (
        tokenizer(prompt, add_special_tokens=False)["input_ids"],
        tokenizer(whole[len(prompt) :], add_special_tokens=False)["input_ids"],
    )


def chat_messages(
    num_visual_tokens: int,
    findings: Findings | None,
    question: str | None,
    history: list[tuple[str, str]] | None,
    system: bool,
) -> list[dict[str, str]]:
    """The conversation as chat messages: the instructions and the measurements in the system turn
    (or, without one, opening the first user turn), the scan's placeholders opening the first user
    turn, the earlier turns, then the question or the report task."""
    context = INSTRUCTIONS + "\n" + (findings_text(findings) if findings is not None else NO_FINDINGS)
    asked = [*(q for q, _ in history or []), question if question is not None else REPORT_TASK]
    answered = [a for _, a in history or []]
    opening = IMAGE_TOKEN * num_visual_tokens + "\n" + ("" if system else context + "\n")
    messages = [{"role": "system", "content": context}] if system else []
    for turn, text in enumerate(asked):
        messages.append({"role": "user", "content": (opening if turn == 0 else "") + text})
        if turn < len(answered):
            messages.append({"role": "assistant", "content": answered[turn]})
    return messages


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def system_role(tokenizer) -> bool:
    """Whether the tokenizer's chat template writes a system turn (Gemma's refuses one)."""
    template = tokenizer.chat_template
    if template not in _SYSTEM_ROLE:  # probed once per template: every prompt asks
        _SYSTEM_ROLE[template] = _renders_system_turn(tokenizer)
    return _SYSTEM_ROLE[template]


_SYSTEM_ROLE: dict[str, bool] = {}


def _renders_system_turn(tokenizer) -> bool:
    from jinja2.exceptions import TemplateError

    probe = "fm-system-probe"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": probe}, {"role": "user", "content": "hi"}], tokenize=False
        )
    except TemplateError:  # raised by the template itself ("System role not supported")
        return False
    return probe in text


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token(s) a chat template closes the assistant's turn with (<|im_end|>, <|eot_id|>,
    <end_of_turn>, ...): generation must stop there as it stops at end-of-text."""
    if not has_chat_template(tokenizer):
        return []
    _, answer = encode_example(tokenizer, 0, None, "?", None, "fm")
    special = set(tokenizer.all_special_ids)
    marker = tokenizer("fm", add_special_tokens=False)["input_ids"]
    after = answer[len(marker) :] if answer[: len(marker)] == marker else answer
    return [next(token for token in after if token in special)] if any(t in special for t in after) else []
