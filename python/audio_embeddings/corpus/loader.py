"""Decoding and resampling in worker processes, with a bounded read-ahead.

:func:`load_item` runs in a worker: it turns one path into mono float32 audio at the
model's rate, or, for a recording longer than ``stream_above_samples``, streams it block
by block (soundfile blocks -> mono -> ``soxr.ResampleStream``) into a raw float32 scratch
file and returns only its length and statistics, so no long recording is ever decoded
whole. It never raises: a bad file comes back with ``error`` set to a one-line reason.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .. import audio

#: Seconds of source audio decoded per block when streaming.
STREAM_BLOCK_S = 10.0


@dataclass(frozen=True)
class LoadTask:
    """What a worker needs to load one file (picklable)."""

    key: str
    path: str
    target_rate_hz: int
    channel: int | None = None
    min_samples: int = 1
    stream_above_samples: int | None = None
    scratch_dir: str | None = None


@dataclass
class Loaded:
    """A worker's result: ``samples`` float32 [N] in memory, or ``raw_path`` of N float32 samples."""

    key: str
    path: str
    n_samples: int = 0
    samples: np.ndarray | None = None
    raw_path: str | None = None
    mean: float = 0.0
    var: float = 0.0
    audio_info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return float(self.audio_info.get("duration_s", 0.0))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _RunningMoments:
    """Mean and variance over blocks (Chan et al.'s pairwise update, float64)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, block: np.ndarray) -> None:
        if not block.size:
            return
        b = block.astype(np.float64)
        nb, mb = b.size, float(b.mean())
        m2b = float(((b - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.n = n

    @property
    def var(self) -> float:
        return self.m2 / self.n if self.n else 0.0


def _stream_to_raw(task: LoadTask, info: Any) -> Loaded:
    import soundfile as sf

    name = task.path
    resampler = None
    if int(info.samplerate) != task.target_rate_hz:
        import soxr

        resampler = soxr.ResampleStream(int(info.samplerate), task.target_rate_hz, 1, dtype="float32", quality="HQ")
    fd, raw_path = tempfile.mkstemp(suffix=".f32", dir=task.scratch_dir)
    moments = _RunningMoments()
    try:
        with os.fdopen(fd, "wb") as out, sf.SoundFile(task.path) as f:
            block_frames = max(1, int(STREAM_BLOCK_S * f.samplerate))
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                mono = audio.to_mono(block, channel=task.channel, name=name)
                if not np.all(np.isfinite(mono)):
                    raise audio.AudioError(f"{name}: contains NaN or Inf samples")
                y = resampler.resample_chunk(mono) if resampler else mono
                moments.add(y)
                out.write(np.ascontiguousarray(y, dtype="<f4").tobytes())
            if resampler:
                y = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                moments.add(y)
                out.write(np.ascontiguousarray(y, dtype="<f4").tobytes())
    except BaseException:
        os.unlink(raw_path)
        raise
    return Loaded(task.key, task.path, n_samples=moments.n, raw_path=raw_path, mean=moments.mean, var=moments.var,
                  audio_info={"source_sample_rate": int(info.samplerate), "source_channels": int(info.channels),
                              "channel": task.channel, "duration_s": moments.n / task.target_rate_hz,
                              "streamed": True})


def load_item(task: LoadTask) -> Loaded:
    """Load one file for the model (runs in a worker; never raises)."""
    try:
        path = audio.check_file(task.path)
        if task.stream_above_samples is not None:
            import soundfile as sf

            try:
                info = sf.info(str(path))
            except Exception:  # noqa: BLE001 - not a soundfile format: decoded whole below
                info = None
            if info is not None and info.frames > 0 and \
                    info.frames * task.target_rate_hz / info.samplerate > task.stream_above_samples:
                return _stream_to_raw(task, info)
        loaded = audio.load(path, sample_rate_hz=task.target_rate_hz, channel=task.channel,
                            min_samples=task.min_samples)
    except audio.AudioError as exc:
        return Loaded(task.key, task.path, error=_one_line(exc))
    except Exception as exc:  # noqa: BLE001 - report and go on; the run must not die on one file
        return Loaded(task.key, task.path, error=f"{task.path}: {type(exc).__name__}: {_one_line(exc)}")
    return Loaded(task.key, task.path, n_samples=int(loaded.samples.shape[0]), samples=loaded.samples,
                  audio_info={"source_sample_rate": loaded.source_sample_rate_hz,
                              "source_channels": loaded.source_channels, "channel": loaded.channel,
                              "duration_s": loaded.duration_s})


def _die_with_parent() -> None:
    """Worker initialiser: on Linux, get SIGKILL when the parent dies (a killed run leaves no orphans)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: workers exit when their queue closes
        pass


class Prefetcher:
    """Run :func:`load_item` over tasks, at most ``ahead`` at a time, yielding results in task order.

    Parameters
    ----------
    tasks : iterable of LoadTask
    workers : int
        Worker processes; 0 loads in this process.
    ahead : int
        Most files decoded but not yet consumed (bounds memory).
    """

    def __init__(self, tasks: Iterable[LoadTask], *, workers: int, ahead: int):
        self.tasks = iter(tasks)
        self.workers = max(0, int(workers))
        self.ahead = max(1, int(ahead))
        self._pool: ProcessPoolExecutor | None = None

    def __iter__(self) -> Iterator[Loaded]:
        if self.workers == 0:
            for task in self.tasks:
                yield load_item(task)
            return
        import multiprocessing

        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_die_with_parent)
        pending: list[Future] = []
        try:
            for task in self.tasks:
                pending.append(self._pool.submit(load_item, task))
                if len(pending) >= self.ahead:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            self.close(pending)

    def close(self, pending: list[Future] | None = None) -> None:
        """Stop the workers (dropping unstarted tasks) and remove scratch files of unconsumed results."""
        for fut in pending or []:
            if fut.cancel() or not fut.done():
                continue
            result = fut.result()
            if result.raw_path:
                os.unlink(result.raw_path)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
