"""Training the report model (fm.lm.train) on a small synthetic folder: stage 1 moves the adapter
only, stage 2 trains LoRA whose saved adapter reproduces the merged model, a run resumes where it
stopped, and the same command runs under torchrun with two CPU processes (gloo)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import subprocess
import sys

import phantoms
import pytest
import torch
from test_model import SMALL_LM, tokenizer  # noqa: F401  (the BPE tokenizer fixture)
from transformers import LlamaConfig

from fm.core.findings import Findings
from fm.lm.adapter import AdapterConfig
from fm.lm.modeling import FMForReportGeneration
from fm.lm.train import LMTrainConfig, ScanTextDataset, collate, synth_examples, train_lm, training_examples
from fm.synth.dataset import write_dataset

QUICK = dict(grad_accum=1, checkpoint_every=2, lr=5e-3)


@pytest.fixture(scope="module")
def start(tmp_path_factory, tokenizer):  # noqa: F811
    """Two synthetic scans at 4 mm (with reports and questions) and an untrained tiny model."""
    root = tmp_path_factory.mktemp("lm")
    write_dataset(root / "data", 2, seed=0, split="train", progress=False, spacing_mm=(4.0, 4.0, 4.0))
    torch.manual_seed(0)
    model = FMForReportGeneration.from_parts(
        LlamaConfig(vocab_size=len(tokenizer), **SMALL_LM),
        tokenizer,
        encoder="brain_id",
        encoder_kwargs={"f_maps": 8},
        adapter=AdapterConfig(kind="perceiver", num_queries=8),
        input_spec=phantoms.mr_spec(size=(48, 48, 48), divisible_by=16),
    )
    model.save_pretrained(root / "init")
    return root


def weights(folder, prefix: str) -> dict[str, torch.Tensor]:
    model = FMForReportGeneration.from_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_examples_cover_reports_questions_chats_and_the_image_only_mode(start):
    stage1 = synth_examples(start / "data", "train", stage=1, image_only_share=0.0)
    stage2 = synth_examples(start / "data", "train", stage=2, image_only_share=0.5, seed=3)
    assert len(stage1) == 2 and all(e.question is None and e.findings for e in stage1)
    assert any(e.question and e.history for e in stage2), "a multi-turn chat"
    assert any(e.findings is None for e in stage2) and any(e.findings for e in stage2)
    image_only = [e.target for e in stage2 if e.findings is None]
    assert not any(re.search(r"\d\.\d|mL|mm", target) for target in image_only), "no measurement without the findings"


def test_random_findings_examples_pair_drawn_findings_with_the_training_scans(start):
    config = LMTrainConfig(stage=2, random_findings=6, seed=1)
    examples = training_examples(start / "data", "train", config)
    scans = {e.image: e.findings for e in synth_examples(start / "data", "train", stage=2, image_only_share=0.0)}
    drawn = [e for e in examples if e.findings and e.findings not in scans.values()]
    assert sum(e.question is None for e in drawn) == 6 and all(e.image in scans for e in drawn)
    assert len({e.findings for e in drawn}) == 6 and all(e.target for e in drawn)


def test_stage_one_trains_the_adapter_alone(start):
    final = train_lm(start / "init", start / "data", start / "stage1", LMTrainConfig(stage=1, steps=3, **QUICK))
    for prefix in ("encoder.", "language_model."):
        assert not changed(weights(start / "init", prefix), weights(final, prefix)), prefix
    assert changed(weights(start / "init", "adapter."), weights(final, "adapter."))
    log = json.loads((start / "stage1" / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in log if "loss" in entry] == [1, 2, 3]


def test_stage_two_lora_saves_loads_and_merges_to_the_same_model(start):
    from peft import PeftModel

    base = start / "stage2-base"
    train_lm(start / "init", start / "data", base, LMTrainConfig(stage=1, steps=1, **QUICK))
    final = train_lm(base / "final", start / "data", start / "stage2", LMTrainConfig(stage=2, steps=3, **QUICK))
    assert changed(weights(base / "final", "language_model."), weights(final, "language_model."))
    merged = FMForReportGeneration.from_pretrained(final)
    with_lora = PeftModel.from_pretrained(
        FMForReportGeneration.from_pretrained(base / "final"), start / "stage2" / "lora"
    )
    pixel_values = torch.rand(1, 1, 48, 48, 48)
    input_ids = torch.tensor([[merged.config.image_token_id] * 8 + [5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(
            with_lora(input_ids=input_ids, pixel_values=pixel_values).logits,
            merged(input_ids=input_ids, pixel_values=pixel_values).logits,
            atol=1e-5,
            rtol=1e-5,
        )


def test_a_run_resumes_from_its_last_checkpoint(start):
    """A run stopped after its step-2 checkpoint, started again, ends where an uninterrupted one does."""
    import shutil

    config = LMTrainConfig(stage=1, steps=4, **QUICK)
    straight = train_lm(start / "init", start / "data", start / "straight", config)
    out = start / "resumed"
    out.mkdir()
    shutil.copytree(start / "straight" / "checkpoint-2", out / "checkpoint-2")  # what the stopped run left
    train_lm(start / "init", start / "data", out, config)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]
    resumed, single = weights(out / "final", "adapter."), weights(straight, "adapter.")
    for name in single:
        torch.testing.assert_close(resumed[name], single[name], atol=1e-6, rtol=1e-5)


@pytest.mark.slow  # 17 s: two processes; the one-process training tests run by default
def test_the_same_command_runs_on_two_processes(start):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "fm.lm.train"]
    options = [
        "--init",
        start / "init",
        "--data",
        start / "data",
        "--out",
        start / "ddp",
        "--stage",
        "1",
        "--steps",
        "2",
    ]
    done = subprocess.run(
        [*command, *map(str, options), "--grad-accum", "1"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((start / "ddp" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (start / "ddp" / "final" / "model.safetensors").is_file()


def test_fm_train_lm_shows_its_options():
    from click.testing import CliRunner

    from fm.cli.fm_cli import main

    done = CliRunner().invoke(main, ["train", "lm", "--help"])
    assert done.exit_code == 0 and "--init" in done.output and "--data" in done.output
    # every training option, documented, on both command lines (torchrun starts python -m fm.lm.train)
    from fm.lm.train_config import LMTrainConfig

    torchrun_help = subprocess.run(
        [sys.executable, "-m", "fm.lm.train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for field in dataclasses.fields(LMTrainConfig):
        option = "--" + field.name.replace("_", "-")
        assert field.metadata.get("help") and option in done.output and option in torchrun_help, option


def test_the_default_bundle_recipe_builds_a_model_from_scratch(start):
    """The recipe at a toy size: its own tokenizer (the image placeholder one token), stage 2 behind
    the bundled segmenter's encoder and input spec, a Llama trained from scratch with the adapter;
    stage 3 the same language model behind segmentation_grid, its closed questions also asked
    without the findings."""
    from fm.lm.default_lm import DefaultLMRecipe, build
    from heads.segmenters import create_segmenter

    recipe = DefaultLMRecipe(vocab_size=400, hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128)
    recipe = dataclasses.replace(recipe, stage2_steps=3, random_findings=20, stage3_steps=2, stage3_random_findings=4)
    final = build(start / "data", start / "default", recipe)
    stage2 = FMForReportGeneration.from_pretrained(start / "default" / "stage2" / "final")
    assert (
        stage2.tokenizer.convert_tokens_to_ids(stage2.tokenizer.tokenize("<image><image>"))
        == [stage2.config.image_token_id] * 2
    )
    assert [t.lstrip("Ġ") for t in stage2.tokenizer.tokenize(" 127.3 mL")][1:5] == ["1", "2", "7", "."], (
        "digit by digit"
    )
    segmenter, _ = create_segmenter("synth-unet")
    for name, value in segmenter.net.encoder.state_dict().items():
        torch.testing.assert_close(stage2.encoder.state_dict()[name], value)
    assert (
        stage2.config.input_spec["spacing_mm"] == [1.5, 1.5, 1.5]
        and stage2.config.input_spec["intensity"] == "percentile"
    )
    assert json.loads((start / "default" / "stage2" / "train_config.json").read_text())["full_lm"] is True
    assert len(list((start / "default" / "scan_features").glob("*.safetensors"))) == 4, (
        "each scan encoded once per encoder"
    )

    model = FMForReportGeneration.from_pretrained(final)
    assert final == start / "default" / "stage3" / "final"
    assert (
        model.config.encoder == "segmentation_grid"
        and model.config.adapter["kind"] == "mlp"
        and model.reads_segmentation
    )
    sight = FMForReportGeneration.from_pretrained(start / "default" / "vision_init")
    for name, value in stage2.language_model.state_dict().items():  # stage 3 starts from stage 2's language model
        torch.testing.assert_close(sight.language_model.state_dict()[name], value)
    assert json.loads((start / "default" / "stage3" / "train_config.json").read_text())["image_only_copies"] == 2
    assert build(start / "data", start / "default", recipe) == final  # done stages are not run again


@torch.no_grad()
def test_scans_on_different_grids_train_in_one_batch(start):
    """collate keeps scans whose grids differ as a list; each row of the batch gives what it gives alone."""
    model = FMForReportGeneration.from_pretrained(start / "init").eval()
    examples = synth_examples(start / "data", "train", stage=2, image_only_share=0.0)
    dataset = ScanTextDataset(examples, model, max_length=2048)
    first, second = dataset[0], dict(dataset[len(dataset) - 1])
    second["image_features"] = second["image_features"][:, :-1]  # one slice fewer: another grid
    batch = collate([first, second], model.tokenizer.pad_token_id)
    assert isinstance(batch["image_features"], list)
    together = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    for row, item in enumerate((first, second)):
        alone = model(input_ids=item["input_ids"][None], image_features=item["image_features"][None]).logits[0]
        assert torch.allclose(together[row, : len(item["input_ids"])], alone, atol=1e-4)


def test_bf16_and_gradient_checkpointing_train_both_stages(start, tmp_path):
    """What a 24 GB GPU needs for a larger language model, checked on the CPU: bf16 autocast and
    recomputed activations give finite losses in stage 1 and in LoRA stage 2."""
    saving = dict(grad_accum=1, checkpoint_every=1, precision="bf16", gradient_checkpointing=True)
    stage1 = train_lm(start / "init", start / "data", tmp_path / "s1", LMTrainConfig(stage=1, steps=1, **saving))
    train_lm(stage1, start / "data", tmp_path / "s2", LMTrainConfig(stage=2, steps=1, lora_rank=4, **saving))
    for run in ("s1", "s2"):
        losses = [float(r["value"]) for r in csv.DictReader(open(tmp_path / run / "log.csv")) if r["name"] == "loss"]
        assert losses and all(math.isfinite(loss) for loss in losses)


def test_validation_scores_the_report_the_model_writes_as_fm_report_writes_it(start):
    """Validation text metrics score the model's own grounded report for each validation scan:
    given that very text as the reference, BLEU is 100 and ROUGE-L 1; against another text they
    fall; the guard's contradictions are counted against the scan's findings."""
    from fm.core.io import load_volume
    from fm.lm.loading import model_input
    from fm.lm.validation_text import ValidationText
    from fm.report.faithfulness import check

    model = FMForReportGeneration.from_pretrained(start / "init")
    report = next(e for e in synth_examples(start / "data", "train", stage=1, image_only_share=0.0))
    findings = Findings.from_json(report.findings)
    written = model.generate_report(model_input(load_volume(report.image), model), findings, max_new_tokens=40)
    dataset = ScanTextDataset([dataclasses.replace(report, target=written)], model, max_length=2048)
    scores = ValidationText(dataset, count=4, max_new_tokens=40).score()
    assert scores["eval_bleu"] == pytest.approx(100.0) and scores["eval_rouge_l"] == pytest.approx(1.0)
    assert scores["eval_contradictions_per_report"] == len(check(written, findings).contradictions)
    other = ScanTextDataset([dataclasses.replace(report, target="The ventricles are enlarged.")], model, 2048)
    assert ValidationText(other, count=4, max_new_tokens=40).score()["eval_rouge_l"] < 0.5


def test_an_unknown_or_uninstalled_logger_is_refused_before_training(start, tmp_path):
    from fm.core.errors import InputError

    with pytest.raises(InputError, match="--report-to comet: choose among none, tensorboard, wandb, mlflow"):
        train_lm(start / "init", start / "data", tmp_path / "run", LMTrainConfig(report_to="comet"))
    assert not (tmp_path / "run").exists(), "nothing was started"
