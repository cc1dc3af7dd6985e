"""Several processes sharing one manifest under torchrun (`fm report --manifest`, `fm embed`): each
rank takes every world-th row, the ranks meet at barriers, rank 0 merges. Without torchrun these
are a single rank of a world of one and no process group is started."""

from __future__ import annotations

import contextlib
import os


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def device_for_rank():
    """This rank's device: its own GPU (LOCAL_RANK) on a GPU node, the CPU otherwise."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


@contextlib.contextmanager
def process_group():
    """Yields (rank, world). Under torchrun: a gloo group (barriers only: the ranks exchange files,
    not tensors) and this node's cores shared among its ranks; the group ends with a last barrier."""
    rank, world = rank_and_world()
    if world == 1:
        yield rank, world
        return
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local_world))
    try:
        yield rank, world
        dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing to wait for outside torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gathered(value) -> list:
    """Every rank's `value`, in rank order (a small picklable summary, e.g. counts)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values
