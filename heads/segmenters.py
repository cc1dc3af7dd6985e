"""Every segmenter behind one call, in the manner of the encoder registry:

    segmenter, info = create_segmenter()                                  # the default: fm3d/atlas-em
    segmenter, info = create_segmenter("synth-unet")                      # the bundled network
    segmenter, info = create_segmenter("path/to/folder")                  # any folder in heads.model_folder's format
    segmenter, info = create_segmenter("hf-hub:org/name")                 # the same on the Hugging Face Hub
    segmenter, info = create_segmenter("swin_bob_btcv", pretrained="model_final.pt")  # a published checkpoint

`info` (heads.result.ModelInfo) is what reports carry as provenance. Nothing here imports torch or
MONAI until a network is asked for, so the default pipeline starts without them.
"""

from __future__ import annotations

import dataclasses
from importlib.resources import files
from pathlib import Path
from typing import Callable

from encoders import HUB_PREFIX
from fm.core.errors import InputError, InputFileError
from fm.core.labels import BRAIN_TUMOUR
from heads.result import ModelInfo

ADAPTIVE_MODEL_ID = "fm3d/atlas-em"
BUNDLED_NETWORK = "synth-unet"
BUNDLED_NETWORK_ID = "fm3d/default-segmenter"  # the id reports give the bundled network


@dataclasses.dataclass(frozen=True)
class SegmenterEntry:
    build: Callable[[str | Path | None, dict], tuple[object, ModelInfo]]  # (pretrained, settings)
    description: str
    needs_weights: bool = False  # a published checkpoint: `pretrained` names the file


def bundled_network_folder() -> Path:
    return Path(str(files("fm").joinpath("data/default_segmenter")))


def _atlas_em(pretrained, settings) -> tuple[object, ModelInfo]:
    from heads.brain import ContrastAdaptiveSegmenter

    _no_settings(ADAPTIVE_MODEL_ID, settings)
    version = "MNI152 2009c priors (nilearn), affine registration, EM mixture with outlier class"
    return ContrastAdaptiveSegmenter(), ModelInfo(ADAPTIVE_MODEL_ID, version, "-", "none (atlas)", BRAIN_TUMOUR.name)


def _bundled_network(pretrained, settings) -> tuple[object, ModelInfo]:
    from heads.folder_segmenter import load_segmenter_folder

    _no_settings(BUNDLED_NETWORK, settings)
    return load_segmenter_folder(bundled_network_folder(), BUNDLED_NETWORK_ID)


def _published_swin(name: str, label_set_name: str):
    def build(pretrained, settings) -> tuple[object, ModelInfo]:
        from encoders.preprocess import monai_preprocess
        from encoders.registry import check_settings, create_encoder, resolve_pretrained
        from fm.core.checksums import content_hash
        from fm.core.labels import LABEL_SETS
        from heads.network_segmenter import Segmenter, SwinSegmentationNet

        check_settings(name, settings)
        local = resolve_pretrained(pretrained)  # a URL: its verified download, so the checksum below is of it
        encoder = create_encoder(name, local, **settings)
        spec = encoder.spec
        label_set = LABEL_SETS[label_set_name]
        segmenter = Segmenter(
            SwinSegmentationNet(encoder), lambda volume: monai_preprocess(volume, spec), label_set, roi_size=spec.size
        )
        source = Path(str(local))
        weights = source / "model.safetensors" if source.is_dir() else source
        checksum = content_hash(weights)[:16] if weights.is_file() else "unknown"
        return segmenter, ModelInfo(str(pretrained), "published checkpoint", checksum, name, label_set.name)

    return build


_REGISTRY: dict[str, SegmenterEntry] = {
    ADAPTIVE_MODEL_ID: SegmenterEntry(
        _atlas_em, "contrast-adaptive: MNI152 atlas priors + a Gaussian mixture fitted to the scan (default)"
    ),
    BUNDLED_NETWORK: SegmenterEntry(
        _bundled_network, "the bundled U-Net trained on synthetic scans (one T1-like scan; misses lesions)"
    ),
    "swin_bob": SegmenterEntry(
        _published_swin("swin_bob", "ukbob-72"),
        "Swin-BOB UKBOB checkpoint: 72 body structures in MRI",
        needs_weights=True,
    ),
    "swin_bob_btcv": SegmenterEntry(
        _published_swin("swin_bob_btcv", "btcv-13"),
        "Swin-UNETR BTCV checkpoint: 13 abdominal organs in CT",
        needs_weights=True,
    ),
}


def list_segmenters() -> dict[str, str]:
    """Registered names -> what each is."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def published_checkpoint_names() -> list[str]:
    return [name for name, entry in _REGISTRY.items() if entry.needs_weights]


def create_segmenter(
    model: str | Path | None = None, pretrained: str | Path | None = None, **settings
) -> tuple[object, ModelInfo]:
    """model: a registered name (default ADAPTIVE_MODEL_ID), a folder in heads.model_folder's format
    or `hf-hub:org/name`. pretrained: the checkpoint file (or its https:// URL, downloaded once into
    the weights cache) or saved folder of a published family (needs_weights). settings: that
    family's constructor settings (e.g. feature_size=12)."""
    name = ADAPTIVE_MODEL_ID if model is None else str(model)
    entry = _REGISTRY.get(name)
    if entry is not None:
        if entry.needs_weights and pretrained is None:
            raise InputError(
                f"--encoder {name} needs --model: a checkpoint file or its https:// URL, a saved folder or "
                "hf-hub:org/name (fm weights list shows where the published ones are)"
            )
        if not entry.needs_weights and pretrained is not None:
            raise InputError(
                f"{name} carries its own weights; pretrained= is for {', '.join(published_checkpoint_names())}"
            )
        return entry.build(pretrained, settings)
    _no_settings(name, settings)
    from heads.folder_segmenter import load_segmenter_folder  # torch and MONAI: only for networks

    if name.startswith(HUB_PREFIX):
        from encoders.registry import hub_snapshot

        return load_segmenter_folder(hub_snapshot(name), name)
    folder = Path(name)
    if folder.is_file():
        raise InputFileError(
            folder, f"is a file; a published checkpoint needs --encoder ({', '.join(published_checkpoint_names())})"
        )
    if not folder.is_dir():
        raise InputFileError(folder, f"is neither a segmenter folder nor a registered name ({', '.join(_REGISTRY)})")
    return load_segmenter_folder(folder, name)


def _no_settings(name: str, settings: dict) -> None:
    if settings:
        raise InputError(f"{name} carries its own configuration; drop {sorted(settings)}")
