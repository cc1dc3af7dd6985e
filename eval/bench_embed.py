"""Memory and time of `fm embed` per encoder, and what tiling and bf16 cost in accuracy.

    python eval/bench_embed.py               # fm embed --example per encoder, fresh processes
    python eval/bench_embed.py --calibrate   # re-measure encoders.memory.PROFILES
    python eval/bench_embed.py --accuracy    # tiled vs whole volume, bf16 vs fp32 (cosine)

Peak memory is the resident set of a fresh process (ru_maxrss), time its wall clock; the weights
are random (seeded) unless a checkpoint is given, which does not change memory or time. The
machines are shared: figures are medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

GIB = 1024**3

# One `fm embed` in this process, then its peak RSS (KiB on Linux) on the last line of stderr.
_CLI_CHILD = """
import resource, sys, time
from fm.cli.fm_cli import main
started = time.perf_counter()
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)
"""

# One forward pass on a random input of size^3 voxels (size 0: the encoder's own input size).
_FORWARD_CHILD = """
import resource, sys, torch
from encoders.registry import create_encoder
family, size, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
model = create_encoder(family).eval()
shape = (size, size, size) if size else tuple(model.spec.size)
x = torch.rand(1, model.spec.in_channels, *shape)
cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
with torch.inference_mode(), cast:
    model.forward_features(x)
print(json.dumps({"voxels": int(torch.tensor(shape).prod()), "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)
"""


def _child(code: str, args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", "import json\n" + code, *args], capture_output=True, text=True)
    if done.returncode != 0 and "peak_kib" not in done.stderr:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stderr.strip().splitlines()[-1])


def bench_cli(encoders: list[tuple[str, list[str]]], repeats: int) -> None:
    print(f"fm embed --example, {repeats} fresh process(es) each (median)")
    for name, extra in encoders:
        runs = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(
                    _child(
                        _CLI_CHILD,
                        ["embed", "--example", "--encoder", name, *extra, "--out", str(Path(tmp) / "e.parquet")],
                    )
                )
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_kib"] for r in runs) * 1024 / GIB
        print(f"  {name:<10} {' '.join(extra):<28} {seconds:7.1f} s   peak {peak:5.2f} GiB")


def calibrate() -> None:
    """Two sizes per family and precision -> MemoryProfile(fixed, per voxel)."""
    for family, sizes in (
        ("brain_id", (96, 128)),
        ("swin_bob", (64, 128)),
        ("anatcl", (64, 0)),
        ("timm25d", (64, 128)),
    ):
        for precision in ("fp32", "bf16"):
            points = [_child(_FORWARD_CHILD, [family, str(s), precision]) for s in sizes]
            (v0, p0), (v1, p1) = ((p["voxels"], p["peak_kib"] * 1024) for p in points)
            per_voxel = (p1 - p0) / max(v1 - v0, 1)
            print(
                f"{family:<9} {precision}: {p0 / GIB:.2f} / {p1 / GIB:.2f} GiB -> MemoryProfile({(p0 - per_voxel * v0) / GIB:.2f} * GIB, {per_voxel:.0f})"
            )


def accuracy(size: int, tile: int) -> None:
    """Brain-ID and Swin-BOB on the bundled example cropped to size^3: the whole-volume fp32
    embedding against tiles of tile^3 and against bf16 autocast."""
    import torch

    from encoders.registry import create_encoder
    from fm.core.examples import example_path
    from fm.core.io import load_volume
    from fm.probe.embed import tiled_embedding

    volume = load_volume(example_path())
    for family in ("brain_id", "swin_bob"):
        torch.manual_seed(0)
        model = create_encoder(family).eval()
        x = model.preprocess(volume).tensor
        starts = [(s - size) // 2 for s in x.shape[2:]]
        x = x[:, :, starts[0] : starts[0] + size, starts[1] : starts[1] + size, starts[2] : starts[2] + size]
        with torch.inference_mode():
            whole = model.forward_features(x).embedding
            tiled = tiled_embedding(model, x, tile)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = model.forward_features(x).embedding.float()
        cosine = torch.nn.functional.cosine_similarity
        relative = lambda other: float((other - whole).abs().max() / whole.abs().max())  # noqa: E731
        print(
            f"{family:<9} {size}^3: tiles of {tile}^3 cosine {float(cosine(whole, tiled)):.4f} (max relative difference {relative(tiled):.3f}); "
            f"bf16 cosine {float(cosine(whole, half)):.6f} (max relative difference {relative(half):.4f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.calibrate:
        calibrate()
    elif args.accuracy:
        accuracy(size=128, tile=64)
    else:
        bench_cli(
            [
                ("anatcl", []),
                ("swin_bob", []),
                ("brain_id", ["--precision", "bf16"]),
                ("brain_id", ["--tile", "128", "--precision", "bf16"]),
            ],
            args.repeats,
        )


if __name__ == "__main__":
    main()
