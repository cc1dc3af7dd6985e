"""Benchmark of `fm report` on the bundled 1 mm example: per-stage wall-clock time and peak memory,
each repeat in a fresh process (as a user runs the command), medians printed.

    python eval/bench_report.py --repeats 3 --threads 2 [--narrative]

Stages: import (Python, numpy, SciPy, SimpleITK, nibabel; the default needs neither torch nor
MONAI), model (set up the default segmenter), the pipeline's own stages (load, gate, segment,
measure), with --narrative the report model's load (what is left of it after the segmentation, which
it overlaps as in `fm report`) and narrative (fm.pipeline.narration), and write
(JSON, Markdown, PNG, PDF, mask). The atlas priors come from the user's cache
after the first run (heads.tissue_priors.mni_priors); the first repeat builds them when the cache is cold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

_STARTED = time.perf_counter()


def child(threads: int, out: str, etta: bool, narrative: bool) -> None:
    import resource

    import SimpleITK

    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    from fm.core.examples import example_contrasts, example_paths
    from fm.pipeline.report_folder import write_report_folder
    from fm.pipeline.report_pipeline import ReportPipeline

    timings = {"import": time.perf_counter() - _STARTED}
    started = time.perf_counter()
    pipeline = ReportPipeline.from_pretrained(etta=etta)
    timings["model"] = time.perf_counter() - started
    if narrative:  # what `fm report` adds by default when a report model is bundled: loaded meanwhile
        from fm.lm.loading import BackgroundLoad

        loading = BackgroundLoad()
    result = pipeline(example_paths(), contrasts=list(example_contrasts()))
    timings.update(result.report.provenance.timings_s)
    report = result.report
    if narrative:
        from fm.lm.loading import DEFAULT_LM_ID
        from fm.pipeline.narration import narrate

        started = time.perf_counter()
        report_model = loading.result()
        timings["lm load (left to wait)"] = time.perf_counter() - started
        started = time.perf_counter()
        # with the segmentation just made, as `fm report` passes it: the encoder reads it, never segments again
        report = narrate(report, result.session.volumes, report_model, DEFAULT_LM_ID, label_map=result.label_map)
        timings["narrative"] = time.perf_counter() - started
    started = time.perf_counter()
    seg = result.segmentation
    write_report_folder(report, result.volume, seg.labels, seg.label_set, out)
    timings["write"] = time.perf_counter() - started
    timings["total"] = time.perf_counter() - _STARTED
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    print(json.dumps({"timings_s": timings, "peak_rss_gib": peak_gib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--etta", action="store_true", help="network models only")
    parser.add_argument("--narrative", action="store_true", help="add the bundled report model's narrative")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.threads, args.child, args.etta, args.narrative)
        return
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            command = (
                [sys.executable, __file__, "--child", out, "--threads", str(args.threads)]
                + (["--etta"] if args.etta else [])
                + (["--narrative"] if args.narrative else [])
            )
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode:
            sys.exit(f"repeat {repeat + 1} failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"repeat {repeat + 1}: total {runs[-1]['timings_s']['total']:.1f} s, peak {runs[-1]['peak_rss_gib']:.2f} GiB",
            file=sys.stderr,
        )
    print(
        f"fm report on the bundled 1 mm example, {args.threads} threads, {args.repeats} fresh processes"
        + (", ETTA on" if args.etta else "")
        + (", with the language model's narrative" if args.narrative else "")
    )
    for stage in runs[0]["timings_s"]:
        values = [r["timings_s"][stage] for r in runs]
        print(
            f"  {stage:<11} median {statistics.median(values):7.2f} s   (min {min(values):.2f}, max {max(values):.2f})"
        )
    print(f"  peak RSS    median {statistics.median(r['peak_rss_gib'] for r in runs):7.2f} GiB")


if __name__ == "__main__":
    main()
