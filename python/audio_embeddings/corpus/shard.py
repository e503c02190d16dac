"""Deterministic shards for torchrun ranks, job arrays of any batch system, and ``--shard I/N``.

Shard ``i`` of ``n`` takes every ``n``-th key of the sorted corpus starting at ``i``, so
the shards are disjoint, cover the corpus, and are the same on every node. Sources
compose: an array task that runs ``torchrun --nproc_per_node=G`` splits its array
shard ``G`` ways again.

Where the shard comes from, first match wins:

1. ``--shard I/N`` (0-based);
2. a job-array task, read from the batch system's environment (:data:`SCHEDULERS`, one
   :class:`ArrayScheduler` row per system):

   ========  =======================  ==============================================================
   system    task index               the array's range
   ========  =======================  ==============================================================
   Slurm     ``SLURM_ARRAY_TASK_ID``  ``SLURM_ARRAY_TASK_MIN``, ``..._COUNT`` (``..._STEP``)
   SGE/UGE   ``SGE_TASK_ID``          ``SGE_TASK_FIRST``, ``SGE_TASK_LAST``, ``SGE_TASK_STEPSIZE``
                                      (``undefined`` outside arrays)
   PBS Pro   ``PBS_ARRAY_INDEX``      not exported: set ``AUDIO_EMBEDDINGS_ARRAY``
   Torque    ``PBS_ARRAYID``          not exported: set ``AUDIO_EMBEDDINGS_ARRAY``
   LSF       ``LSB_JOBINDEX``         first index 1 (LSF's default), ``LSB_JOBINDEX_END``,
                                      ``LSB_JOBINDEX_STEP`` (``LSB_JOBINDEX=0`` outside arrays)
   ========  =======================  ==============================================================

   ``AUDIO_EMBEDDINGS_ARRAY=FIRST-LAST[:STEP]`` (the range as given to ``qsub -J``/``-t``,
   ``bsub -J "name[...]"``) gives the range where the system does not export it, and
   overrides the one it does (an LSF array that does not start at 1). Task ``FIRST + k*STEP``
   is shard ``k`` of ``(LAST - FIRST) // STEP + 1``. A task index off that grid (a list
   such as ``--array=1,5,9``) is refused with one line: use a range.
3. the whole corpus.

Under torchrun (``RANK``/``WORLD_SIZE``) or ``srun`` with several tasks the shard is split
again over the ranks. :func:`resolve_shard` records which sources made the shard in
:attr:`Shard.source` (``"sge"``, ``"slurm+torchrun"``, ``"--shard"``...); the run summary
carries it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")

#: The array's range where the batch system does not export it (PBS Pro, Torque), or to override it.
ARRAY_RANGE_VAR = "AUDIO_EMBEDDINGS_ARRAY"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``; ``source`` says what chose it (not part of equality)."""

    index: int = 0
    count: int = 1
    source: str = field(default="", compare=False)

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

    def split(self, index: int, count: int, *, source: str = "") -> "Shard":
        """Sub-shard ``index`` of ``count`` of this shard, as a shard of the whole."""
        joined = "+".join(s for s in (self.source, source) if s)
        return Shard(self.index * count + index, self.count * count, joined)


@dataclass(frozen=True)
class DistributedEnv:
    """torchrun's (or ``srun``'s) process coordinates."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str


@dataclass(frozen=True)
class ArrayScheduler:
    """How one batch system tells a job-array task its index and the array's range.

    Attributes
    ----------
    name : str
        The shard source recorded in the summary (``"sge"``).
    index : str
        The variable holding this task's index.
    first, last, count, step : str or None
        Variables holding the array's first and last index, its number of tasks and its step
        (None: not exported by this system).
    default_first : int or None
        The first index where ``first`` is not exported (LSF: 1); None: unknown.
    not_array : tuple of str
        Values of ``index`` that mean "not an array task" (SGE ``undefined``, LSF ``0``).
    submit : str
        How the array is submitted, for messages (``qsub -J 1-8``).
    title : str
        The system's name in messages (``"PBS Pro"``).
    """

    name: str
    index: str
    first: str | None = None
    last: str | None = None
    count: str | None = None
    step: str | None = None
    default_first: int | None = None
    not_array: tuple[str, ...] = ()
    submit: str = ""
    title: str = ""

    def task_index(self, environ: Mapping[str, str]) -> int | None:
        """This task's index, or None when ``environ`` holds no array task of this system."""
        value = environ.get(self.index, "").strip()
        if not value or value in self.not_array:
            return None
        return _int(self.index, value)

    def shard(self, environ: Mapping[str, str]) -> Shard | None:
        """This task as a shard of the array, or None outside an array of this system.

        Raises
        ------
        ValueError
            One line: the range is not known (set ``AUDIO_EMBEDDINGS_ARRAY`` or pass ``--shard``),
            or the task is not on the array's regular grid.
        """
        task = self.task_index(environ)
        if task is None:
            return None
        first, count, step = self._range(environ, task)
        offset = task - first
        if step < 1 or count < 1 or offset < 0 or offset % step or offset // step >= count:
            spec = f"{first}-{first + (count - 1) * step}" + (f":{step}" if step != 1 else "")
            raise ValueError(f"{self.index}={task} is not a task of the array {spec} ({count} task(s)): submit a "
                             f"plain range ({self.submit or 'FIRST-LAST'}), set {ARRAY_RANGE_VAR}=FIRST-LAST[:STEP] "
                             "to the range you submitted, or pass --shard I/N")
        return Shard(offset // step, count, self.name)

    def _range(self, environ: Mapping[str, str], task: int) -> tuple[int, int, int]:
        """(first index, number of tasks, step) of the array."""
        given = environ.get(ARRAY_RANGE_VAR, "").strip()
        if given:
            return parse_array_range(given)
        first = self._env_int(environ, self.first)
        first = self.default_first if first is None else first
        step = self._env_int(environ, self.step) or 1
        count = self._env_int(environ, self.count)
        last = self._env_int(environ, self.last)
        if count is None and last is not None and first is not None:
            count = (last - first) // step + 1
        if first is None or count is None:
            missing = [v for v, got in ((self.first, first), (self.count or self.last, count if last is None else 0))
                       if v and got is None]
            what = (f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not" if missing
                    else f"{self.title or self.name} does not export the array's range")
            raise ValueError(f"{self.index}={task} is set but {what}: set {ARRAY_RANGE_VAR}=FIRST-LAST[:STEP] to the "
                             f"range you submitted (e.g. {ARRAY_RANGE_VAR}=1-8 for {self.submit}), or pass --shard I/N")
        return first, count, step

    def _env_int(self, environ: Mapping[str, str], name: str | None) -> int | None:
        if name is None:
            return None
        value = environ.get(name, "").strip()
        if not value or value in self.not_array or value == "undefined":
            return None
        return _int(name, value)


#: The batch systems whose array tasks become shards, in the order they are looked for.
SCHEDULERS: tuple[ArrayScheduler, ...] = (
    ArrayScheduler("slurm", "SLURM_ARRAY_TASK_ID", first="SLURM_ARRAY_TASK_MIN", last="SLURM_ARRAY_TASK_MAX",
                   count="SLURM_ARRAY_TASK_COUNT", step="SLURM_ARRAY_TASK_STEP", default_first=0,
                   submit="sbatch --array=1-8", title="Slurm"),
    ArrayScheduler("sge", "SGE_TASK_ID", first="SGE_TASK_FIRST", last="SGE_TASK_LAST", step="SGE_TASK_STEPSIZE",
                   not_array=("undefined",), submit="qsub -t 1-8", title="SGE"),
    # PBS Pro and Torque export only the task's index: the range comes from AUDIO_EMBEDDINGS_ARRAY
    ArrayScheduler("pbs", "PBS_ARRAY_INDEX", submit="qsub -J 1-8", title="PBS Pro"),
    ArrayScheduler("torque", "PBS_ARRAYID", submit="qsub -t 1-8", title="Torque"),
    ArrayScheduler("lsf", "LSB_JOBINDEX", last="LSB_JOBINDEX_END", step="LSB_JOBINDEX_STEP", default_first=1,
                   not_array=("0",), submit='bsub -J "name[1-8]"', title="LSF"),
)


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number") from None


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> :class:`Shard` (0-based ``I``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"--shard must look like I/N (0-based I, e.g. 0/4), got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)), "--shard")


def parse_array_range(text: str) -> tuple[int, int, int]:
    """``"FIRST-LAST[:STEP]"`` (as given to ``qsub -J``/``-t``) -> (first, number of tasks, step)."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*(?::\s*(\d+)\s*)?", text)
    if not match:
        raise ValueError(f"{ARRAY_RANGE_VAR} must be the array's range FIRST-LAST[:STEP] as submitted "
                         f"(e.g. 1-8 or 0-15:2), got {text!r}")
    first, last, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
    if last < first or step < 1:
        raise ValueError(f"{ARRAY_RANGE_VAR}={text!r}: need FIRST <= LAST and STEP >= 1")
    return first, (last - first) // step + 1, step


def array_shard(environ: Mapping[str, str]) -> Shard | None:
    """The job-array task of whichever batch system set ``environ`` (:data:`SCHEDULERS`), or None."""
    for scheduler in SCHEDULERS:
        shard = scheduler.shard(environ)
        if shard is not None:
            return shard
    return None


def slurm_array_shard(environ: Mapping[str, str]) -> Shard | None:
    """The Slurm job-array task as a shard (kept for callers; :func:`array_shard` reads every system)."""
    return SCHEDULERS[0].shard(environ)


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
    """This process's shard: ``--shard`` (else an array task of any batch system), split again over
    torchrun/srun ranks; :attr:`Shard.source` names the sources (e.g. ``"sge+torchrun"``).

    Raises
    ------
    ValueError
        One line: a bad ``--shard``, or an array task whose range is unknown or inconsistent.
    """
    env = os.environ if environ is None else environ
    shard = parse_shard(arg) if arg else (array_shard(env) or Shard())
    dist = distributed_env(env)
    return shard.split(dist.rank, dist.world_size, source=dist.launcher) if dist else shard


__all__ = ["ARRAY_RANGE_VAR", "ArrayScheduler", "DistributedEnv", "SCHEDULERS", "Shard", "array_shard",
           "distributed_env", "parse_array_range", "parse_shard", "resolve_shard", "slurm_array_shard"]
