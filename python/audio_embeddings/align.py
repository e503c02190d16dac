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

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .declarations import finite_float, nonnegative_int, Option, positive_float
from .events import BoldFolder, EventsFolder, read_bold_json, read_events, slice_time_offset_s

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
#: Default HRF oversampling: rows are convolved on a grid this much finer than the output (nilearn's default).
HRF_OVERSAMPLING_DEFAULT = 50
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
    n_volumes : int or None
        Scanner volumes of the run (rows of the full grid, before ``dummy_scans`` are dropped);
        None: ``ceil(duration_s * R)``, the grid points inside the stimulus.
    dummy_scans : int
        Volumes at the start of the grid left out of the outputs (their rows are still computed,
        so the HRF and the delays see the stimulus played during them).
    slice_time_s : float
        Time within each volume the rows stand for, seconds (fMRIPrep's slice-timing reference
        ``tzero``, :func:`~audio_embeddings.events.slice_time_offset_s`): row ``k`` at
        ``start_s + slice_time_s + k / R``.
    hrf_oversampling : int
        With an HRF: the rows are aligned to ``R * hrf_oversampling``, convolved there with the
        HRF sampled as finely, and every ``hrf_oversampling``-th row kept (nilearn's order of
        operations, default 50 as nilearn's; 1: convolve on the output grid).
    events : Events, EventsFolder or None
        Align to these events instead of a regular grid (one row per event; see
        :func:`align_embeddings`); ``target_rate_hz`` is then None and ``hrf``/``delays``/
        ``n_volumes``/``dummy_scans`` stay at their defaults. An
        :class:`~audio_embeddings.events.EventsFolder` holds each input's own events file (several
        runs): :meth:`for_input` resolves it per input.
    bold : BoldFolder or None
        Each input's own bold sidecar (several runs): ``target_rate_hz`` is then None and
        :meth:`for_input` gives each input the TR and slice time of its sidecar.

    Raises
    ------
    ValueError
        A setting out of range; the message names it.
    """

    target_rate_hz: float | None
    start_s: float = 0.0
    duration_s: float | None = None
    method: str = "lanczos"
    hrf: str = "none"
    delays: tuple[int, ...] | None = (0,)
    lanczos_lobes: int = 3
    n_volumes: int | None = None
    dummy_scans: int = 0
    slice_time_s: float = 0.0
    hrf_oversampling: int = HRF_OVERSAMPLING_DEFAULT
    events: Any = None
    bold: Any = None

    def __post_init__(self) -> None:
        if self.bold is not None:
            if self.target_rate_hz is not None or self.events is not None or self.slice_time_s:
                raise ValueError("a folder of bold sidecars gives each input its TR and slice time: no "
                                 "target_rate_hz, events or slice_time_s with it")
        elif self.events is not None:
            if self.target_rate_hz is not None:
                raise ValueError("align either to events or to a rate (target_rate_hz / TR), not both")
        else:
            rate = _finite("target_rate_hz", self.target_rate_hz)
            if rate <= 0:
                raise ValueError(f"target_rate_hz must be > 0, got {self.target_rate_hz!r}")
            object.__setattr__(self, "target_rate_hz", rate)
        for name, minimum in (("n_volumes", 1), ("dummy_scans", 0), ("hrf_oversampling", 1)):
            value = getattr(self, name)
            if value is None and name == "n_volumes":
                continue
            if isinstance(value, bool) or not float(value).is_integer() or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.n_volumes is not None and self.dummy_scans >= self.n_volumes:
            raise ValueError(f"dummy_scans ({self.dummy_scans}) must be fewer than n_volumes ({self.n_volumes})")
        object.__setattr__(self, "slice_time_s", _finite("slice_time_s", self.slice_time_s))
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
        if self.events is not None and (self.hrf != "none" or self.delays != (0,) or self.n_volumes is not None
                                        or self.dummy_scans or self.slice_time_s):
            raise ValueError("with events (one row per event) there is no regular grid: no HRF, delays, "
                             "volume count, dummy scans or slice timing")

    @property
    def tr_s(self) -> float | None:
        """Seconds between output rows, ``1 / target_rate_hz`` (None with events)."""
        return None if self.target_rate_hz is None else 1.0 / self.target_rate_hz

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
            "n_volumes": self.n_volumes,
            "dummy_scans": self.dummy_scans,
            "slice_time_s": self.slice_time_s,
            "hrf_oversampling": self.hrf_oversampling,
            **({"events": self.events.describe()} if self.events is not None else {}),
            **({"bold_json": self.bold.describe()} if self.bold is not None else {}),
        }

    @property
    def per_input(self) -> bool:
        """Whether each input has its own events file or sidecar (:meth:`for_input` resolves them)."""
        return self.bold is not None or isinstance(self.events, EventsFolder)

    def for_input(self, key: str) -> "AlignSettings":
        """The settings of input ``key`` (its corpus key or path): with a folder of events files or bold
        sidecars, its own events or TR (see :class:`~audio_embeddings.events.EventsFolder`); else these.

        Raises
        ------
        EventsError
            No (or several) events file or sidecar for ``key``, or an unreadable one; one line.
        """
        if isinstance(self.events, EventsFolder):
            return dataclasses.replace(self, events=self.events.events_for(key)[0])
        if self.bold is not None:
            sidecar = self.bold.sidecar_for(key)[0]
            slice_time = (slice_time_offset_s(sidecar.slice_timing_s, self.bold.slice_time_ref)
                          if sidecar.slice_timing_s is not None else 0.0)
            return dataclasses.replace(self, target_rate_hz=1.0 / sidecar.repetition_time_s,
                                       slice_time_s=slice_time, bold=None)
        return self

    def input_fields(self, key: str) -> dict[str, Any]:
        """What of input ``key``'s own experiment files its outputs' stamp records: with a folder,
        ``{"align_inputs": sha256 of its events file's (or sidecar's) bytes}``; else ``{}``.

        Raises
        ------
        EventsError
            As :meth:`for_input`.
        """
        if isinstance(self.events, EventsFolder):
            return {"align_inputs": self.events.events_for(key)[1]}
        if self.bold is not None:
            return {"align_inputs": self.bold.sidecar_for(key)[1]}
        return {}

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
        if self.per_input:
            raise ValueError(f"{EVENTS.flag}/{BOLD_JSON.flag} name a folder: each input's events or sidecar is "
                             "found by its name (AlignSettings.for_input(key)); give a file to align one input")
        return align_embeddings(embeddings, time_axis_s, window_s=window_s, target_rate_hz=self.target_rate_hz,
                                start_s=self.start_s,
                                duration_s=self.duration_s if self.duration_s is not None else duration_s,
                                method=self.method, hrf=self.hrf, delays=self.delays,
                                lanczos_lobes=self.lanczos_lobes, n_volumes=self.n_volumes,
                                dummy_scans=self.dummy_scans, slice_time_s=self.slice_time_s,
                                hrf_oversampling=self.hrf_oversampling, events=self.events)


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
    durations_s : numpy.ndarray or None
        float64 [T'] the events' durations (with events; ``time_axis_s`` holds their onsets).
    labels : tuple of str or None
        [T'] the events' labels (with events).
    """

    embeddings: np.ndarray
    time_axis_s: np.ndarray
    settings: AlignSettings
    source_rate_hz: float
    cutoff_hz: float | None
    durations_s: np.ndarray | None = None
    labels: tuple[str, ...] | None = None

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
            "target_rate": float(self.settings.target_rate_hz if self.settings.target_rate_hz is not None
                                 else np.nan),
            "align_method": str(self.settings.method),
            "hrf": str(self.settings.hrf),
            "delays": np.asarray(self.settings.delays, dtype=np.float64).reshape(1, -1),
            **({"event_onset": np.asarray(self.time_axis_s, dtype=np.float64).reshape(-1, 1),
                "event_duration": np.asarray(self.durations_s, dtype=np.float64).reshape(-1, 1),
                "event_label": list(self.labels or ())} if self.durations_s is not None else {}),
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


def _event_weights(centres: np.ndarray, onsets: np.ndarray, durations: np.ndarray) -> Any:
    """Mean of the centres in ``[onset, onset + duration)``; the nearest centre to the onset (duration 0) or
    to the midpoint (no centre inside) otherwise. [n_events, T] sparse."""
    lo = np.searchsorted(centres, onsets, side="left")
    counts = np.maximum(np.searchsorted(centres, onsets + durations, side="left") - lo, 0)
    counts[durations <= 0] = 0
    rows, cols = _ragged(lo, counts)
    w = 1.0 / np.maximum(counts, 1)[rows]
    bad = counts == 0
    anchor = np.where(durations > 0, onsets + durations / 2.0, onsets)
    return _matrix(*_with_fallback(rows, cols, w, bad, centres, anchor), (onsets.shape[0], centres.shape[0]))


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


#: The gamma-difference parameters of each HRF: (delay, undershoot, dispersion, undershoot dispersion, ratio),
#: nilearn's ``spm_hrf``/``glover_hrf`` (``nilearn.glm.first_level.hemodynamic_models``).
_HRF_PARAMETERS = {"spm": (6.0, 16.0, 1.0, 1.0, 0.167), "glover": (6.0, 12.0, 0.9, 0.9, 0.48)}


def hrf_kernel(name: str, rate_hz: float, *, length_s: float = HRF_LENGTH_S, oversampling: int = 1) -> np.ndarray:
    """A canonical haemodynamic response sampled at ``rate_hz * oversampling``, normalised to sum to 1.

    The same numbers as nilearn's ``spm_hrf(t_r, oversampling, time_length)`` and
    ``glover_hrf(...)`` with ``t_r = 1 / rate_hz`` (tests/test_events_runs.py checks them against
    nilearn itself to 1e-6), so a design built here and one built with nilearn use one kernel:
    a difference of two gamma densities, ``g(t; delay/disp, disp) - ratio * g(t; under/udisp, udisp)``,
    each shifted by one sample ``dt = 1 / (rate_hz * oversampling)``, at
    ``t = linspace(0, length_s, round(length_s / dt))`` (nilearn's grid: its spacing is
    ``length_s / (M - 1)``, slightly more than ``dt``).

    Parameters
    ----------
    name : {"spm", "glover", "none"}
        ``spm``: delay 6 s, undershoot 16 s, dispersions 1, ratio 0.167 (SPM's canonical HRF:
        peak near 5 s, undershoot near 15 s). ``glover``: delay 6 s, undershoot 12 s,
        dispersions 0.9, ratio 0.48 (nilearn's Glover 1999 fit). ``none``: ``[1.0]``.
    rate_hz : float
        Samples per second of the grid (1 / TR), > 0.
    length_s : float, keyword-only
        Kernel length in seconds (32).
    oversampling : int, keyword-only
        Samples per grid period (nilearn's ``oversampling``; 1: one per row).

    Returns
    -------
    numpy.ndarray
        float64 [M], ``M = round(length_s * rate_hz * oversampling)`` (1 for ``none``).

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
    if isinstance(oversampling, bool) or int(oversampling) != oversampling or oversampling < 1:
        raise ValueError(f"oversampling must be an integer >= 1, got {oversampling!r}")
    if name == "none":
        return np.ones(1)
    dt = 1.0 / (rate * int(oversampling))
    t = np.linspace(0.0, float(length_s), int(np.rint(float(length_s) / dt)))
    delay, under, disp, udisp, ratio = _HRF_PARAMETERS[name]
    h = _gamma_pdf(t - dt, delay / disp, disp) - ratio * _gamma_pdf(t - dt, under / udisp, udisp)
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
                     lanczos_lobes: int = 3, n_volumes: int | None = None, dummy_scans: int = 0,
                     slice_time_s: float = 0.0, hrf_oversampling: int = HRF_OVERSAMPLING_DEFAULT,
                     events: Any = None) -> Aligned:
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
    n_volumes : int, keyword-only
        Rows of the full scanner grid (default ``ceil(duration_s * R)``).
    dummy_scans : int, keyword-only
        Leading volumes computed (the HRF and delays see them) but left out: ``T' = n_volumes - dummy_scans``,
        row 0 at ``start_s + slice_time_s + dummy_scans / R``.
    slice_time_s : float, keyword-only
        Added to every grid time (fMRIPrep's slice-timing reference, seconds into each volume).
    hrf_oversampling : int, keyword-only
        With an HRF, align to ``R * hrf_oversampling``, convolve there, keep every
        ``hrf_oversampling``-th row (nilearn's ``compute_regressor`` order; 1: convolve at ``R``).
    events : Events, keyword-only
        One output row per event (``target_rate_hz`` None): the mean of the rows whose centres fall in
        ``[onset, onset + duration)``; for a zero-duration event, or one too short to hold a
        centre, the row whose centre is nearest the onset (zero duration) or the event's
        midpoint. ``time_axis_s`` holds the onsets, ``durations_s`` and ``labels`` the rest.

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
                             hrf=hrf, delays=delays, lanczos_lobes=lanczos_lobes, n_volumes=n_volumes,
                             dummy_scans=dummy_scans, slice_time_s=slice_time_s, hrf_oversampling=hrf_oversampling,
                             events=events)
    out_dtype = np.float64 if emb.dtype == np.float64 else np.float32
    layers = emb[None] if emb.ndim == 2 else emb
    if settings.events is not None:
        ev = settings.events
        ev_onsets = np.asarray(ev.onsets_s, dtype=np.float64)
        ev_durations = np.asarray(ev.durations_s, dtype=np.float64)
        matrix = _event_weights(centres, ev_onsets, ev_durations).astype(out_dtype)
        out = [_apply(matrix, layer, out_dtype) for layer in layers]
        return Aligned(embeddings=np.stack(out) if emb.ndim == 3 else out[0], time_axis_s=ev_onsets,
                       settings=settings, source_rate_hz=source_rate, cutoff_hz=None, durations_s=ev_durations,
                       labels=tuple(ev.labels))
    rate = settings.target_rate_hz
    n_full = settings.n_volumes if settings.n_volumes is not None else grid_size(settings.duration_s, rate)
    if settings.dummy_scans >= n_full:
        raise ValueError(f"dummy_scans ({settings.dummy_scans}) leave no volume of the {n_full} in the grid")
    over = settings.hrf_oversampling if settings.hrf != "none" else 1
    fine_rate = rate * over
    t0 = settings.start_s + settings.slice_time_s
    t = t0 + np.arange(n_full * over, dtype=np.float64) / fine_rate
    cutoff = None
    if settings.method == "lanczos":
        cutoff = min(source_rate, fine_rate) / 2.0
        matrix = _lanczos_weights(centres, t, cutoff_hz=cutoff, lobes=settings.lanczos_lobes)
    elif settings.method == "mean":
        t_next = t0 + np.arange(1, t.shape[0] + 1, dtype=np.float64) / fine_rate
        matrix = _mean_weights(centres, t, t_next)
    else:
        matrix = _nearest_weights(centres, t)
    kernel = hrf_kernel(settings.hrf, rate, oversampling=over) if settings.hrf != "none" else None
    matrix = matrix.astype(out_dtype)
    out = []
    for layer in layers:
        y = _apply(matrix, layer, out_dtype)
        if kernel is not None:
            y = _causal_convolve(y, kernel)[::over]
        out.append(y)
    result = np.stack(out) if emb.ndim == 3 else out[0]
    if settings.delays != (0,):
        result = delay_stack(result, settings.delays)
    k = settings.dummy_scans
    if k:
        result = np.ascontiguousarray(result[..., k:, :])
    return Aligned(embeddings=result, time_axis_s=t[::over][k:], settings=settings, source_rate_hz=source_rate,
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



def _fraction(text: str) -> float:
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a fraction in [0, 1], not {text!r}")
    return value


EVENTS = Option("--events", "events_file",
                "one aligned row per event instead of a grid: a BIDS events.tsv (onset, duration, trial_type), a "
                "CSV/TSV of onsets (and durations), or a Praat TextGrid (word intervals); each row is the mean of "
                "the rows whose centres fall in the event (the row at the onset for zero durations); a folder "
                "(e.g. a BIDS func/): each input's own <stem>_events.tsv/.tsv/.csv/.TextGrid, or the events.tsv "
                "whose stim_file names it",
                metavar="FILE", affects="outputs", matlab="Events", reads_file=True)
EVENTS_TIER = Option("--events-tier", "events_tier", "with a TextGrid --events: the tier (default words/word, "
                     "else the first)", metavar="NAME", affects="outputs", matlab="EventsTier")
N_VOLUMES = Option("--n-volumes", "n_volumes", "scanner volumes of the run (default ceil(D/TR), the grid points "
                   "inside the stimulus); dummy scans included", type=nonnegative_int, metavar="N", affects="outputs",
                   matlab="NVolumes")
BOLD_JSON = Option("--bold-json", "bold_json", "a BIDS *_bold.json: its RepetitionTime gives the TR, its "
                   "SliceTiming the time each volume stands for (with --slice-time-ref); a folder: each input's own "
                   "<stem>_bold.json, or that of the events.tsv whose stim_file names it", metavar="JSON",
                   affects="outputs", matlab="BoldJson", reads_file=True)
SLICE_TIME_REF = Option("--slice-time-ref", "slice_time_ref", "with a --bold-json that has SliceTiming: the "
                        "reference slice as fMRIPrep's --slice-time-ref, a fraction of the slice acquisition range "
                        "(default 0.5; 0 the first slice)", type=_fraction, metavar="F", affects="outputs",
                        matlab="SliceTimeRef")
DUMMY_SCANS = Option("--dummy-scans", "dummy_scans", "leave out the first K volumes (computed, so the HRF and "
                     "delays see the stimulus during them, then dropped)", type=nonnegative_int, metavar="K",
                     affects="outputs", matlab="DummyScans")
HRF_OVERSAMPLING = Option("--hrf-oversampling", "hrf_oversampling", "convolve with the HRF on a grid this many "
                          "times finer than the TR, then keep the volumes (default 50, nilearn's)", type=nonnegative_int,
                          metavar="N", affects="outputs", matlab="HRFOversampling")

#: The alignment options, each declared once (flags, MATLAB names, parsed-argument names).
OPTIONS: tuple[Option, ...] = (TARGET_RATE, TR, ALIGN_START, ALIGN_DURATION, ALIGN_METHOD, HRF, DELAYS, EVENTS,
                               EVENTS_TIER, N_VOLUMES, BOLD_JSON, SLICE_TIME_REF, DUMMY_SCANS, HRF_OVERSAMPLING)


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
    if EVENTS_TIER.dest in given and EVENTS.dest not in given:
        raise ValueError(f"{EVENTS_TIER.flag} ({EVENTS_TIER.matlab_name}) needs {EVENTS.flag}")
    if EVENTS.dest in given:
        grid = [f"{o.flag} ({o.matlab_name})" for o in (TARGET_RATE, TR, N_VOLUMES, BOLD_JSON, SLICE_TIME_REF,
                                                         DUMMY_SCANS, HRF, DELAYS, HRF_OVERSAMPLING)
                if o.dest in given]
        if grid:
            raise ValueError(f"{EVENTS.flag} ({EVENTS.matlab_name}) gives one row per event; it takes no grid "
                             f"option ({', '.join(grid)})")
        source, tier = given[EVENTS.dest], given.get(EVENTS_TIER.dest)
        return AlignSettings(target_rate_hz=None, start_s=given.get(ALIGN_START.dest, 0.0),
                             duration_s=given.get(ALIGN_DURATION.dest),
                             events=EventsFolder(source, tier=tier) if Path(source).is_dir()
                             else read_events(source, tier=tier))
    slice_time = 0.0
    bold = None
    if BOLD_JSON.dest in given and Path(given[BOLD_JSON.dest]).is_dir():
        if rate is not None or tr is not None:
            raise ValueError(f"{BOLD_JSON.flag} {given[BOLD_JSON.dest]} is a folder: each input's sidecar gives "
                             f"its TR; leave out {TR.flag}/{TARGET_RATE.flag}")
        bold = BoldFolder(given[BOLD_JSON.dest], slice_time_ref=given.get(SLICE_TIME_REF.dest, 0.5))
    elif BOLD_JSON.dest in given:
        sidecar = read_bold_json(given[BOLD_JSON.dest])
        if rate is not None or (tr is not None and abs(float(tr) - sidecar.repetition_time_s) > 1e-9):
            raise ValueError(f"{BOLD_JSON.flag} {given[BOLD_JSON.dest]} gives RepetitionTime "
                             f"{sidecar.repetition_time_s:g} s; leave out {TR.flag}/{TARGET_RATE.flag} or make "
                             "them agree")
        tr = sidecar.repetition_time_s
        if sidecar.slice_timing_s is not None:
            slice_time = slice_time_offset_s(sidecar.slice_timing_s, given.get(SLICE_TIME_REF.dest, 0.5))
    elif SLICE_TIME_REF.dest in given:
        raise ValueError(f"{SLICE_TIME_REF.flag} ({SLICE_TIME_REF.matlab_name}) needs {BOLD_JSON.flag} "
                         "(its SliceTiming)")
    if rate is None and tr is None and bold is None:
        others = [f"{o.flag} ({o.matlab_name})" for o in OPTIONS if o.dest in given]
        if others:
            raise ValueError(f"{', '.join(others)} need(s) {TARGET_RATE.flag}, {TR.flag}, {BOLD_JSON.flag} or "
                             f"{EVENTS.flag} (the time grid to align to)")
        return None
    return AlignSettings(target_rate_hz=rate if rate is not None or bold is not None else 1.0 / float(tr),
                         start_s=given.get(ALIGN_START.dest, 0.0), duration_s=given.get(ALIGN_DURATION.dest),
                         method=given.get(ALIGN_METHOD.dest, "lanczos"), hrf=given.get(HRF.dest, "none"),
                         delays=given.get(DELAYS.dest, (0,)), n_volumes=given.get(N_VOLUMES.dest),
                         dummy_scans=given.get(DUMMY_SCANS.dest, 0), slice_time_s=slice_time,
                         hrf_oversampling=given.get(HRF_OVERSAMPLING.dest, HRF_OVERSAMPLING_DEFAULT), bold=bold)


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
            raise ValueError(f"give {TR.flag} S, {TARGET_RATE.flag} R, {BOLD_JSON.flag} JSON or {EVENTS.flag} FILE "
                             "(the time grid to align to)")
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
    print(f"{out}: embeddings_aligned {list(aligned.embeddings.shape)} at {_grid_words(settings)} "
          f"({settings.method}, hrf {settings.hrf}, delays {','.join(map(str, settings.delays))})")
    return 0


def _grid_words(settings: AlignSettings) -> str:
    if settings.events is not None:
        return f"{len(settings.events)} events of {settings.events.source}"
    return f"{settings.target_rate_hz:g} Hz"


def _main_npy(src: Path, args: Any, settings: AlignSettings) -> int:
    if args.time_axis is None or args.window_s is None:
        raise ValueError("a .npy FILE needs --time-axis AXIS.npy and --window-s S")
    from .outputs.contract import save_npy

    aligned = settings.apply(np.load(src, allow_pickle=False), np.load(args.time_axis, allow_pickle=False),
                             window_s=args.window_s)
    out = Path(args.output) if args.output else src.with_name(src.stem + "_aligned.npy")
    save_npy(out.with_name(out.stem + "_time_axis.npy"), aligned.time_axis_s)
    save_npy(out, aligned.embeddings)
    print(f"{out}: {list(aligned.embeddings.shape)} at {_grid_words(settings)}")
    return 0
