"""Segmentation quality against reference label maps, per region: Dice, HD95 and surface Dice
(MONAI's metrics, on each scan's real voxel spacing) and the volumes in mL.

A prediction and its reference may use different label sets (this package's brain-tumour-v1 against
BraTS labels, say): regions are matched by name, the structures both sets name and the nested
lesion regions (whole tumour, tumour core, enhancing tumour) both define.
"""

from __future__ import annotations

import dataclasses
import statistics
import warnings
from pathlib import Path

import numpy as np
import torch

from fm.core.errors import InputError, InputFileError
from fm.core.labels import LabelSet

#: surface Dice counts boundary points within this distance of the other boundary (nnU-Net and the
#: Medical Segmentation Decathlon report it at 1-2 mm for brain structures)
DEFAULT_TOLERANCE_MM = 2.0
#: two grids are the same when their affines agree to this many mm
GRID_TOLERANCE_MM = 1e-3


@dataclasses.dataclass(frozen=True)
class Region:
    name: str
    predicted_ids: tuple[int, ...]
    reference_ids: tuple[int, ...]


def regions_between(predicted: LabelSet, reference: LabelSet) -> list[Region]:
    """The regions both label sets name: structures by name, then the nested lesion regions."""
    reference_ids = {name: label for label, name in reference.structures.items()}
    regions = [
        Region(name, (label,), (reference_ids[name],))
        for label, name in predicted.structures.items()
        if name in reference_ids
    ]
    regions += [
        Region(name, ids, reference.nested[name]) for name, ids in predicted.nested.items() if name in reference.nested
    ]
    if not regions:
        raise InputError(f"the label sets {predicted.name} and {reference.name} name no region in common")
    return regions


def _masks(labels: np.ndarray, regions: list[Region], side: str) -> torch.Tensor:
    """(1, regions, *grid) binary masks, the layout MONAI's metrics take."""
    ids = [getattr(region, f"{side}_ids") for region in regions]
    return torch.stack([torch.from_numpy(np.isin(labels, list(group))) for group in ids])[None].float()


def region_metrics(
    predicted: np.ndarray,
    reference: np.ndarray,
    spacing,
    regions: list[Region],
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
) -> dict[str, dict]:
    """Per region: Dice, HD95 (mm), surface Dice at `tolerance_mm`, both volumes (mL).

    The overlap metrics are NaN where the reference has no such region (nothing to score; a
    prediction there is flagged `false_positive`); HD95 is NaN where the prediction is empty too
    (flagged `missed`), so that means over cases are of defined values only.
    """
    spacing = [float(s) for s in spacing]
    pred, true = _masks(predicted, regions, "predicted"), _masks(reference, regions, "reference")
    present = true.flatten(2).sum(-1)[0] > 0
    predicted_any = pred.flatten(2).sum(-1)[0] > 0
    with warnings.catch_warnings():  # MONAI warns for every empty region (flagged below) and about its own internals
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

        dice = compute_dice(pred, true, include_background=True, ignore_empty=True)[0]
        hd95 = compute_hausdorff_distance(pred, true, include_background=True, percentile=95, spacing=spacing)[0]
        surface = compute_surface_dice(
            pred, true, [tolerance_mm] * len(regions), include_background=True, spacing=spacing
        )[0]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = {}
    for i, region in enumerate(regions):
        scored = bool(present[i])
        both = scored and bool(predicted_any[i])
        out[region.name] = {
            "dice": float(dice[i]) if scored else float("nan"),
            "hd95_mm": float(hd95[i]) if both else float("nan"),
            "surface_dice": float(surface[i]) if scored else float("nan"),
            "reference_ml": float(true[0, i].sum()) * voxel_ml,
            "predicted_ml": float(pred[0, i].sum()) * voxel_ml,
            "missed": scored and not predicted_any[i].item(),
            "false_positive": not scored and bool(predicted_any[i]),
        }
    return out


@dataclasses.dataclass(frozen=True)
class MaskPair:
    case_id: str
    prediction: Path
    reference: Path


def load_pair(pair: MaskPair, predicted: LabelSet, reference: LabelSet) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Both label maps on their common grid, with its spacing; refused when the grids differ or a
    map holds labels its label set does not define."""
    from fm.core.io import load_volume

    maps = {}
    for file, label_set in ((pair.prediction, predicted), (pair.reference, reference)):
        volume = load_volume(file)
        labels = np.asarray(volume.array)
        if not np.all(labels == np.round(labels)):
            raise InputFileError(file, "is not a label map: it holds non-integer values")
        unknown = sorted(set(np.unique(labels).astype(int).tolist()) - {0, *label_set.foreground_ids})
        if unknown:
            raise InputFileError(file, f"holds labels {unknown} that {label_set.name} does not define")
        maps[file] = (volume, labels.astype(np.int32))
    (pred_volume, pred), (ref_volume, ref) = maps[pair.prediction], maps[pair.reference]
    if pred.shape != ref.shape or not np.allclose(pred_volume.affine, ref_volume.affine, atol=GRID_TOLERANCE_MM):
        raise InputFileError(
            pair.prediction,
            f"is not on the grid of its reference {pair.reference} (shape {pred.shape} vs {ref.shape}, "
            f"or a different affine): resample one onto the other first (e.g. fm segment writes on the scan's grid)",
        )
    return pred, ref, tuple(ref_volume.spacing)


def evaluate_pairs(
    pairs: list[MaskPair],
    predicted: LabelSet,
    reference: LabelSet,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    progress: bool = True,
) -> dict:
    """Every pair's region metrics and their summary over cases."""
    from tqdm import tqdm

    regions = regions_between(predicted, reference)
    cases = []
    for pair in tqdm(pairs, desc="score segmentations", unit="case", disable=not progress):
        pred, ref, spacing = load_pair(pair, predicted, reference)
        metrics = region_metrics(pred, ref, spacing, regions, tolerance_mm)
        cases.append({"id": pair.case_id, "spacing_mm": list(spacing), "regions": metrics})
    return {
        "predicted_labels": predicted.name,
        "reference_labels": reference.name,
        "tolerance_mm": tolerance_mm,
        "regions": [dataclasses.asdict(region) for region in regions],
        "summary": summarise(cases, [region.name for region in regions]),
        "cases": cases,
    }


def _defined(values) -> list[float]:
    return [v for v in values if v == v]


def summarise(cases: list[dict], names: list[str]) -> dict[str, dict]:
    """Per region over cases: mean and median Dice, mean HD95 and surface Dice, mean absolute
    volume error (mL), and counts of cases scored, missed and false positive."""

    def mean(values):
        values = _defined(values)
        return statistics.fmean(values) if values else float("nan")

    summary = {}
    for name in names:
        rows = [case["regions"][name] for case in cases]
        dice = _defined(r["dice"] for r in rows)
        summary[name] = {
            "cases_scored": len(dice),
            "dice_mean": mean(dice),
            "dice_median": statistics.median(dice) if dice else float("nan"),
            "hd95_mm_mean": mean(r["hd95_mm"] for r in rows),
            "surface_dice_mean": mean(r["surface_dice"] for r in rows),
            "volume_error_ml_mean": mean(abs(r["predicted_ml"] - r["reference_ml"]) for r in rows),
            "missed": sum(r["missed"] for r in rows),
            "false_positive": sum(r["false_positive"] for r in rows),
        }
    return summary


def markdown_table(results: dict) -> str:
    lines = [
        f"Prediction labels {results['predicted_labels']}, reference labels {results['reference_labels']}, "
        f"{len(results['cases'])} cases; surface Dice at {results['tolerance_mm']:g} mm.",
        "",
        "| region | cases | Dice mean | Dice median | HD95 mm | surface Dice | volume error mL | missed | false positive |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results["summary"].items():
        lines.append(
            f"| {name} | {row['cases_scored']} | {row['dice_mean']:.3f} | {row['dice_median']:.3f} | "
            f"{row['hd95_mm_mean']:.1f} | {row['surface_dice_mean']:.3f} | {row['volume_error_ml_mean']:.2f} | "
            f"{row['missed']} | {row['false_positive']} |"
        )
    return "\n".join(lines) + "\n"


def dice_figure(results: dict, path: Path) -> Path:
    """Each case's Dice per region as points over a box: where a mean hides its spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["summary"])
    values = [_defined(case["regions"][name]["dice"] for case in results["cases"]) for name in names]
    shown = [(name, v) for name, v in zip(names, values) if v]
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(shown) + 1.5), 3.6), dpi=120)
    if shown:
        axis.boxplot([v for _, v in shown], showfliers=False)
        for i, (_, v) in enumerate(shown, start=1):
            axis.scatter(np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), v, s=10, alpha=0.7, color="tab:blue")
        axis.set_xticks(
            range(1, len(shown) + 1), [name.replace("_", " ") for name, _ in shown], rotation=30, ha="right"
        )
    axis.set_ylim(0, 1)
    axis.set_ylabel("Dice")
    axis.set_title(f"Dice per region ({len(results['cases'])} cases)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def read_mask_pairs(manifest: str | Path, predictions: str | Path | None = None) -> list[MaskPair]:
    """A manifest's (prediction, reference) label maps. Columns: `labels` (the reference label map,
    as fm synth's manifest-<split>.parquet names it; or `reference`) and `prediction`, or with `predictions` an `id` (or
    `sample_id`) naming the folder predictions/<id>/ whose mask.nii.gz fm report --manifest wrote."""
    from fm.core.manifests import read_rows, require_files, resolved

    manifest = Path(manifest)
    pairs = []
    for number, row in enumerate(read_rows(manifest, ()), start=1):
        reference = row.get("labels") or row.get("reference")
        case = str(row.get("id") or row.get("sample_id") or number)
        if not reference:
            raise InputFileError(manifest, "needs a 'labels' (or 'reference') column on every row")
        if predictions is not None:
            prediction = Path(predictions) / case / "mask.nii.gz"
        elif row.get("prediction"):
            prediction = resolved(manifest, row["prediction"])
        else:
            raise InputFileError(manifest, "needs a 'prediction' column, or --predictions DIR with an 'id' column")
        pairs.append(MaskPair(case, prediction, resolved(manifest, reference)))
    require_files(manifest, [file for pair in pairs for file in (pair.prediction, pair.reference)])
    return pairs
