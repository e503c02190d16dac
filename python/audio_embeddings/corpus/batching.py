"""Model inputs of many files, batched together without changing any result.

A file becomes a :class:`FileJob`: its prepared audio (a :class:`ArraySource` in memory,
or a :class:`RawFileSource` streamed from a scratch file for long recordings) and a plan
of :class:`Piece` s, the model inputs (context chunks for sequence models, windows for
window models, the whole recording for utterance models). :class:`BatchScheduler` groups
pieces from any number of files into batches and writes each output back into its file's
rows. Pieces batch only with pieces **of the same length**, so nothing is padded, unless
the backend masks padding itself (``accepts_lengths``: then pieces of similar length, in
buckets at most 25 % apart, share a batch, zero-padded to the longest, with their lengths
passed along). Either way a batch equals its items run one by one (up to float rounding of
the batched kernels).

The scheduler keeps the time it spends in the model (``model_s``) and around it
(``batching_s``: cutting inputs, storing outputs), so a run can say where its main thread
goes. A batch that runs out of accelerator memory is split in halves (and later batches
of that length are capped), instead of being retried one item at a time.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import BatchOutput, FileEmbedding
from ..framing import conv_frame_count, frame_times_s, plan_context_chunks

#: Context chunking of long recordings (s): chunks of this length ...
DEFAULT_CHUNK_S = 20.0
#: ... each with this much context on either side (dropped from the rows).
DEFAULT_CONTEXT_S = 2.0


@dataclass(frozen=True)
class Piece:
    """One model input of a file.

    Attributes
    ----------
    start_sample : int
        First sample in the prepared audio; windows may start before 0 or run past the
        end (zero-filled there).
    n_samples : int
        Model input length; pieces batch together only with pieces of the same length.
    keep_start, keep_stop : int
        Output rows of this piece that are kept (context frames are dropped).
    out_start : int
        The file's row index of the first kept row.
    """

    start_sample: int
    n_samples: int
    keep_start: int
    keep_stop: int
    out_start: int


@dataclass(frozen=True)
class FilePlan:
    """How one file is cut: ``pieces``, ``onsets`` (int64 [T] row onsets in prepared samples), ``info``."""

    pieces: tuple[Piece, ...]
    onsets: np.ndarray
    info: dict[str, Any]

    @property
    def n_rows(self) -> int:
        return int(self.onsets.shape[0])


def plan_file(backend: Any, n_samples: int, *, chunk_s: float, context_s: float) -> FilePlan:
    """Cut ``n_samples`` of prepared audio into the backend's model inputs.

    Sequence backends get context chunks (one piece when the file fits in ``chunk_s``);
    window backends get one piece per output row at ``backend.plan_rows``; utterance
    backends (one embedding per recording) get the whole file as one piece and one row.
    """
    rate = backend.sample_rate_hz
    if backend.framing == "utterance":
        return FilePlan((Piece(0, int(n_samples), 0, 1, 0),), np.zeros(1, dtype=np.int64),
                        {"mode": "utterance", "n_samples": int(n_samples)})
    if backend.framing == "sequence":
        chunk_samples, context_samples = int(round(chunk_s * rate)), int(round(context_s * rate))
        if backend.max_input_samples is not None:  # a fixed longest input (Whisper: 30 s)
            limit = int(backend.max_input_samples)
            chunk_samples = min(chunk_samples, limit)
            context_samples = min(context_samples, max(0, (limit - backend.receptive_field_samples) // 4))
        chunks = plan_context_chunks(
            n_samples,
            chunk_samples=chunk_samples,
            context_samples=context_samples,
            receptive_field_samples=backend.receptive_field_samples,
            hop_samples=backend.hop_samples,
        )
        pieces = tuple(Piece(c.start_sample, c.n_samples, c.keep_start, c.keep_stop, c.out_start) for c in chunks)
        n_rows = conv_frame_count(n_samples, receptive_field_samples=backend.receptive_field_samples,
                                  hop_samples=backend.hop_samples)
        onsets = np.arange(n_rows, dtype=np.int64) * backend.hop_samples
        info = {"mode": "single" if len(chunks) == 1 else "context-chunks", "chunk_seconds": float(chunk_s),
                "context_seconds": float(context_s) if len(chunks) > 1 else 0.0, "n_chunks": len(chunks),
                "chunk_samples": chunks[0].n_samples}
    else:
        onsets = np.asarray(backend.plan_rows(n_samples), dtype=np.int64)
        offset, width = int(backend.window_offset_samples), int(backend.window_samples)
        pieces = tuple(Piece(int(o) + offset, width, 0, 1, i) for i, o in enumerate(onsets))
        info = {"mode": "windows", "n_windows": int(len(onsets)), "window_samples": width,
                "hop_samples": int(backend.hop_samples), "pad_mode": backend.pad_mode,
                "padded_windows": [i for i, p in enumerate(pieces)
                                   if p.start_sample < 0 or p.start_sample + width > n_samples]}
    return FilePlan(pieces, onsets, info)


def _padded(read, n_total: int, start: int, n: int, pad_mode: str = "zeros") -> np.ndarray:
    """``n`` samples from ``start``; outside ``[0, n_total)`` zeros, or (``"reflect"``) the
    fragment's tail reflected, as ``numpy.pad(fragment, (0, missing), mode="reflect")``."""
    lo, hi = max(start, 0), min(start + n, n_total)
    if lo == start and hi == start + n:
        return read(lo, hi)
    if pad_mode == "reflect" and lo == start and hi > lo:
        fragment = read(lo, hi)
        if fragment.shape[0] == 1:
            return np.full(n, fragment[0], dtype=np.float32)
        return np.pad(fragment, (0, n - fragment.shape[0]), mode="reflect").astype(np.float32, copy=False)
    out = np.zeros(n, dtype=np.float32)
    if hi > lo:
        out[lo - start:hi - start] = read(lo, hi)
    return out


class ArraySource:
    """Prepared audio in memory, float32 [N]."""

    def __init__(self, samples: np.ndarray):
        self.samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.n_samples = int(self.samples.shape[0])

    def read(self, start: int, n: int, pad_mode: str = "zeros") -> np.ndarray:
        """float32 [n] from ``start`` (padded outside the file, see :func:`_padded`)."""
        return _padded(lambda lo, hi: self.samples[lo:hi], self.n_samples, start, n, pad_mode)

    def close(self) -> None:
        self.samples = np.zeros(0, dtype=np.float32)


class RawFileSource:
    """Audio streamed from a raw float32 scratch file, optionally z-scored with whole-file statistics.

    Only the requested block is ever in memory, so a recording of any length costs one
    chunk of RAM. The scratch file is deleted by :meth:`close`.
    """

    def __init__(self, path: str | Path, n_samples: int, *, mean: float | None = None, std: float | None = None):
        self.path = Path(path)
        self.n_samples = int(n_samples)
        self.mean = None if mean is None else np.float32(mean)
        self.std = None if std is None else np.float32(std)

    def _read(self, lo: int, hi: int) -> np.ndarray:
        block = np.fromfile(self.path, dtype="<f4", count=hi - lo, offset=4 * lo)
        if self.mean is not None:
            block = (block - self.mean) / self.std
        return block.astype(np.float32, copy=False)

    def read(self, start: int, n: int, pad_mode: str = "zeros") -> np.ndarray:
        """float32 [n] from ``start`` (padded outside the file, see :func:`_padded`)."""
        return _padded(self._read, self.n_samples, start, n, pad_mode)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(eq=False)
class FileJob:
    """A file in flight: its source, plan, and the rows filled in so far.

    Attributes
    ----------
    key : str
        Corpus key (path relative to the input root).
    source : ArraySource or RawFileSource
    plan : FilePlan
    source_index : numpy.ndarray or None
        int64 [N'] map from prepared samples to the file's samples (silence trimming).
    meta : dict
        Anything the writer needs (input path, audio info).
    """

    key: str
    source: Any
    plan: FilePlan
    source_index: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    rows: np.ndarray | None = None
    extra_rows: dict[str, np.ndarray] = field(default_factory=dict)
    remaining: int = -1
    error: str | None = None
    #: Scheduler queues this file's pieces go to (set by :meth:`BatchScheduler.add`).
    buckets: tuple = ()
    #: Handed out by :meth:`BatchScheduler.take_finished` already.
    taken: bool = False

    def __post_init__(self):
        self.remaining = len(self.plan.pieces)

    @property
    def done(self) -> bool:
        return self.error is not None or self.remaining == 0

    def accept(self, piece: Piece, output: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> None:
        """Store one piece's output [..., t, D] into the file's rows.

        ``extras`` are per-row arrays of the piece, [t, ...] (window models' ``label``
        logits, a sequence model's ``codes``); their kept rows fill per-row arrays
        [T, ...] of the same name and dtype.
        """
        kept = output[..., piece.keep_start:piece.keep_stop, :]
        if self.rows is None:
            self.rows = np.empty(kept.shape[:-2] + (self.plan.n_rows, kept.shape[-1]), dtype=np.float32)
        stop = piece.out_start + kept.shape[-2]
        self.rows[..., piece.out_start:stop, :] = kept
        for name, value in (extras or {}).items():
            if name not in self.extra_rows:
                dtype = value.dtype if np.issubdtype(value.dtype, np.integer) else np.float32
                self.extra_rows[name] = np.empty((self.plan.n_rows,) + value.shape[1:], dtype=dtype)
            self.extra_rows[name][piece.out_start:stop] = value[piece.keep_start:piece.keep_stop]
        self.remaining -= 1

    def fail(self, reason: str) -> None:
        self.error = reason
        self.release()

    def release(self) -> None:
        """Free the audio (and delete a scratch file)."""
        self.source.close()

    def result(self, backend: Any) -> FileEmbedding:
        """The finished file as a :class:`FileEmbedding` on the file's own time grid."""
        rate = backend.sample_rate_hz
        onsets = self.plan.onsets
        if self.source_index is not None and len(self.source_index):
            time_axis = self.source_index[np.minimum(onsets, len(self.source_index) - 1)] / float(rate)
        elif backend.framing == "utterance":
            time_axis = np.zeros(len(onsets))  # one row, from the start of the recording
        else:
            time_axis = frame_times_s(len(onsets), hop_s=backend.hop_samples / rate)
        rows = self.rows if self.rows is not None else np.zeros((0, backend.embedding_dim), np.float32)
        return FileEmbedding(
            embeddings=rows,
            time_axis_s=np.asarray(time_axis, dtype=np.float64),
            frame_stride_s=float(backend.frame_stride_s or 0.0),  # 0 for one row per utterance
            window_s=float(backend.window_s),
            sample_rate_hz=int(rate),
            n_samples=int(self.meta.get("n_input_samples", 0)),
            extras={**backend.summarize(rows), **self.extra_rows},
            chunking=self.plan.info,
        )


def prepare_job(backend: Any, key: str, samples: np.ndarray, *, chunk_s: float, context_s: float,
                meta: dict[str, Any] | None = None) -> FileJob:
    """A :class:`FileJob` for mono float32 [N] audio at the model rate, after ``backend.prepare``.

    Raises
    ------
    ValueError
        The backend's preparation rejected the audio, or left it too short for the model.
    """
    prepared = backend.prepare(samples)
    n = int(prepared.samples.shape[0])
    if n < backend.min_samples:
        raise ValueError(f"too short after preprocessing ({n} samples, the model needs {backend.min_samples})")
    plan = plan_file(backend, n, chunk_s=chunk_s, context_s=context_s)
    return FileJob(key, ArraySource(prepared.samples), plan, source_index=prepared.source_index,
                   meta={"n_input_samples": int(samples.shape[0]), **(meta or {})})


def streamed_job(backend: Any, key: str, path: str | Path, n_samples: int, *, mean: float, var: float,
                 chunk_s: float, context_s: float, meta: dict[str, Any] | None = None) -> FileJob:
    """A :class:`FileJob` reading a raw float32 scratch file block by block.

    ``mean``/``var`` are the whole file's statistics; they z-score each block when the
    backend normalises its input (``backend.input_norm == "zscore"``).
    """
    zscore = backend.input_norm == "zscore"
    source = RawFileSource(path, n_samples, mean=mean if zscore else None,
                           std=float(np.sqrt(var + backend.norm_eps)) if zscore else None)
    plan = plan_file(backend, n_samples, chunk_s=chunk_s, context_s=context_s)
    return FileJob(key, source, plan, meta={"n_input_samples": int(n_samples), **(meta or {})})


class BatchScheduler:
    """Pieces from many files -> full batches; outputs written back per file.

    Parameters
    ----------
    backend : Backend
        Its ``embed_batch`` takes float32 [B, N] (and ``lengths=`` int [B] when the backend
        has ``accepts_lengths``).
    batch_size : int
        Pieces per model call.
    max_batch_seconds : float, optional
        Most audio per model call: long pieces (20 s context chunks) go in smaller batches,
        so activation memory stays bounded (a wav2vec2 conv front end holds 512 channels at
        a fifth of the sample rate per input sample). None: no cap.

    Attributes
    ----------
    n_batches, n_pieces : int
        Model calls made and pieces embedded.
    model_s, batching_s : float
        Seconds spent in ``embed_batch`` and in cutting inputs / storing outputs around it.
    n_oom_splits : int
        Batches split in halves after running out of accelerator memory.
    """

    #: Masking backends: pieces whose lengths fall in one bucket ([r^k, r^(k+1)) samples) share a batch.
    BUCKET_RATIO = 1.25

    def __init__(self, backend: Any, *, batch_size: int, max_batch_seconds: float | None = None):
        self.backend = backend
        self.batch_size = max(1, int(batch_size))
        self.max_batch_samples = None if max_batch_seconds is None else max_batch_seconds * backend.sample_rate_hz
        self.masked = bool(getattr(backend, "accepts_lengths", False))
        self._queues: dict[int, deque] = {}
        self._jobs: OrderedDict[int, FileJob] = OrderedDict()
        self._finished: list[FileJob] = []
        self._caps: dict[int, int] = {}  # batch size per bucket after an out-of-memory split
        self.n_batches = 0
        self.n_pieces = 0
        self.n_oom_splits = 0
        self.model_s = 0.0
        self.batching_s = 0.0

    @property
    def n_jobs(self) -> int:
        """Files in flight."""
        return len(self._jobs)

    def bucket(self, length: int) -> int:
        """Queue of a piece of ``length`` samples: the length itself, or (masking backends) its bucket."""
        if not self.masked:
            return int(length)
        return int(np.floor(np.log(max(length, 1)) / np.log(self.BUCKET_RATIO)))

    def _longest(self, bucket: int) -> int:
        """Longest piece a queue can hold (for the audio cap)."""
        return bucket if not self.masked else int(np.ceil(self.BUCKET_RATIO ** (bucket + 1)))

    def add(self, job: FileJob) -> None:
        """Queue a file's pieces (a file without pieces is finished at once: see :meth:`take_finished`)."""
        self._jobs[id(job)] = job
        buckets = []
        for piece in job.plan.pieces:
            bucket = self.bucket(piece.n_samples)
            self._queues.setdefault(bucket, deque()).append((job, piece))
            if bucket not in buckets:
                buckets.append(bucket)
        job.buckets = tuple(buckets)
        if job.done:
            self._finished.append(job)

    def size_for(self, length: int) -> int:
        """Pieces of ``length`` samples per model call (``batch_size``, fewer for long pieces)."""
        if self.max_batch_samples is None:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.max_batch_samples // length)))

    def _limit(self, bucket: int) -> int:
        """Batch size of a queue: :meth:`size_for` its longest piece, lowered after an out-of-memory split."""
        size = self.size_for(self._longest(bucket))
        return min(size, self._caps[bucket]) if bucket in self._caps else size

    def _pop(self, bucket: int) -> list:
        queue = self._queues.get(bucket, deque())
        batch = []
        limit = self._limit(bucket)
        while queue and len(batch) < limit:
            job, piece = queue.popleft()
            if job.error is None:
                batch.append((job, piece))
        if not queue:
            self._queues.pop(bucket, None)
        return batch

    def next_batch(self, *, flush: bool = False) -> list:
        """A full batch if any queue has one; with ``flush``, else the oldest file's (partial) batch.

        Queues hold only pieces of files that have not failed (a failed file's pieces are
        dropped when it fails), so a queue's length is what it can deliver.
        """
        for bucket, queue in self._queues.items():
            if len(queue) >= self._limit(bucket):
                return self._pop(bucket)
        if flush:
            for job in self._jobs.values():
                if job.remaining > 0 and job.error is None:
                    for bucket in job.buckets:
                        if self._queues.get(bucket):
                            return self._pop(bucket)
        return []

    def _inputs(self, batch: list) -> tuple[np.ndarray, np.ndarray | None]:
        """float32 [B, N] model inputs (zero-padded to the longest for masking backends) and lengths."""
        pad_mode = self.backend.pad_mode
        pieces = [job.source.read(p.start_sample, p.n_samples, pad_mode) for job, p in batch]
        if not self.masked:
            return np.stack(pieces), None
        lengths = np.array([x.shape[0] for x in pieces], dtype=np.int64)
        audio = np.zeros((len(pieces), int(lengths.max())), dtype=np.float32)
        for row, x in zip(audio, pieces):
            row[:x.shape[0]] = x
        return audio, lengths

    def _fail(self, job: FileJob, reason: str) -> None:
        """Fail a file: free its audio, drop its queued pieces, hand it to :meth:`take_finished`."""
        job.fail(reason)
        for bucket in job.buckets:
            queue = self._queues.get(bucket)
            if queue and any(j is job for j, _ in queue):
                kept = deque(item for item in queue if item[0] is not job)
                if kept:
                    self._queues[bucket] = kept
                else:
                    del self._queues[bucket]
        self._finished.append(job)

    def run(self, batch: list, *, catch: bool = True) -> None:
        """Embed a batch and store its outputs; a failing batch is retried item by item.

        A batch that runs out of accelerator memory is run again in two halves, and later
        batches of its queue are capped at the half. With ``catch``, an item that fails
        alone fails its file (reason kept in ``job.error``) and the run goes on; without,
        the exception propagates.
        """
        batch = [item for item in batch if item[0].error is None]
        if not batch:
            return
        t0 = time.perf_counter()
        t_model = t0
        try:
            audio, lengths = self._inputs(batch)
            t_model = time.perf_counter()
            outputs = self.backend.embed_batch(audio) if lengths is None else self.backend.embed_batch(
                audio, lengths=lengths)
        except Exception as exc:  # noqa: BLE001 - one bad item must not take its batch mates down
            t1 = time.perf_counter()
            self.batching_s += t_model - t0
            self.model_s += t1 - t_model
            if len(batch) > 1:
                if _out_of_memory(exc):
                    half = (len(batch) + 1) // 2
                    bucket = self.bucket(batch[0][1].n_samples)
                    self._caps[bucket] = min(self._caps.get(bucket, half), half)
                    self.n_oom_splits += 1
                    _release_cached_memory(self.backend)
                    rest = batch
                    while rest:  # in pieces of the current cap (a retry that runs out too lowers it)
                        n = self._caps[bucket]
                        self.run(rest[:n], catch=catch)
                        rest = rest[n:]
                    return
                for item in batch:
                    self.run([item], catch=catch)
                return
            if not catch:
                raise
            self._fail(batch[0][0], f"model failed: {type(exc).__name__}: {' '.join(str(exc).split())}")
            return
        t1 = time.perf_counter()
        self.model_s += t1 - t_model
        if not isinstance(outputs, BatchOutput):
            raise TypeError(f"{type(self.backend).__name__}.embed_batch returned {type(outputs).__name__}, "
                            "not BatchOutput")
        extras = {k: np.asarray(v) for k, v in outputs.extras.items()}
        outputs = outputs.embeddings
        if self.backend.framing in ("windows", "utterance"):
            outputs = outputs[..., None, :]  # one row per input -> [B, 1, D]
            extras = {k: v[:, None] for k, v in extras.items()}
        self.n_batches += 1
        self.n_pieces += len(batch)
        for i, ((job, piece), output) in enumerate(zip(batch, outputs)):
            job.accept(piece, output, {k: v[i] for k, v in extras.items()})
            if job.remaining == 0:
                self._finished.append(job)
        self.batching_s += (t_model - t0) + (time.perf_counter() - t1)

    def take_finished(self) -> list[FileJob]:
        """Files completed or failed since the last call, in the order they finished.

        A file is handed out as soon as its last piece is stored (or it fails, or it has no
        pieces): it never waits for other files of its batches.
        """
        finished, self._finished = self._finished, []
        out = []
        for job in finished:
            if not job.taken:
                job.taken = True
                self._jobs.pop(id(job), None)
                out.append(job)
        return out

    def release_all(self) -> None:
        """Drop every file in flight and free its audio (after an interruption)."""
        for job in self._jobs.values():
            job.release()
        self._jobs.clear()
        self._queues.clear()
        self._finished.clear()


def _out_of_memory(exc: BaseException) -> bool:
    """An accelerator out-of-memory error (torch's ``OutOfMemoryError``, or its message)."""
    return "OutOfMemory" in type(exc).__name__ or "out of memory" in str(exc).lower()


def _release_cached_memory(backend: Any) -> None:
    """Give cached CUDA blocks back before a retry (nothing off CUDA)."""
    if str(getattr(backend, "device", "cpu")).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
