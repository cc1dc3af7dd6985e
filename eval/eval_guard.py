"""The faithfulness guard's precision and recall on the labelled free-text corpora
(tests/data/guard_corpus*.yaml): python eval/eval_guard.py [--out eval/results/guard_corpus.json]."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fm.evaluate.guard_corpus import score, summary

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", default=DATA / "guard_corpus_findings.yaml", type=Path)
    parser.add_argument(
        "--corpus",
        nargs="+",
        type=Path,
        default=[
            DATA / f"guard_corpus{suffix}.yaml"
            for suffix in ("", "_heldout", "_final", "_fourth", "_fifth", "_sixth", "_seventh", "_eighth", "_ninth")
        ],
    )
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    results = {}
    for corpus in args.corpus:
        scored = score(corpus, args.findings)
        figures = summary(scored)
        results[corpus.name] = figures | {
            "misses": [f"{s.label} -> {s.said}: {s.text} {list(s.why)}" for s in scored if s.label != s.said]
        }
        print(
            f"{corpus.name}: {figures['reports']} reports, {figures['sentences']} sentences {figures['labelled']}; "
            f"contradictions: recall {figures['contradiction_recall']:.1%}, precision {figures['contradiction_precision']:.1%}; "
            f"false alarms {figures['false_alarm_rate']:.1%}; unmeasured claims shown as unchecked {figures['unchecked_recall']:.1%}"
        )
        for miss in results[corpus.name]["misses"]:
            print("   ", miss)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
