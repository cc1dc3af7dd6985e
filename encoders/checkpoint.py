"""Loading published checkpoints safely and strictly.

Containers are read with `torch.load(weights_only=True)`; the only non-tensor objects allowed are
the ones the published files are known to hold (numpy scalars and dtypes, argparse.Namespace).
Loading is strict: any missing, unexpected or mis-shaped key is an error that lists them, and a
load that matches no key at all is always an error, whatever `strict` says.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fm.core.errors import InputFileError

# numpy 2 moved numpy.core to numpy._core; old pickles name the old path. Only numeric dtype
# classes are allowed (a float64 `best_acc`, an int `epoch`), never object or string ones.
_SCALAR = np._core.multiarray.scalar
_NUMERIC_DTYPES = [
    np.dtypes.Float16DType,
    np.dtypes.Float32DType,
    np.dtypes.Float64DType,
    np.dtypes.Int8DType,
    np.dtypes.Int16DType,
    np.dtypes.Int32DType,
    np.dtypes.Int64DType,
    np.dtypes.UInt8DType,
    np.dtypes.UInt16DType,
    np.dtypes.UInt32DType,
    np.dtypes.UInt64DType,
    np.dtypes.BoolDType,
]
SAFE_GLOBALS = [(_SCALAR, "numpy.core.multiarray.scalar"), _SCALAR, np.dtype, *_NUMERIC_DTYPES, argparse.Namespace]


def load_container(path: str | Path) -> dict:
    """A published checkpoint file as a dict, loaded without running arbitrary pickled code."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such checkpoint file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            container = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        reason = str(err).strip().splitlines()
        detail = next(
            (line.strip() for line in reason if "Unsupported global" in line),
            reason[0] if reason else type(err).__name__,
        )
        raise InputFileError(path, f"cannot be loaded safely as a checkpoint ({detail})") from None
    if not isinstance(container, dict):
        raise InputFileError(path, f"holds a {type(container).__name__}, not a checkpoint dictionary")
    return container


def load_state_dict_strictly(module: nn.Module, state_dict: dict[str, torch.Tensor], path, strict: bool = True) -> None:
    """Copy `state_dict` into `module`, refusing partial or mis-shaped loads (see module doc)."""
    expected = module.state_dict()
    matched = [k for k in state_dict if k in expected]
    if not matched and (expected or state_dict):  # a module without weights (segmentation_grid) loads nothing
        sample = ", ".join(list(state_dict)[:3])
        raise InputFileError(path, f"no key matches the model (checkpoint keys look like: {sample})")
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in matched
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if wrong_shape:
        raise InputFileError(path, f"{len(wrong_shape)} keys have the wrong shape: {_listed(wrong_shape)}")
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_listed(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
        raise InputFileError(path, "does not match the model; " + "; ".join(parts))
    module.load_state_dict({k: state_dict[k] for k in matched}, strict=False)


def _listed(keys: list[str], most: int = 8) -> str:
    shown = ", ".join(keys[:most])
    return shown + (f" (+{len(keys) - most} more)" if len(keys) > most else "")
