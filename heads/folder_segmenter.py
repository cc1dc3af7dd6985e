"""A segmentation network rebuilt from its folder (heads.model_folder) and nothing else: the
encoder from the encoder registry, the head, the preprocessing from the saved input spec, the
output decoding and the post-processing steps named in config.json."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from torch import nn

from encoders.checkpoint import load_state_dict_strictly
from encoders.preprocess import monai_preprocess
from encoders.registry import create_encoder, read_weights
from fm.core.checksums import content_hash
from fm.core.errors import InputFileError, look_up
from fm.core.io import Volume
from fm.core.labels import BRAIN_TISSUE, BRAIN_TUMOUR, LabelSet
from heads.hemispheres import split_hemispheres
from heads.model_folder import WEIGHTS_FILE, SegmenterConfig, read_config, read_evaluation, write_config
from heads.network_segmenter import LightSegmentationNet, Segmenter, SwinSegmentationNet
from heads.plausibility import drop_detached_lesions
from heads.result import ModelInfo, Segmentation


@dataclasses.dataclass(frozen=True)
class PostprocessStep:
    run: Callable[[Segmentation, Volume], Segmentation]
    takes: str | None = None  # the label set it works on (None: any)
    gives: str | None = None  # the label set it returns (None: the one it was given)


#: Post-processing steps a config.json may name, in the order it names them.
POSTPROCESS = {
    # lesion components touching no brain tissue are the network's false positives
    "drop_detached_lesions": PostprocessStep(lambda segmentation, volume: drop_detached_lesions(segmentation)),
    # sides from the affine and the brain's symmetry plane
    "split_hemispheres": PostprocessStep(
        lambda segmentation, volume: split_hemispheres(segmentation, volume), BRAIN_TISSUE.name, BRAIN_TUMOUR.name
    ),
}


def build_net(config: SegmenterConfig) -> nn.Module:
    """The untrained network a config describes."""
    encoder = create_encoder(config.encoder, **config.encoder_kwargs)
    if config.head == "encoder":
        return SwinSegmentationNet(encoder)
    return LightSegmentationNet(encoder, config.num_classes, width=config.head_width)


def postprocess_chain(
    names: tuple[str, ...], label_set: LabelSet
) -> tuple[Callable[[Segmentation, Volume], Segmentation] | None, str]:
    """The named steps as one function (None when there are none), and the label set it reports in."""
    current, steps = label_set.name, []
    for name in names:
        step = look_up("post-processing step", name, POSTPROCESS)
        if step.takes is not None and step.takes != current:
            raise ValueError(f"post-processing step {name} works on {step.takes} labels, not {current}")
        current = step.gives or current
        steps.append(step.run)
    if not steps:
        return None, current

    def run(segmentation: Segmentation, volume: Volume) -> Segmentation:
        for step in steps:
            segmentation = step(segmentation, volume)
        return segmentation

    return run, current


def load_segmenter_folder(folder: Path, model_id: str) -> tuple[Segmenter, ModelInfo]:
    config = read_config(folder)
    try:
        net = build_net(config)
        postprocess, reported = postprocess_chain(config.postprocess, config.label_set)
    except (ValueError, TypeError) as err:  # settings the encoder or a step does not take
        raise InputFileError(folder / "config.json", str(err)) from None
    load_state_dict_strictly(net, read_weights(folder / WEIGHTS_FILE), folder, strict=True)
    spec = config.input_spec
    segmenter = Segmenter(
        net,
        lambda volume: monai_preprocess(volume, spec),
        config.label_set,
        roi_size=config.roi_size,
        output=config.decoding,
        region_channels=config.region_channels,
        overlap=config.overlap,
        postprocess=postprocess,
    )
    sha256 = content_hash(folder / WEIGHTS_FILE)[:16]
    sensitivity, evaluation = read_evaluation(folder, sha256)
    return segmenter, ModelInfo(model_id, config.version, sha256, config.encoder, reported, sensitivity, evaluation)


def save_segmenter_folder(
    folder: str | Path, net: nn.Module, config: SegmenterConfig, training_args: dict | None = None
) -> Path:
    """config.json, model.safetensors and, when given, training_args.json. The config must rebuild `net`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    rebuilt = set(build_net(config).state_dict())
    if rebuilt != set(net.state_dict()):
        raise ValueError(
            f"the config does not describe this network: {sorted(rebuilt ^ set(net.state_dict()))[:5]} differ"
        )
    write_config(folder, config, training_args)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / WEIGHTS_FILE))
    return folder
