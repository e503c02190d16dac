"""The corpus loop: skip what is done, decode ahead in workers, batch across files, write, report.

Every file is either written (atomically, so a killed run never leaves a partial output
under a final name), or counted as failed with a one-line reason; the run goes on.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ..outputs.atomic import write_text_atomic
from ..pipeline import DEFAULT_CHUNK_S, DEFAULT_CONTEXT_S
from .batching import BatchScheduler, FileJob, prepare_job, streamed_job
from .discover import CorpusItem
from .loader import Loaded, LoadTask, Prefetcher
from .progress import GpuMonitor, Progress
from .report import RunReport

#: Recordings longer than this are streamed block by block from a scratch file (streamable models).
STREAM_ABOVE_S = 600.0
RUN_CONFIG = ".audio_embeddings_run.json"
#: Default cap on audio per model call (seconds): 8 x 5 s files fit; 24 s context chunks go 2 at a time.
MAX_BATCH_S = 60.0


@dataclass(frozen=True)
class RunOptions:
    """How a corpus run cuts, batches and loads.

    Attributes
    ----------
    chunk_s, context_s : float
        Sequence models: longest model input and context per side (see :func:`~audio_embeddings.pipeline.embed_audio`).
    batch_size : int
        Model inputs per call, drawn from as many files as needed.
    workers : int
        Decoding processes (0: decode in this process).
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


class ConfigMismatch(ValueError):
    """The output directory holds results made with other settings."""


def check_run_config(output_dir: str | Path, config: dict[str, Any], *, overwrite: bool) -> None:
    """Refuse to resume into ``output_dir`` when its results came from a different model or settings.

    The settings that change the numbers are recorded in ``<output_dir>/.audio_embeddings_run.json``
    on the first run; ``overwrite`` replaces them.
    """
    path = Path(output_dir) / RUN_CONFIG
    if path.is_file() and not overwrite:
        previous = json.loads(path.read_text())
        changed = {k: (previous.get(k), v) for k, v in config.items() if previous.get(k) != v}
        if changed:
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


def run_corpus(backend: Any, items: Sequence[CorpusItem], writer: Any, report: RunReport, *,
               options: RunOptions, scratch_dir: str | Path, progress: Progress | None = None) -> RunReport:
    """Embed ``items`` with ``backend`` and write each through ``writer``.

    Parameters
    ----------
    backend : Backend
    items : sequence of CorpusItem
        This process's share of the corpus.
    writer : TreeWriter or StoreWriter
        ``is_complete(key)``, ``write(key, result, input_path=, audio_info=)``, ``close()``.
    report : RunReport
        Filled in (counts, failures, audio seconds, batches).
    options : RunOptions
    scratch_dir : path-like
        Scratch files of streamed recordings; emptied at start and removed at the end.
    progress : Progress, optional

    Returns
    -------
    RunReport
        ``report``, filled in (not yet written).
    """
    progress = progress or Progress(0, quiet=True)
    todo = [i for i in items if not (options.resume and writer.is_complete(i.key))]
    report.files_total, report.files_skipped = len(items), len(items) - len(todo)
    if report.files_skipped:
        progress.line(f"{report.files_skipped} of {len(items)} files already done; {len(todo)} to go")
    scratch = Path(scratch_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    rate = backend.sample_rate_hz
    stream_above = int(options.stream_above_s * rate) if options.stream_above_s else None
    tasks = (LoadTask(i.key, i.path, rate, options.channel, int(backend.min_samples), stream_above, str(scratch))
             for i in todo)
    scheduler = BatchScheduler(backend, batch_size=options.batch_size, max_batch_seconds=options.max_batch_seconds)
    limit = options.max_files_in_flight or max(2 * scheduler.batch_size, 16)
    monitor = GpuMonitor(backend.device)
    prefetcher = Prefetcher(tasks, workers=options.workers, ahead=max(2 * options.workers, 2))

    def fail(path: str, reason: str) -> None:
        reason = reason if reason.startswith(str(path)) else f"{path}: {reason}"
        report.failed(path, reason)
        progress.file_failed(reason)

    def finish() -> None:
        for job in scheduler.take_finished():
            path, info = job.meta["path"], job.meta["audio_info"]
            try:
                if job.error:
                    fail(path, job.error)
                    continue
                result = job.result(backend)
                written = {"shape": result.embeddings.shape,
                           **writer.write(job.key, result, input_path=path, audio_info=info)}
            except Exception as exc:  # noqa: BLE001 - a file that cannot be written is reported, the run goes on
                fail(path, f"could not write outputs: {type(exc).__name__}: {exc}")
                continue
            finally:
                job.release()
            if written.get("mat_error"):
                progress.line(f"warning: {path}: .mat not written ({written['mat_error']})", always=True)
            report.done(info.get("duration_s", 0.0))
            shape = "x".join(str(n) for n in written.get("shape", ()))
            progress.file_done(info.get("duration_s", 0.0), f"{path}: {shape} -> {writer_target(written)}")

    def step(batch: list) -> None:
        scheduler.run(batch)
        gpu = monitor.batch()
        if gpu and progress.verbose:
            progress.line(f"batch {scheduler.n_batches}: {len(batch)} inputs; {gpu}")
        finish()

    try:
        for loaded in prefetcher:
            if loaded.error:
                fail(loaded.path, loaded.error)
                continue
            try:
                job = _job(backend, loaded, options)
            except ValueError as exc:
                if loaded.raw_path:
                    Path(loaded.raw_path).unlink(missing_ok=True)
                fail(loaded.path, str(exc))
                continue
            scheduler.add(job)
            while batch := scheduler.next_batch():
                step(batch)
            while scheduler.n_jobs > limit and (batch := scheduler.next_batch(flush=True)):
                step(batch)
        while batch := scheduler.next_batch(flush=True):
            step(batch)
        finish()
    finally:
        writer.close()
        scheduler.release_all()
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            scratch.parent.rmdir()  # <output_dir>/.scratch, when no other shard is using it
        except OSError:
            pass
    report.extra.update({"batches": scheduler.n_batches, "pieces": scheduler.n_pieces, **monitor.summary()})
    return report


def writer_target(written: dict[str, Any]) -> str:
    """Where a file's outputs went, for a log line."""
    return str(written.get("npy") or written.get("json") or written.get("mat") or written.get("store") or "")
