"""The segmenter folder format: a folder that is enough, alone, to rebuild a segmentation network,
the input it expects and the meaning of its outputs, in the manner of nnU-Net's plans.json and
transformers' config.json.

    config.json         SegmenterConfig: every key is read; an unknown or missing one is an error
    model.safetensors   the weights
    training_args.json  the recipe that made them (heads.train_segmenter); never read at inference
    evaluation.json     optional: what eval/eval_segmenter.py --record measured, tied to the weights' checksum

config.json, format 2:

    {"model_type": "fm3d-segmenter", "format_version": 2,
     "encoder": {"name": "brain_id", "kwargs": {"f_maps": 8}},          # encoders.registry name + settings
     "head": {"type": "light", "width": 16, "num_classes": 8},         # or {"type": "encoder", ...}: its own decoder
     "input_spec": {...},                                              # encoders.spec.InputSpec
     "label_set": {...},                                               # fm.core.labels.LabelSet: what the channels mean
     "output": {"decoding": "softmax", "region_channels": []},         # or "nested" sigmoid regions, named per channel
     "inference": {"roi_size": [64, 64, 64], "overlap": 0.5},
     "postprocess": ["drop_detached_lesions", "split_hemispheres"],    # names of heads.folder_segmenter.POSTPROCESS steps
     "version": "6400 steps, seed 1, f_maps 8"}
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from encoders.spec import InputSpec
from fm.core.errors import InputFileError, look_up
from fm.core.labels import LabelSet
from heads.decoding import LabelDecoder

MODEL_TYPE = "fm3d-segmenter"
FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAINING_ARGS_FILE = "training_args.json"
EVALUATION_FILE = "evaluation.json"
HEAD_TYPES = ("light", "encoder")


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    encoder: str  # encoders.registry name
    encoder_kwargs: dict
    head: str  # "light" (heads.network_segmenter.LightSegmentationNet) or "encoder" (the encoder's own decoder)
    head_width: int | None  # the light decoder's width (None for "encoder")
    num_classes: int  # output channels
    input_spec: InputSpec
    label_set: LabelSet  # what the output channels mean (before post-processing)
    decoding: str  # "softmax" (channel c = label c) or "nested" (sigmoid regions)
    region_channels: tuple[str, ...]  # nested: the region each channel is
    roi_size: tuple[int, int, int]
    overlap: float
    postprocess: tuple[str, ...]
    version: str

    def __post_init__(self):
        look_up("head type", self.head, HEAD_TYPES)
        LabelDecoder(self.label_set, self.decoding, self.region_channels)  # checks the decoding and its regions
        if self.input_spec.windowed and any(n % self.input_spec.divisible_by for n in self.roi_size):
            raise ValueError(
                f"roi_size {list(self.roi_size)} is not divisible by {self.input_spec.divisible_by}, as the input spec requires"
            )

    def to_dict(self) -> dict:
        return {
            "model_type": MODEL_TYPE,
            "format_version": FORMAT_VERSION,
            "encoder": {"name": self.encoder, "kwargs": self.encoder_kwargs},
            "head": {"type": self.head, "width": self.head_width, "num_classes": self.num_classes},
            "input_spec": self.input_spec.to_dict(),
            "label_set": self.label_set.to_dict(),
            "output": {"decoding": self.decoding, "region_channels": list(self.region_channels)},
            "inference": {"roi_size": list(self.roi_size), "overlap": self.overlap},
            "postprocess": list(self.postprocess),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SegmenterConfig":
        """Every key read, none assumed: ValueError (or KeyError) names what does not fit."""
        top = _fields(
            data,
            (
                "model_type",
                "format_version",
                "encoder",
                "head",
                "input_spec",
                "label_set",
                "output",
                "inference",
                "postprocess",
                "version",
            ),
            "config",
        )
        if top["model_type"] != MODEL_TYPE or top["format_version"] != FORMAT_VERSION:
            raise ValueError(
                f"is {top['model_type']!r} format {top['format_version']!r}, not {MODEL_TYPE!r} format {FORMAT_VERSION}"
            )
        encoder = _fields(top["encoder"], ("name", "kwargs"), "encoder")
        head = _fields(top["head"], ("type", "width", "num_classes"), "head")
        output = _fields(top["output"], ("decoding", "region_channels"), "output")
        inference = _fields(top["inference"], ("roi_size", "overlap"), "inference")
        spec = _fields(top["input_spec"], tuple(f.name for f in dataclasses.fields(InputSpec)), "input_spec")
        return cls(
            encoder=str(encoder["name"]),
            encoder_kwargs=dict(encoder["kwargs"]),
            head=head["type"],
            head_width=head["width"],
            num_classes=int(head["num_classes"]),
            input_spec=input_spec_from_dict(spec),
            label_set=LabelSet.from_dict(top["label_set"]),
            decoding=output["decoding"],
            region_channels=tuple(output["region_channels"]),
            roi_size=tuple(int(n) for n in inference["roi_size"]),
            overlap=float(inference["overlap"]),
            postprocess=tuple(top["postprocess"]),
            version=str(top["version"]),
        )


def input_spec_from_dict(data: dict) -> InputSpec:
    """The InputSpec a config.json holds (JSON lists back to tuples)."""
    as_tuple = {"spacing_mm", "size", "modalities"}
    return InputSpec(**{k: tuple(v) if k in as_tuple and v is not None else v for k, v in data.items()})


def _fields(section, keys: tuple[str, ...], where: str) -> dict:
    if not isinstance(section, dict):
        raise ValueError(f"{where} is not a JSON object")
    unknown, missing = sorted(set(section) - set(keys)), sorted(set(keys) - set(section))
    if unknown or missing:
        raise ValueError(
            f"{where}: "
            + "; ".join(filter(None, [unknown and f"unknown keys {unknown}", missing and f"missing keys {missing}"]))
        )
    return section


def read_config(folder: Path) -> SegmenterConfig:
    path = folder / CONFIG_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise InputFileError(folder, f"is not a segmenter folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        return SegmenterConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise InputFileError(path, f"is not valid JSON ({err})") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputFileError(path, f"is not a {MODEL_TYPE} config: {err}") from None


def write_config(folder: Path, config: SegmenterConfig, training_args: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if training_args is not None:
        (folder / TRAINING_ARGS_FILE).write_text(json.dumps(training_args, indent=2) + "\n")


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
        return float(
            summary["sensitivity_1ml"]
        ), f"{record['n']} synthetic {record['split']}-split scans, seed {record['seed']}"
    except (ValueError, KeyError, TypeError) as error:
        raise InputFileError(path, f"is not an evaluation record ({error})") from None
