"""perch-hoplite databases as an output of window models (Perch 2.0, BirdNET, any window backend).

A database is perch-hoplite's own: a folder with ``hoplite.sqlite`` and ``usearch.index``,
written through its API (``perch_hoplite.db.sqlite_usearch_impl.SQLiteUSearchDB``; imported only
when a writer is made). Its layout, as perch-hoplite 1.0.2 and the tools built on it
(BirdNET-Analyzer's embeddings, OpenSoundscape, perch-runner) read it:

* metadata ``model_config``: ``{model_key, embedding_dim, model_config, logits_key, logits_idxes}``,
  hoplite's ``agile.embed.ModelConfig``, with the zoo's preset for the model
  (``taxonomy_model_tf`` for Perch 2.0, ``birdnet`` for BirdNET 2.4, ``perch_v2_onnx`` for the ONNX
  export) and the local model file or folder as ``model_path``, so
  ``model_configs.get_model_class(key).from_config(cfg.model_config)`` loads the model again;
* metadata ``audio_sources``: one ``AudioSourceConfig`` (``dataset_name``, ``base_path`` = the
  audio root, ``file_glob``, ``min_audio_len_s``, ``target_sample_rate_hz = -2``: the model's rate,
  ``shard_len_s = None``: whole files), so ``agile.audio_loader.make_filepath_loader`` finds
  ``base_path / filename``;
* metadata ``audio_embeddings``: this toolkit's provenance (model, checkpoint, hop, window rules, versions);
* a deployment per folder under the root (hoplite's own rule: the first folder of the file's
  path, or the dataset name for files at the root), or one named deployment per run or part;
* a recording per file: ``filename`` is the path relative to the audio root, ``/``-separated;
* a window per embedding row: ``offsets = [start, start + window]`` in seconds, which
  hoplite's loader cuts (``load_audio_window(path, start, window_size_s=window)``).

**float16.** hoplite's usearch store keeps vectors as float16 only: an embedding read back
from the database differs from the float32 the model gave by up to ~1e-3 relative
(half precision, 11-bit mantissa). The ``.npy``/``.mat``/tables keep float32; search and
classifiers over a database see the float16 values (as they do in hoplite).

**Resume.** ``is_complete(key)`` looks in the database: a file is done when its recording is there,
every one of its windows has a vector in the index and, given a ``stamper``, the recording's stamp
(column ``audio_embeddings_stamp`` of hoplite's ``recordings`` table, added with hoplite's own
``add_extra_table_column``: the run's settings hash and the input's size, mtime and content hash,
:mod:`audio_embeddings.corpus.stamps`) matches the input and settings now. The run's settings that
make the vectors (model, weights digest, cutting and window options) are kept as metadata
``audio_embeddings_settings``; a run with other settings, or over a recording whose input changed,
is refused naming what changed (``overwrite`` redoes those files: their old windows and vectors are
removed in the same transaction that adds the new ones). A write that fails is rolled back (a
SQLite savepoint; the index is changed only after the SQL succeeded); a commit that fails (a full
disk) leaves the files since the last commit out of the database, and every later write and
``close`` fail with the same error (a full disk as :class:`~.atomic.NoSpaceError`), so the run's
done count is what the database holds. One run at a time: given ``lock`` (the run lock,
:func:`audio_embeddings.corpus.lock.acquire_run_lock`), the writer holds it on the database
folder until it is closed. The writer commits every
``commit_files`` files or ``commit_s`` seconds (the index is written to a temporary file and renamed
into place), so a killed run loses at most the files since the last commit; on open, a recording
whose windows lack vectors (a kill between the SQLite commit and the index save) is removed and
embedded again.

**Shards.** With ``shard`` (not the whole corpus) each shard writes its own database,
``DIR.parts/<shard label>/``, and treats a file found in ``DIR`` or any part as done;
:func:`merge_hoplite` then copies the parts into ``DIR`` (resumable as well). hoplite's own
``perch_hoplite.db.multi_db_impl.MultiDBWrapper`` can also search the parts without merging.
"""

from __future__ import annotations

import os
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..backends.base import Option
from ..atomic import free_bytes, is_no_space, NoSpaceError

HOPLITE_SQLITE = "hoplite.sqlite"
HOPLITE_INDEX = "usearch.index"
#: The output option of every script (window models): declared once, here.
OPTIONS = (Option("--hoplite-db", "hoplite_db", "also write a perch-hoplite database (window models: perch_v2, "
                  "birdnet, ...) into this folder; hoplite stores float16", metavar="DIR", affects="elsewhere",
                  matlab="HopliteDb"),)
PROVENANCE_KEY = "audio_embeddings"
#: Metadata key of the settings that made the database's vectors (JSON text, see :meth:`HopliteWriter.__init__`).
SETTINGS_KEY = "audio_embeddings_settings"
#: hoplite extra column of ``recordings`` holding each recording's stamp (JSON text).
STAMP_COLUMN = "audio_embeddings_stamp"
#: Run-lock label of a whole (unsharded) run (``Shard.label`` of shard 0 of 1).
WHOLE_RUN_LABEL = "shard-0000-of-0001"
FLOAT16_NOTE = ("perch-hoplite's usearch store keeps float16 vectors: values read back from the database "
                "differ from the model's float32 by up to ~1e-3 relative")
#: Zoo presets of perch-hoplite 1.0.2 (``zoo/model_configs.py``, ``get_preset_model_config``), by our model name:
#: (model_key, embedding_dim, model_config). ``model_path`` is set to the local model when there is one.
HOPLITE_PRESETS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "birdnet": ("birdnet", 1024, {
        "class_list_name": "birdnet_v2_4", "window_size_s": 3.0, "hop_size_s": 3.0, "sample_rate": 48000,
        "model_path": "gs://chirp-public-bucket/models/birdnet/V2.4/BirdNET_GLOBAL_6K_V2.4_Model_FP16.tflite",
        "num_tflite_threads": 4}),
    "perch_v2": ("taxonomy_model_tf", 1536, {
        "window_size_s": 5.0, "hop_size_s": 5.0, "sample_rate": 32000,
        "tfhub_path": "google/bird-vocalization-classifier/tensorFlow2/perch_v2", "tfhub_version": 2,
        "model_path": ""}),
    "perch_v2_cpu": ("taxonomy_model_tf", 1536, {
        "window_size_s": 5.0, "hop_size_s": 5.0, "sample_rate": 32000,
        "tfhub_path": "google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu", "tfhub_version": 1,
        "model_path": ""}),
    "perch_v2_onnx": ("perch_v2_onnx", 1536, {
        "sample_rate": 32000, "window_size_s": 5.0, "peak_norm": 0.25,
        "output_map": {"embedding": "embedding", "logits": "label", "frontend": "spectrogram"}}),
}
#: hoplite preset names (``ModelConfigName``) of the entries above.
HOPLITE_PRESET_NAMES = {"birdnet": "birdnet_V2.4", "perch_v2": "perch_v2_gpu", "perch_v2_cpu": "perch_v2_cpu",
                        "perch_v2_onnx": "perch_v2_onnx"}


class HopliteError(ValueError):
    """A database that cannot be written or read as asked (other model, other dimension, not hoplite)."""


def _hoplite():
    try:
        from perch_hoplite.db import sqlite_usearch_impl
    except ImportError as exc:
        raise ImportError(f"--hoplite-db needs perch-hoplite (pip install --no-deps perch-hoplite==1.0.2 etils "
                          f"ml-collections usearch; see requirements.txt): {exc}") from None
    return sqlite_usearch_impl


def _config_dict(value: Any):
    from ml_collections import config_dict

    return config_dict.ConfigDict(value)


def _plain(value: Any) -> Any:
    """ConfigDict / numpy values -> plain JSON-able Python."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _config_safe(value: Any) -> Any:
    """ConfigDict takes no dots in keys (``saved_model.pb``): they become ``_``."""
    if isinstance(value, Mapping):
        return {str(k).replace(".", "_"): _config_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_config_safe(v) for v in value]
    return value


def is_hoplite_db(path: str | Path) -> bool:
    """``path`` is a hoplite database folder (holds ``hoplite.sqlite``)."""
    p = Path(path)
    return p.is_dir() and (p / HOPLITE_SQLITE).is_file()


def hoplite_model_config(model: str, *, embedding_dim: int, window_s: float, hop_s: float, sample_rate_hz: int,
                         checkpoint: str | None = None, model_path: str | None = None) -> dict[str, Any]:
    """hoplite's ``ModelConfig`` (as a plain dict) for one of our window models.

    Parameters
    ----------
    model : str
        Our model name (``birdnet``, ``perch_v2``, ``perch_v2_cpu``; others get ``model_key`` = the name).
    embedding_dim, window_s, hop_s, sample_rate_hz
        The run's geometry (the hop overrides the preset's ``hop_size_s``).
    checkpoint : str, optional
        What the model was loaded from (a hub handle, or a local path).
    model_path : str, optional
        The local file or folder the weights were read from.

    Returns
    -------
    dict
        ``{"model_key", "embedding_dim", "model_config": {...}, "logits_key": None, "logits_idxes": None}``.
    """
    local = model_path if model_path and Path(model_path).exists() else None
    if local is None and checkpoint and Path(checkpoint).exists():
        local = checkpoint
    name = str(model)
    if name.startswith("perch") and local and str(local).endswith(".onnx"):
        name = "perch_v2_onnx"
    if name.startswith("perch_v2") and name not in HOPLITE_PRESETS:
        name = "perch_v2"
    if name in HOPLITE_PRESETS:
        key, dim, preset = HOPLITE_PRESETS[name]
        inner = dict(preset)
        if name.startswith("perch_v2") and name != "perch_v2_onnx":
            if checkpoint and not Path(checkpoint).exists():  # a Kaggle handle: hoplite downloads it the same way
                inner["tfhub_path"] = str(checkpoint)
            elif local:
                inner.update(tfhub_path=None, tfhub_version=None, model_path=str(Path(local).resolve()))
        elif local:
            inner["model_path"] = str(Path(local).resolve())
        if "hop_size_s" in inner or name == "perch_v2_onnx":
            inner["hop_size_s"] = float(hop_s)
        inner["window_size_s"] = float(window_s)
        inner["sample_rate"] = int(sample_rate_hz)
        if int(embedding_dim) != dim:
            key = name  # not the preset's model (another BirdNET/Perch-shaped file): do not claim it
    else:
        key = name
        inner = {"window_size_s": float(window_s), "hop_size_s": float(hop_s), "sample_rate": int(sample_rate_hz),
                 "model_path": str(Path(local).resolve()) if local else (checkpoint or "")}
    return {"model_key": key, "embedding_dim": int(embedding_dim), "model_config": inner,
            "logits_key": None, "logits_idxes": None}


def backend_model_config(backend: Any) -> dict[str, Any]:
    """:func:`hoplite_model_config` of a loaded window backend."""
    info = backend.describe()
    return hoplite_model_config(backend.name, embedding_dim=int(backend.embedding_dim), window_s=float(backend.window_s),
                                hop_s=float(backend.frame_stride_s), sample_rate_hz=int(backend.sample_rate_hz),
                                checkpoint=info.get("checkpoint") or getattr(backend, "source", None),
                                model_path=info.get("model_path") or info.get("checkpoint"))


def deployment_of(filename: str, dataset_name: str) -> str:
    """hoplite's rule (``SourceId.deployment_name_from_file_id``): the first folder, or the dataset name."""
    return filename.split("/", 1)[0] if "/" in filename else dataset_name


def hoplite_part_path(db_dir: str | Path, shard_label: str) -> Path:
    """Where a shard's database goes: ``DIR.parts/<label>``."""
    p = Path(db_dir)
    return p.with_name(p.name + ".parts") / shard_label


def hoplite_parts(db_dir: str | Path) -> list[Path]:
    """The shard databases of ``DIR`` (``DIR.parts/*``), sorted."""
    p = Path(db_dir)
    root = p.with_name(p.name + ".parts")
    return sorted(d for d in root.iterdir() if is_hoplite_db(d)) if root.is_dir() else []


def open_hoplite(path: str | Path, *, readonly: bool = True):
    """Open an existing hoplite database (hoplite's ``SQLiteUSearchDB``).

    Raises
    ------
    HopliteError
        ``path`` is not a hoplite database.
    """
    if not is_hoplite_db(path):
        raise HopliteError(f"{path}: not a perch-hoplite database (no {HOPLITE_SQLITE})")
    impl = _hoplite()
    if readonly and not (Path(path) / HOPLITE_INDEX).is_file():
        raise HopliteError(f"{path}: the database has no {HOPLITE_INDEX} (no embeddings were committed)")
    return impl.SQLiteUSearchDB.create(str(path), readonly=readonly)


def read_model_config(db: Any) -> dict[str, Any] | None:
    """The database's ``model_config`` metadata as a plain dict (None when absent)."""
    try:
        return _plain(db.get_metadata("model_config"))
    except KeyError:
        return None


def _recordings_state(db: Any) -> tuple[dict[tuple[str | None, str], str | None], list[int], np.ndarray]:
    """The database's recordings as the writer sees them.

    Returns
    -------
    complete : dict
        ``(project, filename)`` -> the recording's stamp (JSON text, or None) for every recording whose
        windows all have a vector in the index.
    incomplete : list of int
        Ids of recordings with a window that lacks its vector (a kill between the SQLite commit and the
        index save).
    orphans : numpy.ndarray
        int64 [K] ids of vectors in the index whose window is not in SQLite (left by the same kind of kill
        after a file was redone).
    """
    deployments = {d.id: d.project for d in db.get_all_deployments()}
    recordings = {r.id: ((deployments.get(r.deployment_id), r.filename), getattr(r, STAMP_COLUMN, None))
                  for r in db.get_all_recordings()}
    windows = db.get_all_windows()
    by_recording: dict[int, list[int]] = {}
    for w in windows:
        by_recording.setdefault(int(w.recording_id), []).append(int(w.id))
    incomplete: list[int] = []
    ids = np.array([int(w.id) for w in windows], dtype=np.int64)
    if windows:
        found = np.asarray(db.ui.contains(ids), dtype=bool).reshape(-1) if len(db.ui) else np.zeros(len(ids), bool)
        missing = {int(i) for i in ids[~found]}
        incomplete = [r for r, wids in by_recording.items() if any(w in missing for w in wids)]
    orphans = np.zeros(0, dtype=np.int64)
    if len(db.ui) > len(ids) - len(incomplete):
        orphans = np.setdiff1d(np.asarray(db.ui.keys, dtype=np.int64), ids)
    bad = set(incomplete)
    complete = {rec: stamp for rid, (rec, stamp) in recordings.items() if rid not in bad}
    return complete, incomplete, orphans


def _complete_filenames(db: Any, project: str | None) -> tuple[set[tuple[str, str]], list[int]]:
    """((project, filename) of complete recordings, ids of incomplete ones)."""
    complete, incomplete, _ = _recordings_state(db)
    return {rec for rec in complete if project is None or rec[0] == project}, incomplete


def _ui_remove(db: Any, ids: Sequence[int] | np.ndarray) -> None:
    """Remove vectors from hoplite's usearch index (loaded into memory first, as hoplite does)."""
    ids = np.asarray(list(ids), dtype=np.int64)
    if not len(ids):
        return
    if not db._ui_loaded:
        db.ui.load()
        db._ui_loaded = True
    db.ui.remove(ids)
    db._ui_updated = True


def _remove_recording(db: Any, recording_id: int) -> None:
    """Remove a recording and its windows (vectors too): hoplite's cascade needs ``foreign_keys``,
    which it turns on only when it creates the tables, so the windows go first."""
    from ml_collections import config_dict

    for w in db.get_all_windows(filter=config_dict.create(eq=dict(recording_id=int(recording_id)))):
        db.remove_window(int(w.id))
    db.remove_recording(int(recording_id))


def _atomic_commit(db: Any) -> None:
    """The index written to a temporary file, then SQLite committed, then the index renamed over ``usearch.index``.

    A failure before the SQLite commit (the index cannot be saved: a full disk) commits nothing; a
    kill between the commit and the rename leaves windows without vectors, which the next writer
    removes and embeds again.

    (hoplite's own ``commit`` saves the index in place, so a kill during the save would leave a
    torn index.) Falls back to hoplite's ``commit`` when its internals differ from 1.0.2's.
    """
    index_path = Path(str(db.usearch_path))
    if not hasattr(db, "_ui_updated") or not hasattr(db, "ui"):
        db.commit()
        return
    if not db._ui_updated:
        db.db.commit()
        db.commit()  # closes hoplite's cursor; nothing left to save
        return
    tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.tmp")
    try:  # the index first: when it cannot be saved (a full disk) nothing is committed
        db.ui.save(str(tmp))
        db.db.commit()
        os.replace(tmp, index_path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never a temporary left behind
        raise
    db._ui_updated = False
    db.commit()  # closes hoplite's cursor; nothing left to save


def _remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove ``.usearch.index.<pid>.tmp`` files of processes that are gone (a killed commit)."""
    removed = []
    for tmp in folder.glob(f".{HOPLITE_INDEX}.*.tmp"):
        pid = tmp.name[len(HOPLITE_INDEX) + 2:-len(".tmp")]
        alive = pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid))
        if not alive:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _write_error(exc: BaseException, path: Path) -> BaseException:
    """A failed database write as the run reports it: a full disk (SQLite's ``SQLITE_FULL``, ``ENOSPC``,
    an index that could not be saved on a full device) becomes :class:`NoSpaceError` naming ``path``."""
    import sqlite3

    if isinstance(exc, NoSpaceError):
        return exc
    full = is_no_space(exc)
    if isinstance(exc, sqlite3.Error):
        full = full or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(exc).lower()
    elif isinstance(exc, (OSError, RuntimeError)) and not full:
        free = free_bytes(path) if path.exists() else None
        index = path / HOPLITE_INDEX
        needed = (index.stat().st_size if index.is_file() else 0) + 2 ** 20
        full = free is not None and free < needed
    if full:
        err = NoSpaceError(path, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        err.__cause__ = exc
        return err
    return exc


class HopliteWriter:
    """The corpus engine's writer for a hoplite database (``--hoplite-db DIR``).

    Stamps come in one of two ways: give ``stamper`` (the writer checks and records them itself), or
    wrap the writer in :class:`~audio_embeddings.corpus.writers.StampedWriter` (it has
    ``supports_stamps``, ``stored_stamp`` and ``write(..., stamp=)``, as the tree outputs do).

    Parameters
    ----------
    db_dir : path-like
        The database folder (created when missing).
    model_config : dict
        hoplite's ``model_config`` (:func:`backend_model_config`); must match a database that exists.
    window_s : float
        Window length: ``offsets = [start, start + window_s]``.
    audio_root : path-like, optional
        Folder the recordings' file names are relative to (``audio_sources.base_path``); default: found
        from the first file (its path minus its key).
    dataset_name : str
        hoplite's dataset (and project) name; default: the audio root's folder name.
    deployment : str, optional
        Put every recording of this run under one deployment of this name (one per run or part);
        default: hoplite's rule (:func:`deployment_of`).
    filenames : mapping, optional
        Engine key -> recording file name, where keys are not the relative paths (batch rows).
    shard_label : str, optional
        Write ``DIR.parts/<label>/`` instead of ``DIR`` (one database per shard); files found in
        ``DIR`` or any part count as done.
    min_audio_len_s : float
        ``audio_sources.min_audio_len_s`` (hoplite's default is 1.0 s).
    file_glob : str
        ``audio_sources.file_glob`` (for hoplite's own embedder run later on the same folder).
    provenance : dict, optional
        JSON-able facts stored under metadata ``audio_embeddings``.
    overwrite : bool
        Redo files that are already in the database (their old windows are removed), and replace the
        database's recorded ``settings``.
    commit_files, commit_s : int, float
        Commit after this many files or seconds.
    settings : dict, optional
        The run settings that make the vectors (flag -> value: model, ``--model weights``, cutting and
        window options); kept as metadata ``audio_embeddings_settings``. A database made with other
        settings is refused (:class:`HopliteError` naming each change) unless ``overwrite``.
    stamper : Stamper, optional
        :class:`audio_embeddings.corpus.stamps.Stamper` of the run, whose ``settings_hash`` should be
        the hash of ``settings``: each recording gets the input's stamp, and a recording whose input
        or settings changed is not done (it is listed in :attr:`stale`). Without it only file names
        are checked (older databases, callers without stamps).
    input_paths : mapping, optional
        Engine key -> input file (what the stamps describe); default: ``audio_root / filename``.
    lock : callable, optional
        ``lock(db_dir, shard_label=...)`` -> a context manager holding the run lock of the database
        folder (:func:`audio_embeddings.corpus.lock.acquire_run_lock`): taken before the database is
        opened, released by :meth:`close`; a database in use by another run raises its exception
        (``RunLocked``, one line naming the holder).

    Attributes
    ----------
    stale : dict
        Key -> why its recording in the database does not count (filled by :meth:`is_complete`).
    """

    supports_stamps = True

    def __init__(self, db_dir: str | Path, *, model_config: Mapping[str, Any], window_s: float,
                 audio_root: str | Path | None = None, dataset_name: str | None = None, deployment: str | None = None,
                 filenames: Mapping[str, str] | None = None, shard_label: str | None = None,
                 min_audio_len_s: float = 1.0, file_glob: str = "**/*", provenance: Mapping[str, Any] | None = None,
                 overwrite: bool = False, commit_files: int = 64, commit_s: float = 30.0,
                 settings: Mapping[str, Any] | None = None, stamper: Any = None,
                 input_paths: Mapping[str, str] | None = None, lock: Callable[..., Any] | None = None):
        import contextlib

        impl = _hoplite()
        self.db = None
        self.target = Path(db_dir)
        self.path = hoplite_part_path(self.target, shard_label) if shard_label else self.target
        self._held = contextlib.ExitStack()
        try:
            if lock is not None:
                self._held.enter_context(lock(self.target, shard_label=shard_label or WHOLE_RUN_LABEL))
            self._open(impl, model_config=model_config, window_s=window_s, audio_root=audio_root,
                       dataset_name=dataset_name, deployment=deployment, filenames=filenames,
                       min_audio_len_s=min_audio_len_s, file_glob=file_glob, provenance=provenance,
                       overwrite=overwrite, commit_files=commit_files, commit_s=commit_s, settings=settings,
                       stamper=stamper, input_paths=input_paths)
        except BaseException:
            if self.db is not None:
                self.db.db.close()
                self.db = None
            self._held.close()
            raise

    # -- opening -----------------------------------------------------------------------------

    def _open(self, impl: Any, *, model_config: Mapping[str, Any], window_s: float, audio_root: Any,
              dataset_name: str | None, deployment: str | None, filenames: Mapping[str, str] | None,
              min_audio_len_s: float, file_glob: str, provenance: Mapping[str, Any] | None, overwrite: bool,
              commit_files: int, commit_s: float, settings: Mapping[str, Any] | None, stamper: Any,
              input_paths: Mapping[str, str] | None) -> None:
        self.model_config = _config_safe(_plain(dict(model_config)))
        self.embedding_dim = int(self.model_config["embedding_dim"])
        self.window_s = float(window_s)
        self.audio_root = Path(audio_root) if audio_root is not None else None
        self.dataset_name = dataset_name
        self.deployment = deployment
        self.filenames = dict(filenames or {})
        self.min_audio_len_s = float(min_audio_len_s)
        self.file_glob = file_glob
        self.provenance = _config_safe(_plain(dict(provenance or {})))
        self.overwrite = bool(overwrite)
        self.commit_files, self.commit_s = int(commit_files), float(commit_s)
        self.settings = None if settings is None else _settings_json(settings)
        self.stamper = stamper
        self.input_paths = {k: str(v) for k, v in (input_paths or {}).items()}
        self.stale: dict[str, str] = {}
        self._deployments: dict[tuple[str, str], int] = {}
        self._pending: list[str] = []  # keys written since the last commit
        self._last_commit = time.monotonic()
        self._sources_written = False
        self._done_keys: set[str] = set()  # keys this writer wrote and committed
        self._done: dict[tuple[str | None, str], str | None] = {}  # (project, filename) -> stamp, found on open
        self._complete: dict[str, bool] = {}
        self._broken: BaseException | None = None
        if self.path.is_dir():
            _remove_stale_temporaries(self.path)
        exists = is_hoplite_db(self.path)
        usearch_cfg = None if exists and self._has_usearch_config() else \
            impl.get_default_usearch_config(self.embedding_dim)
        self.db = impl.SQLiteUSearchDB.create(str(self.path), usearch_cfg=usearch_cfg)
        if int(self.db.get_embedding_dim()) != self.embedding_dim:
            raise HopliteError(f"{self.path} holds {self.db.get_embedding_dim()}-d embeddings, this run makes "
                               f"{self.embedding_dim}-d ones; choose another --hoplite-db")
        self._check_model_config()
        self._check_settings()
        if STAMP_COLUMN not in self.db.get_extra_table_columns().get("recordings", {}):
            self.db.add_extra_table_column("recordings", STAMP_COLUMN, str)
            _atomic_commit(self.db)
        self._repair_and_index()

    def _has_usearch_config(self) -> bool:
        import json
        import sqlite3

        con = sqlite3.connect(f"file:{(self.path / HOPLITE_SQLITE).as_posix()}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM hoplite_metadata WHERE key = 'usearch_config'").fetchone()
        except sqlite3.Error:
            row = None
        finally:
            con.close()
        return row is not None and bool(json.loads(row[0]))

    def _check_model_config(self) -> None:
        existing = read_model_config(self.db)
        if existing is None:
            self.db.insert_metadata("model_config", _config_dict(self.model_config))
            _atomic_commit(self.db)
            return
        if existing.get("model_key") != self.model_config["model_key"] or \
                int(existing.get("embedding_dim", -1)) != self.embedding_dim:
            raise HopliteError(
                f"{self.path} was made with model_key {existing.get('model_key')!r} ({existing.get('embedding_dim')}-d); "
                f"this run is {self.model_config['model_key']!r} ({self.embedding_dim}-d): choose another --hoplite-db")
        old, new = existing.get("model_config") or {}, self.model_config["model_config"]
        for k in ("window_size_s", "hop_size_s", "sample_rate"):
            if k in old and k in new and old[k] != new[k]:
                raise HopliteError(f"{self.path} was made with {k} = {old[k]!r}, this run has {new[k]!r}; "
                                   "choose another --hoplite-db (or --overwrite it as a new folder)")

    def _check_settings(self) -> None:
        """Refuse a database made with other settings (unless ``overwrite``); record this run's."""
        if self.settings is None:
            return
        stored = read_settings(self.db)
        if stored is not None and stored != self.settings and not self.overwrite:
            changed = [(k, stored.get(k), self.settings.get(k)) for k in sorted(set(stored) | set(self.settings))
                       if stored.get(k) != self.settings.get(k)]
            detail = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed)
            raise HopliteError(f"{self.path} holds windows made with other settings ({detail}); use --overwrite to "
                               "redo them, or choose another --hoplite-db")
        if stored != self.settings:
            import json

            self.db.insert_metadata(SETTINGS_KEY, _config_dict(
                {"settings_json": json.dumps(self.settings, sort_keys=True)}))
            _atomic_commit(self.db)

    def _repair_and_index(self) -> None:
        done, incomplete, orphans = _recordings_state(self.db)
        for rid in incomplete:
            _remove_recording(self.db, rid)
        _ui_remove(self.db, orphans)
        if incomplete or len(orphans):
            _atomic_commit(self.db)
        self._done = dict(done)
        for other in ([self.target] + hoplite_parts(self.target)) if self.path != self.target else []:
            if other.resolve() == self.path.resolve() or not is_hoplite_db(other):
                continue
            try:
                db = open_hoplite(other)
            except (HopliteError, OSError, RuntimeError, ValueError):
                continue
            for rec, stamp in _recordings_state(db)[0].items():
                self._done.setdefault(rec, stamp)
            db.db.close()

    # -- the writer protocol -----------------------------------------------------------------

    def _filename(self, key: str, input_path: str | None) -> str:
        if key in self.filenames:
            return self.filenames[key]
        if self.audio_root is not None and input_path:
            try:
                return PurePosixPath(*Path(os.path.abspath(input_path)).relative_to(
                    os.path.abspath(self.audio_root)).parts).as_posix()
            except ValueError:
                pass
        return PurePosixPath(key).as_posix()

    def _project(self) -> str:
        return self.dataset_name or (self.audio_root.resolve().name if self.audio_root else "") or "audio_embeddings"

    def _input_path(self, key: str, input_path: str | None = None) -> str:
        """The input the stamps of ``key`` describe."""
        if key in self.input_paths:
            return self.input_paths[key]
        if input_path:
            return str(input_path)
        name = self.filenames.get(key, PurePosixPath(key).as_posix())
        return str(self.audio_root / name) if self.audio_root is not None else key

    def stored_stamp(self, key: str) -> dict[str, Any] | None:
        """The stamp recorded with ``key``'s recording (None: not in the database, or no stamp)."""
        import json

        name = self.filenames.get(key, PurePosixPath(key).as_posix())
        text = next((stamp for (_, filename), stamp in self._done.items() if filename == name), None)
        try:
            value = json.loads(text) if text else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _recorded(self, key: str) -> bool:
        name = self.filenames.get(key, PurePosixPath(key).as_posix())
        return any(filename == name for _, filename in self._done)

    def is_complete(self, key: str, stamp: Mapping[str, Any] | None = None) -> bool:
        """The file's recording (and all its windows' vectors) is in this database, the merged one or a part,
        and (with a ``stamper``) its stamp matches the input and settings now; or this writer committed it.

        Given ``stamp`` (a :class:`~audio_embeddings.corpus.writers.StampedWriter` around this writer):
        committed by this writer, or recorded with exactly that stamp.
        """
        if key in self._done_keys:
            return True
        if self.overwrite or key in self._pending:
            return False
        if stamp is not None:
            return self._recorded(key) and self.stored_stamp(key) == _settings_json(stamp)
        if key not in self._complete:
            if not self._recorded(key):
                self._complete[key] = False
            elif self.stamper is None:
                self._complete[key] = True
            else:
                stored = self.stored_stamp(key)
                why = self.stamper.difference(stored, self._input_path(key))
                self._complete[key] = why is None
                if why is not None and stored is not None:
                    self.stale[key] = why
        return self._complete[key]

    def first_stale(self, keys: Iterable[str]) -> tuple[str, str, int] | None:
        """(key, reason, how many) of the first key whose recording exists but was made from another input
        or with other settings (a phrase completing "the windows of KEY ...")."""
        found = [k for k in keys if not self.is_complete(k) and k in self.stale]
        return (found[0], self.stale[found[0]], len(found)) if found else None

    def _deployment_id(self, name: str, project: str) -> int:
        from ml_collections import config_dict

        if (name, project) not in self._deployments:
            found = self.db.get_all_deployments(config_dict.create(eq=dict(name=name, project=project)))
            self._deployments[(name, project)] = int(found[0].id) if found else \
                int(self.db.insert_deployment(name=name, project=project))
        return self._deployments[(name, project)]

    def _write_sources(self, input_path: str | None, key: str) -> None:
        if self.audio_root is None and input_path:
            full = PurePosixPath(Path(os.path.abspath(input_path)).as_posix())
            parts = PurePosixPath(key).parts
            if len(full.parts) > len(parts) and full.parts[-len(parts):] == parts:
                self.audio_root = Path(*full.parts[:-len(parts)])
            else:
                self.audio_root = Path(os.path.abspath(input_path)).parent
        from perch_hoplite.agile import source_info

        mine = source_info.AudioSources((source_info.AudioSourceConfig(
            dataset_name=self._project(), base_path=str(self.audio_root), file_glob=self.file_glob,
            min_audio_len_s=self.min_audio_len_s, target_sample_rate_hz=-2, shard_len_s=None),))
        try:
            existing = source_info.AudioSources.from_config_dict(self.db.get_metadata("audio_sources"))
            mine = mine.merge_update(existing)
        except KeyError:
            pass
        except ValueError as exc:
            raise HopliteError(f"{self.path}: audio_sources do not match this run ({exc})") from None
        self.db.insert_metadata("audio_sources", mine.to_config_dict())
        if self.provenance:
            self.db.insert_metadata(PROVENANCE_KEY, _config_dict(self.provenance))
        self._sources_written = True

    def write(self, key: str, result: Any, *, input_path: str, audio_info: Mapping[str, Any],
              stamp: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Add one file: its recording (with its stamp) and a window (with its vector) per embedding row.

        The file's old recording, windows and vectors (a redone file) go in the same transaction; a
        write that fails leaves the database as it was (a savepoint), so no recording is left without
        its windows.

        Raises
        ------
        HopliteError
            The embeddings are not [T, D] with this database's D.
        NoSpaceError
            The disk is full (SQLite's, the index's or an earlier commit's failure).
        """
        import json

        if self._broken is not None:
            raise self._broken
        emb = np.asarray(result.embeddings, dtype=np.float32)
        if emb.ndim != 2 or (emb.size and emb.shape[1] != self.embedding_dim):
            raise HopliteError(f"a hoplite database takes [T, {self.embedding_dim}] window embeddings, "
                               f"got {list(emb.shape)}")
        if stamp is None and self.stamper is not None:
            stamp = self.stamper.full(self._input_path(key, input_path), sha256=audio_info.get("input_sha256"))
        starts = np.asarray(result.time_axis_s, dtype=np.float64)
        try:
            new_ids, old_ids = self._insert(key, input_path, starts, stamp=json.dumps(dict(stamp), sort_keys=True)
                                            if stamp is not None else None)
            _ui_remove(self.db, old_ids)  # the index changes only once the SQL is in
            if len(new_ids):
                if not self.db._ui_loaded:
                    self.db.ui.load()
                    self.db._ui_loaded = True
                self.db.ui.add(np.asarray(new_ids, dtype=np.int64), emb.astype(self.db.get_embedding_dtype()))
                self.db._ui_updated = True
        except HopliteError:
            raise
        except Exception as exc:  # noqa: BLE001 - said as the run says a failed write (a full disk: NoSpaceError)
            raise _write_error(exc, self.path) from exc
        self._complete.pop(key, None)
        self.stale.pop(key, None)
        self._pending.append(key)
        if len(self._pending) >= self.commit_files or time.monotonic() - self._last_commit >= self.commit_s:
            self.commit()
        return {"hoplite_db": str(self.path), "store": str(self.path), "windows": int(len(starts))}

    def _insert(self, key: str, input_path: str, starts: np.ndarray, *, stamp: str | None) -> tuple[list, list]:
        """The SQL part of :meth:`write`, in a savepoint: (new window ids, old window ids to drop from the index)."""
        from ml_collections import config_dict

        con = self.db.db
        if not con.in_transaction:
            con.execute("BEGIN")
        con.execute("SAVEPOINT audio_embeddings_file")
        sources_here = not self._sources_written
        try:
            if sources_here:
                self._write_sources(input_path, key)
            filename = self._filename(key, input_path)
            project = self._project()
            deployment_id = self._deployment_id(self.deployment or deployment_of(filename, project), project)
            old_ids: list[int] = []
            for old in self.db.get_all_recordings(config_dict.create(eq=dict(filename=filename,
                                                                             deployment_id=deployment_id))):
                old_ids += [int(i) for i, in con.execute("SELECT id FROM windows WHERE recording_id = ?",
                                                          (int(old.id),))]
                con.execute("DELETE FROM windows WHERE recording_id = ?", (int(old.id),))
                con.execute("DELETE FROM recordings WHERE id = ?", (int(old.id),))
            extra = {STAMP_COLUMN: stamp} if stamp is not None else {}
            recording_id = int(self.db.insert_recording(filename=filename, deployment_id=deployment_id, **extra))
            new_ids: list[int] = []
            if len(starts):
                windows = [{"recording_id": recording_id, "offsets": [float(s), float(s) + self.window_s]}
                           for s in starts]
                new_ids = [int(i) for i in self.db.insert_windows_batch(windows, None, handle_duplicates="allow")]
            con.execute("RELEASE SAVEPOINT audio_embeddings_file")
        except BaseException:
            con.execute("ROLLBACK TO SAVEPOINT audio_embeddings_file")
            con.execute("RELEASE SAVEPOINT audio_embeddings_file")
            self._deployments.clear()  # a deployment inserted in the savepoint is gone again
            if sources_here:
                self._sources_written = False
            raise
        return new_ids, old_ids

    def commit(self) -> None:
        """Make what was written so far durable (SQLite, then the index, atomically).

        Raises
        ------
        NoSpaceError
            The disk is full: the files written since the last commit are not in the database, and
            every later write and :meth:`close` raise the same error.
        """
        if self._broken is not None:
            raise self._broken
        try:
            _atomic_commit(self.db)
        except Exception as exc:  # noqa: BLE001 - the writer stops here: see the docstring
            with _suppress():
                self.db.db.rollback()
            self._broken = _write_error(exc, self.path)
            self._pending.clear()
            raise self._broken from exc
        self._done_keys.update(self._pending)
        self._pending.clear()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit and close the database, then release the run lock.

        Raises
        ------
        NoSpaceError or the commit's error
            The last commit (or an earlier one) failed: the files since the last good commit are not
            in the database.
        """
        if getattr(self, "db", None) is None:
            self._held.close()
            return
        try:
            if self._broken is None:
                self.commit()
        finally:
            with _suppress():
                if self.db.db.in_transaction:
                    self.db.db.rollback()
            self.db.db.close()
            self.db = None
            self._held.close()
        if self._broken is not None:
            raise self._broken


def _suppress():
    import contextlib
    import sqlite3

    return contextlib.suppress(sqlite3.Error, OSError)


def _settings_json(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as JSON gives it back (tuples as lists, other objects as text): what is stored and compared."""
    import json

    return json.loads(json.dumps(dict(settings), sort_keys=True, default=str))


def read_settings(db: Any) -> dict[str, Any] | None:
    """The settings recorded with a database's vectors (metadata ``audio_embeddings_settings``), or None."""
    import json

    try:
        value = db.get_metadata(SETTINGS_KEY)
    except KeyError:
        return None
    try:
        settings = json.loads(_plain(value).get("settings_json", ""))
    except (TypeError, ValueError, AttributeError):
        return None
    return settings if isinstance(settings, dict) else None


def merge_hoplite(parts: Sequence[str | Path], target: str | Path, *, remove_parts: bool = False) -> dict[str, Any]:
    """Copy shard databases into one (``target``), through hoplite's API; resumable.

    Deployments are matched by ``(name, project)`` and recordings by ``(filename, deployment)``;
    a recording already complete in ``target`` is skipped, so the merge can be rerun after a
    kill. The float16 vectors are copied as they are (no second rounding). The parts must share
    ``model_key`` and ``embedding_dim``.

    Returns
    -------
    dict
        ``recordings`` copied, ``windows`` copied, ``skipped`` recordings, ``parts``, ``target``.
    """
    from ml_collections import config_dict

    impl = _hoplite()
    parts = [Path(p) for p in parts if is_hoplite_db(p)]
    if not parts:
        raise HopliteError("merge_hoplite: no part databases given")
    first = open_hoplite(parts[0])
    config = read_model_config(first)
    dim = int(first.get_embedding_dim())
    metadata = {k: _plain(v) for k, v in first.get_metadata(None).items()}
    first.db.close()
    out = impl.SQLiteUSearchDB.create(str(target), usearch_cfg=None if is_hoplite_db(target) and
                                      (Path(target) / HOPLITE_INDEX).exists() else impl.get_default_usearch_config(dim))
    existing = read_model_config(out)
    if existing is None and config is not None:
        out.insert_metadata("model_config", _config_dict(config))
    elif existing is not None and config is not None and (existing.get("model_key") != config.get("model_key") or
                                                          existing.get("embedding_dim") != config.get("embedding_dim")):
        raise HopliteError(f"{target}: model {existing.get('model_key')} ({existing.get('embedding_dim')}-d) differs "
                           f"from the parts' {config.get('model_key')} ({config.get('embedding_dim')}-d)")
    for k, v in metadata.items():
        if k not in ("model_config", "usearch_config"):
            try:
                out.get_metadata(k)
            except KeyError:
                out.insert_metadata(k, _config_dict(v))
    done, incomplete = _complete_filenames(out, None)
    for rid in incomplete:
        _remove_recording(out, rid)
    deployments: dict[tuple[str, str], int] = {(d.name, d.project): int(d.id) for d in out.get_all_deployments()}
    copied = windows_copied = skipped = 0
    for part in parts:
        src = open_hoplite(part)
        other = read_model_config(src)
        if config is not None and other is not None and (other.get("model_key") != config.get("model_key") or
                                                         other.get("embedding_dim") != config.get("embedding_dim")):
            raise HopliteError(f"{part}: model {other.get('model_key')} differs from {parts[0]}'s {config.get('model_key')}")
        src_deployments = {int(d.id): d for d in src.get_all_deployments()}
        by_recording: dict[int, list[Any]] = {}
        for w in src.get_all_windows():
            by_recording.setdefault(int(w.recording_id), []).append(w)
        for rec in src.get_all_recordings():
            dep = src_deployments.get(int(rec.deployment_id)) if rec.deployment_id is not None else None
            project = dep.project if dep is not None else None
            if (project, rec.filename) in done:
                skipped += 1
                continue
            dep_key = (dep.name, dep.project) if dep is not None else None
            dep_id = None
            if dep_key is not None:
                if dep_key not in deployments:
                    deployments[dep_key] = int(out.insert_deployment(name=dep.name, project=dep.project))
                dep_id = deployments[dep_key]
            stale = out.get_all_recordings(config_dict.create(eq=dict(filename=rec.filename, deployment_id=dep_id)))
            for old in stale:
                _remove_recording(out, int(old.id))
            stamp = getattr(rec, STAMP_COLUMN, None)
            new_id = int(out.insert_recording(filename=rec.filename, deployment_id=dep_id, datetime=rec.datetime,
                                              **({STAMP_COLUMN: stamp} if stamp else {})))
            wins = sorted(by_recording.get(int(rec.id), []), key=lambda w: (w.offsets[0], w.id))
            if wins:
                vectors = src.get_embeddings_batch(np.array([int(w.id) for w in wins], dtype=np.int64))
                out.insert_windows_batch([{"recording_id": new_id, "offsets": list(map(float, w.offsets))}
                                          for w in wins], np.asarray(vectors), handle_duplicates="allow")
            done.add((project, rec.filename))
            copied += 1
            windows_copied += len(wins)
        src.db.close()
        _atomic_commit(out)
    _atomic_commit(out)
    out.db.close()
    if remove_parts:
        import shutil

        for part in parts:
            shutil.rmtree(part, ignore_errors=True)
    return {"recordings": copied, "windows": windows_copied, "skipped": skipped, "parts": len(parts),
            "target": str(target)}


def iter_recordings(db: Any) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """Every recording of a database: ``(project, filename, starts [T], ends [T], embeddings float32 [T, D])``,
    windows sorted by start (the vectors are hoplite's float16, widened)."""
    deployments = {int(d.id): d.project for d in db.get_all_deployments()}
    by_recording: dict[int, list[Any]] = {}
    for w in db.get_all_windows():
        by_recording.setdefault(int(w.recording_id), []).append(w)
    dim = int(db.get_embedding_dim())
    for rec in sorted(db.get_all_recordings(), key=lambda r: (str(r.filename), int(r.id))):
        wins = sorted(by_recording.get(int(rec.id), []), key=lambda w: (w.offsets[0], w.id))
        if wins:
            emb = np.asarray(db.get_embeddings_batch(np.array([int(w.id) for w in wins], dtype=np.int64)),
                             dtype=np.float32)
        else:
            emb = np.zeros((0, dim), dtype=np.float32)
        starts = np.array([w.offsets[0] for w in wins], dtype=np.float64)
        ends = np.array([w.offsets[1] for w in wins], dtype=np.float64)
        yield deployments.get(int(rec.deployment_id)) if rec.deployment_id is not None else None, \
            str(rec.filename), starts, ends, emb


def iter_blocks(db: Any, *, block: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(window ids int64 [B], embeddings float32 [B, D])`` in blocks, for streamed search."""
    ids = np.asarray(db.match_window_ids(), dtype=np.int64)
    ids.sort()
    for i in range(0, len(ids), block):
        part = ids[i:i + block]
        yield part, np.asarray(db.get_embeddings_batch(part), dtype=np.float32)


def describe_windows(db: Any, ids: Iterable[int]) -> dict[int, tuple[str, float, float]]:
    """``window id -> (filename, start, end)`` for a few windows (search results)."""
    out: dict[int, tuple[str, float, float]] = {}
    names: dict[int, str] = {}
    for wid in ids:
        w = db.get_window(int(wid))
        rid = int(w.recording_id)
        if rid not in names:
            names[rid] = str(db.get_recording(rid).filename)
        out[int(wid)] = (names[rid], float(w.offsets[0]), float(w.offsets[1]))
    return out


__all__ = ["FLOAT16_NOTE", "HOPLITE_PRESETS", "HopliteError", "HopliteWriter", "backend_model_config",
           "deployment_of", "describe_windows", "hoplite_model_config", "hoplite_part_path", "hoplite_parts",
           "is_hoplite_db", "iter_blocks", "iter_recordings", "merge_hoplite", "open_hoplite", "read_model_config",
           "read_settings", "writer_for_backend"]


def writer_for_backend(db_dir: str | Path, backend: Any, *, audio_root: str | Path,
                       filenames: Mapping[str, str] | None = None, shard_label: str | None = None,
                       overwrite: bool = False, provenance: Mapping[str, Any] | None = None,
                       settings: Mapping[str, Any] | None = None, stamper: Any = None,
                       input_paths: Mapping[str, str] | None = None,
                       lock: Callable[..., Any] | None = None) -> "HopliteWriter":
    """The :class:`HopliteWriter` of a run of a loaded window ``backend`` (``--hoplite-db DIR``).

    ``settings``, ``stamper``, ``input_paths`` and ``lock``: see :class:`HopliteWriter` (a front end
    gives all four, so that a changed input or setting is redone or refused and a second run on the
    same database is refused: ``settings`` = the run's settings that make the vectors, including
    ``"--model weights": weights_digest(backend)``; ``stamper = Stamper(settings_hash=settings_hash(settings))``;
    ``lock = acquire_run_lock``).

    Raises
    ------
    HopliteError
        ``backend`` makes frames or one row per recording, not windows.
    """
    if backend.framing != "windows":
        raise HopliteError(f"needs a window model (perch_v2, perch_v2_cpu, birdnet, ...); {backend.name} makes "
                           f"{'one row per recording' if backend.framing == 'utterance' else 'frames'}, not windows")
    return HopliteWriter(db_dir, model_config=backend_model_config(backend), window_s=float(backend.window_s),
                         audio_root=audio_root, filenames=filenames, shard_label=shard_label,
                         min_audio_len_s=float(backend.min_samples) / float(backend.sample_rate_hz),
                         overwrite=overwrite, provenance=provenance, settings=settings, stamper=stamper,
                         input_paths=input_paths, lock=lock)
