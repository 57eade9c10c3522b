"""Data-parallel training under ``torchrun``: process group, rank-0-only side effects, collectives.

``torchrun --nproc_per_node N -m transferkit transfer ...`` starts N processes with ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK`` set. The first call into this module then joins the process group
(gloo for CPU tensors, NCCL for CUDA tensors: ``cpu:gloo,cuda:nccl`` when CUDA is present; each
process drives GPU ``LOCAL_RANK``). Without those variables every function here is a cheap no-op
(``world_size() == 1``), so the single-process path runs exactly the code it always ran.

Semantics (see :func:`transferkit.engine.loop.fit`): ``batch_size`` is the *global* batch. Every
rank draws the same seeded permutation; rank ``r`` takes the ``r``-th contiguous slice of each
global batch (:func:`shard_bounds`), so the samples, their order and the optimizer steps equal the
one-process run's. Only rank 0 writes files or prints.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as dist

from transferkit.errors import TransferkitError

if TYPE_CHECKING:  # annotations only: precision (the inference it shards) sits above this module
    from transferkit.engine.precision import Placement

T = TypeVar("T")
log = logging.getLogger("transferkit")


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when absent)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup() -> bool:
    """Join the process group torchrun describes (once); True when running with several processes.

    A process group the caller already initialised (``torch.distributed.init_process_group``) is
    used as it is. On ranks other than 0 the ``transferkit`` logger is silenced below ERROR.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if env_world_size() <= 1 or not dist.is_available():
        return False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend)
    atexit.register(teardown)
    if dist.get_rank() != 0:
        logging.getLogger("transferkit").setLevel(logging.ERROR)
    return dist.get_world_size() > 1


def teardown() -> None:
    """Leave the process group (registered at exit by :func:`setup`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if setup() else 1


def rank() -> int:
    return dist.get_rank() if setup() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if setup() else 0


def is_main() -> bool:
    """True on rank 0 (and whenever not distributed): the one process that writes and prints."""
    return rank() == 0


def single_node() -> bool:
    """All ranks share one machine (so one file path is seen by all of them)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size()))) == world_size()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` has it, on every rank (pickled; keep it small and on the CPU)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_true(flag: bool) -> bool:
    """True when ``flag`` holds on every rank (so all ranks take the same branch)."""
    if world_size() == 1:
        return flag
    nccl_only = dist.get_backend() == "nccl"  # a group the caller initialised for GPUs alone
    t = torch.tensor([0 if flag else 1], dtype=torch.int64, device="cuda" if nccl_only else "cpu")
    dist.all_reduce(t)
    return int(t.item()) == 0


def run_on_main(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only; the other ranks wait and re-raise its user error, if any.

    Returns ``fn()`` on rank 0 and ``None`` elsewhere.
    """
    if world_size() == 1:
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except (TransferkitError, OSError) as e:  # the user's error, raised on every rank
            error = e
    error = broadcast_object(error)
    if error is not None:
        raise error
    return result


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of an ``n``-row batch that rank ``r`` of ``world`` takes.

    Contiguous slices in rank order with sizes differing by at most one (the first ``n % world``
    ranks take one more), as ``torch.tensor_split``: together they partition ``range(n)``.
    """
    base, extra = divmod(n, world)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def broadcast_module_(module: torch.nn.Module, parameters: bool = True) -> None:
    """Copy rank 0's parameters (optional) and buffers to every rank, in place, as DDP does."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in (list(module.parameters()) if parameters else []) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def sync_gradients(params: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    """Sum every parameter's gradient (and ``loss``) over ranks in one all-reduce; returns the sum of ``loss``.

    A parameter keeps ``grad = None`` only when no rank produced a gradient for it, so optimizers
    that skip gradient-less parameters (AdamW weight decay, momentum) behave as in one process.
    """
    if world_size() == 1:
        return loss
    dev = loss.device
    sizes = [p.numel() for p in params]
    parts = [p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(k, device=dev)
             for p, k in zip(params, sizes, strict=True)]
    flags = torch.tensor([float(p.grad is not None) for p in params], device=dev)
    flat = torch.cat([*parts, flags, loss.detach().float().reshape(1)])
    dist.all_reduce(flat)
    has = flat[sum(sizes) : -1].tolist()
    offset = 0
    for p, k, h in zip(params, sizes, has, strict=True):
        g = flat[offset : offset + k].view_as(p)
        offset += k
        if p.grad is not None:
            p.grad.copy_(g)
        elif h > 0:
            p.grad = g.to(p.dtype).clone()
    return flat[-1]


def all_gather_rows(t: torch.Tensor, trailing: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Concatenate every rank's rows (in rank order); ranks may hold different numbers of rows.

    ``trailing`` is the per-row shape (known on all ranks, also on one holding no rows). The
    transfer goes through ``device`` (a CUDA device for NCCL); the result is on the CPU.
    """
    if world_size() == 1:
        return t
    sizes = torch.tensor([len(t)], dtype=torch.int64, device=device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world_size())]
    dist.all_gather(all_sizes, sizes)
    rows = [int(s.item()) for s in all_sizes]
    pad = torch.zeros((max(rows), *trailing), dtype=torch.float32, device=device)
    pad[: len(t)] = t.reshape(len(t), *trailing).to(device)
    out = [torch.empty_like(pad) for _ in rows]
    dist.all_gather(out, pad)
    return torch.cat([o[:k] for o, k in zip(out, rows, strict=True)]).cpu()


def comm_device(place: Placement) -> torch.device:
    """Where collectives on ``place``'s tensors run: its CUDA device, or the CPU (gloo)."""
    return place.device if place.device.type == "cuda" else torch.device("cpu")


def batch_range(n: int, batch_size: int) -> tuple[int, int]:
    """This rank's rows of an ``n``-row inference pass, cut at ``batch_size`` boundaries so each
    batch holds exactly the rows it holds in one process (same kernels, same outputs)."""
    lo, hi = shard_bounds(math.ceil(n / batch_size), world_size(), rank())
    return min(lo * batch_size, n), min(hi * batch_size, n)
