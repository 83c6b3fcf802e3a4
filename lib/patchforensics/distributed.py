"""Training across processes (``torchrun``): this process's place in the group, and the few
collective operations a run needs (sums of counts, rank 0's BatchNorm statistics).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's rank among ``world_size`` processes (1: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this call initialised the process group and must destroy it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_dist(device: str | torch.device | None) -> tuple[Dist, torch.device]:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = None if device is None else str(device)  # a torch.device works too
    wants_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if world <= 1:
        return Dist(), torch.device(device or ("cuda" if wants_cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    dev = torch.device(f"cuda:{local}") if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(dev)
    return Dist(dist.get_rank(), dist.get_world_size(), local, owns), dev


def all_sum(values: list[float], d: Dist) -> list[float]:
    """``values`` summed over every process (as they are when not distributed)."""
    if d.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def sync_buffers(model: torch.nn.Module, d: Dist) -> None:
    """BatchNorm running statistics drift apart per process (each sees its own batches after
    DDP's broadcast); take rank 0's before validating or saving, so all agree."""
    if d.world_size > 1:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)
