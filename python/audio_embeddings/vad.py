"""Voice-activity detection: speech regions of a recording, with Silero VAD (``silero-vad`` on PyPI).

The ``silero-vad`` package ships its model files, so this runs offline; it needs torch only
(its audio helpers want torchaudio, which this module never calls). Audio at another rate than
16 kHz is resampled to 16 kHz for the detector; the regions are in seconds either way.

:func:`speech_regions` returns ``[K, 2]`` start/end seconds: Silero's own
``get_speech_timestamps`` with our names: regions shorter than ``min_speech_s`` are dropped,
silences shorter than ``merge_gap_s`` do not split a region, and a region longer than
``max_segment_s`` is split (at its longest inner silence where there is one; Silero's rule).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import audio

#: The detector's rate.
VAD_RATE_HZ = 16000
#: The choices of ``--vad``.
METHODS = ("none", "silero")


class VadError(RuntimeError):
    """The detector cannot run (the ``silero-vad`` package is missing) or was given bad settings."""


@dataclass(frozen=True)
class VadSettings:
    """How speech is found (recorded in provenance and in the resume fingerprint).

    Attributes
    ----------
    method : {"silero"}
    threshold : float
        Speech probability above which a 32 ms frame is speech (Silero's default 0.5).
    min_speech_s : float
        Shorter speech regions are dropped.
    merge_gap_s : float
        Silences shorter than this do not end a region.
    max_segment_s : float
        Longer regions are split; recordings longer than this are segmented rather than trimmed
        (trimmed: one span from the first speech start to the last speech end).
    pad_s : float
        Silence kept on each side of a region (Silero's ``speech_pad_ms``).
    """

    method: str = "silero"
    threshold: float = 0.5
    min_speech_s: float = 0.25
    merge_gap_s: float = 0.3
    max_segment_s: float = 30.0
    pad_s: float = 0.03

    def __post_init__(self):
        if self.method not in METHODS[1:]:
            raise VadError(f"unknown VAD {self.method!r}; choose from {', '.join(METHODS)}")
        if not (0 < self.threshold < 1) or self.min_speech_s < 0 or self.merge_gap_s < 0 \
                or self.max_segment_s <= self.min_speech_s or self.pad_s < 0:
            raise VadError(f"VAD settings out of range: {self}")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def load_detector() -> Any:
    """Silero's model (the TorchScript file inside the ``silero-vad`` package; no download).

    Raises
    ------
    VadError
        ``silero-vad`` (or torch) is not installed.
    """
    try:
        from silero_vad import load_silero_vad  # deferred: imports torch
    except ImportError as exc:
        raise VadError(f"--vad silero needs the silero-vad package: pip install silero-vad ({exc})") from None
    return load_silero_vad()


def speech_regions(samples: np.ndarray, *, sample_rate_hz: int, settings: VadSettings,
                   detector: Any = None) -> np.ndarray:
    """Speech regions of a mono recording.

    Parameters
    ----------
    samples : numpy.ndarray
        float32 [N], mono.
    sample_rate_hz : int
        Rate of ``samples``.
    settings : VadSettings
    detector : optional
        A model from :func:`load_detector` (loaded here when None; load it once for many files).

    Returns
    -------
    numpy.ndarray
        float64 [K, 2]: start and end of each region in seconds, in order, not overlapping.
    """
    import torch  # deferred: the detector is a torch model

    from silero_vad import get_speech_timestamps

    detector = load_detector() if detector is None else detector
    x = np.asarray(samples, dtype=np.float32)
    if sample_rate_hz != VAD_RATE_HZ:
        x = audio.resample(x, from_hz=sample_rate_hz, to_hz=VAD_RATE_HZ)
    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(x)), detector, threshold=settings.threshold,
        sampling_rate=VAD_RATE_HZ, min_speech_duration_ms=int(round(settings.min_speech_s * 1000)),
        max_speech_duration_s=settings.max_segment_s, min_silence_duration_ms=int(round(settings.merge_gap_s * 1000)),
        speech_pad_ms=int(round(settings.pad_s * 1000)))
    regions = np.array([[s["start"], s["end"]] for s in stamps], dtype=np.float64).reshape(-1, 2) / VAD_RATE_HZ
    return np.clip(regions, 0.0, x.shape[0] / VAD_RATE_HZ)


__all__ = ["METHODS", "VAD_RATE_HZ", "VadError", "VadSettings", "load_detector", "speech_regions"]
