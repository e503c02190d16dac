"""Window conventions of the reference tools, as one pure planning function and three options.

Window models cut a file into fixed windows at a hop. What happens at the ends differs
between the tools our users compare against, so the rules are spelt out here once:

``pad`` (BirdNET-Analyzer 2.4, ``audio.split_signal`` with ``USE_NOISE = False``)
    Windows start every hop until one reaches the end of the file; that last one is
    zero-padded. A last window holding less than ``min_samples`` of audio is dropped
    (BirdNET: ``SIG_MINLEN = 1.0`` s), and a file shorter than ``min_samples`` gives no
    window at all (BirdNET-Analyzer writes nothing for it).
``reflect`` (the Perch 2.0 extraction seed)
    The same windows; the last fragment is reflection-padded
    (``numpy.pad(fragment, (0, missing), mode="reflect")``).
``drop``
    Only windows that lie wholly inside the file; a file shorter than one window gives none.
``center`` (BirdNET-Analyzer's ``crop_center``, its ``--crop_mode center`` for queries and
training clips)
    One window per file: the central window of a longer file, or the whole file padded with
    zeros at the end.

Ends of windows: BirdNET-Analyzer's tables write ``end = min(start + window, duration)``
(``analyze/utils.py``, ``iterate_audio_chunks``); perch-hoplite stores
``offsets = [start, start + window]`` (``agile/embed.py``). :func:`window_ends_s` gives both.

Resampling: ``soxr-hq`` (this toolkit's loader) or ``kaiser-fast``, which is what
BirdNET-Analyzer gets from ``librosa.load(..., res_type="kaiser_fast")``: librosa hands it to
``resampy.resample(y, sr_in, sr_out, filter="kaiser_fast")`` and fixes the length to
``ceil(N * sr_out / sr_in)``. :func:`resample` does the same (resampy is needed for it;
its first call compiles with numba, about 30 s, cached afterwards).

Nothing here imports a framework; the functions are pure and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import RESAMPLERS, resample
from .declarations import nonnegative_float, Option

PARTIAL_MODES = ("pad", "reflect", "drop", "center")
END_CONVENTIONS = ("clip", "window")



def _choice(choices: tuple[str, ...]):
    def parse(text: str) -> str:
        value = str(text).strip().lower()
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}, not {text!r}")
        return value

    return parse


MIN_SECONDS = Option(
    "--min-seconds", "min_seconds",
    "shortest audio a window (and a file) must hold, s; shorter trailing windows are dropped, shorter files "
    "skipped (default: the model's: 1.0 for BirdNET, as BirdNET-Analyzer; none for Perch)",
    type=nonnegative_float, metavar="S", affects="numbers")
PARTIAL_WINDOW = Option(
    "--partial-window", "partial_window",
    "the last window past the end of a file: pad (zeros, BirdNET-Analyzer), reflect (Perch), drop (whole "
    "windows only), center (one central window per file, BirdNET-Analyzer's crop_mode center)",
    type=_choice(PARTIAL_MODES), metavar="pad|reflect|drop|center", affects="numbers")
RESAMPLER = Option(
    "--resampler", "resampler",
    "resampling of files not at the model's rate: soxr-hq (default) or kaiser-fast (librosa's kaiser_fast via "
    "resampy, as BirdNET-Analyzer loads audio)",
    type=_choice(RESAMPLERS), metavar="soxr-hq|kaiser-fast", affects="numbers")
#: The three options, in the order of ``--help``.
OPTIONS = (MIN_SECONDS, PARTIAL_WINDOW, RESAMPLER)


@dataclass(frozen=True)
class WindowRules:
    """A model's window conventions (see the module notes).

    Attributes
    ----------
    min_seconds : float
        Shortest audio a kept window (and a file) holds; 0: no limit.
    partial : {"pad", "reflect", "drop", "center"}
    resampler : {"soxr-hq", "kaiser-fast"}
    end : {"clip", "window"}
        How tables write a window's end: ``min(start + window, duration)`` or ``start + window``.
    reference : str
        The tool whose behaviour these rules reproduce.
    """

    min_seconds: float = 0.0
    partial: str = "pad"
    resampler: str = "soxr-hq"
    end: str = "clip"
    reference: str = ""

    def __post_init__(self):
        if self.partial not in PARTIAL_MODES:
            raise ValueError(f"partial window {self.partial!r}: choose from {', '.join(PARTIAL_MODES)}")
        if self.resampler not in RESAMPLERS:
            raise ValueError(f"resampler {self.resampler!r}: choose from {', '.join(RESAMPLERS)}")
        if self.end not in END_CONVENTIONS:
            raise ValueError(f"end {self.end!r}: choose from {', '.join(END_CONVENTIONS)}")
        if not self.min_seconds >= 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds}")

    def min_samples(self, sample_rate_hz: int) -> int:
        """``min_seconds`` in samples at ``sample_rate_hz`` (BirdNET-Analyzer: ``int(rate * minlen)``), at least 1."""
        return max(1, int(sample_rate_hz * self.min_seconds))

    def with_options(self, *, min_seconds: float | None = None, partial_window: str | None = None,
                     resampler: str | None = None) -> "WindowRules":
        """These rules with the given options (None keeps a rule)."""
        return WindowRules(self.min_seconds if min_seconds is None else float(min_seconds),
                           self.partial if partial_window is None else partial_window,
                           self.resampler if resampler is None else resampler, self.end, self.reference)

    def describe(self) -> dict[str, Any]:
        return {"min_seconds": self.min_seconds, "partial_window": self.partial, "resampler": self.resampler,
                "end": self.end, "reference": self.reference}


#: Each model family's defaults: what its reference tool does.
DEFAULT_RULES = {
    "birdnet": WindowRules(1.0, "pad", "soxr-hq", "clip", "BirdNET-Analyzer 2.4 (split_signal, SIG_MINLEN 1.0 s)"),
    "perch_v2": WindowRules(0.0, "reflect", "soxr-hq", "clip", "Perch 2.0 extraction seed (reflection-padded last "
                                                               "fragment)"),
}


def rules_for(model: str) -> WindowRules:
    """Default rules of a model (``perch_v2_cpu`` and other Perch builds share ``perch_v2``'s); else plain padding."""
    key = str(model).lower()
    if key.startswith("perch"):
        key = "perch_v2"
    elif key.startswith("birdnet"):
        key = "birdnet"
    return DEFAULT_RULES.get(key, WindowRules())


def plan_windows(n_samples: int, *, window_samples: int, hop_samples: int, min_samples: int = 1,
                 partial: str = "pad") -> tuple[np.ndarray, str]:
    """Window onsets of a file and how the caller pads a window past its end.

    Parameters
    ----------
    n_samples : int
        File length in samples (at the model's rate).
    window_samples, hop_samples : int
        Window length and hop, samples (> 0).
    min_samples : int
        Shortest audio a kept window holds, and a file needs (>= 1). For ``pad`` and
        ``reflect`` only the last window is checked, as BirdNET-Analyzer does.
    partial : {"pad", "reflect", "drop", "center"}
        See the module notes.

    Returns
    -------
    onsets : numpy.ndarray
        int64 [W] window onsets in samples, increasing; empty when the file gives no window.
    pad_mode : {"zeros", "reflect"}
        How to fill a window's samples past the end of the file.

    Notes
    -----
    BirdNET-Analyzer with an overlap over 1.5 s (hop under 1.5 s) keeps one zero-padded window of
    a file shorter than ``window - 2 * hop`` without checking ``min_samples`` (its last-chunk index
    goes negative and is reset to 0 past the check); here such a file is skipped like any other
    file under ``min_samples``. For every other length and hop the onsets are BirdNET-Analyzer's.
    """
    n, w, h = int(n_samples), int(window_samples), int(hop_samples)
    m = max(1, int(min_samples))
    if w < 1 or h < 1:
        raise ValueError(f"window ({w}) and hop ({h}) must be >= 1 sample")
    if partial not in PARTIAL_MODES:
        raise ValueError(f"partial window {partial!r}: choose from {', '.join(PARTIAL_MODES)}")
    pad_mode = "reflect" if partial == "reflect" else "zeros"
    empty = np.zeros(0, dtype=np.int64)
    if n < m or n < 1:
        return empty, pad_mode
    if partial == "center":
        return np.array([(n - w) // 2 if n > w else 0], dtype=np.int64), pad_mode
    if partial == "drop":
        if n < w:
            return empty, pad_mode
        return np.arange(0, n - w + 1, h, dtype=np.int64), pad_mode
    last = -(-max(n - w, 0) // h) * h  # first onset whose window reaches the end
    if n - last < m:
        last -= h
    if last < 0:
        return empty, pad_mode
    return np.arange(0, last + 1, h, dtype=np.int64), pad_mode


def window_ends_s(starts_s: np.ndarray, *, window_s: float, duration_s: float | None,
                  end: str = "clip") -> np.ndarray:
    """Window ends in seconds: ``min(start + window, duration)`` (``clip``) or ``start + window`` (``window``)."""
    starts = np.asarray(starts_s, dtype=np.float64)
    ends = starts + float(window_s)
    if end == "clip" and duration_s:
        ends = np.minimum(ends, float(duration_s))
    elif end not in END_CONVENTIONS:
        raise ValueError(f"end {end!r}: choose from {', '.join(END_CONVENTIONS)}")
    return ends


__all__ = ["END_CONVENTIONS", "MIN_SECONDS", "OPTIONS", "PARTIAL_MODES", "PARTIAL_WINDOW", "RESAMPLER", "RESAMPLERS",
           "WindowRules", "DEFAULT_RULES", "plan_windows", "resample", "rules_for", "window_ends_s"]


class RuledWindows:
    """Mixin for window backends whose windows follow :class:`WindowRules` (BirdNET, Perch).

    The backend lists :data:`OPTIONS` in its ``options``, passes the three values of its
    ``load`` to :meth:`apply_rules`, and gets ``plan_rows``, ``min_samples`` and ``pad_mode``
    from the rules (``describe()`` records them under ``window_rules``).
    """

    rules: WindowRules = WindowRules()

    def apply_rules(self, *, min_seconds: float | None = None, partial_window: str | None = None,
                    resampler: str | None = None) -> None:
        """Take the model's default rules (:func:`rules_for` its name), overridden by the given options."""
        self.rules = rules_for(self.name).with_options(min_seconds=min_seconds, partial_window=partial_window,
                                                       resampler=resampler)
        self.min_samples = self.rules.min_samples(self.sample_rate_hz)
        self.pad_mode = "reflect" if self.rules.partial == "reflect" else "zeros"
        self.resampler = self.rules.resampler

    def plan_rows(self, n_samples: int) -> np.ndarray:
        """Window onsets in samples, int64 [W], by :func:`plan_windows` with this backend's rules."""
        return plan_windows(n_samples, window_samples=self.window_samples, hop_samples=self.hop_samples,
                            min_samples=self.min_samples, partial=self.rules.partial)[0]
