"""The linear-probe demonstration on fm.synth scans with known labels: four tasks (lesion present,
side of the largest lesion, enlarged lateral ventricles, lesion volume in mL), each probed with the
bundled segmenter's Brain-ID encoder beside its random-init twin, timm25d (resnet18 at random init:
no ImageNet weights can be downloaded here) and the intensity histogram. The scans' features are
extracted once and shared by the four tasks.

    fm synth --n 120 --seed 5 --split test --out runs/probe_synth
    python eval/probe_synth.py --data runs/probe_synth --out eval/results/probe_synth

The out-of-distribution test split is used because the bundled segmenter was trained on the
train split's distribution: its encoder has not seen these scans' contrasts or resolutions.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from fm.core.findings import Findings, Laterality
from fm.probe.run import run_probes
from fm.report.template_narrative import ventricles

TASKS = ("lesion_present", "lesion_side", "ventricles_enlarged", "lesion_volume_ml")


def write_manifests(data: Path, out: Path) -> dict[str, Path]:
    """One manifest per task from an fm synth folder; the side and volume tasks hold the scans
    with a lesion (the side task those whose largest lesion is on one side)."""
    rows = {task: [] for task in TASKS}
    for findings_file in sorted((data / "findings").glob("*.json")):
        image = data / "images" / f"{findings_file.stem}.nii.gz"
        findings = Findings.from_json(findings_file.read_text())
        rows["lesion_present"].append((image, "yes" if findings.lesions else "no"))
        judged = ventricles(findings)
        if judged is not None:
            rows["ventricles_enlarged"].append((image, "yes" if judged[1] else "no"))
        if findings.lesions:
            largest = max(findings.lesions, key=lambda lesion: lesion.volume_ml)
            rows["lesion_volume_ml"].append((image, round(sum(lesion.volume_ml for lesion in findings.lesions), 2)))
            if largest.laterality in (Laterality.left, Laterality.right):
                rows["lesion_side"].append((image, largest.laterality.value))
    out.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for task, pairs in rows.items():
        manifests[task] = out / f"{task}.csv"
        with open(manifests[task], "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows((str(path.resolve()), label) for path, label in pairs)
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder written by fm synth")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--few-shot", default="0.1,0.25,0.5,1", help="label fractions for the few-shot curve")
    args = parser.parse_args()
    manifests = write_manifests(args.data, args.out / "manifests")
    fractions = tuple(float(f) for f in args.few_shot.split(",")) if args.few_shot else ()
    summary = {}
    for task, manifest in manifests.items():
        run = run_probes(
            manifest,
            ["segmenter:synth-unet"],
            args.out / task,
            task="regression" if task == "lesion_volume_ml" else "classification",
            seeds=args.seeds,
            fractions=fractions,
            cache=args.out / "features",
        )
        summary[task] = {
            "cases": len(run.cases),
            "metric": run.settings.primary,
            "results": {
                r.source: [r.metrics[run.settings.primary], *r.intervals[run.settings.primary]] for r in run.results
            },
            "paired_tests": run.tests,
        }
        print((args.out / task / "results.md").read_text())
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
