"""The device and the process group of a run: CUDA or the CPU, joined to torchrun's group when launched by it.

The one place the classification loop reads the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
everything after it asks :mod:`datareduce.distributed` for the rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from ..._validate import UsageError


@dataclass
class DistInfo:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: Optional[str]) -> torch.device:
    """``None`` picks CUDA when available, else the CPU; an explicit ``cuda`` without a GPU is an error."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
    return dev


def init_distributed(device: torch.device, dist_url: str = "env://") -> tuple:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set); returns (DistInfo, device).

    Each rank uses ``cuda:LOCAL_RANK`` on GPUs (NCCL) or the CPU (gloo).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=world, rank=rank)
    return DistInfo(True, rank, world, local_rank), device
