"""Benchmark of the report model's generation on this machine: tokens per second with and without
the KV cache (medians of repeats in one process, so the ratio is fair on a shared machine), time to
the first token, and a batch of questions against the same questions one by one. The end-to-end
`fm report` time with the narrative: `python eval/bench_report.py --narrative`.

    python eval/bench_lm.py --repeats 5 [--model fm/data/default_lm]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers import TextIteratorStreamer

import fm
from fm.core.examples import example_label_map, example_path
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.lm.modeling import FMForReportGeneration


def timed_generation(model, features, prompt: str, new_tokens: int, use_cache: bool) -> tuple[float, float, int]:
    """(seconds to the first token, seconds in all, tokens generated) for greedy decoding of exactly `new_tokens`."""
    import threading

    encoded = model.tokenizer(prompt, return_tensors="pt")
    streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True)
    kwargs = dict(
        **encoded,
        image_features=features,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,  # the same length every repeat: rates compare
        do_sample=False,
        use_cache=use_cache,
        streamer=streamer,
        pad_token_id=model.tokenizer.pad_token_id,
    )
    started = time.perf_counter()
    worker = threading.Thread(target=lambda: model.generate(**kwargs))
    worker.start()
    first = None
    for _ in streamer:
        if first is None:
            first = time.perf_counter() - started
    worker.join()
    return first or float("nan"), time.perf_counter() - started, new_tokens


def batch_seconds(model, features, prompts: list[str], new_tokens: int) -> tuple[float, float]:
    """Seconds to answer `prompts` one by one, and as one left-padded batch, `new_tokens` each."""
    fixed = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    started = time.perf_counter()
    for prompt in prompts:
        model.generate_text(features, prompt, **fixed)
    alone = time.perf_counter() - started
    started = time.perf_counter()
    model.generate_text(features, prompts, **fixed)
    return alone, time.perf_counter() - started


def qa_questions(findings) -> list[tuple[str, str]]:
    from fm.synth.vqa import qa_pairs

    return [(qa["type"], qa["question"]) for qa in qa_pairs(findings)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(fm.__file__).parent / "data" / "default_lm"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    model = FMForReportGeneration.from_pretrained(args.model).eval()
    findings = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
    with torch.no_grad():
        features = model.scan_features(load_volume(example_path()), example_label_map())
        prompt = model.prompt(features, findings)
        timed_generation(model, features, prompt, 8, True)  # warm-up
        runs = {True: [], False: []}
        questions = [model.prompt(features, findings, q) for _, q in qa_questions(findings)]
        batches = []
        for _ in range(args.repeats):
            for use_cache in (True, False):
                runs[use_cache].append(timed_generation(model, features, prompt, args.tokens, use_cache))
            batches.append(batch_seconds(model, features, questions, 16))
    print(
        f"report model {args.model}: {torch.get_num_threads()} threads, {args.tokens} new tokens, {args.repeats} repeats"
    )
    print(f"  prompt {len(model.tokenizer(prompt)['input_ids'])} tokens ({model.num_visual_tokens(features)} visual)")
    for use_cache, label in ((True, "with KV cache"), (False, "without cache")):
        rates = [n / seconds for _, seconds, n in runs[use_cache]]
        first = [f for f, _, _ in runs[use_cache]]
        print(
            f"  {label:<14} median {statistics.median(rates):7.1f} tokens/s   first token {statistics.median(first) * 1000:6.0f} ms"
        )
    ratio = statistics.median(n / s for _, s, n in runs[True]) / statistics.median(n / s for _, s, n in runs[False])
    print(f"  the cache makes generation {ratio:.1f}x faster")
    alone, batched = (statistics.median(b[i] for b in batches) for i in (0, 1))
    tokens = 16 * len(questions)
    print(
        f"  {len(questions)} questions, 16 tokens each: one by one {tokens / alone:6.1f} tokens/s, "
        f"as one batch {tokens / batched:6.1f} tokens/s ({alone / batched:.1f}x)"
    )


if __name__ == "__main__":
    main()
