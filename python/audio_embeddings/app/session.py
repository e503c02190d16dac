"""The parts of a run that every front end shares, below :func:`~audio_embeddings.app.run.execute`.

The scripts, MATLAB (through them), the Python API and every perch-runner command call these,
so the guarantees they give hold whichever way a run is started:

- :func:`hold_run_lock`: one run per output folder (and shard) at a time;
- :func:`stamped_writer`: outputs record the input and the settings that made them; outputs
  that exist but were made from another input or with other settings are refused (or redone
  with ``overwrite``), never served;
- :func:`run_engine_session`: the thread plan, the engine, the summary and the exit status of a
  run stopped by a signal (130/143) or a full disk (1).

Each raises :class:`RunError` (one line for the user and an exit status) when the run cannot go on.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..corpus.engine import run_corpus, RunOptions
from ..corpus.lock import acquire_run_lock, clean_stale_scratch, run_scratch_dir, RunLocked
from ..corpus.stamps import settings_hash, Stamper
from ..corpus.threads import limit_model_threads
from ..corpus.writers import StampedWriter
from .config import RunConfig

EXIT_OK = 0
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2


class RunError(Exception):
    """A run that cannot go on: ``str(exc)`` is the user's one line, ``status`` the exit status."""

    def __init__(self, message: object, status: int = EXIT_USAGE):
        super().__init__(" ".join(str(message).split()))
        self.status = status


def hold_run_lock(held: contextlib.ExitStack, target: str | os.PathLike, *, shard_label: str | None) -> Any:
    """Take the run lock of ``target`` (an output folder, a store, a database) until ``held`` closes.

    Returns
    -------
    RunLock
        Its ``alone`` says whether no other shard of the run holds the folder.

    Raises
    ------
    RunError
        Another run holds it (the line names that run).
    """
    try:
        return held.enter_context(acquire_run_lock(target, shard_label=shard_label))
    except (RunLocked, OSError) as exc:
        raise RunError(exc) from None


def stamped_writer(writer: Any, items: Iterable[Any], *, settings: dict[str, Any], verify_inputs: bool = False,
                   overwrite: bool, refusal: Callable[[str, str, int], str] | None = None) -> Any:
    """``writer`` made to record and check the stamps of ``items`` (when it keeps stamps).

    Parameters
    ----------
    writer : engine writer
        A writer with ``supports_stamps`` (tree, store, speaker files, runner tables); others are
        returned as they are.
    items : iterable of CorpusItem
        The inputs this process writes (``key``, ``path``).
    settings : dict
        Everything that makes the outputs (its hash goes into every stamp).
    verify_inputs : bool
        Compare every input's contents (``--verify-inputs``).
    overwrite : bool
        Redo outputs that exist (no refusal).
    refusal : callable, optional
        ``(key, why, count) -> line`` for the refusal; default names the key and ``--overwrite``.

    Raises
    ------
    RunError
        Outputs exist that were made from another input or with other settings, and not ``overwrite``.
    """
    if not getattr(writer, "supports_stamps", False):
        return writer
    items = list(items)
    stamper = Stamper(settings_hash=settings_hash(settings), verify=bool(verify_inputs))
    stamped = StampedWriter(writer, items, stamper=stamper)
    if not overwrite and (stale := stamped.first_stale(i.key for i in items)):
        key, why, count = stale
        if refusal is not None:
            raise RunError(refusal(key, why, count))
        more = f" (and {count - 1} other file(s))" if count > 1 else ""
        raise RunError(f"the outputs of {key} {why}{more}; use --overwrite to redo them, or write elsewhere")
    return stamped


def input_hash_limit(writer: Any) -> int:
    """Inputs below this many bytes are hashed by the decoders as they read them (0: none).

    ``writer``: the run's writer, or a tee of writers (the stamped one among them decides).
    """
    for w in (writer, *getattr(writer, "writers", ())):
        if isinstance(w, StampedWriter):
            return w.stamper.decoder_hash_below
    return 0


def engine_options(config: RunConfig, *, workers: int, writer: Any = None) -> RunOptions:
    """The engine's options of a run (the one place a :class:`RunOptions` is made from settings).

    Parameters
    ----------
    config : RunConfig
        The run's settings (``chunk_seconds`` None: the engine's default chunk length).
    workers : int
        Decoding processes (the thread plan's).
    writer : engine writer, optional
        The run's writer: a stamped one has the decoders hash the inputs they read.

    Returns
    -------
    RunOptions
    """
    chunk = {} if config.chunk_seconds is None else {"chunk_s": config.chunk_seconds}
    return RunOptions(**chunk, context_s=config.context_seconds, batch_size=config.batch_size, workers=int(workers),
                      channel=config.channel, stream_above_s=config.long_file_seconds,
                      max_batch_seconds=config.max_batch_seconds, resume=not config.overwrite,
                      compile=bool(config.option("compile")), file_timeout_s=config.file_timeout,
                      hash_inputs_below_bytes=input_hash_limit(writer),
                      allow_truncated=bool(config.option("allow_truncated")))


def run_engine_session(backend: Any, items: Sequence[Any], writer: Any, report: Any, *, options: RunOptions,
                       model_threads: int | None, progress: Any, scratch_root: str | os.PathLike,
                       shard_label: str | None, write_summary: bool = True) -> Path | None:
    """Run the corpus engine over ``items`` with ``writer``, then write the run's summary.

    Parameters
    ----------
    backend : BaseBackend
    items : sequence of CorpusItem
    writer : engine writer
    report : RunReport
        Filled in by the engine.
    options : RunOptions
    model_threads : int or None
        The model's thread share (:func:`~audio_embeddings.corpus.threads.run_plan`).
    progress : Progress
        Closed when the engine ends, whatever happens.
    scratch_root : path-like
        Where this run's scratch folder goes (stale ones of killed runs are removed first).
    shard_label : str or None
    write_summary : bool
        Write ``summary.json``/``failures.csv`` (a one-file perch-runner run does not).

    Returns
    -------
    Path or None
        The summary written.

    Raises
    ------
    RunError
        The run was stopped (status 130/143 for SIGINT/SIGTERM, 1 for a full disk) or its summary
        could not be written.
    """
    clean_stale_scratch(Path(scratch_root))
    try:
        with limit_model_threads(model_threads):
            run_corpus(backend, list(items), writer, report, options=options,
                       scratch_dir=run_scratch_dir(Path(scratch_root), shard_label=shard_label), progress=progress)
    finally:
        progress.close()
    summary_path = None
    if write_summary:
        try:
            summary_path = report.write()
        except OSError as exc:
            raise RunError(exc, EXIT_INPUT_FAILED) from None
    if getattr(report, "exit_status", None):  # stopped: SIGINT/SIGTERM (130/143) or a full disk (1)
        where = f"; summary: {summary_path}" if summary_path else ""
        raise RunError(f"{report.stop_reason}{where}", report.exit_status)
    return summary_path
