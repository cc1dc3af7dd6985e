"""How much memory one forward pass of an encoder takes, estimated before it runs, so a scan too
large for the machine is refused with a message instead of being killed by the kernel.

Peak resident memory of a CPU forward pass (torch.inference_mode) is close to linear in the
number of input voxels: `fixed + per_voxel x voxels`. The two figures per family and precision
were measured on the project's 2-core machines (peak RSS of a fresh process, random weights, at
two input sizes: `python eval/bench_embed.py --calibrate` measures them again). Activations scale
with the network's width, so per_voxel is scaled by num_features over the width measured.
"""

from __future__ import annotations

import dataclasses
import os

from fm.core.errors import InputError

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryProfile:
    fixed_bytes: float  # interpreter, torch, weights, library workspaces
    bytes_per_voxel: float  # activations, per input voxel (all channels)
    num_features: int  # the width these were measured at


# family -> precision -> profile (bench_embed.py --calibrate, November 2026, torch 2.14.1 CPU)
PROFILES: dict[str, dict[str, MemoryProfile]] = {
    # 96^3 and 128^3 inputs: fp32 3.70 / 6.94 GiB, bf16 2.50 / 4.09 GiB
    "brain_id": {"fp32": MemoryProfile(1.34 * GIB, 2870.0, 64), "bf16": MemoryProfile(1.34 * GIB, 1410.0, 64)},
    # 64^3 and 128^3: fp32 1.65 / 4.81 GiB, bf16 1.69 / 5.27 GiB (autocast costs memory here)
    "swin_bob": {"fp32": MemoryProfile(1.19 * GIB, 1850.0, 768), "bf16": MemoryProfile(1.18 * GIB, 2100.0, 768)},
    # 64^3 and its fixed 121x128x121 input: 1.09 / 1.15 GiB
    "anatcl": {"fp32": MemoryProfile(1.08 * GIB, 45.0, 512), "bf16": MemoryProfile(1.08 * GIB, 45.0, 512)},
    # resnet18 slice by slice (64 slices a batch), 64^3 and 128^3: fp32 1.11 / 1.27 GiB, bf16 1.10 / 1.21 GiB
    "timm25d": {"fp32": MemoryProfile(1.09 * GIB, 92.0, 512), "bf16": MemoryProfile(1.08 * GIB, 69.0, 512)},
}
PRECISIONS = ("fp32", "bf16")


def estimate_peak_bytes(family: str, num_features: int, voxels: int, precision: str = "fp32") -> float:
    """Peak resident bytes of one forward pass over `voxels` input voxels (batch included)."""
    profile = PROFILES[family][precision]
    return profile.fixed_bytes + profile.bytes_per_voxel * voxels * num_features / profile.num_features


def available_bytes() -> int:
    """Memory the system can give this process now (MemAvailable), the default limit."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil is optional: fall back to all physical memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parse_size(text: str) -> int:
    """'16GiB', '16G', '512MiB' or a plain number of GiB -> bytes."""
    units = {"t": 1024**4, "g": GIB, "m": 1024**2, "k": 1024}
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = units.get(value[-1:], None)
    number = value[:-1] if scale else value
    try:
        return int(float(number) * (scale or GIB))
    except ValueError:
        raise InputError(f"{text!r} is not a memory size (e.g. 16GiB, 512MiB, or a number of GiB)") from None
