"""Atomic file writes: write to a temporary sibling, then rename over the final name.

Also the checks a run makes on its output folder before and while it writes:
:func:`check_writable` (one line for a missing, read-only or foreign folder), :func:`ensure_free_space`
and :class:`NoSpaceError` (a full disk is said as "no space left on device", never as a short write),
and :func:`clean_stale_temporaries` (the ``.<name>.*.tmp`` files killed runs leave behind).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

#: Free space a writer leaves on the device (bytes) so that closing files and the run summary still fit.
RESERVE_BYTES = 4 * 2 ** 20
#: The temporary names :func:`atomic_path` makes: ``.<final name>.<8 random chars>.tmp[<suffix>]``.
TEMPORARY_NAME = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp(?:\.[A-Za-z0-9]{1,8})?$")
_SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class NoSpaceError(OSError):
    """The device (or quota) holding an output is full; ``str()`` is ``<path>: no space left on device``."""

    def __init__(self, path: str | os.PathLike, detail: str = ""):
        super().__init__(errno.ENOSPC, "no space left on device", str(path))
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.filename}: no space left on device" + (f" ({self.detail})" if self.detail else "")


class NotWritableError(OSError):
    """An output folder that cannot be created or written; ``str()`` is one line naming it and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str, err: int = errno.EACCES):
        super().__init__(err, reason, str(path))

    def __str__(self) -> str:
        return f"{self.filename}: cannot write outputs here ({self.strerror})"


def is_no_space(exc: BaseException) -> bool:
    """``exc`` says the disk is full: ENOSPC/EDQUOT, or a short write (numpy's "N requested and M written")."""
    if isinstance(exc, NoSpaceError):
        return True
    if isinstance(exc, OSError) and exc.errno in _SPACE_ERRNOS:
        return True
    text = str(exc).lower()
    return "requested and" in text and "written" in text or "no space left" in text


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    The temporary file lives in the same directory (so the rename is atomic on
    POSIX and Windows) and is removed if the body raises. A killed process
    leaves at most a ``.<name>.*.tmp`` file, never a partial file under the
    final name (:func:`clean_stale_temporaries` removes those).

    Parameters
    ----------
    path : path-like
        Final destination.
    suffix : str, optional
        Extra suffix for the temporary name (some writers insist on an
        extension, e.g. ``.npy``).

    Raises
    ------
    NoSpaceError
        The device filled up while writing (whatever the writer's own error said).
    """
    final = Path(path)
    try:
        tmp = _create_temporary(final, suffix)
    except FileNotFoundError:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(final, suffix)
    except OSError as exc:
        if is_no_space(exc):
            raise NoSpaceError(final) from None
        raise
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, Exception) and not isinstance(exc, NoSpaceError) and is_no_space(exc):
            raise NoSpaceError(final) from exc
        raise


def _create_temporary(final: Path, suffix: str) -> Path:
    """Create ``.<final name>.<8 random chars>.tmp<suffix>`` next to ``final``, empty, with the usual
    permissions (0666 less the umask, as ``open()`` gives), and return its path.

    Raises
    ------
    OSError
        FileNotFoundError when the folder does not exist; NoSpaceError-worthy errors as they come.
    """
    for _ in range(100):
        tmp = final.with_name(f".{final.name}.{os.urandom(4).hex()}.tmp{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(final.parent))


class StagedFiles:
    """Several new files written complete under temporary names, then renamed over their final names.

    The outputs of one input (``.npy``, ``.mat``, ``.json``, extras, the stamp) are replaced this way:
    every new file is whole before the first rename, each rename replaces one old file in one step
    (nothing is deleted first), and :meth:`commit` renames the files named ``last`` at the end (the
    ``.npy``, then the stamp sidecar that marks the outputs complete). A kill before the commit leaves
    the old files as they were plus ``.<name>.*.tmp`` temporaries (:func:`clean_stale_temporaries`);
    the body raising removes the temporaries. Use as a context manager::

        with StagedFiles() as staged:
            np.save(staged.path(npy_path, suffix=".npy"), array)
            staged.commit(last=[npy_path])
    """

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}  # final -> temporary, in staging order
        self._remove: list[Path] = []

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()
        if exc is not None and isinstance(exc, Exception) and not isinstance(exc, NoSpaceError) \
                and is_no_space(exc):
            raise NoSpaceError(next(iter(self._staged), "")) from exc

    def path(self, final: str | os.PathLike, *, suffix: str = "") -> Path:
        """A new empty temporary next to ``final`` (its folder created), to be renamed to ``final`` on commit."""
        final = Path(final)
        if final in self._staged:
            return self._staged[final]
        try:
            tmp = _create_temporary(final, suffix)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = _create_temporary(final, suffix)
        except OSError as exc:
            if is_no_space(exc):
                raise NoSpaceError(final) from None
            raise
        self._staged[final] = tmp
        return tmp

    def write_bytes(self, final: str | os.PathLike, data: bytes) -> Path:
        """Stage ``data`` for ``final``; returns ``final``."""
        self.path(final).write_bytes(data)
        return Path(final)

    def write_text(self, final: str | os.PathLike, text: str) -> Path:
        """Stage UTF-8 ``text`` for ``final``; returns ``final``."""
        return self.write_bytes(final, text.encode("utf-8"))

    def remove_on_commit(self, path: str | os.PathLike) -> None:
        """Remove ``path`` (an old output the new result no longer has) once the new files are in place."""
        self._remove.append(Path(path))

    def sizes(self) -> dict[Path, int]:
        """Final name -> size in bytes of each staged file."""
        return {final: tmp.stat().st_size for final, tmp in self._staged.items()}

    def commit(self, *, first: Iterable[str | os.PathLike] = (), last: Iterable[str | os.PathLike] = ()) -> None:
        """Remove ``first`` (the old stamp: the old outputs stop counting as complete), rename every
        staged file over its final name, those in ``last`` at the end in their order, then remove the
        files given to :meth:`remove_on_commit`."""
        for path in first:
            Path(path).unlink(missing_ok=True)
        last = [Path(p) for p in last]
        order = [f for f in self._staged if f not in last] + [f for f in last if f in self._staged]
        for final in order:
            os.replace(self._staged[final], final)
            del self._staged[final]
        for path in self._remove:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._remove = []

    def discard(self) -> None:
        """Remove every temporary not yet renamed."""
        for tmp in self._staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged = {}


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the final path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def free_bytes(directory: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still use on the device of ``directory`` (its nearest existing
    parent); None when the platform cannot tell."""
    d = Path(directory)
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        st = os.statvfs(d)
    except (OSError, AttributeError):
        return None
    return int(st.f_bavail) * int(st.f_frsize)


def ensure_free_space(directory: str | os.PathLike, nbytes: int, *, reserve: int = RESERVE_BYTES) -> None:
    """Raise :class:`NoSpaceError` unless ``nbytes`` (plus ``reserve``) fit on the device of ``directory``.

    Called before a write that would otherwise fail half-way (HDF5 does not survive a full disk).
    """
    free = free_bytes(directory)
    if free is not None and free < int(nbytes) + int(reserve):
        raise NoSpaceError(directory, f"{free} bytes free, about {int(nbytes) + int(reserve)} needed")


def check_writable(directory: str | os.PathLike, *, create: bool = True) -> Path:
    """Prove that outputs can be written in ``directory`` (a probe file is made and removed).

    Parameters
    ----------
    directory : path-like
    create : bool
        Create the folder (and its parents) when missing; otherwise check that its nearest existing
        parent lets it be created, and create nothing.

    Returns
    -------
    Path
        ``directory``.

    Raises
    ------
    NotWritableError
        One line naming the folder and the reason (``permission denied``, ``read-only file system``,
        ``it is a file, not a folder``, ``no space left on device``).
    """
    d = Path(directory)
    probe_in, missing = d, not d.exists()
    if missing and create:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotWritableError(d, "it is a file, not a folder", errno.ENOTDIR) from None
        except OSError as exc:
            raise NotWritableError(d, f"cannot create it: {_reason(exc)}", exc.errno or errno.EACCES) from None
    elif missing:
        probe_in = d.parent
        while not probe_in.exists() and probe_in != probe_in.parent:
            probe_in = probe_in.parent
        if not probe_in.is_dir():
            raise NotWritableError(d, f"cannot create it: {probe_in} is a file", errno.ENOTDIR)
    if not probe_in.is_dir():
        raise NotWritableError(d, "it is a file, not a folder", errno.ENOTDIR)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=probe_in)
    except OSError as exc:
        reason = _reason(exc)
        raise NotWritableError(d, f"cannot create it: {reason}" if missing else reason,
                               exc.errno or errno.EACCES) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return d


def clean_stale_temporaries(directory: str | os.PathLike, *, older_than_s: float = 0.0,
                            recursive: bool = True) -> list[Path]:
    """Remove the temporary files of killed runs (``.<name>.XXXXXXXX.tmp[.ext]``) under ``directory``.

    Parameters
    ----------
    directory : path-like
        An output folder (missing: nothing to do).
    older_than_s : float
        Only temporaries not modified for this long (a run writing into the same folder at the same
        time, another shard, keeps its own); 0 removes every one (the caller holds the folder alone).
    recursive : bool
        Also in sub-folders (symbolic links are not followed).

    Returns
    -------
    list of Path
        The files removed.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    cutoff = time.time() - float(older_than_s)
    removed: list[Path] = []
    walker = os.walk(root) if recursive else [(str(root), [], [e.name for e in os.scandir(root) if e.is_file()])]
    for dirpath, _, filenames in walker:
        for name in filenames:
            if not name.startswith(".") or not TEMPORARY_NAME.match(name):
                continue
            path = Path(dirpath) / name
            try:
                if older_than_s > 0 and path.lstat().st_mtime > cutoff:
                    continue
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed
