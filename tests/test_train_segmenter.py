"""The default segmenter's training recipe: seeded, checkpointed, resumable, exportable."""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from fm.cli.fm_cli import main
from heads.train_segmenter import SegTrainConfig, export, train

TINY = dict(f_maps=8, patch=(32, 32, 32), spacing_mm=3.0, checkpoint_every=1, workers=0)


def test_training_is_seeded_and_resumes_where_it_stopped(tmp_path):
    once = train(tmp_path / "a", SegTrainConfig(steps=3, **TINY), progress=False)
    train(tmp_path / "b", SegTrainConfig(steps=2, **TINY), progress=False)
    resumed = train(tmp_path / "b", SegTrainConfig(steps=3, **TINY), progress=False)
    a, b = torch.load(once, weights_only=True), torch.load(resumed, weights_only=True)
    assert a["step"] == b["step"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, atol=1e-6, rtol=1e-5)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]

    # a run that died after step 4 but before checkpointing it: step 4 is redone, not logged twice
    with open(tmp_path / "b" / "train_log.jsonl", "a") as log:
        log.write(json.dumps({"step": 4, "loss": 1.0, "seconds": 0}) + "\n")
    train(tmp_path / "b", SegTrainConfig(steps=4, **TINY), progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]

    folder = export(once, tmp_path / "shipped")
    config, recipe = (json.loads((folder / name).read_text()) for name in ("config.json", "training_args.json"))
    assert (
        recipe["trained_steps"] == 3
        and config["label_set"]["name"] == "brain-tissue-v1"
        and config["head"]["num_classes"] == 8
    )
    assert set(load_file(str(folder / "model.safetensors"))) == set(a["model"])


def test_cli_train_seg_help_shows_examples():
    result = CliRunner().invoke(main, ["train", "seg", "--help"])
    assert result.exit_code == 0 and "fm train seg --out runs/seg" in result.output


def test_learning_rate_is_constant_then_anneals_to_five_percent():
    from heads.train_segmenter import learning_rate

    config = SegTrainConfig(steps=100, decay_steps=40, lr=1e-3)
    assert learning_rate(0, config) == learning_rate(59, config) == 1e-3
    rates = [learning_rate(step, config) for step in range(60, 101)]
    assert all(a > b for a, b in zip(rates, rates[1:])), "falls monotonically during the decay"
    assert abs(rates[-1] - 5e-5) < 1e-12
    # lengthening a run before its decay began leaves the steps already taken unchanged
    longer = SegTrainConfig(steps=200, decay_steps=40, lr=1e-3)
    assert [learning_rate(s, longer) for s in range(60)] == [learning_rate(s, config) for s in range(60)]


def test_balanced_cross_entropy_pushes_a_rare_class_harder():
    from heads.train_segmenter import present_class_dice_ce

    labels = torch.zeros(1, 1, 16, 16, 16, dtype=torch.long)
    labels[..., :4, :4, :4] = 5  # 1.6 % of the patch, like a lesion
    gradients = []
    for balanced, power in ((False, 0.5), (True, 0.5), (True, 1.0)):
        logits = torch.zeros(1, 8, 16, 16, 16, requires_grad=True)
        present_class_dice_ce(logits, labels, balanced, power).backward()
        gradients.append(-logits.grad[0, 5][labels[0, 0] == 5].sum())
    assert gradients[2] > gradients[1] > 4 * gradients[0] > 0


def test_lesion_patches_may_place_the_lesion_off_centre():
    from heads.train_segmenter import _random_patch

    labels = torch.zeros(96, 96, 96, dtype=torch.long)
    labels[40, 50, 45] = 5
    image = torch.rand(1, 96, 96, 96)
    where = []
    for offset in (0.0, 0.3):
        found = set()
        for seed in range(12):
            patch_image, patch_labels = _random_patch(
                image, labels, (32, 32, 32), np.random.default_rng(seed), 1.0, offset
            )
            assert patch_image.shape == (1, 32, 32, 32) and patch_labels.shape == (32, 32, 32)
            found.add(tuple(torch.nonzero(patch_labels == 5)[0].tolist()))  # the lesion is always in the patch
        where.append(found)
    assert where[0] == {(16, 16, 16)}
    assert len(where[1]) > 6 and all(max(abs(c - 16) for c in p) <= 10 for p in where[1])


def test_a_fine_tuning_stage_starts_from_a_checkpoint_and_counts_its_steps(tmp_path):
    import pytest

    first = train(tmp_path / "first", SegTrainConfig(steps=2, **TINY), progress=False)
    stage = SegTrainConfig(steps=1, seed=1, lr=1e-3, balance_from_step=0, balance_power=1.0, init=str(first), **TINY)
    # one step of Adam moves every weight by about lr: the stage started from the first run's weights
    tuned = torch.load(train(tmp_path / "stage", stage, progress=False), weights_only=True)
    start = torch.load(first, weights_only=True)["model"]
    moved = max(float((tuned["model"][k] - v).abs().max()) for k, v in start.items() if v.is_floating_point())
    assert moved < 5e-3
    assert (
        json.loads(
            (export(tmp_path / "stage" / "checkpoint.pt", tmp_path / "shipped") / "training_args.json").read_text()
        )["trained_steps"]
        == 3
    )
    with pytest.raises(ValueError, match="f_maps 8, this run 16"):
        train(tmp_path / "wide", SegTrainConfig(steps=1, init=str(first), **{**TINY, "f_maps": 16}), progress=False)


def test_a_schedule_may_change_only_where_the_run_has_not_been(tmp_path):
    import pytest

    train(tmp_path / "run", SegTrainConfig(steps=2, **TINY), progress=False)
    later = SegTrainConfig(steps=4, balance_from_step=2, decay_steps=1, **TINY)
    assert torch.load(train(tmp_path / "run", later, progress=False), weights_only=True)["step"] == 4
    with pytest.raises(ValueError, match="schedule can no longer change at step 1"):
        train(tmp_path / "run", SegTrainConfig(steps=5, balance_from_step=1, **TINY), progress=False)
    # a decay from the same step but of another length already shaped steps 3 and 4
    with pytest.raises(ValueError, match="schedule can no longer change at step 3"):
        train(tmp_path / "run", SegTrainConfig(steps=5, balance_from_step=2, decay_steps=2, **TINY), progress=False)


def test_whole_tumour_loss_rewards_lesion_probability_however_it_is_split():
    from heads.train_segmenter import whole_tumour_loss

    labels = torch.zeros(1, 1, 16, 16, 16, dtype=torch.long)
    labels[..., :4, :4, :4] = 5  # oedema truth
    missed = torch.zeros(1, 8, 16, 16, 16)
    missed[:, 4] = 8.0  # called white matter everywhere
    found_as_enhancing = missed.clone()
    found_as_enhancing[:, 7][labels[:, 0] == 5] = 16.0  # the lesion found, its sub-region wrong
    found_as_oedema = missed.clone()
    found_as_oedema[:, 5][labels[:, 0] == 5] = 16.0
    losses = [float(whole_tumour_loss(x, labels)) for x in (missed, found_as_enhancing, found_as_oedema)]
    assert losses[0] > 1.0 > 0.1 > losses[1] and abs(losses[1] - losses[2]) < 1e-4
    # a patch without a lesion: only false positives cost, and confident logits stay finite
    clean = torch.zeros_like(labels)
    assert float(whole_tumour_loss(missed, clean)) < 0.01 < float(whole_tumour_loss(found_as_enhancing, clean))
    assert torch.isfinite(whole_tumour_loss(missed * 100, labels))
