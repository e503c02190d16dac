"""The corpus loop: skip what is done, decode ahead, batch across files, write in the background, report.

Every file is either written (atomically, so a killed run never leaves a partial output
under a final name), or counted as failed with a one-line reason; the run goes on.

Threads and processes of a run (the main thread only batches and calls the model):

* decoding, mono mixing and resampling run in worker processes (``workers > 0``) or in
  decoding threads of this process (``workers == 0``), and the backend's whole-file
  preparation in a loader thread (:class:`~.background.LoadStream`);
* outputs are written by one writer thread behind a bounded queue
  (:class:`~.background.BackgroundWriter`); a file counts as done when its outputs are
  complete under their final names;
* on a GPU a monitor thread samples ``nvidia-smi`` (:class:`~.progress.GpuMonitor`).

SIGINT and SIGTERM stop the run cleanly: no new file is started, files part-way through
the model are dropped, files already computed are written (a second signal drops those
too), and the report gets ``status = "interrupted"`` (exit 130 / 143 by convention). A full
disk fails the file being written with "no space left on device: <path>"; after three such
files the run stops with ``status = "failed"``.

``report.extra["engine_timing"]`` says where the main thread's time went, per file:
waiting for decoded audio, batching (cutting inputs, storing outputs), the model, handing
files to the writer (including waits on a full queue) and reporting.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from ..atomic import TEMPORARY_NAME, write_text_atomic
from ..device import compile_backend
from .background import BackgroundWriter, LoadStream, Written
from .batching import BatchScheduler, DEFAULT_CHUNK_S, DEFAULT_CONTEXT_S, FileJob, prepare_job, streamed_job
from .discover import CorpusItem
from .loader import DEFAULT_FILE_TIMEOUT_S, item_task_fields, Loaded, LoadTask, retain_freed_memory
from .lock import LOCK_PREFIX, LOCK_SUFFIX, SCRATCH
from .progress import GpuMonitor, Progress
from .report import RunReport
from .threads import usable_cores as cores_and_source

#: Recordings longer than this are streamed block by block from a scratch file (streamable models).
STREAM_ABOVE_S = 600.0
RUN_CONFIG = ".audio_embeddings_run.json"
#: Default cap on audio per model call (seconds): 8 x 5 s files fit; 24 s context chunks go 2 at a time.
MAX_BATCH_S = 60.0
#: Exit statuses by convention for a run stopped by a signal (128 + signal number).
EXIT_SIGINT = 128 + int(signal.SIGINT)
EXIT_SIGTERM = 128 + int(signal.SIGTERM)


@dataclass(frozen=True)
class RunOptions:
    """How a corpus run cuts, batches, loads and writes.

    Attributes
    ----------
    chunk_s, context_s : float
        Sequence models: longest model input and context per side (see :func:`~audio_embeddings.pipeline.embed_audio`).
    batch_size : int
        Model inputs per call, drawn from as many files as needed.
    workers : int
        Decoding processes (0: decode in this process, in ``decode_threads`` threads).
    channel : int, optional
        Keep this channel instead of averaging.
    stream_above_s : float, optional
        Decode longer recordings block by block into a scratch file; streamable models (whole-file
        z-score or no preparation) then read it one chunk at a time.
    max_batch_seconds : float, optional
        Most audio per model call (long context chunks go in smaller batches); None: no cap.
    max_files_in_flight : int, optional
        Files held at once while batches fill (default ``max(2 * batch_size, 16)``).
    resume : bool
        Skip files whose outputs are complete (``--overwrite`` turns it off).
    decode_threads : int, optional
        With ``workers == 0``: decoding threads in this process (default: 2 when this process
        may use 2 or more cores, else 1). libsndfile and soxr release the GIL, so two threads use
        two cores.
    write_queue_files, write_queue_mib : int, float
        Most finished files (and MiB of their rows) waiting for the writer thread; the model
        waits only when the disk is slower than it for that long.
    compile : bool
        ``torch.compile`` the backend's modules first (``--compile``; see
        :func:`~audio_embeddings.device.compile_backend`).
    file_timeout_s : float, optional
        With ``workers > 0``: a file still decoding after this long fails and its worker is
        replaced (:class:`~.loader.Prefetcher`); None: no limit.
    background : bool, optional
        Decode/prepare and write in threads of their own (None: when this process may use two or
        more cores; on one core, threads only add switching, so the run is sequential as before).
    retain_memory : bool
        Let the process keep freed memory for reuse (glibc allocator thresholds, for the rest of
        the process: :func:`~.background.retain_freed_memory`), so per-file buffers do not fault
        in fresh pages, and freeze the objects that exist before the loop (``gc.freeze``: the
        collector does not rescan the model and the imported modules after every few hundred
        allocations); False leaves the allocator and the collector as they are.
    allow_truncated : bool
        ``--allow-truncated``: embed what a truncated WAV holds (recorded as ``audio_truncated``).
    hash_inputs_below_bytes : int
        The decoders hash the bytes of inputs smaller than this (sha256, in ``audio_info`` as
        ``input_sha256``, which the stamps then use instead of reading the file again; see
        :class:`~.stamps.Stamper`); 0: never.
    """

    chunk_s: float = DEFAULT_CHUNK_S
    context_s: float = DEFAULT_CONTEXT_S
    batch_size: int = 8
    workers: int = 0
    channel: int | None = None
    stream_above_s: float | None = STREAM_ABOVE_S
    max_batch_seconds: float | None = MAX_BATCH_S
    max_files_in_flight: int | None = None
    resume: bool = True
    decode_threads: int | None = None
    write_queue_files: int = 64
    write_queue_mib: float = 512.0
    compile: bool = False
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S
    background: bool | None = None
    retain_memory: bool = True
    hash_inputs_below_bytes: int = 0
    allow_truncated: bool = False


class ConfigMismatch(ValueError):
    """The output directory holds results made with other settings."""


def _own_lock(path: Path) -> bool:
    """``path`` is a run lock (:mod:`.lock`) that this process holds."""
    if not (path.name.startswith(LOCK_PREFIX) and path.name.endswith(LOCK_SUFFIX)):
        return False
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(holder, dict) and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


def holds_results(output_dir: str | Path, *, results: Sequence[str | Path] = ()) -> bool:
    """Whether ``output_dir`` holds anything that the settings in its run file describe.

    Everything in the folder counts (outputs, stamps, reports, sub-folders, files that are not
    ours), except the run file itself, the run locks this process holds, the scratch folder and
    the ``.<name>.*.tmp`` temporaries of killed writes. Run locks of other live runs (other
    shards) count: their run file is theirs. ``results`` are further paths that count when they
    exist (a store's ``.h5`` beside its ``.parts`` folder).
    """
    if any(Path(p).exists() for p in results):
        return True
    folder = Path(output_dir)
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return False
    except OSError:
        return True  # unreadable: assume it holds results
    return any(not (p.name in (RUN_CONFIG, SCRATCH) or TEMPORARY_NAME.match(p.name) or _own_lock(p))
               for p in entries)


def check_run_config(output_dir: str | Path, config: dict[str, Any], *, overwrite: bool,
                     results: Sequence[str | Path] = ()) -> None:
    """Refuse to resume into ``output_dir`` when its results came from a different model or settings.

    The settings that change the numbers are recorded in ``<output_dir>/.audio_embeddings_run.json``
    on the first run; ``overwrite`` replaces them. The recorded settings refuse other settings only
    while there is something they describe (:func:`holds_results`): the run file of a start that
    failed before anything was written (a read-only ``--hoplite-db``, a model that would not load,
    a run killed while loading) is replaced by the corrected command's settings.

    Parameters
    ----------
    output_dir : path-like
        The output folder (or a store's ``.parts`` folder); created if needed.
    config : dict
        The settings of this run (:func:`~audio_embeddings.app.run.fingerprint`).
    overwrite : bool
        ``--overwrite``: replace the recorded settings whatever the folder holds.
    results : sequence of path-like
        Further paths whose existence counts as results made with the recorded settings.

    Raises
    ------
    ConfigMismatch
        The folder holds results and the recorded settings differ from ``config``.
    """
    path = Path(output_dir) / RUN_CONFIG
    if path.is_file() and not overwrite:
        previous = json.loads(path.read_text())
        changed = {k: (previous.get(k), v) for k, v in config.items() if previous.get(k) != v}
        if changed and holds_results(output_dir, results=results):
            detail = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *ab) for k, ab in changed.items()))
            raise ConfigMismatch(f"{output_dir} holds results made with other settings ({detail}); "
                                 "use --overwrite to redo them or choose another --output-dir")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def _job(backend: Any, loaded: Loaded, options: RunOptions) -> FileJob:
    meta = {"path": loaded.path, "audio_info": loaded.audio_info}
    if loaded.raw_path and backend.input_norm is None:
        # Preparation needs the whole file (silence trimming): read the decoded mono float32 back.
        samples = np.fromfile(loaded.raw_path, dtype="<f4")
        Path(loaded.raw_path).unlink(missing_ok=True)
        return prepare_job(backend, loaded.key, samples, chunk_s=options.chunk_s, context_s=options.context_s,
                           meta=meta)
    if loaded.raw_path:
        return streamed_job(backend, loaded.key, loaded.raw_path, loaded.n_samples, mean=loaded.mean,
                            var=loaded.var, chunk_s=options.chunk_s, context_s=options.context_s, meta=meta)
    return prepare_job(backend, loaded.key, loaded.samples, chunk_s=options.chunk_s, context_s=options.context_s,
                       meta=meta)


def _prepared(backend: Any, loaded: Loaded, options: RunOptions) -> tuple:
    """A loader-thread item: ``("job", FileJob)`` or ``("failed", path, reason)``."""
    if loaded.error:
        return ("failed", loaded.path, loaded.error)
    try:
        return ("job", _job(backend, loaded, options))
    except ValueError as exc:
        if loaded.raw_path:
            Path(loaded.raw_path).unlink(missing_ok=True)
        return ("failed", loaded.path, str(exc))


def _release_item(item: Any) -> None:
    if isinstance(item, tuple) and item and item[0] == "job":
        item[1].release()


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, cgroup quota, ``SLURM_CPUS_PER_TASK``: :mod:`.threads`)."""
    return cores_and_source()[0]


def default_decode_threads() -> int:
    """Decoding threads of a ``workers == 0`` run: 2 with two or more usable cores, else 1."""
    return 2 if usable_cores() >= 2 else 1


class _Stop:
    """What a SIGINT/SIGTERM asked for: stop taking work (first signal), drop queued writes (second)."""

    def __init__(self):
        self.signum: int | None = None
        self.count = 0
        self.writer: BackgroundWriter | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self.count > 1 and self.writer is not None:
            self.writer.abandon()

    @property
    def requested(self) -> bool:
        return self.signum is not None


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``stop`` while the run lasts (main thread only; elsewhere nothing changes).

    Decoding processes ignore SIGINT themselves (a terminal's Ctrl-C reaches the whole process
    group); the parent stops them when it stops.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    try:
        for s in _STOP_SIGNALS:
            signal.signal(s, stop)
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


class StoppedBySignal(BaseException):
    """SIGINT/SIGTERM arrived outside the engine's loop (loading, merging, writing the summary):
    ``exit_status`` is 130/143 and ``str()`` one line saying what was stopped.

    A ``BaseException``, as ``KeyboardInterrupt``: a library's ``except Exception`` (an optional
    import, a fallback) must not swallow the stop and let the run go on."""

    def __init__(self, signum: int, during: str):
        self.signum = int(signum)
        self.exit_status = 128 + self.signum
        super().__init__(f"stopped by {signal.Signals(self.signum).name} while {during}; nothing was left "
                         "half-written: rerun the same command to finish")


@contextlib.contextmanager
def signals_raise(during: str) -> Iterator[None]:
    """While the body runs, SIGINT/SIGTERM raise :class:`StoppedBySignal` in the main thread (so
    ``finally`` blocks and atomic writers remove their temporaries) instead of killing the process
    silently; elsewhere nothing changes.

    Parameters
    ----------
    during : str
        What is being done, for the message (``"merging the store"``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise StoppedBySignal(signum, during)

    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    try:
        for s in _STOP_SIGNALS:
            signal.signal(s, handler)
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


class _Clock:
    """Seconds of the main thread by activity (cheap ``perf_counter`` accumulators)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.decode_wait = 0.0
        self.batching = 0.0
        self.write = 0.0
        self.report = 0.0

    def summary(self, scheduler: BatchScheduler, bg: BackgroundWriter, n_files: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        per = 1000.0 / max(n_files, 1)
        batching = self.batching + scheduler.batching_s
        parts = {"decode_wait": self.decode_wait, "batching": batching, "model": scheduler.model_s,
                 "write": self.write, "report": self.report}
        parts["other"] = max(0.0, wall - sum(parts.values()))
        return {
            "files": n_files,
            "wall_s": round(wall, 4),
            "main_thread_ms_per_file": {k: round(v * per, 4) for k, v in parts.items()},
            "main_thread_busy_non_model_ms_per_file": round((batching + self.write + self.report) * per, 4),
            "writer_thread_ms_per_file": round(bg.write_s * 1000.0 / max(bg.n_written, 1), 4),
            "write_queue_full": bg.full_count,
            "write_queue_wait_s": round(bg.waited_s, 4),
        }


def run_corpus(backend: Any, items: Sequence[CorpusItem], writer: Any, report: RunReport, *,
               options: RunOptions, scratch_dir: str | Path, progress: Progress | None = None) -> RunReport:
    """Embed ``items`` with ``backend`` and write each through ``writer`` (in a writer thread).

    Parameters
    ----------
    backend : Backend
    items : sequence of CorpusItem
        This process's share of the corpus.
    writer : TreeWriter or StoreWriter
        ``is_complete(key)``, ``write(key, result, input_path=, audio_info=)``, ``close()``;
        once the run starts it is used (and closed) by the writer thread only.
    report : RunReport
        Filled in (counts, failures, audio seconds, batches, ``engine_timing``).
    options : RunOptions
    scratch_dir : path-like
        Scratch files of streamed recordings; emptied at start and removed at the end.
    progress : Progress, optional

    Returns
    -------
    RunReport
        ``report``, filled in (not yet written). A run that did not finish has
        ``report.status`` (``"interrupted"`` or ``"failed"``, also in ``report.extra["status"]``),
        ``report.exit_status`` (130/143, or 1 for a full disk) and ``report.stop_reason`` (one line).
    """
    progress = progress or Progress(0, quiet=True)
    todo = [i for i in items if not (options.resume and writer.is_complete(i.key))]
    report.files_total, report.files_skipped = len(items), len(items) - len(todo)
    if report.files_skipped:
        progress.line(f"{report.files_skipped} of {len(items)} files already done; {len(todo)} to go")
    scratch = Path(scratch_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    if options.retain_memory:
        retain_freed_memory()
        gc.freeze()  # the model and the imported modules: never rescanned by the collector during the run
    if options.compile:
        compiled = compile_backend(backend)
        report.extra["compiled"] = compiled
        progress.line(f"torch.compile: {', '.join(compiled) or 'nothing to compile in this backend'}")
    rate = backend.sample_rate_hz
    stream_above = int(options.stream_above_s * rate) if options.stream_above_s else None
    tasks = (LoadTask(i.key, i.path, rate, options.channel, int(backend.min_samples), stream_above, str(scratch),
                      backend.resampler, options.hash_inputs_below_bytes, options.allow_truncated,
                      **item_task_fields(i)) for i in todo)  # a segment or a command: the loader cuts/runs it
    scheduler = BatchScheduler(backend, batch_size=options.batch_size, max_batch_seconds=options.max_batch_seconds)
    limit = options.max_files_in_flight or max(2 * scheduler.batch_size, 16)
    monitor = GpuMonitor(backend.device).start()
    threads = options.decode_threads or default_decode_threads()
    threaded = options.background if options.background is not None else usable_cores() >= 2
    clock = _Clock()
    stop = _Stop()
    n_finished = 0

    def fail(path: str, reason: str) -> None:
        reason = reason if reason.startswith(str(path)) else f"{path}: {reason}"
        report.failed(path, reason)
        progress.file_failed(reason)

    def settle(outcomes: list[Written]) -> None:
        nonlocal n_finished
        t0 = time.perf_counter()
        for out in outcomes:
            n_finished += 1
            path, info = out.job.meta["path"], out.job.meta["audio_info"]
            if out.error is not None:
                fail(path, out.error)
                continue
            written = out.written
            if written.get("mat_error"):
                progress.line(f"warning: {path}: .mat not written ({written['mat_error']})", always=True)
            report.done(info.get("duration_s", 0.0))
            shape = "x".join(str(n) for n in written.get("shape", ()))
            progress.file_done(info.get("duration_s", 0.0), f"{path}: {shape} -> {writer_target(written)}")
        clock.report += time.perf_counter() - t0

    def hand_over() -> None:
        """Finished files to the writer thread (failed ones straight to the report)."""
        nonlocal n_finished
        t0 = time.perf_counter()
        finished = scheduler.take_finished()
        for job in finished:
            job.release()  # the audio is not needed any more; the rows go to the writer
        t1 = time.perf_counter()
        clock.batching += t1 - t0
        for job in finished:
            if job.error:
                n_finished += 1
                fail(job.meta["path"], job.error)
            elif bg.submit(job) and bg.full_count == 1:
                progress.line(f"writer: queue full ({bg.max_files} files or {bg.max_bytes / 2 ** 20:.0f} MiB "
                              "waiting for the disk); the model waits for the writer")
        clock.write += time.perf_counter() - t1
        settle(bg.drain())

    def next_batch(flush: bool) -> list:
        t0 = time.perf_counter()
        batch = scheduler.next_batch(flush=flush)
        clock.batching += time.perf_counter() - t0
        return batch

    def step(batch: list) -> None:
        scheduler.run(batch)
        if progress.verbose:
            gpu = monitor.batch()
            if gpu:
                progress.line(f"batch {scheduler.n_batches}: {len(batch)} inputs; {gpu}")
        hand_over()

    def drive(*, final: bool) -> None:
        """Run the batches that are full (``final``: all of them), and the oldest files' when too many wait."""
        while not stopping() and (batch := next_batch(final)):
            step(batch)
        while not final and not stopping() and scheduler.n_jobs > limit and (batch := next_batch(True)):
            step(batch)
        hand_over()

    def stopping() -> bool:
        return stop.requested or bg.stop_reason is not None

    bg = BackgroundWriter(writer, backend, max_files=options.write_queue_files,
                          max_bytes=int(options.write_queue_mib * 2 ** 20), threaded=threaded)
    stop.writer = bg
    stream = None
    try:
        with _signals(stop):
            stream = LoadStream(tasks, workers=options.workers, threads=threads,
                                ahead=max(2 * options.workers, 2 * threads, 2), file_timeout_s=options.file_timeout_s,
                                threaded=threaded,
                                make=lambda loaded: _prepared(backend, loaded, options), release=_release_item)
            while not stopping():
                t0 = time.perf_counter()
                item = stream.get(should_stop=stopping)
                t1 = time.perf_counter()
                clock.decode_wait += t1 - t0
                if item is None or item is LoadStream.END:
                    break
                if item[0] == "failed":
                    n_finished += 1
                    fail(item[1], item[2])
                    clock.report += time.perf_counter() - t1
                    continue
                scheduler.add(item[1])
                clock.batching += time.perf_counter() - t1
                drive(final=False)
            drive(final=True)
            stream.close()
            scheduler.release_all()  # only after a stop: files part-way through the model
            t0 = time.perf_counter()
            bg.close(abandon=stop.count > 1)
            clock.write += time.perf_counter() - t0
            settle(bg.drain())
    finally:
        if stream is not None:
            stream.close()
        bg.close(abandon=True)  # after an error: whatever is being written completes; no-op when closed
        scheduler.release_all()
        monitor.stop()
        if options.retain_memory:
            gc.unfreeze()
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            scratch.parent.rmdir()  # <output_dir>/.scratch, when no other shard is using it
        except OSError:
            pass
    timing = clock.summary(scheduler, bg, n_finished)
    report.extra.update({"batches": scheduler.n_batches, "pieces": scheduler.n_pieces, **monitor.summary(),
                         "engine_timing": timing})
    if scheduler.n_oom_splits:
        report.extra["out_of_memory_splits"] = scheduler.n_oom_splits
    not_done = len(todo) - n_finished
    if stop.requested or bg.stop_reason is not None:
        report.extra["files_not_done"] = not_done
        if bg.stop_reason is not None:
            report.status, report.exit_status = "failed", 1
            report.stop_reason = f"{bg.stop_reason}; free some space and rerun the same command to resume"
        else:
            name = signal.Signals(stop.signum).name
            report.status, report.exit_status = "interrupted", 128 + int(stop.signum)
            report.stop_reason = (f"interrupted by {name}: {report.files_done} files done, {not_done} not done; "
                                  "rerun the same command to resume")
        report.extra["status"] = report.status
    return report


def writer_target(written: dict[str, Any]) -> str:
    """Where a file's outputs went, for a log line."""
    return str(written.get("npy") or written.get("json") or written.get("mat") or written.get("store") or "")
