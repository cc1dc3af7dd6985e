"""The report pipeline on real scans that nobody in this project made (../shared/realdata, see its
README): what a user would see, case by case.

- BraTS glioma cases (FLAIR + contrast-enhanced T1, z-scored and skull-stripped, expert labels),
  each run three ways: FLAIR and T1c together, FLAIR alone, T1c alone. Per run: whether the
  tumour was found, its side against the labels' side (both in MNI space through the run's own
  registration, i.e. from the affine), whole tumour / core / enhancing Dice, whole-tumour volume
  error, false-positive lesions (lesions as a report groups them, of 0.5 mL or more, that miss the
  labels);
- healthy heads (T1 and PD of one person; a skull-stripped contrast-enhanced T1): lesions and
  tissue volumes, and the T1-PD agreement;
- a head CT (8-bit): the input gate's verdict.

    python -m eval.eval_real        # prints the tables; JSON, goals.md and overlay PNGs in eval/results/

The goals table (eval.goals) sets these real-scan figures beside the synthetic and speed ones.

brats_2013_pat0006_1 was the held-out case: no threshold was tuned on it, but one lesion rule (fluid in
FLAIR, heads.lesions) came from looking at why it failed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from tqdm import tqdm  # noqa: E402

from eval.goals import all_goals, markdown  # noqa: E402
from fm.core.examples import example_contrasts, example_path, example_paths  # noqa: E402
from fm.core.io import load_volume  # noqa: E402
from fm.core.measure import grouped_lesions  # noqa: E402
from fm.core.midline import Midline  # noqa: E402
from fm.pipeline.gate import OutOfScopeError  # noqa: E402
from fm.pipeline.report_pipeline import ReportPipeline  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
RESULTS = Path(__file__).resolve().parent / "results"
BRATS_CASES = ("brats_2013_pat0005_1", "brats_2013_pat0006_1")
BRATS_RUNS = (("flair", "t1c"), ("flair",), ("t1c",))
_FILES = {"flair": "Flair_subtrMeanDivStd.nii.gz", "t1c": "T1c_subtrMeanDivStd.nii.gz"}
HEALTHY = {
    "chris_t1": ("chris_t1.nii.gz", "t1"),
    "chris_PD": ("chris_PD.nii.gz", "pd"),
    "MR_Gd": ("MR_Gd.nii.gz", "t1c"),
}
CT = "CT_pitch.nii.gz"
FALSE_POSITIVE_ML = 0.5
# BRAIN_TUMOUR lesion ids (7 oedema, 8 core, 9 enhancing); BraTS ids (1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing)
_PREDICTED = {"whole_tumour": (7, 8, 9), "tumour_core": (8, 9), "enhancing_tumour": (9,)}
_REFERENCE = {"whole_tumour": (1, 2, 3, 4), "tumour_core": (1, 3, 4), "enhancing_tumour": (4,)}
_TISSUE = {"grey matter": (3, 4), "white matter": (5, 6), "lateral ventricles": (2,), "cerebrospinal fluid": (1,)}


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = a.sum() + b.sum()
    return None if total == 0 else round(float(2 * (a & b).sum() / total), 3)


def tissue_volumes(labels: np.ndarray, voxel_ml: float) -> dict[str, float]:
    return {name: round(float(np.isin(labels, ids).sum() * voxel_ml), 1) for name, ids in _TISSUE.items()}


def side_in_mni(mask: np.ndarray, volume, scan_to_mni: np.ndarray) -> str:
    """'left' or 'right' of the registered template's midline, for the mask's centroid."""
    centre = volume.voxel_to_ras(np.argwhere(mask).mean(0))
    return "right" if Midline.of_template(scan_to_mni).is_right(centre) else "left"


def found_lesions(mask: np.ndarray, voxel_ml: float) -> tuple[np.ndarray, np.ndarray]:
    """The found lesions as a report counts them (fm.core.measure.grouped_lesions), and their volumes in mL."""
    components = grouped_lesions(mask)
    count = int(components.max())
    return components, ndimage.sum_labels(
        np.ones_like(components), components, index=np.arange(1, count + 1)
    ) * voxel_ml


def brats_run(pipeline: ReportPipeline, case: Path, contrasts: tuple[str, ...], figures: Path | None) -> dict:
    started = time.perf_counter()
    result = pipeline([case / _FILES[c] for c in contrasts], contrasts=list(contrasts))
    seconds = time.perf_counter() - started
    volume, labels, scan_to_mni = result.volume, result.segmentation.labels, result.analysis.scan_to_mni
    truth = load_volume(case / "OTMultiClass.nii.gz").array.astype(np.int16)
    voxel_ml = float(np.prod(volume.spacing)) / 1000
    found, true = np.isin(labels, _PREDICTED["whole_tumour"]), np.isin(truth, _REFERENCE["whole_tumour"])
    components, sizes = found_lesions(found, voxel_ml)
    hits = ndimage.maximum(true, components, index=np.arange(1, len(sizes) + 1)) if len(sizes) else []
    true_ml, found_ml = float(true.sum() * voxel_ml), float(found.sum() * voxel_ml)
    overlap = found & true
    subregions = result.analysis.subregions_assessed
    row = {
        "contrasts": list(contrasts),
        "seconds": round(seconds, 1),
        "lesions_reported": len(result.report.findings.lesions),
        "tumour_found": bool(overlap.any()),
        "side_reference": side_in_mni(true, volume, scan_to_mni),
        "side_found": side_in_mni(overlap, volume, scan_to_mni) if overlap.any() else None,
        "dice": {
            region: dice(np.isin(labels, ids), np.isin(truth, _REFERENCE[region]))
            if subregions or region == "whole_tumour"
            else None
            for region, ids in _PREDICTED.items()
        },
        "whole_tumour_ml": {"reference": round(true_ml, 1), "found": round(found_ml, 1)},
        "tumour_core_ml": {
            "reference": round(float(np.isin(truth, _REFERENCE["tumour_core"]).sum() * voxel_ml), 1),
            "found": round(float(np.isin(labels, _PREDICTED["tumour_core"]).sum() * voxel_ml), 1),
        }
        if subregions
        else None,
        "volume_error": round(abs(found_ml - true_ml) / true_ml, 3),
        "false_positive_lesions_ml": [
            round(float(s), 2) for s, hit in zip(sizes, hits) if not hit and s >= FALSE_POSITIVE_ML
        ],
        "tissue_ml": tissue_volumes(labels, voxel_ml),
        "impression": result.report.structured["impression"],
    }
    if figures:
        overlay(
            result.session.channels()[0],
            labels,
            true,
            figures / f"{case.name}_{'+'.join(contrasts)}.png",
            f"{case.name}, {'+'.join(contrasts)}",
        )
    return row


def healthy_run(pipeline: ReportPipeline, path: Path, contrast: str, figures: Path | None) -> dict:
    started = time.perf_counter()
    result = pipeline(path, contrasts=[contrast])
    labels = result.segmentation.labels
    voxel_ml = float(np.prod(result.volume.spacing)) / 1000
    _, sizes = found_lesions(np.isin(labels, _PREDICTED["whole_tumour"]), voxel_ml)
    if figures:
        overlay(
            result.volume.array, labels, None, figures / f"{path.name.split('.')[0]}.png", f"{path.name} ({contrast})"
        )
    return {
        "contrast": contrast,
        "seconds": round(time.perf_counter() - started, 1),
        "brain_extracted_input": result.analysis.brain_extracted_input,
        "brain_ml": round(result.analysis.brain_volume_ml, 1),
        "lesions_0_5ml": [round(float(s), 2) for s in sorted(sizes, reverse=True) if s >= FALSE_POSITIVE_ML],
        "tissue_ml": tissue_volumes(labels, voxel_ml),
        "impression": result.report.structured["impression"],
    }


def example_run(pipeline: ReportPipeline) -> dict:
    """The bundled synthetic example (T1c + FLAIR) against the truth it was drawn with."""
    result = pipeline(example_paths(), contrasts=list(example_contrasts()))
    truth = json.loads(example_path().with_name("example_brain_t1_findings.json").read_text())["lesions"]
    found = [round(lesion.volume_ml, 1) for lesion in result.report.findings.lesions]
    return {"lesion_ml": {"reference": [round(t["volume_ml"], 1) for t in truth], "found": found}}


def ct_run(pipeline: ReportPipeline, path: Path) -> dict:
    try:
        pipeline(path)
    except OutOfScopeError as refused:
        return {"refused": True, "message": str(refused)}
    return {"refused": False, "message": "reported as a brain MRI"}


def overlay(image: np.ndarray, labels: np.ndarray, truth: np.ndarray | None, path: Path, title: str) -> None:
    """Three planes through the lesion (or the middle): the image, tissue outlines, lesion in red
    with its core and enhancing parts outlined, reference outline in cyan."""
    lesion = np.isin(labels, _PREDICTED["whole_tumour"])
    focus = truth if truth is not None and truth.any() else lesion if lesion.any() else None
    centre = np.argwhere(focus).mean(0).astype(int) if focus is not None else np.array(image.shape) // 2
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for axis, cut in zip(axes, (np.s_[centre[0]], np.s_[:, centre[1]], np.s_[:, :, centre[2]])):
        axis.imshow(image[cut].T, origin="lower", cmap="gray")
        axis.contour(np.isin(labels[cut], (3, 4)).T, [0.5], colors="yellow", linewidths=0.4)
        axis.imshow(np.ma.masked_where(~lesion[cut].T, lesion[cut].T), origin="lower", cmap="autumn", alpha=0.5)
        for ids, colour in ((_PREDICTED["tumour_core"], "orange"), (_PREDICTED["enhancing_tumour"], "magenta")):
            if np.isin(labels[cut], ids).any():
                axis.contour(np.isin(labels[cut], ids).T, [0.5], colors=colour, linewidths=0.6)
        if truth is not None:
            axis.contour(truth[cut].T, [0.5], colors="cyan", linewidths=0.8)
        axis.set_axis_off()
    figure.suptitle(
        f"{title}: lesion red (core outlined orange, enhancing magenta), reference cyan, grey matter yellow"
        " (array axes; RAS from the affine)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=70, bbox_inches="tight")
    plt.close(figure)


def evaluate(data: Path, figures: Path | None) -> dict:
    pipeline = ReportPipeline.from_pretrained()
    jobs = (
        [("brats", case, run) for case in BRATS_CASES for run in BRATS_RUNS]
        + [("healthy", name, None) for name in HEALTHY]
        + [("ct", CT, None), ("example", "bundled example", None)]
    )
    results: dict = {"brats": {}, "healthy": {}}
    for kind, name, run in tqdm(jobs, desc="real scans", unit="run"):
        if kind == "brats":
            results["brats"].setdefault(name, {})["+".join(run)] = brats_run(pipeline, data / name, run, figures)
        elif kind == "healthy":
            results["healthy"][name] = healthy_run(pipeline, data / HEALTHY[name][0], HEALTHY[name][1], figures)
        elif kind == "ct":
            results["ct"] = ct_run(pipeline, data / CT)
        else:
            results["example"] = example_run(pipeline)
    t1, pd = results["healthy"]["chris_t1"]["tissue_ml"], results["healthy"]["chris_PD"]["tissue_ml"]
    results["t1_pd_difference"] = {name: round(abs(t1[name] - pd[name]) / max(t1[name], 1e-6), 3) for name in t1}
    return results


def print_tables(results: dict) -> None:
    print(
        f"{'BraTS case':<22}{'contrasts':<11}{'found':>6}{'side ref/found':>16}{'WT Dice':>9}{'core':>7}{'enh':>7}{'WT mL ref/found':>18}{'vol err':>8}{'core mL ref/found':>19}  false positives (mL)"
    )
    for case, runs in results["brats"].items():
        for run, row in runs.items():
            d = row["dice"]
            cells = "".join(
                f"{'-' if d[r] is None else format(d[r], '.3f'):>{w}}"
                for r, w in (("whole_tumour", 9), ("tumour_core", 7), ("enhancing_tumour", 7))
            )
            ml, core = row["whole_tumour_ml"], row.get("tumour_core_ml")
            core_cell = f"{core['reference']:>10.1f}/{core['found']:<8.1f}" if core else f"{'-':>19}"
            print(
                f"{case:<22}{run:<11}{str(row['tumour_found']):>6}{row['side_reference'] + '/' + str(row['side_found']):>16}{cells}"
                f"{ml['reference']:>9.1f}/{ml['found']:<8.1f}{row['volume_error']:>8.2f}{core_cell}  {row['false_positive_lesions_ml']}"
            )
    print(f"\n{'healthy':<10}{'contrast':<9}{'brain mL':>9}{'GM':>8}{'WM':>8}{'vent':>7}{'CSF':>7}  lesions >= 0.5 mL")
    for name, row in results["healthy"].items():
        t = row["tissue_ml"]
        print(
            f"{name:<10}{row['contrast']:<9}{row['brain_ml']:>9.0f}{t['grey matter']:>8.0f}{t['white matter']:>8.0f}{t['lateral ventricles']:>7.1f}{t['cerebrospinal fluid']:>7.0f}  {row['lesions_0_5ml']}"
        )
    print(f"T1 vs PD (same person), relative difference: {results['t1_pd_difference']}")
    print(f"CT: {'refused' if results['ct']['refused'] else 'NOT refused'}: {results['ct']['message']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the realdata folder (default: ../shared/realdata)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "realdata.json")
    parser.add_argument("--figures", type=Path, default=RESULTS / "realdata", help="overlay PNGs here")
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder; the real scans live in ../shared/realdata beside the checkout")
    results = evaluate(args.data, args.figures)
    print_tables(results)
    table = markdown(all_goals(results))
    print(f"\nIssue 31's goals (real scans from this run; synthetic and speed from their own results):\n{table}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    goals_file = args.out.with_name("goals.md")
    goals_file.write_text(f"# The default segmenter's goals\n\n{table}")
    print(f"wrote {args.out}, {goals_file} and overlays in {args.figures}")


if __name__ == "__main__":
    main()
