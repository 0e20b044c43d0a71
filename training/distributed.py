"""Data parallelism when started by `torchrun` (one process per device; any number of nodes)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """Where this process stands: rank 0 of 1 when not started by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    local_world_size: int = 1  # processes on this node (they share its cores)

    @property
    def is_main(self) -> bool:
        """The one process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_world() -> World:
    """Join torchrun's process group (env:// rendezvous: RANK, WORLD_SIZE, MASTER_ADDR, ...);
    NCCL on CUDA, gloo on CPU."""
    cuda = torch.cuda.is_available()
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return World(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return World(dist.get_rank(), dist.get_world_size(), local_rank, device, local_size)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def reduce_sums(values: list[float], world: World) -> list[float]:
    """Element-wise sums over all ranks (float64, so counts stay exact)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def replicas_agree(model: nn.Module, world: World) -> bool:
    """Whether every rank holds the same parameters (a cheap checksum, compared everywhere)."""
    with torch.no_grad():
        checksum = sum(p.double().sum() * (i + 1) for i, p in enumerate(model.parameters()))
    values = torch.tensor([float(checksum)], dtype=torch.float64, device=world.device)
    if not world.distributed:
        return True
    gathered = [torch.zeros_like(values) for _ in range(world.world_size)]
    dist.all_gather(gathered, values)
    return all(torch.equal(g, gathered[0]) for g in gathered)
