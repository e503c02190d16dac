"""Work kept off the main thread of a corpus run, so the model waits neither for the disk nor for the decoder.

* :class:`BackgroundWriter`: one writer thread behind a bounded queue (files and bytes).
  It turns a finished :class:`~.batching.FileJob` into its result and writes it through
  the run's writer (``.npy``/``.mat``/``.json``, the HDF5 store, a hook's writer), in the
  order files were handed over. Writes stay atomic (temporary name, then rename), and a
  file counts as done only once its outputs are complete under their final names: for the
  store, when the part holding it has been committed. A killed run therefore loses only
  the files still queued or in an open part, which a rerun redoes. A file that cannot be
  written is reported with its reason and the run goes on; after :data:`NO_SPACE_LIMIT`
  "no space left on device" errors the writer stops writing and the run stops.
* :class:`LoadStream`: decoded files, in corpus order, from a background thread that also
  runs the backend's whole-file preparation; the decoding itself runs in worker processes
  (``workers > 0``, :class:`~.loader.Prefetcher`) or in decoding threads of this process
  (``workers == 0``: libsndfile and soxr release the GIL).

``AUDIO_EMBEDDINGS_WRITE_DELAY_S`` (seconds, default 0) makes the writer sleep before each
file: a slow disk on demand, for tests and for measuring back-pressure. It is read when a
:class:`BackgroundWriter` is made, never at import.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .loader import Loaded, LoadTask, Prefetcher, load_item, retain_freed_memory  # noqa: F401 - re-exported

#: Environment variable: seconds the writer thread sleeps before each file (a slow disk, for tests).
WRITE_DELAY_ENV = "AUDIO_EMBEDDINGS_WRITE_DELAY_S"
#: "No space left on device" errors after which the writer stops and the run ends with status "failed".
NO_SPACE_LIMIT = 3


def no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk (``ENOSPC``/``EDQUOT``, or HDF5's message for it)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return "no space left on device" in str(exc).lower() or "disk quota exceeded" in str(exc).lower()


def job_nbytes(job: Any) -> int:
    """Bytes a finished job holds until it is written (its rows and per-row extras)."""
    rows = getattr(job, "rows", None)
    return int(getattr(rows, "nbytes", 0)) + sum(int(v.nbytes) for v in getattr(job, "extra_rows", {}).values())


@dataclass
class Written:
    """What became of one file handed to the writer.

    Attributes
    ----------
    job : FileJob
        The file (``key``, ``meta["path"]``, ``meta["audio_info"]``); its rows are freed.
    written : dict or None
        The writer's answer (output paths, ``mat_error``) plus ``shape``; None when it failed.
    error : str or None
        One-line reason when the file could not be written.
    no_space : bool
        The reason is a full disk.
    """

    job: Any
    written: dict[str, Any] | None = None
    error: str | None = None
    no_space: bool = False


class BackgroundWriter:
    """Write finished files in a thread, behind a queue of at most ``max_files`` files and ``max_bytes``.

    Parameters
    ----------
    writer : TreeWriter, StoreWriter or a hook's writer
        ``write(key, result, input_path=, audio_info=)``, ``is_complete(key)``, ``close()``;
        used from the writer thread only (``close`` too) once this object exists.
    backend : Backend
        Turns a job into its result (:meth:`FileJob.result`).
    max_files : int
        Most files queued (not counting the one being written).
    max_bytes : int
        Most bytes of rows queued; a single larger file is still accepted when the queue is empty.
    delay_s : float, optional
        Sleep before each file (default: ``$AUDIO_EMBEDDINGS_WRITE_DELAY_S`` or 0).
    threaded : bool
        False writes in :meth:`submit` itself, in the calling thread (one usable core: a thread
        would only add switching), with the same outcomes and completion rules.

    Attributes
    ----------
    write_s : float
        Seconds the writer thread spent producing and writing results.
    waited_s : float
        Seconds :meth:`submit` blocked on a full queue.
    full_count : int
        Submissions that found the queue full.
    stop_reason : str or None
        Set when the writer gave up (repeated full disk); the run should stop.
    """

    def __init__(self, writer: Any, backend: Any, *, max_files: int = 64, max_bytes: int = 512 * 2 ** 20,
                 delay_s: float | None = None, threaded: bool = True):
        self.writer = writer
        self.backend = backend
        self.max_files = max(1, int(max_files))
        self.max_bytes = max(1, int(max_bytes))
        if delay_s is None:
            text = os.environ.get(WRITE_DELAY_ENV, "").strip()
            delay_s = float(text) if text else 0.0
        self.delay_s = max(0.0, float(delay_s))
        self.write_s = 0.0
        self.waited_s = 0.0
        self.full_count = 0
        self.n_written = 0
        self.no_space_errors = 0
        self.stop_reason: str | None = None
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._bytes = 0
        self._busy = False
        self._closing = False
        self._abandon = False
        self._outcomes: list[Written] = []
        self._uncommitted: deque = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="corpus-writer", daemon=True) if threaded else None
        if self._thread is not None:
            self._thread.start()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Files queued or being written."""
        with self._cond:
            return len(self._queue) + int(self._busy)

    def _full(self, nbytes: int) -> bool:
        return bool(self._queue) and (len(self._queue) >= self.max_files or self._bytes + nbytes > self.max_bytes)

    def submit(self, job: Any) -> bool:
        """Queue a finished job (blocks while the queue is full). Returns whether the queue was full.

        After :meth:`abandon` or once the writer has given up, the job is dropped (not written,
        not counted).
        """
        if self._thread is None:  # inline: write now
            if self._abandon or self.stop_reason is not None or self._closed:
                return False
            if self.delay_s:
                time.sleep(self.delay_s)
            t0 = time.perf_counter()
            outcome = self._write(job)
            self.write_s += time.perf_counter() - t0
            with self._cond:
                self._settle(outcome)
            return False
        nbytes = job_nbytes(job)
        with self._cond:
            full = self._full(nbytes)
            if full:
                self.full_count += 1
                t0 = time.perf_counter()
                while self._full(nbytes) and not self._abandon and self.stop_reason is None and self._alive():
                    self._cond.wait(0.1)
                self.waited_s += time.perf_counter() - t0
            if self._abandon or self.stop_reason is not None or not self._alive():
                return full
            self._queue.append((job, nbytes))
            self._bytes += nbytes
            self._cond.notify_all()
        return full

    def drain(self) -> list[Written]:
        """Files finished (written and complete, or failed) since the last call, in the order they finished."""
        with self._cond:
            out, self._outcomes = self._outcomes, []
        return out

    def abandon(self) -> None:
        """Drop the queued files (the one being written still completes); safe from a signal handler."""
        self._abandon = True

    def close(self, *, abandon: bool = False) -> None:
        """Write what is queued (unless ``abandon``), close the writer, wait for the thread."""
        with self._cond:
            self._closing = True
            if abandon:
                self._abandon = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        elif not self._closed:
            self._close_writer()
        self._closed = True

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait(0.5)
                    if self._abandon:
                        self._bytes -= sum(n for _, n in self._queue)
                        self._queue.clear()
                        self._cond.notify_all()
                    if not self._queue:
                        break
                    job, nbytes = self._queue.popleft()
                    self._busy = True
                outcome = None
                try:
                    if self.stop_reason is None:
                        if self.delay_s:
                            time.sleep(self.delay_s)
                        t0 = time.perf_counter()
                        outcome = self._write(job)
                        self.write_s += time.perf_counter() - t0
                finally:
                    with self._cond:
                        self._busy = False
                        self._bytes -= nbytes
                        if outcome is not None:
                            self._settle(outcome)
                        self._cond.notify_all()
        finally:
            self._close_writer()

    def _write(self, job: Any) -> Written:
        path, info = job.meta["path"], job.meta["audio_info"]
        try:
            result = job.result(self.backend)
            written = {"shape": result.embeddings.shape,
                       **self.writer.write(job.key, result, input_path=path, audio_info=info)}
        except Exception as exc:  # noqa: BLE001 - a file that cannot be written is reported, the run goes on
            if no_space(exc):
                self.no_space_errors += 1
                target = getattr(exc, "filename", None) or self._target(job.key)
                if self.no_space_errors >= NO_SPACE_LIMIT:
                    self.stop_reason = (f"no space left on device: stopped after {self.no_space_errors} failed "
                                        f"writes (last: {target})")
                return Written(job, error=f"could not write outputs: no space left on device: {target}",
                               no_space=True)
            return Written(job, error=f"could not write outputs: {type(exc).__name__}: {' '.join(str(exc).split())}")
        finally:
            job.rows, job.extra_rows = None, {}  # written or not, the rows are not needed any more
        self.n_written += 1
        return Written(job, written)

    def _target(self, key: str) -> str:
        """Where a key's outputs go, for an error message."""
        store = getattr(self.writer, "store_path", None)
        if store is not None:
            return str(store)
        base = getattr(self.writer, "base", None)
        return str(base(key)) if callable(base) else str(Path(key))

    def _settle(self, outcome: Written) -> None:
        """Report a write once its outputs are complete (called with the lock held)."""
        if outcome.error is not None:
            self._outcomes.append(outcome)
            return
        self._uncommitted.append(outcome)
        while self._uncommitted and self._complete(self._uncommitted[0].job.key):
            self._outcomes.append(self._uncommitted.popleft())

    def _complete(self, key: str) -> bool:
        try:
            return bool(self.writer.is_complete(key))
        except Exception:  # noqa: BLE001 - unknown until the writer is closed
            return False

    def _close_writer(self) -> None:
        error = None
        try:
            self.writer.close()
        except Exception as exc:  # noqa: BLE001 - e.g. the store's last part could not be committed
            error = exc
        with self._cond:
            for outcome in self._uncommitted:  # closed: complete, unless closing failed
                if error is not None:
                    reason = (f"could not write outputs: no space left on device: {self._target(outcome.job.key)}"
                              if no_space(error) else
                              f"could not write outputs: {type(error).__name__}: {' '.join(str(error).split())}")
                    outcome = Written(outcome.job, error=reason, no_space=no_space(error))
                self._outcomes.append(outcome)
            self._uncommitted.clear()
            self._cond.notify_all()


# -------------------------------------------------------------------- loading


def _thread_loads(tasks: Iterable[LoadTask], *, threads: int, ahead: int) -> Iterator[Loaded]:
    """:func:`load_item` over ``tasks`` in ``threads`` threads of this process, in task order."""
    if threads <= 1:
        for task in tasks:
            yield load_item(task)
        return
    pending: deque = deque()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="corpus-decode")
    try:
        for task in tasks:
            pending.append(pool.submit(load_item, task))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)
        for fut in pending:
            if fut.done() and not fut.cancelled() and fut.result().raw_path:
                Path(fut.result().raw_path).unlink(missing_ok=True)


class LoadStream:
    """Files decoded and prepared in a background thread, handed out in task order.

    Parameters
    ----------
    tasks : iterable of LoadTask
    workers : int
        Decoding processes (:class:`~.loader.Prefetcher`); 0 decodes in this process.
    threads : int
        With ``workers == 0``: decoding threads (1: the stream's own thread).
    ahead : int
        Most prepared files waiting to be taken (bounds memory).
    make : callable
        ``make(loaded) -> item``, run in the stream's thread (the backend's preparation);
        items are what :meth:`get` returns.
    release : callable, optional
        ``release(item)`` for items never taken (frees audio, deletes scratch files).
    file_timeout_s : float, optional
        With ``workers > 0``: the :class:`~.loader.Prefetcher`'s limit per file (None: none).
    threaded : bool
        False loads and prepares in :meth:`get` itself, in the calling thread (one usable core).
    """

    END = object()

    def __init__(self, tasks: Iterable[LoadTask], *, workers: int, threads: int, ahead: int,
                 make: Callable[[Loaded], Any], release: Callable[[Any], None] | None = None,
                 file_timeout_s: float | None = None, threaded: bool = True):
        self._tasks = tasks
        self.file_timeout_s = file_timeout_s
        self.workers = max(0, int(workers))
        self.threads = max(1, int(threads))
        self._make = make
        self._release = release or (lambda item: None)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(ahead)))
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._inline: Iterator[Loaded] | None = None if threaded else self._source()
        self._thread = threading.Thread(target=self._run, name="corpus-loader", daemon=True) if threaded else None
        if self._thread is not None:
            self._thread.start()

    def _source(self) -> Iterator[Loaded]:
        if self.workers > 0:
            return iter(Prefetcher(self._tasks, workers=self.workers, ahead=max(3 * self.workers, 3),
                                   file_timeout_s=self.file_timeout_s))
        return _thread_loads(self._tasks, threads=self.threads, ahead=2 * self.threads)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            source = self._source()
            try:
                for loaded in source:
                    if self._stop.is_set():
                        if loaded.raw_path:
                            Path(loaded.raw_path).unlink(missing_ok=True)
                        break
                    item = self._make(loaded)
                    if not self._put(item):
                        self._release(item)
                        break
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()  # stops the decoding processes/threads; removes unconsumed scratch files
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            self.error = exc
        finally:
            self._put(self.END)

    def get(self, *, should_stop: Callable[[], bool] = lambda: False) -> Any:
        """The next item, :data:`END` after the last one, or None when ``should_stop()`` turned true while waiting.

        Raises
        ------
        BaseException
            Whatever stopped the stream's thread (not a bad file: those are items).
        """
        if self._thread is None:
            if self._stop.is_set():
                return self.END
            loaded = next(self._inline, None)
            return self.END if loaded is None else self._make(loaded)
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if should_stop():
                    return None
                continue
            if item is self.END and self.error is not None:
                raise self.error
            return item

    def close(self) -> None:
        """Stop decoding, release what was prepared but not taken, and wait for the thread."""
        self._stop.set()
        if self._thread is None:
            close = getattr(self._inline, "close", None)
            if close is not None:
                close()
            return
        while self._thread.is_alive() or not self._queue.empty():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is not self.END and item is not None:
                self._release(item)
        self._thread.join()
