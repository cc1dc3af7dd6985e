"""The project's performance table in one command: encoder forward passes per family, segmentation,
`fm report` per stage, embedding throughput cold and cached, and the report model's tokens/s, with
medians over repeats, each case's peak memory and the machine it ran on.

    python -m eval.bench [--repeats 3] [--threads 2] [--only encoders,segmentation,report,embed,lm] [--out eval/results/bench]

Every case runs in a fresh process, so its peak resident memory (and on a GPU, its peak allocated
GPU memory) is its own; within a case the first run is a warm-up and the median of the repeats is
reported. Weights of the published families are random here (time and memory do not depend on
their values); the segmenters and the report model are the bundled ones. Writes bench.json and
bench.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("encoders", "segmentation", "report", "embed", "lm")
#: family -> (constructor overrides, input (C, D, H, W)): the spec's default sizes; Brain-ID on a
#: typical 1 mm brain after its crop; timm25d: resnet18 over the slices of a 1 mm brain
ENCODERS = {
    "swin_bob": ({}, (1, 96, 96, 96)),
    "anatcl": ({}, (1, 121, 128, 121)),
    "brain_id": ({}, (1, 160, 192, 160)),
    "timm25d": ({}, (1, 160, 192, 160)),
}
EMBED_SCANS = 8


def _timed(function, repeats: int) -> list[float]:
    function()  # warm-up: lazy initialisation, caches, allocator
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def _peaks() -> dict:
    peaks = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # kB on Linux
    import torch

    if torch.cuda.is_available():
        peaks["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return peaks


def case_encoder(name: str, repeats: int) -> list[dict]:
    import torch

    from encoders.registry import create_encoder

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides, shape = ENCODERS[name]
    model = create_encoder(name, **overrides).eval().to(device)
    x = torch.rand(1, *shape, device=device)

    def forward():
        with torch.inference_mode():
            model.forward_features(x)
        if device == "cuda":
            torch.cuda.synchronize()

    times = _timed(forward, repeats)
    what = f"forward_features, {'x'.join(map(str, shape[1:]))} voxels, random weights"
    return [{"group": "encoders", "case": name, "what": what, "median_s": statistics.median(times), **_peaks()}]


def case_segmentation(model: str, repeats: int) -> list[dict]:
    """The pipeline (load, gate, segment, measure) on the bundled example: both contrasts for the
    contrast-adaptive default, the T1 for the one-channel network."""
    from fm.core.examples import example_contrasts, example_path, example_paths
    from fm.pipeline.report_pipeline import ReportPipeline
    from heads.segmenters import ADAPTIVE_MODEL_ID

    pipeline = ReportPipeline.from_pretrained(model)
    adaptive = model == ADAPTIVE_MODEL_ID
    paths = example_paths() if adaptive else [example_path()]
    contrasts = list(example_contrasts()) if adaptive else None
    results = []
    times = _timed(lambda: results.append(pipeline(paths, contrasts=contrasts)), repeats)
    segment = statistics.median(r.report.provenance.timings_s["segment"] for r in results[1:])
    scans = "T1c + FLAIR" if adaptive else "T1c"
    return [
        {
            "group": "segmentation",
            "case": model,
            "what": f"the bundled 1 mm example ({scans}) through load, gate, segment, measure; segment alone {segment:.1f} s",
            "median_s": statistics.median(times),
            **_peaks(),
        }
    ]


def case_report(repeats: int, threads: int) -> list[dict]:
    """`fm report --example` per stage, each repeat a fresh process as a user runs it (eval/bench_report.py)."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            command = [
                sys.executable,
                str(ROOT / "eval" / "bench_report.py"),
                "--child",
                out,
                "--threads",
                str(threads),
            ]
            done = subprocess.run(command + ["--narrative"], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    peak = statistics.median(run["peak_rss_gib"] for run in runs)
    return [
        {
            "group": "report",
            "case": stage,
            "what": "fm report --example, fresh process" if stage == "total" else "stage of fm report --example",
            "median_s": statistics.median(run["timings_s"][stage] for run in runs),
            "peak_rss_gib": peak,
        }
        for stage in runs[0]["timings_s"]
    ]


def case_embed(repeats: int) -> list[dict]:
    """fm embed of EMBED_SCANS scans, cold (network) and cached (content hashes only)."""
    from fm.core.examples import example_path
    from fm.core.io import load_volume, save_volume
    from fm.probe.embed import embed_scans

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        example = load_volume(example_path())
        scans = []
        for i in range(EMBED_SCANS):  # distinct files: a scan embeds once per content hash
            noisy = example.with_array(example.array * (1 + 0.01 * i))
            scans.append(save_volume(noisy, Path(folder) / f"scan{i}.nii.gz"))
        cold, cached = [], []
        for repeat in range(repeats + 1):
            out = Path(folder) / f"emb{repeat}.parquet"
            for timings in (cold, cached):
                started = time.perf_counter()
                embed_scans(scans, "brain_id", out, overrides={"f_maps": 8}, progress=False)
                timings.append(time.perf_counter() - started)
        for label, times in (("cold", cold[1:]), ("cached", cached[1:])):
            seconds = statistics.median(times)
            rows.append(
                {
                    "group": "embed",
                    "case": f"brain_id {label}",
                    "what": f"{EMBED_SCANS} scans of the example's grid; {EMBED_SCANS / seconds:.1f} scans/s",
                    "median_s": seconds,
                    **_peaks(),
                }
            )
    return rows


def case_lm(repeats: int) -> list[dict]:
    """Greedy tokens/s of the bundled report model with the KV cache, and time to the first token."""
    import torch

    from eval.bench_lm import timed_generation
    from fm.core.examples import example_label_map, example_path
    from fm.core.findings import Findings
    from fm.core.io import load_volume
    from fm.lm.loading import load_report_model, model_input

    model = load_report_model(None)
    findings = Findings.from_json(example_path().with_name("example_brain_t1_findings.json").read_text())

    tokens = 200
    with torch.no_grad():
        features = model.scan_features(model_input([load_volume(example_path())], model), example_label_map())
        prompt = model.prompt(features, findings)
        timed_generation(model, features, prompt, 8, True)  # warm-up
        runs = [timed_generation(model, features, prompt, tokens, True) for _ in range(repeats)]
    rate = statistics.median(n / seconds for _, seconds, n in runs)
    first = statistics.median(f for f, _, _ in runs)
    return [
        {
            "group": "lm",
            "case": "report model",
            "what": f"{tokens} greedy tokens with the KV cache: {rate:.0f} tokens/s, first token {first * 1000:.0f} ms",
            "median_s": statistics.median(seconds for _, seconds, _ in runs),
            **_peaks(),
        }
    ]


def cases(groups: list[str]) -> list[list[str]]:
    """The --case arguments of every case in these groups."""
    listed = []
    for group in groups:
        if group == "encoders":
            listed += [["encoder", name] for name in ENCODERS]
        elif group == "segmentation":
            listed += [["segmentation", "fm3d/atlas-em"], ["segmentation", "synth-unet"]]
        else:
            listed.append([group])
    return listed


def run_case(case: list[str], repeats: int, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    kind, *argument = case
    if kind == "encoder":
        return case_encoder(argument[0], repeats)
    if kind == "segmentation":
        return case_segmentation(argument[0], repeats)
    if kind == "report":
        return case_report(repeats, threads)
    if kind == "embed":
        return case_embed(repeats)
    return case_lm(repeats)


def machine() -> dict:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def markdown(rows: list[dict], about: dict, repeats: int, threads: int) -> str:
    gpu = about["gpu"] or "no GPU"
    lines = [
        f"Machine: {about['cpu']}, {about['cores_available']} cores available, {about['memory_gib']} GiB, {gpu}; "
        f"Python {about['python']}, torch {about['torch']}; {threads} threads; medians of {repeats} repeats "
        f"after a warm-up; {about['when_utc']} UTC.",
        "",
        "| group | case | median s | peak RSS GiB | what |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        peak = f"{row['peak_rss_gib']:.2f}" + (f" (GPU {row['peak_gpu_gib']:.2f})" if "peak_gpu_gib" in row else "")
        lines.append(f"| {row['group']} | {row['case']} | {row['median_s']:.2f} | {peak} | {row['what']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "bench")
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)  # one case, in a child process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats, args.threads)))
        return
    groups = [group.strip() for group in args.only.split(",") if group.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    from tqdm import tqdm

    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for case in tqdm(cases(groups), desc="benchmark cases", unit="case"):
        command = [sys.executable, "-m", "eval.bench", "--repeats", str(args.repeats), "--threads", str(args.threads)]
        done = subprocess.run(command + ["--case", *case], capture_output=True, text=True, cwd=ROOT, env=env)
        if done.returncode:
            sys.exit(f"case {' '.join(case)} failed:\n{done.stderr[-3000:]}")
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    about = machine()
    table = markdown(rows, about, args.repeats, args.threads)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(
        json.dumps({"machine": about, "repeats": args.repeats, "threads": args.threads, "rows": rows}, indent=1)
    )
    (args.out / "bench.md").write_text(table)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")


if __name__ == "__main__":
    main()
