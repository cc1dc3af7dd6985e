"""fm.serve.backends: one generation interface, two backends. The in-process backend batches and streams
what it generates one request at a time; `fm export vllm` writes the plain language model, its
tokenizer and a LoRA adapter with the key names vLLM loads; and a real vLLM server (the separate
environment tools/vllm-env builds) fed the spliced prompt embeddings writes the transformers
backend's greedy text token for token, grounded or free, with and without LoRA."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from fm.cli.fm_cli import main
from fm.core.examples import example_label_map, example_path, example_paths
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.core.session import load_session
from fm.lm.grounded_decoding import Grounding
from fm.lm.loading import load_report_model
from fm.lm.prompts import build_prompt
from fm.lm.train import LORA_TARGETS
from fm.pipeline.scan_features import session_features
from fm.serve.backends import (
    GenerationRequest,
    TransformersBackend,
    VLLMBackend,
    VLLMServerError,
    encode_prompt_embeds,
    prompt_embeddings,
)
from fm.serve.vllm_export import SERVED_LORA, VLLMExport, export_for_vllm
from fm.serve.vllm_server import VLLMServer, default_vllm_python

QUESTIONS = (
    "How many lesions are there?",
    "Which side is the largest lesion on?",
    "In which region is the largest lesion?",
)


@pytest.fixture(scope="module")
def model():
    return load_report_model()


@pytest.fixture(scope="module")
def example(model):
    findings = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
    return model.scan_features(load_volume(example_path()), example_label_map()), findings


def requests_for(model, example, report_tokens=80) -> list[GenerationRequest]:
    """The default model's prompts for the example: its report and three questions, grounded in
    the findings (the answers also bound to what their question asks), and the report decoded free."""
    features, findings = example
    slots = model.num_visual_tokens(features)
    report = build_prompt(slots, findings)
    grounded = [GenerationRequest(features, report, report_tokens, grounded_in=findings)]
    grounded += [
        GenerationRequest(features, build_prompt(slots, findings, q), 12, grounded_in=findings, asked=q)
        for q in QUESTIONS
    ]
    return grounded + [GenerationRequest(features, report, report_tokens)]


def fm_train_lora(model, folder: Path, seed: int = 0) -> Path:
    """A LoRA adapter as `fm train lm` saves one (on the composite model, with the vision adapter
    saved whole), with non-zero weights so that it changes what the model writes."""
    torch.manual_seed(seed)
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=LORA_TARGETS, modules_to_save=["adapter"], init_lora_weights="gaussian"
    )
    wrapped = get_peft_model(model, lora)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    wrapped.save_pretrained(folder)
    return folder


@torch.no_grad()
def test_the_transformers_backend_batches_and_streams_what_it_writes_one_by_one(model, example):
    backend = TransformersBackend(model)
    requests = requests_for(model, example, report_tokens=60)
    one_by_one = [backend.generate(request) for request in requests]
    assert backend.batch(requests) == one_by_one
    assert [g.text.rstrip(".").lower() for g in one_by_one[1:4]] == ["1", "right", "parietal lobe"]
    assert "".join(backend.stream(requests[0])).strip() == one_by_one[0].text
    # a batch may hold scans whose encoder maps differ in size (an encoder on each scan's own grid), as a
    # cohort does: one map a slice shorter, with the prompt that makes room for its visual tokens
    features, findings = example
    shorter = features[:, :, :-1]
    prompt = build_prompt(model.num_visual_tokens(shorter), findings, QUESTIONS[0])
    other = dataclasses.replace(requests[1], image_features=shorter, prompt=prompt)
    assert backend.batch([requests[1], other]) == [one_by_one[1], backend.generate(other)]
    # the token ids are the text's: decoding them gives it back
    assert model.tokenizer.decode(one_by_one[0].token_ids, skip_special_tokens=True).strip() == one_by_one[0].text


@torch.no_grad()
def test_the_prompt_travels_to_vllm_as_the_embeddings_the_language_model_reads(model, example):
    request = requests_for(model, example)[1]
    embeddings = prompt_embeddings(model, request)
    tokens = model.tokenizer(request.prompt)["input_ids"]
    assert embeddings.shape == (len(tokens), model.config.text_config.hidden_size)
    # vLLM's wire format: base64 of a torch.save'd tensor, which it reads with weights_only=True
    wired = torch.load(io.BytesIO(base64.b64decode(encode_prompt_embeds(embeddings))), weights_only=True)
    assert torch.equal(wired, embeddings)
    # the plain language model fed these embeddings predicts what the whole model predicts
    whole = model(input_ids=torch.tensor([tokens]), image_features=request.image_features).logits
    plain = model.language_model(inputs_embeds=wired[None]).logits
    assert torch.allclose(whole, plain, atol=1e-5)


def test_a_grounding_crosses_to_the_server_unchanged(example):
    for rounded in (False, True):
        grounding = Grounding.of(example[1], rounded)
        assert Grounding.from_json(grounding.to_json()) == grounding and grounding.sided_regions
    assert Grounding.of(example[1], rounded=True).numbers > Grounding.of(example[1]).numbers


def test_fm_export_vllm_writes_the_plain_model_and_a_lora_with_its_key_names(tmp_path, model):
    lora = fm_train_lora(load_report_model(), tmp_path / "trained-lora")
    assert any("language_model" in key for key in load_file(lora / "adapter_model.safetensors"))
    done = CliRunner().invoke(main, ["export", "vllm", str(tmp_path / "out"), "--lora", str(lora)])
    assert done.exit_code == 0, done.output
    out = tmp_path / "out"
    plain = AutoModelForCausalLM.from_pretrained(out / "model")
    assert type(plain) is type(model.language_model)
    for name, tensor in model.language_model.state_dict().items():
        assert torch.equal(plain.state_dict()[name], tensor), name
    assert AutoTokenizer.from_pretrained(out / "model").get_vocab() == model.tokenizer.get_vocab()
    keys = load_file(out / "lora" / "adapter_model.safetensors")
    assert keys and all(key.startswith("base_model.model.model.layers.") for key in keys)
    config = json.loads((out / "lora" / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert not config["modules_to_save"]
    assert (out / "python" / "fm" / "serve" / "vllm_plugin.py").is_file()  # the server's grounded decoding
    assert (out / "python" / "fm" / "core" / "findings.py").is_file()  # and what it imports, in its subpackage
    exported = VLLMExport.read(out)
    assert exported.lora_rank == 8
    for flag in ("--enable-prompt-embeds", "--enable-lora", f"{SERVED_LORA}={out / 'lora'}", "fm.serve.vllm_plugin:"):
        assert flag in done.output
    again = CliRunner().invoke(main, ["export", "vllm", str(out)])
    assert again.exit_code == 1 and "is not empty" in again.stderr and "Traceback" not in again.output
    missing = tmp_path / "no-venv" / "bin" / "python"
    served = CliRunner().invoke(main, ["serve", "--vllm-python", str(missing), "--export-dir", str(tmp_path / "e2")])
    assert served.exit_code == 1 and str(missing) in served.output and "tools/vllm-env" in served.output


def test_no_server_at_the_url_is_a_one_line_error_naming_it(model):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once the probe closes
    with pytest.raises(VLLMServerError, match=url):
        VLLMBackend(model, url)
    done = CliRunner().invoke(
        main, ["vqa", "--example", "--no-findings", "--backend", "vllm", "--vllm-url", url, "Any lesion?"]
    )
    assert done.exit_code == 1 and url in done.output and "Traceback" not in done.output
    done = CliRunner().invoke(main, ["vqa", "--example", "--backend", "vllm", "Any lesion?"])
    assert done.exit_code == 2 and "--vllm-url" in done.output


# -- a real vLLM server ---------------------------------------------------------------------------


def vllm_python() -> str:
    """The vLLM environment's Python, as tools/vllm-env builds it ($FM_VLLM_VENV or its cache)."""
    python = default_vllm_python()
    if not python.is_file():
        pytest.fail(f"no vLLM environment at {python.parents[1]}: build it with tools/vllm-env")
    return str(python)


@pytest.mark.vllm
@torch.no_grad()
def test_vllm_writes_the_transformers_text_token_for_token_with_and_without_lora(tmp_path, model, example):
    lora = fm_train_lora(load_report_model(), tmp_path / "trained-lora")
    exported = export_for_vllm(model, tmp_path / "export", lora)
    with_lora = load_report_model()
    PeftModel.from_pretrained(with_lora, lora)  # the LoRA layers go into with_lora's own modules
    requests = requests_for(model, example)
    with VLLMServer(exported, vllm_python(), log=tmp_path / "vllm.log") as server:
        for in_process, served in ((model, None), (with_lora, SERVED_LORA)):
            here = TransformersBackend(in_process)
            there = VLLMBackend(in_process, server.url, served)
            expected = [here.generate(request) for request in requests]
            assert expected[0] != expected[-1]  # grounding changes the report: the server's plugin is exercised
            got = there.batch(requests)  # one at a time: the server has LoRA enabled (VLLMBackend.one_at_a_time)
            for request, want, have in zip(requests, expected, got):
                assert have.token_ids == want.token_ids, (served, request.prompt[-60:], want.text, have.text)
                assert have.text == want.text
            assert "".join(there.stream(requests[1])).strip() == expected[1].text
        # the LoRA changed what the model writes: the comparison above was not of one model twice
        assert TransformersBackend(with_lora).generate(requests[-1]) != TransformersBackend(model).generate(
            requests[-1]
        )
        # and the command line reaches it
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "fm",
                "vqa",
                "--example",
                "--no-findings",
                "--backend",
                "vllm",
                "--vllm-url",
                server.url,
                QUESTIONS[0],
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        # as fm vqa --example reads it: the example session, segmented by the default segmenter
        session = load_session([str(path) for path in example_paths()], None, load=load_volume).volumes
        features = session_features(model, session)
        alone = build_prompt(model.num_visual_tokens(features), None, QUESTIONS[0])
        assert done.stdout.strip() == model.generate_text(features, alone, 128)


def test_vllm_writes_what_transformers_writes_for_a_composed_chat_model(tmp_path):
    """A tiny Qwen2 with a ChatML template, composed by fm lm init's path with the bundled encoder:
    its chat-template prompts, grounded and free, give the same tokens on the server, which stops
    at the template's end of turn as transformers does."""
    from test_lm_families import write_language_model

    from fm.lm.compose import compose_report_model

    # vLLM's CPU attention takes head sizes from 32 up (16 fails in the engine)
    qwen = write_language_model(tmp_path / "qwen", "qwen2", hidden_size=128, num_attention_heads=4)
    composed = compose_report_model(qwen, queries=8).eval()
    findings = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
    features = composed.scan_features(load_volume(example_path()), example_label_map())
    report, question = composed.prompt(features, findings), composed.prompt(features, findings, QUESTIONS[1])
    assert "<|im_start|>system" in report
    requests = [
        GenerationRequest(features, report, 24, grounded_in=findings),
        GenerationRequest(features, question, 12, grounded_in=findings, asked=QUESTIONS[1]),
        GenerationRequest(features, report, 24),
    ]
    exported = export_for_vllm(composed, tmp_path / "export")
    with VLLMServer(exported, vllm_python(), log=tmp_path / "vllm.log") as server:
        expected = [TransformersBackend(composed).generate(request) for request in requests]
        got = VLLMBackend(composed, server.url).batch(requests)
    for want, have in zip(expected, got):
        assert have.token_ids == want.token_ids and have.text == want.text
