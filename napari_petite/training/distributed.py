"""torch.distributed set-up for runs launched by ``torchrun`` (one process per GPU or CPU slot).

``torchrun`` tells each process who it is through environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). :func:`launched_session`
reads them, starts the process group (NCCL on CUDA, gloo on the CPU, so the same command runs
on a laptop and a cluster), and tears it down afterwards. Outside ``torchrun`` it does nothing,
so every caller behaves exactly as a single process. The engine wraps the model in
DistributedDataParallel when a group is live; only rank 0 prints and writes files.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
from collections.abc import Iterator
from typing import Any

from napari_petite.errors import ConfigError

#: environment variables torchrun sets in every process it starts
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process launch (WORLD_SIZE > 1)."""
    if not all(v in os.environ for v in TORCHRUN_VARS):
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


def is_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the group (1 without a process group)."""
    import torch.distributed as dist

    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_initialized() else 0


def is_main() -> bool:
    """Whether this process prints and writes (rank 0, or a plain single process)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    import torch.distributed as dist

    if is_initialized():
        dist.barrier()


def _wants_cuda(device: str) -> bool:
    import torch

    device = (device or "auto").lower()
    return torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))


def rank_device(device: str) -> str:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` under a CUDA group, else ``device``.

    Each process must own one GPU; ``auto`` or ``cuda`` would put every rank on GPU 0.
    """
    if not is_initialized() or not _wants_cuda(device):
        return device
    return f"cuda:{local_rank()}"


@contextlib.contextmanager
def launched_session(device: str = "auto", timeout_s: float | None = None) -> Iterator[bool]:
    """Start the process group when launched by torchrun; yield whether one is live.

    Backend: NCCL when this rank trains on CUDA, gloo otherwise (CPU runs, tests). The group
    is destroyed on the way out, also after an error, so torchrun sees each rank finish.
    ``timeout_s`` bounds how long a collective waits for a slower rank (torch's default, 10 to
    30 minutes, is too short when ranks finish hours apart, as in a sweep).
    """
    if not launched_by_torchrun() or is_initialized():
        yield is_initialized()
        return
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("This PyTorch build has no torch.distributed; run without torchrun "
                          "or install a build with distributed support.")
    cuda = _wants_cuda(device)
    if cuda:
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise ConfigError(f"Local rank {local} has no GPU ({torch.cuda.device_count()} "
                              "visible); start at most one process per GPU "
                              "(--nproc-per-node) or use --device cpu.")
        torch.cuda.set_device(local)
    kwargs = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
    dist.init_process_group(backend="nccl" if cuda else "gloo", **kwargs)
    try:
        yield True
        # leave together: a gloo rank that tears down while another still talks aborts
        dist.barrier()
    finally:
        dist.destroy_process_group()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a process group)."""
    import torch.distributed as dist

    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def state_digest(tensors: dict[str, Any]) -> str:
    """sha256 over names, shapes, dtypes and bytes of ``tensors`` (sorted by name).

    Ranks that ended with bit-identical weights have equal digests; the adapter card records
    every rank's digest so a run's consistency can be checked after the fact.
    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rank_digests(tensors: dict[str, Any]) -> dict[str, Any]:
    """World size and every rank's :func:`state_digest` (for the adapter card)."""
    digests = all_gather_object(state_digest(tensors))
    return {"world_size": len(digests), "trainable_sha256_by_rank": digests,
            "ranks_identical": len(set(digests)) == 1}
