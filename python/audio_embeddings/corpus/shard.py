"""Deterministic shards for torchrun ranks, Slurm job arrays and ``--shard I/N``.

Shard ``i`` of ``n`` takes every ``n``-th key of the sorted corpus starting at ``i``, so
the shards are disjoint, cover the corpus, and are the same on every node. Sources
compose: a Slurm array task that runs ``torchrun --nproc_per_node=G`` splits its array
shard ``G`` ways again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    @property
    def is_whole(self) -> bool:
        return self.count == 1

    @property
    def label(self) -> str:
        """``shard-0003-of-0008``: names the shard's own report and store files."""
        return f"shard-{self.index:04d}-of-{self.count:04d}"

    def select(self, items: Sequence[T]) -> list[T]:
        """This shard's share of ``items`` (every ``count``-th from ``index``)."""
        return list(items[self.index::self.count])

    def split(self, index: int, count: int) -> "Shard":
        """Sub-shard ``index`` of ``count`` of this shard, as a shard of the whole."""
        return Shard(self.index * count + index, self.count * count)


@dataclass(frozen=True)
class DistributedEnv:
    """torchrun's (or ``srun``'s) process coordinates."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> :class:`Shard` (0-based ``I``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"--shard must look like I/N (0-based I, e.g. 0/4), got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def slurm_array_shard(environ: Mapping[str, str]) -> Shard | None:
    """The job-array task as a shard (``SLURM_ARRAY_TASK_ID`` minus ``..._MIN`` of ``..._COUNT``)."""
    if "SLURM_ARRAY_TASK_ID" not in environ:
        return None
    if "SLURM_ARRAY_TASK_COUNT" not in environ:
        raise ValueError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard I/N")
    task = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
    return Shard(task, int(environ["SLURM_ARRAY_TASK_COUNT"]))


def distributed_env(environ: Mapping[str, str]) -> DistributedEnv | None:
    """torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or ``srun`` with several tasks; None otherwise."""
    if int(environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in environ:
        return DistributedEnv(int(environ["RANK"]), int(environ["WORLD_SIZE"]),
                              int(environ.get("LOCAL_RANK", "0")), "torchrun")
    if int(environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in environ:
        return DistributedEnv(int(environ["SLURM_PROCID"]), int(environ["SLURM_NTASKS"]),
                              int(environ.get("SLURM_LOCALID", "0")), "srun")
    return None


def resolve_shard(arg: str | None = None, environ: Mapping[str, str] | None = None) -> Shard:
    """This process's shard: ``--shard`` (else a Slurm array task), split again over torchrun ranks."""
    env = os.environ if environ is None else environ
    shard = parse_shard(arg) if arg else (slurm_array_shard(env) or Shard())
    dist = distributed_env(env)
    return shard.split(dist.rank, dist.world_size) if dist else shard
