"""`fm probe` / `python -m eval.linear_probe`: probe every feature source on a manifest and write
what a paper needs into OUT: results.json, results.csv, results.md (metrics with 95 % intervals,
paired tests between every two sources) and the figures roc.png (classification), metrics.png
(the primary metric with its interval per source) and fewshot.png (with label fractions).

The sources are the encoders asked for, each beside its random-init twin, plus the baselines that
are always reported: the intensity histogram and timm25d (a 2D ImageNet architecture slice by
slice; random init unless weights are given with it).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from fm.probe.features import FeatureSource, ProbeCase, content_hashes, read_probe_manifest, source_features
from fm.probe.linear import (
    ProbeResult,
    ProbeSettings,
    check_cases,
    few_shot_metric,
    infer_task,
    paired_test,
    probe_source,
)

BASELINE_2D = "timm25d"


def feature_sources(specs: list[str], baseline_2d: str = BASELINE_2D) -> list[FeatureSource]:
    """The encoders asked for, each with weights followed by its random-init twin, then the
    baselines; each source once."""
    sources: list[FeatureSource] = []
    for spec in [*specs, baseline_2d, "histogram"]:
        source = FeatureSource.parse(spec)
        for each in (source, source.random_twin()) if source.weights else (source,):
            if each not in sources:
                sources.append(each)
    return sources


@dataclasses.dataclass
class ProbeRun:
    settings: ProbeSettings
    cases: list[ProbeCase]
    results: list[ProbeResult]
    tests: list[dict]
    few_shot: dict[str, dict[float, float]]  # source -> label fraction -> primary metric


def run_probes(
    manifest: str | Path,
    specs: list[str],
    out: str | Path,
    label_column: str = "label",
    task: str | None = None,
    probe: str = "linear",
    folds: int = 5,
    seeds: int = 3,
    bootstrap: int = 1000,
    fractions: tuple[float, ...] = (),
    cache: str | Path | None = None,
    baseline_2d: str = BASELINE_2D,
    progress: bool = True,
) -> ProbeRun:
    from tqdm import tqdm

    cases = read_probe_manifest(manifest, label_column)
    settings = ProbeSettings(
        task or infer_task([c.label for c in cases]), probe, folds, seeds=tuple(range(seeds)), bootstrap=bootstrap
    )
    check_cases(cases, settings)  # before any scan is read
    out = Path(out)
    cache = Path(cache) if cache else out / "features"
    sources = feature_sources(specs, baseline_2d)
    hashes = content_hashes(cases)
    features = {s.label: source_features(s, cases, cache, hashes, progress) for s in sources}
    results, few_shot = [], {}
    for name in tqdm(features, desc="probes", unit="source", disable=not progress):
        results.append(probe_source(name, features[name], cases, settings))
        if fractions:  # the whole training fold is the probe just run
            few_shot[name] = {
                f: results[-1].metrics[settings.primary]
                if f == 1
                else few_shot_metric(features[name], cases, settings, f)
                for f in fractions
            }
    tests = [paired_test(a, b, cases, settings) for a, b in itertools.combinations(results, 2)]
    run = ProbeRun(settings, cases, results, tests, few_shot)
    write_outputs(run, out)
    return run


def write_outputs(run: ProbeRun, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    settings = run.settings
    written = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md"}
    labels = [c.label for c in run.cases]
    summary = {
        "settings": dataclasses.asdict(settings),
        "cases": len(run.cases),
        "subjects": len({c.group for c in run.cases}),
        "classes": {str(k): labels.count(k) for k in sorted(set(labels), key=str)}
        if settings.task == "classification"
        else None,
        "split": "manifest"
        if any(c.split for c in run.cases)
        else f"{settings.folds}-fold group-aware, {len(settings.seeds)} seeds",
        "results": [
            {"source": r.source, "metrics": r.metrics, "ci95": r.intervals, "per_seed": r.per_seed} for r in run.results
        ],
        "paired_tests": run.tests,
        "few_shot": {s: {str(f): v for f, v in curve.items()} for s, curve in run.few_shot.items()},
    }
    written["json"].write_text(json.dumps(summary, indent=1))
    with open(written["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "metric", "value", "ci_low", "ci_high"])
        for r in run.results:
            for metric in settings.metrics:
                writer.writerow([r.source, metric, r.metrics[metric], *r.intervals[metric]])
    written["md"].write_text(_markdown(run, summary))
    written.update(_figures(run, out))
    return written


def _markdown(run: ProbeRun, summary: dict) -> str:
    settings = run.settings
    lines = [
        f"# Linear probes: {settings.task}, {settings.probe} probe",
        "",
        f"{summary['cases']} cases, {summary['subjects']} subjects; split: {summary['split']}; "
        f"95 % intervals from {settings.bootstrap} bootstrap resamples of subjects.",
        "",
        "| source | " + " | ".join(settings.metrics) + " |",
        "| --- |" + " --- |" * len(settings.metrics),
    ]
    for r in run.results:
        cells = [f"{r.metrics[m]:.3f} [{r.intervals[m][0]:.3f}, {r.intervals[m][1]:.3f}]" for m in settings.metrics]
        lines.append(f"| {r.source} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired bootstrap on {settings.primary} (a - b):",
        "",
        "| a | b | difference [95 % CI] | p |",
        "| --- | --- | --- | --- |",
    ]
    for t in run.tests:
        lines.append(
            f"| {t['a']} | {t['b']} | {t['difference']:+.3f} [{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}] | {t['p']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _figures(run: ProbeRun, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    settings, figures = run.settings, {}
    primary = settings.primary
    figure, axes = plt.subplots(figsize=(7, 0.5 + 0.45 * len(run.results)))
    values = [r.metrics[primary] for r in run.results]
    errors = np.array(
        [[v - r.intervals[primary][0], r.intervals[primary][1] - v] for v, r in zip(values, run.results)]
    ).T
    axes.barh([r.source for r in run.results], values, xerr=errors, color="#4c72b0", capsize=3)
    axes.invert_yaxis()
    if primary == "auroc":
        axes.axvline(0.5, color="grey", linestyle=":", label="chance")
    axes.set_xlabel(f"{primary} (95 % bootstrap CI)")
    figure.tight_layout()
    figures["metrics"] = out / "metrics.png"
    figure.savefig(figures["metrics"], dpi=110)
    plt.close(figure)

    y = (
        np.array([sorted({c.label for c in run.cases}, key=str).index(c.label) for c in run.cases])
        if settings.task == "classification"
        else None
    )
    if y is not None and run.results[0].predictions.shape[1] == 2:
        figure, axes = plt.subplots(figsize=(5.5, 5))
        for r in run.results:
            fpr, tpr, _ = roc_curve(y, r.predictions[:, 1])
            axes.plot(fpr, tpr, label=f"{r.source} ({r.metrics['auroc']:.2f})")
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
        axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, out-of-fold")
        axes.legend(fontsize=7, loc="lower right")
        figure.tight_layout()
        figures["roc"] = out / "roc.png"
        figure.savefig(figures["roc"], dpi=110)
        plt.close(figure)

    if run.few_shot:
        figure, axes = plt.subplots(figsize=(6, 4))
        for source, curve in run.few_shot.items():
            axes.plot([100 * f for f in curve], list(curve.values()), marker="o", label=source)
        axes.set(xlabel="share of training subjects (%)", ylabel=primary, title="label-fraction curve")
        axes.legend(fontsize=7)
        figure.tight_layout()
        figures["fewshot"] = out / "fewshot.png"
        figure.savefig(figures["fewshot"], dpi=110)
        plt.close(figure)
    return figures
