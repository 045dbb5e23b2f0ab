"""Data-parallel training of one run over several processes (``torchrun``), with results that match one process.

A training step draws one *global* batch of ``training.batch_size`` examples. Every rank draws the same global
picks, Haar rotations and example noise from identically seeded generators (each draw is made for the whole global
batch, whatever the rank), then keeps its contiguous shard. So example ``i`` of step ``s`` sees the same rotation and
noise in every layout: the augmentation is keyed by the global example index, not by the rank. With equal shards,
DistributedDataParallel's gradient average equals the gradient of the global mean loss, and the runs differ only
by floating-point summation order.

Launched by the ``train`` rule as ``python -m torch.distributed.run --standalone --nproc_per_node N`` when a run
sets ``training.processes = N > 1``: NCCL on GPUs (one per process), gloo on CPUs.
"""

from __future__ import annotations

import faulthandler
import os
from collections import deque
from dataclasses import dataclass

import torch
import torch.distributed as dist

# The last tensors handed to an all-reduce, kept alive from Python for the life of the process. A gloo worker
# thread can still hold a finished work item (a later barrier keeps it as "prior work") when the main thread drops
# the last reference to the process group (destroying DDP's reducer) and joins that worker while holding the GIL;
# had the worker held the tensor's last reference it would wait for the GIL to free it: a deadlock seen in CI
# (rank 1 hung in ~ProcessGroupGloo after its run finished). 64 is far more than can be in flight.
_RECENTLY_REDUCED: deque[torch.Tensor] = deque(maxlen=64)

# A data-parallel process still alive this long after it began destroying its process group prints every thread's
# stack and exits with status 1: teardown (the group's destructor, interpreter finalisation) hung once more in CI
# after the fix above, with no stack to show where, and a hung rank would hold its job, and the workflow, forever.
TEARDOWN_SECONDS = 120.0


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits in the run: rank among world_size processes, and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> ProcessGroup:
        """Read torchrun's RANK, WORLD_SIZE and LOCAL_RANK; a plain ``python -m`` launch is a group of one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        return cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, resumable state and the run's outputs."""
        return self.rank == 0

    def shard(self, global_batch: int) -> tuple[int, int]:
        """[start, stop) of this rank's examples in a global batch; the batch must split evenly."""
        if global_batch % self.world_size:
            raise ValueError(
                f"training.batch_size = {global_batch} does not split evenly over training.processes = "
                f"{self.world_size}: equal shards are what make the gradient average equal the global mean"
            )
        size = global_batch // self.world_size
        return self.rank * size, (self.rank + 1) * size

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: ``cuda`` becomes ``cuda:<local rank>``."""
        if device.type == "cuda" and self.is_distributed:
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        if self.is_distributed and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        """Destroy the process group, the process's last act: a watchdog (not needing the GIL) ends the process
        with every thread's stack if it has not exited :data:`TEARDOWN_SECONDS` later."""
        if self.is_distributed and dist.is_initialized():
            faulthandler.dump_traceback_later(TEARDOWN_SECONDS, exit=True)
            dist.destroy_process_group()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of a tensor over ranks (a copy; the input is untouched)."""
        if not self.is_distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        _RECENTLY_REDUCED.append(total)
        return total / self.world_size

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()
