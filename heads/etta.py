"""Entropy test-time adaptation (ETTA), as the UKBOB paper describes it: on the test scan itself,
adapt only the affine parameters of the normalisation layers by minimising the entropy of the
prediction for a few steps, predict with the adapted parameters, then restore the model.

(The released reference script runs under no_grad, crashes and predicts with the unadapted
weights; this implements the method instead.)
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from fm.core.errors import InputError
from fm.core.io import Volume
from heads.network_segmenter import Segmentation, Segmenter

_NORMS = (nn.BatchNorm3d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)


def norm_affine_parameters(net: nn.Module) -> list[nn.Parameter]:
    params = []
    for module in net.modules():
        if isinstance(module, _NORMS):
            params += [p for p in (getattr(module, "weight", None), getattr(module, "bias", None)) if p is not None]
    return params


def prediction_entropy(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Mean per-voxel entropy of softmax classes, or of independent sigmoid regions."""
    if output == "softmax":
        log_p = torch.log_softmax(logits, dim=1)
        return -(log_p.exp() * log_p).sum(dim=1).mean()
    p = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    return -(p * p.log() + (1 - p) * (1 - p).log()).mean()


@contextlib.contextmanager
def adapted(net: nn.Module, tensor: torch.Tensor, output: str, steps: int = 3, lr: float = 1e-3, roi_size=None):
    """Inside the block `net` has entropy-adapted normalisation parameters; afterwards its
    parameters, buffers (running statistics), gradients, requires_grad flags and train/eval mode
    are exactly as before. Yields the entropy per step."""
    params = norm_affine_parameters(net)
    if not params:
        raise InputError("--etta: this network has no normalisation affine parameters to adapt")
    saved_params = {id(p): p.detach().clone() for p in params}
    saved_buffers = {name: b.detach().clone() for name, b in net.named_buffers()}
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    was_training = net.training
    entropies: list[float] = []
    try:
        net.eval()  # adapt affine parameters only: running statistics stay frozen
        for p in net.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(params, lr=lr)
        crop = _central_crop(tensor, roi_size) if roi_size else tensor
        with torch.enable_grad():
            for _ in range(steps):
                optimiser.zero_grad()
                loss = prediction_entropy(net(crop), output)
                loss.backward()
                optimiser.step()
                entropies.append(float(loss.detach()))
        yield entropies
    finally:
        with torch.no_grad():
            for p in params:
                p.copy_(saved_params[id(p)])
                p.grad = None
            for name, b in net.named_buffers():
                b.copy_(saved_buffers[name])
            for name, p in net.named_parameters():
                p.requires_grad_(flags[name])
        net.train(was_training)


def _central_crop(tensor: torch.Tensor, roi_size) -> torch.Tensor:
    starts = [max(n - r, 0) // 2 for n, r in zip(tensor.shape[2:], roi_size)]
    return tensor[(slice(None), slice(None), *(slice(s, s + r) for s, r in zip(starts, roi_size)))]


def etta_logits(
    segmenter: Segmenter, tensor: torch.Tensor, steps: int = 3, lr: float = 1e-3
) -> tuple[torch.Tensor, list[float]]:
    """Logits for a preprocessed scan after adapting to it (the adaptation sees the central window);
    the segmenter's network is restored afterwards. Returns (logits, entropy per step)."""
    with adapted(
        segmenter.net, tensor.to(segmenter.device), segmenter.output, steps, lr, segmenter.roi_size
    ) as entropies:
        with torch.no_grad():
            logits = segmenter.logits(tensor)
    return logits, entropies


def segment_with_etta(
    segmenter: Segmenter, volume: Volume, steps: int = 3, lr: float = 1e-3
) -> tuple[Segmentation, list[float]]:
    """Segment `volume` after adapting to it."""
    prepared = segmenter.preprocess(volume)
    logits, entropies = etta_logits(segmenter, prepared.tensor, steps, lr)
    return segmenter.to_volume(logits, prepared, volume), entropies
