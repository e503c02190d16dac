"""Frame grids, windows and overlap-and-discard chunking, all in samples and frames.

Two kinds of model geometry are covered:

* **sequence models** (wav2vec2 family): a conv front end with a receptive field of
  ``receptive_field_samples`` and a hop of ``hop_samples`` gives frame ``k`` for samples
  ``[k * hop, k * hop + receptive_field)``. Long files are cut into equal-length chunks
  that start on the hop grid and overlap by a context on both sides; the context
  frames are dropped so the result sits exactly on the whole-file grid.
* **window models** (GE2E partials, Perch, BirdNET): fixed windows at a fixed hop,
  zero-padded past the ends of the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def conv_frame_count(n_samples: int, *, receptive_field_samples: int, hop_samples: int) -> int:
    """Frames a conv front end gives for ``n_samples``: ``floor((N - rf) / hop) + 1`` (0 if N < rf)."""
    if n_samples < receptive_field_samples:
        return 0
    return (n_samples - receptive_field_samples) // hop_samples + 1


def frame_times_s(n_frames: int, *, hop_s: float, offset_s: float = 0.0) -> np.ndarray:
    """Frame onsets in seconds, float64 [n_frames]: ``offset_s + k * hop_s``."""
    return offset_s + np.arange(n_frames, dtype=np.float64) * hop_s


@dataclass(frozen=True)
class Chunk:
    """One model call of a chunked sequence run.

    Attributes
    ----------
    start_sample : int
        First sample of the chunk in the file (a multiple of the hop).
    n_samples : int
        Chunk length in samples (the same for every chunk of a plan).
    keep_start, keep_stop : int
        Frames of the chunk's output that are kept (context frames are dropped).
    out_start : int
        Whole-file index of the first kept frame.
    """

    start_sample: int
    n_samples: int
    keep_start: int
    keep_stop: int
    out_start: int


def plan_context_chunks(
    n_samples: int,
    *,
    chunk_samples: int,
    context_samples: int,
    receptive_field_samples: int,
    hop_samples: int,
) -> list[Chunk]:
    """Split a file into equal-length, overlapping chunks whose kept frames tile the whole-file grid.

    Parameters
    ----------
    n_samples : int
        File length in samples.
    chunk_samples : int
        Longest model input (memory bound). A file no longer than this is one chunk,
        the whole file.
    context_samples : int
        Context on each side of a chunk's kept frames (dropped from the output).
    receptive_field_samples, hop_samples : int
        Conv front-end geometry (400 and 320 for wav2vec2).

    Returns
    -------
    list of Chunk
        Kept frames are disjoint, in order, and cover frames ``0 .. T-1`` with
        ``T = conv_frame_count(n_samples)``. Every chunk has the same ``n_samples``
        (the last one is moved back to end at the file's end), so chunks batch
        without padding.
    """
    total = conv_frame_count(n_samples, receptive_field_samples=receptive_field_samples, hop_samples=hop_samples)
    if total == 0:
        return []
    if n_samples <= chunk_samples:
        return [Chunk(0, n_samples, 0, total, 0)]
    win = conv_frame_count(chunk_samples, receptive_field_samples=receptive_field_samples, hop_samples=hop_samples)
    ctx = -(-context_samples // hop_samples)  # ceil: at least the requested context
    step = win - 2 * ctx
    if step < 1:
        raise ValueError(
            f"chunk of {chunk_samples} samples is too short for {context_samples} samples of context on both sides"
        )
    win_samples = (win - 1) * hop_samples + receptive_field_samples
    chunks: list[Chunk] = []
    done = 0  # next whole-file frame to produce
    start = 0  # first frame of the current chunk
    while done < total:
        if start + win >= total:
            start = total - win
            stop = total
        else:
            stop = start + win - ctx
        chunks.append(Chunk(start * hop_samples, win_samples, done - start, stop - start, done))
        done = stop
        start += step
    return chunks


def naive_chunk_frame_count(
    n_samples: int, *, chunk_samples: int, receptive_field_samples: int, hop_samples: int
) -> int:
    """Frames the B2 seed gets by concatenating outputs of back-to-back, non-overlapping chunks.

    Each chunk loses the frames its receptive field cannot complete at the boundary,
    which is what makes the seed's time axis drift.
    """
    return sum(
        conv_frame_count(min(chunk_samples, n_samples - s), receptive_field_samples=receptive_field_samples,
                         hop_samples=hop_samples)
        for s in range(0, n_samples, chunk_samples)
    )


def covering_window_onsets(
    n_samples: int, *, grid_samples: int, window_frames: int, step_frames: int, min_coverage: float
) -> np.ndarray:
    """Onsets of windows that cover a signal, dropping a last window that is mostly padding.

    Windows of ``window_frames`` grid frames start every ``step_frames`` frames until the
    signal (``ceil((N + 1) / grid)`` frames) is covered; a last window whose share of real
    audio is below ``min_coverage`` is dropped unless it is the only one. This is the
    partial-utterance rule of GE2E (resemblyzer: 160-sample grid, 160-frame partials,
    77-frame step at 1.3 partials/s, coverage 0.75).

    Returns
    -------
    numpy.ndarray
        int64 [W] window onsets in samples.
    """
    n_frames = -(-(n_samples + 1) // grid_samples)
    last = max(1, n_frames - window_frames + step_frames + 1)
    onsets = np.arange(0, last, step_frames, dtype=np.int64) * grid_samples
    coverage = (n_samples - onsets[-1]) / float(window_frames * grid_samples)
    if coverage < min_coverage and len(onsets) > 1:
        onsets = onsets[:-1]
    return onsets


def windows_to_cover(n_samples: int, *, window_samples: int, hop_samples: int) -> np.ndarray:
    """Onsets of the fewest windows, ``hop_samples`` apart, whose last one reaches the end of the signal.

    ``1 + ceil(max(N - window, 0) / hop)`` windows; with ``hop == window`` that is
    ``ceil(N / window)`` fixed fragments (Perch's and BirdNET's slicing), the last one
    running past the end and padded by the caller.

    Returns
    -------
    numpy.ndarray
        int64 [W] window onsets in samples.
    """
    count = 1 + -(-max(n_samples - window_samples, 0) // hop_samples)
    return np.arange(count, dtype=np.int64) * hop_samples
