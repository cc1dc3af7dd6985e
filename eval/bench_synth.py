"""Benchmark of the synthetic data engine: scans per second on one CPU thread.

Run: .venv/bin/python eval/bench_synth.py [--n 8] [--threads 1]
Prints the median seconds per scan for a ~128^3 grid (1.4-1.7 mm over the head) and for 1 mm
scans, with the template build time reported separately (it is paid once per process).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fm.core.mni_template import load_template
from fm.synth.generator import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="scans per setting")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    load_template()
    print(f"template build (once per process): {time.perf_counter() - start:.1f} s")
    settings = {"~128^3 (1.4 x 1.7 x 1.45 mm)": (1.4, 1.7, 1.45), "1 mm isotropic": (1.0, 1.0, 1.0)}
    for name, spacing in settings.items():
        times, voxels = [], 0
        for index in range(args.n):
            start = time.perf_counter()
            sample = generate(0, index, "train", spacing_mm=spacing)
            times.append(time.perf_counter() - start)
            voxels = sample.image.size
        median = statistics.median(times)
        print(
            f"{name}: {voxels / 1e6:.2f} M voxels, median {median:.2f} s/scan "
            f"({1 / median:.2f} scans/s, min {min(times):.2f} s, max {max(times):.2f} s) on {args.threads} thread(s)"
        )


if __name__ == "__main__":
    main()
