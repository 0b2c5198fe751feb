"""Ranks: start N local processes, join the process group, stop together (used by
`mirkit train` and `mirkit index`).

`mirkit train --nproc-per-node N` starts N ranks through torch.distributed's elastic
launcher (the engine behind `torchrun --standalone`); under a user's own `torchrun` the
ranks find the process group from the environment it sets. NCCL on CUDA, gloo on CPU.

A rank that fails makes the launcher stop the others (SIGTERM, then SIGKILL), and the
process group's timeout bounds how long a survivor can wait in a collective, so a job
never hangs on a dead rank.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import uuid
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType

import torch
import torch.distributed as dist

from mirkit.errors import MirkitError

COLLECTIVE_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


ONE_PROCESS = World()


def join(device: str) -> tuple[World, torch.device]:
    """The world from torchrun's environment (one rank without it) and this rank's
    device: `auto` picks cuda:LOCAL_RANK when CUDA is there, else the CPU."""
    world = World(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("LOCAL_RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
    )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(chosen)
    if world.distributed and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if chosen.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT
        )
    return world, chosen


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum over ranks (in place), e.g. of tables whose rows each rank
    filled for its own share."""
    if world.distributed:
        dist.all_reduce(tensor)
    return tensor


def weights_checksum(module: torch.nn.Module) -> float:
    """A float fingerprint of all parameters: equal on ranks whose weights are equal."""
    with torch.no_grad():
        return float(sum(p.double().sum() + p.double().abs().sum() for p in module.parameters()))


def all_gather_objects(world: World, value: object) -> list:
    """Every rank's `value`, in rank order (small Python objects only)."""
    if not world.distributed:
        return [value]
    out: list = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def any_rank(world: World, device: torch.device, *flags: bool) -> list[bool]:
    """Each flag, true on every rank when it is true on any rank (one small all-reduce):
    how the ranks agree to stop at the same step."""
    if not world.distributed:
        return list(flags)
    values = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


class StopRequests:
    """SIGTERM and SIGINT (preemption, Ctrl-C) ask the loop to stop after the current
    step instead of killing it; `received` names the signal. The loop shares the request
    through `any_rank`, since a signal may reach the ranks at slightly different times."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, world: World, device: torch.device):
        self.world, self.device = world, device
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequests:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name


def _reason(failure) -> str:
    message = failure.message
    if isinstance(message, dict):  # torch's error-file record
        message = message.get("message", message)
    return f"(exit code {failure.exitcode}): {message}"


class RankFailed(MirkitError, RuntimeError):
    """A rank of a launched job failed; the launcher stopped the others."""


def launch(entrypoint, argument: object, nproc: int) -> object:
    """Run `entrypoint(argument)` on `nproc` local ranks; rank 0's return value.

    `entrypoint` should be wrapped in torch's `record` so that a failing rank's error
    message reaches RankFailed. A SIGTERM or SIGINT to this process is forwarded to the
    ranks, which save, stop and return as usual (torch's launcher would instead kill
    them after a grace period, since it waits for ranks that returned to be collected)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"mirkit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
        signals_to_handle="SIGHUP,SIGQUIT",
    )

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in multiprocessing.active_children():
            os.kill(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in StopRequests.SIGNALS}
    try:
        results = elastic_launch(config, entrypoint)(argument)
    except ChildFailedError as err:
        failures = sorted(err.failures.items(), key=lambda kv: kv[1].timestamp)
        raise RankFailed(
            "; ".join(f"rank {rank} of {nproc} failed {_reason(f)}" for rank, f in failures)
            + "; the launcher stopped the other ranks"
        ) from err
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return results[0]
