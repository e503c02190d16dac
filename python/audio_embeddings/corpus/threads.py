"""How many cores a run may use, and how it shares them between decoding and the model.

A corpus run has decoding processes (``--workers``) and a model with its own intra-op threads
(torch, LiteRT) and BLAS threads. Left to themselves the frameworks start one thread per core
*each*, so on a 2-core machine with one decoding process the model's threads and the decoder
fight over the cores (on a loaded machine OpenMP's spinning threads made a tiny model's run of 80
files 8-10x slower). :func:`plan_threads` shares the usable cores instead: the decoding
processes get one core each, the model the rest but one (at least one), so that decoding
processes plus model threads never exceed the cores this process may use, even when something
else takes a core; on small machines (2 cores) decoding runs in threads of the model's process,
which measured fastest there.

The usable cores (:func:`usable_cores`) are the smallest of the CPU affinity (``taskset``, a batch
scheduler's cpuset), the cgroup CPU quota (containers, Kubernetes; ``cpu.max`` or
``cpu.cfs_quota_us``) and Slurm's ``SLURM_CPUS_PER_TASK``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

#: Most decoding processes chosen by default (more rarely pays: the model is the bottleneck).
MAX_DEFAULT_WORKERS = 4
#: Up to this many usable cores a corpus is decoded in threads of the model's process, not in
#: processes: measured on 2 cores (``benchmarks/bench_threads.py``), a decoding process cost a
#: tiny model 30 % and, on a loaded machine, tripled its time while the model's threads spun.
SMALL_MACHINE_CORES = 2


@dataclass(frozen=True)
class ThreadPlan:
    """The cores of a run and how they are shared.

    Attributes
    ----------
    cores : int
        Cores this process may use.
    cores_from : str
        What bounded them: ``"affinity"``, ``"cgroup"`` or ``"SLURM_CPUS_PER_TASK"``.
    workers : int
        Decoding processes (0: decoding threads in this process).
    model_threads : int
        Intra-op threads of the model (torch, LiteRT) and BLAS threads of this process.
    chosen_by : str
        ``"default"``, or the options the user gave (``"--threads"``, ``"--workers"``, both).
    """

    cores: int
    cores_from: str
    workers: int
    model_threads: int
    chosen_by: str = "default"

    def describe(self) -> dict[str, Any]:
        """The plan as the summary records it."""
        return asdict(self)


def _cgroup_cores(root: Path) -> float | None:
    """The cgroup's CPU quota in cores (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``), or None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cores(environ: Mapping[str, str] | None = None, *,
                 cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> tuple[int, str]:
    """The cores this process may use, and what bounded them.

    Parameters
    ----------
    environ : mapping, optional
        The environment (default ``os.environ``): ``SLURM_CPUS_PER_TASK`` bounds the cores.
    cgroup_root : path-like
        Where the cgroup file system is mounted.

    Returns
    -------
    (int, str)
        At least 1, and ``"affinity"``, ``"cgroup"`` or ``"SLURM_CPUS_PER_TASK"``.
    """
    env = os.environ if environ is None else environ
    try:
        cores, source = max(1, len(os.sched_getaffinity(0))), "affinity"
    except (AttributeError, OSError):
        cores, source = max(1, os.cpu_count() or 1), "affinity"
    quota = _cgroup_cores(Path(cgroup_root))
    if quota is not None and math.ceil(quota) < cores:
        cores, source = max(1, math.ceil(quota)), "cgroup"
    slurm = str(env.get("SLURM_CPUS_PER_TASK", "")).strip()
    if slurm.isdigit() and 0 < int(slurm) < cores:
        cores, source = int(slurm), "SLURM_CPUS_PER_TASK"
    return cores, source


def plan_threads(*, cores: int, cores_from: str = "affinity", corpus: bool = True, workers: int | None = None,
                 threads: int | None = None) -> ThreadPlan:
    """Share ``cores`` between decoding processes and the model's threads.

    Parameters
    ----------
    cores : int
        Usable cores (:func:`usable_cores`).
    cores_from : str
        What bounded them (recorded in the plan).
    corpus : bool
        A folder or manifest (decoding processes pay off) rather than files named one by one.
    workers, threads : int, optional
        The user's ``--workers`` and ``--threads``; each is kept as given, the other fills the rest.

    Returns
    -------
    ThreadPlan
        By default, for a corpus on more than :data:`SMALL_MACHINE_CORES` cores, one decoding process
        per 4 cores (1 to 4), else none (files named one by one, small machines: decoding threads of
        the model's process); ``model_threads = max(1, cores - workers - 1)``: one core is left to
        the decoding threads, the writer and the rest of the machine. On 2 cores the model gets one
        thread: measured there, two threads were 25-35 % faster for BirdNET and GE2E on an idle
        machine but 15-50x slower as soon as other processes took a core (OpenMP's threads spin
        waiting for the one that is descheduled); ``--threads`` chooses otherwise.
    """
    cores = max(1, int(cores))
    chosen = [flag for flag, value in (("--workers", workers), ("--threads", threads)) if value is not None]
    if workers is None:
        if not corpus or cores <= SMALL_MACHINE_CORES:
            workers = 0
        elif threads is not None:
            workers = max(0, min(MAX_DEFAULT_WORKERS, cores - int(threads)))
        else:
            workers = min(MAX_DEFAULT_WORKERS, max(1, cores // 4))
    if threads is None:  # one core stays for the decoding threads, the writer and whatever else runs
        threads = max(1, cores - int(workers) - 1)
    return ThreadPlan(cores=cores, cores_from=cores_from, workers=int(workers), model_threads=int(threads),
                      chosen_by=" ".join(chosen) or "default")


def default_workers() -> int:
    """Decoding processes of a corpus run on this machine: :func:`plan_threads` for its usable cores."""
    cores, source = usable_cores()
    return plan_threads(cores=cores, cores_from=source, corpus=True).workers


@contextlib.contextmanager
def limit_model_threads(threads: int) -> Iterator[dict[str, Any]]:
    """Within the block, give the frameworks already imported in this process ``threads`` threads.

    torch (``torch.set_num_threads``) and the BLAS/OpenMP pools (threadpoolctl, when installed) are
    limited, and restored on leaving the block, so a run called from Python leaves the caller's
    settings as they were. A backend whose runtime fixes its threads when it is built (LiteRT) is
    given them by :meth:`~audio_embeddings.backends.base.BaseBackend.use_threads`.

    Yields
    ------
    dict
        What was limited: ``{"torch": n, "blas": n}`` (absent when that framework is not loaded).
    """
    threads = max(1, int(threads))
    done: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None and hasattr(torch, "set_num_threads") else None
    with contextlib.ExitStack() as stack:
        if before is not None:
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
            done["torch"] = torch.get_num_threads()
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=threads))
            done["blas"] = threads
        yield done


def run_plan(backend: Any, *, corpus: bool, workers: int | None = None, threads: int | None = None,
             environ: Mapping[str, str] | None = None) -> ThreadPlan:
    """Plan a run's threads on this process's share of the cores and give a backend that fixes its
    threads when built (LiteRT) its share; run the model inside :func:`limit_model_threads`.

    Under torchrun (``LOCAL_WORLD_SIZE`` processes on this node) each process plans on its share of
    the node's usable cores.

    Parameters
    ----------
    backend : BaseBackend
        The loaded model (:meth:`~audio_embeddings.backends.base.BaseBackend.use_threads`).
    corpus : bool
        A folder or manifest rather than files named one by one.
    workers, threads : int, optional
        ``--workers`` and ``--threads`` as given.
    environ : mapping, optional
        The environment (default ``os.environ``).

    Returns
    -------
    ThreadPlan
    """
    env = os.environ if environ is None else environ
    cores, source = usable_cores(env)
    local = str(env.get("LOCAL_WORLD_SIZE", "")).strip()
    if local.isdigit() and int(local) > 1:
        cores, source = max(1, cores // int(local)), f"{source} / LOCAL_WORLD_SIZE {local}"
    plan = plan_threads(cores=cores, cores_from=source, corpus=corpus, workers=workers, threads=threads)
    backend.use_threads(plan.model_threads)
    return plan
