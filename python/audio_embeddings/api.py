"""The Python API: load a model once, then embed arrays in memory, files, or whole folders.

    >>> import audio_embeddings as ae
    >>> model = ae.load_model("ge2e", device="cpu")              # doctest: +SKIP
    >>> result = model.embed(samples, 22050)                     # doctest: +SKIP
    >>> result.embeddings.shape, result.time_axis_s[:2]          # doctest: +SKIP
    ((8, 256), array([0.  , 0.77]))

Everything runs through the same code as the scripts: resampling with soxr
(:mod:`audio_embeddings.audio`), whole-file chunking and time axes
(:func:`audio_embeddings.pipeline.embed_audio`), and for many files the corpus engine
(:func:`audio_embeddings.corpus.engine.run_corpus`: decoding in worker processes, batches
across files, resumable atomic outputs). Importing this module imports no deep-learning
framework; :func:`load_model` imports the one the model needs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

#: Name of the in-memory input in outputs and error messages.
MEMORY = "<memory>"

#: The API's keyword for each shared command-line flag that an error message may name
#: (the model's own options are named by their ``Option.dest``: ``--hop-seconds`` -> ``hop_s``).
API_KEYWORDS = {"--model": "name", "--device": "device", "--dtype": "dtype", "--chunk-seconds": "chunk_s",
                "--context-seconds": "context_s", "--batch-size": "batch_size", "--output-dir": "output_dir",
                "--formats": "formats", "--overwrite": "overwrite", "--workers": "workers", "--pattern": "patterns",
                "--channel": "channel"}
#: Shared switches: the value that turns them on.
_API_SWITCHES = {"--overwrite": True}
_FLAG_WITH_VALUE = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)(?:( |=)('[^']*'|<[^>]+>|[A-Za-z0-9_.:/~-]+))?")


def _raise_stopped(exc: Exception) -> None:
    """A run stopped by a signal, as Python reports one: SIGINT -> ``KeyboardInterrupt``, SIGTERM ->
    ``SystemExit(143)`` (the message says what was done and how to resume). Other errors pass."""
    status = getattr(exc, "status", None)
    if status == 130:
        raise KeyboardInterrupt(str(exc)) from None
    if status == 143:
        raise SystemExit(143) from None


def api_wording(text: str, *, keywords: Iterable[str] = ()) -> str:
    """An error message in the API's terms: command-line flags become the keywords of :func:`load_model`
    and :meth:`Model.embed_files`.

    ``pass --model PATH`` -> ``pass name='PATH'``, ``--device cpu`` -> ``device='cpu'``,
    ``does not take --layers`` -> ``does not take layers``, ``--overwrite`` -> ``overwrite=True``.
    Flags that are not the API's (``pip install --no-deps``, ``hf download ... --local-dir``) stay.

    Parameters
    ----------
    text : str
    keywords : iterable of str
        Keywords the caller passed (``hop_s``): a message that spelled one as a flag (``--hop-s``) gets it back.
    """
    from .device import DEVICES, DTYPES
    from .options import declared_options
    from .registry import presets

    table: dict[str, tuple[str, Any]] = {flag: (kw, _API_SWITCHES.get(flag)) for flag, kw in API_KEYWORDS.items()}
    for _, option in declared_options():
        table.setdefault(option.flag, (option.dest, option.const if option.is_switch else None))
    for keyword in keywords:
        table.setdefault("--" + keyword.replace("_", "-"), (keyword, None))
    values = set(presets()) | set(DEVICES) | set(DTYPES)

    def reword(match: re.Match) -> str:
        flag, sep, value = match.groups()
        if flag not in table:
            return match.group(0)
        keyword, switch = table[flag]
        rest = f"{sep}{value}" if value else ""
        if switch is not None:
            return f"{keyword}={switch!r}{rest}"
        if value and (sep == "=" or value in values or value.isupper() or value[0] in "<'"):
            return f"{keyword}={value if value[0] == chr(39) else repr(value.strip('<>'))}"
        return keyword + rest

    return _FLAG_WITH_VALUE.sub(reword, text)


def _reworded(exc: BaseException, keywords: Iterable[str] = ()) -> BaseException:
    """``exc`` with its message in the API's terms (:func:`api_wording`): the same type where it can be rebuilt."""
    text = str(exc)
    new_text = api_wording(text, keywords=keywords)
    if new_text == text:
        return exc
    try:
        new = type(exc)(new_text)
    except Exception:  # noqa: BLE001 - a type whose constructor takes other arguments
        new = (OSError if isinstance(exc, OSError) else ValueError)(new_text)
    if isinstance(exc, ImportError) and isinstance(new, ImportError):
        new.name = exc.name
    return new


@contextlib.contextmanager
def _api_errors(keywords: Iterable[str] = ()):
    """Re-raise ValueError, OSError and ImportError with messages in the API's terms (no command-line flags)."""
    try:
        yield
    except (ValueError, OSError, ImportError) as exc:
        new = _reworded(exc, keywords)
        if new is exc:
            raise
        raise new from None


@contextlib.contextmanager
def _download_progress(show: bool, *, hub_model: bool):
    """Hugging Face download and weight-loading progress bars only when ``show`` (:func:`load_model`'s ``progress``).

    ``hub_model``: the model may load through ``huggingface_hub`` (imported here only then, or when
    it is already imported). Both switches, huggingface_hub's and transformers' (which reads the
    former once, when first imported), are set back afterwards to what they were.
    """
    if show or not (hub_model or "huggingface_hub" in sys.modules):
        yield
        return
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError:  # the model does not need it (or it is missing, which its loader reports)
        yield
        return
    hub_was_disabled = are_progress_bars_disabled()
    tf_logging = sys.modules.get("transformers.utils.logging")
    tf_was_enabled = tf_logging.is_progress_bar_enabled() if tf_logging is not None else not hub_was_disabled
    if tf_logging is not None:
        tf_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        tf_logging = sys.modules.get("transformers.utils.logging")  # imported by the load, perhaps
        if tf_logging is not None:
            (tf_logging.enable_progress_bar if tf_was_enabled else tf_logging.disable_progress_bar)()
        (disable_progress_bars if hub_was_disabled else enable_progress_bars)()


@dataclass
class EmbeddingResult:
    """One recording's embeddings on its time grid.

    Attributes
    ----------
    embeddings : numpy.ndarray
        float32 [T, D] (one row per frame, window or utterance), or [L, T, D] when several
        layers were asked for (``layers="all"`` or ``"0,6,12"``).
    time_axis_s : numpy.ndarray
        float64 [T]: onset of each row in seconds from the start of the recording.
    frame_stride_s : float
        Nominal time between rows in seconds (0 for one row per utterance).
    window_s : float
        Seconds of audio one row sees.
    sample_rate_hz : int
        Rate the model ran at (the input was resampled to it).
    extras : dict of str to numpy.ndarray
        The backend's extras: per-row ``label`` logits [T, C] (window models with
        ``logits=True``), ``codes`` [T] (Metis), ``utterance_embedding`` [1, D] (GE2E), ...
    model_name : str
        Preset name or checkpoint, as recorded in the outputs.
    source : str
        The input file, or ``"<memory>"``.
    n_samples : int or None
        Input length in samples at ``sample_rate_hz`` (None when not known).
    classes : list of str or None
        Names of the ``label`` columns, when the model has them.
    backend_fields : dict
        The backend's own ``.mat`` fields (``layers`` for wav2vec2, ``layer`` for Metis).
    """

    embeddings: np.ndarray
    time_axis_s: np.ndarray
    frame_stride_s: float
    window_s: float
    sample_rate_hz: int
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    model_name: str = ""
    source: str = MEMORY
    n_samples: int | None = None
    classes: list[str] | None = field(default=None, repr=False)
    backend_fields: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def duration_s(self) -> float | None:
        """Input duration in seconds (None when ``n_samples`` is not known)."""
        return None if self.n_samples is None else self.n_samples / float(self.sample_rate_hz)

    @property
    def n_frames(self) -> int:
        """Rows T."""
        return int(self.embeddings.shape[-2])

    @property
    def layers(self) -> list[int] | None:
        """Hidden-state index of each layer of [L, T, D] embeddings (None for [T, D])."""
        if self.embeddings.ndim != 3:
            return None
        given = self.backend_fields.get("layers")
        ids = [] if given is None else [int(v) for v in np.ravel(given)]
        return ids if len(ids) == self.embeddings.shape[0] else list(range(self.embeddings.shape[0]))

    def to_mat(self, path: str | os.PathLike, *, version: str = "auto") -> Path:
        """Write the ``.mat`` of the output contract (``embeddings`` single T x D, ``time_axis`` double T x 1,
        ``frame_stride``, ``sample_rate``, ``model_name``, ``window_s``, the backend's fields and extras).

        Parameters
        ----------
        path : path-like
            The file to write (atomically).
        version : {"auto", "5", "7.3"}
            ``auto``: v5 unless a variable reaches 2 GiB.

        Returns
        -------
        pathlib.Path
        """
        from .outputs.contract import mat_variables
        from .outputs.matfile import write_mat

        return write_mat(path, mat_variables(self, model_name=self.model_name, backend_fields=self.backend_fields),
                         version=version)

    def to_npz(self, path: str | os.PathLike, *, compressed: bool = False) -> Path:
        """Write a NumPy ``.npz``: ``embeddings``, ``time_axis_s``, the scalars and ``extras/<name>``.

        Read it back with :meth:`from_npz` (or ``numpy.load``).

        Parameters
        ----------
        path : path-like
            The file to write (atomically; the name is kept as given).
        compressed : bool
            ``numpy.savez_compressed`` instead of ``numpy.savez``.
        """
        from .atomic import atomic_path

        arrays: dict[str, Any] = {
            "embeddings": np.asarray(self.embeddings, dtype=np.float32),
            "time_axis_s": np.asarray(self.time_axis_s, dtype=np.float64),
            "frame_stride_s": np.float64(self.frame_stride_s), "window_s": np.float64(self.window_s),
            "sample_rate_hz": np.int64(self.sample_rate_hz),
            "n_samples": np.int64(-1 if self.n_samples is None else self.n_samples),
            "model_name": np.str_(self.model_name), "source": np.str_(self.source),
        }
        arrays.update({f"extras/{k}": np.asarray(v) for k, v in self.extras.items()})
        if self.classes:
            arrays["classes"] = np.asarray(self.classes, dtype=np.str_)
        save = np.savez_compressed if compressed else np.savez
        with atomic_path(path, suffix=".npz") as tmp, tmp.open("wb") as fh:
            save(fh, **arrays)
        return Path(path)

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> "EmbeddingResult":
        """Read a file written by :meth:`to_npz`."""
        with np.load(path, allow_pickle=False) as data:
            n = int(data["n_samples"])
            return cls(embeddings=data["embeddings"], time_axis_s=data["time_axis_s"],
                       frame_stride_s=float(data["frame_stride_s"]), window_s=float(data["window_s"]),
                       sample_rate_hz=int(data["sample_rate_hz"]),
                       extras={k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("extras/")},
                       model_name=str(data["model_name"]), source=str(data["source"]), n_samples=None if n < 0 else n,
                       classes=[str(c) for c in data["classes"]] if "classes" in data.files else None)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with one row per frame (needs pandas).

        Columns: ``time_s`` (the row onset), then ``d0000``, ``d0001``, ... (one per dimension),
        then every per-row extra with one value per frame (e.g. Metis ``codes``). For
        [L, T, D] embeddings the frames of each layer follow one another, with a leading
        ``layer`` column holding the hidden-state index (``df[df.layer == 12]`` is one layer).

        Returns
        -------
        pandas.DataFrame
            T rows (L * T for several layers) and 1 + D (+ 1) columns.

        Raises
        ------
        ImportError
            pandas is not installed (one line saying so).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("EmbeddingResult.to_dataframe needs pandas: pip install pandas") from None
        emb = np.asarray(self.embeddings, dtype=np.float32)
        stack = emb[None] if emb.ndim == 2 else emb
        n_layers, n_rows, dim = stack.shape
        columns = [f"d{i:04d}" for i in range(dim)]
        frame = pd.DataFrame(stack.reshape(n_layers * n_rows, dim), columns=columns)
        frame.insert(0, "time_s", np.tile(np.asarray(self.time_axis_s, dtype=np.float64), n_layers))
        if emb.ndim == 3:
            frame.insert(0, "layer", np.repeat(np.asarray(self.layers, dtype=np.int64), n_rows))
        for name, value in self.extras.items():
            value = np.asarray(value)
            if value.shape == (n_rows,) and name not in frame.columns:
                frame[name] = np.tile(value, n_layers)
        return frame


class CorpusResult(Mapping):
    """What :meth:`Model.embed_files` returns: a summary, the failures, and the results by key.

    It is a read-only mapping ``key -> EmbeddingResult`` (keys are the files' paths relative
    to the input root, ``"a/b/x.wav"``), in sorted key order, holding the files done in this
    call and, with an ``output_dir``, those an earlier call had done. With an ``output_dir``
    a result is read from disk when it is looked up (its ``.npy`` memory-mapped), so a corpus
    never needs to fit in memory.

    Attributes
    ----------
    summary : dict
        ``files_done``, ``files_skipped`` (already done), ``files_failed``, ``audio_seconds``,
        ``wall_time_s``, ``failures``, ... (the ``summary.json`` of the scripts).
    failures : list of dict
        ``{"path": ..., "reason": ...}`` for each file that failed (also in ``failures.csv``).
    output_dir : pathlib.Path or None
    """

    def __init__(self, *, summary: dict[str, Any], keys: Sequence[str], loader: Any,
                 output_dir: Path | None):
        self.summary = summary
        self.failures: list[dict[str, str]] = list(summary.get("failures", []))
        self.output_dir = output_dir
        self._keys = list(keys)
        self._loader = loader

    def __getitem__(self, key: str) -> EmbeddingResult:
        if key not in self._keys:
            raise KeyError(key)
        return self._loader(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return (f"CorpusResult({len(self)} results, {self.summary.get('files_failed', 0)} failed"
                f"{', output_dir=' + repr(str(self.output_dir)) if self.output_dir else ''})")


class _MemoryWriter:
    """The corpus engine's writer protocol, keeping each file's result in memory."""

    def __init__(self, make_result: Any):
        self.results: dict[str, EmbeddingResult] = {}
        self._make = make_result

    def is_complete(self, key: str) -> bool:
        return False

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any]) -> dict[str, Any]:
        self.results[key] = self._make(result, source=input_path)
        return {}

    def close(self) -> None:
        """Nothing to flush."""


class Model:
    """A loaded model; use :func:`load_model`.

    Attributes
    ----------
    name : str
        Preset name (``"ge2e"``), or the checkpoint given (hub id or path).
    backend : BaseBackend
        The backend object (``embed_batch`` on equal-length windows, for advanced use).
    chunk_s, context_s : float
        Longest model input in seconds for frame models, and context per side for longer inputs.
    batch_size : int
        Model inputs (chunks or windows) per call.
    """

    def __init__(self, backend: Any, *, name: str, dtype: str, options: dict[str, Any], chunk_s: float,
                 context_s: float, batch_size: int):
        self.backend = backend
        self.name = name
        self.dtype = dtype
        self.options = dict(options)
        self.chunk_s = float(chunk_s)
        self.context_s = float(context_s)
        self.batch_size = int(batch_size)

    # --- geometry -------------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        """Size D of one embedding row."""
        return int(self.backend.embedding_dim)

    @property
    def sample_rate_hz(self) -> int:
        """Rate the model runs at (inputs at other rates are resampled to it)."""
        return int(self.backend.sample_rate_hz)

    @property
    def frame_stride_s(self) -> float | None:
        """Seconds between output rows (None: one row per recording)."""
        return self.backend.frame_stride_s

    @property
    def window_s(self) -> float:
        """Seconds of audio one row sees."""
        return float(self.backend.window_s)

    @property
    def framing(self) -> str:
        """``"sequence"`` (a frame grid), ``"windows"`` (fixed windows at a hop) or ``"utterance"``."""
        return str(self.backend.framing)

    @property
    def classes(self) -> list[str] | None:
        """Label names of the ``label`` logits (window classifiers), else None."""
        return self.backend.classes

    def describe(self) -> dict[str, Any]:
        """Provenance and geometry as a JSON-able dict (what the ``.json`` outputs record as ``backend``)."""
        return {"model_name": self.name, **self.backend.describe()}

    def __repr__(self) -> str:
        stride = "per utterance" if not self.frame_stride_s else f"every {self.frame_stride_s:g} s"
        return f"Model({self.name!r}: {self.embedding_dim}-d {stride} at {self.sample_rate_hz} Hz)"

    # --- embedding -------------------------------------------------------------------------------

    def _result(self, file_embedding: Any, *, source: str) -> EmbeddingResult:
        return EmbeddingResult(
            embeddings=np.asarray(file_embedding.embeddings, dtype=np.float32),
            time_axis_s=np.asarray(file_embedding.time_axis_s, dtype=np.float64),
            frame_stride_s=float(file_embedding.frame_stride_s), window_s=float(file_embedding.window_s),
            sample_rate_hz=int(file_embedding.sample_rate_hz), extras=dict(file_embedding.extras),
            model_name=self.name, source=str(source), n_samples=int(file_embedding.n_samples),
            classes=self.classes, backend_fields=self.backend.mat_fields())

    def _embed_loaded(self, loaded: Any, *, source: str) -> EmbeddingResult:
        from .pipeline import embed_audio

        result = embed_audio(self.backend, loaded, chunk_s=self.chunk_s, context_s=self.context_s,
                             batch_size=self.batch_size)
        return self._result(result, source=source)

    def embed(self, audio: np.ndarray, sample_rate_hz: float, *, channel: int | None = None) -> EmbeddingResult:
        """Embed audio held in memory.

        Parameters
        ----------
        audio : numpy.ndarray
            [N] mono or [N, C] channels-last samples (float in [-1, 1], or integer PCM, which
            is scaled), at any rate.
        sample_rate_hz : float
            Rate of ``audio``; it is resampled to :attr:`sample_rate_hz` with soxr (high quality).
        channel : int, optional
            Keep this 0-based channel; default: the channels are averaged.

        Returns
        -------
        EmbeddingResult
            ``embeddings`` float32 [T, D] (or [L, T, D]), ``time_axis_s`` float64 [T].

        Raises
        ------
        audio_embeddings.audio.AudioError
            Empty input, NaN/Inf samples, an invalid rate or channel, or too short for the model.
        ValueError
            The model's own preparation refused the audio (e.g. digital silence for GE2E).
        """
        from . import audio as audio_io

        loaded = audio_io.prepare(np.asarray(audio), int(round(float(sample_rate_hz))),
                                  target_rate_hz=self.sample_rate_hz, channel=channel,
                                  min_samples=int(self.backend.min_samples), name=MEMORY,
                                  resampler=self.backend.resampler)
        with _api_errors():
            return self._embed_loaded(loaded, source=MEMORY)

    def embed_file(self, path: str | os.PathLike, *, channel: int | None = None) -> EmbeddingResult:
        """Embed one audio file (wav/flac/ogg/mp3, anything ffmpeg reads, or a ``.mat`` with ``audio``/``fs``).

        The file is decoded whole; for long recordings (hours), :meth:`embed_files` streams
        them block by block instead.

        Parameters
        ----------
        path : path-like
        channel : int, optional
            Keep this 0-based channel; default: the channels are averaged.

        Returns
        -------
        EmbeddingResult

        Raises
        ------
        audio_embeddings.audio.AudioError
            Missing, empty, corrupt or too short file (one line naming it).
        """
        from . import audio as audio_io

        loaded = audio_io.load(path, sample_rate_hz=self.sample_rate_hz, channel=channel,
                               min_samples=int(self.backend.min_samples), resampler=self.backend.resampler)
        with _api_errors():
            return self._embed_loaded(loaded, source=str(path))

    def embed_files(self, paths_or_folder: str | os.PathLike | Iterable[str | os.PathLike], *,
                    output_dir: str | os.PathLike | None = None, formats: Sequence[str] = ("npy",),
                    overwrite: bool = False, workers: int = 0, patterns: Sequence[str] | None = None,
                    channel: int | None = None) -> CorpusResult:
        """Embed many files with the corpus engine: decoding in workers, batches across files, resumable outputs.

        Parameters
        ----------
        paths_or_folder : path-like or iterable of path-like
            A folder (searched recursively for audio files), a manifest (``.txt``/``.csv``/...:
            one path per line or a ``path`` column), or a list of audio files.
        output_dir : path-like, optional
            Write ``<output_dir>/<relative path without extension>.npy`` (and the other
            ``formats``) per file, plus ``summary.json`` and ``failures.csv``, exactly as the
            scripts do; a second call skips the files already done (and refuses an
            ``output_dir`` made with another model or settings unless ``overwrite``).
            Without it, nothing is written and the results are kept in memory.
        formats : sequence of {"npy", "mat", "json", "txt"}
            Per-file outputs with ``output_dir``.
        overwrite : bool
            Redo files whose outputs exist.
        workers : int
            Decoding processes (0: decode in this process).
        patterns : sequence of str, optional
            Globs on the relative path or file name (default: common audio extensions).
        channel : int, optional
            Keep this 0-based channel; default: the channels are averaged.

        Returns
        -------
        CorpusResult
            ``summary``, ``failures`` and a mapping ``relative path -> EmbeddingResult``. A file
            that failed (missing, empty, corrupt, too short) is listed in ``failures`` with a
            one-line reason and the others go on.

        Raises
        ------
        audio_embeddings.corpus.discover.CorpusError
            No audio files found (the message says where it looked).
        ValueError
            Two inputs would write the same outputs, or ``output_dir`` holds results made with
            other settings (use ``overwrite=True`` or another folder).

        Notes
        -----
        Feature spaces for encoding models (the scripts' ``--bundle``/``--pca``/``--zscore``,
        docs/encoding.md) come from the results, each file one run in corpus order::

            from audio_embeddings.align import AlignSettings
            from audio_embeddings.features import build_bundle
            results = model.embed_files("stimuli/")
            bundle = build_bundle(list(results.values()), settings=AlignSettings(target_rate_hz=1 / 2.0),
                                  run_names=list(results), pca=16, zscore="run")
            bundle.save("features.mat")
        """
        if isinstance(paths_or_folder, (str, os.PathLike)):
            inputs = [os.fspath(paths_or_folder)]
        else:
            inputs = [os.fspath(p) for p in paths_or_folder]
        if output_dir is None:
            return self._embed_in_memory(inputs, workers=workers, patterns=patterns, channel=channel)
        from .app.config import RunConfig
        from .app.run import RunError, execute

        config = RunConfig(inputs=tuple(inputs), output_dir=os.fspath(output_dir), model=self.name,
                           formats=tuple(formats), pattern=tuple(patterns) if patterns else None,
                           workers=int(workers), overwrite=bool(overwrite), channel=channel,
                           chunk_seconds=self.chunk_s, context_seconds=self.context_s, dtype=self.dtype,
                           batch_size=self.batch_size, quiet=True, options=dict(self.options))
        defaults = _api_defaults(self)
        try:  # the scripts' own run: stamps, resume, refusals, the lock, the summary
            state = execute(config, defaults=defaults, backend=self.backend)
        except RunError as exc:
            _raise_stopped(exc)
            raise ValueError(api_wording(str(exc))) from None
        writer, items = state.writer, list(state.items)
        failed = {f["path"] for f in state.report.failures}
        keys = [i.key for i in items if i.path not in failed and writer.is_complete(i.key)]
        paths = {i.key: i.path for i in items}

        def load(key: str) -> EmbeddingResult:
            return self._read_back(writer.base(key), source=paths[key])

        return CorpusResult(summary=state.report.to_dict(), keys=keys, loader=load, output_dir=Path(output_dir))

    def _embed_in_memory(self, inputs: list[str], *, workers: int, patterns: Sequence[str] | None,
                         channel: int | None) -> CorpusResult:
        """:meth:`embed_files` without ``output_dir``: the corpus engine into memory, nothing written.

        The engine runs in the shared session (:func:`~audio_embeddings.app.session.run_engine_session`):
        a run stopped by Ctrl-C raises ``KeyboardInterrupt`` (SIGTERM: ``SystemExit(143)``) rather than
        returning the files done so far as if they were all.
        """
        from .app.config import RunConfig
        from .app.session import engine_options, run_engine_session, RunError
        from .corpus.discover import discover
        from .corpus.progress import Progress
        from .corpus.report import RunReport
        from .corpus.shard import Shard
        from .corpus.threads import run_plan
        from .outputs.contract import package_versions

        corpus = discover(inputs, patterns=patterns)
        items = list(corpus.items)
        threads = run_plan(self.backend, corpus=corpus.is_tree, workers=int(workers))
        config = RunConfig(inputs=tuple(inputs), output_dir="", model=self.name, chunk_seconds=self.chunk_s,
                           context_seconds=self.context_s, batch_size=self.batch_size, workers=int(workers),
                           channel=channel, overwrite=True, dtype=self.dtype, quiet=True, options=dict(self.options))
        options = engine_options(config, workers=int(workers))
        context = {"model": self.name, "backend": self.backend.describe(),
                   "input": {"kind": corpus.kind, "root": str(corpus.root.resolve()), "files_in_corpus": len(items)},
                   "outputs": {"output_dir": None, "formats": []}, "threads": threads.describe(),
                   "options": {"batch_size": self.batch_size, "workers": int(workers), "chunk_seconds": self.chunk_s,
                               "context_seconds": self.context_s},
                   "versions": package_versions()}
        writer = _MemoryWriter(self._result)
        with tempfile.TemporaryDirectory(prefix="audio_embeddings_") as tmp:
            report = RunReport(tmp, shard=Shard(), context=context)
            try:
                run_engine_session(self.backend, items, writer, report, options=options,
                                   model_threads=threads.model_threads, progress=Progress(len(items), quiet=True),
                                   scratch_root=tmp, shard_label=None, write_summary=False)
            except RunError as exc:
                _raise_stopped(exc)
            summary = report.to_dict()
        keys = [i.key for i in items if i.key in writer.results]
        return CorpusResult(summary=summary, keys=keys, loader=writer.results.__getitem__, output_dir=None)

    def _read_back(self, base: Path, *, source: str) -> EmbeddingResult:
        """A written file's result: ``.npy`` memory-mapped, its extras (``<base>_<name>.npy``, whichever run
        wrote them), the time axis from the ``.mat`` or the ``.json`` (else the nominal stride)."""
        embeddings = np.load(base.with_name(base.name + ".npy"), mmap_mode="r")
        n_rows = int(embeddings.shape[-2])
        meta = _read_json(base.with_name(base.name + ".json"))
        extras = {}
        for name in sorted(set(_written_extras(base)) | set(meta.get("extras", {}))):
            path = base.with_name(f"{base.name}_{name}.npy")
            if path.is_file():
                extras[name] = np.load(path, mmap_mode="r")
            elif isinstance(meta.get("extras", {}).get(name), list):
                extras[name] = np.asarray(meta["extras"][name])
        time_axis = _stored_time_axis(base, meta, n_rows)
        n_samples = meta.get("num_samples")
        if time_axis is None:  # only the .npy: rows on the nominal stride
            time_axis = np.arange(n_rows, dtype=np.float64) * float(self.backend.frame_stride_s or 0.0)
        return EmbeddingResult(embeddings=embeddings, time_axis_s=np.asarray(time_axis, dtype=np.float64),
                               frame_stride_s=float(self.backend.frame_stride_s or 0.0), window_s=self.window_s,
                               sample_rate_hz=self.sample_rate_hz, extras=extras, model_name=self.name,
                               source=source, n_samples=None if n_samples is None else int(n_samples),
                               classes=self.classes, backend_fields=self.backend.mat_fields())


def _written_extras(base: Path) -> list[str]:
    """Names of the extras (``<base>_<name>.npy``) that the outputs' sidecar lists as written with them."""
    from .outputs.contract import stamp_path

    record = _read_json(stamp_path(base))
    prefix = base.name + "_"
    names = []
    for rel in (record.get("outputs") or {}):
        name = Path(rel).name
        if name.startswith(prefix) and name.endswith(".npy"):
            extra = name[len(prefix):-len(".npy")]
            if extra != "aligned":
                names.append(extra)
    return names


def _api_defaults(model: "Model") -> Any:
    """The run's script defaults for the Python API (no hooks; outputs named after each file)."""
    from .cli import ScriptDefaults

    return ScriptDefaults(prog="audio_embeddings.api", description="the Python API", model=model.name,
                          output_subdir="", basename=None, formats="npy", chunk_s=model.chunk_s,
                          context_s=model.context_s)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stored_time_axis(base: Path, meta: dict[str, Any], n_rows: int) -> np.ndarray | None:
    """The full time axis of written outputs: the ``.mat``'s ``time_axis``, else a ``.json`` that kept every onset."""
    mat = base.with_name(base.name + ".mat")
    if mat.is_file():
        try:
            from scipy.io import loadmat

            axis = np.asarray(loadmat(str(mat), variable_names=["time_axis"])["time_axis"], dtype=np.float64).ravel()
            if axis.shape == (n_rows,):
                return axis
        except Exception:  # noqa: BLE001 - a v7.3 file or an unreadable one: try the .json
            pass
    sparse = meta.get("time_axis_seconds") or {}
    if sparse.get("step") == 1 and len(sparse.get("seconds", ())) == n_rows:
        return np.asarray(sparse["seconds"], dtype=np.float64)
    return None


def load_model(name: str, *, device: str = "auto", dtype: str = "float32", chunk_s: float | None = None,
               context_s: float | None = None, batch_size: int = 8, progress: bool = False,
               **options: Any) -> Model:
    """Load a model by preset name, hub id or local path.

    Parameters
    ----------
    name : str
        A preset (``"ge2e"``, ``"birdnet"``, ``"wav2vec2"``, ``"perch_v2"``, ``"metis"``, ... ; see
        the README's model table), a Hugging Face id (``"facebook/wav2vec2-base"``), or a local
        model folder or file (recognised by its contents).
    device : {"auto", "cpu", "cuda", "mps"}
        ``auto``: a GPU when one is visible.
    dtype : {"float32", "float16", "bfloat16"}
    chunk_s, context_s : float, optional
        Longest model input (seconds) for frame models and the context kept on each side of a
        chunk; default: the model's script's (20 s and 2 s; Metis 30 s and 5 s).
    batch_size : int
        Model inputs per call.
    progress : bool
        Show the download and weight-loading progress bars of the Hugging Face libraries
        (default: none, as in a notebook or a batch job you usually want).
    **options
        The model's own options by name, as its script's flags without the dashes:
        ``layers="all"`` (wav2vec2 family), ``hop_s=2.5`` and ``logits=True`` (window models),
        ``stats="wav2vec2bert_stats.pt"`` and ``codec=...`` (Metis), ``trim_silence=False``
        (GE2E), ...

    Returns
    -------
    Model

    Raises
    ------
    ValueError
        Unknown model, or an option the model does not take (named as its keyword).
    OSError
        Weights that are neither local nor downloadable now (one line saying which file and
        which keyword takes a local copy).

    Notes
    -----
    Error messages name this function's keywords (``name='PATH'``, ``stats='FILE'``), never the
    scripts' command-line flags (:func:`api_wording`). With ``$AUDIO_EMBEDDINGS_LOCAL_MODELS`` set,
    a preset loads its local stand-in folder as the scripts do.
    ImportError
        A package the model needs is not installed (the message names the pip extra).
    """
    from .registry import load_backend
    from .app.run import model_name_of
    from .scripts import chunking_for

    with _api_errors(options), _download_progress(bool(progress), hub_model=_may_use_hub(name)):
        try:
            backend = load_backend(name, device=device, dtype=dtype, **options)
        except ImportError as exc:  # an optional package the model needs: say which extra brings it
            from .hub import install_hint

            raise ImportError(install_hint(exc), name=exc.name) from None
    default_chunk, default_context = chunking_for(getattr(backend, "preset", None))
    model_name = model_name_of(argparse.Namespace(model=name), backend)
    given = {k: v for k, v in options.items() if v is not None}
    return Model(backend, name=model_name, dtype=dtype, options=given,
                 chunk_s=default_chunk if chunk_s is None else chunk_s,
                 context_s=default_context if context_s is None else context_s, batch_size=batch_size)


def _may_use_hub(name: str) -> bool:
    """Whether loading ``name`` may go through ``huggingface_hub`` (anything but a preset whose weights ship in a package)."""
    from .registry import presets

    preset = presets().get(name)
    return preset is None or preset.checkpoint is not None


__all__ = ["load_model", "Model", "EmbeddingResult", "CorpusResult", "api_wording", "API_KEYWORDS"]
