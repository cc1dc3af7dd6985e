"""The report model on the held-out question set (fm.evaluate.question_set: 68 questions in
phrasings training never used, unmeasured ones included), asked through the path `fm vqa` takes
(fm.pipeline.conversation: unmeasured questions declined, answers grounded), on the bundled example
with the findings `fm report` measures, and on out-of-distribution synthetic scans with their true
findings. Prints the share right per kind, the share of unmeasured questions declined, and the
wrong numbers the guard let through; writes the figures to eval/results/questions.json and every
wrong answer to eval/results/questions_wrong.jsonl.

    fm synth --n 30 --seed 1 --split test --out runs/ood
    python eval/eval_questions.py --data runs/ood [--n 30] [--model fm/data/default_lm]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from tqdm import tqdm

from fm.core.examples import example_paths
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.core.labels import LabelMap
from fm.evaluate.question_set import judge, questions, summary
from fm.lm.loading import load_report_model
from fm.pipeline.conversation import answer_all
from fm.pipeline.report_pipeline import ReportPipeline
from fm.pipeline.scan_features import session_features
from fm.serve.backends import TransformersBackend
from fm.synth.dataset import load_synth_dataset

RESULTS = Path(__file__).resolve().parent / "results"


def ask_all(backend, case: str, volume, findings: Findings, label_map: LabelMap, max_new_tokens: int) -> list:
    features = session_features(backend.model, volume, label_map)
    asked = questions()
    answers = answer_all(backend, features, findings, [a.question for a in asked], max_new_tokens)
    return [judge(case, a, answer.text, findings) for a, answer in zip(asked, answers)]


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a report model folder (default: the bundled one)")
    parser.add_argument("--data", type=Path, help="an fm synth folder with a test split")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=RESULTS / "questions.json")
    args = parser.parse_args(argv)
    backend = TransformersBackend(load_report_model(args.model))
    sets = {}
    example = ReportPipeline.from_pretrained()([str(path) for path in example_paths()])  # as fm report --example
    sets["example (measured findings)"] = ask_all(
        backend, "example", example.session.volumes, example.report.findings, example.label_map, args.max_new_tokens
    )
    if args.data:
        judged = []
        for row in tqdm(list(load_synth_dataset(args.data, "test"))[: args.n], desc="synthetic scans", unit="scan"):
            findings = Findings.from_json((args.data / row["findings"]).read_text())
            volume = load_volume(args.data / row["image"])
            truth = LabelMap.load(args.data / row["labels"], findings.provenance.label_set)
            judged += ask_all(backend, row["sample_id"], volume, findings, truth, args.max_new_tokens)
        sets["OOD synthetic (true findings)"] = judged
    results, wrong = {}, []
    for name, judged in sets.items():
        figures = summary(judged)
        results[name] = figures
        wrong += [{"set": name, **dataclasses.asdict(j)} for j in judged if not j.right]
        print(
            f"{name}: {figures['answers']} answers to {figures['questions']} questions, {figures['right']:.1%} right, "
            f"{figures['declined_of_unmeasured']:.1%} of unmeasured declined, "
            f"{figures['unflagged_wrong_numbers']} wrong numbers unflagged"
        )
        print("   by kind: " + ", ".join(f"{k} {v:.0%}" for k, v in figures["by_kind"].items()))
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    wrong_out = args.out.with_name(args.out.stem + "_wrong.jsonl")
    wrong_out.write_text("".join(json.dumps(item) + "\n" for item in wrong))
    print(f"wrote {args.out} (figures) and {wrong_out} (every wrong answer, one a line)")


if __name__ == "__main__":
    main()
