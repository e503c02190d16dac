"""A backend added from outside the package, as a user's plugin would be: ``AUDIO_EMBEDDINGS_PLUGINS=stub_plugin``.

It proves that a new model is one module plus registry entries: its one option, ``--stub-gain``,
must appear in ``--help``, reach the loader, enter the resume fingerprint and work from MATLAB
(``'StubGain', 3``) with no edit to ``cli.py`` or any ``.m`` file. Rows are the gain times the
mean and the RMS of each 0.25 s window (2-d), so the effect of the option is checkable.
"""

from __future__ import annotations

import numpy as np

from audio_embeddings.backends.base import BaseBackend, BatchOutput, Option, positive_float
from audio_embeddings.framing import windows_to_cover
from audio_embeddings.registry import Preset

RATE_HZ = 8000
WINDOW = 2000


class StubBackend(BaseBackend):
    """gain * [mean, rms] of 0.25 s windows at 8 kHz."""

    framing = "windows"
    sample_rate_hz = RATE_HZ
    embedding_dim = 2
    window_samples = WINDOW
    hop_samples = WINDOW
    frame_stride_s = WINDOW / RATE_HZ
    window_s = WINDOW / RATE_HZ
    input_norm = "none"
    options = (Option("--stub-gain", "gain", "stub plugin: multiply the rows by this", type=positive_float,
                      metavar="G"),)
    option_group = "stub plugin (tests)"

    def __init__(self, *, name: str, gain: float):
        self.name = name
        self.gain = gain

    @classmethod
    def load(cls, source, *, name="stub-gain", device="auto", dtype="float32", gain=None):
        return cls(name=name, gain=1.0 if gain is None else float(gain))

    def plan_rows(self, n_samples: int) -> np.ndarray:
        return windows_to_cover(n_samples, window_samples=WINDOW, hop_samples=WINDOW)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        x = np.asarray(audio, dtype=np.float64)
        rows = np.stack([x.mean(axis=1), np.sqrt((x ** 2).mean(axis=1))], axis=1) * self.gain
        return BatchOutput(rows.astype(np.float32))

    def details(self):
        return {"gain": self.gain}


PRESETS = [Preset(name="stub-gain", module="stub_plugin", cls="StubBackend", checkpoint=None, sample_rate_hz=RATE_HZ,
                  frame_stride_s=WINDOW / RATE_HZ, output_subdir="stub", description="test plugin")]
