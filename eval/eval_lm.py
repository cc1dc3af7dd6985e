"""The report model on held-out synthetic scans (the out-of-distribution test split written by
`fm synth --split test`): are its narratives faithful to the findings, and does it answer from
the image when the findings are left out?

Per scan, the narrative written from the findings (the true ones, or with --measured those the
shipped segmenter measures, as in `fm report`; a model whose encoder reads the segmentation gets
the true label map, or with --measured the segmenter's) is checked against them by fm.report.faithfulness
(contradiction rate: share of narratives with at least one; omission rate: share of abnormal
findings never mentioned) and scored against the reference narrative (BLEU with sacrebleu,
ROUGE-L with rouge-score, fm.evaluate.reports; with --measured, the template narrative of the measured findings).
Closed questions (yes/no, side, count, region) are answered with the findings in the prompt (the
answer they give is right) and without them (image only, the true answer is right); the
image-only accuracy is set against the majority-class baseline, the most frequent training answer
for each kind of question.

    python eval/eval_lm.py --model runs/lm480/stage2/final --data runs/lmdata480 --n 30 [--measured] [--free]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

import fm  # noqa: F401  (registers the model)
from fm.core.errors import InputError
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.core.labels import LabelMap
from fm.evaluate.reports import TextScorer
from fm.evaluate.vqa import closed_correct
from fm.lm.modeling import FMForReportGeneration
from fm.pipeline.report_pipeline import ReportPipeline
from fm.report.faithfulness import check
from fm.report.template_narrative import narrative_report, ventricles
from fm.synth.dataset import load_synth_dataset
from fm.synth.vqa import qa_pairs

RESULTS = Path(__file__).resolve().parent / "results"


def majority_answers(data: Path) -> dict[str, str]:
    """The most frequent training answer per question kind."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in load_synth_dataset(data, "train"):
        for qa in json.loads((data / "qa" / f"{row['sample_id']}.json").read_text()):
            if qa["answer_type"] == "closed":
                counts[qa["type"]][qa["answer"]] += 1
    return {kind: counter.most_common(1)[0][0] for kind, counter in counts.items()}


def closed_pairs(pairs: list[dict]) -> list[dict]:
    return [qa for qa in pairs if qa["answer_type"] == "closed"]


@torch.no_grad()
def evaluate(model_path: str, data: Path, n: int, measured: bool = False, grounded: bool = True) -> dict:
    model = FMForReportGeneration.from_pretrained(model_path).eval()
    majority = majority_answers(data)
    text_scores = TextScorer()
    rows = list(load_synth_dataset(data, "test"))[:n]
    pipeline = ReportPipeline.from_pretrained() if measured else None
    scans, closed = [], collections.defaultdict(lambda: {"with_findings": [], "image_only": [], "majority": []})
    seconds, refused = [], []
    for row in tqdm(rows, desc="test scans", unit="scan"):
        volume = load_volume(data / row["image"])
        truth = Findings.from_json((data / row["findings"]).read_text())
        # the findings and segmentation the model is given: the truth, or what the shipped segmenter made
        try:
            result = pipeline(volume) if measured else None
        except InputError as error:  # the gate refuses some out-of-distribution contrasts
            refused.append(f"{row['sample_id']}: {error}")
            continue
        findings = result.report.findings if measured else truth
        label_map = result.label_map if measured else LabelMap.load(data / row["labels"], truth.provenance.label_set)
        reference = narrative_report(findings) if measured else row["narrative"]
        started = time.perf_counter()
        features = model.scan_features(volume, label_map)  # once per scan: every prompt below reuses it
        decode_in = findings if grounded else None  # fm.lm.grounded_decoding, as fm report decodes
        narrative = model.generate_text(features, model.prompt(features, findings), 400, grounded_in=decode_in)
        seconds.append(time.perf_counter() - started)
        guard = check(narrative, findings)
        judged = ventricles(findings)
        abnormal = len(findings.lesions) + int(judged is not None and judged[1])  # what omissions count
        scans.append(
            {
                "sample_id": row["sample_id"],
                "narrative": narrative,
                "contradictions": [str(c) for c in guard.contradictions],
                "omissions": guard.omissions,
                "abnormal_findings": abnormal,
                **text_scores.sentence(narrative, reference),
            }
        )
        # closed questions: with the findings, the answers they give; from the image alone, the truth's
        true_pairs = json.loads((data / "qa" / f"{row['sample_id']}.json").read_text())
        asked = {
            "with_findings": (findings, closed_pairs(qa_pairs(findings))),
            "image_only": (None, closed_pairs(true_pairs)),
        }
        for key, (given, questions) in asked.items():
            prompts = [model.prompt(features, given, qa["question"]) for qa in questions]
            answers = model.generate_text(
                features,
                prompts,
                12,
                grounded_in=given if grounded else None,
                asked=[qa["question"] for qa in questions],
            )
            for qa, answer in zip(questions, answers):
                closed[qa["type"]][key].append(closed_correct(answer, qa["answer"]))
        for qa in asked["image_only"][1]:
            closed[qa["type"]]["majority"].append(closed_correct(majority.get(qa["type"], ""), qa["answer"]))

    def share(values) -> float:
        return round(sum(values) / len(values), 3) if values else float("nan")

    every = {
        key: [v for kind in closed.values() for v in kind[key]] for key in ("with_findings", "image_only", "majority")
    }
    abnormal_total = sum(s["abnormal_findings"] for s in scans)
    return {
        "model": model_path,
        "data": str(data),
        "findings": "measured by the shipped segmenter" if measured else "true",
        "decoding": "grounded in the findings (fm.lm.grounded_decoding)" if grounded else "free",
        "n": len(scans),
        "refused_by_the_gate": refused,
        "summary": {
            "contradiction_rate": share([bool(s["contradictions"]) for s in scans]),
            "omission_rate": round(sum(len(s["omissions"]) for s in scans) / abnormal_total, 3)
            if abnormal_total
            else 0.0,
            "closed_vqa_accuracy_with_findings": share(every["with_findings"]),
            "closed_vqa_accuracy_image_only": share(every["image_only"]),
            "closed_vqa_majority_baseline": share(every["majority"]),
            "bleu": round(statistics.mean(s["bleu"] for s in scans), 2),
            "rouge_l": round(statistics.mean(s["rouge_l"] for s in scans), 3),
            "median_report_seconds": round(statistics.median(seconds), 2),
        },
        "closed_vqa_by_kind": {
            kind: {key: share(values) for key, values in results.items()} | {"questions": len(results["majority"])}
            for kind, results in sorted(closed.items())
        },
        "scans": scans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(fm.__file__).parent / "data" / "default_lm"))
    parser.add_argument(
        "--data", type=Path, required=True, help="a folder with train and test splits written by fm synth"
    )
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument(
        "--free",
        action="store_true",
        help="decode without fm.lm.grounded_decoding: the model's own numbers and regions",
    )
    parser.add_argument(
        "--measured", action="store_true", help="give the model the findings `fm report` measures, not the true ones"
    )
    parser.add_argument("--out", type=Path, help="default: eval/results/lm_ood[_free][_measured].json")
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"lm_ood{'_free' * args.free}{'_measured' * args.measured}.json"
    results = evaluate(args.model, args.data, args.n, args.measured, not args.free)
    for key, value in results["summary"].items():
        print(f"  {key:<36} {value}")
    for kind, figures in results["closed_vqa_by_kind"].items():
        print(f"  {kind:<12} " + "  ".join(f"{k} {v}" for k, v in figures.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
