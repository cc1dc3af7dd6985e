"""What a real language model costs behind the report model, measured on this machine with a
randomly initialised Qwen2 of Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV heads,
vocabulary 151,936, tied embeddings) behind the bundled encoder and a 32-query perceiver: seconds
per LoRA stage-2 step (one example of the example scan's report, its prompt in a ChatML template)
and the process's peak memory, in fp32 and with bf16 autocast (`--precision bf16`), each in its own
process; generation tokens per second with the KV cache, one prompt at a time; and the throughput
of a batch of prompts in process and through vLLM's server (the separate environment tools/vllm-env
builds; bf16 weights in both). From these, by parameter count (the
shapes of Qwen2.5-1.5B, 3B and 7B built on the meta device), an estimate for larger models and what
one 24 GB or 80 GB GPU needs. Figures are printed, never asserted.

    python eval/bench_lm_cost.py [--steps 3] [--new-tokens 32] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

SHAPES = {  # Qwen2.5 sizes: hidden, layers, heads, KV heads, MLP width, vocabulary
    "0.5B": (896, 24, 14, 2, 4864, 151936),
    "1.5B": (1536, 28, 12, 2, 8960, 151936),
    "3B": (2048, 36, 16, 2, 11008, 151936),
    "7B": (3584, 28, 28, 4, 18944, 152064),
}
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_config(size: str, vocab: int | None = None) -> Qwen2Config:
    hidden, layers, heads, kv, mlp, vocabulary = SHAPES[size]
    return Qwen2Config(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
        intermediate_size=mlp, vocab_size=vocab or vocabulary, tie_word_embeddings=size in ("0.5B", "1.5B", "3B"),
    )  # fmt: skip


def parameters(size: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(qwen_config(size)).parameters())


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with ChatML's markers (ids beyond it exist in the model but are never used)."""
    import random

    from fm.report.template_narrative import narrative_report
    from fm.synth.random_findings import random_findings

    rng = random.Random(0)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([narrative_report(random_findings(rng), i) for i in range(200)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        extra_special_tokens=specials[2:], chat_template=CHATML,
    )  # fmt: skip


def composed_model():
    """fm lm init's composition (the bundled encoder, a 32-query perceiver) of an untrained Qwen2 of
    Qwen2.5-0.5B's shape."""
    from fm.lm.compose import compose_report_model

    torch.manual_seed(0)
    return compose_report_model(qwen_config("0.5B"), queries=32, tokenizer=chat_tokenizer())


def example_inputs(model):
    from fm.core.examples import example_label_map, example_path
    from fm.core.findings import Findings
    from fm.core.io import load_volume
    from fm.lm.prompts import encode_example
    from fm.report.template_narrative import narrative_report

    findings = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
    features = model.scan_features(load_volume(example_path()), example_label_map())
    prompt, answer = encode_example(
        model.tokenizer, model.num_visual_tokens(features), findings, None, None, narrative_report(findings)
    )
    ids = torch.tensor([prompt + answer])
    labels = torch.tensor([[-100] * len(prompt) + answer])
    return features, findings, ids, labels


def training_step_seconds(precision: str, steps: int) -> dict:
    """Median seconds of a LoRA stage-2 step and the peak resident memory, in this process."""
    from fm.lm.train import trainable_for_stage
    from fm.lm.train_config import LMTrainConfig

    model = composed_model()
    features, _, ids, labels = example_inputs(model)
    trained = trainable_for_stage(model, LMTrainConfig(stage=2))
    trained.train()
    optimiser = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-4)
    seconds = []
    for _ in range(steps + 1):  # the first step warms up
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = trained(input_ids=ids, labels=labels, image_features=features).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        seconds.append(time.perf_counter() - started)
    return {
        "precision": precision,
        "tokens": ids.shape[1],
        "seconds_per_step": statistics.median(seconds[1:]),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "trainable_parameters": sum(p.numel() for p in trained.parameters() if p.requires_grad),
    }


def generation_rate(new_tokens: int) -> dict:
    """Tokens per second of greedy decoding with the KV cache, fp32 and bf16 weights."""
    model = composed_model().eval()
    features, findings, _, _ = example_inputs(model)
    prompt = model.prompt(features, findings)
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model.language_model.to(dtype)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            model.generate_text(features, prompt, new_tokens, min_new_tokens=new_tokens)
            times.append(time.perf_counter() - started)
        rates[name] = new_tokens / statistics.median(times)
    return {
        "new_tokens": new_tokens,
        "prompt_tokens": len(model.tokenize_prompts([prompt])["input_ids"][0]),
        "tokens_per_second": rates,
    }


def batch_throughput(new_tokens: int, batch: int) -> dict:
    """Tokens per second over a batch of `batch` report prompts (each about the example scan, asked
    as one request each), in process (transformers' batched generate) and through a vLLM server on
    the same weights in bf16; medians of 3 after a warm-up. vLLM is left out, with the reason, where
    its environment is missing."""
    import tempfile

    from fm.serve.backends import GenerationRequest, TransformersBackend, VLLMBackend
    from fm.serve.vllm_export import export_for_vllm
    from fm.serve.vllm_server import VLLMServer, default_vllm_python

    model = composed_model().eval()
    model.language_model.to(torch.bfloat16)
    features, findings, _, _ = example_inputs(model)
    requests = [GenerationRequest(features, model.prompt(features, findings), new_tokens) for _ in range(batch)]

    def rate(backend) -> float:
        backend.batch(requests[:1])  # warm-up
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            written = sum(len(g.token_ids) for g in backend.batch(requests))
            runs.append(written / (time.perf_counter() - started))
        return statistics.median(runs)

    rates = {"in process": rate(TransformersBackend(model))}
    try:
        python = default_vllm_python()
    except Exception as error:  # noqa: BLE001 (any reason the environment is unusable is reported)
        return {"batch": batch, "tokens_per_second": rates, "vllm": f"not measured: {error}"}
    with tempfile.TemporaryDirectory() as folder:
        exported = export_for_vllm(model, Path(folder) / "export")
        with VLLMServer(exported, python, log=Path(folder) / "vllm.log") as server:
            rates["vLLM"] = rate(VLLMBackend(model, server.url))
    return {"batch": batch, "tokens_per_second": rates}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--one", choices=("fp32", "bf16", "generate", "batch"), help=argparse.SUPPRESS)  # a child
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    if args.one:
        if args.one == "generate":
            result = generation_rate(args.new_tokens)
        elif args.one == "batch":
            result = batch_throughput(args.new_tokens, args.batch)
        else:
            result = training_step_seconds(args.one, args.steps)
        print(json.dumps(result))
        return
    results = {}
    for part in ("fp32", "bf16", "generate", "batch"):  # each in its own process: its own peak memory
        done = subprocess.run(
            [sys.executable, __file__, "--one", part, "--steps", str(args.steps), "--new-tokens", str(args.new_tokens),
             "--batch", str(args.batch)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results[part] = json.loads(done.stdout.strip().splitlines()[-1])
    counts = {size: parameters(size) for size in SHAPES}
    print(f"threads {torch.get_num_threads()}, {results['fp32']['tokens']} tokens per example (prompt and report)")
    for precision in ("fp32", "bf16"):
        row = results[precision]
        print(
            f"0.5B shape, LoRA stage 2, {precision}: {row['seconds_per_step']:.1f} s/step, "
            f"peak {row['peak_rss_gb']:.1f} GB, {row['trainable_parameters'] / 1e6:.1f} M trainable"
        )
    generation = results["generate"]["tokens_per_second"]
    print("generation with the KV cache: " + ", ".join(f"{k} {v:.1f} tokens/s" for k, v in generation.items()))
    served = results["batch"]
    print(
        f"a batch of {served['batch']} report prompts, bf16: "
        + ", ".join(f"{k} {v:.1f} tokens/s" for k, v in served["tokens_per_second"].items())
        + (f"; vLLM {served['vllm']}" if "vllm" in served else "")
    )
    base = counts["0.5B"]
    print("estimates by parameter count (step time and weights scale with it; activations with hidden x layers):")
    for size, count in counts.items():
        fp32_gb, bf16_gb = 4 * count / 2**30, 2 * count / 2**30
        print(
            f"  {size}: {count / 1e9:.2f} B parameters; CPU step ~{results['fp32']['seconds_per_step'] * count / base:.0f} s fp32; "
            f"weights {fp32_gb:.1f} GB fp32, {bf16_gb:.1f} GB bf16; one 24 GB GPU: {_fits(fp32_gb, bf16_gb, 24)}; "
            f"one 80 GB GPU: {_fits(fp32_gb, bf16_gb, 80)}"
        )


def _fits(fp32_gb: float, bf16_gb: float, gpu_gb: float) -> str:
    """LoRA training fits when the frozen weights take at most 2/3 of the GPU (the rest: activations,
    LoRA's optimiser state); above 1/3, only with --gradient-checkpointing."""
    options = (("fp32", fp32_gb), ("bf16", bf16_gb))
    for share, needs in ((1 / 3, ""), (2 / 3, " with --gradient-checkpointing")):
        for name, weights in options:
            if weights <= share * gpu_gb:
                return name + needs
    return "no (shard it, or quantise)"


if __name__ == "__main__":
    main()
