"""The corpus engine's background work keeps its guarantees: kill -9 with a full writer queue, SIGINT,
a full disk, files never withheld, out-of-memory splits, and the fast mono mix (functional, not timed).

The slow disk is ``AUDIO_EMBEDDINGS_WRITE_DELAY_S`` (the writer thread sleeps before each file),
the model the zero-cost benchmark backend (``benchmarks/zero_backend.py``, a plugin): its rows
are input samples, so outputs can be compared bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.audio import to_mono
from audio_embeddings.corpus.background import WRITE_DELAY_ENV
from audio_embeddings.corpus.batching import BatchScheduler, FileJob, FilePlan, prepare_job
from audio_embeddings.corpus.discover import CorpusItem
from audio_embeddings.corpus.engine import RunOptions, run_corpus
from audio_embeddings.corpus.report import RunReport
from audio_embeddings.corpus.shard import Shard
from helpers import PYTHON_DIR, REPO, noise

BENCHMARKS = REPO / "benchmarks"
N_FILES = 120


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "AUDIO_EMBEDDINGS_PLUGINS": "zero_backend", "PYTHONUNBUFFERED": "1",
            **extra}


def _corpus(root: Path, n: int = N_FILES) -> Path:
    for i in range(n):
        path = root / f"d{i % 4}" / f"clip{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, noise(0.5, 16000, seed=i), 16000, subtype="PCM_16")
    return root


def _cmd(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(PYTHON_DIR / "embed.py"), str(root), "--model", "zero", "--zero-dim", "256",
            "--output-dir", str(out), "--formats", "npy,json", "--batch-size", "4", *extra]


def _outputs(out: Path) -> dict[str, bytes]:
    """Every final ``.npy`` (temporary files start with a dot) as its raw bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.npy"))
            if not p.name.startswith(".")}


def _run_until_queue_full(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``cmd`` with --verbose and return once it says the writer queue is full."""
    proc = subprocess.Popen(cmd + ["--verbose"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "writer: queue full" in line:
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    pytest.fail("the writer queue never filled")


@pytest.fixture(scope="module")
def corpus_and_reference(tmp_path_factory):
    root = _corpus(tmp_path_factory.mktemp("audio"))
    ref = tmp_path_factory.mktemp("ref")
    done = subprocess.run(_cmd(root, ref, "--workers", "0", "--quiet"), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return root, _outputs(ref)


@pytest.mark.slow
def test_kill_9_with_a_full_writer_queue_leaves_no_partial_file_and_resumes_bit_identically(
        tmp_path, corpus_and_reference):
    root, reference = corpus_and_reference
    assert len(reference) == N_FILES
    out = tmp_path / "out"
    proc = _run_until_queue_full(_cmd(root, out, "--workers", "0"), _env(**{WRITE_DELAY_ENV: "0.05"}))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    first = _outputs(out)
    assert len(first) < N_FILES, "the run finished before it was killed"
    for rel, data in first.items():  # whatever has a final name is whole
        assert data == reference[rel], rel
    for path in out.rglob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_text())
    rerun = subprocess.run(_cmd(root, out, "--workers", "0", "--quiet"), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files_skipped"] >= len(first) and summary["files_done"] + summary["files_skipped"] == N_FILES
    assert _outputs(out) == reference


@pytest.mark.slow
def test_sigint_stops_cleanly_writes_an_interrupted_summary_and_exits_130(tmp_path, corpus_and_reference):
    root, reference = corpus_and_reference
    out = tmp_path / "out"
    proc = _run_until_queue_full(_cmd(root, out, "--workers", "1"), _env(**{WRITE_DELAY_ENV: "0.05"}))
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted by SIGINT" in errors[0], rest
    assert "Traceback" not in rest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["files_done"] == len(_outputs(out)) < N_FILES  # the queued files were written
    assert summary["files_done"] + summary["files_not_done"] == N_FILES
    rerun = subprocess.run(_cmd(root, out, "--workers", "0", "--quiet"), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert _outputs(out) == reference


class _FullDisk:
    """A writer whose disk is full after ``room`` files."""

    def __init__(self, room: int):
        self.room, self.written = room, []

    def is_complete(self, key):
        return key in self.written

    def write(self, key, result, *, input_path, audio_info):
        if len(self.written) >= self.room:
            raise OSError(errno.ENOSPC, "No space left on device", f"/full/{key}.npy")
        self.written.append(key)
        return {"npy": f"/full/{key}.npy"}

    def close(self):
        pass


def _zero_backend():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import zero_backend
    finally:
        sys.path.remove(str(BENCHMARKS))
    return zero_backend.ZeroBackend.load(None, dim=8)


@pytest.mark.parametrize("background", [True, False])
def test_a_full_disk_fails_three_files_by_name_then_stops_the_run(tmp_path, background):
    root = _corpus(tmp_path / "audio", 40)
    items = [CorpusItem(p.relative_to(root).as_posix(), str(p)) for p in sorted(root.rglob("*.wav"))]
    writer = _FullDisk(room=5)
    report = RunReport(tmp_path, shard=Shard(0, 1), context={})
    run_corpus(_zero_backend(), items, writer, report, options=RunOptions(batch_size=2, workers=0, background=background),
               scratch_dir=tmp_path / "scratch")
    assert len(writer.written) == report.files_done == 5
    assert len(report.failures) == 3
    assert all("no space left on device: /full/" in f["reason"] for f in report.failures)
    assert report.status == "failed" and report.extra["status"] == "failed" and report.exit_status == 1
    assert "no space left on device" in report.stop_reason
    assert report.extra["files_not_done"] == 40 - 8
    assert report.to_dict()["status"] == "failed"


def test_the_sequential_one_core_mode_writes_the_same_outputs(tmp_path):
    from audio_embeddings.corpus.writers import TreeWriter

    root = _corpus(tmp_path / "audio", 12)
    items = [CorpusItem(p.relative_to(root).as_posix(), str(p)) for p in sorted(root.rglob("*.wav"))]
    backend = _zero_backend()
    outs = {}
    for background in (True, False):
        out = tmp_path / f"out_{background}"
        writer = TreeWriter(out, formats=("npy",), run_info={"model_name": "zero", "backend_info": {},
                                                            "backend_fields": {}, "started_at": "", "argv": []})
        report = RunReport(out, shard=Shard(0, 1), context={})
        run_corpus(backend, items, writer, report, options=RunOptions(batch_size=4, background=background),
                   scratch_dir=out / ".scratch")
        assert report.files_done == 12 and not report.failures
        outs[background] = _outputs(out)
    assert len(outs[True]) == 12 and outs[True] == outs[False]


def test_a_file_is_handed_out_as_soon_as_it_is_finished():
    backend = _zero_backend()
    scheduler = BatchScheduler(backend, batch_size=4)
    empty = FileJob("empty", SimpleNamespace(close=lambda: None), FilePlan((), np.zeros(0, np.int64), {}))
    scheduler.add(empty)
    assert scheduler.take_finished() == [empty]  # no pieces: finished at once, no batch needed
    short = prepare_job(backend, "short", np.ones(8000, np.float32), chunk_s=20, context_s=2)
    other = prepare_job(backend, "other", np.ones(9000, np.float32), chunk_s=20, context_s=2)
    scheduler.add(short)
    scheduler.add(other)
    assert scheduler.next_batch() == []  # neither length fills a batch
    scheduler.run(scheduler.next_batch(flush=True))
    assert scheduler.take_finished() == [short]  # not held back until the other file's batch ran
    assert scheduler.n_jobs == 1


def test_a_batch_out_of_memory_is_split_and_later_batches_are_capped():
    backend = _zero_backend()

    class OutOfMemoryError(RuntimeError):
        pass

    calls = []

    def embed_batch(audio):
        calls.append(audio.shape[0])
        if audio.shape[0] > 2:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return type(backend).embed_batch(backend, audio)

    backend.embed_batch = embed_batch
    scheduler = BatchScheduler(backend, batch_size=8)
    jobs = [prepare_job(backend, str(i), np.full(8000, i, np.float32), chunk_s=20, context_s=2) for i in range(16)]
    for job in jobs:
        scheduler.add(job)
    while batch := scheduler.next_batch(flush=True):
        scheduler.run(batch)
    assert [job.error for job in jobs] == [None] * 16
    assert all(job.rows[0, 0] == i for i, job in enumerate(jobs))
    assert calls[:3] == [8, 4, 2] and max(calls[3:]) == 2  # split in halves, then capped at what fitted
    assert scheduler.n_oom_splits == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [2, 3, 6, 9])
@pytest.mark.parametrize("order", ["C", "F"])
def test_the_fast_mono_mix_is_bit_identical_to_numpy_mean(dtype, channels, order):
    rng = np.random.default_rng(channels)
    data = np.asarray(rng.standard_normal((20011, channels)) * 10.0 ** rng.integers(-4, 3, (20011, channels)),
                      dtype=dtype, order=order)
    data[:50] = -0.0
    mono = to_mono(data)
    expected = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    assert mono.dtype == np.float32 and mono.flags.c_contiguous
    np.testing.assert_array_equal(mono.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("channels,channel", [(1, None), (2, None), (3, None), (6, None), (2, 1)])
def test_16_bit_pcm_read_as_int16_gives_libsndfiles_float32_values(tmp_path, channels, channel):
    """The loader reads 16-bit PCM as int16 and mixes in int32: bit for bit what mixing libsndfile's
    float32 reading gives (full-scale samples included)."""
    from audio_embeddings import audio

    rng = np.random.default_rng(channels)
    pcm = rng.integers(-32768, 32768, (9001, channels), dtype=np.int16)
    pcm[:4] = [[-32768] * channels, [32767] * channels, [0] * channels, [-1] * channels]
    path = tmp_path / "pcm16.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    raw, _ = audio.decode(path, pcm16=True)
    assert raw.dtype == np.int16
    floats, _ = audio.decode(path)
    assert floats.dtype == np.float32
    ours = audio.load(path, sample_rate_hz=16000, channel=channel).samples
    expected = to_mono(floats, channel=channel)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_a_plain_16_bit_wav_in_memory_decodes_as_soundfile_reads_it(tmp_path, channels):
    """The decoders read small inputs into memory (to hash them) and parse plain 16-bit PCM WAV with the
    standard library: the same samples and rate as soundfile; a truncated file still goes to soundfile."""
    from audio_embeddings import audio

    rng = np.random.default_rng(channels)
    pcm = rng.integers(-32768, 32768, (4001, channels), dtype=np.int16)
    path = tmp_path / "x.wav"
    sf.write(path, pcm, 22050, subtype="PCM_16")
    content = path.read_bytes()
    ours, rate = audio.decode(path, pcm16=True, content=content)
    theirs, their_rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == their_rate == 22050 and ours.dtype == np.int16
    np.testing.assert_array_equal(ours, theirs)
    truncated = content[:-100]
    (tmp_path / "cut.wav").write_bytes(truncated)
    assert audio.plain_pcm16_wav(truncated) is None
    cut, _ = audio.decode(tmp_path / "cut.wav", pcm16=True, content=truncated)
    np.testing.assert_array_equal(cut, sf.read(tmp_path / "cut.wav", dtype="int16", always_2d=True)[0])
