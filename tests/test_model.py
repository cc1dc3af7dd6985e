"""The report model (fm.lm.modeling): encoder + adapter + any causal LM as one transformers model, built
from tiny random language models of the two families users have on disk (Llama, Qwen2) and a BPE
tokenizer trained here, so every path runs offline in seconds."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import numpy as np
import phantoms
import pytest
import torch
from test_faithfulness import TWO  # the example's lesion and a smaller, non-enhancing left frontal one
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

import fm  # noqa: F401  (registers the model with transformers' Auto classes)
from fm.core.examples import example_path
from fm.core.findings import Findings
from fm.core.io import volume_from_array
from fm.lm.adapter import ADAPTER_KINDS, AdapterConfig, build_adapter, position_code
from fm.lm.grounded_decoding import GroundedDecoding, Grounding
from fm.lm.modeling import FMForReportGeneration
from fm.lm.prompts import IMAGE_TOKEN, build_prompt, findings_text
from fm.report.template_narrative import narrative_report
from fm.synth.random_findings import random_findings
from fm.synth.vqa import qa_pairs

SMALL_LM = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
# Brain-ID's own spec pads every scan to 220^3; the tests feed it small grids instead
SMALL_GRID = phantoms.mr_spec(size=(48, 48, 48), divisible_by=16)


def trained_bpe(special_tokens: list[str], vocab_size: int = 320) -> Tokenizer:
    """A byte-level BPE trained here on a few report lines: what a language model's tokenizer is,
    small enough for tests (test_lm_families wraps it with each family's chat template)."""
    corpus = [
        "Findings:\n- lesion 1: right parietal lobe, 31.7 mL, 59 x 45 mm",
        "Single lesion in the left frontal lobe. No midline shift. Ventricles normal.",
    ] * 20
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    return bpe


@pytest.fixture(scope="module")
def tokenizer():
    return PreTrainedTokenizerFast(
        tokenizer_object=trained_bpe(["<unk>", "<s>", "</s>", "<pad>"]),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )


@pytest.fixture(scope="module")
def findings():
    return Findings.from_json((example_path().parent / "example_brain_t1_findings.json").read_text())


def small_model(tokenizer, kind="perceiver", encoder="brain_id", encoder_kwargs=None):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), **SMALL_LM)
    adapter = AdapterConfig(kind=kind, num_queries=8, pool_size=2)
    return FMForReportGeneration.from_parts(
        config,
        tokenizer,
        encoder=encoder,
        encoder_kwargs=encoder_kwargs or {"f_maps": 8},
        adapter=adapter,
        input_spec=SMALL_GRID if encoder == "brain_id" else None,
    )


def scan(shape=(40, 44, 36), spacing=4.0, seed=0):
    rng = np.random.default_rng(seed)
    return volume_from_array(rng.random(shape, dtype=np.float32), np.diag([spacing] * 3 + [1.0]))


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
@torch.no_grad()
def test_adapters_give_the_token_count_their_config_states(kind):
    config = AdapterConfig(kind=kind, num_queries=8, pool_size=2)
    grid = (4, 5, 3)
    out = build_adapter(config, 128, 64)(torch.rand(2, 60, 128), grid)
    assert out.shape == (2, config.num_tokens(grid), 64)


@torch.no_grad()
def test_the_perceiver_knows_where_its_tokens_lie():
    """A lesion-like token on the left and the same token on the right must not look alike to the
    queries: the position code breaks the attention's indifference to order."""
    torch.manual_seed(0)
    resampler = build_adapter(AdapterConfig(kind="perceiver", num_queries=4), 48, 32)
    grid = (6, 4, 4)
    tokens = torch.zeros(1, 6, 4, 4, 48)
    left, right = tokens.clone(), tokens.clone()
    left[0, 0, 2, 2], right[0, 5, 2, 2] = 1.0, 1.0
    as_tokens = [t.reshape(1, -1, 48) for t in (left, right)]
    assert not torch.allclose(resampler(as_tokens[0], grid), resampler(as_tokens[1], grid), atol=1e-4)
    assert position_code(grid, 48).shape == (96, 48) and position_code((1, 1, 1), 4).abs().sum() == 0


def test_the_prompt_carries_the_measured_findings(findings):
    prompt = build_prompt(5, findings, "Which side is the lesion on?", history=[("How many lesions?", "One.")])
    assert prompt.count(IMAGE_TOKEN) == 5
    assert "lesion 1: solidly enhancing; right parietal lobe; 31.7 mL; 58.7 x 45.4 mm; oedema 26.1 mL" in prompt
    assert "lateral ventricles: 48.0 mL, 2.5 % of intracranial volume, normal in size" in prompt
    assert "left grey matter: 548.1 mL" in prompt
    assert prompt.index("How many lesions?") < prompt.index("Which side is the lesion on?") and prompt.endswith(
        "Answer:"
    )
    assert "not given" in build_prompt(5, None)


def test_every_number_a_report_states_is_written_in_the_prompt():
    """The model copies numbers, it does not compute them: oedema (whole minus core), the
    ventricles' share of the intracranial volume and diameters to 0.1 mm stand in the prompt as
    the narrative and the answers write them."""
    rng = random.Random(1)
    for index in range(200):
        findings = random_findings(rng)
        prompt = findings_text(findings)
        for text in [narrative_report(findings, index)] + [qa["answer"] for qa in qa_pairs(findings, index)]:
            for number in re.findall(r"\d+\.\d", text):
                assert re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", prompt), (number, text, prompt)


def test_the_lesion_questions_ask_about_is_named_largest_in_the_prompt():
    """Questions ask about "the lesion" (or "the main / largest / biggest / dominant" one): the
    largest, as the guard and the held-out judge take it. With several lesions the prompt names it,
    with one it needs no name; and every question about a lesion asks about that one."""
    rng = random.Random(2)
    several = next(f for f in iter(lambda: random_findings(rng), None) if len(f.lesions) > 2)
    one = next(f for f in iter(lambda: random_findings(rng), None) if len(f.lesions) == 1)
    lines = findings_text(several).splitlines()
    largest = max(several.lesions, key=lambda lesion: lesion.volume_ml)
    assert [line for line in lines if "(largest)" in line] == [
        line for line in lines if line.startswith(f"- lesion {largest.lesion_id} (largest): ")
    ]
    assert f"{largest.volume_ml:.1f} mL" in next(line for line in lines if "(largest)" in line)
    assert "(largest)" not in findings_text(one)
    for qa in qa_pairs(several) + qa_pairs(several, 1):
        if qa["type"] in ("side", "region", "midline", "enhancement", "volume", "diameter", "oedema", "describe"):
            the_largest = r"\bthe\s+(?:(?:main|largest|biggest|dominant)\s+)?(?:lesion|tumour|mass|abnormality)\b"
            assert re.search(the_largest, qa["question"], re.I), qa["question"]


@torch.no_grad()
def test_saved_model_loads_through_the_auto_classes_with_the_same_outputs(tmp_path, tokenizer, findings):
    from transformers import AutoModel, AutoModelForImageTextToText

    model = small_model(tokenizer)
    volume = scan()
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "fm3d" and config["input_spec"]["orientation"] == "RAS"
    assert config["text_config"]["model_type"] == "llama" and config["adapter"]["kind"] == "perceiver"
    assert "not for clinical use" in (tmp_path / "saved" / "README.md").read_text()
    for auto in (AutoModelForImageTextToText, AutoModel):
        again = auto.from_pretrained(tmp_path / "saved")
        assert type(again) is FMForReportGeneration and len(again.tokenizer) == len(model.tokenizer)
        pixel_values = again.prepare_scan(volume)
        count = model.num_visual_tokens(model.encode_scan(pixel_values))
        prompt = model.tokenizer(build_prompt(count, findings), return_tensors="pt")
        torch.testing.assert_close(
            again(**prompt, pixel_values=pixel_values).logits, model(**prompt, pixel_values=pixel_values).logits
        )


def test_import_fm_registers_the_model_without_loading_transformers(tmp_path, tokenizer):
    small_model(tokenizer).save_pretrained(tmp_path / "saved")
    code = (
        "import sys, fm\n"
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "from transformers import AutoModelForImageTextToText\n"
        f"print(type(AutoModelForImageTextToText.from_pretrained({str(tmp_path / 'saved')!r})).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "FMForReportGeneration"


@torch.no_grad()
def test_a_hub_id_resolves_from_an_offline_cache(tmp_path, tokenizer, monkeypatch):
    """The real Hub cache layout (refs/main -> snapshots/<commit>/...) with HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants as hub_constants
    from transformers import AutoModelForImageTextToText

    model = small_model(tokenizer)
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--fm3d-test--tiny-report"
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = AutoModelForImageTextToText.from_pretrained("fm3d-test/tiny-report", cache_dir=str(cache))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    assert loaded.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == model.config.image_token_id


@pytest.mark.parametrize(
    "lm_class, lm_config",
    [(LlamaForCausalLM, LlamaConfig), (Qwen2ForCausalLM, lambda **kw: Qwen2Config(tie_word_embeddings=True, **kw))],
)
@torch.no_grad()
def test_a_language_model_on_disk_plugs_in_through_the_same_config_path(
    tmp_path, tokenizer, findings, lm_class, lm_config
):
    torch.manual_seed(0)
    lm_class(lm_config(vocab_size=len(tokenizer), **SMALL_LM)).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    model = FMForReportGeneration.from_parts(
        tmp_path / "lm",
        encoder="brain_id",
        encoder_kwargs={"f_maps": 8},
        adapter=AdapterConfig(kind="pool", pool_size=2),
        input_spec=SMALL_GRID,
    )
    assert model.config.text_config.model_type == lm_class.config_class.model_type
    assert IMAGE_TOKEN in model.tokenizer.get_vocab() and not any(p.requires_grad for p in model.encoder.parameters())
    volume = scan()
    report = model.generate_report(volume, findings, max_new_tokens=6)
    answer = model.answer(volume, "Which side?", findings, history=[("How many lesions?", "One.")], max_new_tokens=6)
    assert isinstance(report, str) and isinstance(answer, str)
    # greedy decoding gives the same tokens with and without the KV cache
    pixel_values = model.prepare_scan(volume)
    count = model.num_visual_tokens(model.encode_scan(pixel_values))
    prompt = model.tokenizer(build_prompt(count, findings), return_tensors="pt")
    cached, uncached = (
        model.generate(
            **prompt, pixel_values=pixel_values, max_new_tokens=6, do_sample=False, use_cache=use_cache, pad_token_id=0
        )
        for use_cache in (True, False)
    )
    assert torch.equal(cached, uncached)
    # a batch of prompts of different lengths (left-padded) gives what each gives alone
    features = model.scan_features(volume)
    questions = [build_prompt(count, findings, q) for q in ("Which side?", "How many lesions are there in all?")]
    one_by_one = [model.generate_text(features, q, max_new_tokens=6) for q in questions]
    assert model.generate_text(features, questions, max_new_tokens=6) == one_by_one
    assert model.generate_text(features, [], max_new_tokens=6) == []  # a scan with no question of a kind


@torch.no_grad()
def test_a_prompt_without_room_for_the_scan_is_refused(tokenizer):
    model = small_model(tokenizer)
    pixel_values = model.prepare_scan(scan())
    short = model.tokenizer(
        build_prompt(model.num_visual_tokens(model.encode_scan(pixel_values)) - 1, None), return_tensors="pt"
    )
    with pytest.raises(ValueError, match="image placeholders, the scan gives 8 visual tokens"):
        model(**short, pixel_values=pixel_values)


@torch.no_grad()
def test_a_published_swin_bob_encoder_round_trips_inside_the_model(tmp_path, tokenizer):
    from transformers import AutoModelForImageTextToText

    model = small_model(tokenizer, kind="mlp", encoder="swin_bob_btcv", encoder_kwargs={"feature_size": 12})
    volume = scan((64, 64, 64), 1.5)
    model.save_pretrained(tmp_path / "saved")
    again = AutoModelForImageTextToText.from_pretrained(tmp_path / "saved")
    pixel_values = model.prepare_scan(volume)
    features = model.encode_scan(pixel_values)
    torch.testing.assert_close(again.encode_scan(pixel_values), features)
    torch.testing.assert_close(again.visual_tokens(features), model.visual_tokens(features))


def test_fm_vqa_and_fm_chat_answer_about_a_scan(tmp_path, tokenizer):
    """The commands' plumbing with a tiny untrained model: one answer streamed, then a conversation
    of two turns (its answers are noise; what matters is that each turn runs with the earlier ones)."""
    from click.testing import CliRunner

    from fm.cli.fm_cli import main

    small_model(tokenizer).save_pretrained(tmp_path / "lm")
    options = ["--example", "--no-findings", "--lm", str(tmp_path / "lm"), "--max-new-tokens", "4"]
    done = CliRunner().invoke(main, ["vqa", *options, "How many lesions are there?"])
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(main, ["chat", *options], input="How many lesions?\nWhich side?\n")
    assert done.exit_code == 0, done.output
    assert done.stderr.count("> ") == 3  # two questions, then the end of input
    done = CliRunner().invoke(main, ["vqa", "--example", "--lm", str(tmp_path / "lm")])
    assert done.exit_code == 2 and "give SCAN and QUESTION" in done.output


@torch.no_grad()
def test_decoding_with_the_findings_copies_their_numbers_digit_for_digit(tokenizer, findings):
    """An untrained model samples digits and words at random; grounded in the findings, every
    number it writes is one they state (a full stop may follow), with a tokenizer that merges
    digits too."""
    model = small_model(tokenizer)
    features = model.scan_features(scan())
    prompt = build_prompt(model.num_visual_tokens(features), findings, "What is the volume?")
    allowed = Grounding.of(findings).numbers
    free, copied = [], []
    for seed in range(6):
        for grounded_in, texts in ((None, free), (findings, copied)):
            torch.manual_seed(seed)
            texts.append(
                model.generate_text(features, prompt, 40, grounded_in=grounded_in, do_sample=True, temperature=2.0)
            )
    # a number may be cut short where max_new_tokens stops generation: only whole ones count
    written = [n for text in copied for n in re.findall(r"\d+(?:\.\d+)?", re.sub(r"\d[\d.]*\Z", "", text))]
    assert written and set(written) <= allowed, (copied, sorted(allowed))
    assert not set(re.findall(r"\d+(?:\.\d+)?", " ".join(free))) <= allowed, "unconstrained, it invents numbers"


def writer(tokenizer, grounding):
    """can_write(text, after): may grounded decoding write `text` after `after`, token by token?"""
    processor = GroundedDecoding(tokenizer, grounding, prompt_length=0)

    def can_write(text: str, after: str = "") -> bool:
        ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
        for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
            scores = processor(torch.tensor([ids]), torch.zeros(1, len(tokenizer)))
            if scores[0, token] == float("-inf"):
                return False
            ids.append(token)
        return True

    return can_write


def test_grounded_decoding_binds_each_number_and_word_to_the_subject_its_sentence_names(tokenizer, findings):
    """A narrative cannot give the second lesion the first one's volume, the grey matter the
    lesion's, a volume as a length, or a lesion another's place, enhancement or midline crossing."""
    can_write = writer(tokenizer, Grounding.of(TWO))
    second, largest = "The second lesion measures", "The largest lesion measures"
    assert can_write(" 4.2 mL", after=second) and not can_write(" 31.7 mL", after=second)
    assert can_write(" 31.7 mL", after=largest) and not can_write(" 4.2 mL", after=largest)
    assert can_write(" 22.3 x 14.0 mm", after=second) and not can_write(" 58.7", after=second)
    assert not can_write(" 22.3 x 22.3", after=second), "one diameter twice: the other follows the x"
    # a sentence without a subject of its own speaks of the one before; a heading frees the text
    assert not can_write(" 31.7 mL", after="The second lesion is small. It measures")
    assert can_write(" 31.7 mL", after="The second lesion is small.\nIMPRESSION: a lesion of")
    # a part named since: its volume only
    assert can_write(" 26.1 mL", after="The largest lesion is large. Surrounding oedema measures")
    assert not can_write(" 31.7 mL", after="The largest lesion is large. Surrounding oedema measures")
    # a structure's own volume
    assert can_write(" 548.1 mL", after="The left grey matter measures")
    assert not can_write(" 568.5 mL", after="The left grey matter measures")
    # a number's unit: 31.7 is a volume, 58.7 a length
    assert can_write(" 31.7 mL", after="A lesion of") and not can_write(" 31.7 mm", after="A lesion of")
    assert not can_write(" 31.7 x", after="A lesion of") and not can_write(" 58.7 mL", after="A lesion of")
    # the place, enhancement and midline crossing of the lesion the sentence names
    assert can_write(" left frontal lobe", after="The second lesion lies in the")
    assert not can_write(" right parietal lobe", after="The second lesion lies in the")
    assert can_write(" right parietal lobe", after="The largest lesion lies in the")
    assert can_write(" non-enhancing", after="The second lesion is") and not can_write(
        " rim", after="The second lesion is"
    )
    assert not can_write(" solidly", after="The second lesion is")
    assert can_write(" solidly enhancing", after="The largest lesion is")
    assert not can_write(" crossing the midline", after="The largest lesion,")
    # a number glued to a full stop is no number a reader (or the guard) reads
    assert not can_write("31.7 mL", after="A lesion is seen.")


def test_grounded_answers_give_what_the_question_asks_and_nothing_the_findings_contradict(tokenizer, findings):
    def can_answer(question: str, text: str, given=findings) -> bool:
        return writer(tokenizer, Grounding.of(given, question=question))(text)

    grey = "What is the volume of the left grey matter?"
    assert can_answer(grey, "548.1 mL") and not can_answer(grey, "31.7 mL") and not can_answer(grey, "Yes")
    assert can_answer("How many lesions are there?", "1") and not can_answer("How many lesions are there?", "31.7 mL")
    assert can_answer("How big is the lesion?", "31.7 mL") and not can_answer("How big is the lesion?", "58.7 mm")
    assert not can_answer("Which side is the lesion on?", "58.7")  # no number answers a side
    assert not can_answer("How long is the lesion?", "Not measured")  # what is measured was asked
    # a yes/no question is answered yes or no, and never with the one the guard contradicts
    there = "Is there a lesion in the right parietal lobe?"
    assert can_answer(there, "Yes, it measures 31.7 mL.") and not can_answer(there, "No")
    assert not can_answer(there, "Not measured") and not can_answer(there, "5")
    assert can_answer("Is there a lesion in the left frontal lobe?", "No")
    assert not can_answer("Is there a lesion in the left frontal lobe?", "Yes")
    # with several lesions, "the lesion" is the largest; with none, no number answers and it says so
    two = TWO
    assert can_answer("How big is the lesion?", "31.7 mL", two) and not can_answer("How big is the lesion?", "4.2", two)
    none = findings.model_copy(update={"lesions": []})
    assert can_answer("How big is the lesion?", "No lesion is seen.", none)
    assert not can_answer("How big is the lesion?", "48.0 mL", none)
    grounding = Grounding.of(two, rounded=True, question=there)
    assert Grounding.from_json(grounding.to_json()) == grounding  # as the vLLM server's plugin gets it


def test_grounded_decoding_lets_through_only_the_findings_numbers_and_lesion_regions(tokenizer, findings):
    verbatim = writer(tokenizer, Grounding.of(findings))
    rounded = writer(tokenizer, Grounding.of(findings, rounded=True))

    def can_write(text: str, after: str = "A lesion in the right", processor=verbatim) -> bool:
        return processor(text, after)

    assert can_write(" parietal lobe, 31.7 mL.") and can_write(" parietal lobe (58.7 x 45.4 mm)")
    assert not can_write(" parietal lobe, 5.9 x 4.5 cm"), "the template-trained model copies digit for digit"
    # a model that writes like real reports rounds and writes centimetres, as the guard allows
    assert can_write(" parietal lobe, 5.9 x 4.5 cm, about 32 mL", processor=rounded)
    assert can_write(" parietal lobe, 59 mm", processor=rounded) and can_write(" 31.7 mL", processor=rounded)
    assert not can_write(" parietal lobe, 5.8 cm", processor=rounded) and not can_write(" 33 mL", processor=rounded)
    # rounded from the measured value, not from its one-decimal text: 31.46 mL is "31", never "32"
    finer = findings.model_copy(update={"lesions": [findings.lesions[0].model_copy(update={"volume_ml": 31.46})]})
    assert "31" in Grounding.of(finer, rounded=True).numbers and "32" not in Grounding.of(finer, rounded=True).numbers
    # only a number the findings write may end a sentence: a rounding is followed by its unit
    assert can_write(" parietal lobe, 31.7. The", processor=rounded)
    assert not can_write(" parietal lobe, 32. The", processor=rounded)
    assert not can_write(" frontal lobe") and not can_write(" parietal lobe, 31.8 mL") and not can_write(" 3 mL")
    assert not can_write(" parietal lobe", after="A lesion in the left"), "the lesion is on the right"
    # a number that no grounded one continues (sampling can draw its first digit from a grounded
    # token's neighbours) leaves the end of text allowed, never no token at all: sampling needs one
    ids = tokenizer("A lesion of 9", add_special_tokens=False)["input_ids"]
    processor = GroundedDecoding(tokenizer, Grounding.of(findings), prompt_length=0)
    scores = processor(torch.tensor([ids]), torch.zeros(1, len(tokenizer)))[0]
    assert torch.isfinite(scores).nonzero().flatten().tolist() == [tokenizer.eos_token_id]
