"""The faithfulness guard against the findings a text was written from: the template narratives
(which copy every number from the findings) pass, in all their phrasings; a narrative or answer
that changes a side, a count, a size, misses a lesion or invents a finding is caught, with the
sentence and what was measured."""

from __future__ import annotations

import random

import pytest

from fm.core.examples import example_path
from fm.core.findings import Findings, Laterality
from fm.report.faithfulness import GuardResult, check, split_sentences
from fm.report.template_narrative import narrative_report
from fm.synth.random_findings import random_findings
from fm.synth.vqa import qa_pairs

BASE = Findings.from_json((example_path().parent / "example_brain_t1_findings.json").read_text())
RIGHT_PARIETAL = BASE.lesions[0]  # 31.7 mL, 58.7 x 45.4 mm, solidly enhancing
LEFT_FRONTAL = RIGHT_PARIETAL.model_copy(
    update={
        "lesion_id": 2,
        "laterality": Laterality.left,
        "region": "frontal lobe",
        "volume_ml": 4.2,
        "subregion_volumes_ml": {"whole_tumour": 4.2, "tumour_core": 1.0, "enhancing_tumour": 0.0},
        "longest_diameter_mm": 22.3,
        "short_axis_mm": 14.0,
        "right_fraction": 0.0,
    }
)


def findings_with(lesions=None, ventricles_ml=None) -> Findings:
    structures = [
        s.model_copy(update={"volume_ml": ventricles_ml}) if ventricles_ml and s.name == "lateral ventricles" else s
        for s in BASE.structures
    ]
    return BASE.model_copy(update={"lesions": BASE.lesions if lesions is None else lesions, "structures": structures})


CASES = {
    "one lesion": findings_with(),
    "two lesions": findings_with([RIGHT_PARIETAL, LEFT_FRONTAL]),
    "no lesion": findings_with([]),
    "enlarged ventricles": findings_with(ventricles_ml=160.0),
    "enhancement not assessed": findings_with(
        [RIGHT_PARIETAL.model_copy(update={"subregion_volumes_ml": {"whole_tumour": 31.723}})]
    ),
    "rim-enhancing": findings_with(
        [
            RIGHT_PARIETAL.model_copy(
                update={"subregion_volumes_ml": {"whole_tumour": 31.7, "tumour_core": 9.0, "enhancing_tumour": 4.0}}
            )
        ]
    ),
    "bilateral": findings_with(
        [RIGHT_PARIETAL.model_copy(update={"laterality": Laterality.bilateral, "right_fraction": 0.5})]
    ),
    "crossing the midline": findings_with(
        [RIGHT_PARIETAL.model_copy(update={"laterality": Laterality.midline_crossing, "right_fraction": 0.7})]
    ),
}


def test_the_template_is_faithful_to_findings_drawn_at_random():
    """Every pattern the random findings cover (counts, sides, enhancement, cut structures) in
    every phrasing, answers included: the guard and the template agree."""
    rng = random.Random(0)
    for index in range(300):
        findings = random_findings(rng)
        narrative = narrative_report(findings, index)
        assert check(narrative, findings) == GuardResult([], []), narrative
        for qa in qa_pairs(findings, index):  # an answer need not mention every finding
            assert check(qa["answer"], findings).faithful, qa


@pytest.mark.parametrize("case", CASES)
def test_template_narratives_are_faithful_in_every_phrasing(case):
    findings = CASES[case]
    for seed in range(10):
        result = check(narrative_report(findings, seed), findings)
        assert result.faithful and not result.omissions, (
            seed,
            [str(c) for c in result.contradictions],
            result.omissions,
        )


@pytest.mark.parametrize(
    "case, change, claim",
    [
        ("one lesion", ("right parietal", "left parietal"), "a lesion in the left parietal lobe"),
        ("one lesion", ("31.7 mL", "41.7 mL"), "41.7 mL"),
        ("one lesion", ("58.7", "68.7"), "68.7 mm"),
        ("two lesions", ("There are 2 separate", "There are 3 separate"), "3 lesion(s)"),
        ("two lesions", ("left frontal", "left temporal"), "a lesion in the left temporal lobe"),
        (
            "one lesion",
            ("solidly enhancing lesion", "non-enhancing lesion"),
            "a non-enhancing lesion in the right parietal lobe",
        ),
        ("no lesion", (None, "The lateral ventricles are enlarged."), "enlarged ventricles"),
        ("no lesion", (None, "There is an enhancing lesion in the right insula."), "a lesion in the right insula"),
        ("one lesion", (None, "No focal lesion is seen."), "0 lesion(s)"),
    ],
)
def test_a_changed_claim_is_caught_with_its_sentence(case, change, claim):
    findings = CASES[case]
    text = narrative_report(findings, seed=3)
    old, new = change
    changed = text + " " + new if old is None else text.replace(old, new)
    assert changed != text
    result = check(changed, findings)
    claims = [c.claim for c in result.contradictions]
    assert claim in claims, claims
    caught = next(c for c in result.contradictions if c.claim == claim)
    assert caught.sentence in split_sentences(changed) and caught.finding


def test_the_pattern_given_for_a_placed_lesion_must_be_that_lesions():
    """The default model once wrote "non-enhancing" of a solidly enhancing second lesion: another
    lesion was non-enhancing, so a check against all lesions passed it."""
    findings = findings_with([RIGHT_PARIETAL, LEFT_FRONTAL])  # solidly enhancing right; non-enhancing left
    wrong = "The second lesion, solidly enhancing, is in the left frontal lobe, measuring 22.3 x 14.0 mm (4.2 mL)."
    claims = [c.claim for c in check(wrong, findings).contradictions]
    assert claims == ["a solidly enhancing lesion in the left frontal lobe"]
    assert check(wrong.replace("solidly enhancing", "non-enhancing"), findings).faithful
    # a part's pattern, and a sentence about two places, are not one lesion's pattern
    assert check("The right parietal lesion has a non-enhancing component.", findings).faithful
    both = "A solidly enhancing lesion in the right parietal lobe and a non-enhancing one in the left frontal lobe."
    assert check(both, findings).faithful


def test_a_missed_lesion_and_unmentioned_enlarged_ventricles_are_omissions():
    findings = findings_with([RIGHT_PARIETAL, LEFT_FRONTAL], ventricles_ml=160.0)
    text = "A solidly enhancing lesion is seen in the right parietal lobe, 31.7 mL."
    result = check(text, findings)
    assert result.faithful
    assert result.omissions == ["lesion 2 (left frontal lobe, 4.2 mL)", "enlarged lateral ventricles (160.0 mL)"]


def test_answers_are_checked_like_narratives():
    findings = CASES["one lesion"]
    assert check("Right.", findings).faithful
    assert not check("The lesion is on the left.", findings).faithful
    assert check("It measures about 32 mL.", findings).faithful  # a rounding of 31.7
    assert not check("It measures about 35 mL.", findings).faithful


def test_a_number_is_checked_against_what_its_clause_names():
    """A measured value given to the wrong structure is a contradiction: the lesion's 31.7 mL is not
    the ventricles' volume, though 31.7 mL was measured (of the lesion)."""
    findings = CASES["two lesions"]  # right parietal 31.7 mL (58.7 x 45.4 mm), left frontal 4.2 mL; ventricles 48.0 mL
    wrong = {
        "The lateral ventricles measure 31.7 mL and are normal in size.": "lateral ventricles measured 48.0 mL",
        "Ventricular volume is 4.2 mL.": "lateral ventricles measured 48.0 mL",
        "The left grey matter measures 31.7 mL.": "left grey matter measured 548.1 mL",
        "CSF volume is 568.5 mL.": "cerebrospinal fluid measured 119.6 mL",
        "There is 31.7 mL of perilesional oedema around the lesion in the right parietal lobe.": "part measured 26.1 mL",
        "The lesion in the left frontal lobe measures 31.7 mL.": "the lesion measured",  # the right one's volume
        "A right parietal lobe lesion measuring 22.3 x 14.0 mm.": "the lesion measured",  # the left one's size
        "The enhancing component measures 26.1 mL.": "enhancing part measured",
    }
    for sentence, measured in wrong.items():
        result = check(sentence, findings)
        assert not result.faithful, sentence
        assert measured in str(result.contradictions[0]), (sentence, str(result.contradictions[0]))
    right = [
        "The lateral ventricles measure 48.0 mL.",
        "The left grey matter measures 548.1 mL and the right grey matter 568.5 mL.",
        "Grey matter totals 1116.5 mL.",  # both sides together
        "The lesion in the left frontal lobe measures 4.2 mL (22.3 x 14.0 mm).",
        "There is 26.1 mL of oedema around the lesion in the right parietal lobe.",
        "A lesion in the right parietal lobe with an enhancing component of 5.7 mL. It measures 58.7 mm.",
        "An area of signal change without a solid core measures 4.2 mL.",
    ]
    for sentence in right:
        assert check(sentence, findings).faithful, (
            sentence,
            [str(c) for c in check(sentence, findings).contradictions],
        )


def test_an_answer_is_bound_to_what_the_question_asks():
    findings = CASES["one lesion"]
    assert check("31.7 mL", findings, question="How big is the lesion?").faithful
    asked = "What is the volume of the left grey matter?"
    assert not check("31.7 mL", findings, question=asked).faithful  # the lesion's volume, not the grey matter's
    assert check("548.1 mL.", findings, question=asked).faithful
    assert check("It measures 548.1 mL.", findings, question=asked).faithful
    # true numbers of something else are no answer: shown as unchecked, never as a checked answer
    oedema = check("The lateral ventricles measure 48.0 mL.", findings, question="What is the volume of the oedema?")
    assert oedema.faithful and [u.topic for u in oedema.unchecked] == [
        "an answer about lateral ventricles to a question about the lesion's oedema part"
    ]
    assert not check("26.1 mL of oedema.", findings, question="How much oedema is there?").unchecked


def test_a_question_on_the_lesion_is_answered_with_the_largest_of_several():
    assert check("31.7 mL", TWO, question="How big is the lesion?").faithful
    assert not check("4.2 mL", TWO, question="How big is the lesion?").faithful  # the smaller lesion's
    assert not check("It measures 4.2 mL.", TWO, question="What is the volume of the main lesion?").faithful
    assert check("4.2 mL", TWO, question="How big is the left frontal lesion?").faithful  # a named place decides
    assert check("They measure 31.7 mL and 4.2 mL.", TWO, question="How big are the lesions?").faithful


# -- questions on what is not measured, and claims the guard cannot check ----------------------

ISSUE_QUESTIONS = [  # issue 30's six questions, with the answers the model once gave
    ("How big is the lesion?", "31.7 mL", True),
    ("Is the lesion enhancing?", "Yes.", True),
    ("What is the volume of the left grey matter?", "31.7 mL", False),  # the lesion's volume
    ("Is there midline shift?", "Yes.", False),  # not measured: the answer must say so
    ("How old is the patient?", "58.7 mm", False),
    ("Is there a lesion in the left frontal lobe?", "58.7 mm", False),
]


@pytest.mark.parametrize("question, answer, right", ISSUE_QUESTIONS)
def test_each_answer_is_checked_against_what_its_question_asks(question, answer, right):
    assert check(answer, BASE, question=question).faithful is right


def test_questions_on_what_is_not_measured_are_declined_without_the_model():
    from fm.pipeline.conversation import checked, stream_answer
    from fm.report.unmeasured import declines, unmeasured_topic

    for question in ("How old is the patient?", "Is there midline shift?", "What is the diagnosis?",
                     "Has it grown since the last scan?", "Should it be resected?", "Is there haemorrhage?"):  # fmt: skip
        assert unmeasured_topic(question), question
        # the backend is never asked: None would fail at its first use
        answer = "".join(stream_answer(None, None, BASE, question, []))
        assert declines(answer) and unmeasured_topic(question) in answer
        assert checked(question, answer, BASE).verdict.faithful
    for question, *_ in ISSUE_QUESTIONS[:3] + ISSUE_QUESTIONS[5:]:
        assert unmeasured_topic(question) is None, question


def test_claims_on_unmeasured_things_are_shown_as_unchecked_never_as_checked():
    text = "A solidly enhancing lesion in the right parietal lobe. There is no midline shift. It likely represents a glioma."
    result = check(text, BASE)
    assert result.faithful
    assert [u.topic for u in result.unchecked] == ["midline shift", "diagnosis"]


TWO = findings_with(
    [RIGHT_PARIETAL, LEFT_FRONTAL]
)  # a right parietal enhancing lesion, a left frontal non-enhancing one


@pytest.mark.parametrize(
    "findings, text",
    [
        (BASE, "No lesion is seen in the left hemisphere, and the right parietal lobe contains a 31.7 mL mass."),
        (TWO, "No lesion in the brainstem, and the left frontal lesion measures 4.2 mL."),
        (BASE, "Nothing else is seen apart from a 31.7 mL lesion in the right parietal lobe."),
        (BASE, "The mass in the right parietal lobe spared the sensorimotor cortex."),
        (BASE, "Right parietal lobe normal apart from the 31.7 mL mass."),
        (TWO, "The enhancing lesion measures 31.7 mL and the non-enhancing one 4.2 mL."),
        (TWO, "Lesions: one right parietal and one left frontal."),
        (BASE, "White matter measures 321.2 mL and 318.6 mL, symmetric between hemispheres."),
        (TWO, "Lesion 2 is in the left frontal lobe; the right parietal lesion is 31.7 mL."),
        (TWO, "The right parietal lesion measures 31.7 mL. No necrosis."),
        (BASE, "No significant mass effect."),
        (BASE, "No haemorrhage, infarct or extra-axial collection."),
    ],
)
def test_sound_sentences_in_free_phrasing_are_not_called_contradictions(findings, text):
    """Each was a false alarm of a rule written for another phrasing: a denial carried into the next
    clause, a count heading read into a list, "the enhancing lesion" beside "the non-enhancing one"."""
    assert check(text, findings).faithful, check(text, findings).contradictions


@pytest.mark.parametrize(
    "findings, text",
    [
        (BASE, "The right parietal lesion measures 45 mL; midline shift cannot be assessed."),
        (BASE, "Grey matter measures 548 mL bilaterally."),  # the right is 568.5 mL
        (TWO, "They lie in the right parietal and left frontal lobes. They measure 4.2 mL and 31.7 mL respectively."),
        (TWO, "Oedema: lesion 1, 3.2 mL; lesion 2, 26.1 mL."),
        (TWO, "Lesion 1 is non-enhancing and lesion 2 is solidly enhancing."),
        (BASE, "No lesion in the basal ganglia, thalami, parietal lobes or cerebellum."),
    ],
)
def test_wrong_claims_in_free_phrasing_are_caught(findings, text):
    """A clause that declines does not hide the rest of its sentence; numbers and patterns given
    per side, "respectively" or per lesion number are each checked against their own member."""
    assert not check(text, findings).faithful


def test_an_answer_gives_the_diameter_its_question_asks_for():
    """The short axis is a measured diameter, but not the longest one asked for."""
    question = "What is the longest diameter of the lesion?"
    assert check("58.7 mm", BASE, question).faithful and not check("45.4 mm", BASE, question).faithful
    assert check("45.4 mm", BASE, "What is the short axis of the lesion?").faithful


# -- a yes or no read as the statement it makes --------------------------------------------------

#: (question, the findings' right answer); phrasings beside those of the held-out question set
YES_NO = [
    ("Does the right parietal lobe harbour a mass?", "yes"),
    ("Does the left occipital lobe show a lesion?", "no"),
    ("Could you detect a tumour?", "yes"),
    ("Any mass?", "yes"),
    ("Are the lateral ventricles dilated?", "no"),
    ("Are the ventricles normal in size?", "yes"),
    ("Is the tumour enhancing with gadolinium?", "yes"),
    ("Does the tumour demonstrate enhancement?", "yes"),
    ("Does the main mass extend into the opposite hemisphere?", "no"),
    ("Is there more than one mass?", "no"),
]


@pytest.mark.parametrize("question, right", YES_NO)
def test_a_yes_or_no_that_the_findings_contradict_is_caught(question, right):
    wrong = "No." if right == "yes" else "Yes."
    assert check(f"{right.capitalize()}.", BASE, question=question).faithful, question
    assert not check(wrong, BASE, question=question).faithful, question


def test_no_more_than_is_a_count_at_most():
    assert check("There is no more than one lesion.", BASE).faithful
    assert not check("There is no more than one lesion.", TWO).faithful
    assert check("There are more than one lesions.", TWO).faithful


def test_questions_on_what_these_findings_lack_are_declined_without_the_model():
    from fm.pipeline.conversation import declined_answer, stream_answer
    from fm.report.unmeasured import declines

    no_contrast = CASES["enhancement not assessed"]
    cut = BASE.model_copy(
        update={
            "structures": [
                s.model_copy(update={"volume_ml": None, "touches_border": True}) if s.name == "left grey matter" else s
                for s in BASE.structures
            ]
        }
    )
    for question, findings in (
        ("Is the lesion enhancing?", no_contrast),
        ("How much oedema surrounds it?", no_contrast),
        ("What is the volume of the left grey matter?", cut),
        ("Are the lateral ventricles enlarged?", cut),  # the intracranial volume is cut: no size judged
    ):
        answer = "".join(stream_answer(None, None, findings, question, []))  # the backend is never asked
        assert declines(answer) and answer.startswith("Not measured:"), (question, answer)
    # what they hold is asked of the model: its volume is measured even when the ventricles' size is not judged
    assert declined_answer("What is the volume of the lateral ventricles?", cut) is None
    assert declined_answer("Is the lesion enhancing?", BASE) is None
    assert declined_answer("Is the lesion enhancing?", None) is None  # from the image alone: nothing known


def test_the_two_numbers_of_a_size_are_one_lesions_two_diameters():
    """ "A x B mm" gives a lesion's longest diameter and short axis, in either order; one of them
    twice passed every number's own check, and is a contradiction."""
    assert check("The lesion measures 58.7 x 45.4 mm.", BASE).faithful
    assert check("The lesion measures 4.5 x 5.9 cm.", BASE).faithful
    assert not check("The lesion measures 45.4 x 45.4 mm.", BASE).faithful
    assert not check("The right parietal lesion measures 58.7 x 22.3 mm.", TWO).faithful  # one from each lesion
