"""A zero-cost model for measuring the corpus engine itself: ``AUDIO_EMBEDDINGS_PLUGINS=zero_backend``.

It is a plugin backend (see :mod:`audio_embeddings.registry`), so the real CLI, the real
decoding, batching and writing run, and only the model is free. It looks like wav2vec2 to
the engine (``"sequence"`` framing, 16 kHz, a 400-sample receptive field every 320 samples,
so a 5 s file gives 249 rows), and each row is the input sample at the row's onset repeated
``--zero-dim`` times (a broadcast view: nothing is computed). The rows therefore depend on the
audio, so a resumed run can be compared bit for bit with an uninterrupted one.

    AUDIO_EMBEDDINGS_PLUGINS=zero_backend PYTHONPATH=benchmarks \\
        python python/embed.py CORPUS --model zero --zero-dim 1024 --formats npy

``--zero-sleep-ms`` adds a sleep per model call (the GIL is released, as during a GPU
forward), to stand in for a model of known cost. This module works with the engine of
commit c63be34 too (it uses only the backend contract of that commit), so benchmarks can
compare against it.
"""

from __future__ import annotations

import time

import numpy as np

from audio_embeddings.backends.base import BaseBackend, BatchOutput, Option, nonnegative_int, positive_float
from audio_embeddings.registry import Preset

RATE_HZ = 16000
HOP = 320
FIELD = 400


class ZeroBackend(BaseBackend):
    """Rows ``x[t * 320]`` repeated ``dim`` times, [B, T, dim], for float32 [B, N] at 16 kHz; no computation."""

    framing = "sequence"
    sample_rate_hz = RATE_HZ
    hop_samples = HOP
    receptive_field_samples = FIELD
    min_samples = FIELD
    frame_stride_s = HOP / RATE_HZ
    window_s = FIELD / RATE_HZ
    input_norm = "none"
    options = (
        Option("--zero-dim", "dim", "zero-cost benchmark model: row width (default 1024)", type=nonnegative_int,
               metavar="D"),
        Option("--zero-sleep-ms", "sleep_ms", "zero-cost benchmark model: sleep this long per model call",
               type=positive_float, metavar="MS"),
    )
    option_group = "zero-cost benchmark model (benchmarks/zero_backend.py)"

    def __init__(self, *, name: str, dim: int, sleep_ms: float):
        self.name = name
        self.embedding_dim = int(dim)
        self.sleep_s = float(sleep_ms) / 1000.0

    @classmethod
    def load(cls, source, *, name="zero", device="auto", dtype="float32", dim=None, sleep_ms=None):
        """No weights: ``dim`` (default 1024) and ``sleep_ms`` (default 0) are the whole model."""
        return cls(name=name, dim=1024 if dim is None else int(dim), sleep_ms=0.0 if sleep_ms is None else sleep_ms)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """float32 [B, N] -> [B, T, dim] with ``T = (N - 400) // 320 + 1`` (a read-only broadcast view)."""
        if self.sleep_s:
            time.sleep(self.sleep_s)
        n_rows = (audio.shape[1] - FIELD) // HOP + 1
        onsets = np.asarray(audio[:, :n_rows * HOP:HOP], dtype=np.float32)[:, :n_rows, None]
        return BatchOutput(np.broadcast_to(onsets, (audio.shape[0], n_rows, self.embedding_dim)))

    def details(self):
        return {"zero_cost": True, "sleep_ms": self.sleep_s * 1000.0}


PRESETS = [Preset(name="zero", module="zero_backend", cls="ZeroBackend", checkpoint=None, sample_rate_hz=RATE_HZ,
                  frame_stride_s=HOP / RATE_HZ, output_subdir="zero", description="zero-cost benchmark model")]
