"""The few collective operations the selectors need under torch.distributed (no-ops in a single process)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _device() -> torch.device:
    """NCCL collectives need CUDA tensors; gloo takes CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_losses(losses: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's 1-D ``losses`` (sizes may differ), in rank order, on CPU."""
    if world_size() == 1:
        return losses
    dev = _device()
    n = torch.tensor([losses.numel()], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.full((longest,), float("nan"), device=dev)
    padded[: losses.numel()] = losses.to(dev, torch.float32)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).cpu()


def min_over_ranks(value: int) -> int:
    """The smallest ``value`` over all ranks: ranks step together only as often as the slowest can."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())
