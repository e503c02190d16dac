"""Decoding and resampling in worker processes, with a bounded read-ahead.

:func:`load_item` runs in a worker: it turns one path into mono float32 audio at the
model's rate, or, for a recording longer than ``stream_above_samples``, streams it block
by block (soundfile blocks -> mono -> ``soxr.ResampleStream``) into a raw float32 scratch
file and returns only its length and statistics, so no long recording is ever decoded
whole (``resampler`` ``kaiser-fast``, BirdNET-Analyzer's, needs the whole file, so it never
streams). It never raises: a bad file comes back with ``error`` set to a one-line reason.

:class:`Prefetcher` runs it in worker processes of its own: a file that takes longer than
``file_timeout_s`` (``--file-timeout``) or whose worker dies (the out-of-memory killer, a crash in a
decoder) fails with a line naming the file, the worker is replaced, and the run goes on.

A task may be a part of a recording (``start_s``/``end_s``: a Kaldi ``segments`` line): the
loader reads that range only (soundfile's seek, from a frame where the source and target sample
grids meet, with :data:`SEGMENT_PAD_S` of context each side for the resampler, so the samples
equal those of the whole recording decoded and cut to within 3e-7) in a recording longer than
:data:`SEEK_ABOVE_S` or at the model's rate, and otherwise (or where soundfile cannot seek)
decodes the whole and cuts it. A task may be a command (``command``: a ``wav.scp`` entry ``... |``):
its standard output is decoded, the command run without a shell where it holds no shell syntax
(:func:`command_argv`).
"""

from __future__ import annotations

import hashlib
import io
import math
import multiprocessing
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .. import audio
from ..backends.base import Option, positive_float

#: Seconds of source audio decoded per block when streaming.
STREAM_BLOCK_S = 10.0
#: Tasks a decoding process holds at once (it starts the next file while the parent takes the last).
TASKS_PER_WORKER = 2
#: Seconds one file may take in a worker (decode, resample) before it fails and the worker is replaced.
DEFAULT_FILE_TIMEOUT_S = 600.0
#: Seconds of audio read on each side of a segment, so the resampler's edges fall outside it.
SEGMENT_PAD_S = 0.5
#: Recordings longer than this (or at the model's rate) are read segment by segment (seek); shorter ones
#: that need resampling are decoded whole and cut, so their samples are bit-identical to the whole
#: recording's (a seek-read resamples to within 3e-7 of them).
SEEK_ABOVE_S = 60.0
#: A segment may end this far past its recording's end (Kaldi ``segments`` rounding).
SEGMENT_END_TOLERANCE_S = 0.05
#: Characters that need a shell: a command with any of them runs under ``/bin/sh -c``.
SHELL_SYNTAX = set("|&;<>()$`*?[]{}~\\\"'\n")
#: Longest a ``wav.scp`` command may run (seconds).
COMMAND_TIMEOUT_S = 600.0

#: The loader's command-line options (declared once; they change neither the numbers nor the outputs,
#: so they stay out of the resume fingerprint).
FILE_TIMEOUT = Option("--file-timeout", "file_timeout", "seconds one file may take to decode and resample in a "
                      "worker before it fails and the worker is replaced (default: %(default)g)",
                      type=positive_float, default=DEFAULT_FILE_TIMEOUT_S, metavar="S", affects="outputs")
SCRATCH_DIR = Option("--scratch-dir", "scratch_dir", "folder for the decoded audio of long recordings "
                     "(default: $TMPDIR, else the output folder)", type=str, default=None, metavar="DIR",
                     affects="outputs")
VERIFY_INPUTS = Option("--verify-inputs", "verify_inputs", "hash every input whole (sha256) and compare it with "
                       "what its outputs were made from; outputs whose stamp holds no whole-file hash cannot be "
                       "verified and are refused until --overwrite redoes them (default: inputs under 16 MiB are "
                       "hashed whole on every rerun, larger ones compared by size, time and a hash of three 64 KiB "
                       "blocks: head, middle and tail)",
                       type=None, default=False, const=True, affects="outputs")
LOADER_OPTIONS: tuple[Option, ...] = (FILE_TIMEOUT, SCRATCH_DIR, VERIFY_INPUTS)
#: ``--allow-truncated`` changes what is embedded, so it is a shared stage option (in the resume
#: fingerprint and the MATLAB table; :data:`audio_embeddings.options.STAGES`).
ALLOW_TRUNCATED = Option("--allow-truncated", "allow_truncated", "embed the frames a truncated WAV holds (fewer "
                         "than its header promises) and record it in its .json as audio_truncated (default: such "
                         "a file fails with one line naming both frame counts)", type=None, default=False,
                         const=True, affects="numbers")
#: The options this module declares as a shared stage (read by :data:`audio_embeddings.options.STAGES`).
OPTIONS: tuple[Option, ...] = (ALLOW_TRUNCATED,)


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
    resampler: str = "soxr-hq"
    hash_below_bytes: int = 0
    allow_truncated: bool = False
    start_s: float | None = None
    end_s: float | None = None
    command: bool = False


def item_task_fields(item: Any) -> dict[str, Any]:
    """The :class:`LoadTask` fields of a corpus item beyond its key and path: its segment and whether
    its path is a command (none for items without them)."""
    return {"start_s": getattr(item, "start_s", None), "end_s": getattr(item, "end_s", None),
            "command": bool(getattr(item, "command", False))}


def command_argv(command: str) -> list[str]:
    """The argument list a ``wav.scp`` command runs as: split without a shell where it has no shell syntax."""
    if not SHELL_SYNTAX & set(command):
        return shlex.split(command)
    return ["/bin/sh", "-c", command]


def run_command(command: str, *, name: str, timeout_s: float = COMMAND_TIMEOUT_S) -> bytes:
    """The standard output of a ``wav.scp`` command (:func:`command_argv`).

    Raises
    ------
    audio.AudioError
        The command cannot run, times out or exits non-zero (one line naming ``name``).
    """
    try:
        done = subprocess.run(command_argv(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise audio.AudioError(f"{name}: cannot run the command ({exc})") from None
    if done.returncode != 0:
        tail = " ".join(done.stderr.decode(errors="replace").split())[-300:]
        raise audio.AudioError(f"{name}: the command exited with status {done.returncode}: {tail}")
    return done.stdout


def decode_bytes(content: bytes, *, name: str) -> tuple[np.ndarray, int]:
    """``(float32 [N, C], rate)`` of audio bytes in memory (a command's output).

    Raises
    ------
    audio.AudioError
        Not readable audio.
    """
    try:
        data, rate = sf.read(io.BytesIO(content), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types for unreadable bytes
        raise audio.AudioError(f"{name}: its output is not readable audio ({exc})") from None
    return data, int(rate)


def segment_bounds(start_s: float | None, end_s: float | None, duration_s: float, *, name: str
                   ) -> tuple[float, float]:
    """``(start, end)`` seconds of a segment inside a recording of ``duration_s`` (end clipped to it).

    Raises
    ------
    audio.AudioError
        The segment starts after the recording ends or ends more than
        :data:`SEGMENT_END_TOLERANCE_S` past it.
    """
    start = float(start_s or 0.0)
    end = duration_s if end_s is None else float(end_s)
    if start >= duration_s or end > duration_s + SEGMENT_END_TOLERANCE_S:
        raise audio.AudioError(f"{name}: segment {start:g}-{end:g} s is outside the recording ({duration_s:.3f} s)")
    return start, min(end, duration_s)


def _cut(samples: np.ndarray, start_s: float, end_s: float, rate: int, offset: int = 0) -> np.ndarray:
    """Samples ``[start_s, end_s)`` of a recording at ``rate`` whose first sample here is sample ``offset``."""
    return samples[int(round(start_s * rate)) - offset:int(round(end_s * rate)) - offset]


def _segment_name(task: LoadTask) -> str:
    where = f"{task.path} |" if task.command else task.path
    if task.start_s is None:
        return where
    end = "end" if task.end_s is None else f"{task.end_s:g}"
    return f"{where} [{task.start_s:g}-{end} s]"


def _load_part(task: LoadTask, path: Any, content: bytes | None, wav: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The samples of a segment or command task at the target rate, and their ``audio_info``."""
    rate = task.target_rate_hz
    name = _segment_name(task)
    if task.command:
        data, source_rate = decode_bytes(run_command(task.path, name=name), name=name)
        whole = audio.prepare(data, source_rate, target_rate_hz=rate, channel=task.channel, name=name,
                              resampler=task.resampler)
        channels = whole.source_channels
        start, end = segment_bounds(task.start_s, task.end_s, whole.samples.shape[0] / rate, name=name)
        samples = _cut(whole.samples, start, end, rate)
    else:
        header = _header(path, wav)
        if header is not None and task.resampler == "soxr-hq" and header.frames > 0 \
                and audio.frames_known(header.frames) \
                and (int(header.samplerate) == rate or header.frames / header.samplerate > SEEK_ABOVE_S):
            audio.check_header(path, rate_hz=header.samplerate, frames=header.frames, channels=header.channels,
                               subtype=header.subtype, container=header.format)
            source_rate, channels = int(header.samplerate), int(header.channels)
            start, end = segment_bounds(task.start_s, task.end_s, header.frames / source_rate, name=name)
            step = source_rate // math.gcd(source_rate, rate)  # source frames between shared grid points
            first = max(0, int((start - SEGMENT_PAD_S) * source_rate)) // step * step
            last = min(int(header.frames), int(math.ceil((end + SEGMENT_PAD_S) * source_rate)))
            if wav is not None:
                data = wav[0][first:last]
            else:
                with sf.SoundFile(str(path)) as f:
                    f.seek(first)
                    data = f.read(last - first, dtype="int16" if str(f.subtype).upper() == "PCM_16" else "float32",
                                  always_2d=True)
            piece = audio.prepare(data, source_rate, target_rate_hz=rate, channel=task.channel, name=name,
                                  resampler=task.resampler)
            samples = _cut(piece.samples, start, end, rate, offset=first // step * (rate * step // source_rate))
        else:  # soundfile cannot seek in it (or the resampler needs the whole): decode whole, then cut
            whole = audio.load(path, sample_rate_hz=rate, channel=task.channel, resampler=task.resampler,
                               content=content, wav=wav, allow_truncated=task.allow_truncated)
            source_rate, channels = whole.source_sample_rate_hz, whole.source_channels
            start, end = segment_bounds(task.start_s, task.end_s, whole.samples.shape[0] / rate, name=name)
            samples = _cut(whole.samples, start, end, rate)
    if samples.shape[0] < max(1, task.min_samples):
        raise audio.AudioError(f"{name}: {samples.shape[0] / rate * 1000:.0f} ms of audio; the model needs "
                               f"{max(1, task.min_samples) / rate * 1000:.0f} ms")
    info: dict[str, Any] = {"source_sample_rate": source_rate, "source_channels": channels, "channel": task.channel,
                            "duration_s": samples.shape[0] / rate}
    if task.start_s is not None:
        info["segment_s"] = [start, end]
    return np.ascontiguousarray(samples, dtype=np.float32), info


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
    name = task.path
    resampler = None
    if int(info.samplerate) != task.target_rate_hz:
        resampler = soxr.ResampleStream(int(info.samplerate), task.target_rate_hz, 1, dtype="float32", quality="HQ")
    fd, raw_path = tempfile.mkstemp(suffix=".f32", dir=task.scratch_dir)
    moments = _RunningMoments()
    try:
        with os.fdopen(fd, "wb") as out, sf.SoundFile(task.path) as f:
            audio.check_soundfile(f, name)  # a FLAC must reach the end its header promises
            block_frames = max(1, int(STREAM_BLOCK_S * f.samplerate))
            pcm16 = str(f.subtype).upper() == "PCM_16"  # int16 blocks, mixed exactly (audio.to_mono)
            while (block := f.read(block_frames, dtype="int16" if pcm16 else "float32", always_2d=True)).shape[0]:
                # f.read, not f.blocks: blocks() ignores a short read and would hand on stale samples
                mono = audio.to_mono(block, channel=task.channel, name=name)
                if not pcm16 and not np.all(np.isfinite(mono)):
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
    """Load one file (or a segment of it, or a command's output) for the model (runs in a worker; never raises)."""
    try:
        if task.command:
            samples, info = _load_part(task, None, None, None)
            return Loaded(task.key, task.path, n_samples=int(samples.shape[0]), samples=samples, audio_info=info)
        path = audio.check_file(task.path)
        content, digest = _read_to_hash(path, task.hash_below_bytes)
        truncated = audio.check_truncated(path, content=content, allow=task.allow_truncated)
        wav = audio.plain_pcm16_wav(content) if content is not None else None  # parsed once, used twice
        if task.start_s is not None or task.end_s is not None:
            samples, info = _load_part(task, path, content, wav)
            if digest is not None:
                info["input_sha256"] = digest
            if truncated is not None:
                info["truncated"] = truncated
            return Loaded(task.key, task.path, n_samples=int(samples.shape[0]), samples=samples, audio_info=info)
        if task.stream_above_samples is not None and task.resampler == "soxr-hq":  # others need the whole file
            header = _header(path, wav)
            if header is not None:  # refuse a hostile header before deciding how to decode
                audio.check_header(path, rate_hz=header.samplerate, frames=header.frames, channels=header.channels,
                                   subtype=header.subtype, container=header.format)
                if header.frames > 0 and audio.frames_known(header.frames) and \
                        header.frames * task.target_rate_hz / header.samplerate > task.stream_above_samples:
                    streamed = _stream_to_raw(task, header)
                    if truncated is not None:
                        streamed.audio_info["truncated"] = truncated
                    return streamed
        loaded = audio.load(path, sample_rate_hz=task.target_rate_hz, channel=task.channel,
                            min_samples=task.min_samples, resampler=task.resampler, content=content, wav=wav,
                            allow_truncated=task.allow_truncated)
    except audio.AudioError as exc:
        return Loaded(task.key, task.path, error=_one_line(exc))
    except Exception as exc:  # noqa: BLE001 - report and go on; the run must not die on one file
        return Loaded(task.key, task.path, error=f"{task.path}: {type(exc).__name__}: {_one_line(exc)}")
    info = {"source_sample_rate": loaded.source_sample_rate_hz, "source_channels": loaded.source_channels,
            "channel": loaded.channel, "duration_s": loaded.duration_s}
    if digest is not None:
        info["input_sha256"] = digest
    if truncated is not None:
        info["truncated"] = truncated
    return Loaded(task.key, task.path, n_samples=int(loaded.samples.shape[0]), samples=loaded.samples,
                  audio_info=info)


def _header(path: os.PathLike, wav: tuple[np.ndarray, int, int] | None) -> Any:
    """``samplerate``, ``frames``, ``channels``, ``subtype``, ``format`` of a file (from ``wav``, its
    :func:`audio.plain_pcm16_wav`, when it is one, else soundfile's header); None when soundfile
    cannot read it (ffmpeg decodes it whole, as it does a file whose header gives no length)."""
    if wav is not None:
        data, rate, frames = wav
        return SimpleNamespace(samplerate=rate, frames=frames, channels=data.shape[1], subtype="PCM_16",
                               format="WAV")
    try:
        return sf.info(str(path))
    except Exception:  # noqa: BLE001 - not a soundfile format
        return None


def _read_to_hash(path: os.PathLike, below_bytes: int) -> tuple[bytes | None, str | None]:
    """``(bytes, sha256 hex)`` of a file smaller than ``below_bytes``, read once (the very bytes that
    are then decoded, so the stamp's hash is of what made the outputs); ``(None, None)`` otherwise."""
    if below_bytes <= 0:
        return None, None
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size >= below_bytes:
            return None, None
        content = fh.read()
    return content, hashlib.sha256(content).hexdigest()


def _die_with_parent() -> None:
    """Worker initialiser: on Linux, get SIGKILL when the parent dies (a killed run leaves no orphans)."""
    try:
        import ctypes  # inside the try: a Python built without _ctypes has no ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: workers exit when their pipe closes
        pass


def retain_freed_memory(*, trim_mib: int = 256, mmap_mib: int = 32) -> bool:
    """Keep freed buffers in the process (glibc), so per-file arrays reuse memory instead of faulting in fresh pages.

    Raises glibc's ``M_TRIM_THRESHOLD`` (free memory kept before it is returned to the system)
    and ``M_MMAP_THRESHOLD`` (allocations above it get their own mapping, unmapped on free).
    With the defaults, every file's 1 MB row buffer and decoded audio come from new pages:
    about 300 page faults per 5 s file, a millisecond of the main thread in a virtual machine.
    The setting lasts for the rest of the process (up to ``trim_mib`` of freed memory stays
    resident). Does nothing, and returns False, where the C library has no ``mallopt``.

    Called by the decoding workers (:func:`_worker_main`) and by the engine's own process.
    """
    try:
        import ctypes  # inside the try: a Python built without _ctypes has no ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (ImportError, OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, int(trim_mib) << 20)) and bool(mallopt(m_mmap_threshold, int(mmap_mib) << 20))


def _worker_main(conn: Any, load: Callable[[LoadTask], Loaded]) -> None:
    """A decoding worker: ``(index, task)`` in, ``(index, Loaded)`` out, until ``None`` or the pipe closes."""
    _die_with_parent()
    retain_freed_memory()  # each file's buffers reuse freed memory instead of faulting in new pages
    for signum in (signal.SIGINT, signal.SIGTERM):  # the parent decides how a run stops; it kills with SIGKILL
        signal.signal(signum, signal.SIG_IGN)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, task = message
        result = load(task)
        try:
            conn.send((index, result))
        except (EOFError, OSError):
            return


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


class _Worker:
    """One decoding process and the tasks it holds, in order (index, task), with the first one's deadline.

    It is given up to :data:`TASKS_PER_WORKER` tasks, so it starts the next file as soon as it has
    sent a result instead of waiting for the parent to hand it one.
    """

    def __init__(self, ctx: Any, load: Callable[[LoadTask], Loaded]):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, load), daemon=True)
        self.proc.start()
        child.close()
        self.jobs: deque[tuple[int, LoadTask]] = deque()
        self.due = float("inf")

    def give(self, index: int, task: LoadTask, timeout_s: float | None) -> None:
        self.conn.send((index, task))
        self.jobs.append((index, task))
        if len(self.jobs) == 1:
            self.due = _deadline(timeout_s)

    def done_first(self, timeout_s: float | None) -> None:
        """The first task is done: the next one (already sent) is the one the deadline now applies to."""
        self.jobs.popleft()
        self.due = _deadline(timeout_s) if self.jobs else float("inf")

    def stop(self, *, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
            except (EOFError, OSError):
                pass
            self.proc.join(timeout=2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5.0)
        self.conn.close()


def _deadline(timeout_s: float | None) -> float:
    return time.monotonic() + timeout_s if timeout_s else float("inf")


class Prefetcher:
    """Run :func:`load_item` over tasks, at most ``ahead`` at a time, yielding results in task order.

    Parameters
    ----------
    tasks : iterable of LoadTask
    workers : int
        Worker processes; 0 loads in this process (no time limit then).
    ahead : int
        Most files decoded but not yet consumed (bounds memory).
    file_timeout_s : float, optional
        A file still loading after this many seconds fails (``error`` names it and the limit) and its
        worker is replaced; None: no limit. A worker that dies fails its file the same way.
    load : callable
        ``LoadTask -> Loaded``, picklable (a module-level function); default :func:`load_item`.
    """

    def __init__(self, tasks: Iterable[LoadTask], *, workers: int, ahead: int,
                 file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
                 load: Callable[[LoadTask], Loaded] = load_item):
        self.tasks = iter(tasks)
        self.workers = max(0, int(workers))
        self.ahead = max(1, int(ahead))
        self.file_timeout_s = float(file_timeout_s) if file_timeout_s else None
        self.load = load
        self._pool: list[_Worker] = []
        self._results: dict[int, Loaded] = {}
        self.restarts = 0

    def __iter__(self) -> Iterator[Loaded]:
        if self.workers == 0:
            for task in self.tasks:
                yield self.load(task)
            return
        ctx = multiprocessing.get_context("spawn")
        self._pool = [_Worker(ctx, self.load) for _ in range(self.workers)]
        results = self._results
        numbered = enumerate(self.tasks)
        submitted = yielded = 0
        exhausted = False
        timeout_s = self.file_timeout_s
        try:
            while True:
                for i in range(len(self._pool)):  # hand out work, keeping at most `ahead` unconsumed
                    while not exhausted and len(self._pool[i].jobs) < TASKS_PER_WORKER \
                            and submitted - yielded < self.ahead:
                        item = next(numbered, None)
                        if item is None:
                            exhausted = True
                            break
                        worker = self._pool[i]
                        if not worker.jobs and not worker.proc.is_alive():  # died while idle
                            worker = self._replace(i, ctx)
                        try:
                            worker.give(*item, timeout_s)
                        except (EOFError, OSError):  # died: the file it was reading fails once (not retried),
                            worker.jobs.append(item)  # its other tasks (this one included) go to a new worker
                            self._collect(worker, results, timeout_s)
                            if worker.jobs[0][0] != item[0]:  # it died reading an earlier file, not idle
                                index, task = worker.jobs.popleft()
                                results[index] = self._died(worker, task)
                            self._replace(i, ctx)
                        submitted += 1
                while yielded in results:
                    result = results.pop(yielded)
                    yielded += 1
                    yield result
                if exhausted and yielded == submitted:
                    return
                busy = [w for w in self._pool if w.jobs]
                if not busy:
                    continue
                deadline = min(w.due for w in busy)
                timeout = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
                ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
                now = time.monotonic()
                for w in busy:
                    index, task = w.jobs[0]
                    i = self._pool.index(w)
                    if w.conn in ready:
                        try:
                            got_index, result = w.conn.recv()
                        except (EOFError, OSError):
                            w.jobs.popleft()
                            results[index] = self._died(w, task)
                            self._replace(i, ctx)
                            continue
                        results[got_index] = result
                        w.done_first(timeout_s)
                    elif w.proc.sentinel in ready:
                        w.jobs.popleft()
                        results[index] = self._died(w, task)
                        self._replace(i, ctx)
                    elif now >= w.due:
                        w.jobs.popleft()
                        results[index] = self._failed(task, f"took longer than {self.file_timeout_s:g} s to decode "
                                                            "(--file-timeout); stopped")
                        self._replace(i, ctx, kill=True)
        finally:
            self.close()

    @staticmethod
    def _collect(worker: _Worker, results: dict[int, Loaded], timeout_s: float | None) -> None:
        """The results a dead worker sent before it died (still in its pipe), into ``results``."""
        try:
            while worker.jobs and worker.conn.poll():
                got_index, result = worker.conn.recv()
                results[got_index] = result
                worker.done_first(timeout_s)
        except (EOFError, OSError):
            pass

    @staticmethod
    def _failed(task: LoadTask, reason: str) -> Loaded:
        return Loaded(task.key, task.path, error=f"{task.path}: {reason}")

    def _died(self, worker: _Worker, task: LoadTask) -> Loaded:
        worker.proc.join(timeout=5.0)
        code = worker.proc.exitcode
        hint = "; out of memory?" if code == -signal.SIGKILL else ""
        return self._failed(task, f"the decoding process died ({_signal_name(code)}{hint}) while reading it")

    def _replace(self, i: int, ctx: Any, *, kill: bool = True) -> _Worker:
        """A fresh worker in slot ``i`` (the old one is killed), given the tasks the old one still held."""
        old = self._pool[i]
        waiting = list(old.jobs)
        old.stop(kill=kill)
        self.restarts += 1
        self._pool[i] = new = _Worker(ctx, self.load)
        for index, task in waiting:
            new.give(index, task, self.file_timeout_s)
        return new

    def close(self, pending: list | None = None) -> None:
        """Stop the workers (dropping unstarted tasks) and remove scratch files of unconsumed results."""
        for result in list(self._results.values()) + [f.result() for f in pending or [] if f.done()]:
            if getattr(result, "raw_path", None):
                try:
                    os.unlink(result.raw_path)
                except OSError:
                    pass
        self._results.clear()
        for worker in self._pool:
            worker.stop(kill=bool(worker.jobs))
        self._pool = []
