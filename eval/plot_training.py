"""Training curves of `fm train seg` runs: the running mean of the per-step loss in each
train_log.jsonl, one line per run, written as a PNG. A fine-tuning stage (`fm train seg --init`)
logs from step 1: `LOG:STEP` draws it from the step its starting checkpoint had.

    python eval/plot_training.py docs/training/run{1,2,3}*.jsonl docs/training/run4_finetune_offset_lesions.jsonl:4000 --out docs/training/loss.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def log_and_start(argument: str) -> tuple[Path, int]:
    path, _, start = argument.rpartition(":")
    return (Path(path), int(start)) if path and start.isdigit() else (Path(argument), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "logs", nargs="+", type=log_and_start, help="train_log.jsonl files, each optionally :START_STEP"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--window", type=int, default=50, help="steps in the running mean")
    args = parser.parse_args()
    figure = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for log, start in args.logs:
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        steps = start + np.array([row["step"] for row in rows])
        smooth = running_mean(np.array([row["loss"] for row in rows]), args.window)
        axes.plot(steps[len(steps) - len(smooth) :], smooth, label=log.stem)
    axes.set_xlabel("step")
    axes.set_ylabel(f"loss (running mean of {args.window} steps)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
