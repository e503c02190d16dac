"""The backend contract as a public check, for the package's own tests and for plugin authors.

>>> from audio_embeddings import registry                                         # doctest: +SKIP
>>> from audio_embeddings.testing import check_backend
>>> check_backend(registry.load_backend("./my-tiny-model", device="cpu"))

:func:`check_backend` runs a loaded backend through the shared pipeline on a short synthetic
input and checks what every backend must do (see ``docs/adding-a-model-family.md``); it
raises :class:`AssertionError` naming the backend and the broken rule. It imports no framework
itself: only what the backend runs.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .audio import Audio
from .backends.base import BaseBackend, BatchOutput, FileEmbedding, Option
from .framing import conv_frame_count

#: Keys every backend's ``describe()`` has (the shared facts), whatever its ``details()`` adds.
SHARED_DESCRIBE_KEYS = frozenset({"name", "framing", "sample_rate_hz", "embedding_dim", "frame_stride_s", "window_s",
                                  "hop_s", "min_samples", "max_input_samples", "device", "dtype"})
FRAMINGS = ("sequence", "windows", "utterance")


def _fail(backend: Any, message: str) -> AssertionError:
    name = getattr(backend, "name", "") or type(backend).__name__
    return AssertionError(f"backend {name!r} ({type(backend).__name__}): {message}")


def _require(condition: Any, backend: Any, message: str) -> None:
    if not condition:
        raise _fail(backend, message)


def _noise(n_samples: int, rate_hz: int, seed: int) -> np.ndarray:
    """Band-limited noise with a slow amplitude swing, float32 in about [-0.5, 0.5] (not silence, not a tone)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(n_samples)).astype(np.float64)
    x = np.convolve(x, np.ones(4) / 4, mode="same")  # a little smoothing: less energy at the Nyquist rate
    t = np.arange(int(n_samples)) / float(rate_hz)
    x *= 0.15 * (1.0 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    return x.astype(np.float32)


def default_seconds(backend: Any) -> float:
    """Input length :func:`check_backend` uses: 2.5 windows for window models, else 1.3 s
    (at least 2 rows for every published geometry, and within Whisper's 30 s)."""
    if backend.framing == "windows":
        return 2.5 * float(backend.window_s)
    return 1.3


def expected_rows(backend: Any, n_samples: int) -> int:
    """Rows the contract promises for ``n_samples`` of prepared audio.

    ``sequence``: the conv grid ``floor((N - receptive_field) / hop) + 1``; ``windows``: one per
    onset of ``plan_rows(N)``; ``utterance``: 1.
    """
    if backend.framing == "utterance":
        return 1
    if backend.framing == "windows":
        return int(len(backend.plan_rows(int(n_samples))))
    return conv_frame_count(int(n_samples), receptive_field_samples=int(backend.receptive_field_samples),
                            hop_samples=int(backend.hop_samples))


def check_backend(backend: Any, *, preset: Any = None, seconds: float | None = None, batch_items: int = 3,
                  atol: float = 2e-4, seed: int = 3) -> FileEmbedding:
    """Check that a loaded backend follows the backend contract.

    What is checked:

    1. it is a :class:`~audio_embeddings.backends.base.BaseBackend` with a ``name``, a positive
       integer ``sample_rate_hz`` and ``embedding_dim``, a known ``framing`` and the geometry that
       framing needs (``receptive_field_samples``/``hop_samples`` for ``"sequence"``,
       ``window_samples``/``hop_samples``/``plan_rows`` for ``"windows"``, no stride for
       ``"utterance"``), with ``frame_stride_s == hop_samples / sample_rate_hz``; its ``options``
       are :class:`~audio_embeddings.backends.base.Option` s with distinct flags and keywords;
    2. with ``preset`` (a :class:`~audio_embeddings.registry.Preset` or its name): the registry's
       name, rate and stride agree with the loaded backend;
    3. a synthetic recording of ``seconds`` through the shared pipeline
       (:func:`audio_embeddings.pipeline.embed_audio`) gives float32 rows of width
       ``embedding_dim``, as many as the framing promises (:func:`expected_rows`), one time-axis
       entry per row, onsets from 0 every ``frame_stride_s`` (one row at 0 for utterances), and
       per-row extras with one entry per row;
    4. ``describe()`` has the shared keys (:data:`SHARED_DESCRIBE_KEYS`), names the backend, gives
       its ``embedding_dim`` and is JSON-serialisable; ``mat_fields()`` is a dict;
    5. ``embed_batch`` returns a :class:`~audio_embeddings.backends.base.BatchOutput` whose
       float32 embeddings have one leading entry per input, and a batch of ``batch_items``
       inputs equals the same inputs run one by one (``atol`` relative to the largest value),
       with the same extras.

    Parameters
    ----------
    backend : BaseBackend
        A loaded backend (``registry.load_backend(...)`` or the class's ``load``).
    preset : Preset or str, optional
        The registry entry the backend was loaded for.
    seconds : float, optional
        Length of the synthetic recording; default :func:`default_seconds` (2.5 windows, else 1.3 s).
    batch_items : int
        Inputs in the batch of check 5 (>= 2).
    atol : float
        Largest difference allowed between batched and one-by-one rows, relative to the largest
        absolute value of the batch.
    seed : int
        Seed of the synthetic audio.

    Returns
    -------
    FileEmbedding
        The pipeline's result for the synthetic recording (for further checks).

    Raises
    ------
    AssertionError
        A rule is broken; the message names the backend and the rule, with the values seen.

    Examples
    --------
    >>> check_backend(registry.load_backend(str(folder), device="cpu"), preset="wav2vec2")  # doctest: +SKIP
    """
    from .pipeline import embed_audio

    _check_geometry(backend)
    if preset is not None:
        _check_preset(backend, preset)
    _check_batch(backend, batch_items=batch_items, atol=atol, seed=seed)  # first: the pipeline needs a BatchOutput

    rate = int(backend.sample_rate_hz)
    seconds = default_seconds(backend) if seconds is None else float(seconds)
    x = _noise(int(round(seconds * rate)), rate, seed)
    n_prepared = int(np.asarray(backend.prepare(x).samples).shape[0])
    result = embed_audio(backend, Audio(x, rate, rate, 1, None, "<memory>"))
    _check_rows(backend, result, expected_rows(backend, n_prepared))

    info = backend.describe()
    missing = sorted(SHARED_DESCRIBE_KEYS - set(info))
    _require(not missing, backend, f"describe() lacks the shared keys {missing}")
    _require(info["name"] == backend.name, backend, f"describe()['name'] is {info['name']!r}, not {backend.name!r}")
    _require(info["embedding_dim"] == backend.embedding_dim, backend,
             f"describe()['embedding_dim'] is {info['embedding_dim']}, not {backend.embedding_dim}")
    try:
        json.dumps(info)
    except (TypeError, ValueError) as exc:
        raise _fail(backend, f"describe() is not JSON-serialisable ({exc})") from None
    _require(isinstance(backend.mat_fields(), dict), backend, "mat_fields() must return a dict")
    return result


def _check_geometry(backend: Any) -> None:
    _require(isinstance(backend, BaseBackend), backend, "is not a BaseBackend (derive from audio_embeddings.backends.base)")
    _require(isinstance(backend.name, str) and backend.name, backend, "has no name (the registry name it was loaded as)")
    for attr in ("sample_rate_hz", "embedding_dim"):
        value = getattr(backend, attr, None)
        _require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0, backend,
                 f"{attr} must be a positive int, not {value!r}")
    _require(backend.framing in FRAMINGS, backend, f"framing must be one of {FRAMINGS}, not {backend.framing!r}")
    _require(int(backend.min_samples) >= 1, backend, f"min_samples must be >= 1, not {backend.min_samples!r}")
    rate = backend.sample_rate_hz
    if backend.framing == "utterance":
        _require(backend.frame_stride_s is None, backend,
                 f"an utterance backend has no frame stride (frame_stride_s None), not {backend.frame_stride_s!r}")
    else:
        needed = ("receptive_field_samples", "hop_samples") if backend.framing == "sequence" else \
            ("window_samples", "hop_samples")
        for attr in needed:
            value = getattr(backend, attr, None)
            _require(value is not None and int(value) >= 1, backend,
                     f"framing {backend.framing!r} needs {attr} >= 1, not {value!r}")
        stride = backend.frame_stride_s
        _require(stride is not None and abs(float(stride) - backend.hop_samples / rate) < 1e-9, backend,
                 f"frame_stride_s ({stride!r}) must be hop_samples / sample_rate_hz ({backend.hop_samples / rate!r})")
        if backend.framing == "windows":
            _require(type(backend).plan_rows is not BaseBackend.plan_rows, backend,
                     "a window backend implements plan_rows(n_samples)")
    if backend.max_input_samples is not None:
        _require(int(backend.max_input_samples) >= int(backend.min_samples), backend,
                 f"max_input_samples ({backend.max_input_samples}) is below min_samples ({backend.min_samples})")
    options = list(type(backend).options)
    _require(all(isinstance(o, Option) for o in options), backend, "options must be Option declarations")
    for attr in ("flag", "dest"):
        values = [getattr(o, attr) for o in options]
        _require(len(values) == len(set(values)), backend, f"options declare the same {attr} twice: {values}")


def _check_preset(backend: Any, preset: Any) -> None:
    if isinstance(preset, str):
        from .registry import presets

        preset = presets()[preset]
    _require(backend.name == preset.name, backend, f"loaded as preset {preset.name!r} but named {backend.name!r}")
    _require(backend.sample_rate_hz == preset.sample_rate_hz, backend,
             f"runs at {backend.sample_rate_hz} Hz, its preset says {preset.sample_rate_hz} Hz")
    if backend.framing == "utterance" or preset.frame_stride_s is None:
        _require(backend.frame_stride_s is None and preset.frame_stride_s is None, backend,
                 f"frame_stride_s {backend.frame_stride_s!r}, its preset says {preset.frame_stride_s!r} "
                 "(None: one row per recording)")
    else:
        _require(abs(float(backend.frame_stride_s) - float(preset.frame_stride_s)) <= 1e-6 * float(preset.frame_stride_s),
                 backend, f"frame_stride_s {backend.frame_stride_s!r}, its preset says {preset.frame_stride_s!r}")


def _check_rows(backend: Any, result: FileEmbedding, n_rows: int) -> None:
    rows, times = result.embeddings, np.asarray(result.time_axis_s)
    _require(rows.dtype == np.float32, backend, f"rows must be float32, not {rows.dtype}")
    _require(rows.ndim in (2, 3), backend, f"rows must be [T, D] or [L, T, D], not shape {list(rows.shape)}")
    _require(rows.shape[-1] == backend.embedding_dim, backend,
             f"rows are {rows.shape[-1]} wide, embedding_dim says {backend.embedding_dim}")
    _require(rows.shape[-2] == n_rows, backend,
             f"{rows.shape[-2]} rows for the test input, the {backend.framing!r} framing promises {n_rows}")
    _require(times.shape == (rows.shape[-2],), backend,
             f"time axis has {times.shape} entries for {rows.shape[-2]} rows")
    _require(np.all(np.isfinite(rows)), backend, "rows hold NaN or Inf for ordinary noise input")
    if backend.framing == "utterance":
        _require(times.tolist() == [0.0], backend, f"an utterance's one row is at 0 s, not {times.tolist()}")
    else:
        _require(n_rows >= 2, backend, f"the test input gave {n_rows} row(s); pass a longer `seconds`")
        _require(times[0] == 0.0, backend, f"the first row is at {times[0]} s, not 0")
        steps = np.diff(times)
        _require(np.allclose(steps, backend.frame_stride_s, rtol=0, atol=1e-9), backend,
                 f"time axis steps {steps[:4].tolist()}... differ from frame_stride_s {backend.frame_stride_s}")
    for name, value in result.extras.items():
        if name in backend.summarize(rows):  # whole-file extras (an utterance mean) are not per row
            continue
        _require(np.asarray(value).shape[:1] == (rows.shape[-2],), backend,
                 f"per-row extra {name!r} has shape {list(np.shape(value))}, not one entry per row ({rows.shape[-2]})")


def _batch_inputs(backend: Any, n_items: int, seed: int) -> np.ndarray:
    rate = int(backend.sample_rate_hz)
    if backend.framing == "windows":
        n = int(backend.window_samples)
    else:
        n = max(int(backend.min_samples), int(0.8 * rate))
    if backend.max_input_samples:
        n = min(n, int(backend.max_input_samples))
    return np.stack([_noise(n, rate, seed + 1 + i) for i in range(n_items)])


def _check_batch(backend: Any, *, batch_items: int, atol: float, seed: int) -> None:
    batch = _batch_inputs(backend, max(2, int(batch_items)), seed)
    together = backend.embed_batch(batch)
    _require(isinstance(together, BatchOutput), backend,
             f"embed_batch must return a BatchOutput, not {type(together).__name__}")
    emb = np.asarray(together.embeddings)
    _require(emb.dtype == np.float32, backend, f"embed_batch embeddings must be float32, not {emb.dtype}")
    _require(emb.shape[0] == batch.shape[0], backend,
             f"embed_batch gave {emb.shape[0]} outputs for {batch.shape[0]} inputs")
    _require(emb.shape[-1] == backend.embedding_dim, backend,
             f"embed_batch rows are {emb.shape[-1]} wide, embedding_dim says {backend.embedding_dim}")
    for name, value in together.extras.items():
        _require(np.shape(value)[:1] == (batch.shape[0],), backend,
                 f"extra {name!r} has shape {list(np.shape(value))}, not one entry per input ({batch.shape[0]})")
    scale = float(np.abs(emb).max()) or 1.0
    for i, item in enumerate(batch):
        alone = backend.embed_batch(item[None])
        _require(isinstance(alone, BatchOutput), backend,
                 f"embed_batch must return a BatchOutput, not {type(alone).__name__}")
        one = np.asarray(alone.embeddings)[0]
        _require(one.shape == emb[i].shape, backend,
                 f"item {i} alone gives shape {list(one.shape)}, in the batch {list(emb[i].shape)}")
        worst = float(np.max(np.abs(one - emb[i]))) if one.size else 0.0
        _require(worst <= atol * scale, backend,
                 f"a batch must equal its items run one by one: item {i} differs by {worst:.3g} "
                 f"(allowed {atol * scale:.3g} = {atol:g} x the largest value {scale:.3g})")
        _require(set(alone.extras) == set(together.extras), backend,
                 f"extras alone {sorted(alone.extras)} differ from the batch's {sorted(together.extras)}")


__all__ = ["check_backend", "expected_rows", "default_seconds", "SHARED_DESCRIBE_KEYS"]
