"""Quality of a brain segmenter on the out-of-distribution synthetic test split (FLAIR/PD contrasts,
thick slices, larger and infratentorial lesions: see fm.synth.generator.SPLITS), measured on each
scan's own grid with its real spacing. `--split train --seed S` measures it in distribution instead,
on training-split scans of a seed the training did not use (the shipped model used seeds 0 and 1),
which tells what was not learnt from what does not transfer.

Voxel metrics (fm.evaluate.segmentation, MONAI): Dice, HD95 (mm) and surface Dice at 2 mm per tissue
class and per nested tumour region.
Report metrics (what a reader sees): ground-truth lesions of >= 1 mL found (a predicted lesion
whose centroid lies within max(10 mm, half the true longest diameter) of the true one), false
positive lesions per scan, lesion volume error, and laterality agreement of found lesions.

    python eval/eval_segmenter.py --n 20 --etta-compare --out eval/results/segmenter_ood.json

`--record` also writes the summary next to the weights (heads.model_folder.EVALUATION_FILE, with their
checksum): reports from that model then state its lesion sensitivity.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fm.core.labels import BRAIN_TUMOUR
from fm.core.lesion_matching import match_lesions
from fm.core.measure import measure
from fm.evaluate.segmentation import region_metrics, regions_between
from fm.synth.generator import generate
from heads.etta import segment_with_etta
from heads.model_folder import EVALUATION_FILE
from heads.segmenters import ADAPTIVE_MODEL_ID, BUNDLED_NETWORK, bundled_network_folder, create_segmenter

DETECTABLE_ML = 1.0
#: tissue classes and nested tumour regions, scored by fm.evaluate.segmentation
REGIONS = regions_between(BRAIN_TUMOUR, BRAIN_TUMOUR)


#: fm.synth contrast presets -> fm.core.contrasts names (the synthetic T1 is post-contrast: its rims enhance)
SYNTH_CONTRASTS = {"T1": "t1c", "T2": "t2", "FLAIR": "flair", "PD": "pd", "random": "unknown"}


class AdaptiveForEval:
    """The default contrast-adaptive segmenter behind the network Segmenter's call: volume -> Segmentation
    with sides (BRAIN_TUMOUR), told each scan's contrast."""

    roi_size = ()

    def __init__(self):
        from heads.brain import ContrastAdaptiveSegmenter

        self.segmenter = ContrastAdaptiveSegmenter()
        self.contrast = "unknown"

    def __call__(self, volume):
        return self.segmenter(volume.array[None], volume.affine, (self.contrast,)).with_sides(volume)


def evaluate(model, n: int, seed: int, etta_compare: bool, roi: int | None = None, split: str = "test") -> dict:
    if model == ADAPTIVE_MODEL_ID:
        if etta_compare or roi:
            raise SystemExit("--etta-compare and --roi apply to network segmenters")
        segmenter, info = AdaptiveForEval(), create_segmenter(ADAPTIVE_MODEL_ID)[1]
    else:
        segmenter, info = create_segmenter(model or BUNDLED_NETWORK)
    if roi:
        segmenter.roi_size = (roi,) * 3
    modes = ["plain", "etta"] if etta_compare else ["plain"]
    scans = []
    for index in tqdm(range(n), desc=f"{split} split scans", unit="scan"):
        sample = generate(seed, index, split)
        volume = sample.volume()
        truth_labels = volume.from_source_layout(sample.labels).array.astype(np.uint8)
        truth = measure(truth_labels, volume, BRAIN_TUMOUR)
        row = {
            "sample_id": sample.sample_id,
            "contrast": sample.params.get("contrast"),
            "spacing_mm": list(volume.spacing),
        }
        if isinstance(segmenter, AdaptiveForEval):
            segmenter.contrast = SYNTH_CONTRASTS[sample.params.get("contrast")]
        for mode in modes:
            started = time.perf_counter()
            if mode == "plain":
                result = segmenter(volume)
            else:
                result, entropies = segment_with_etta(segmenter, volume)
                row["etta_entropy"] = entropies
            seconds = time.perf_counter() - started
            predicted = measure(
                result.labels, volume, BRAIN_TUMOUR, probabilities=result.probabilities, source=info.model_id
            )
            row[mode] = {
                "seconds": seconds,
                "voxel": region_metrics(result.labels, truth_labels, volume.spacing, REGIONS),
                **match_lesions(predicted, truth),
            }
        scans.append(row)
    return {
        "model": info.model_id,
        "model_version": info.version,
        "model_sha256": info.sha256,
        "roi_size": list(segmenter.roi_size),
        "split": split,
        "seed": seed,
        "n": n,
        "scans": scans,
        "summary": {m: summarise(scans, m) for m in modes},
    }


def summarise(scans: list[dict], mode: str) -> dict:
    def mean(values):
        values = [v for v in values if v == v]  # drop NaN (region absent from the truth)
        return statistics.fmean(values) if values else float("nan")

    regions = {
        name: {
            "dice": mean([s[mode]["voxel"][name]["dice"] for s in scans]),
            "hd95_mm": mean([s[mode]["voxel"][name]["hd95_mm"] for s in scans]),
            "surface_dice": mean([s[mode]["voxel"][name]["surface_dice"] for s in scans]),
            "scans": sum(s[mode]["voxel"][name]["dice"] == s[mode]["voxel"][name]["dice"] for s in scans),
            "missed": sum(s[mode]["voxel"][name]["missed"] for s in scans),
        }
        for name in (region.name for region in REGIONS)
    }
    lesions = [lesion for s in scans for lesion in s[mode]["lesions"]]
    detectable = [lesion for lesion in lesions if lesion["true_ml"] >= DETECTABLE_ML]
    found = [lesion for lesion in lesions if lesion["found"]]
    errors = [lesion["volume_error"] for lesion in found]
    return {
        "regions": regions,
        "lesions_true": len(lesions),
        "lesions_1ml": len(detectable),
        "sensitivity_1ml": sum(lesion["found"] for lesion in detectable) / len(detectable)
        if detectable
        else float("nan"),
        "false_positives_per_scan": statistics.fmean(s[mode]["false_positives"] for s in scans),
        "median_volume_error": statistics.median(errors) if errors else float("nan"),
        "laterality_accuracy": statistics.fmean(
            lesion["laterality_true"] == lesion["laterality_predicted"] for lesion in found
        )
        if found
        else float("nan"),
        "median_seconds": statistics.median(s[mode]["seconds"] for s in scans),
    }


def print_table(results: dict) -> None:
    modes = list(results["summary"])
    print(
        f"model {results['model']} ({results['model_version']}), window {results['roi_size']}, {results['n']} {results['split']} split scans, seed {results['seed']}"
    )
    print(
        f"{'region':<32}"
        + "".join(f"{m + ' Dice':>12}{m + ' HD95 mm':>15}{m + ' SD 2mm':>14}{'missed':>8}" for m in modes)
        + f"{'scans':>7}"
    )
    for name in (region.name for region in REGIONS):
        regions = [results["summary"][m]["regions"][name] for m in modes]
        cells = "".join(
            f"{r['dice']:>12.3f}{r['hd95_mm']:>15.1f}{r['surface_dice']:>14.3f}{r['missed']:>8}" for r in regions
        )
        print(f"{name:<32}{cells}{regions[0]['scans']:>7}")
    for key in (
        "sensitivity_1ml",
        "false_positives_per_scan",
        "median_volume_error",
        "laterality_accuracy",
        "median_seconds",
    ):
        print(f"{key:<32}" + "".join(f"{results['summary'][m][key]:>35.3f}" for m in modes))
    print(
        f"true lesions {results['summary'][modes[0]]['lesions_true']}, of which >= {DETECTABLE_ML} mL: {results['summary'][modes[0]]['lesions_1ml']}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        help=f"segmenter folder (default: the bundled network) or {ADAPTIVE_MODEL_ID} (the default of fm report)",
    )
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--split", choices=("test", "train"), default="test", help="test: out of distribution (default)"
    )
    parser.add_argument("--etta-compare", action="store_true", help="also segment every scan with ETTA")
    parser.add_argument("--roi", type=int, help="cubic inference window (default: the model's own)")
    parser.add_argument("--out", type=Path, help="write all per-scan figures as JSON here")
    parser.add_argument(
        "--record", action="store_true", help=f"write the summary into the model folder ({EVALUATION_FILE})"
    )
    args = parser.parse_args()
    results = evaluate(args.model, args.n, args.seed, args.etta_compare, args.roi, args.split)
    print_table(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    if args.record:
        bundled = args.model in (None, BUNDLED_NETWORK)
        print(f"wrote {record_evaluation(results, bundled_network_folder() if bundled else Path(args.model))}")


def record_evaluation(results: dict, folder: Path) -> Path:
    """The plain (no ETTA) summary, with what it was measured on, as the model folder's evaluation record."""
    keys = ("model_version", "model_sha256", "split", "seed", "n", "roi_size")
    record = {**{key: results[key] for key in keys}, "summary": results["summary"]["plain"]}
    path = folder / EVALUATION_FILE
    path.write_text(json.dumps(_nan_to_null(record), indent=1, allow_nan=False) + "\n")  # strict JSON for other readers
    return path


def _nan_to_null(value):
    if isinstance(value, dict):
        return {key: _nan_to_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(item) for item in value]
    return None if isinstance(value, float) and value != value else value


if __name__ == "__main__":
    main()
