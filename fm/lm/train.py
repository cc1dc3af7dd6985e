"""Training the report model (fm.lm.modeling) in two stages on scans with their findings and texts,
with transformers' Trainer: seeded, checkpointed, resumable (run the same command again), logged
(out/log.csv: loss, learning rate, validation loss, and BLEU, ROUGE-L and the guard's contradictions
of reports written on validation scans; TensorBoard too with --report-to tensorboard), and unchanged under `torchrun` or `accelerate
launch` with several processes (gloo on CPUs). The data are a folder written by `fm synth`
(fm.synth.dataset) or a cohort of one's own scans and reports (fm.lm.cohort: a CSV, JSON Lines or
parquet table, a `datasets` folder or a Hub dataset), split by patient into training and validation.

- stage 1, alignment: the language model is frozen; the adapter alone learns to put the scan
  where the language model can read it, from report examples;
- stage 2, instruction tuning: LoRA (peft) on the language model's attention and MLP projections,
  the adapter trained in full, on reports, single questions and multi-turn chats. With
  `full_lm`, the whole language model trains instead of LoRA: for one trained from scratch (the
  default bundle, fm.lm.default_lm), where a low-rank update has nothing to build on.

A share of the examples (`image_only_share`) leaves the findings out of the prompt, so the model
also learns to answer from the image alone (what fm.lm.modeling's findings-free mode measures); and
`random_findings` adds text examples for findings drawn at random, which teach it to copy the
measurements rather than recall the training scans'. The options: fm.lm.train_config.

    fm train lm --init MODEL_DIR --data cohort.csv --findings-from reports/ --out runs/lm1 --stage 1
    torchrun --nproc_per_node 2 -m fm.lm.train --init runs/lm1/final --data SYNTH_DIR --out runs/lm2 --stage 2
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import random
import sys
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from fm.core.checksums import content_hash
from fm.core.errors import InputError
from fm.core.findings import Findings
from fm.core.io import load_volume
from fm.core.labels import LabelMap
from fm.core.session import load_session
from fm.lm.cohort import is_cohort
from fm.lm.loading import model_input
from fm.lm.modeling import FMForReportGeneration
from fm.lm.prompts import encode_example
from fm.lm.train_config import LMTrainConfig, add_config_options, config_from_args
from fm.lm.validation_text import ValidationText
from fm.probe.embed import weights_hash
from fm.report.template_narrative import narrative_report
from fm.synth.dataset import load_synth_dataset
from fm.synth.random_findings import random_findings
from fm.synth.vqa import qa_pairs

#: LoRA goes on the language model's projections only (a full-match regex: the encoder and the
#: adapter have linear layers too), with standard key names so a server can load the adapter alone;
#: the names cover the families fm lm init is tested with (tests/test_lm_families.py).
LORA_TARGETS = (
    r".*language_model\..*\."
    r"(q_proj|k_proj|v_proj|o_proj|qkv_proj|gate_proj|up_proj|gate_up_proj|down_proj"  # Llama, Qwen2, Gemma, Phi-3
    r"|c_attn|c_proj|c_fc)"  # GPT-2
)


@dataclasses.dataclass(frozen=True)
class Example:
    image: str
    findings: str | None  # Findings JSON; None: the image-only mode
    target: str
    question: str | None = None  # None: the report task
    history: tuple[tuple[str, str], ...] = ()
    segmentation: tuple[str, str] | None = None  # (label-map file, label set name) of the scan

    @property
    def scan(self) -> tuple[str, tuple[str, str] | None]:
        """What the encoder reads: the scan's files and its segmentation."""
        return self.image, self.segmentation


#: turns of history in a synthetic chat example: enough to teach multi-turn, short enough to train on
CHAT_TURNS = 5


def synth_examples(
    folder: str | Path,
    split: str,
    stage: int,
    seed: int = 0,
    image_only_share: float = 0.2,
    image_only_copies: int = 0,
) -> list[Example]:
    """Text examples from a synthetic dataset folder: each scan's report, and in stage 2 its
    questions one by one and some of them as one multi-turn chat. Image-only examples (findings left
    out) are drawn among stage 1's reports and stage 2's closed questions (yes/no, count, side,
    region), and each closed question is asked `image_only_copies` more times without them: without
    the measurements a model must not be taught to write numbers."""
    folder = Path(folder)
    rng = random.Random(seed)
    examples = []
    for row in load_synth_dataset(folder, split):
        findings = (folder / row["findings"]).read_text()
        image = str(folder / row["image"])
        segmentation = (str(folder / row["labels"]), Findings.from_json(findings).provenance.label_set)

        def grounding(image_only_allowed: bool) -> str | None:
            return None if image_only_allowed and rng.random() < image_only_share else findings

        examples.append(Example(image, grounding(stage == 1), row["narrative"], segmentation=segmentation))
        if stage == 1:
            continue
        pairs = json.loads((folder / "qa" / f"{row['sample_id']}.json").read_text())
        examples += [
            Example(
                image,
                grounding(pair["answer_type"] == "closed"),
                pair["answer"],
                pair["question"],
                segmentation=segmentation,
            )
            for pair in pairs
        ]
        examples += [
            Example(image, None, pair["answer"], pair["question"], segmentation=segmentation)
            for pair in pairs
            if pair["answer_type"] == "closed"
            for _ in range(image_only_copies)
        ]
        if len(pairs) > 1:
            *earlier, last = rng.sample(pairs, min(len(pairs), CHAT_TURNS + 1))
            history = tuple((pair["question"], pair["answer"]) for pair in earlier)
            examples.append(
                Example(image, findings, last["answer"], last["question"], history, segmentation=segmentation)
            )
    return examples


def random_findings_examples(count: int, scans: list[tuple], seed: int = 0) -> list[Example]:
    """Examples for `count` sets of findings drawn at random (fm.synth.random_findings): the report
    and two questions each, shown with one of `scans` (Example.scan) that the findings do not describe. A few
    hundred scans give a few hundred sets of numbers, which a small model memorises; these it can
    only copy, and they teach it that the measurements, not its impression of the image, decide
    what it writes (as `fm report` needs when it narrates what the segmenter measured)."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        findings = random_findings(rng)
        text, (image, segmentation) = findings.to_json(), rng.choice(scans)
        examples.append(
            Example(image, text, narrative_report(findings, seed=rng.randrange(2**31)), segmentation=segmentation)
        )
        pairs = qa_pairs(findings, seed=rng.randrange(2**31))
        examples += [
            Example(image, text, p["answer"], p["question"], segmentation=segmentation)
            for p in rng.sample(pairs, min(2, len(pairs)))
        ]
    return examples


def cohort_examples(
    rows, stage: int, seed: int = 0, image_only_share: float = 0.2, image_only_copies: int = 0
) -> list[Example]:
    """Examples from a cohort's rows (fm.lm.cohort): each report with the session's measured
    findings (or none, when the cohort has none), and in stage 2 its questions; image-only
    examples among the closed questions, as synth_examples draws them."""
    rng = random.Random(seed)
    examples = []
    for row in rows:
        examples.append(Example(row.image, row.findings, row.report, segmentation=row.segmentation))
        if stage == 1:
            continue
        for pair in row.qa:
            closed = (pair.get("answer_type") or "closed") == "closed" and len(str(pair["answer"]).split()) <= 4
            findings = None if closed and rng.random() < image_only_share else row.findings
            question, answer = str(pair["question"]), str(pair["answer"])
            examples.append(Example(row.image, findings, answer, question, segmentation=row.segmentation))
            copies = image_only_copies if closed else 0
            examples += [Example(row.image, None, answer, question, segmentation=row.segmentation)] * copies
    return examples


def read_training_data(data: str | Path, split: str, config: LMTrainConfig, out: Path | None = None):
    """(training examples, validation examples) from an fm synth folder or a cohort; a cohort's
    skipped rows are printed and, with `out`, listed in out/skipped_rows.csv."""
    from fm.lm.cohort import read_cohort, split_rows

    if not is_cohort(data):
        return training_examples(data, split, config), []
    rows, skipped = read_cohort(data, config.report_section, config.findings_from or None, config.strict)
    for row in skipped:
        print(f"skipped {row}", file=sys.stderr)
    if out is not None and skipped:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "skipped_rows.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "id", "reason"])
            writer.writerows((row.row, row.id, row.reason) for row in skipped)
    unmeasured = sum(row.findings is None for row in rows)
    if unmeasured:
        print(
            f"note: {unmeasured} of {len(rows)} rows have no measured findings: the model learns to write their "
            "reports from the image alone (give --findings-from, the folder `fm report --manifest` wrote)",
            file=sys.stderr,
        )
    train_rows, validation_rows = split_rows(rows, config.val_fraction, config.seed)
    train = cohort_examples(train_rows, config.stage, config.seed, config.image_only_share, config.image_only_copies)
    scans = sorted({example.scan for example in train}, key=str)
    train += random_findings_examples(config.random_findings, scans, config.seed)
    return train, cohort_examples(validation_rows, config.stage, config.seed, 0.0)


def training_examples(data: str | Path, split: str, config: LMTrainConfig) -> list[Example]:
    examples = synth_examples(data, split, config.stage, config.seed, config.image_only_share, config.image_only_copies)
    scans = sorted({example.scan for example in examples}, key=str)
    return examples + random_findings_examples(config.random_findings, scans, config.seed)


class ScanTextDataset(torch.utils.data.Dataset):
    """Examples as model inputs: the scan, the prompt and the target (the loss falls on the target
    and its end token only). A frozen encoder's features are computed once per scan and kept (each
    scan serves several examples, and the encoder costs more than a language-model step), on disk
    too when `cache_dir` is given, so that a rerun or a resumed run does not encode again; a
    trained encoder gets the prepared scan."""

    def __init__(
        self, examples: list[Example], model: FMForReportGeneration, max_length: int, cache_dir: Path | None = None
    ):
        self.examples, self.model, self.max_length, self.cache_dir = examples, model, max_length, cache_dir
        self._scans: dict[tuple, torch.Tensor] = {}
        self._encoder_key: str | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def encode_all(self) -> None:
        """Every scan's input up front, with a progress bar (else each on first use)."""
        scans = sorted({example.scan for example in self.examples}, key=str)
        for scan in tqdm(scans, desc="encoding scans", unit="scan"):
            self._scan(scan)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        findings = Findings.from_json(example.findings) if example.findings else None
        prompt_ids, target_ids = encode_example(
            self.model.tokenizer,
            self.model.num_visual_tokens(self.image_features(example.scan)),
            findings,
            example.question,
            list(example.history),
            example.target,
        )
        if len(prompt_ids) + len(target_ids) > self.max_length:
            raise ValueError(
                f"{example.image}: example of {len(prompt_ids) + len(target_ids)} tokens, above max_length {self.max_length}"
            )
        return {
            "input_ids": torch.tensor(prompt_ids + target_ids),
            "labels": torch.tensor([-100] * len(prompt_ids) + target_ids),
            self._scan_key: self._scan(example.scan),
        }

    def image_features(self, scan: tuple) -> torch.Tensor:
        """The encoder's map of a scan (Example.scan), a batch of one: what the prompt makes room for
        and generation reads (a trained encoder's computed afresh, without gradients)."""
        scan = self._scan(scan)
        if self.model.config.freeze_encoder:
            return scan[None]
        with torch.no_grad():
            return self.model.encode_scan(scan[None].to(self.model.device))

    @property
    def _scan_key(self) -> str:
        return "image_features" if self.model.config.freeze_encoder else "pixel_values"

    def _scan(self, scan: tuple) -> torch.Tensor:
        if scan not in self._scans:
            self._scans[scan] = self._cached(scan) if self.model.config.freeze_encoder else self._scan_input(scan)
        return self._scans[scan]

    def _cached(self, scan: tuple) -> torch.Tensor:
        if self.cache_dir is None:
            return self._scan_input(scan)
        from safetensors.torch import load_file, save_file

        file = self.cache_dir / f"{self._cache_key(scan)}.safetensors"
        if file.is_file():
            return load_file(file)["features"]
        features = self._scan_input(scan)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        save_file({"features": features.contiguous()}, file, metadata={"scan": str(scan[0])})
        return features

    def _cache_key(self, scan: tuple) -> str:
        """The scan's bytes (and its segmentation's, when the encoder reads one), the encoder's
        configuration and weights and the input spec: features of another scan, encoder or
        preprocessing never match (as fm.probe.embed keys its cache)."""
        if self._encoder_key is None:
            spec = json.dumps(self.model.config.input_spec, sort_keys=True)
            encoder = json.dumps([self.model.config.encoder, self.model.config.encoder_kwargs], sort_keys=True)
            self._encoder_key = weights_hash(self.model.encoder) + spec + encoder
        path, segmentation = scan
        files = path.split(";") + ([segmentation[0]] if segmentation and self.model.reads_segmentation else [])
        contents = "".join(content_hash(Path(part)) for part in files)
        return hashlib.sha256((contents + self._encoder_key).encode()).hexdigest()

    def _scan_input(self, scan: tuple) -> torch.Tensor:
        """A session's scans (';' between a cohort's contrasts), with its segmentation when the
        encoder reads one, as the encoder's input."""
        path, segmentation = scan
        volumes = load_session(path.split(";"), None, load=load_volume).volumes
        label_map = None
        if self.model.reads_segmentation:
            if segmentation is None:
                raise InputError(
                    f"{path}: no segmentation, and this model's encoder ({self.model.config.encoder}) reads one; "
                    "give --findings-from, the folder `fm report --manifest` wrote (each session's mask.nii.gz)"
                )
            label_map = LabelMap.load(*segmentation)
        prepared = self.model.prepare_scan(model_input(volumes, self.model), label_map)
        if not self.model.config.freeze_encoder:
            return prepared[0]
        with torch.no_grad():
            return self.model.encode_scan(prepared)[0]


class CSVLog(TrainerCallback):
    """Every logged value (loss, learning rate, validation loss) as a row of a CSV file, which a
    resumed run goes on appending to."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "name", "value"])
            writer.writerows((state.global_step, name, value) for name, value in logs.items())


class ReportModelTrainer(Trainer):
    """transformers' Trainer whose every evaluation also scores the reports the model writes on
    validation scans (fm.lm.validation_text), logged beside the validation loss."""

    def __init__(self, *args, validation_text: ValidationText | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.validation_text = validation_text

    def evaluate(self, *args, **kwargs) -> dict[str, float]:
        metrics = super().evaluate(*args, **kwargs)
        if self.validation_text:  # on every process: a sharded model (FSDP) generates only together
            text_metrics = self.validation_text.score()
            self.log(text_metrics)
            metrics.update(text_metrics)
        return metrics


def collate(batch: list[dict], pad_id: int) -> dict:
    """Right-padded token rows; the scans stacked when they share a grid, else a list (the model
    turns each into the same number of visual tokens)."""
    width = max(len(item["input_ids"]) for item in batch)

    def padded(key: str, fill: int) -> torch.Tensor:
        return torch.stack(
            [torch.nn.functional.pad(item[key], (0, width - len(item[key])), value=fill) for item in batch]
        )

    scan_key = "image_features" if "image_features" in batch[0] else "pixel_values"
    scans = [item[scan_key] for item in batch]
    same_grid = len({tuple(scan.shape) for scan in scans}) == 1
    return {
        "input_ids": padded("input_ids", pad_id),
        "labels": padded("labels", -100),
        "attention_mask": (
            torch.arange(width)[None] < torch.tensor([len(i["input_ids"]) for i in batch])[:, None]
        ).long(),
        scan_key: torch.stack(scans) if same_grid else [scan[None] for scan in scans],
    }


def trainable_for_stage(model: FMForReportGeneration, config: LMTrainConfig):
    """Stage 1: the adapter only. Stage 2: a peft model with LoRA on the language model and the
    adapter saved and trained in full."""
    if config.stage == 1 or config.full_lm:
        trained = ("adapter.",) if config.stage == 1 else ("adapter.", "language_model.")
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith(trained)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=LORA_TARGETS, modules_to_save=["adapter"]
    )
    return get_peft_model(model, lora)


def reporting_integrations(report_to: str) -> list[str]:
    """--report-to as transformers' report_to, refused with the package to install when missing
    (transformers would fail later, mid-run)."""
    import importlib.util

    names = [name.strip() for name in report_to.split(",") if name.strip() and name.strip() != "none"]
    needs = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
    for name in names:
        if name not in needs:
            raise InputError(f"--report-to {name}: choose among none, {', '.join(needs)}")
        if not any(importlib.util.find_spec(module) for module in needs[name]):
            raise InputError(f"--report-to {name}: pip install {needs[name][0]} first")
    return names


def train_lm(
    init: str | Path,
    data: str | Path,
    out: str | Path,
    config: LMTrainConfig,
    split: str = "train",
    features_cache: str | Path | None = None,
) -> Path:
    """Train from the model at `init` (a folder or Hub id) on `data`; resumes from the last
    checkpoint in `out`. Returns the folder of the result: out/final, a complete model (in stage
    2 with the LoRA weights merged; the adapter alone is in out/lora). A frozen encoder's features
    of the scans are kept in `features_cache` (default out/scan_features)."""
    out = Path(out)
    integrations = reporting_integrations(config.report_to)  # refused before any work is done
    torch.manual_seed(config.seed)
    model = FMForReportGeneration.from_pretrained(init)
    cache = Path(features_cache) if features_cache else out / "scan_features"
    train_examples, validation_examples = read_training_data(data, split, config, out)
    if is_cohort(data):  # it learns to write as the cohort's reports do, which round their numbers
        model.config.number_forms = "rounded"
    dataset = ScanTextDataset(train_examples, model, config.max_length, cache)
    dataset.encode_all()
    validation = ScanTextDataset(validation_examples, model, config.max_length, cache) if validation_examples else None
    trained = trainable_for_stage(model, config)
    use_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is visible")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun / accelerate launch
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=min(20, config.steps // 10),
        seed=config.seed,
        data_seed=config.seed,
        save_steps=config.checkpoint_every,
        save_total_limit=2,
        logging_steps=1,
        report_to=integrations,
        remove_unused_columns=False,
        use_cpu=use_cpu,
        ddp_backend="gloo" if use_cpu and distributed else None,
        dataloader_num_workers=0,
        eval_strategy=("steps" if config.eval_every else "no") if validation else "no",
        eval_steps=config.eval_every or None,
        per_device_eval_batch_size=config.batch_size,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        activation_checkpointing=config.gradient_checkpointing,
    )
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else model.tokenizer.eos_token_id
    trainer = ReportModelTrainer(
        model=trained,
        args=args,
        train_dataset=dataset,
        eval_dataset=validation,
        data_collator=lambda batch: collate(batch, pad_id),
        callbacks=[CSVLog(out / "log.csv")],
        validation_text=ValidationText(validation, config.eval_reports) if validation else None,
    )
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    if validation is not None:
        trainer.evaluate()  # the validation loss of the final weights, in log.csv
    if not trainer.is_world_process_zero():
        return out / "final"
    (out / "train_config.json").write_text(
        json.dumps({**dataclasses.asdict(config), "init": str(init), "data": str(data)}, indent=2)
    )
    if config.stage == 1 or config.full_lm:
        model.save_pretrained(out / "final")
    else:
        trained.save_pretrained(out / "lora")
        merged = trained.merge_and_unload()
        merged.tokenizer = model.tokenizer
        merged.save_pretrained(out / "final")
    return out / "final"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fm train lm", description="Train the report model: stage 1 aligns the adapter, stage 2 adds LoRA."
    )
    parser.add_argument(
        "--init", required=True, help="the model to start from: a folder or hf-hub id (FMForReportGeneration)"
    )
    parser.add_argument("--data", required=True, help="a folder written by fm synth, or a cohort (fm.lm.cohort)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", required=True)
    add_config_options(parser, LMTrainConfig)
    args = parser.parse_args(argv)
    print(train_lm(args.init, args.data, args.out, config_from_args(LMTrainConfig, args), args.split))
    if torch.distributed.is_initialized():  # every rank waits for rank 0's saving, then leaves the group cleanly
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
