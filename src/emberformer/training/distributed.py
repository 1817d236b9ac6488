"""torchrun / DistributedDataParallel helpers; everything is a no-op in a single process."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int, int | None]:
    """(rank, world_size, local_rank) from torchrun's environment."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, None


def init(device: torch.device) -> None:
    _, size, _ = world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def is_main() -> bool:
    return world()[0] == 0


def all_reduce_(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (counts, loss sums)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says True (used for signals and NaNs)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup(wait: bool = True) -> None:
    """Leave the process group; after a clean finish, first wait for every rank."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
