"""The runner's commands, each a run of the corpus engine with a writer that makes one table per input.

``generate``, ``classify`` and ``distance`` take an audio file (or a directory, or a
manifest: the tree is mirrored) and write ``<stem>.embeddings.csv``,
``<stem>.classifications.csv`` or ``<stem>.distances.csv`` (``.parquet`` with
``--format parquet``). ``batch`` runs one of them over the ``source,output`` rows of a CSV.
``train`` (in :mod:`.training`) embeds labelled clips and writes a linear classifier.

Every run resumes: an input whose table exists is skipped (``overwrite`` redoes it); a table
made with other settings (model, hop, classifiers, query, metric) is refused rather than
mixed in. Tables are written atomically, so a killed run leaves no partial table.

``classify`` and ``distance`` also take embeddings that exist already (a generate table, ours or
perch-runner's, a folder of them, an HDF5 store, a perch-hoplite database: :mod:`.sources`), and for
audio inputs they read the generate table next to the output (``OUTPUT_DIR/<stem>.embeddings.*``, or
``--embeddings DIR``) when one was made with the same model and hop: nothing already embedded is
embedded again. ``generate --hoplite-db DIR`` also writes a perch-hoplite database
(:class:`~audio_embeddings.outputs.hoplite.HopliteWriter`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import audio
from ..app.run import summary_line
from ..app.session import EXIT_INPUT_FAILED as EXIT_FAILED, EXIT_OK, EXIT_USAGE  # noqa: F401 - the run's statuses
from ..app.config import RunConfig
from ..app.session import engine_options, hold_run_lock, run_engine_session, RunError, stamped_writer
from ..backends.base import weights_digest
from ..corpus.discover import CorpusError, CorpusItem, discover
from ..corpus.progress import Progress
from ..corpus.report import RunReport
from ..corpus.shard import Shard
from ..corpus.stamps import settings_hash, Stamper
from ..corpus.threads import run_plan
from ..corpus.writers import colliding_keys, output_base
from ..outputs.contract import now_iso, package_versions
from ..outputs.hoplite import HopliteError, writer_for_backend
from ..outputs.tee import TeeWriter
from ..pipeline import embed_audio
from ..registry import load_backend
from ..safe_load import DocumentError, read_bounded
from .classifier import ClassifierError
from .config import ClassifierSpec, DEFAULT_MODEL, RunnerConfig
from .sources import common_facts, kind_of, read_items, read_table_items, SourceError
from .tables import (COLUMN_DOCS, format_of, read_embeddings, read_provenance, sidecar_path, SUFFIXES, TableError,
                     write_table)

#: The lock label of a perch-runner run: a whole (unsharded) run's, so that it and a script's run on the
#: same folder or database exclude each other.
WHOLE_RUN = Shard().label
#: Output table kind per command (also the middle of the file name: ``<stem>.<kind>.csv``).
KINDS = {"generate": "embeddings", "classify": "classifications", "distance": "distances"}
METRICS = ("cosine", "euclidean")
#: A query may differ from one window by this much (s); it is cut to one window.
QUERY_TOLERANCE_S = 0.01
TABLE_FORMAT = "audio_embeddings perch-runner table"
TABLE_FORMAT_VERSION = 1


class UsageError(ValueError):
    """Bad arguments, config, model or query: the run does not start (exit status 2)."""


@dataclass(frozen=True)
class RunSettings:
    """What every command shares.

    Attributes
    ----------
    fmt : {"csv", "parquet"} or None
        Table format (None: csv, or a batch row's output suffix).
    config : RunnerConfig
    model : str or None
        ``--model``; overrides the config's ``model`` (default ``perch_v2``).
    device : str
    batch_size : int
        Windows per model call, from any files.
    workers : int or None
        Decoding processes (None: 0 for one file, up to 4 otherwise).
    overwrite : bool
        Redo inputs whose table exists.
    quiet, verbose : bool
    argv : list of str, optional
        Command line recorded in provenance.
    layout : {"ours", "perch-runner"}
        Column names and footer keys of the tables (see :func:`~.tables.write_table`).
    hoplite_db : str, optional
        generate: also write this perch-hoplite database.
    embeddings_dir : str, optional
        classify/distance: where generate tables of the inputs may be (default: the output folder).
    backend_options : dict
        Window options for the backend (``min_seconds``, ``partial_window``, ``resampler``), passed to
        the loader when given.
    """

    fmt: str | None = None
    config: RunnerConfig = field(default_factory=RunnerConfig)
    model: str | None = None
    device: str = "auto"
    batch_size: int = 8
    workers: int | None = None
    overwrite: bool = False
    quiet: bool = False
    verbose: bool = False
    argv: list[str] | None = None
    layout: str = "ours"
    hoplite_db: str | None = None
    embeddings_dir: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)

    @property
    def model_spec(self) -> str:
        return self.model or self.config.model or DEFAULT_MODEL


@dataclass(frozen=True)
class Target:
    """One input and the table it becomes (``label``: what its rows' ``source`` column says)."""

    key: str
    source: str
    output: Path
    fmt: str
    label: str = ""

    @property
    def source_label(self) -> str:
        return self.label or self.key


# -- shared pieces ---------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Package versions that shape the numbers and the files."""

    found = package_versions()
    for name in ("pyarrow", "PyYAML", "scikit-learn"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (paths and other objects as text)."""
    return json.loads(json.dumps(value, default=str))


def load_model(settings: RunSettings) -> Any:
    """The backend for the run (``hop_length_seconds`` as ``hop_s``); UsageError when it cannot load."""

    spec = settings.model_spec
    try:
        return load_backend(spec, device=settings.device, hop_s=settings.config.hop_length_seconds,
                            **{k: v for k, v in settings.backend_options.items() if v is not None})
    except (ValueError, OSError, ImportError) as exc:
        raise UsageError(f"{spec}: {exc}") from None


def model_facts(backend: Any, spec: str) -> dict[str, Any]:
    """Model identity and geometry, for provenance and for the resume check."""
    info = backend.describe()
    return jsonable({
        "model": backend.name,
        "model_spec": spec,
        "checkpoint": info.get("checkpoint") or getattr(backend, "source", None),
        "weights_sha256": info.get("weights_sha256"),
        "weights": weights_digest(backend),
        "embedding_dim": int(backend.embedding_dim),
        "window_s": float(backend.window_s),
        "hop_s": float(backend.frame_stride_s),
        "sample_rate_hz": int(backend.sample_rate_hz),
    })


def window_columns(result: Any) -> dict[str, np.ndarray]:
    """``start``, ``end`` (clipped to the file) and ``source_separation_channel`` of a result's rows.

    Results read from existing embeddings (:class:`~.sources.Embedded`) bring their own ends and channels.
    """
    start = np.asarray(result.time_axis_s, dtype=np.float64)
    if getattr(result, "ends_s", None) is not None:
        return {"start": start, "end": np.asarray(result.ends_s, dtype=np.float64),
                "source_separation_channel": np.asarray(result.channel, dtype=np.int32)}
    end = start + float(result.window_s)
    if result.n_samples:
        end = np.minimum(end, result.n_samples / float(result.sample_rate_hz))
    return {"start": start, "end": end, "source_separation_channel": np.zeros(start.shape[0], dtype=np.int32)}


def distances(embeddings: np.ndarray, query: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distance float64 [T] of each row of [T, D] to a query [D].

    ``cosine``: ``1 - cos`` computed as ``|a/|a| - q/|q||^2 / 2`` in float64 (exactly 0 for a row
    equal to the query; 1 when either vector is all zeros). ``euclidean``: ``|a - q|``.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64).reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != q.shape[1]:
        raise ValueError(f"embeddings {list(x.shape)} and query [{q.shape[1]}] differ in dimension")
    if metric == "euclidean":
        return np.sqrt(np.sum((x - q) ** 2, axis=1))
    if metric != "cosine":
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    nx = np.sqrt(np.sum(x * x, axis=1))  # the same reduction for rows and query: equal rows, equal norms
    nq = np.sqrt(np.sum(q * q, axis=1))
    ux = x / np.where(nx > 0, nx, 1.0)[:, None]
    uq = q / np.where(nq > 0, nq, 1.0)[:, None]
    d = 0.5 * np.sum((ux - uq) ** 2, axis=1)
    d[(nx == 0) | (nq[0] == 0)] = 1.0
    return d


class TableWriter:
    """The engine's writer: ``render(result)`` -> columns, written with provenance to the key's target.

    Each table records the stamp of the input that made it (``stamp`` in its provenance: size,
    modification time, content hash and the run's settings hash), so that a rerun through
    :func:`~audio_embeddings.app.session.stamped_writer` redoes or refuses a table whose input was
    replaced, as the scripts' outputs are.
    """

    supports_stamps = True

    def __init__(self, targets: Sequence[Target], render: Callable[[Any], dict[str, Any]],
                 provenance: dict[str, Any], *, layout: str = "ours"):
        self.targets = {t.key: t for t in targets}
        self.render = render
        self.provenance = provenance
        self.layout = layout

    def stored_stamp(self, key: str) -> dict[str, Any] | None:
        """The stamp recorded in ``key``'s table, or None (no table, or one made before tables had stamps)."""
        return table_stamp(self.targets[key].output)

    def is_complete(self, key: str, stamp: dict[str, Any] | None = None) -> bool:
        """``key``'s table exists (and, given ``stamp``, was written with it)."""
        if not self.targets[key].output.is_file():
            return False
        return stamp is None or self.stored_stamp(key) == stamp

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any],
              stamp: dict[str, Any] | None = None) -> dict[str, Any]:

        target = self.targets[key]
        if np.asarray(result.embeddings).ndim != 2:
            raise ValueError(f"tables take [T, D] embeddings, got {list(np.shape(result.embeddings))}")
        rendered = self.render(result)
        n = len(next(iter(rendered.values()))) if rendered else 0
        columns = {"source": np.full(n, target.source_label, dtype=object), **rendered}
        provenance = {**self.provenance, "columns": {c: COLUMN_DOCS.get(c, "") for c in columns},
                      "input": jsonable({"path": str(input_path), **audio_info}), "created_at": now_iso(),
                      **({"stamp": jsonable(stamp)} if stamp is not None else {})}
        write_table(target.output, columns, provenance, fmt=target.fmt, layout=self.layout)
        return {"store": str(target.output), "output": str(target.output)}

    def close(self) -> None:
        """Nothing is buffered."""


def table_stamp(path: Path) -> dict[str, Any] | None:
    """The input stamp a table records, or None (no table, an unreadable one, or one without a stamp)."""
    if not path.is_file():
        return None
    try:
        stamp = read_provenance(path).get("stamp")
    except (OSError, TableError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def same_input(stamp: dict[str, Any] | None, source: str) -> bool:
    """``source`` is still the input ``stamp`` was taken of (whatever settings the stamp was made with)."""

    if not stamp:
        return False
    return Stamper(settings_hash=str(stamp.get("settings", ""))).difference(stamp, source) is None


def _differences(old: Any, new: Any) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "no settings recorded" if old is None else "settings differ"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_existing(targets: Sequence[Target], settings: dict[str, Any]) -> None:
    """Refuse to resume over tables made with other settings (UsageError naming the first)."""
    for target in targets:
        if not target.output.is_file():
            continue
        try:
            recorded = read_provenance(target.output).get("settings")
        except (OSError, TableError, ValueError) as exc:
            raise UsageError(f"{target.output} exists but is not a readable runner table ({exc}); "
                             "use --overwrite to replace it") from None
        if recorded is None and format_of(target.output) == "csv" and not sidecar_path(target.output).is_file():
            continue  # a table whose provenance was never written (a killed run): not done, redone
        if recorded != settings:
            raise UsageError(f"{target.output} was made with other settings ({_differences(recorded, settings)}); "
                             "use --overwrite to redo it, or choose another output")


def _progress(n: int, settings: RunSettings, *, single: bool, desc: str) -> Any:

    return Progress(n, quiet=settings.quiet, verbose=settings.verbose or single,
                    file_lines=sys.stdout if single else None, desc=desc)




def run_engine(backend: Any, targets: Sequence[Target], writer: Any, *, settings: RunSettings, report_dir: Path,
               single: bool, resume: bool, context: dict[str, Any], write_report: bool) -> Any:
    """Run the corpus engine over ``targets`` with ``writer`` (:func:`~..app.session.run_engine_session`, as
    every script does); returns the filled-in RunReport.

    ``write_report``: also write ``summary.json``/``failures.csv`` in ``report_dir`` (its
    ``.scratch`` holds streamed long recordings during the run).

    Raises
    ------
    RunError
        The run was stopped (130/143 for SIGINT/SIGTERM, 1 for a full disk).
    """

    items = [CorpusItem(t.key, t.source) for t in targets]
    threads = run_plan(backend, corpus=not single, workers=settings.workers)
    config = RunConfig(output_dir=str(report_dir), model=settings.model_spec, device=settings.device,
                       batch_size=settings.batch_size, workers=settings.workers, overwrite=not resume,
                       quiet=settings.quiet, verbose=settings.verbose, argv=settings.argv)
    options = engine_options(config, workers=threads.workers, writer=writer)
    report = RunReport(report_dir, shard=Shard(), context={**context, "command_line": settings.argv,
                                                           "threads": threads.describe(), "versions": versions()})
    progress = _progress(len(items), settings, single=single, desc=f"{context.get('command', 'run')} {backend.name}")
    summary = run_engine_session(backend, items, writer, report, options=options, model_threads=threads.model_threads,
                                 progress=progress, scratch_root=report_dir, shard_label=WHOLE_RUN,
                                 write_summary=write_report)
    if summary is not None and not settings.quiet:
        print(summary_line(report, summary), file=sys.stderr)
    return report


# -- targets ---------------------------------------------------------------------------------


def table_name(key: str, command: str, fmt: str) -> str:
    """``a/b/x.wav`` -> ``a/b/x.embeddings.csv`` (generate; classifications, distances)."""

    return f"{output_base(key)}.{KINDS[command]}{SUFFIXES[fmt]}"


def input_targets(inputs: str, output_dir: str | Path, command: str, fmt: str) -> tuple[list[Target], bool, Path]:
    """Targets of a file, directory or manifest input: (targets, single_file, corpus root).

    Raises
    ------
    UsageError
        Nothing found, or two inputs that would write the same table.
    """

    try:
        corpus = discover([str(inputs)], exclude=[output_dir])
    except (CorpusError, OSError) as exc:
        raise UsageError(str(exc)) from None
    clashes = colliding_keys(i.key for i in corpus.items)
    if clashes:
        a, b = clashes[0]
        raise UsageError(f"{a} and {b} would write the same table")
    out = Path(output_dir)
    targets = [Target(i.key, i.path, out / table_name(i.key, command, fmt), fmt, i.key) for i in corpus.items]
    return targets, corpus.kind == "files", corpus.root


#: The largest list of inputs read (a batch CSV, a labelled CSV): a million rows of long paths.
LIST_MAX_BYTES = 256 << 20


def read_list_file(path: Path, *, what: str) -> str:
    """The text of a list of inputs (UTF-8, a BOM dropped), bounded by :data:`LIST_MAX_BYTES`.

    Raises
    ------
    UsageError
        Unreadable, too large (without reading it all) or not UTF-8 text.
    """

    try:
        return read_bounded(path, max_bytes=LIST_MAX_BYTES, what=what).decode("utf-8-sig")
    except DocumentError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_batch_rows(source_csv: str | Path, *, start_row: int | None = None,
                    end_row: int | None = None) -> list[tuple[int, str, str]]:
    """``(row, source, output)`` of a batch CSV (columns ``source`` and ``output``; 0-based rows, end inclusive).

    Relative paths are taken from the CSV's folder.
    """
    path = Path(source_csv)
    text = read_list_file(path, what="batch CSV")
    reader = csv.DictReader(text.splitlines())
    fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
    missing = [c for c in ("source", "output") if c not in fields]
    if missing:
        raise UsageError(f"{path}: needs columns source and output (missing {', '.join(missing)}; "
                         f"found {', '.join(reader.fieldnames or []) or 'no header'})")
    rows = []
    for i, row in enumerate(reader):
        source, output = (row.get(fields["source"]) or "").strip(), (row.get(fields["output"]) or "").strip()
        if not source and not output:
            continue
        if not source or not output:
            raise UsageError(f"{path}: row {i}: both source and output are needed")
        rows.append((i, source, output))
    first = start_row or 0
    last = len(rows) - 1 if end_row is None else end_row
    rows = [r for r in rows if first <= r[0] <= last]
    if not rows:
        raise UsageError(f"{path}: no rows to run (rows {first}..{last})")
    base = path.parent
    resolve = (lambda p: p if Path(p).is_absolute() else str(base / p))
    return [(i, resolve(s), resolve(o)) for i, s, o in rows]


def batch_targets(rows: Sequence[tuple[int, str, str]], command: str, fmt: str | None) -> list[Target]:
    """A row's ``output`` is the table itself when it ends in .csv/.parquet, else the folder it goes in."""
    targets = []
    for i, source, output in rows:
        out = Path(output)
        suffix = out.suffix.lower()
        if suffix in (".csv", ".parquet"):
            row_fmt = suffix[1:]
            if fmt and fmt != row_fmt:
                raise UsageError(f"row {i}: output {output} is {row_fmt} but --format {fmt} was given")
            targets.append(Target(f"row{i:06d}", source, out, row_fmt, source))
        else:
            row_fmt = fmt or "csv"
            targets.append(Target(f"row{i:06d}", source, out / table_name(Path(source).name, command, row_fmt),
                                  row_fmt, source))
    seen: dict[Path, Target] = {}
    for t in targets:
        final = t.output.resolve()
        if final in seen:
            raise UsageError(f"{seen[final].source} and {t.source} would both write {t.output}")
        seen[final] = t
    return targets


# -- generate / classify / distance ----------------------------------------------------------


@dataclass
class TablePlan:
    """What a table command writes per input (built once the model is loaded)."""

    render: Callable[[Any], dict[str, Any]]
    provenance: dict[str, Any]
    settings: dict[str, Any]


def _classifier_labels(spec: ClassifierSpec) -> np.ndarray:
    index = {c: i for i, c in enumerate(spec.classifier.classes)}
    return np.array([index[label] for label in spec.labels], dtype=np.int64)


def _warn(message: str, settings: RunSettings | None = None) -> None:
    print("warning: " + " ".join(str(message).split()), file=sys.stderr)


def plan_classify(facts: Any, specs: Sequence[ClassifierSpec], *,
                  settings: RunSettings | None = None) -> tuple[Callable[[Any], dict[str, Any]], list]:
    """Check each classifier against the embeddings' model and build the classify renderer.

    ``facts``: a loaded backend, or the model facts of existing embeddings (``model`` may be None).

    Raises
    ------
    UsageError
        No classifiers, or one trained on another model, dimension or window.
    """
    if not specs:
        raise UsageError("classify needs classifiers: give a config (-c FILE) with classifiers: "
                         "[{name, tags, model}] (or recognizers: FILE), or --recognizers FILE")
    if not isinstance(facts, dict):
        facts = {"model": facts.name, "embedding_dim": facts.embedding_dim, "window_s": float(facts.window_s),
                 "sample_rate_hz": int(facts.sample_rate_hz)}
    window = facts.get("window_s")
    rate = facts.get("sample_rate_hz")
    for spec in specs:
        try:
            notes = spec.classifier.check_fits(
                model=facts.get("model"), embedding_dim=int(facts["embedding_dim"]),
                window_s=float(window) if isinstance(window, (int, float)) else None,
                sample_rate_hz=int(rate) if isinstance(rate, (int, float)) and rate else None,
                name=f"classifier {spec.name!r}")
        except ClassifierError as exc:
            raise UsageError(str(exc)) from None
        for note in notes:
            _warn(note, settings)
    columns = [(spec, _classifier_labels(spec)) for spec in specs]
    names = np.array([spec.name for spec, idx in columns for _ in idx], dtype=object)
    labels = np.array([label for spec, _ in columns for label in spec.labels], dtype=object)

    def render(result: Any) -> dict[str, Any]:
        window = window_columns(result)
        scores = np.concatenate([spec.classifier.scores(result.embeddings)[:, idx] for spec, idx in columns], axis=1)
        t, k = scores.shape
        return {"start": np.repeat(window["start"], k), "end": np.repeat(window["end"], k),
                "source_separation_channel": np.repeat(window["source_separation_channel"], k),
                "classifier": np.tile(names, t), "label": np.tile(labels, t), "score": scores.reshape(-1)}

    return render, [spec.describe() for spec in specs]


def embed_query(backend: Any, query: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The query's one-window embedding [D] and facts about it.

    ``query`` may also be an embeddings table of one row (its vector is used as it is).

    Raises
    ------
    UsageError
        Not a window model, an unreadable query, or a query that is not one window long.
    """

    digest = hashlib.sha256(Path(query).read_bytes()).hexdigest() if Path(query).is_file() else None
    if Path(query).suffix.lower() in (".csv", ".parquet"):
        vector = query_from_table(query)
        return vector, {"path": str(query), "sha256": digest, "table": True}
    if getattr(backend, "framing", None) != "windows":
        raise UsageError(f"distance needs a window model (perch_v2, perch_v2_cpu, birdnet); {backend.name} "
                         "makes frames, not windows")
    rate = int(backend.sample_rate_hz)
    window = int(backend.window_samples)
    try:
        loaded = audio.load(query, sample_rate_hz=rate, resampler=backend.resampler)
    except audio.AudioError as exc:
        raise UsageError(f"query {exc}") from None
    n = int(loaded.samples.shape[0])
    window_s = window / rate
    if abs(n - window) > round(QUERY_TOLERANCE_S * rate):
        raise UsageError(f"{query}: the query must be one window long ({window_s:g} s for {backend.name}); "
                         f"it is {n / rate:.3f} s. Cut a {window_s:g} s excerpt (or use --model for another window)")
    samples = loaded.samples[:window]
    clip = audio.Audio(samples, rate, loaded.source_sample_rate_hz, loaded.source_channels, loaded.channel,
                       str(query))
    result = embed_audio(backend, clip, batch_size=1)
    return np.asarray(result.embeddings[0], dtype=np.float32), {
        "path": str(query), "sha256": digest, "duration_s": round(n / rate, 6), "window_s": window_s}


def query_from_table(path: str | Path) -> np.ndarray:
    """The one embedding of a one-row table (UsageError otherwise)."""

    try:
        _, emb, _ = read_embeddings(path)
    except (TableError, OSError) as exc:
        raise UsageError(f"query {path}: {exc}") from None
    if emb.shape[0] != 1:
        raise UsageError(f"query {path}: a query table must hold one window, it holds {emb.shape[0]} "
                         "(use search for many queries)")
    return emb[0]


def plan_table(command: str, backend: Any, settings: RunSettings, *, query: str | None = None,
               metric: str = "cosine", facts: dict[str, Any] | None = None) -> TablePlan:
    """Renderer, provenance and resume settings of a generate/classify/distance run.

    ``facts``: the model facts of existing embeddings, when no model runs (``backend`` may then be None,
    except for a distance query that is audio).
    """
    if facts is None:
        facts = model_facts(backend, settings.model_spec)
    facts = jsonable(facts)
    extra: dict[str, Any] = {}
    # what changes the numbers: the weights (``weights``: one digest over every weight file read, as the scripts
    # record it; their recorded hash; else the checkpoint), geometry, command
    skip = {"model_spec", "hoplite_model_key"} | \
        ({"checkpoint"} if facts.get("weights_sha256") or facts.get("weights") else set())
    fingerprint: dict[str, Any] = {"command": command, **{k: v for k, v in facts.items() if k not in skip}}
    if command == "generate":
        def render(result: Any) -> dict[str, Any]:
            return {**window_columns(result), "embedding": np.asarray(result.embeddings, dtype=np.float32)}
    elif command == "classify":
        render, described = plan_classify(facts, settings.config.classifiers, settings=settings)
        extra["classifiers"] = described
        extra["score"] = COLUMN_DOCS["score"]
        fingerprint["classifiers"] = [{"name": d["name"], "sha256": d["sha256"], "labels": d["labels"]}
                                      for d in described]
    elif command == "distance":
        if metric not in METRICS:
            raise UsageError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        if query is None:
            raise UsageError("distance needs a query file")
        if backend is None:
            vector, query_info = query_from_table(query), {"path": str(query), "table": True,
                                                           "sha256": hashlib.sha256(Path(query).read_bytes()).hexdigest()}
        else:
            vector, query_info = embed_query(backend, query)
        if vector.shape[0] != int(facts["embedding_dim"]):
            raise UsageError(f"query {query}: {vector.shape[0]}-d, the embeddings are {facts['embedding_dim']}-d")
        extra.update({"query": query_info, "metric": metric,
                      "distance": ("1 - cosine similarity" if metric == "cosine" else "euclidean (L2)") +
                      " between the window's and the query's embeddings"})
        fingerprint.update({"query_sha256": query_info["sha256"], "metric": metric})

        def render(result: Any) -> dict[str, Any]:
            emb = np.asarray(result.embeddings, dtype=np.float32)
            return {**window_columns(result), "embedding": emb, "distance": distances(emb, vector, metric)}
    else:
        raise UsageError(f"unknown command {command!r}")
    fingerprint = jsonable(fingerprint)
    provenance = {
        "format": TABLE_FORMAT, "format_version": TABLE_FORMAT_VERSION, "command": command, "table": KINDS[command],
        **facts, **extra,
        "model_info": jsonable(backend.describe()) if backend is not None else {"from": "existing embeddings"},
        "config": jsonable(settings.config.describe()),
        "settings": fingerprint,
        "versions": versions(),
        "command_line": settings.argv,
    }
    return TablePlan(render, provenance, fingerprint)


# -- embeddings that exist already -----------------------------------------------------------


def generate_table_for(target: Target, settings: RunSettings) -> Path | None:
    """An existing generate table of ``target``'s input made with this run's model and hop, or None.

    Looked for next to the output (``<stem>.embeddings.csv|parquet``) and in ``--embeddings DIR``.
    """
    name = target.output.name
    for kind in (".classifications", ".distances"):
        name = name.replace(kind + ".", ".embeddings.")
    stem = name.rsplit(".embeddings.", 1)[0]
    folders = [target.output.parent]
    if settings.embeddings_dir:
        folders.append(Path(settings.embeddings_dir) / Path(table_name(target.key, "generate", "csv")).parent)
        folders.append(Path(settings.embeddings_dir))
    hop = settings.config.hop_length_seconds
    for folder in folders:
        for suffix in SUFFIXES.values():
            candidate = folder / f"{stem}.embeddings{suffix}"
            if not candidate.is_file():
                continue
            try:
                prov = read_provenance(candidate)
            except (OSError, TableError, ValueError):
                continue
            if prov.get("command") != "generate" or prov.get("model_spec") != settings.model_spec:
                continue
            if not same_input(prov.get("stamp"), target.source):
                continue  # made from another version of the input (or before tables recorded it): embed again
            if hop is not None and prov.get("hop_s") != float(hop):
                continue
            if hop is None and prov.get("hop_s") != prov.get("window_s"):
                continue
            return candidate
    return None


def _write_from_items(command: str, items: Sequence[Any], targets: Sequence[Target], plan: TablePlan,
                      settings: RunSettings, *, stamps: Sequence[dict[str, Any] | None] | None = None) -> tuple[int, int]:
    """Write tables from embeddings already made; returns (written, skipped).

    ``stamps``: per item, the input stamp to record (that of the generate table it was read from).
    """
    writer = TableWriter(targets, plan.render, plan.provenance, layout=settings.layout)
    written = skipped = 0
    for i, (item, target) in enumerate(zip(items, targets)):
        if target.output.is_file() and not settings.overwrite:
            skipped += 1
            continue
        writer.write(target.key, item, input_path=getattr(item, "origin", "") or target.source,
                     audio_info={"from": "existing embeddings"}, stamp=stamps[i] if stamps else None)
        written += 1
        if settings.verbose and not settings.quiet:
            print(f"{target.source}: {item.embeddings.shape[0]} windows -> {target.output}", file=sys.stderr)
    return written, skipped


def run_from_embeddings(command: str, inputs: str, output_dir: str | Path, settings: RunSettings, *,
                        query: str | None = None, metric: str = "cosine") -> int:
    """classify/distance over embeddings that exist (a table, a folder of them, a store, a hoplite database)."""

    try:
        kind, items = read_items(inputs)
        facts = common_facts(items, str(inputs))
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    fmt = settings.fmt or "csv"
    out = Path(output_dir)
    targets = [Target(i.key, i.origin, out / table_name(i.key, command, fmt), fmt, i.source) for i in items]
    seen: dict[Path, str] = {}
    for t in targets:
        if t.output in seen:
            raise UsageError(f"{seen[t.output]} and {t.source} would write the same table {t.output}")
        seen[t.output] = t.source
    backend = None
    if command == "distance" and query is not None and Path(query).suffix.lower() not in (".csv", ".parquet"):
        model = settings.model or settings.config.model or facts.get("model_spec") or facts.get("model")
        if not model:
            raise UsageError(f"{inputs}: the embeddings do not record their model; give --model to embed the query")
        from dataclasses import replace

        backend = load_model(replace(settings, model=model))
        facts = {**facts, "model": facts.get("model") or backend.name}
    plan = plan_table(command, backend, settings, query=query, metric=metric, facts=facts)
    if not settings.overwrite:
        check_existing(targets, plan.settings)
    written, skipped = _write_from_items(command, items, targets, plan, settings)
    if not settings.quiet:
        print(f"{command}: {written} table(s) from {kind} {inputs}, {skipped} already done; nothing embedded",
              file=sys.stderr)
    return EXIT_OK


def hoplite_writer(targets: Sequence[Target], backend: Any, settings: RunSettings, *, root: Path | None,
                   provenance: dict[str, Any], settings_made: dict[str, Any], held: Any) -> Any:
    """The perch-hoplite database writer of ``generate --hoplite-db DIR``, as the scripts make it: under the
    database's run lock (taken into ``held``), recording ``settings_made`` and each recording's input stamp,
    refusing (or with ``overwrite`` redoing) windows made from another input or with other settings.
    """
    try:
        hold_run_lock(held, settings.hoplite_db, shard_label=WHOLE_RUN)
    except RunError as exc:
        raise UsageError(f"--hoplite-db {settings.hoplite_db}: {exc}") from None

    sources = [os.path.abspath(t.source) for t in targets]
    if root is None or any(t.key.startswith("row") for t in targets):
        root = Path(os.path.commonpath([os.path.dirname(s) for s in sources])) if sources else Path.cwd()
    filenames = {}
    for t, src in zip(targets, sources):
        try:
            filenames[t.key] = Path(src).relative_to(os.path.abspath(root)).as_posix()
        except ValueError:
            filenames[t.key] = t.key
    try:
        hop = writer_for_backend(settings.hoplite_db, backend, audio_root=root, filenames=filenames,
                                 overwrite=settings.overwrite, settings=settings_made,
                                 provenance={k: provenance.get(k) for k in (
                                     "model", "model_spec", "checkpoint", "weights_sha256", "weights", "window_s",
                                     "hop_s", "sample_rate_hz", "versions", "config")})
    except (HopliteError, ImportError, OSError) as exc:
        raise UsageError(f"--hoplite-db {settings.hoplite_db}: {exc}") from None

    def refusal(key: str, why: str, n: int) -> str:
        more = f" (and {n - 1} other file(s))" if n > 1 else ""
        return (f"--hoplite-db {settings.hoplite_db}: the windows of {key} {why}{more}; use --overwrite to redo them, "
                "or choose another --hoplite-db")

    try:
        return stamped_writer(hop, [CorpusItem(t.key, t.source) for t in targets], settings=settings_made,
                              overwrite=settings.overwrite, refusal=refusal)
    except BaseException:
        hop.close()
        raise


def _backfill_hoplite(writer: Any, targets: Sequence[Target], settings: RunSettings) -> int:
    """Insert files whose generate table exists (same settings) but which the database lacks: no re-embedding."""

    filled = 0
    for t in targets:
        if writer.is_complete(t.key) or not same_input(table_stamp(t.output), t.source):
            continue  # in the database already, or no table of this version of the input
        items = read_table_items(t.output)
        if len(items) == 1:
            writer.write(t.key, items[0], input_path=t.source, audio_info={"from": str(t.output)})
            filled += 1
    if filled:
        writer.commit()  # written files count as done only once committed
    return filled


def _table_run(command: str, targets: list[Target], settings: RunSettings, *, report_dir: Path, single: bool,
               write_report: bool, query: str | None = None, metric: str = "cosine", root: Path | None = None) -> int:
    """One table command over audio inputs, under the run lock of ``report_dir`` (as every script's run)."""
    with contextlib.ExitStack() as held:
        hold_run_lock(held, report_dir, shard_label=WHOLE_RUN)
        return _locked_table_run(command, targets, settings, report_dir=report_dir, single=single,
                                 write_report=write_report, query=query, metric=metric, root=root, held=held)


def _locked_table_run(command: str, targets: list[Target], settings: RunSettings, *, report_dir: Path, single: bool,
                      write_report: bool, query: str | None, metric: str, root: Path | None, held: Any) -> int:

    reuse: list[tuple[Target, Path]] = []
    if command in ("classify", "distance") and not settings.overwrite:
        for t in targets:
            if t.output.is_file():
                continue
            table = generate_table_for(t, settings)
            if table is not None:
                reuse.append((t, table))
    reused = {t.key for t, _ in reuse}
    to_embed = [t for t in targets if t.key not in reused]
    if single and to_embed:
        try:
            audio.check_file(to_embed[0].source)  # before the model loads
        except audio.AudioError as exc:
            print("error: " + " ".join(str(exc).split()), file=sys.stderr)
            return EXIT_FAILED
    needs_model = bool([t for t in to_embed if settings.overwrite or not t.output.is_file()]) or \
        (command == "distance" and query is not None and Path(query).suffix.lower() not in (".csv", ".parquet")) or \
        command == "generate"
    backend = load_model(settings) if needs_model else None
    facts = None
    if backend is None:

        facts = common_facts([i for _, table in reuse[:1] for i in read_table_items(table)] or [], "existing tables") \
            if reuse else {"model": settings.model_spec, "model_spec": settings.model_spec}
        if "embedding_dim" not in facts or facts.get("embedding_dim") is None:
            backend = load_model(settings)
            facts = None
    plan = plan_table(command, backend, settings, query=query, metric=metric, facts=facts)
    if not settings.overwrite:
        check_existing(targets, plan.settings)
    table_writer = TableWriter(targets, plan.render, plan.provenance, layout=settings.layout)

    def refusal(key: str, why: str, n: int) -> str:
        more = f" (and {n - 1} other table(s))" if n > 1 else ""
        return (f"{table_writer.targets[key].output}: the table {why}{more}; use --overwrite to redo it, "
                "or write elsewhere")

    # every table records the input that made it; one whose input changed is refused, as the scripts' outputs are
    writer: Any = stamped_writer(table_writer, [CorpusItem(t.key, t.source) for t in targets],
                                 settings=plan.settings, overwrite=settings.overwrite, refusal=refusal)
    if reuse:

        items, item_targets, stamps = [], [], []
        for t, table in reuse:
            found = read_table_items(table)
            if len(found) == 1:
                items.append(found[0])
                item_targets.append(t)
                stamps.append({**(table_stamp(table) or {}), "settings": settings_hash(plan.settings)})
            else:
                to_embed.append(t)
        written, _ = _write_from_items(command, items, item_targets, plan, settings, stamps=stamps)
        if not settings.quiet and written:
            print(f"{command}: {written} input(s) read from their generate tables (not embedded again)",
                  file=sys.stderr)
    if command == "generate" and settings.hoplite_db:
        hop = hoplite_writer(targets, backend, settings, root=root, provenance=plan.provenance, settings_made=plan.settings,
                             held=held)
        if not settings.overwrite:
            _backfill_hoplite(hop, targets, settings)
        writer = TeeWriter(writer, hop)
    if backend is None:
        writer.close()
        return EXIT_OK
    context = {"command": command, "model": backend.name, "backend": jsonable(backend.describe()),
               "outputs": {"format": sorted({t.fmt for t in targets}), "tables": len(targets),
                           "layout": settings.layout, "hoplite_db": settings.hoplite_db}}
    report = run_engine(backend, to_embed, writer, settings=settings, report_dir=report_dir, single=single,
                        resume=not settings.overwrite, context=context, write_report=write_report)
    return EXIT_FAILED if report.failures else EXIT_OK


def run_table_command(command: str, inputs: str, output_dir: str | Path, settings: RunSettings, *,
                      query: str | None = None, metric: str = "cosine") -> int:
    """``generate``/``classify``/``distance`` on a file, directory or manifest; returns the exit status.

    ``classify``/``distance`` also take existing embeddings (:mod:`.sources`): a table, a folder of
    tables, an HDF5 store or a hoplite database. One input file writes only its table; a directory
    or manifest also writes ``summary.json`` and ``failures.csv`` in ``output_dir``.
    """

    if command in ("classify", "distance") and kind_of(inputs) is not None:
        return run_from_embeddings(command, inputs, output_dir, settings, query=query, metric=metric)
    fmt = settings.fmt or "csv"
    targets, single, root = input_targets(inputs, output_dir, command, fmt)
    return _table_run(command, targets, settings, report_dir=Path(output_dir), single=single,
                      write_report=not single, query=query, metric=metric, root=root)


def run_batch(command: str, source_csv: str | Path, settings: RunSettings, *, query: str | None = None,
              metric: str = "cosine", start_row: int | None = None, end_row: int | None = None,
              report_dir: str | Path | None = None) -> int:
    """Run a table command over the ``source,output`` rows of a CSV; rows whose table exists are skipped.

    ``summary.json`` and ``failures.csv`` go to ``report_dir`` (default: the CSV's folder).
    """
    if command not in KINDS:
        raise UsageError(f"batch runs {', '.join(KINDS)}, not {command!r} (train takes its CSV directly)")
    rows = read_batch_rows(source_csv, start_row=start_row, end_row=end_row)
    targets = batch_targets(rows, command, settings.fmt)
    where = Path(report_dir) if report_dir is not None else Path(source_csv).parent
    return _table_run(command, targets, settings, report_dir=where, single=False, write_report=True,
                      query=query, metric=metric)
