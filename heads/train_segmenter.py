"""The recipe for the default segmenter: a small Brain-ID-style U-Net with a 1x1x1 head, trained
only on fm.synth scans (the Brain-ID / SynthSeg idea: anatomy learned from images of random
contrast, resolution and orientation), seeded, checkpointed and resumable.

Each step draws the next training-split scan (`generate(seed, index, "train")`), puts it through
exactly the preprocessing used at inference (the input spec of `unet_config`), crops a random patch (seeded
by the step) and takes one Adam step on cross-entropy + Dice over the classes present in the patch
(`present_class_dice_ce`). Scans are made
in a DataLoader worker so generation and training share the two cores.

DIR/checkpoint.pt (model, optimiser, step, config; loads with weights_only=True) is written every
`checkpoint_every` steps and DIR/train_log.jsonl gets one line per step; running again with the
same DIR continues from the last checkpoint. A run with `init` set starts from another run's
checkpoint (a fine-tuning stage with its own data seed and schedule; exported `trained_steps` counts
both). `export` writes the model in the shipped format (heads.model_folder), the recipe in its
training_args.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.losses import DiceLoss
from monai.transforms import Compose, Orientation, Spacing, SpatialPad
from torch.utils.data import DataLoader, IterableDataset
from tqdm import tqdm

from encoders.preprocess import Preprocessed, monai_preprocess
from encoders.spec import InputSpec
from fm.core.errors import InputError, InputFileError
from fm.core.io import Volume
from fm.core.labels import BRAIN_TISSUE, BRAIN_TUMOUR_TO_TISSUE
from heads.folder_segmenter import build_net, save_segmenter_folder
from heads.model_folder import SegmenterConfig

NUM_CLASSES = max(BRAIN_TISSUE.names) + 1
_TO_TISSUE = torch.tensor(BRAIN_TUMOUR_TO_TISSUE)
_RAS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclasses.dataclass
class SegTrainConfig:
    steps: int = 4000
    seed: int = 0
    f_maps: int = 8  # a multiple of 8: GroupNorm uses 8 groups on every concatenation
    patch: tuple[int, int, int] = (64, 64, 64)
    spacing_mm: float = 1.5
    lr: float = 2e-3
    decay_steps: int = 0  # the last `decay_steps` steps anneal the learning rate (cosine) to 5 %
    balance_from_step: int | None = (
        None  # from this step on, cross-entropy weights classes by frequency**-balance_power
    )
    balance_power: float = 0.5
    checkpoint_every: int = 100
    workers: int = 1  # 0 or 1: a single stream keeps the step -> patch mapping fixed
    patches_per_scan: int = 4  # making a scan costs more than a training step: use it several times
    lesion_fraction: float = 0.5  # share of patches centred on a lesion voxel (lesions are ~2 % of a brain)
    # How far (a fraction of the patch) that lesion voxel may lie off the patch centre: sliding-window
    # inference sees lesions anywhere in a window, not only at its centre.
    lesion_offset: float = 0.0
    init: str | None = None  # a checkpoint whose weights a new run starts from (fine-tuning stage)
    # Weight of an extra loss on the whole tumour (the summed lesion-class probability) as one
    # binary region: detection depends on that sum, which per-class terms split three ways.
    whole_tumour_weight: float = 0.0


def unet_config(config: SegTrainConfig, version: str = "untrained") -> SegmenterConfig:
    """What this recipe trains, as its folder describes it: a Brain-ID U-Net with a 1x1x1 head over
    the brain-tissue labels, on RAS scans at isotropic spacing with intensities robustly scaled to
    [0, 1], inferred with the training patch as the window (GroupNorm statistics depend on it);
    lesions touching no tissue dropped, sides from the affine."""
    patch = tuple(config.patch)
    spec = InputSpec(
        spacing_mm=(config.spacing_mm,) * 3,
        orientation="RAS",
        size=patch,
        windowed=True,
        intensity="percentile",
        in_channels=1,
        modalities=("any MR contrast",),
    )
    return SegmenterConfig(
        encoder="brain_id",
        encoder_kwargs={"f_maps": config.f_maps, "in_channels": 1},
        head="light",
        head_width=16,
        num_classes=NUM_CLASSES,
        input_spec=spec,
        label_set=BRAIN_TISSUE,
        decoding="softmax",
        region_channels=(),
        roi_size=patch,
        overlap=0.5,
        postprocess=("drop_detached_lesions", "split_hemispheres"),
        version=version,
    )


def training_pair(volume: Volume, labels: np.ndarray, spec: InputSpec) -> tuple[Preprocessed, torch.Tensor]:
    """The scan through the inference preprocessing, and its labels (on the volume's grid) resampled alike."""
    prepared = monai_preprocess(volume, spec)  # the encoders' own MONAI pipeline
    label_image = MetaTensor(
        torch.tensor(np.ascontiguousarray(labels[None]), dtype=torch.float32), affine=torch.from_numpy(volume.affine)
    )
    resampled = Compose([Orientation(axcodes="RAS", labels=_RAS), Spacing(pixdim=spec.spacing_mm, mode="nearest")])(
        label_image
    )
    return prepared, resampled.as_tensor()[0].round().long()


class SynthPatches(IterableDataset):
    """Training patches for steps `start`, `start + 1`, ...: step s uses scan s // patches_per_scan
    and a patch placed by a generator seeded with (seed, s), so a resumed run sees the same data."""

    def __init__(self, config: SegTrainConfig, start: int):
        self.config, self.start = config, start

    def __iter__(self):
        from torch.utils.data import get_worker_info

        from fm.synth.generator import generate

        if get_worker_info() is not None:
            torch.set_num_threads(1)  # the worker makes scans on one core; training keeps the rest
        step, per_scan = self.start, self.config.patches_per_scan
        spec = unet_config(self.config).input_spec
        while True:
            index = step // per_scan
            sample = generate(self.config.seed, index, "train")
            volume = sample.volume()
            prepared, labels = training_pair(volume, volume.from_source_layout(sample.labels).array, spec)
            labels = _TO_TISSUE[labels]  # hemispheres merged: sides come from the affine at inference
            while step // per_scan == index:
                rng = np.random.default_rng([self.config.seed, step])
                yield _random_patch(
                    prepared.tensor[0],
                    labels,
                    self.config.patch,
                    rng,
                    self.config.lesion_fraction,
                    self.config.lesion_offset,
                )
                step += 1


def _random_patch(
    image: torch.Tensor,
    labels: torch.Tensor,
    patch,
    rng: np.random.Generator,
    lesion_fraction: float,
    lesion_offset: float = 0.0,
):
    """A patch placed uniformly, or (with probability `lesion_fraction`, when the scan has a lesion)
    around a random lesion voxel (up to `lesion_offset` x patch off its centre), so the rare tumour
    classes are seen in most batches."""
    pad = SpatialPad(spatial_size=patch)
    image, labels = pad(image), pad(labels[None])[0]
    lesion = torch.nonzero(labels >= min(BRAIN_TISSUE.lesion)) if rng.random() < lesion_fraction else None
    if lesion is not None and len(lesion):
        centre = lesion[int(rng.integers(len(lesion)))].tolist()
        if lesion_offset:
            centre = [c + int(round(rng.uniform(-lesion_offset, lesion_offset) * p)) for c, p in zip(centre, patch)]
        starts = [min(max(c - p // 2, 0), n - p) for c, n, p in zip(centre, image.shape[1:], patch)]
    else:
        starts = [int(rng.integers(0, n - p + 1)) for n, p in zip(image.shape[1:], patch)]
    window = tuple(slice(s, s + p) for s, p in zip(starts, patch))
    return image[(slice(None), *window)].contiguous(), labels[window].contiguous()


def train(out: str | Path, config: SegTrainConfig, progress: bool = True) -> Path:
    """Train (or continue training) into `out`; returns the checkpoint path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    torch.manual_seed(config.seed)
    net = build_net(unet_config(config))
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    if config.workers not in (0, 1):
        raise InputError("workers must be 0 or 1 (one ordered stream of scans)")
    step, init_steps = 0, 0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=True)
        if _recipe(state["config"]) != _recipe(dataclasses.asdict(config)):
            raise InputFileError(checkpoint_path, f"was trained with another configuration: {state['config']}")
        changed = _schedule_changes_at(state["config"], config)
        if changed is not None and changed < int(state["step"]):
            raise InputFileError(
                checkpoint_path, f"is at step {state['step']}: its schedule can no longer change at step {changed}"
            )
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step, init_steps = int(state["step"]), int(state.get("init_steps", 0))
    elif config.init is not None:
        init_steps = _start_from(net, Path(config.init), config)
    _truncate_log(out / "train_log.jsonl", step)  # steps after the checkpoint are redone
    if step >= config.steps:
        return checkpoint_path
    loader = DataLoader(SynthPatches(config, start=step), batch_size=None, num_workers=config.workers)
    net.train()
    log = open(out / "train_log.jsonl", "a")
    bar = tqdm(total=config.steps, initial=step, desc="train segmenter", unit="step", disable=not progress)
    started = time.perf_counter()
    for image, labels in loader:
        if step >= config.steps:
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, config)
        optimiser.zero_grad()
        balanced = config.balance_from_step is not None and step >= config.balance_from_step
        logits = net(image[None])
        loss = present_class_dice_ce(logits, labels[None, None], balanced, config.balance_power)
        if config.whole_tumour_weight:
            loss = loss + config.whole_tumour_weight * whole_tumour_loss(
                logits, labels[None, None], config.balance_power
            )
        loss.backward()
        optimiser.step()
        step += 1
        value = float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")
        log.write(
            json.dumps({"step": step, "loss": round(value, 5), "seconds": round(time.perf_counter() - started, 1)})
            + "\n"
        )
        log.flush()  # a background run can be followed with tail -f
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save(checkpoint_path, net, optimiser, step, config, init_steps)
    log.close()
    bar.close()
    return checkpoint_path


def learning_rate(step: int, config: SegTrainConfig) -> float:
    """Constant, then a cosine down to 5 % over the last `decay_steps` steps. A function of the step
    alone, so a resumed run (or one lengthened before its decay began) matches a single run."""
    decay_start = _decay_start(dataclasses.asdict(config))
    if step < decay_start:
        return config.lr
    progress = (step - decay_start) / max(config.decay_steps, 1)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


_DICE = DiceLoss(to_onehot_y=True, softmax=True, reduction="none")


def present_class_dice_ce(
    logits: torch.Tensor, labels: torch.Tensor, balanced: bool = False, balance_power: float = 0.5
) -> torch.Tensor:
    """Cross-entropy + mean soft Dice loss of the classes present in `labels` (B=1, 1, D, H, W).

    Plain Dice over all classes scores an absent class ~1 for any probability mass, so half the
    patches (those without a lesion) push lesion probabilities to zero everywhere: a first run with
    MONAI's DiceCELoss plateaued after 400 steps and never predicted a lesion or CSF.

    balanced: weight each voxel's cross-entropy by its class's frequency in the patch to the power
    -`balance_power` (0.5: 1/sqrt). Soft Dice barely moves a class the network gives ~0 probability
    (its gradient through the softmax scales with p), so plain cross-entropy, where lesions are
    ~0.5 % of a lesion-centred patch, left lesion probabilities at ~0.01 after 1900 steps."""
    counts = torch.bincount(labels.flatten(), minlength=logits.shape[1])
    present = counts > 0
    per_class = _DICE(logits, labels).flatten()
    weight = None
    if balanced:
        weight = torch.where(present, counts.clamp(min=1).float() ** -balance_power, torch.zeros(()))
        weight = weight / weight[present].mean()
    return F.cross_entropy(logits, labels[:, 0], weight=weight) + per_class[present].mean()


_LESION_CLASSES = sorted(BRAIN_TISSUE.nested["whole_tumour"])


def whole_tumour_loss(logits: torch.Tensor, labels: torch.Tensor, balance_power: float = 0.5) -> torch.Tensor:
    """Binary cross-entropy of the whole-tumour region (lesion classes together; the two sides
    weighted by their frequency in the patch ** -`balance_power`) + its soft Dice when the patch
    has a lesion. Log-probabilities come from logsumexp so a confident network stays finite."""
    lesion = torch.zeros(logits.shape[1], dtype=torch.bool)
    lesion[_LESION_CLASSES] = True
    log_total = torch.logsumexp(logits, dim=1)
    log_inside = torch.logsumexp(logits[:, lesion], dim=1) - log_total
    log_outside = torch.logsumexp(logits[:, ~lesion], dim=1) - log_total
    truth = lesion[labels[:, 0]]
    n_inside = int(truth.sum())
    if n_inside == 0:
        return -log_outside.mean()
    weights = torch.tensor([max(truth.numel() - n_inside, 1), n_inside], dtype=torch.float32) ** -balance_power
    weights = weights / weights.mean()
    bce = -(torch.where(truth, weights[1] * log_inside, weights[0] * log_outside)).mean()
    inside = log_inside.exp()
    dice = 1 - (2 * (inside * truth).sum() + 1e-5) / (inside.sum() + n_inside + 1e-5)
    return bce + dice


def _recipe(config: dict) -> dict:
    """What must match to continue a run (not its length, its schedule or how it is executed; a
    schedule may change only where the run has not reached yet: see `_schedule_changes_at`).
    Settings added since a checkpoint was written count as their defaults."""
    config = {**dataclasses.asdict(SegTrainConfig()), **config}
    return {k: v for k, v in config.items() if k not in _SCHEDULE + ("workers", "checkpoint_every")}


def _start_from(net, init: Path, config: SegTrainConfig) -> int:
    """Load the weights of checkpoint `init` (not its optimiser or schedule); returns the steps it had."""
    if not init.is_file():
        raise InputFileError(init, "no such checkpoint to start from")
    state = torch.load(init, weights_only=True)
    if state["config"]["f_maps"] != config.f_maps:
        raise InputFileError(init, f"has f_maps {state['config']['f_maps']}, this run {config.f_maps}")
    net.load_state_dict(state["model"])
    return int(state.get("init_steps", 0)) + int(state["step"])


_SCHEDULE = ("steps", "decay_steps", "balance_from_step")


def _decay_start(config: dict) -> float:
    """First step of the learning-rate decay (inf: none); `config` may predate `decay_steps`."""
    decay_steps = config.get("decay_steps", 0)
    return config["steps"] - decay_steps if decay_steps else float("inf")


def _schedule_changes_at(old: dict, new: SegTrainConfig) -> int | None:
    """The first step at which two schedules may differ (None: they agree everywhere). A decay is
    its start and its length: two decays from the same step with other lengths part at that step."""
    new_config, changes = dataclasses.asdict(new), []
    if (_decay_start(old), old.get("decay_steps", 0)) != (_decay_start(new_config), new.decay_steps):
        changes.append(min(_decay_start(old), _decay_start(new_config)))
    if old.get("balance_from_step") != new.balance_from_step:
        changes.append(min(b for b in (old.get("balance_from_step"), new.balance_from_step) if b is not None))
    return int(min(changes)) if changes else None


def _truncate_log(log: Path, step: int) -> None:
    if log.exists():
        kept = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in kept))


def _save(path: Path, net, optimiser, step: int, config: SegTrainConfig, init_steps: int) -> None:
    staged = path.with_suffix(".tmp")
    torch.save(
        {
            "model": net.state_dict(),
            "optimiser": optimiser.state_dict(),
            "step": step,
            "init_steps": init_steps,
            "config": dataclasses.asdict(config),
        },
        staged,
    )
    staged.replace(path)


def export(checkpoint: str | Path, folder: str | Path) -> Path:
    """The trained network as shipped (heads.model_folder: config.json, model.safetensors, and the
    recipe in training_args.json; no optimiser state)."""
    state = torch.load(checkpoint, weights_only=True)
    recipe = {**dataclasses.asdict(SegTrainConfig()), **state["config"]}
    trained_steps = state.get("init_steps", 0) + state["step"]
    config = SegTrainConfig(**{**recipe, "patch": tuple(recipe["patch"])})
    net = build_net(unet_config(config))
    net.load_state_dict(state["model"])
    version = f"{trained_steps} steps, seed {config.seed}, f_maps {config.f_maps}"
    return save_segmenter_folder(
        folder, net, unet_config(config, version), {**state["config"], "trained_steps": trained_steps}
    )
