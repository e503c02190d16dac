"""Whole-file embedding: preparation, chunking or windowing, batching and time axes.

This is the shared code between a backend's ``embed_batch`` (equal-length windows) and
a file on disk; no backend does its own chunking.
"""

from __future__ import annotations

import numpy as np

from .audio import Audio
from .backends.base import FileEmbedding
from .framing import extract_windows, frame_times_s, plan_context_chunks

DEFAULT_CHUNK_S = 20.0
DEFAULT_CONTEXT_S = 2.0


def _batches(items: list, size: int):
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]


def _embed_sequence(backend, samples: np.ndarray, *, chunk_s: float, context_s: float,
                    batch_size: int) -> tuple[np.ndarray, dict]:
    rate = backend.sample_rate_hz
    chunks = plan_context_chunks(
        samples.shape[0],
        chunk_samples=int(round(chunk_s * rate)),
        context_samples=int(round(context_s * rate)),
        receptive_field_samples=backend.receptive_field_samples,
        hop_samples=backend.hop_samples,
    )
    parts: list[np.ndarray] = []
    for group in _batches(chunks, batch_size):
        windows = np.stack([samples[c.start_sample:c.start_sample + c.n_samples] for c in group])
        out = backend.embed_batch(windows)  # [B, T, D] or [B, L, T, D]
        for c, item in zip(group, out):
            parts.append(item[..., c.keep_start:c.keep_stop, :])
    rows = np.concatenate(parts, axis=-2)
    info = {
        "mode": "single" if len(chunks) == 1 else "context-chunks",
        "chunk_seconds": float(chunk_s),
        "context_seconds": float(context_s) if len(chunks) > 1 else 0.0,
        "n_chunks": len(chunks),
        "chunk_samples": chunks[0].n_samples,
    }
    return rows, info


def _embed_windows(backend, samples: np.ndarray, *, batch_size: int) -> tuple[np.ndarray, np.ndarray, dict]:
    onsets = np.asarray(backend.plan_rows(samples.shape[0]), dtype=np.int64)
    starts = onsets + backend.window_offset_samples
    rows = np.concatenate([backend.embed_batch(extract_windows(samples, group, backend.window_samples))
                           for group in _batches(list(starts), batch_size)], axis=0)
    info = {"mode": "windows", "n_windows": int(len(onsets)), "window_samples": int(backend.window_samples),
            "hop_samples": int(backend.hop_samples)}
    return rows, onsets, info


def embed_audio(backend, audio: Audio, *, chunk_s: float = DEFAULT_CHUNK_S, context_s: float = DEFAULT_CONTEXT_S,
                batch_size: int = 4) -> FileEmbedding:
    """Embed one file's audio on its whole-file time grid.

    Parameters
    ----------
    backend : Backend
        A loaded backend (see :mod:`audio_embeddings.registry`).
    audio : Audio
        Mono float32 at ``backend.sample_rate_hz``.
    chunk_s : float
        Longest model input for sequence models; longer files run in chunks with
        ``context_s`` of context on both sides, whose frames are dropped.
    context_s : float
        Context per side for chunked runs.
    batch_size : int
        Chunks or windows per model call.

    Returns
    -------
    FileEmbedding
        ``embeddings`` float32 [T, D] (or [L, T, D]); ``time_axis_s`` float64 [T].
    """
    if audio.sample_rate_hz != backend.sample_rate_hz:
        raise ValueError(f"audio at {audio.sample_rate_hz} Hz given to a {backend.sample_rate_hz} Hz model")
    prepared = backend.prepare(audio.samples)
    samples = prepared.samples
    if samples.shape[0] < backend.min_samples:
        raise ValueError(
            f"{audio.path}: too short after preprocessing ({samples.shape[0]} samples, need {backend.min_samples})"
        )
    rate = backend.sample_rate_hz
    if backend.framing == "sequence":
        rows, info = _embed_sequence(backend, samples, chunk_s=chunk_s, context_s=context_s, batch_size=batch_size)
        onsets = np.arange(rows.shape[-2], dtype=np.int64) * backend.hop_samples
    else:
        rows, onsets, info = _embed_windows(backend, samples, batch_size=batch_size)
    if prepared.source_index is not None and len(prepared.source_index):
        time_axis = prepared.source_index[np.minimum(onsets, len(prepared.source_index) - 1)] / float(rate)
    else:
        time_axis = frame_times_s(len(onsets), hop_s=backend.hop_samples / rate)
    return FileEmbedding(
        embeddings=np.ascontiguousarray(rows, dtype=np.float32),
        time_axis_s=np.asarray(time_axis, dtype=np.float64),
        frame_stride_s=float(backend.frame_stride_s),
        window_s=float(backend.window_s),
        sample_rate_hz=int(rate),
        n_samples=int(audio.samples.shape[0]),
        extras=backend.summarize(rows),
        chunking=info,
    )


__all__ = ["embed_audio", "DEFAULT_CHUNK_S", "DEFAULT_CONTEXT_S"]
