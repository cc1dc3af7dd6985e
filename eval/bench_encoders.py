"""Benchmark of the encoders on the CPU: forward time and peak memory at each family's default
input, and for Swin-BOB the ratio against plain MONAI SwinUNETR (same weights, same process,
outputs checked equal).

Run: .venv/bin/python eval/bench_encoders.py [--repeats 5] [--threads 2]
Each encoder runs in a fresh subprocess so its peak resident memory is its own. Weights are
random (timing and memory do not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

# name -> (constructor overrides, input shape (C, D, H, W)); the spec's default sizes, with
# Brain-ID on a typical 1 mm brain after its crop.
CASES = {
    "swin_bob": ({}, (1, 96, 96, 96)),
    "anatcl": ({}, (1, 121, 128, 121)),
    "brain_id": ({}, (1, 160, 192, 160)),
}


def run_case(name: str, repeats: int, threads: int) -> dict:
    from encoders.registry import create_encoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    overrides, shape = CASES[name]
    model = create_encoder(name, **overrides)
    x = torch.rand(1, *shape)
    times = []
    with torch.no_grad():
        model.forward_features(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            features = model.forward_features(x)
            times.append(time.perf_counter() - start)
    result = {
        "encoder": name,
        "input": list(shape),
        "median_s": statistics.median(times),
        "embedding": features.embedding.shape[1],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if name == "swin_bob":
        result.update(_swin_against_monai(model, x, repeats))
    return result


def _swin_against_monai(model, x, repeats: int) -> dict:
    """Plain MONAI SwinUNETR built with the same legacy patch merging and these weights."""
    from monai.networks.nets import SwinUNETR

    from encoders.swin_bob import LegacyPatchMerging

    plain = SwinUNETR(
        in_channels=1, out_channels=72, feature_size=48, normalize=True, downsample=LegacyPatchMerging
    ).eval()
    plain.load_state_dict(model.unetr.state_dict())
    ours, theirs = [], []
    with torch.no_grad():
        ours_out = model.segment(x)
        theirs_out = plain(x)
        for _ in range(repeats):  # interleaved so machine noise hits both alike
            start = time.perf_counter()
            model.segment(x)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            plain(x)
            theirs.append(time.perf_counter() - start)
    return {
        "segment_median_s": statistics.median(ours),
        "monai_segment_median_s": statistics.median(theirs),
        "ratio_vs_monai": statistics.median(ours) / statistics.median(theirs),
        "max_abs_diff_vs_monai": float((ours_out - theirs_out).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)  # one case, in a subprocess
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats, args.threads)))
        return
    for name in CASES:
        done = subprocess.run(
            [sys.executable, __file__, "--case", name, "--repeats", str(args.repeats), "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        line = (
            f"{name:<9} input {'x'.join(map(str, r['input'][1:]))}: forward_features median {r['median_s']:.2f} s, "
            f"embedding {r['embedding']}-d, peak RSS {r['peak_rss_gib']:.2f} GiB"
        )
        if "ratio_vs_monai" in r:
            line += (
                f"; segmentation {r['segment_median_s']:.2f} s vs plain MONAI {r['monai_segment_median_s']:.2f} s "
                f"(ratio {r['ratio_vs_monai']:.2f}, max |diff| {r['max_abs_diff_vs_monai']:.1e})"
            )
        print(line + f" [{args.threads} threads, {args.repeats} runs]")


if __name__ == "__main__":
    main()
