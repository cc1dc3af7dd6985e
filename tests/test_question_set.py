"""The held-out question set (fm.evaluate.question_set): at least 60 questions in phrasings the
training data never used, the six of issue 30 among them, every expected answer derived from the
findings, and a judge that tells a right answer from a wrong one."""

from __future__ import annotations

from fm.core.examples import example_path
from fm.core.findings import Findings
from fm.evaluate.question_set import PLACES, STRUCTURES, AskedQuestion, expected_answer, is_right, judge, questions
from fm.pipeline.conversation import stream_answer
from fm.synth.vqa import _ASK

FINDINGS = Findings.from_json((example_path().parent / "example_brain_t1_findings.json").read_text())
ISSUE_QUESTIONS = (
    "How big is the lesion?",
    "Is the lesion enhancing?",
    "What is the volume of the left grey matter?",
    "Is there midline shift?",
    "How old is the patient?",
    "Is there a lesion in the left frontal lobe?",
)


def test_the_set_is_large_held_out_and_holds_the_issues_questions():
    asked = [a.question for a in questions()]
    assert len(set(asked)) >= 60 and set(ISSUE_QUESTIONS) <= set(asked)
    names = {"place": PLACES, "structure": STRUCTURES}
    training = {
        q.format(place=place, structure=structure)
        for phrasings in _ASK.values()
        for q in phrasings
        for place in names["place"]
        for structure in names["structure"]
    }
    assert not set(asked) & training, "a held-out question is one training asks"


def test_expected_answers_come_from_the_findings():
    expected = {a.question: expected_answer(a, FINDINGS) for a in questions()}
    assert expected["How big is the lesion?"] == "31.7 mL"  # the example's lesion
    assert expected["What is the volume of the left grey matter?"] == "548.1 mL"
    assert expected["Is there a lesion in the left frontal lobe?"] == "no"
    assert expected["Is there a lesion in the right parietal lobe?"] == "yes"
    assert expected["Is the lesion enhancing?"] == "yes" and expected["Which side is the lesion on?"] == "right"
    assert expected["Is the scan normal?"] == "no" and expected["How old is the patient?"] == "declined"
    no_lesion = FINDINGS.model_copy(update={"lesions": []})
    assert expected_answer(AskedQuestion("side", "Which side is the lesion on?"), no_lesion) == "none"
    # "abnormality" holds "normal": the question asks whether there is one, not whether the scan is normal
    abnormality = AskedQuestion("presence", "Do you see any abnormality in this brain?")
    assert expected_answer(abnormality, FINDINGS) == "yes" and expected_answer(abnormality, no_lesion) == "no"


def test_the_judge_tells_right_from_wrong_and_counts_wrong_numbers_the_guard_let_through():
    assert is_right("Yes, in the right parietal lobe.", "yes") and not is_right("No.", "yes")
    assert is_right("It measures 31.7 mL.", "31.7 mL") and not is_right("131.7 mL", "31.7 mL")
    assert is_right("right", "right") and not is_right("left and right", "right")
    assert is_right("No lesion is seen.", "0") and is_right("0", "0") and not is_right("1", "0")
    decline = "".join(stream_answer(None, None, FINDINGS, "How old is the patient?", []))
    assert is_right(decline, "declined") and not is_right("54 years", "declined")
    grey = AskedQuestion("structure", "What is the volume of the left grey matter?", "left grey matter")
    caught = judge("example", grey, "31.7 mL", FINDINGS)  # the lesion's volume: the guard flags it
    assert not caught.right and not caught.unflagged_wrong_number


#: the held-out kind (and a question in its phrasing) that judges each kind of training question
JUDGED_AS = {
    "presence": ("presence", "Is there a lesion?"),
    "normal": ("presence", "Is the scan normal?"),
    "count": ("count", "Count the lesions."),
    "multiple": ("count", "Is there more than one lesion?"),
    "side": ("side", "Which side is the lesion on?"),
    "region": ("region", "Where is the lesion?"),
    "midline": ("midline", "Does the lesion cross the midline?"),
    "enhancement": ("enhancement", "Is the lesion enhancing?"),
    "ventricles": ("ventricles", "Are the ventricles enlarged?"),
    "ventricles normal": ("ventricles", "Are the lateral ventricles of normal size?"),
    "volume": ("volume", "How big is the lesion?"),
    "diameter": ("diameter", "What is the longest diameter of the lesion?"),
    "oedema": ("oedema", "How much oedema is there around the lesion?"),
}


def test_training_answers_are_right_by_the_held_out_judge():
    """What training teaches is what the judge takes as right: on the example, on scans without a
    lesion, without a contrast-enhanced scan, and on random findings of one to several lesions."""
    import random
    import re

    from fm.synth.random_findings import random_findings
    from fm.synth.vqa import qa_pairs

    rng = random.Random(0)
    cases = [FINDINGS, FINDINGS.model_copy(update={"lesions": []})] + [random_findings(rng) for _ in range(40)]
    judged = set()
    for seed, findings in enumerate(cases):
        for pair in qa_pairs(findings, seed=seed):
            if pair["type"] == "describe":
                continue
            if pair["type"] in ("structure", "place"):
                names = [s.name for s in findings.structures] + _places()
                subject = max((name for name in names if name in pair["question"]), key=len)
                asked = AskedQuestion(pair["type"], pair["question"], subject)
            else:
                asked = AskedQuestion(*JUDGED_AS[pair["type"]])
            expected = expected_answer(asked, findings)
            assert is_right(pair["answer"], expected), (pair, expected)
            judged.add(pair["type"])
            assert not re.search(r"\d", pair["answer"]) or pair["answer_type"] == "open" or pair["type"] == "count"
    assert judged == set(JUDGED_AS) | {"structure", "place"}


def _places() -> list[str]:
    from fm.synth.vqa import _REGIONS

    regions = _REGIONS + ("deep grey matter and internal capsule", "brainstem")
    return [f"{side} {region}" for side in ("left", "right") for region in regions]
