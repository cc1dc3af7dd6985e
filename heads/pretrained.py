"""Ready-to-run segmenters from a model reference: the bundled default, a folder or Hub repo in the
default's format, or a published single-scan Swin-BOB checkpoint (UKBOB, BTCV) through the encoder
registry. (The BraTS checkpoint needs four contrasts; heads.segmentation.Segmenter runs its nested
outputs for library users who prepare such input.)

`load_segmenter(model=None, encoder=None)` returns the Segmenter and a `ModelInfo` that reports
carry as provenance (which weights, which version, their checksum).
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from pathlib import Path

from encoders.checkpoint import load_state_dict_strictly
from encoders.preprocess import monai_preprocess
from encoders.registry import HUB_PREFIX, create_encoder, hub_snapshot, list_encoders, read_model_folder
from fm.embed import content_hash
from fm.errors import InputFileError
from fm.io import Volume
from fm.labels import BRAIN_TISSUE, BRAIN_TUMOUR, BTCV, UKBOB, LabelSet
from heads.hemispheres import split_hemispheres
from heads.plausibility import drop_detached_lesions
from heads.result import ModelInfo, Segmentation
from heads.segmentation import Segmenter, SwinSegmentationNet
from heads.train_segmenter import segmenter_net, segmenter_preprocess

DEFAULT_MODEL_ID = "fm3d/default-segmenter"

#: Single-scan Swin-BOB segmentation checkpoints -> their label sets (softmax outputs).
_SWIN_LABELS: dict[str, LabelSet] = {"swin_bob": UKBOB, "swin_bob_btcv": BTCV}


#: Written next to the weights by `eval/eval_segmenter.py --record`; ignored unless its checksum is theirs.
EVALUATION_FILE = "evaluation.json"


def default_model_folder() -> Path:
    return Path(str(files("fm").joinpath("data/default_segmenter")))


def load_segmenter(model: str | Path | None = None, encoder: str | None = None, **overrides) -> tuple[Segmenter, ModelInfo]:
    """model: None (the bundled default), a folder in the default's format, `hf-hub:org/name`, or
    with `encoder` set to a Swin-BOB name, that family's published checkpoint file / saved folder.
    `overrides` are encoder constructor settings for published checkpoints (e.g. feature_size=12)."""
    if encoder is None or encoder == "brain_id":
        if overrides:
            raise ValueError(f"the default segmenter's folder carries its own configuration; drop {sorted(overrides)}")
        folder = default_model_folder() if model is None else _local_folder(model)
        if folder.is_file():
            raise InputFileError(folder, f"is a file; a published checkpoint needs --encoder ({', '.join(_SWIN_LABELS)})")
        return _default_family(folder, DEFAULT_MODEL_ID if model is None else str(model))
    if encoder in _SWIN_LABELS:
        if model is None:
            raise ValueError(f"--encoder {encoder} needs --model: a checkpoint file, a saved folder or hf-hub:org/name")
        return _swin(encoder, model, overrides)
    if encoder == "swin_bob_brats":
        raise ValueError("swin_bob_brats needs four co-registered contrasts (T1c, T1, T2, FLAIR); a report takes one scan")
    if encoder in list_encoders():
        raise ValueError(
            f"{encoder} has no published segmentation head; use the default (brain_id family) or a Swin-BOB checkpoint"
        )
    raise ValueError(f"unknown encoder {encoder!r}; segmenters exist for: brain_id, {', '.join(_SWIN_LABELS)}")


def _local_folder(model: str | Path) -> Path:
    source = str(model)
    return hub_snapshot(source) if source.startswith(HUB_PREFIX) else Path(source)


def _default_family(folder: Path, model_id: str) -> tuple[Segmenter, ModelInfo]:
    config, state = read_model_folder(folder, "a segmenter")
    if config.get("label_set") != BRAIN_TISSUE.name or config.get("num_classes") != max(BRAIN_TISSUE.names) + 1:
        raise InputFileError(folder, f"segments label set {config.get('label_set')!r}; this loader knows {BRAIN_TISSUE.name!r}")
    missing = [key for key in ("f_maps", "spacing_mm", "roi_size") if key not in config]
    if missing:
        raise InputFileError(folder / "config.json", f"lacks {', '.join(missing)}")
    net = segmenter_net(int(config["f_maps"]))
    load_state_dict_strictly(net, state, folder, strict=True)
    segmenter = Segmenter(
        net,
        functools.partial(segmenter_preprocess, spacing_mm=float(config["spacing_mm"])),
        BRAIN_TISSUE,
        roi_size=tuple(config["roi_size"]),
        postprocess=default_postprocess,
    )
    version = f"{config.get('trained_steps', '?')} steps, seed {config.get('seed', '?')}, f_maps {config['f_maps']}"
    sha256 = content_hash(folder / "model.safetensors")[:16]
    sensitivity, evaluation = read_evaluation(folder, sha256)
    return segmenter, ModelInfo(model_id, version, sha256, "brain_id", BRAIN_TUMOUR.name, sensitivity, evaluation)


def read_evaluation(folder: Path, sha256: str) -> tuple[float | None, str | None]:
    """Lesion sensitivity and what it was measured on, from the folder's evaluation record; (None,
    None) when there is none or it was made for other weights (a retrained model is not evaluated)."""
    path = folder / EVALUATION_FILE
    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text())
        if record["model_sha256"] != sha256:
            return None, None
        summary = record["summary"]
        return float(summary["sensitivity_1ml"]), f"{record['n']} synthetic {record['split']}-split scans, seed {record['seed']}"
    except (ValueError, KeyError, TypeError) as error:
        raise InputFileError(path, f"is not an evaluation record ({error})") from None


def default_postprocess(segmentation: Segmentation, volume: Volume) -> Segmentation:
    """Lesions touching no brain tissue dropped, then sides from the affine (BRAIN_TISSUE -> BRAIN_TUMOUR)."""
    return split_hemispheres(drop_detached_lesions(segmentation), volume)


def _swin(name: str, model: str | Path, overrides: dict) -> tuple[Segmenter, ModelInfo]:
    label_set = _SWIN_LABELS[name]
    try:
        encoder = create_encoder(name, model, **overrides)
    except TypeError as err:  # an unknown constructor setting
        raise ValueError(f"{name} does not take these settings {sorted(overrides)}: {err}") from None
    spec = encoder.spec
    segmenter = Segmenter(SwinSegmentationNet(encoder), lambda volume: monai_preprocess(volume, spec), label_set, roi_size=spec.size)
    source = Path(str(model))
    weights = source / "model.safetensors" if source.is_dir() else source
    checksum = content_hash(weights)[:16] if weights.is_file() else "unknown"
    return segmenter, ModelInfo(str(model), "published checkpoint", checksum, name, label_set.name)
