"""One registry for every encoder, in the manner of timm: `create_encoder(name, pretrained=...)`.

`pretrained` may be:
- a published checkpoint file (the authors' container: Swin-BOB / MONAI trainer and
  self-supervised files, AnatCL `.pth`, Brain-ID `.pth`, a timm backbone's `.pth` or
  `.safetensors`), loaded strictly and safely;
- a folder in this project's format (config.json + model.safetensors), or
- `hf-hub:org/name`, the same format on the Hugging Face Hub (honours HF_HUB_OFFLINE and the
  local cache), or
- an https:// URL of such a checkpoint file, downloaded once into the weights cache and verified
  (encoders.download; `fm weights list` shows the published URLs, encoders.published).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

from safetensors.torch import load_file

from encoders import HUB_PREFIX
from encoders.anatcl import AnatCL
from encoders.base import Encoder
from encoders.brain_id import BrainID
from encoders.checkpoint import load_container, load_state_dict_strictly
from encoders.download import download_weights, is_url
from encoders.published import published_sha256
from encoders.segmentation_grid import SegmentationGrid
from encoders.swin_bob import SwinBOB
from encoders.timm25d import Timm25D
from fm.core.errors import InputError, InputFileError


@dataclasses.dataclass(frozen=True)
class EncoderEntry:
    cls: type[Encoder]
    defaults: dict
    description: str


_REGISTRY: dict[str, EncoderEntry] = {
    "swin_bob": EncoderEntry(
        SwinBOB,
        dict(in_channels=1, out_channels=72, feature_size=48, modalities=("MR",)),
        "Swin-UNETR pretrained on UK Biobank body MRI organ masks (UKBOB), 72 structures",
    ),
    "swin_bob_btcv": EncoderEntry(
        SwinBOB,
        dict(in_channels=1, out_channels=14, feature_size=48, spacing_mm=(1.5, 1.5, 2.0), modalities=("CT",)),
        "Swin-UNETR fine-tuned on BTCV abdominal CT, 13 organs + background",
    ),
    "swin_bob_brats": EncoderEntry(
        SwinBOB,
        dict(
            in_channels=4,
            out_channels=3,
            feature_size=48,
            spacing_mm=(1.0, 1.0, 1.0),
            window=(128, 128, 128),
            modalities=("T1c", "T1", "T2", "FLAIR"),
        ),
        "Swin-UNETR for BraTS brain tumours, 4 MR contrasts, 3 nested regions (sigmoid)",
    ),
    "anatcl": EncoderEntry(AnatCL, dict(), "AnatCL anatomical brain-MRI encoder, 3D ResNet-18, 512-d"),
    "brain_id": EncoderEntry(BrainID, dict(f_maps=64), "Brain-ID contrast-agnostic brain features, 5-level 3D U-Net"),
    "segmentation_grid": EncoderEntry(
        SegmentationGrid,
        dict(),
        "the scan's segmentation and intensities pooled over the brain with position (lesion-aware tokens, no weights)",
    ),
    "timm25d": EncoderEntry(
        Timm25D, dict(), "any timm 2D backbone run slice by slice, slices' features pooled (the 2D baseline)"
    ),
}


def list_encoders() -> list[str]:
    return sorted(_REGISTRY)


def describe_encoder(name: str) -> str:
    return _entry(name).description


def _entry(name: str) -> EncoderEntry:
    if name not in _REGISTRY:
        raise KeyError(f"unknown encoder {name!r}; available: {', '.join(list_encoders())}")
    return _REGISTRY[name]


def encoder_settings(name: str) -> list[str]:
    """The constructor settings encoder `name` takes (what `overrides` may name)."""
    return [p for p in inspect.signature(_entry(name).cls.__init__).parameters if p != "self"]


def check_settings(name: str, settings: dict) -> None:
    """Refuses settings encoder `name` does not take, naming those it does."""
    unknown = sorted(set(settings) - set(encoder_settings(name)))
    if unknown:
        raise InputError(
            f"{name} does not take {', '.join(unknown)}; its settings: {', '.join(encoder_settings(name))}"
        )


def create_encoder(name: str, pretrained: str | Path | None = None, *, strict: bool = True, **overrides) -> Encoder:
    """Build encoder `name` (with constructor `overrides`) and load `pretrained` weights if given.

    strict=False tolerates missing/unexpected keys (for fine-tuning from a partial checkpoint);
    a checkpoint that matches no key is refused either way.
    """
    entry = _entry(name)
    check_settings(name, overrides)
    if pretrained is None:
        return entry.cls(**{**entry.defaults, **overrides}).eval()
    source = str(resolve_pretrained(pretrained))
    if source.startswith(HUB_PREFIX):
        return _from_project_folder(entry, hub_snapshot(source), overrides, strict)
    path = Path(source)
    if path.is_dir():
        return _from_project_folder(entry, path, overrides, strict)
    model = entry.cls(**{**entry.defaults, **overrides})
    container = {"state_dict": read_weights(path)} if path.suffix == ".safetensors" else load_container(path)
    module, state = model.original_state_dict(container, path)
    load_state_dict_strictly(module, state, path, strict=strict)
    return model.eval()


def resolve_pretrained(pretrained: str | Path) -> str | Path:
    """An http(s) URL becomes its downloaded file in the weights cache (encoders.download: fetched
    once, verified against a #sha256 fragment or the published table's SHA-256); a path or an
    hf-hub id is returned as it is. What comes back then loads as a local file always has."""
    if not is_url(pretrained):
        return pretrained
    return download_weights(str(pretrained), sha256=published_sha256(str(pretrained)))


def hub_snapshot(source: str) -> Path:
    """Local folder of `hf-hub:org/name` in the project's format (the Hub cache; HF_HUB_OFFLINE works)."""
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            source[len(HUB_PREFIX) :],
            allow_patterns=["config.json", "model.safetensors", "README.md", "evaluation.json"],
        )
    )


def read_model_folder(folder: Path, what: str) -> tuple[dict, dict]:
    """(config, state dict) of a folder in the project's format, config.json + model.safetensors;
    `what` names the kind of folder in errors ("an encoder", "a segmenter")."""
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise InputFileError(folder, f"is not {what} folder (needs config.json and model.safetensors)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise InputFileError(config_path, f"is not valid JSON ({err})") from None
    return config, read_weights(weights_path)


def read_weights(path: Path) -> dict:
    """The state dict of a safetensors file, or an error naming it."""
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise InputFileError(path, f"is not a readable safetensors file ({err})") from None


def _from_project_folder(entry: EncoderEntry, folder: Path, overrides: dict, strict: bool) -> Encoder:
    """Checked like a published checkpoint (the Hub mixin's own loader would accept missing
    weights without a word)."""
    if overrides:
        raise InputError(f"a saved encoder carries its own configuration; drop the overrides {sorted(overrides)}")
    config, state = read_model_folder(folder, "an encoder")
    if config.get("family") != entry.cls.family:
        raise InputFileError(folder, f"holds a {config.get('family')!r} encoder, not {entry.cls.family!r}")
    accepted = set(inspect.signature(entry.cls.__init__).parameters) - {"self"}
    described = {"family", "num_features", "input_spec"}  # written by Encoder.save_pretrained, checked below
    unknown = sorted(set(config) - accepted - described)
    if unknown:
        raise InputFileError(
            folder / "config.json", f"has keys the {entry.cls.family} encoder does not take: {', '.join(unknown)}"
        )
    model = entry.cls(**{k: v for k, v in config.items() if k in accepted})
    # What the folder says about the rebuilt model must be true of it (compared as JSON).
    for key, rebuilt in (("num_features", model.num_features), ("input_spec", model.spec.to_dict())):
        if key in config and json.loads(json.dumps(rebuilt)) != config[key]:
            raise InputFileError(
                folder / "config.json", f"says {key} {config[key]}, but the encoder it describes has {rebuilt}"
            )
    load_state_dict_strictly(model, state, folder, strict=strict)
    return model.eval()
