"""Alignment of embeddings to a brain-data time grid: an EEG/MEG sampling rate or an fMRI TR.

A model's rows come on its own grid (wav2vec2: a 25 ms window every 20 ms; a window
backend: its hop). Encoding models of brain data want them on the recording's grid:
output row ``k`` at

    t_k = start_s + k / target_rate_hz,    k = 0 .. ceil(duration_s * target_rate_hz) - 1

the grid points inside the stimulus ``[start_s, start_s + duration_s)``, as a scanner or an
amplifier samples it: 600 s at TR 2 s is 300 volumes (t = 0, 2, ..., 598), 600 s at 100 Hz
60000 samples, 4 s at TR 2 two volumes (:func:`grid_size`). The axis is computed as
``start_s + k / R`` for every ``k``, never by cumulative sums, so it is exact;
``duration_s * R`` is rounded to 9 decimals before the ceiling, so a duration that is a
whole number of periods gets no extra row from floating point (7 s at 1/0.7 Hz: 10 rows).
Each embedding row is placed at its **centre**, ``time_axis_s + window_s / 2``.

Methods (``method``):

``lanczos`` (default)
    Each output row is a weighted sum of the embedding rows. The weight of row ``j`` is a
    Lanczos-windowed sinc of ``dt = t_k - c_j`` (``c_j`` the row's centre),
    ``sinc(2 fc dt) * sinc(2 fc dt / a)`` for ``|dt| < a / (2 fc)`` (0 outside), with
    ``a = lanczos_lobes`` (3) and the cutoff ``fc`` half the lower of the source rate and
    the target rate (the source rate is ``1 / median(diff(c))``). The weights of each output
    row are normalised to sum to 1, so a constant feature stays constant, near the ends
    too. An output row whose support holds no embedding row, or only the kernel's negative
    side lobes (weights summing to less than a tenth of their absolute sum; this happens
    only well outside the rows, e.g. with a ``duration_s`` past the end of the audio),
    takes the nearest row instead.
``mean``
    The mean of the rows whose centres fall in ``[t_k, t_k + 1 / R)`` (a TR's boxcar); an
    output row with no centre in its bin (upsampling) takes the row nearest ``t_k``.
``nearest``
    The row whose centre is nearest ``t_k`` (the earlier one on a tie).

Then, in this order:

``hrf`` (``spm`` | ``glover`` | ``none``)
    Each aligned feature is convolved with a canonical haemodynamic response sampled at
    ``R`` (:func:`hrf_kernel`), causally (``y[n] = sum_m h[m] x[n - m]``, zeros before the
    first row), keeping the first ``T'`` samples.
``delays`` (output rows, e.g. ``(1, 2, 3, 4)``)
    Delayed copies side by side, ``[T', D * n_delays]``, zero-filled at the start
    (:func:`delay_stack`), as finite-impulse-response encoding models use.

Several layers (``[L, T, D]``) are aligned layer by layer (``[L, T', D']``). The weights are
computed in float64; the products run in the rows' precision (float32 embeddings: float32,
relative error about 1e-7; float64 rows: float64) and come back in it. The weights form a
sparse [T', T] matrix (only the rows in each output row's support), so a 10-minute track at
50 Hz goes to 64 Hz in well under a second.

:func:`align_embeddings` is the whole computation as a pure function on arrays, for
embeddings computed earlier, or on a result (the Python API's
:class:`~audio_embeddings.api.EmbeddingResult`, a backend's ``FileEmbedding``), whose
duration is then the file's, ``n_samples / sample_rate_hz``, as the scripts use it;
:class:`AlignSettings` carries the same settings through the writers
(:func:`~audio_embeddings.outputs.contract.write_outputs`, the HDF5 store) into the same
function, and
:data:`OPTIONS` declares the command-line flags and MATLAB names once. :func:`main` is
``python/align.py``, which aligns a ``.mat`` (or ``.npy``) written by this toolkit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .backends.base import Option, positive_float

__all__ = [
    "METHODS",
    "HRFS",
    "OPTIONS",
    "AlignSettings",
    "Aligned",
    "align_embeddings",
    "grid_size",
    "hrf_kernel",
    "delay_stack",
    "settings_from",
    "read_mat",
    "main",
]

METHODS = ("lanczos", "mean", "nearest")
HRFS = ("spm", "glover", "none")
#: Length of the sampled haemodynamic responses, in seconds (SPM's default).
HRF_LENGTH_S = 32.0
#: Lanczos rows whose weights sum to less than this fraction of their absolute sum fall back to the nearest row.
_MIN_WEIGHT_FRACTION = 0.1
#: HRF kernels at most this long are convolved directly, longer ones through the FFT.
_DIRECT_CONV_MAX_TAPS = 64


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def _finite(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _check_delays(delays: Any) -> tuple[int, ...]:
    if delays is None:
        return (0,)
    if isinstance(delays, (str, bytes)):
        return delays_spec(delays)
    out = []
    for d in np.atleast_1d(np.asarray(delays)).ravel().tolist():
        if isinstance(d, bool) or not float(d).is_integer() or d < 0:
            raise ValueError(f"delays must be integers >= 0 (output rows), got {delays!r}")
        out.append(int(d))
    if not out:
        raise ValueError("delays must hold at least one delay")
    return tuple(out)


@dataclass(frozen=True)
class AlignSettings:
    """How to align a file's embeddings (see the module docstring).

    Attributes
    ----------
    target_rate_hz : float
        Output rows per second, > 0 (an fMRI TR of ``S`` seconds is ``1 / S``).
    start_s : float
        Time of output row 0, seconds of the input file (default 0, the stimulus onset).
    duration_s : float or None
        Seconds covered, > 0 (``ceil(duration_s * R)`` rows, :func:`grid_size`); None: the
        file's duration as the caller gives it (the writers and a result given to
        :func:`align_embeddings`: ``n_samples / sample_rate_hz``).
    method : {"lanczos", "mean", "nearest"}
    hrf : {"spm", "glover", "none"}
    delays : tuple of int
        Delays in output rows, each >= 0; ``(0,)`` (also what None becomes) stacks nothing.
    lanczos_lobes : int
        The Lanczos ``a`` (>= 1).

    Raises
    ------
    ValueError
        A setting out of range; the message names it.
    """

    target_rate_hz: float
    start_s: float = 0.0
    duration_s: float | None = None
    method: str = "lanczos"
    hrf: str = "none"
    delays: tuple[int, ...] | None = (0,)
    lanczos_lobes: int = 3

    def __post_init__(self) -> None:
        rate = _finite("target_rate_hz", self.target_rate_hz)
        if rate <= 0:
            raise ValueError(f"target_rate_hz must be > 0, got {self.target_rate_hz!r}")
        object.__setattr__(self, "target_rate_hz", rate)
        object.__setattr__(self, "start_s", _finite("start_s", self.start_s))
        if self.duration_s is not None:
            duration = _finite("duration_s", self.duration_s)
            if duration <= 0:
                raise ValueError(f"duration_s must be > 0 (the seconds the aligned rows cover), "
                                 f"got {self.duration_s!r}")
            object.__setattr__(self, "duration_s", duration)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.hrf not in HRFS:
            raise ValueError(f"hrf must be one of {', '.join(HRFS)}, got {self.hrf!r}")
        object.__setattr__(self, "delays", _check_delays(self.delays))
        lobes = self.lanczos_lobes
        if isinstance(lobes, bool) or not float(lobes).is_integer() or lobes < 1:
            raise ValueError(f"lanczos_lobes must be an integer >= 1, got {lobes!r}")
        object.__setattr__(self, "lanczos_lobes", int(lobes))

    @property
    def tr_s(self) -> float:
        """Seconds between output rows, ``1 / target_rate_hz``."""
        return 1.0 / self.target_rate_hz

    def describe(self) -> dict[str, Any]:
        """JSON-able settings (the ``.json``'s ``alignment`` section)."""
        return {
            "target_rate_hz": self.target_rate_hz,
            "tr_s": self.tr_s,
            "start_s": self.start_s,
            "duration_s": self.duration_s,
            "method": self.method,
            "hrf": self.hrf,
            "delays": list(self.delays),
            "lanczos_lobes": self.lanczos_lobes,
        }

    def apply(self, embeddings: Any, time_axis_s: np.ndarray | None = None, *, window_s: float | None = None,
              duration_s: float | None = None) -> "Aligned":
        """:func:`align_embeddings` with these settings.

        Parameters
        ----------
        embeddings : numpy.ndarray or result
            [T, D] or [L, T, D]; or a result (``FileEmbedding``, ``EmbeddingResult``), which
            brings its rows (as float32), time axis, window and duration, as the writers use it.
        time_axis_s : numpy.ndarray
            float [T] row onsets, seconds (not with a result).
        window_s : float
            Audio one row sees, seconds (rows sit at their centres; not with a result).
        duration_s : float, optional
            The file's duration in seconds, used when the settings give none.
        """
        return align_embeddings(embeddings, time_axis_s, window_s=window_s, target_rate_hz=self.target_rate_hz,
                                start_s=self.start_s,
                                duration_s=self.duration_s if self.duration_s is not None else duration_s,
                                method=self.method, hrf=self.hrf, delays=self.delays,
                                lanczos_lobes=self.lanczos_lobes)


@dataclass(frozen=True)
class Aligned:
    """Embeddings on the target grid.

    Attributes
    ----------
    embeddings : numpy.ndarray
        [T', D'] (or [L, T', D'] for several layers), ``D' = D * len(delays)``; float32
        unless the input was float64.
    time_axis_s : numpy.ndarray
        float64 [T'], ``start_s + k / target_rate_hz`` exactly.
    settings : AlignSettings
        The settings used, ``duration_s`` filled in with the duration actually covered.
    source_rate_hz : float
        ``1 / median(diff(row centres))``.
    cutoff_hz : float or None
        Lanczos cutoff ``min(source, target) / 2``; None for the other methods.
    """

    embeddings: np.ndarray
    time_axis_s: np.ndarray
    settings: AlignSettings
    source_rate_hz: float
    cutoff_hz: float | None

    def describe(self) -> dict[str, Any]:
        """The settings plus what came out (``shape``, ``n_rows``, rates), JSON-able."""
        return {**self.settings.describe(), "source_rate_hz": self.source_rate_hz, "cutoff_hz": self.cutoff_hz,
                "shape": list(self.embeddings.shape), "n_rows": int(self.time_axis_s.shape[0])}

    def mat_variables(self) -> dict[str, Any]:
        """The ``.mat`` variables: ``embeddings_aligned`` (single), ``time_axis_aligned`` (double T' x 1, s),
        ``target_rate`` (double, Hz), ``align_method`` and ``hrf`` (char), ``delays`` (double 1 x n, rows)."""
        return {
            "embeddings_aligned": np.asarray(self.embeddings, dtype=np.float32),
            "time_axis_aligned": np.asarray(self.time_axis_s, dtype=np.float64).reshape(-1, 1),
            "target_rate": float(self.settings.target_rate_hz),
            "align_method": str(self.settings.method),
            "hrf": str(self.settings.hrf),
            "delays": np.asarray(self.settings.delays, dtype=np.float64).reshape(1, -1),
        }


# ---------------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------------


def grid_size(duration_s: float, rate_hz: float) -> int:
    """Rows of the aligned grid: the points ``k / rate_hz`` inside ``[0, duration_s)``, ``ceil(duration_s * rate_hz)``.

    ``duration_s * rate_hz`` is rounded to 9 decimals first, so a whole number of periods
    gets no extra row from floating point. 600 s at TR 2 (``rate_hz`` 0.5): 300 (t = 0, 2,
    ..., 598); 600 s at 100 Hz: 60000; 4 s at TR 2: 2; 4.1 s at TR 2: 3. The one rule of the
    scripts, the writers, the HDF5 store, ``python/align.py`` and :func:`align_embeddings`.
    """
    return max(0, math.ceil(round(float(duration_s) * float(rate_hz), 9)))


def _grid(start_s: float, duration_s: float, rate_hz: float) -> np.ndarray:
    return start_s + np.arange(grid_size(duration_s, rate_hz), dtype=np.float64) / rate_hz


def _nearest(centres: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the centre nearest each ``t`` (the earlier on a tie), int64 [len(t)]."""
    if centres.shape[0] == 1:
        return np.zeros(t.shape, dtype=np.int64)
    i = np.clip(np.searchsorted(centres, t, side="left"), 1, centres.shape[0] - 1)
    return np.where(t - centres[i - 1] <= centres[i] - t, i - 1, i).astype(np.int64)


def _ragged(lo: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(output row, source row) of every entry of rows ``k`` spanning ``lo[k] .. lo[k] + counts[k] - 1``."""
    rows = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    cols = np.arange(rows.shape[0], dtype=np.int64) - np.repeat(first, counts) + np.repeat(lo, counts)
    return rows, cols


def _matrix(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> Any:
    from scipy import sparse

    return sparse.csr_matrix((weights, (rows, cols)), shape=shape)


def _with_fallback(rows, cols, weights, bad, centres, t):
    """Replace the entries of output rows ``bad`` by one weight of 1 on their nearest row."""
    keep = ~bad[rows]
    fix = np.flatnonzero(bad)
    return (np.concatenate([rows[keep], fix]), np.concatenate([cols[keep], _nearest(centres, t[fix])]),
            np.concatenate([weights[keep], np.ones(fix.shape[0])]))


def _lanczos_weights(centres: np.ndarray, t: np.ndarray, *, cutoff_hz: float, lobes: int) -> Any:
    half = lobes / (2.0 * cutoff_hz)
    lo = np.searchsorted(centres, t - half, side="right")  # first centre with t - c < half
    hi = np.searchsorted(centres, t + half, side="left")   # first centre with c - t >= half
    counts = np.maximum(hi - lo, 0)
    rows, cols = _ragged(lo, counts)
    x = 2.0 * cutoff_hz * (t[rows] - centres[cols])
    w = np.sinc(x) * np.sinc(x / lobes)
    total = np.bincount(rows, weights=w, minlength=t.shape[0])
    magnitude = np.bincount(rows, weights=np.abs(w), minlength=t.shape[0])
    bad = (counts == 0) | ~(total > _MIN_WEIGHT_FRACTION * magnitude)
    w = w / np.where(bad, 1.0, total)[rows]
    return _matrix(*_with_fallback(rows, cols, w, bad, centres, t), (t.shape[0], centres.shape[0]))


def _mean_weights(centres: np.ndarray, t: np.ndarray, t_next: np.ndarray) -> Any:
    lo = np.searchsorted(centres, t, side="left")
    counts = np.searchsorted(centres, t_next, side="left") - lo
    counts = np.maximum(counts, 0)
    rows, cols = _ragged(lo, counts)
    w = 1.0 / np.maximum(counts, 1)[rows]
    return _matrix(*_with_fallback(rows, cols, w, counts == 0, centres, t), (t.shape[0], centres.shape[0]))


def _nearest_weights(centres: np.ndarray, t: np.ndarray) -> Any:
    n = t.shape[0]
    return _matrix(np.arange(n), _nearest(centres, t), np.ones(n), (n, centres.shape[0]))


def _apply(matrix: Any, x: np.ndarray, dtype: Any) -> np.ndarray:
    """``matrix @ x`` for x [T, D], in ``dtype`` arithmetic (float32 rows: float32, a third of the memory traffic)."""
    return np.asarray(matrix @ np.asarray(x, dtype=dtype), dtype=dtype)


def _gamma_pdf(t: np.ndarray, shape: float, scale: float = 1.0) -> np.ndarray:
    out = np.zeros_like(t)
    pos = t > 0
    u = t[pos] / scale
    out[pos] = np.exp((shape - 1.0) * np.log(u) - u - math.lgamma(shape)) / scale
    return out


def hrf_kernel(name: str, rate_hz: float, *, length_s: float = HRF_LENGTH_S) -> np.ndarray:
    """A canonical haemodynamic response sampled at ``rate_hz``, normalised to sum to 1.

    Parameters
    ----------
    name : {"spm", "glover", "none"}
        ``spm``: SPM's canonical double gamma, ``gamma(t; 6, 1) - gamma(t; 16, 1) / 6``
        (gamma densities of shape 6 and 16, scale 1 s: response peak near 5 s, undershoot
        near 15 s, undershoot ratio 1/6; ``spm_hrf``'s defaults, point-sampled).
        ``glover``: Glover (1999), ``(t/d1)^a1 exp(-(t-d1)/b1) - c (t/d2)^a2 exp(-(t-d2)/b2)``
        with ``a1 = 6, a2 = 12, b1 = b2 = 0.9 s, d_i = a_i b_i`` (5.4 s and 10.8 s),
        ``c = 0.35``. ``none``: ``[1.0]``.
    rate_hz : float
        Samples per second (> 0).
    length_s : float, keyword-only
        Samples at ``t = m / rate_hz`` for ``m = 0 .. floor(length_s * rate_hz)``.

    Returns
    -------
    numpy.ndarray
        float64 [M], ``M = floor(length_s * rate_hz) + 1`` (1 for ``none``).

    Raises
    ------
    ValueError
        Unknown ``name``, a rate <= 0, or a rate so low that the sampled response no longer
        sums to a positive number (TR above about 10 s).
    """
    if name not in HRFS:
        raise ValueError(f"hrf must be one of {', '.join(HRFS)}, got {name!r}")
    rate = _finite("rate_hz", rate_hz)
    if rate <= 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
    if name == "none":
        return np.ones(1)
    t = np.arange(math.floor(round(float(length_s) * rate, 9)) + 1, dtype=np.float64) / rate
    if name == "spm":
        h = _gamma_pdf(t, 6.0) - _gamma_pdf(t, 16.0) / 6.0
    else:
        a1, a2, b1, b2, c = 6.0, 12.0, 0.9, 0.9, 0.35
        d1, d2 = a1 * b1, a2 * b2
        h = (t / d1) ** a1 * np.exp(-(t - d1) / b1) - c * (t / d2) ** a2 * np.exp(-(t - d2) / b2)
    total = h.sum()
    if not total > 0:
        raise ValueError(f"the {name} HRF cannot be sampled at {rate:g} Hz (TR {1 / rate:g} s): "
                         "its samples do not sum to a positive number")
    return h / total


def _causal_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``y[n] = sum_m h[m] x[n - m]`` along axis 0 of x [T, N] (in x's precision), the first T samples."""
    n = x.shape[0]
    h = np.asarray(h[:n], dtype=x.dtype)
    if h.shape[0] <= 1:
        return x * (h[0] if h.shape[0] else 0.0)
    if h.shape[0] <= _DIRECT_CONV_MAX_TAPS:
        y = h[0] * x
        for m in range(1, h.shape[0]):
            y[m:] += h[m] * x[:n - m]
        return y
    from scipy.signal import fftconvolve

    return fftconvolve(x, h[:, None], axes=0)[:n]


def delay_stack(x: np.ndarray, delays: Sequence[int]) -> np.ndarray:
    """Delayed copies of ``x`` side by side, zero-filled at the start.

    Parameters
    ----------
    x : numpy.ndarray
        [T, D] (or [L, T, D]); rows are time.
    delays : sequence of int
        Delays in rows, each >= 0.

    Returns
    -------
    numpy.ndarray
        [T, D * len(delays)] (or [L, T, D * len(delays)]), same dtype: columns
        ``i * D .. (i + 1) * D - 1`` hold ``x`` delayed by ``delays[i]`` rows
        (``out[t, i*D + j] = x[t - delays[i], j]``, 0 for ``t < delays[i]``).
    """
    delays = _check_delays(delays)
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"delay_stack needs [T, D] or [L, T, D] rows, got shape {x.shape}")
    n = x.shape[-2]
    parts = []
    for d in delays:
        shifted = np.zeros_like(x)
        if d < n:
            shifted[..., d:, :] = x[..., :n - d, :]
        parts.append(shifted)
    return np.concatenate(parts, axis=-1)


def align_embeddings(embeddings: Any, time_axis_s: np.ndarray | None = None, *, window_s: float | None = None,
                     target_rate_hz: float, start_s: float = 0.0, duration_s: float | None = None,
                     method: str = "lanczos", hrf: str = "none", delays: Sequence[int] | None = None,
                     lanczos_lobes: int = 3) -> Aligned:
    """Put embedding rows on the grid ``start_s + k / target_rate_hz`` (see the module docstring).

        >>> result = model.embed_file("stim_600s.wav")                     # doctest: +SKIP
        >>> align_embeddings(result, target_rate_hz=0.5).embeddings.shape  # doctest: +SKIP
        (300, 768)

    Parameters
    ----------
    embeddings : numpy.ndarray or result
        [T, D], or [L, T, D] for several layers (each aligned on its own). Or a result
        (:class:`~audio_embeddings.api.EmbeddingResult`, ``FileEmbedding``: anything with
        ``embeddings``, ``time_axis_s``, ``window_s``, ``n_samples`` and ``sample_rate_hz``):
        its rows as float32, its time axis and window, and its file's duration
        ``n_samples / sample_rate_hz``, exactly as the scripts and writers align it.
    time_axis_s : numpy.ndarray
        float [T] row onsets in seconds (a [T, 1] column, as in the ``.mat``, is accepted),
        non-decreasing. Not with a result.
    window_s : float, keyword-only
        Audio one row sees, seconds; row ``j`` sits at its centre ``time_axis_s[j] + window_s / 2``.
        Not with a result.
    target_rate_hz : float, keyword-only
        Output rows per second (1 / TR).
    start_s : float, keyword-only
        Time of output row 0 in seconds (default 0, the stimulus onset).
    duration_s : float, keyword-only
        Seconds covered, > 0: ``ceil(duration_s * R)`` output rows (:func:`grid_size`), the
        grid points inside ``[start_s, start_s + duration_s)``. Default: a result's file
        duration ``n_samples / sample_rate_hz`` (what the scripts use); for arrays, the last
        row's end, ``time_axis_s[-1] + window_s``.
    method : {"lanczos", "mean", "nearest"}, keyword-only
    hrf : {"spm", "glover", "none"}, keyword-only
    delays : sequence of int, keyword-only
        Delays in output rows; None (or ``(0,)``) stacks nothing.
    lanczos_lobes : int, keyword-only
        The Lanczos ``a`` (3).

    Returns
    -------
    Aligned
        ``embeddings`` [T', D * len(delays)] (or [L, T', ...]), ``time_axis_s`` [T'].

    Raises
    ------
    ValueError
        Fewer than two rows (an utterance embedding has no time grid), a time axis that
        does not match the rows or decreases, or a setting out of range.
    """
    if _is_result(embeddings):
        if time_axis_s is not None or window_s is not None:
            raise ValueError("a result brings its own time axis and window: give time_axis_s and window_s "
                             "only with an array of rows")
        if duration_s is None:
            duration_s = _result_duration_s(embeddings)
        embeddings, time_axis_s, window_s = (np.asarray(embeddings.embeddings, dtype=np.float32),
                                             np.asarray(embeddings.time_axis_s), float(embeddings.window_s))
    elif time_axis_s is None or window_s is None:
        raise ValueError("align_embeddings needs time_axis_s and window_s with an array of rows "
                         "(or give it a result, which brings both)")
    emb = np.asarray(embeddings)
    if emb.ndim not in (2, 3):
        raise ValueError(f"embeddings must be [T, D] or [L, T, D], got shape {emb.shape}")
    onsets = np.asarray(time_axis_s, dtype=np.float64)
    if onsets.ndim == 2 and 1 in onsets.shape:
        onsets = onsets.ravel()
    if onsets.ndim != 1 or onsets.shape[0] != emb.shape[-2]:
        raise ValueError(f"time_axis_s must hold one onset per row ({emb.shape[-2]}), got shape {onsets.shape}")
    if onsets.shape[0] < 2:
        raise ValueError(f"alignment needs at least two rows on a time grid, got {onsets.shape[0]} "
                         "(an utterance-level output cannot be aligned)")
    if not np.all(np.isfinite(onsets)) or np.any(np.diff(onsets) < 0):
        raise ValueError("time_axis_s must be finite and non-decreasing")
    window = _finite("window_s", window_s)
    centres = onsets + window / 2.0
    step = float(np.median(np.diff(centres)))
    if not step > 0:
        raise ValueError("time_axis_s must increase (its median step is 0)")
    source_rate = 1.0 / step
    if duration_s is None:
        duration_s = float(onsets[-1] + window)
    settings = AlignSettings(target_rate_hz=target_rate_hz, start_s=start_s, duration_s=duration_s, method=method,
                             hrf=hrf, delays=delays, lanczos_lobes=lanczos_lobes)
    rate = settings.target_rate_hz
    t = _grid(settings.start_s, settings.duration_s, rate)
    cutoff = None
    if settings.method == "lanczos":
        cutoff = min(source_rate, rate) / 2.0
        matrix = _lanczos_weights(centres, t, cutoff_hz=cutoff, lobes=settings.lanczos_lobes)
    elif settings.method == "mean":
        t_next = settings.start_s + np.arange(1, t.shape[0] + 1, dtype=np.float64) / rate
        matrix = _mean_weights(centres, t, t_next)
    else:
        matrix = _nearest_weights(centres, t)
    kernel = hrf_kernel(settings.hrf, rate) if settings.hrf != "none" else None
    out_dtype = np.float64 if emb.dtype == np.float64 else np.float32
    layers = emb[None] if emb.ndim == 2 else emb
    matrix = matrix.astype(out_dtype)
    out = []
    for layer in layers:
        y = _apply(matrix, layer, out_dtype)
        if kernel is not None:
            y = _causal_convolve(y, kernel)
        out.append(y)
    result = np.stack(out) if emb.ndim == 3 else out[0]
    if settings.delays != (0,):
        result = delay_stack(result, settings.delays)
    return Aligned(embeddings=result, time_axis_s=t, settings=settings, source_rate_hz=source_rate,
                   cutoff_hz=cutoff)


def _is_result(value: Any) -> bool:
    """A result object (EmbeddingResult, FileEmbedding) rather than an array of rows."""
    return not isinstance(value, np.ndarray) and all(
        hasattr(value, name) for name in ("embeddings", "time_axis_s", "window_s", "sample_rate_hz"))


def _result_duration_s(result: Any) -> float | None:
    """The file's duration ``n_samples / sample_rate_hz`` of a result, None when it is not known."""
    n_samples = getattr(result, "n_samples", None)
    if n_samples is None:
        return None
    return float(n_samples) / float(result.sample_rate_hz)


# ---------------------------------------------------------------------------------------------
# Options (command line, MATLAB name-value pairs)
# ---------------------------------------------------------------------------------------------


def finite_float(text: str) -> float:
    """Option type: any finite number (seconds may be negative)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"a finite number, not {text!r}")
    return value


def delays_spec(text: str) -> tuple[int, ...]:
    """Option type for ``--delays``: comma-separated integers >= 0 (``0,1,2,3``), in output rows."""
    items = [t.strip() for t in str(text).replace(" ", "").strip("[]").split(",")]
    try:
        values = tuple(int(t) for t in items)
    except ValueError:
        raise ValueError(f"comma-separated integers >= 0 such as 0,1,2,3, not {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"comma-separated integers >= 0 such as 0,1,2,3, not {text!r}")
    return values


TARGET_RATE = Option("--target-rate-hz", "target_rate_hz",
                     "align the rows to R rows per second (an EEG/MEG rate; or give --tr)",
                     type=positive_float, metavar="R", affects="outputs", matlab="TargetRate")
TR = Option("--tr", "tr_s", "align the rows to an fMRI grid of one row every S seconds (1 / --target-rate-hz)",
            type=positive_float, metavar="S", affects="outputs", matlab="TR")
ALIGN_START = Option("--align-start", "align_start_s",
                     "time of the first aligned row, seconds of the audio (default 0, the stimulus onset)",
                     type=finite_float, metavar="S0", affects="outputs", matlab="AlignStart")
ALIGN_DURATION = Option("--align-duration", "align_duration_s",
                        "seconds the aligned rows cover: ceil(D*R) rows, the grid points inside it "
                        "(default: the file's duration)",
                        type=positive_float, metavar="D", affects="outputs", matlab="AlignDuration")
ALIGN_METHOD = Option("--align-method", "align_method",
                      "lanczos (default: Lanczos-windowed sinc, a=3) | mean (the rows in each TR) | nearest",
                      choices=METHODS, metavar="M", affects="outputs", matlab="AlignMethod")
HRF = Option("--hrf", "hrf", "convolve the aligned rows with a canonical HRF: spm | glover | none (default)",
             choices=HRFS, metavar="H", affects="outputs", matlab="HRF")
DELAYS = Option("--delays", "delays", "stack copies delayed by these numbers of aligned rows side by side "
                "(e.g. 1,2,3,4; zero-filled at the start)", type=delays_spec, metavar="D1,D2,...",
                affects="outputs", matlab="Delays")

#: The alignment options, each declared once (flags, MATLAB names, parsed-argument names).
OPTIONS: tuple[Option, ...] = (TARGET_RATE, TR, ALIGN_START, ALIGN_DURATION, ALIGN_METHOD, HRF, DELAYS)


def settings_from(values: Mapping[str, Any]) -> AlignSettings | None:
    """:class:`AlignSettings` from parsed option values keyed by ``Option.dest`` (e.g. ``vars(args)``).

    Values given as text (a config file) are converted by their Option; missing keys and
    None mean "not given".

    Returns
    -------
    AlignSettings or None
        None when neither ``--target-rate-hz`` nor ``--tr`` (nor any other alignment option) is given.

    Raises
    ------
    ValueError
        Both ``--target-rate-hz`` and ``--tr`` given, another alignment option given
        without either of them, or a value out of range.
    """
    given: dict[str, Any] = {}
    for option in OPTIONS:
        value = values.get(option.dest)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = option.convert(value)
            except ValueError as exc:
                raise ValueError(f"{option.flag} ({option.matlab_name}) must be {exc}") from None
        given[option.dest] = value
    rate, tr = given.get(TARGET_RATE.dest), given.get(TR.dest)
    if rate is not None and tr is not None:
        raise ValueError(f"give either {TARGET_RATE.flag} ({TARGET_RATE.matlab_name}) or {TR.flag} "
                         f"({TR.matlab_name}), not both")
    if rate is None and tr is None:
        others = [f"{o.flag} ({o.matlab_name})" for o in OPTIONS if o.dest in given]
        if others:
            raise ValueError(f"{', '.join(others)} need(s) {TARGET_RATE.flag} or {TR.flag} "
                             "(the time grid to align to)")
        return None
    return AlignSettings(target_rate_hz=rate if rate is not None else 1.0 / float(tr),
                         start_s=given.get(ALIGN_START.dest, 0.0), duration_s=given.get(ALIGN_DURATION.dest),
                         method=given.get(ALIGN_METHOD.dest, "lanczos"), hrf=given.get(HRF.dest, "none"),
                         delays=given.get(DELAYS.dest, (0,)))


# ---------------------------------------------------------------------------------------------
# python/align.py: align a .mat (or .npy) written earlier
# ---------------------------------------------------------------------------------------------


def _is_hdf5(path: Path) -> bool:
    import h5py

    return h5py.is_hdf5(str(path))


def read_mat(path: str | Path) -> dict[str, Any]:
    """The variables of a ``.mat`` file (v5 through SciPy, v7.3 through h5py) as this toolkit writes them.

    Numeric arrays keep their MATLAB shape (``T x D`` -> [T, D], ``L x T x D`` -> [L, T, D],
    scalars [1, 1]), ``char`` becomes ``str``, ``logical`` bool. Cells, structs and other
    MATLAB objects are skipped.

    Returns
    -------
    dict of str to numpy.ndarray or str
        In file order.
    """
    path = Path(path)
    out: dict[str, Any] = {}
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            for name, ds in f.items():
                if not isinstance(ds, h5py.Dataset) or name.startswith("#"):
                    continue
                cls = ds.attrs.get("MATLAB_class", b"")
                cls = cls.decode() if isinstance(cls, bytes) else str(cls)
                data = np.asarray(ds[()])
                if int(ds.attrs.get("MATLAB_empty", 0)):
                    data = np.zeros(tuple(int(v) for v in data.ravel()), dtype=np.float64)
                    out[name] = "" if cls == "char" else data
                    continue
                if cls == "char":
                    out[name] = bytes(data.T.ravel().astype("<u2")).decode("utf-16-le")
                elif cls == "logical":
                    out[name] = data.T.astype(bool)
                elif data.dtype.kind in "fiub" or data.dtype.names == ("real", "imag"):
                    if data.dtype.names:
                        data = data["real"] + 1j * data["imag"]
                    out[name] = np.ascontiguousarray(data.T)
        return out
    import scipy.io

    for name, value in scipy.io.loadmat(path, squeeze_me=False, chars_as_strings=True).items():
        if name.startswith("__"):
            continue
        value = np.asarray(value)
        if value.dtype.kind == "U":
            out[name] = "".join(value.ravel().tolist())
        elif value.dtype.kind in "fiubc":
            out[name] = value
    return out


def _scalar(variables: Mapping[str, Any], name: str, path: Path) -> float:
    if name not in variables:
        raise ValueError(f"{path} has no '{name}' variable (is it a .mat written by this toolkit?)")
    value = np.asarray(variables[name], dtype=np.float64).ravel()
    if value.shape != (1,):
        raise ValueError(f"'{name}' in {path} must be a scalar, got {value.shape[0]} values")
    return float(value[0])


def _file_duration(mat_path: Path) -> float | None:
    """Seconds of audio from the ``.json`` written next to a ``.mat`` (``num_samples / sample_rate``), if any."""
    import json

    meta_path = mat_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        return float(meta["num_samples"]) / float(meta["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python python/align.py FILE.mat --tr 2 [...]``: write ``FILE_aligned.mat``.

    The output holds the input's variables plus ``embeddings_aligned``, ``time_axis_aligned``,
    ``target_rate``, ``align_method``, ``hrf`` and ``delays``. The duration defaults to the
    file's (``num_samples / sample_rate`` of the ``FILE.json`` written next to it; without one,
    the last row's end). ``FILE.npy`` with ``--time-axis AXIS.npy --window-s S`` writes
    ``FILE_aligned.npy`` and ``FILE_aligned_time_axis.npy`` instead. Errors: one line
    ``error: ...`` on stderr, exit status 2.
    """
    import argparse
    import sys

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, status 2
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2)

    p = Parser(prog="align.py", description="Align embeddings written by this toolkit to a brain-data time grid "
               "(an EEG/MEG rate or an fMRI TR).")
    p.add_argument("input", metavar="FILE", help="a .mat written by this toolkit (v5 or v7.3), or a .npy of rows")
    for option in OPTIONS:
        option.add_to(p)
    p.add_argument("--output", default=None, metavar="OUT",
                   help="output file (default FILE_aligned.mat, or FILE_aligned.npy for a .npy)")
    p.add_argument("--mat-version", choices=("auto", "5", "7.3"), default=None,
                   help="format of the output .mat (default: that of the input)")
    p.add_argument("--time-axis", default=None, metavar="AXIS.npy", help="with a .npy FILE: row onsets in seconds")
    p.add_argument("--window-s", type=float, default=None, metavar="S", help="with a .npy FILE: audio per row, s")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = settings_from(vars(args))
        if settings is None:
            raise ValueError(f"give {TR.flag} S or {TARGET_RATE.flag} R (the time grid to align to)")
        src = Path(args.input)
        if not src.is_file():
            raise ValueError(f"no such file: {src}")
        if src.suffix.lower() == ".npy":
            return _main_npy(src, args, settings)
        variables = read_mat(src)
        for name in ("embeddings", "time_axis"):
            if name not in variables or isinstance(variables[name], str):
                raise ValueError(f"{src} has no '{name}' variable (is it a .mat written by this toolkit?)")
        window = _scalar(variables, "window_s", src)
        aligned = settings.apply(variables["embeddings"], variables["time_axis"], window_s=window,
                                 duration_s=_file_duration(src))
        from .outputs.matfile import write_mat

        out = Path(args.output) if args.output else src.with_name(src.stem + "_aligned.mat")
        version = args.mat_version or ("7.3" if _is_hdf5(src) else "auto")
        write_mat(out, {**variables, **aligned.mat_variables()}, version=version)
    except (ValueError, OSError, TypeError, KeyError) as exc:
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2
    print(f"{out}: embeddings_aligned {list(aligned.embeddings.shape)} at {settings.target_rate_hz:g} Hz "
          f"({settings.method}, hrf {settings.hrf}, delays {','.join(map(str, settings.delays))})")
    return 0


def _main_npy(src: Path, args: Any, settings: AlignSettings) -> int:
    if args.time_axis is None or args.window_s is None:
        raise ValueError("a .npy FILE needs --time-axis AXIS.npy and --window-s S")
    from .outputs.contract import save_npy

    aligned = settings.apply(np.load(src, allow_pickle=False), np.load(args.time_axis, allow_pickle=False),
                             window_s=args.window_s)
    out = Path(args.output) if args.output else src.with_name(src.stem + "_aligned.npy")
    save_npy(out.with_name(out.stem + "_time_axis.npy"), aligned.time_axis_s)
    save_npy(out, aligned.embeddings)
    print(f"{out}: {list(aligned.embeddings.shape)} at {settings.target_rate_hz:g} Hz")
    return 0
