"""Report models composed from five families of causal language model (`fm lm init`): tiny random
Llama (Llama-3-style chat template), Qwen2 (ChatML, tied embeddings), Gemma 2 (a template without a
system role), Phi-3 (fused projections) and GPT-2 (no chat template, absolute positions), each
written to disk here with a tokenizer built here. For each: compose, save, load through the Auto
classes with the same logits; prompts in the family's own template with the measurements where the
template allows; one training step of stage 1 and of stage 2 (LoRA) with the loss on the
assistant's turn only; greedy generation the same with and without the KV cache."""

from __future__ import annotations

import numpy as np
import phantoms
import pytest
import torch
from click.testing import CliRunner
from test_model import trained_bpe
from transformers import (
    AutoModelForImageTextToText,
    Gemma2Config,
    GPT2Config,
    LlamaConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

import fm  # noqa: F401  (registers the model with transformers' Auto classes)
from fm.cli.fm_cli import main as fm_cli
from fm.core.examples import example_path
from fm.core.findings import Findings
from fm.core.io import volume_from_array
from fm.lm.compose import compose_report_model
from fm.lm.modeling import FMForReportGeneration
from fm.lm.prompts import IMAGE_TOKEN, encode_example, end_of_turn_ids, findings_text, system_role
from fm.lm.train import LMTrainConfig, train_lm
from fm.synth.dataset import write_dataset

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
SMALL_GRID = phantoms.mr_spec(size=(48, 48, 48), divisible_by=16)

# Chat templates in each family's layout, written for these tests.
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PHI3 = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

#: family: (config class, extra config, chat template, its turn markers, its end of turn)
FAMILIES = {
    "llama": (LlamaConfig, {}, LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
    "qwen2": (Qwen2Config, {"tie_word_embeddings": True}, CHATML, ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "gemma2": (Gemma2Config, {"head_dim": 16}, GEMMA, ["<start_of_turn>", "<end_of_turn>"], "<end_of_turn>"),
    "phi3": (Phi3Config, {}, PHI3, ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<|end|>"),
    "gpt2": (GPT2Config, {}, None, [], None),
}


def family_tokenizer(template: str | None, markers: list[str]) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=trained_bpe(["<unk>", "<|begin_of_text|>", "</s>", "<pad>", *markers], vocab_size=360),
        unk_token="<unk>",
        bos_token="<|begin_of_text|>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens=markers,
        chat_template=template,
    )


def language_model_config(family: str, tokenizer, **overrides):
    config_class, extra, *_ = FAMILIES[family]
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if family == "gpt2":
        return GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=1024, **ids)
    shape = SMALL | extra | overrides
    return config_class(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **shape, **ids)


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    write_dataset(root / "data", 2, seed=0, split="train", progress=False, spacing_mm=(4.0, 4.0, 4.0))
    return root / "data"


@pytest.fixture(scope="module")
def findings():
    return Findings.from_json((example_path().parent / "example_brain_t1_findings.json").read_text())


def write_language_model(folder, family: str, **overrides):
    """A tiny random language model of `family` and its tokenizer, saved as a Hub checkpoint is;
    `overrides` change its config (sizes)."""
    from transformers import AutoModelForCausalLM

    _, _, template, markers, _ = FAMILIES[family]
    tokenizer = family_tokenizer(template, markers)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(language_model_config(family, tokenizer, **overrides)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def compose(folder):
    return compose_report_model(
        folder, encoder="brain_id", encoder_kwargs={"f_maps": 8}, queries=8, input_spec=SMALL_GRID
    ).eval()


def scan(seed=0):
    rng = np.random.default_rng(seed)
    return volume_from_array(rng.random((40, 44, 36), dtype=np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_composed_model_prompts_in_its_familys_template(tmp_path, family, findings):
    _, _, template, markers, end_of_turn = FAMILIES[family]
    model = compose(write_language_model(tmp_path / "lm", family))
    features = model.scan_features(scan())
    prompt = model.prompt(features, findings, "Which side is the lesion on?", [("How many lesions?", "1")])
    assert prompt.count(IMAGE_TOKEN) == model.num_visual_tokens(features)
    assert findings_text(findings) in prompt and "Which side is the lesion on?" in prompt
    if template is None:  # the plain format
        assert prompt.endswith("Question: Which side is the lesion on?\nAnswer:")
        assert end_of_turn_ids(model.tokenizer) == []
        return
    assert all(marker in prompt for marker in markers if marker != "<|system|>" or system_role(model.tokenizer))
    assert "Question:" not in prompt
    if family == "gemma2":  # no system role: the measurements open the first user turn
        assert not system_role(model.tokenizer) and prompt.index(IMAGE_TOKEN) < prompt.index("Findings:")
    else:  # the system turn holds them, before the scan
        assert system_role(model.tokenizer) and prompt.index("Findings:") < prompt.index(IMAGE_TOKEN)
    stop = model.tokenizer.convert_tokens_to_ids(end_of_turn)
    assert end_of_turn_ids(model.tokenizer) == [stop] and stop in model.generation_config.eos_token_id
    # training puts the loss on the assistant's answer and its end of turn, nothing of the prompt
    prompt_ids, answer_ids = encode_example(model.tokenizer, 8, findings, "Which side?", None, "right")
    assert model.tokenizer.decode(prompt_ids).endswith(model.tokenizer.decode(prompt_ids[-3:]))
    assert model.tokenizer.decode(answer_ids).startswith("right" + end_of_turn)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_composed_model_saves_loads_trains_and_generates(tmp_path, family, findings, synth_data):
    model = compose(write_language_model(tmp_path / "lm", family))
    assert model.config.text_config.model_type == language_model_config(family, model.tokenizer).model_type
    model.save_pretrained(tmp_path / "init")
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "init")
    assert type(loaded) is FMForReportGeneration
    volume = scan()
    with torch.no_grad():
        features = model.scan_features(volume)
        ids = model.tokenize_prompts([model.prompt(features, findings)], return_tensors="pt")
        torch.testing.assert_close(
            loaded(**ids, image_features=features).logits, model(**ids, image_features=features).logits
        )
        cached, uncached = (
            model.generate(**ids, image_features=features, max_new_tokens=5, do_sample=False, use_cache=use_cache)
            for use_cache in (True, False)
        )
    assert torch.equal(cached, uncached)
    quick = dict(steps=1, grad_accum=1, checkpoint_every=1, lr=5e-3)
    stage1 = train_lm(tmp_path / "init", synth_data, tmp_path / "s1", LMTrainConfig(stage=1, **quick))
    stage2 = train_lm(stage1, synth_data, tmp_path / "s2", LMTrainConfig(stage=2, lora_rank=4, **quick))
    trained = FMForReportGeneration.from_pretrained(stage2)
    before, after = model.state_dict(), trained.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("adapter."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("language_model.")), (
        "LoRA merged into the language model"
    )
    assert isinstance(trained.answer(volume, "Which side?", findings, max_new_tokens=4), str)


def test_fm_lm_init_composes_with_the_bundled_encoder_and_every_command_takes_the_result(tmp_path):
    folder = write_language_model(tmp_path / "qwen", "qwen2")
    runner = CliRunner()
    result = runner.invoke(fm_cli, ["lm", "init", "--lm", str(folder), "--queries", "8", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "qwen2 language model" in result.output and "chat template" in result.output
    bundle = AutoModelForImageTextToText.from_pretrained(tmp_path / "b")
    bundled = FMForReportGeneration.from_pretrained(fm.lm.loading.default_lm_folder())
    assert bundle.config.encoder == bundled.config.encoder and bundle.config.input_spec == bundled.config.input_spec
    # a pretrained LM writes "5.9 cm" and "32 mL": its grounding lets it, the template-trained bundle's does not
    assert bundle.config.number_forms == "rounded" and bundled.config.number_forms == "verbatim"
    for name, value in bundled.encoder.state_dict().items():
        assert torch.equal(bundle.encoder.state_dict()[name], value)
    again = runner.invoke(fm_cli, ["lm", "init", "--lm", str(folder), "--out", str(tmp_path / "b")])
    assert again.exit_code != 0 and "not empty" in again.output  # nothing a user made is overwritten
    refused = runner.invoke(fm_cli, ["lm", "init", "--lm", str(tmp_path / "b"), "--out", str(tmp_path / "c")])
    assert refused.exit_code == 1 and "already a report model" in refused.output
    # a plain causal LM as --lm is composed on the fly, with a note that its adapter is untrained
    answered = runner.invoke(
        fm_cli,
        ["vqa", "--example", "--no-findings", "--lm", str(folder), "--max-new-tokens", "3", "How old is the patient?"],
    )
    assert answered.exit_code == 0, answered.output
    assert "untrained adapter" in answered.output and "Not measured: age" in answered.output
