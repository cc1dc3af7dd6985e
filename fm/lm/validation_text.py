"""What the report model writes on validation scans, scored while it trains. The validation loss
says how well the model predicts the reference report word by word; these say whether the report
it writes itself (greedy and grounded, as `fm report` writes it) reads like the reference (BLEU,
ROUGE-L: fm.evaluate.reports.TextScorer) and is true to the measured findings (contradictions the
faithfulness guard, fm.report.faithfulness, finds). A model can lower its loss and still learn to
contradict the measurements; these numbers show when it does.
"""

from __future__ import annotations

import statistics

import torch
from tqdm import tqdm

from fm.core.findings import Findings
from fm.evaluate.reports import TextScorer
from fm.report.faithfulness import check

TOKEN_ROOM = 1.5  # a generated report may run this much longer than its reference, in tokens


class ValidationText:
    """Scores the reports of up to `count` validation scans (the report examples, in a fixed order)
    of `dataset` (fm.lm.train.ScanTextDataset), each generated up to `max_new_tokens` (default: a
    half more than its reference)."""

    def __init__(self, dataset, count: int, max_new_tokens: int | None = None):
        reports = [example for example in dataset.examples if example.question is None]
        self.dataset, self.examples = dataset, sorted(reports, key=lambda example: example.image)[:count]
        self.max_new_tokens, self.scorer = max_new_tokens, TextScorer()

    def __bool__(self) -> bool:
        return bool(self.examples)

    @torch.no_grad()
    def score(self) -> dict[str, float]:
        """eval_bleu (corpus BLEU, 0-100), eval_rouge_l (mean F, 0-1); where the examples have
        findings, eval_contradictions_per_report and eval_faithful_share (reports with none)."""
        model = self.dataset.model
        was_training = model.training
        model.eval()
        texts, references, contradictions = [], [], []
        try:
            for example in tqdm(self.examples, desc="validation reports", unit="report", leave=False):
                findings = Findings.from_json(example.findings) if example.findings else None
                features = self.dataset.image_features(example.scan)
                room = self.max_new_tokens or int(len(model.tokenizer(example.target)["input_ids"]) * TOKEN_ROOM) + 8
                text = model.generate_text(features, model.prompt(features, findings), room, grounded_in=findings)
                texts.append(text)
                references.append(example.target)
                if findings is not None:
                    contradictions.append(len(check(text, findings).contradictions))
        finally:
            model.train(was_training)
        scores = {
            "eval_bleu": self.scorer.corpus_bleu(texts, references),
            "eval_rouge_l": statistics.fmean(self.scorer.rouge_l(t, r) for t, r in zip(texts, references)),
        }
        if contradictions:
            scores["eval_contradictions_per_report"] = statistics.fmean(contradictions)
            scores["eval_faithful_share"] = statistics.fmean(count == 0 for count in contradictions)
        return scores
