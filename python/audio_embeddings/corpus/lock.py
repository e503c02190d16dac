"""One run per output at a time: a lock per output folder (or store) and shard, and scratch folders per run.

:func:`acquire_run_lock` holds ``<folder>/.audio_embeddings.<shard label>.lock`` for the whole run: an
``flock`` on it (released by the kernel when the process dies, however it dies) and, inside, who
holds it (host, pid, start time, shard, command line). A second run on the same folder and shard,
or with another shard count, is refused with a message naming the holder; shards of one sharded
run (same count, other index) run side by side. A lock whose holder is gone is taken over. Where the
file system has no ``flock`` (some network mounts), the holder's host and pid decide: a lock left on
this host by a pid that no longer runs is taken over, any other is respected.

:func:`run_scratch_dir` gives each run its own scratch folder (``<root>/.scratch/<label>.<host>.<pid>``)
and :func:`clean_stale_scratch` removes those of runs on this host that are gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

LOG = logging.getLogger(__name__)

LOCK_PREFIX = ".audio_embeddings."
LOCK_SUFFIX = ".lock"
SCRATCH = ".scratch"
_LABEL = re.compile(r"^shard-(\d+)-of-(\d+)$")


class RunLocked(Exception):
    """Another run holds the output; ``str()`` is one line naming it and its holder."""


@dataclass
class RunLock:
    """A held lock: its file, what it says about this run, and whether other shards are running."""

    path: Path
    holder: dict[str, Any]
    others: list[dict[str, Any]]

    @property
    def alone(self) -> bool:
        """No other run (shard) holds a lock on the same folder: every temporary file there is stale."""
        return not self.others


def _host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """A process with this id runs on this host (or exists and belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_gone(info: dict[str, Any]) -> bool:
    """The holder named in a lock file ran on this host and its process is gone."""
    try:
        return info.get("host") == _host() and not pid_alive(int(info.get("pid", 0)))
    except (TypeError, ValueError):
        return False


def lock_dir(path: str | os.PathLike) -> Path:
    """The folder whose lock guards ``path``: the folder itself, or ``FILE.h5.parts`` for a store ``FILE.h5``."""
    p = Path(path)
    if p.suffix.lower() in (".h5", ".hdf5") and not p.is_dir():
        return p.with_name(p.name + ".parts")
    return p


def lock_path(path: str | os.PathLike, *, shard_label: str) -> Path:
    """``<folder>/.audio_embeddings.<shard label>.lock``."""
    return lock_dir(path) / f"{LOCK_PREFIX}{shard_label}{LOCK_SUFFIX}"


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h, started <time>, shard-0000-of-0001`` (what is known)."""
    if not info:
        return "a run whose lock cannot be read yet"
    bits = [f"pid {info.get('pid', '?')} on {info.get('host', '?')}"]
    if info.get("started_at"):
        bits.append(f"started {info['started_at']}")
    if info.get("shard"):
        bits.append(str(info["shard"]))
    return ", ".join(bits)


def _count(label: str) -> int | None:
    m = _LABEL.match(str(label))
    return int(m.group(2)) if m else None


def _flock(fd: int) -> bool | None:
    """Try an exclusive lock: True held, False held by another process, None when the file system cannot lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            return None
        raise


def _refuse(folder: Path, info: dict[str, Any], path: Path, *, what: str = "") -> RunLocked:
    return RunLocked(f"{folder} is in use by another run{what} ({describe_holder(info)}); wait for it to end or "
                     f"write elsewhere (if that run is gone, delete {path})")


def _probe_other(path: Path) -> dict[str, Any] | None:
    """The holder of another shard's lock when it is alive; None when the lock is stale (then removed)."""
    info = _read(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError:
        return info or {"path": str(path)}
    try:
        state = _flock(fd)
        if state is False:
            return info or {"path": str(path)}
        if state is None and not _holder_gone(info):
            return info or {"path": str(path)}
        with contextlib.suppress(OSError):  # ours for a moment: its holder is gone
            os.unlink(path)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def acquire_run_lock(path: str | os.PathLike, *, shard_label: str, retries: int = 20) -> Iterator[RunLock]:
    """Hold the lock of an output folder (or store) for one shard while the body runs.

    Parameters
    ----------
    path : path-like
        The output folder, or a store ``FILE.h5`` (its ``FILE.h5.parts`` folder is locked). Created if needed.
    shard_label : str
        :attr:`~audio_embeddings.corpus.shard.Shard.label` of this process (``shard-0000-of-0001`` for a whole run).
    retries : int
        Times to retry (0.1 s apart) while the lock looks held by a run that is gone (another run is
        taking it over).

    Yields
    ------
    RunLock

    Raises
    ------
    RunLocked
        Another live run holds this shard's lock, or a run with another shard count holds one.
    """
    folder = lock_dir(path)
    folder.mkdir(parents=True, exist_ok=True)
    mine = lock_path(path, shard_label=shard_label)
    fd = -1
    previous: dict[str, Any] = {}
    for attempt in range(retries + 1):
        fd = os.open(mine, os.O_RDWR | os.O_CREAT, 0o644)
        state = _flock(fd)
        previous = _read(mine)
        if state is False or (state is None and previous and not _holder_gone(previous)
                              and previous.get("pid") != os.getpid()):
            os.close(fd)
            fd = -1
            if attempt < retries and (_holder_gone(previous) or not previous):
                time.sleep(0.1)
                continue
            raise _refuse(folder, previous, mine)
        try:
            same = os.fstat(fd).st_ino == os.stat(mine).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed (released) between open and lock: lock the new one
        fd = -1
    if fd < 0:
        raise _refuse(folder, previous, mine)
    from ..outputs.contract import now_iso

    holder = {"host": _host(), "pid": os.getpid(), "started_at": now_iso(), "shard": shard_label,
              "argv": list(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
    with contextlib.suppress(OSError):
        os.fsync(fd)
    if previous and previous.get("pid") != os.getpid():
        LOG.info(f"{folder}: took over the lock of a run that is gone ({describe_holder(previous)})")
    others = []
    try:
        for other in sorted(folder.glob(f"{LOCK_PREFIX}*{LOCK_SUFFIX}")):
            if other == mine:
                continue
            info = _probe_other(other)
            if info is None:
                continue
            label = other.name[len(LOCK_PREFIX):-len(LOCK_SUFFIX)]
            if _count(label) != _count(shard_label):
                raise _refuse(folder, info, other, what=f" with other shards ({label})")
            others.append(info)
        lock = RunLock(mine, holder, others)
    except BaseException:
        _release(fd, mine)
        raise
    try:
        yield lock
    finally:
        _release(fd, mine)


def _release(fd: int, path: Path) -> None:
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.close(fd)


def run_scratch_dir(root: str | os.PathLike, *, shard_label: str) -> Path:
    """This run's own scratch folder under ``root``: ``<root>/.scratch/<label>.<host>.<pid>`` (not created)."""
    return Path(root) / SCRATCH / f"{shard_label}.{_host()}.{os.getpid()}"


def clean_stale_scratch(root: str | os.PathLike) -> list[Path]:
    """Remove the scratch folders under ``<root>/.scratch`` of runs on this host whose process is gone."""
    parent = Path(root) / SCRATCH
    removed = []
    if not parent.is_dir():
        return removed
    host = _host()
    for entry in parent.iterdir():
        _, _, rest = entry.name.partition(".")
        owner_host, _, pid = rest.rpartition(".")
        if not pid.isdigit() or owner_host != host or pid_alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed
