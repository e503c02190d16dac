"""One run path for every script: discover, load, choose the writer, run the engine, merge, report.

:func:`run` calls the steps below in order; each is a small function of a :class:`Run`.
Script-specific behaviour (B1's seed spellings and synthetic tone, B3's corpus JSON, B4's
per-speaker files and ``--compare``) comes from :class:`RunHooks` objects that the script's
:class:`~audio_embeddings.cli.ScriptDefaults` lists; nothing here names a backend option:
the backend's own :class:`~audio_embeddings.backends.base.Option` declarations give the
loader's keyword arguments and the resume fingerprint.

A step that cannot go on raises :class:`RunError` (one line for the user and an exit status).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import audio
from ..align import settings_from as align_settings_from
from ..corpus.discover import CorpusError, discover
from ..corpus.engine import check_run_config, ConfigMismatch, RUN_CONFIG
from ..corpus.engine import signals_raise, StoppedBySignal
from ..corpus.lock import RunLocked
from ..corpus.progress import Progress
from ..corpus.report import all_shards_reported, merge_reports, RunReport, shard_summaries, STOPPED
from ..corpus.shard import distributed_env, resolve_shard
from ..corpus.stamps import file_sha256, read_run_config
from ..corpus.store import merge_store, parts_root, StoreWriter
from ..corpus.threads import default_workers, run_plan  # noqa: F401 - default_workers: re-exported
from ..corpus.writers import colliding_keys, renamed_keys, TreeWriter
from ..hub import install_hint
from ..options import declared_stage_options
from ..atomic import check_writable, clean_stale_temporaries
from ..outputs.contract import now_iso, package_versions, stamp_path
from ..outputs.hoplite import hoplite_parts, HopliteError, merge_hoplite, writer_for_backend
from ..outputs.tee import TeeWriter
from ..registry import load_backend, option_table, presets
from .config import RunConfig
from .session import EXIT_USAGE  # noqa: F401 - re-exported: the front ends' usage status
from .session import engine_options, EXIT_INPUT_FAILED, EXIT_OK, hold_run_lock, run_engine_session, RunError, \
    stamped_writer

LOG = logging.getLogger(__name__)


class RunHooks:
    """Script-specific additions to the shared run; every method is optional (defaults do nothing).

    A hook adds its own arguments, may replace the whole run (``--compare``), may choose the
    writer (B4's per-utterance files), and acts after the run or a ``--merge`` in the process
    that merged the shards (B3's corpus JSON, B4's per-speaker files).
    """

    def add_arguments(self, parser: argparse.ArgumentParser, defaults: Any) -> None:
        """Add this script's own arguments."""

    def instead(self, run: "Run") -> int | None:
        """An exit status to end the run before discovery (e.g. ``--compare``), or None to go on."""
        return None

    def inputs(self, run: "Run", inputs: list[str]) -> list[str]:
        """The input list, possibly extended (B1's ``--input``, or a synthetic tone)."""
        return inputs

    def formats(self, run: "Run", formats: tuple[str, ...]) -> tuple[str, ...]:
        """The per-file formats this script needs."""
        return formats

    def writer(self, run: "Run") -> Any | None:
        """A writer replacing the per-file tree outputs, or None."""
        return None

    def after(self, run: "Run", *, merged: dict[str, Any] | None) -> None:
        """After the shards are merged in this process (``merged``: the merged summary on ``--merge``)."""


@dataclass
class Run:
    """The state of one run, filled in step by step."""
    config: RunConfig
    defaults: Any
    hooks: Sequence[RunHooks] = ()
    corpus: Any = None
    shard: Any = None
    items: list = field(default_factory=list)
    basename: str | None = None
    dist: Any = None
    backend: Any = None
    model_name: str = ""
    formats: tuple[str, ...] = ()
    writer: Any = None
    report: Any = None
    summary_path: Path | None = None
    merged_here: bool = False
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # the output locks, until the run ends
    status: int | None = None

    @property
    def argv(self) -> list[str] | None:
        return self.config.argv

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    def say(self, message: str) -> None:
        """A line on stderr unless ``--quiet`` (the ``audio_embeddings`` logger, level INFO)."""
        if not self.config.quiet:
            LOG.info(message)


def one_line(message: object) -> str:
    """``error: <message>`` on one line."""
    return "error: " + " ".join(str(message).split())


# --- options -------------------------------------------------------------------------------------


def backend_option_values(args: RunConfig) -> dict[str, Any]:
    """Every backend option given on the command line (``Option.dest`` -> value), whatever the backend."""
    return {o.dest: args.option(o.dest) for _, o in option_table() if args.option(o.dest) is not None}


def fingerprint(run: Run) -> dict[str, Any]:
    """The settings that make the outputs, keyed by flag: a rerun with any other value is refused.

    Everything that changes the numbers or what is written: the model and its weights (``--model
    weights``: :func:`~audio_embeddings.backends.base.weights_digest`, one SHA-256 over every weight
    file it read, so other weights copied into the same folder are noticed), the engine's cutting
    options, ``--formats``, and every declared option of the backend and of the shared stages that
    changes the numbers or this folder's outputs (not ``--hoplite-db``: the database is guarded by
    its own settings and stamps, so adding one to a finished folder redoes nothing there).
    """
    from ..backends.base import weights_digest

    args = run.config
    settings: dict[str, Any] = {
        "--model": run.model_name, "--model weights": weights_digest(run.backend),
        "--chunk-seconds": args.chunk_seconds, "--context-seconds": args.context_seconds,
        "--channel": args.channel, "--dtype": args.dtype, "--formats": sorted(run.formats),
        "--mat-version": args.mat_version if "mat" in run.formats else None,  # v5 and v7.3 files differ
    }
    for option in (*type(run.backend).options, *declared_stage_options()):
        if option.affects == "elsewhere":  # e.g. --hoplite-db: the database keeps its own settings and stamps
            continue
        value = args.option(option.dest)
        if value is None:  # not given: left out, so that options added in a later version leave it unchanged
            continue
        settings[option.flag] = list(value) if isinstance(value, tuple) else value
        if option.reads_file and Path(str(value)).is_file():  # its contents make the outputs: an edit is noticed
            settings[f"{option.flag} sha256"] = file_sha256(value)
    return settings


# --- steps ---------------------------------------------------------------------------------------


def discover_inputs(run: Run) -> None:
    """Find the corpus, this process's shard of it, and the output base name."""
    args = run.config
    try:  # before anything is loaded: a read-only or misspelt output folder is one line
        check_writable(args.output_dir, create=False)
    except OSError as exc:
        raise RunError(exc) from None
    inputs = list(args.inputs)
    for hook in run.hooks:
        inputs = hook.inputs(run, inputs)
    try:
        run.shard = resolve_shard(args.shard)
        run.corpus = discover(inputs, audio_dir=args.audio_dir, part=args.part, patterns=args.pattern,
                              max_files=args.max_files, exclude=[args.output_dir],
                              allow_pipes=bool(args.option("allow_pipes")))  # Kaldi wav.scp commands (B4's flag)
    except (CorpusError, ValueError, OSError) as exc:
        raise RunError(exc) from None
    corpus = run.corpus
    single = corpus.kind == "files" and len(corpus.items) == 1
    if args.basename and not single:
        raise RunError("--basename needs a single input file")
    if args.basename and (args.basename in (".", "..") or Path(args.basename).name != args.basename
                          or "\\" in args.basename or "\0" in args.basename):
        raise RunError(f"--basename {args.basename!r}: must be a plain file name (no folders) inside the output "
                       "folder; choose the folder with --output-dir")
    run.items = run.shard.select(corpus.items)
    run.basename = (args.basename or run.defaults.basename) if single else None
    if run.basename is None and (clashes := colliding_keys(i.key for i in run.items)):
        a, b = clashes[0]
        raise RunError(f"{a} and {b} would write the same outputs; select one with --pattern")
    if run.basename is None and not args.store:
        for key, base in renamed_keys(i.key for i in run.items):
            LOG.warning(f"warning: {key}: outputs named {base}.* (its own name is a run file's)")
    if corpus.kind == "files":
        try:
            audio.check_file(corpus.items[0].path)  # fail fast, before a model download
        except audio.AudioError as exc:
            raise RunError(exc, EXIT_INPUT_FAILED) from None
    run.dist = distributed_env(os.environ)


def device_for_rank(device: str, dist: Any) -> str:
    """Under torchrun, ``auto``/``cuda`` become this rank's ``cuda:LOCAL_RANK`` (when CUDA is there)."""
    if dist is None or device not in ("auto", "cuda"):
        return device
    import torch  # deferred: only a torchrun rank on CUDA needs the framework

    return f"cuda:{dist.local_rank}" if torch.cuda.is_available() else device


def load_model(args: RunConfig, defaults: Any, *, device: str) -> Any:
    """The backend of a run: ``--model`` (a preset, or a checkpoint of the script's fixed backend) with
    its declared options as given on the command line.

    Raises
    ------
    RunError
        The model cannot be resolved or loaded, or an option it does not take was given.
    """


    try:
        return load_backend(args.model, device=device, dtype=args.dtype, preset=defaults.backend,
                            **backend_option_values(args))
    except ImportError as exc:
        raise RunError(f"{args.model}: {install_hint(exc)}") from None
    except (ValueError, OSError, KeyError) as exc:
        text = " ".join(str(exc).split())
        raise RunError(text if text.startswith(str(args.model)) else f"{args.model}: {text}") from None


def model_name_of(args: RunConfig, backend: Any) -> str:
    """What outputs record as ``model_name``: the preset name where one was used, else the checkpoint given."""
    if args.model in presets():
        return args.model
    return str(backend.source or args.model)


def load_step(run: Run) -> None:
    if run.backend is None:  # the API hands its loaded model in
        run.backend = load_model(run.config, run.defaults, device=device_for_rank(run.config.device, run.dist))
    run.model_name = model_name_of(run.config, run.backend)
    if run.config.chunk_seconds is None:  # the script's default, or the whole fixed input of a model that has one
        fixed = run.backend.max_input_samples
        run.config.chunk_seconds = fixed / run.backend.sample_rate_hz if fixed else run.defaults.chunk_s


def choose_writer(run: Run) -> None:
    """The writer (store, a hook's, or per-file tree outputs; with ``--hoplite-db`` a database beside it)."""
    make_writer(run)
    db = run.config.option("hoplite_db")
    if db:
        # The database keeps the settings that make the vectors (not --formats or other outputs-only
        # options, so tree outputs elsewhere can share it) and a stamp per recording; one run at a time.
        args = run.config
        numbers = {"--model", "--model weights", "--chunk-seconds", "--context-seconds", "--channel", "--dtype"} | {
            o.flag for o in (*type(run.backend).options, *declared_stage_options()) if o.affects == "numbers"}
        db_settings = {k: v for k, v in fingerprint(run).items() if k in numbers}
        try:
            hold_run_lock(run.held, db, shard_label=run.shard.label)
        except RunError as exc:
            raise RunError(f"--hoplite-db {db}: {exc}") from None
        try:
            hoplite = writer_for_backend(db, run.backend, audio_root=run.corpus.root,
                                         shard_label=None if run.shard.is_whole else run.shard.label,
                                         overwrite=args.overwrite, settings=db_settings,
                                         provenance={"model": run.model_name, "backend": run.backend.describe()})
        except (HopliteError, ImportError, OSError) as exc:
            raise RunError(f"--hoplite-db {db}: {exc}") from None

        def refusal(key: str, why: str, n: int) -> str:
            more = f" (and {n - 1} other file(s))" if n > 1 else ""
            return f"--hoplite-db {db}: the windows of {key} {why}{more}; use --overwrite to redo them, or " \
                   "choose another --hoplite-db"

        try:
            hoplite = stamped_writer(hoplite, run.items, settings=db_settings,
                                     verify_inputs=bool(args.verify_inputs), overwrite=bool(args.overwrite),
                                     refusal=refusal)
        except RunError:
            hoplite.close()
            raise
        run.writer = TeeWriter(run.writer, hoplite)


def make_writer(run: Run) -> None:
    """Check the resume fingerprint, then make the writer (store, a hook's, or per-file tree outputs)."""
    args, backend = run.config, run.backend
    formats = args.formats or (tuple(run.defaults.formats.split(",")) if run.corpus.kind == "files" else ("npy",))
    for hook in run.hooks:
        formats = hook.formats(run, formats)
    run.formats = formats
    try:
        stages = {"align": align_settings_from(args.options)}
    except ValueError as exc:
        raise RunError(exc) from None
    if args.option("plot") and importlib.util.find_spec("matplotlib") is None:
        raise RunError("--plot needs matplotlib: pip install matplotlib (or pip install 'audio-embeddings[plot]')")
    if stages.get("align") is not None and backend.framing == "utterance":
        raise RunError(f"--tr/--target-rate-hz: {run.model_name} gives one row per recording; there is no time "
                       "series to align")
    run_info = {"model_name": run.model_name, "backend_info": backend.describe(),
                "backend_fields": backend.mat_fields(), "started_at": now_iso(), "mat_version": args.mat_version,
                "argv": run.argv}
    settings = fingerprint(run)
    try:
        check_writable(args.output_dir)
        if args.store:
            check_writable(Path(args.store).resolve().parent)
        if run.corpus.is_tree or args.store:  # one run per output (and shard) at a time
            locks = [hold_run_lock(run.held, target, shard_label=run.shard.label)
                     for target in (args.output_dir, *([args.store] if args.store else []))]
            clean_stale_temporaries(args.output_dir, older_than_s=0 if locks[0].alone else 3600)
        if args.store:
            read_run_config(parts_root(args.store) / RUN_CONFIG)  # a corrupt one is moved aside, not fatal
            check_run_config(parts_root(args.store), settings, overwrite=args.overwrite, results=(args.store,))
            run.writer = StoreWriter(args.store, shard=run.shard, overwrite=args.overwrite,
                                     run_info={"model_name": run.model_name, "sample_rate_hz": backend.sample_rate_hz,
                                               "frame_stride_s": backend.frame_stride_s,
                                               "window_s": backend.window_s}, **stages)
        else:
            if run.corpus.is_tree:
                read_run_config(Path(args.output_dir) / RUN_CONFIG)
                check_run_config(args.output_dir, settings, overwrite=args.overwrite)
            run.writer = next((w for hook in run.hooks if (w := hook.writer(run)) is not None), None) or \
                TreeWriter(args.output_dir, formats=formats, run_info=run_info, basename=run.basename,
                           top_k=backend.top_k, classes=backend.classes, corpus_keys=[i.key for i in run.corpus.items],
                           plot=bool(args.option("plot")), **stages)
    except (ConfigMismatch, RunLocked, OSError) as exc:
        raise RunError(exc) from None
    def refusal(key: str, why: str, n: int) -> str:
        if run.corpus.kind == "files":
            return replaced_outputs_line(run, key, why, n)
        more = f" (and {n - 1} other file(s))" if n > 1 else ""
        return (f"{args.store or args.output_dir}: the outputs of {key} {why}{more}; use --overwrite to redo them, "
                "or write elsewhere")

    # outputs record what made them, in every kind of run
    run.writer = stamped_writer(run.writer, run.items, settings=settings, verify_inputs=bool(args.verify_inputs),
                                overwrite=bool(args.overwrite), refusal=refusal)


def outputs_of(run: Run, key: str) -> Path:
    """Where ``key``'s outputs go: their base path (``<dir>/<basename>``), or the output folder for writers
    that name files otherwise (B4's utterance files)."""
    base = getattr(run.writer, "base", None)
    return Path(base(key)) if callable(base) else run.output_dir


def outputs_label(run: Run, key: str) -> str:
    """``<dir>/<basename>.*`` for the user (the output folder for B4's utterance files)."""
    where = outputs_of(run, key)
    return str(where) if where == run.output_dir else f"{where}.*"


def replaced_outputs_line(run: Run, key: str, why: str, count: int) -> str:
    """The refusal of a run on files whose outputs exist and were made from another input or settings.

    Names the outputs, what made them (the input recorded in their sidecar), ``--overwrite`` and,
    for a single file, ``--basename`` (so both results can live side by side).
    """

    base = outputs_of(run, key)
    try:
        made_from = json.loads(stamp_path(base).read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        made_from = None
    if made_from and made_from != key:
        why = f"were made from another input ({made_from})"
    more = f" (and those of {count - 1} other file(s))" if count > 1 else ""
    keep = ", or another --basename to keep both" if run.basename else ", or write elsewhere"
    return f"{outputs_label(run, key)}: the outputs {why}{more}; not replaced: pass --overwrite to replace them{keep}"


def engine_step(run: Run) -> None:
    """Run the corpus engine over this process's items and write this shard's report."""


    args, backend, corpus = run.config, run.backend, run.corpus
    threads = run_plan(backend, corpus=corpus.is_tree, workers=args.workers, threads=args.threads)
    workers = threads.workers
    options = engine_options(args, workers=workers, writer=run.writer)
    single_file = corpus.kind == "files"
    run.report = RunReport(args.output_dir, shard=run.shard, context={
        "model": run.model_name, "backend": backend.describe(),
        "input": {"kind": corpus.kind, "root": str(corpus.root.resolve()), "files_in_corpus": len(corpus.items),
                  "audio_dir": args.audio_dir, "part": args.part, "patterns": args.pattern,
                  "max_files": args.max_files},
        "outputs": {"output_dir": str(run.output_dir.resolve()), "formats": list(run.formats),
                    "store": str(Path(args.store).resolve()) if args.store else None},
        "threads": threads.describe(),
        "options": {"batch_size": args.batch_size, "workers": workers, "chunk_seconds": args.chunk_seconds,
                    "context_seconds": args.context_seconds, "overwrite": args.overwrite,
                    "long_file_seconds": args.long_file_seconds, "max_batch_seconds": args.max_batch_seconds},
        "command_line": run.argv if run.argv is not None else sys.argv,
        "versions": package_versions(),
    })
    progress = Progress(len(run.items), quiet=args.quiet, verbose=args.verbose or single_file,
                        file_lines=sys.stdout if single_file else None,
                        desc=backend.name if run.shard.is_whole else f"{backend.name} {run.shard.label}")
    if single_file and options.resume:  # the per-file line of a file that is not run again
        for item in run.items:
            if run.writer.is_complete(item.key):
                run.say(f"{item.path}: already done with the same input and settings -> "
                        f"{outputs_label(run, item.key)} (--overwrite redoes it)")
    for failure in run.shard.select(list(corpus.failed)):  # folders that could not be searched: failures too
        run.report.failed(failure.path, failure.reason)
        progress.file_failed(failure.reason)
    whole_store = bool(args.store) and run.shard.is_whole  # its .h5 goes in place before the summary
    try:
        run.summary_path = run_engine_session(
            backend, run.items, run.writer, run.report, options=options, model_threads=threads.model_threads,
            progress=progress, scratch_root=args.scratch_dir or os.environ.get("TMPDIR") or run.output_dir,
            shard_label=run.shard.label, write_summary=not whole_store)
    except RunError:
        if whole_store:  # stopped: the summary says so (never "complete"); the store is merged by the rerun
            with contextlib.suppress(OSError):
                run.report.write()
        raise
    if whole_store:
        try:
            with signals_raise("merging the store"):
                merge_store(args.store, stale_after_s=0)
                run.summary_path = run.report.write()
        except StoppedBySignal as exc:
            raise RunError(exc, exc.exit_status) from None
        except OSError as exc:
            raise RunError(exc, EXIT_INPUT_FAILED) from None


def merge_outputs(output_dir: str | Path, store: str | None = None) -> dict[str, Any]:
    """Join shard summaries (and store parts) of ``output_dir`` into ``summary.json``/``failures.csv`` (and FILE.h5)."""
    merged = merge_reports(output_dir)
    if store:
        merged["store_index"] = merge_store(store)
    return merged


def merge_step(run: Run) -> None:
    """After this shard: the whole store's index, or (last shard, or torchrun rank 0) the merged summary.

    Who merges: a whole run needs no merge. Under torchrun every rank waits at a barrier (gloo)
    after its shard and rank 0 merges. Otherwise (job arrays of any batch system, ``--shard``,
    ``srun``) the process that finds every shard reported merges
    (:func:`~.corpus.report.all_shards_reported`; a stopped shard has not reported), so the last
    array task to finish does.

    torchrun stops every rank as soon as one exits non-zero, so no rank's exit status may come
    before the merge is written. Under torchrun the process group stays up after the merge:
    rank 0 merges, writes the hooks' final files (B4's per-speaker files) and then meets the
    other ranks at a second collective in :func:`report_step`; there the ranks other than 0
    exit 0 even when some of their files failed (their failures are in the merged summary), and
    rank 0 lists every rank's failed files, waits until the other ranks on its node have exited,
    and exits 1 when any file failed. torchrun thus sees a non-zero child only once the merged
    output is complete, and reports only rank 0. A rank that stops or breaks before the barrier
    never lets rank 0 merge a partial result (torchrun ends the others).
    """

    args, shard = run.config, run.shard  # a whole run's store was merged by engine_step, before its summary
    try:
        with signals_raise("merging the shards"):  # 130/143 and one line, never a silent kill mid-merge
            if not shard.is_whole:
                group = _barrier(run.dist)
                if (group and run.dist.rank == 0) or (not group and all_shards_reported(args.output_dir, shard.count)):
                    merge_outputs(args.output_dir, args.store)
                    run.summary_path = run.output_dir / "summary.json"
            run.merged_here = shard.is_whole or run.summary_path == run.output_dir / "summary.json"
            if args.option("hoplite_db") and not shard.is_whole and run.merged_here:
                merge_hoplite(hoplite_parts(args.option("hoplite_db")), args.option("hoplite_db"))
    except StoppedBySignal as exc:
        raise RunError(exc, exc.exit_status) from None


def _barrier(dist: Any) -> Any:
    """Under torchrun, wait for every rank (gloo); returns ``torch.distributed`` or None."""
    if dist is None or dist.launcher != "torchrun":
        return None
    import torch.distributed as tdist  # deferred: torchrun only

    if not tdist.is_initialized():
        tdist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    tdist.barrier()
    return tdist


def _under_torchrun(run: Run) -> bool:
    """This process is one rank of several started by torchrun."""
    return run.dist is not None and run.dist.launcher == "torchrun" and not run.shard.is_whole


def _leave_process_group(run: Run, status: int) -> None:
    """Under torchrun, after rank 0's merge and final files: meet every rank once more, leave the
    process group and, on rank 0 with a non-zero ``status``, wait (up to a minute) until the other
    ranks on this node have exited, so that torchrun sees their status 0 before rank 0's."""
    import torch.distributed as tdist  # deferred: torchrun only

    if not tdist.is_initialized():
        return
    here = (socket.gethostname(), os.getpid())
    ranks: list[Any] = [None] * tdist.get_world_size()
    tdist.all_gather_object(ranks, here)  # the second barrier: rank 0 gets here after its final files
    tdist.destroy_process_group()
    if run.dist.rank != 0 or status == EXIT_OK:
        return
    deadline = time.monotonic() + 60.0
    for host, pid in ranks:
        while host == here[0] and pid != here[1] and _process_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _process_running(pid: int) -> bool:
    """``pid`` is running (an exited process that its parent has not reaped yet is not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _merged_problems(merged: dict[str, Any]) -> str | None:
    """Why a merged summary is not a whole result (shards missing or stopped), or None."""
    bits = []
    if merged.get("shards_missing"):
        bits.append(f"shard(s) {_ranges(merged['shards_missing'])} have not reported")
    if merged.get("shards_stopped"):
        bits.append(f"shard(s) {_ranges(merged['shards_stopped'])} were stopped before the end")
    if not bits and merged.get("status") in STOPPED:
        bits.append(f"the run was {merged['status']} before the end")
    if not bits:
        return None
    not_done = merged.get("files_not_done")
    return "; ".join(bits) + (f" ({not_done} file(s) not done)" if not_done else "")


def _ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out: list[str] = []
    for i in sorted(indices):
        if out and out[-1].split("-")[-1] == str(i - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ", ".join(out)


def _list_failures(merged: dict[str, Any], output_dir: Path) -> None:
    """``error: N file(s) failed ...`` and one indented line per failed file (from a merged summary)."""
    failures = merged.get("failures") or []
    if not failures:
        return
    LOG.error(f"error: {len(failures)} file(s) failed and are not in the merged output "
              f"(listed in {output_dir / 'failures.csv'}):")
    for f in failures:
        path, reason = f.get("path", ""), f.get("reason", "")
        LOG.error(f"  {reason if reason.startswith(path) else f'{path}: {reason}'}")


def _read_merged(output_dir: Path) -> dict[str, Any] | None:
    """The merged ``summary.json`` of ``output_dir``, or None when it cannot be read."""
    try:
        return json.loads((output_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _whole_run_summary(output_dir: Path) -> dict[str, Any] | None:
    """``summary.json`` of a whole (unsharded) run newer than every shard summary, or None.

    A merge must not replace it with older shard summaries (a 1-process run after a 2-process one).
    """

    whole = output_dir / "summary.json"
    try:
        newest_shard = max((p.stat().st_mtime_ns for p in shard_summaries(output_dir)), default=None)
        if not whole.is_file() or (newest_shard is not None and whole.stat().st_mtime_ns <= newest_shard):
            return None
        summary = json.loads(whole.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or "shards_merged" in summary:
        return None  # a merged summary: merge again
    return {**summary, "shards_merged": [], "shards_missing": [], "shards_stopped": []}


def report_step(run: Run) -> int:
    """The summary line(s) of a corpus run and the exit status.

    The status is 1 when a file of this process failed, else 0, except under torchrun (see
    :func:`merge_step`): a rank that did not merge exits 0 (its failed files are in the merged
    summary), and rank 0 exits 1 when the merged summary has failed files or missing shards,
    after listing them (unless ``--quiet``: each rank has already printed its own failures) and
    after the other ranks of its node have exited.
    The process that merged the shards also says what the merged summary holds.
    """
    own_path = getattr(run.report, "summary_path", None) or run.summary_path
    if run.corpus.is_tree:
        run.say(summary_line(run.report, own_path))
    status = EXIT_INPUT_FAILED if run.report.failures else EXIT_OK
    merged = _read_merged(run.output_dir) if run.merged_here and not run.shard.is_whole else None
    if merged is not None:
        run.say(f"merged {len(merged.get('shards_merged', []))} shard(s): {merged.get('files_done', 0)} done, "
                f"{merged.get('files_skipped', 0)} already done, {merged.get('files_failed', 0)} failed; "
                f"summary: {run.output_dir / 'summary.json'}")
    if _under_torchrun(run):
        status = EXIT_OK  # a rank that did not merge: rank 0 reports every rank's failed files
        if merged is not None:
            if not run.config.quiet:
                _list_failures(merged, run.output_dir)
            if (problem := _merged_problems(merged)) is not None:
                LOG.error(one_line(f"the merge is incomplete: {problem}"))
            status = EXIT_INPUT_FAILED if merged.get("files_failed") or problem else EXIT_OK
        _leave_process_group(run, status)
    return status


def summary_line(report: Any, summary_path: Any) -> str:
    """The one line a corpus run ends with (every script and perch-runner)."""
    d = report.to_dict()
    return (f"{d['files_done']} done, {d['files_skipped']} already done, {d['files_failed']} failed; "
            f"{d['audio_hours']:.3f} h of audio in {d['wall_time_s']:.1f} s; summary: {summary_path}")


def merge_only(run: Run) -> int:
    """``--merge``: join the shard summaries (and store parts), then the hooks' after-merge steps.

    A whole run's ``summary.json`` newer than every shard summary is taken as it is. When the
    merge is incomplete (a shard has not reported, or was stopped: rerun it, it resumes) the
    hooks' final files (B4's per-speaker files, B3's corpus JSON) are not written, so nothing
    claims to be complete; the status is then 1 with one line saying what is missing. Status 1
    also when files failed (they are in ``failures.csv``); 0 otherwise.
    """
    whole = run.output_dir / "summary.json"
    merged = _whole_run_summary(run.output_dir)
    if merged is None:
        try:
            merged = merge_outputs(run.config.output_dir, run.config.store)
        except FileNotFoundError as exc:
            if not whole.is_file():
                raise RunError(exc) from None
            merged = {**json.loads(whole.read_text()), "shards_merged": [], "shards_missing": [],
                      "shards_stopped": []}  # one process
    run.say(f"merged {len(merged['shards_merged'])} shard(s): {merged['files_done']} done, "
            f"{merged['files_failed']} failed -> {whole}")
    run.model_name = merged.get("model") or ""
    if run.config.option("hoplite_db"):

        merge_hoplite(hoplite_parts(run.config.option("hoplite_db")), run.config.option("hoplite_db"))
    problem = _merged_problems(merged)
    if problem is not None:
        raise RunError(f"the merge is incomplete: {problem}; rerun them (they resume where they stopped), then "
                       "merge again; no final files were written", EXIT_INPUT_FAILED)
    for hook in run.hooks:
        hook.after(run, merged=merged)
    return EXIT_INPUT_FAILED if merged["files_failed"] else EXIT_OK


def execute(config: RunConfig, *, defaults: Any, backend: Any = None) -> Run:
    """Every step of a run, in order: the one run of every front end.

    Parameters
    ----------
    config : RunConfig
        What to do (built from flags, API keywords or MATLAB options).
    defaults : ScriptDefaults
        The calling script's defaults and hooks.
    backend : BaseBackend, optional
        A model already loaded (the Python API's); default: loaded from ``config.model``.

    Returns
    -------
    Run
        The finished run; ``status`` is its exit status (0, or 1 when files failed).

    Raises
    ------
    RunError
        The run cannot go on (one line for the user, and its exit status).
    """
    state = Run(config=config, defaults=defaults, hooks=tuple(defaults.hooks), backend=backend)
    try:  # SIGINT/SIGTERM in any phase (loading, checking, after the summary): 130/143 and one line; the engine
        # and the merges say more precisely what they were doing while they run
        with signals_raise("preparing or finishing the run"), state.held:
            state.status = _run_steps(state)
    except StoppedBySignal as exc:
        raise RunError(exc, exc.exit_status) from None
    return state


def _run_steps(state: Run) -> int:
    if state.config.merge:
        return merge_only(state)
    for hook in state.hooks:
        status = hook.instead(state)
        if status is not None:
            return status
    discover_inputs(state)
    load_step(state)
    choose_writer(state)
    engine_step(state)
    merge_step(state)
    if state.merged_here:
        for hook in state.hooks:
            hook.after(state, merged=None)
    return report_step(state)


def stored_rows(items: Iterable[Any], writer: Any, store: str | None):
    """(key, rows) of every corpus item with finished outputs, in corpus order, one at a time."""

    if store:
        import h5py  # deferred: only runs with --store read one

        with h5py.File(store, "r") as fh:
            for item in items:
                if f"embeddings/{item.key}" in fh:
                    yield item.key, fh[f"embeddings/{item.key}"][()]
        return
    for item in items:
        base = writer.base(item.key)
        path = base.with_name(base.name + ".npy")
        if path.is_file():
            yield item.key, np.load(path)
