"""Whole-file embedding: preparation, chunking or windowing, batching and time axes.

This is the shared code between a backend's ``embed_batch`` (equal-length windows) and
a file on disk; no backend does its own chunking.
"""

from __future__ import annotations

from .audio import Audio
from .backends.base import FileEmbedding
from .corpus.batching import BatchScheduler, DEFAULT_CHUNK_S, DEFAULT_CONTEXT_S, prepare_job


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
    job = prepare_job(backend, str(audio.path), audio.samples, chunk_s=chunk_s, context_s=context_s)
    scheduler = BatchScheduler(backend, batch_size=batch_size)
    scheduler.add(job)
    while batch := scheduler.next_batch(flush=True):
        scheduler.run(batch, catch=False)
    return job.result(backend)


__all__ = ["embed_audio", "DEFAULT_CHUNK_S", "DEFAULT_CONTEXT_S"]
