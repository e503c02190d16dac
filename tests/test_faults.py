"""Faults and hostile input in corpus runs, as a user meets them: each test runs the script in a subprocess
(the stub plugin backend, ``tests/stub_plugin.py``, costs milliseconds per file) and checks the files,
the failure lines, the summary, and that rerunning the same command finishes with the same bytes."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_CLIPS
from helpers import PYTHON_DIR, REPO, noise

RATE = 8000  # the stub backend's rate: no resampling unless a test asks for it
STUB = ["--model", "stub-gain", "--device", "cpu"]


def stub_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "AUDIO_EMBEDDINGS_PLUGINS": "stub_plugin", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), str(REPO / "tests")]), **extra}


def embed_cmd(*args: object) -> list[str]:
    return [sys.executable, str(PYTHON_DIR / "embed.py"), *map(str, args)]


def embed(*args: object, env: dict | None = None, user: str | None = None, timeout: float = 180,
          model: bool = True) -> subprocess.CompletedProcess:
    """``embed.py ARGS`` with the stub backend (unless ``model=False``); ``user``: run as that user (setpriv)."""
    cmd = embed_cmd(*args, *(STUB if model else []))
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or stub_env(), timeout=timeout, check=False)


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"


def make_wavs(root: Path, n: int, *, seconds: float = 0.5, rate: int = RATE, folders: int = 3,
              prefix: str = "clip") -> list[str]:
    keys = []
    for i in range(n):
        key = f"f{i % folders}/{prefix}{i:04d}.wav"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, noise(seconds, rate, seed=i), rate, subtype="PCM_16")
        keys.append(key)
    return keys


def read_tree(out: Path) -> dict[str, bytes]:
    """Every final ``.npy`` under ``out`` (relative path -> bytes; run files and temporaries excluded)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.npy"))
            if not p.name.startswith(".")}


def read_store(store: Path) -> dict[str, bytes]:
    with h5py.File(store, "r") as f:
        return {k.decode(): f[f"embeddings/{k.decode()}"][()].tobytes() for k in f["index/key"][()]}


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def failures_of(out: Path) -> dict[str, str]:
    with open(out / "failures.csv", newline="") as fh:
        return {r["path"]: r["reason"] for r in csv.DictReader(fh)}


def kill_when(proc: subprocess.Popen, ready, *, timeout_s: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true (fails the test if it ended first)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, "the run ended before it could be killed mid-way"
        assert time.monotonic() < deadline, "the run never reached the point to kill it"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def newer_than(path: Path, t_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns > t_ns
    except FileNotFoundError:  # being replaced right now
        return False


@contextlib.contextmanager
def tmpfs(size: str):
    """A small tmpfs mounted on a fresh folder (skips the test where mounting is not allowed)."""
    where = Path(tempfile.mkdtemp(prefix="ae-tmpfs-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here to fill a disk ({proc.stderr.strip() or proc.returncode})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def as_nobody_possible() -> str | None:
    """Why tests that drop privileges cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "not root: permissions are checked as this user already (test written for root + setpriv)"
    if shutil.which("setpriv") is None:
        return "setpriv is not installed"
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                            "import numpy, soundfile"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"cannot run this interpreter as nobody: {probe.stderr.strip()[-200:]}"
    return None


@pytest.fixture
def public_tmp():
    """A folder every user may enter (pytest's own tmp folders are private to root)."""
    where = Path(tempfile.mkdtemp(prefix="ae-faults-"))
    where.chmod(0o755)
    yield where
    subprocess.run(["chmod", "-R", "u+rwx", str(where)], check=False)
    shutil.rmtree(where, ignore_errors=True)


# --- what made an output: interrupted --overwrite, changed inputs, leftovers ---------------------------------


@pytest.mark.slow
def test_a_killed_overwrite_never_mixes_models_in_a_tree(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 240, seconds=1.0, rate=44100)  # resampled to 8 kHz: a few ms per file
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert embed(root, "--output-dir", out, "--workers", "1").returncode == 0
    assert embed(root, "--output-dir", ref, "--workers", "1", "--stub-gain", "2").returncode == 0
    old = read_tree(out)
    t0 = time.time_ns()
    proc = subprocess.Popen(embed_cmd(root, "--output-dir", out, "--workers", "1", "--stub-gain", "2", "--overwrite",
                                      *STUB), env=stub_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: sum(newer_than(p, t0) for p in out.glob("f0/*.npy") if not p.name.startswith(".")) >= 3)
    mixed = read_tree(out)
    redone = [k for k in old if mixed.get(k) != old[k]]  # new bytes, or the one being replaced at the kill
    assert 3 <= len(redone) < len(keys), "the run was not killed mid-way"
    again = embed(root, "--output-dir", out, "--workers", "1", "--stub-gain", "2")  # the old behaviour: "all done"
    assert again.returncode == 2
    assert len(errors(again)) == 1 and "were made with other settings" in errors(again)[0]
    assert "--overwrite" in errors(again)[0]
    others = int(errors(again)[0].split("(and ")[1].split()[0])  # a file killed half-way has no stamp: not counted
    assert len(keys) - len(redone) - 2 <= others <= len(keys) - len(redone) - 1
    redo = embed(root, "--output-dir", out, "--workers", "1", "--stub-gain", "2", "--overwrite")
    assert redo.returncode == 0, redo.stderr
    assert read_tree(out) == read_tree(ref)  # bit-identical to a clean run with the new settings
    assert summary_of(out)["files_done"] == len(keys)
    rerun = embed(root, "--output-dir", out, "--workers", "1", "--stub-gain", "2")
    assert rerun.returncode == 0 and summary_of(out)["files_skipped"] == len(keys)


@pytest.mark.slow
def test_a_killed_overwrite_keeps_the_store_readable_and_replaces_keys_at_merge(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 240, seconds=1.0, rate=44100)
    store, ref = tmp_path / "emb.h5", tmp_path / "ref.h5"
    common = [root, "--workers", "1", "--output-dir", tmp_path / "s"]
    assert embed(*common, "--store", store).returncode == 0
    assert embed(root, "--workers", "1", "--output-dir", tmp_path / "r", "--store", ref, "--stub-gain", "2").returncode == 0
    before = read_store(store)
    proc = subprocess.Popen(embed_cmd(*common, "--store", store, "--stub-gain", "2", "--overwrite", *STUB),
                            env=stub_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = Path(str(store) + ".parts") / "shard-0000-of-0001"
    kill_when(proc, lambda: any(parts.glob(".part-*.h5.tmp")))
    assert read_store(store) == before  # every indexed key still reads: nothing was deleted up front
    refused = embed(*common, "--store", store, "--stub-gain", "2")
    assert refused.returncode == 2 and "were made with other settings" in errors(refused)[0]
    redo = embed(*common, "--store", store, "--stub-gain", "2", "--overwrite")
    assert redo.returncode == 0, redo.stderr
    assert read_store(store) == read_store(ref)
    with h5py.File(store, "r") as f:
        assert len(f["index/key"]) == len(keys) and len(set(f["index/settings"][()])) == 1
        assert json.loads(f[f"embeddings/{keys[0]}"].attrs["stamp"])["size"] == (root / keys[0]).stat().st_size
    assert len(list(parts.glob("part-*.h5"))) == 1  # the replaced parts are gone after the merge


@pytest.mark.slow
def test_a_changed_input_is_named_and_redone_only_with_overwrite(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 6)
    out = tmp_path / "out"
    assert embed(root, "--output-dir", out, "--workers", "0").returncode == 0
    sf.write(root / keys[2], noise(0.75, RATE, seed=99), RATE, subtype="PCM_16")  # another recording, same name
    proc = embed(root, "--output-dir", out, "--workers", "0")
    assert proc.returncode == 2
    assert errors(proc) == [(f"error: {out}: the outputs of {keys[2]} were made from another version of the input "
                             f"(size 8044 -> 12044 bytes); use --overwrite to redo them, or write elsewhere")]
    touched = root / keys[3]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10 ** 9))  # same bytes: still done
    assert embed(root, "--output-dir", out, "--workers", "0", "--overwrite").returncode == 0
    ref = tmp_path / "ref"
    assert embed(root, "--output-dir", ref, "--workers", "0").returncode == 0
    assert read_tree(out) == read_tree(ref)
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10 ** 9))
    rerun = embed(root, "--output-dir", out, "--workers", "0")
    assert rerun.returncode == 0 and summary_of(out)["files_skipped"] == 6


@pytest.mark.slow
def test_empty_truncated_and_unstamped_outputs_are_redone_and_stale_temporaries_removed(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 6)
    out = tmp_path / "out"
    assert embed(root, "--output-dir", out, "--workers", "0", "--formats", "npy,json").returncode == 0
    ref = read_tree(out)
    empty, cut = out / keys[0].replace(".wav", ".npy"), out / keys[1].replace(".wav", ".npy")
    empty.write_bytes(b"")
    cut.write_bytes(cut.read_bytes()[:100])
    (out / "f2" / f".{Path(keys[2]).stem}.done").unlink()  # an older layout (or a killed write): no stamp
    stale = [out / ".summary.json.k2j3h4g5.tmp", out / "f0" / ".clip0000.npy.abcdefgh.tmp.npy"]
    for p in stale:
        p.write_bytes(b"half a file")
    proc = embed(root, "--output-dir", out, "--workers", "0", "--formats", "npy,json")
    assert proc.returncode == 0, proc.stderr
    s = summary_of(out)
    assert (s["files_done"], s["files_skipped"]) == (3, 3)
    assert read_tree(out) == ref
    assert not any(p.exists() for p in stale)


@pytest.mark.slow
def test_a_corrupt_run_file_is_moved_aside_with_a_warning(tmp_path):
    root = tmp_path / "audio"
    make_wavs(root, 4)
    out = tmp_path / "out"
    assert embed(root, "--output-dir", out, "--workers", "0").returncode == 0
    run_file = out / ".audio_embeddings_run.json"
    run_file.write_text('{"--model": "stub-ga')  # a crash half-way through an editor's save
    proc = embed(root, "--output-dir", out, "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert f"warning: {run_file}: not valid JSON" in proc.stderr and "moved to" in proc.stderr
    assert (out / ".audio_embeddings_run.json.corrupt").read_text() == '{"--model": "stub-ga'
    assert json.loads(run_file.read_text())["--model"] == "stub-gain"
    assert summary_of(out)["files_skipped"] == 4  # the outputs' own stamps still say they are done


@pytest.mark.slow
def test_a_truncated_store_part_is_named_quarantined_and_redone(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 6)
    store = tmp_path / "emb.h5"
    argv = [root, "--output-dir", tmp_path / "s", "--workers", "0", "--store", store]
    assert embed(*argv).returncode == 0
    ref = read_store(store)
    part = next(Path(str(store) + ".parts").glob("*/part-*.h5"))
    part.write_bytes(part.read_bytes()[:2000])
    proc = embed(*argv)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert f"warning: {part}: store part cannot be read" in proc.stderr and "its files will be redone" in proc.stderr
    assert Path(str(part) + ".corrupt").is_file()
    assert summary_of(tmp_path / "s")["files_done"] == len(keys)
    assert read_store(store) == ref


# --- paths stay inside -------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["txt", "csv"])
def test_manifest_entries_outside_the_root_get_safe_keys_and_never_write_outside(tmp_path, kind):
    root, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    for path in (root / "a.wav", root / "data" / "x.wav", elsewhere / "data" / "x.wav", elsewhere / "up.wav"):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, noise(0.5, RATE, seed=len(str(path))), RATE)
    entries = ["a.wav", "data/x.wav", str(elsewhere / "data" / "x.wav"), "../elsewhere/up.wav",
               "data/../a.wav"]  # the last is a.wav again: listed twice, embedded once
    manifest = root / f"list.{kind}"
    manifest.write_text("\n".join(entries) + "\n" if kind == "txt" else
                        "speaker,path\n" + "".join(f"s{i},{e}\n" for i, e in enumerate(entries)))
    out = tmp_path / "out"
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    proc = embed(manifest, "--output-dir", out, "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    outside = "_abs/" + str(elsewhere).lstrip("/")
    assert sorted(read_tree(out)) == sorted(["a.npy", "data/x.npy", f"{outside}/data/x.npy", f"{outside}/up.npy"])
    assert {p for p in tmp_path.rglob("*") if p.is_file()} - before <= set(out.rglob("*"))  # nothing outside out
    assert summary_of(out)["files_done"] == 4


@pytest.mark.slow
def test_two_files_with_one_key_are_an_error_naming_both(tmp_path):
    root = tmp_path / "corpus"
    mirror = root / "_abs" / str(tmp_path / "elsewhere" / "x.wav").lstrip("/")
    for path in (mirror, tmp_path / "elsewhere" / "x.wav"):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, noise(0.5, RATE), RATE)
    manifest = root / "list.txt"
    manifest.write_text(f"{mirror.relative_to(root)}\n{tmp_path / 'elsewhere' / 'x.wav'}\n")
    proc = embed(manifest, "--output-dir", tmp_path / "out", "--workers", "0")
    assert proc.returncode == 2
    assert len(errors(proc)) == 1
    assert str(mirror) in errors(proc)[0] and str(tmp_path / "elsewhere" / "x.wav") in errors(proc)[0]
    assert not (tmp_path / "out").exists() or not read_tree(tmp_path / "out")


def test_a_name_starting_with_a_dash_reaches_ffmpeg_as_a_file(tmp_path, monkeypatch):
    from audio_embeddings import audio

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.log"
    for name, body in (("ffprobe", 'printf "codec_name=aac\\nchannels=1\\nsample_rate=8000\\n"'),
                       ("ffmpeg", "head -c 32000 /dev/zero")):  # 8000 float32 zeros: 1 s of silence
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {log}\n{body}\n')
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    Path("-y.m4a").write_bytes(b"not a format soundfile reads")
    loaded = audio.load("-y.m4a", sample_rate_hz=RATE)
    assert loaded.samples.shape == (8000,)
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and all(" file:-y.m4a " in c + " " for c in calls)
    assert not any(" -y.m4a" in c.replace("file:-y.m4a", "") for c in calls)


# --- one run per output at a time ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(tmp_path):
    from audio_embeddings.corpus.lock import acquire_run_lock

    root = tmp_path / "audio"
    make_wavs(root, 4)
    out, store = tmp_path / "out", tmp_path / "emb.h5"
    with acquire_run_lock(out, shard_label="shard-0000-of-0001") as held:
        proc = embed(root, "--output-dir", out, "--workers", "0")
        assert proc.returncode == 2
        assert errors(proc) == [(f"error: {out} is in use by another run (pid {os.getpid()} on {held.holder['host']}, "
                                 f"started {held.holder['started_at']}, shard-0000-of-0001); wait for it to end or "
                                 f"write elsewhere (if that run is gone, delete {held.path})")]
        assert embed(root, "--output-dir", out, "--workers", "0", "--shard", "0/2").returncode == 2  # other shards
        assert not (out / "summary.json").exists() and not read_tree(out)
    with acquire_run_lock(store, shard_label="shard-0001-of-0002"):
        proc = embed(root, "--output-dir", tmp_path / "s", "--workers", "0", "--store", store, "--shard", "1/2")
        assert proc.returncode == 2 and "emb.h5.parts is in use by another run" in errors(proc)[0]
        both = embed(root, "--output-dir", tmp_path / "s", "--workers", "0", "--store", store, "--shard", "0/2")
        assert both.returncode == 0, both.stderr  # the other shard of the same sharded run goes ahead
    assert embed(root, "--output-dir", out, "--workers", "0").returncode == 0  # released: runs


@pytest.mark.slow
def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path):
    root = tmp_path / "audio"
    make_wavs(root, 3)
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out.mkdir()
    lock = out / ".audio_embeddings.shard-0000-of-0001.lock"
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started_at": "yesterday"}))
    proc = embed(root, "--output-dir", out, "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert "took over the lock of a run that is gone" in proc.stderr and not lock.exists()


@pytest.mark.slow
def test_two_runs_started_together_never_mix_their_outputs(tmp_path):
    root = tmp_path / "audio"
    make_wavs(root, 200, seconds=1.0, rate=44100)
    out = tmp_path / "out"
    refs = {}
    for gain in (3, 4):
        refs[gain] = tmp_path / f"ref{gain}"
        assert embed(root, "--output-dir", refs[gain], "--workers", "1", "--stub-gain", gain).returncode == 0
    runs = {g: subprocess.Popen(embed_cmd(root, "--output-dir", out, "--workers", "1", "--stub-gain", g, *STUB),
                                env=stub_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for g in (3, 4)}
    results = {g: (p.wait(timeout=180), p.communicate()[1]) for g, p in runs.items()}
    assert sorted(c for c, _ in results.values()) == [0, 2], results
    (winner,) = [g for g, (c, _) in results.items() if c == 0]
    loser_err = results[7 - winner][1]
    assert "Traceback" not in loser_err
    assert f"error: {out} is in use by another run" in loser_err or "holds results made with other settings" in loser_err
    assert read_tree(out) == read_tree(refs[winner])


@pytest.mark.slow
def test_scratch_folders_belong_to_their_run(tmp_path):
    from audio_embeddings.corpus.lock import clean_stale_scratch, run_scratch_dir

    mine = run_scratch_dir(tmp_path, shard_label="shard-0000-of-0001")
    assert mine.parent == tmp_path / ".scratch" and mine.name.endswith(f".{os.getpid()}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = mine.with_name(mine.name.rsplit(".", 1)[0] + f".{dead.pid}")
    other_host = mine.with_name("shard-0000-of-0001.some-other-node.1")
    for d in (mine, gone, other_host):
        (d / "x.f32").parent.mkdir(parents=True)
        (d / "x.f32").write_bytes(b"\0" * 16)
    assert clean_stale_scratch(tmp_path) == [gone]
    assert mine.is_dir() and other_host.is_dir()


# --- bounded work per file -------------------------------------------------------------------------------------


def _mat_v5_zeros(path: Path, n: int, *, fs: float) -> None:
    """A MAT v5 file with ``audio`` = zeros(n, 1) (compressed, streamed: no n-sized array in memory) and ``fs``."""

    def element(dtype: int, payload: bytes) -> bytes:
        pad = (-len(payload)) % 8
        return np.array([dtype, len(payload)], "<u4").tobytes() + payload + b"\0" * pad

    def header(name: str, rows: int, cls: int = 6) -> bytes:
        flags = element(6, np.array([cls, 0], "<u4").tobytes())
        dims = element(5, np.array([rows, 1], "<i4").tobytes())
        return flags + dims + element(1, name.encode())

    with open(path, "wb") as fh:
        fh.write(b"MATLAB 5.0 MAT-file, hostile test".ljust(116) + b"\0" * 8 + np.array([0x0100], "<u2").tobytes()
                 + b"IM")
        body = header("audio", n)
        inner_len = len(body) + 8 + n * 8
        comp = zlib.compressobj(9)
        chunks = [comp.compress(np.array([14, inner_len], "<u4").tobytes() + body
                                + np.array([9, n * 8], "<u4").tobytes())]
        zeros = bytes(2 ** 20)
        left = n * 8
        while left:
            step = min(left, len(zeros))
            chunks.append(comp.compress(zeros[:step]))
            left -= step
        chunks.append(comp.flush())
        data = b"".join(chunks)
        fh.write(np.array([15, len(data)], "<u4").tobytes() + data)
        fs_body = header("fs", 1) + element(9, np.array([fs], "<f8").tobytes())
        fh.write(np.array([14, len(fs_body)], "<u4").tobytes() + fs_body)


@pytest.mark.slow
def test_hostile_headers_fail_their_file_at_once_and_the_run_goes_on(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "audio"
    keys = make_wavs(root, 3, folders=1)
    savemat(root / "f0" / "huge_rate.mat", {"audio": np.zeros((8000, 1)), "fs": 1e15})
    sf.write(root / "f0" / "one_hz.wav", np.zeros(10000, np.float32), 1, subtype="PCM_16")  # 20 KB "2.78 h"
    _mat_v5_zeros(root / "f0" / "zeros.mat", 100_000_000, fs=16000)  # 800 MB of zeros in under 1 MB
    savemat(root / "f0" / "text.mat", {"audio": "not audio", "fs": 16000})
    savemat(root / "f0" / "rates.mat", {"audio": np.zeros((8000, 1)), "fs": np.array([16000.0, 8000.0])})
    assert (root / "f0" / "zeros.mat").stat().st_size < 1_000_000
    out = tmp_path / "out"
    # the peak of this process's own memory (VmHWM): getrusage's ru_maxrss keeps the parent's peak across
    # fork and exec on Linux, so under a big pytest process it would measure pytest
    wrapper = ("import runpy, sys\nsys.argv = sys.argv[1:]\ncode = 0\ntry:\n"
               "    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as exc:\n    code = exc.code\n"
               "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]\n"
               "print('maxrss_kib', hwm, file=sys.stderr)\n"
               "sys.exit(code)\n")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", wrapper, str(PYTHON_DIR / "embed.py"), str(root), "--output-dir",
                           str(out), "--workers", "0", "--pattern", "*.wav", "--pattern", "*.mat", *STUB],
                          capture_output=True, text=True, env=stub_env(), timeout=120, check=False)
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc)
    maxrss_mib = int(proc.stderr.split("maxrss_kib")[-1].split()[0]) / 1024
    assert maxrss_mib < 500, f"{maxrss_mib:.0f} MiB"
    reasons = {Path(p).name: r for p, r in failures_of(out).items()}
    d = root / "f0"
    assert reasons == {
        "huge_rate.mat": f"{d / 'huge_rate.mat'}: sample rate 1e+15 Hz is outside 1000..768000 Hz "
                         "(a broken or hostile header); not decoded",
        "one_hz.wav": f"{d / 'one_hz.wav'}: sample rate 1 Hz is outside 1000..768000 Hz "
                      "(a broken or hostile header); not decoded",
        "zeros.mat": f"{d / 'zeros.mat'}: 'audio' holds 100000000 samples (381.5 MB as float32) in a "
                     f"{(d / 'zeros.mat').stat().st_size / 1024:.1f} KB file, more than 64x its size; not decoded",
        "text.mat": f"{d / 'text.mat'}: 'audio' must be a numeric array, not char",
        "rates.mat": f"{d / 'rates.mat'}: 'fs' must be a numeric scalar, not a 1x2 double",
    }
    assert sorted(read_tree(out)) == sorted(k.replace(".wav", ".npy") for k in keys)
    s = summary_of(out)
    assert (s["files_done"], s["files_failed"], s["status"]) == (3, 5, "some files failed")


def test_a_header_that_promises_more_than_the_file_holds_is_refused(tmp_path):
    from audio_embeddings import audio

    with pytest.raises(audio.AudioError, match=r"promises 3600.0 s of audio but the file \(.*\) holds at most"):
        audio.check_header(tmp_path / "x.wav", rate_hz=16000, frames=16000 * 3600, channels=1, subtype="PCM_16",
                           file_bytes=20_000)
    with pytest.raises(audio.AudioError, match="more than 64x its size"):
        audio.check_header(tmp_path / "x.flac", rate_hz=48000, frames=48000 * 3600, channels=2, subtype="FLAC",
                           file_bytes=1_000_000)
    assert audio.check_header(tmp_path / "x.flac", rate_hz=48000, frames=48000 * 60, channels=2, subtype="FLAC",
                              file_bytes=5_000_000) == 48000


def _load_or_misbehave(task):
    """A loader for the worker tests: ``die`` kills its process, ``hang`` never returns."""
    from audio_embeddings.corpus.loader import load_item

    if task.key == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if task.key == "hang":
        time.sleep(3600)
    return load_item(task)


@pytest.mark.slow
def test_a_dead_or_stuck_worker_fails_its_file_and_the_rest_go_on(tmp_path):
    from audio_embeddings.corpus.loader import LoadTask, Prefetcher

    good = tmp_path / "good.wav"
    sf.write(good, noise(0.5, RATE), RATE)
    keys = ["a", "die", "b", "hang", "c", "d"]
    tasks = [LoadTask(k, str(good) if k not in ("die", "hang") else str(tmp_path / f"{k}.wav"), RATE) for k in keys]
    # 8 s: long enough for a spawned worker to start on a loaded machine, short enough for the hang to end
    prefetcher = Prefetcher(tasks, workers=2, ahead=3, file_timeout_s=8.0, load=_load_or_misbehave)
    t0 = time.monotonic()
    results = list(prefetcher)
    assert time.monotonic() - t0 < 60
    assert [r.key for r in results] == keys
    assert [r.error is None for r in results] == [True, False, True, False, True, True]
    assert results[1].error == f"{tmp_path / 'die.wav'}: the decoding process died (SIGKILL; out of memory?) " \
                               "while reading it"
    assert results[3].error == f"{tmp_path / 'hang.wav'}: took longer than 8 s to decode (--file-timeout); stopped"
    assert prefetcher.restarts == 2 and all(r.n_samples == 4000 for r in results if r.error is None)


def _load_slowly(task):
    """A loader whose ``slow`` file takes a minute (the worker is still reading it when the test kills it)."""
    from audio_embeddings.corpus.loader import load_item

    if task.key == "slow":
        time.sleep(60)
    return load_item(task)


def test_a_worker_found_dead_when_given_its_next_file_fails_only_the_file_it_was_reading(tmp_path, monkeypatch):
    """The worker dies while reading ``slow`` (killed as the out-of-memory killer would), and the parent
    finds out by failing to hand it ``b``: ``slow`` fails once, as died, and is not tried again on the new
    worker (it would then fail as timed out); ``b`` is read by the new worker."""
    from audio_embeddings.corpus import loader

    good = tmp_path / "good.wav"
    sf.write(good, noise(0.5, RATE), RATE)
    tasks = [loader.LoadTask(k, str(good), RATE) for k in ("a", "slow", "b")]
    give, killed = loader._Worker.give, []

    def give_after_a_kill(worker, index, task, timeout_s):
        if task.key == "b" and not killed:  # the worker holds `slow` now: kill it, so the hand-out finds it dead
            os.kill(worker.proc.pid, signal.SIGKILL)
            worker.proc.join(timeout=10)
            killed.append(worker.proc.pid)
        return give(worker, index, task, timeout_s)

    monkeypatch.setattr(loader._Worker, "give", give_after_a_kill)
    prefetcher = loader.Prefetcher(tasks, workers=1, ahead=3, file_timeout_s=30.0, load=_load_slowly)
    results = list(prefetcher)
    assert [r.key for r in results] == ["a", "slow", "b"]
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].error == f"{good}: the decoding process died (SIGKILL; out of memory?) while reading it"
    assert prefetcher.restarts == 1


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
    except OSError:
        return False


@pytest.mark.slow
def test_a_decoding_worker_killed_mid_file_fails_that_file_only(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 60, seconds=20.0, rate=44100)  # resampling keeps the worker busy
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert embed(root, "--output-dir", ref, "--workers", "0").returncode == 0
    proc = subprocess.Popen(embed_cmd(root, "--output-dir", out, "--workers", "1", *STUB), env=stub_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        busy = [c for c in _children(proc.pid) if _running(c)]
        if busy and len(list(out.rglob("*.npy"))) >= 2:
            victim = busy[0]
            os.kill(victim, signal.SIGKILL)  # as the out-of-memory killer does
        time.sleep(0.001)
    assert victim is not None, "the worker was never caught busy"
    stdout, stderr = proc.communicate(timeout=180)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert_no_traceback(done)
    assert proc.returncode == 1, stderr
    (path, reason), = failures_of(out).items()
    assert reason == f"{path}: the decoding process died (SIGKILL; out of memory?) while reading it"
    assert errors(done) == [f"error: {reason}"]
    s = summary_of(out)
    assert (s["files_done"], s["files_failed"]) == (len(keys) - 1, 1)
    rerun = embed(root, "--output-dir", out, "--workers", "1")
    assert rerun.returncode == 0 and summary_of(out)["files_done"] == 1
    assert read_tree(out) == read_tree(ref)


# --- faults end cleanly --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_ends_with_no_space_left_and_a_rerun_completes(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 150, seconds=1.0)
    ref = tmp_path / "ref"
    argv = ["--workers", "0", "--formats", "npy,json"]
    assert embed(root, "--output-dir", ref, *argv).returncode == 0
    with tmpfs("5m") as disk:
        out = disk / "out"
        proc = embed(root, "--output-dir", out, *argv)
        assert_no_traceback(proc)
        assert proc.returncode == 1
        lines = errors(proc)
        assert lines and all("no space left on device" in line for line in lines), proc.stderr
        s = summary_of(out)
        assert s["status"] in ("failed", "some files failed") and 0 < s["files_done"] < len(keys)
        done = read_tree(out)
        assert done == {k: v for k, v in read_tree(ref).items() if k in done}  # whatever has a final name is whole
        assert not [p for p in out.rglob(".*.tmp*")]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        rerun = embed(root, "--output-dir", out, *argv)
        assert rerun.returncode == 0, rerun.stderr
        assert summary_of(out)["files_skipped"] == s["files_done"]
        assert read_tree(out) == read_tree(ref)


@pytest.mark.slow
def test_a_full_disk_under_a_store_does_not_crash_and_a_rerun_completes(tmp_path):
    root = tmp_path / "audio"
    make_wavs(root, 400, seconds=4.0)
    ref = tmp_path / "ref.h5"
    assert embed(root, "--output-dir", tmp_path / "r", "--workers", "0", "--store", ref).returncode == 0
    with tmpfs("5m") as disk:
        store, out = disk / "emb.h5", disk / "out"
        proc = embed(root, "--output-dir", out, "--workers", "0", "--store", store)
        assert_no_traceback(proc)  # the segfault in h5py's part commit
        assert proc.returncode == 1
        assert errors(proc) and all("no space left on device" in line for line in errors(proc)), proc.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        rerun = embed(root, "--output-dir", out, "--workers", "0", "--store", store)
        assert rerun.returncode == 0, rerun.stderr
        assert read_store(store) == read_store(ref)


@pytest.mark.slow
def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    root = tmp_path / "audio"
    make_wavs(root, 2)
    with tmpfs("1m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        proc = embed(root, "--output-dir", disk / "out", "--workers", "0")
        assert proc.returncode == 2 and not proc.stdout
        assert_no_traceback(proc)
        assert errors(proc) == [(f"error: {disk / 'out'}: cannot write outputs here (cannot create it: read-only "
                                 "file system)")]
        proc = embed(root, "--output-dir", disk, "--workers", "0")
        assert errors(proc) == [f"error: {disk}: cannot write outputs here (read-only file system)"]
    (tmp_path / "afile").write_text("x")
    proc = embed(root, "--output-dir", tmp_path / "afile", "--workers", "0")
    assert errors(proc) == [f"error: {tmp_path / 'afile'}: cannot write outputs here (it is a file, not a folder)"]


@pytest.mark.slow
def test_long_recordings_stream_through_a_scratch_folder_of_their_own(tmp_path):
    root = tmp_path / "audio"
    make_wavs(root, 2, seconds=12.0, rate=44100, folders=1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert embed(root, "--output-dir", ref, "--workers", "1").returncode == 0
    proc = embed(root, "--output-dir", out, "--workers", "1", "--long-file-seconds", "5",
                 env=stub_env(TMPDIR=str(scratch)))
    assert proc.returncode == 0, proc.stderr
    assert not (out / ".scratch").exists() and not any(scratch.rglob("*.f32"))
    got, want = read_tree(out), read_tree(ref)
    assert sorted(got) == sorted(want)


# --- nothing dropped silently ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unreadable_folders_and_files_are_failures_with_the_reason(public_tmp):
    if (why := as_nobody_possible()) is not None:
        pytest.skip(why)
    root = public_tmp / "audio"
    keys = make_wavs(root, 4, folders=2)
    locked = root / "locked"
    make_wavs(locked, 2, folders=1, prefix="hidden")
    secret = root / "f0" / "secret.wav"
    sf.write(secret, noise(0.5, RATE), RATE)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    root.chmod(0o755)
    locked.chmod(0o000)
    secret.chmod(0o000)
    out = public_tmp / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    proc = embed(root, "--output-dir", out, "--workers", "0", user="nobody")
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    assert failures_of(out) == {str(locked): f"{locked}: cannot read this folder (permission denied)",
                                str(secret): f"{secret}: cannot be read (permission denied)"}
    assert sorted(errors(proc)) == sorted(f"error: {r}" for r in failures_of(out).values())
    s = summary_of(out)
    assert (s["files_done"], s["files_failed"], s["status"]) == (len(keys), 2, "some files failed")
    assert sorted(read_tree(out)) == sorted(k.replace(".wav", ".npy") for k in keys)


@pytest.mark.slow
def test_a_symlink_loop_is_reported_not_walked(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 4, folders=1)
    (root / "f0" / "loop").symlink_to(root, target_is_directory=True)
    (root / "again").symlink_to(root / "f0", target_is_directory=True)
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = embed(root, "--output-dir", out, "--workers", "0")
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1
    assert failures_of(out) == {
        str(root / "again"): f"{root / 'again'}: leads to a folder already searched ({root / 'f0'}); "
                             "not searched twice",
        str(root / "f0" / "loop"): f"{root / 'f0' / 'loop'}: symbolic link loop (leads back to {root}); not followed",
    }
    assert sorted(read_tree(out)) == sorted(k.replace(".wav", ".npy") for k in keys)


@pytest.mark.slow
def test_inputs_named_like_run_files_get_their_own_names(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    for name in ("summary.wav", "failures.flac", "x.wav"):
        sf.write(root / name, noise(0.5, RATE), RATE)
    out = tmp_path / "out"
    proc = embed(root, "--output-dir", out, "--workers", "0", "--formats", "npy,json")
    assert proc.returncode == 0, proc.stderr
    assert "warning: summary.wav: outputs named _summary.*" in proc.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "_failures.json", "_failures.npy", "_summary.json", "_summary.npy", "failures.csv", "summary.json",
        "x.json", "x.npy"]
    assert summary_of(out)["files_done"] == 3
    assert json.loads((out / "_summary.json").read_text())["audio_path"] == str(root / "summary.wav")


@pytest.mark.slow
def test_an_extra_output_that_would_overwrite_another_file_is_refused_naming_both(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    shutil.copy(DEMO_CLIPS[0], root / "x.wav")
    shutil.copy(DEMO_CLIPS[1], root / "x_utterance_embedding.wav")
    out = tmp_path / "out"
    proc = embed(root, "--output-dir", out, "--workers", "0", "--model", "ge2e", "--device", "cpu", model=False,
                 timeout=300)
    assert proc.returncode == 1, proc.stderr
    (path, reason), = failures_of(out).items()
    assert path == str(root / "x.wav")
    assert reason.endswith("x.wav: its extra output x_utterance_embedding.npy would overwrite the outputs of "
                           "x_utterance_embedding.wav; rename one of the two files")
    alone = tmp_path / "alone"
    shutil.copy(root / "x_utterance_embedding.wav", tmp_path / "only.wav")
    assert embed(tmp_path / "only.wav", "--output-dir", alone, "--model", "ge2e", "--device", "cpu",
                 "--formats", "npy", model=False, timeout=300).returncode == 0
    np.testing.assert_allclose(np.load(out / "x_utterance_embedding.npy"), np.load(alone / "only.npy"), rtol=0,
                               atol=1e-5)  # its own rows, not x.wav's utterance vector


@pytest.mark.slow
def test_merged_summaries_follow_the_latest_sharding(tmp_path):
    root = tmp_path / "audio"
    make_wavs(root, 6)
    out = tmp_path / "out"
    for i in range(3):
        assert embed(root, "--output-dir", out, "--workers", "0", "--shard", f"{i}/3").returncode == 0
    assert summary_of(out)["shards_merged"] == [0, 1, 2]
    time.sleep(0.01)
    for i in range(2):
        assert embed(root, "--output-dir", out, "--workers", "0", "--shard", f"{i}/2").returncode == 0
    s = summary_of(out)
    assert s["shards_merged"] == [0, 1] and s["shards_missing"] == [] and s["files_total"] == 6
    assert s["files_skipped"] == 6  # the 2-shard run found the 3-shard run's outputs
    merge = embed("--merge", "--output-dir", out, model=False)
    assert merge.returncode == 0 and summary_of(out)["shards_merged"] == [0, 1]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_a_rerun_completes(tmp_path):
    root = tmp_path / "audio"
    keys = make_wavs(root, 40, seconds=10.0, rate=44100)
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert embed(root, "--output-dir", ref, "--workers", "1").returncode == 0
    proc = subprocess.Popen(embed_cmd(root, "--output-dir", out, "--workers", "1", *STUB), env=stub_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.npy"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert_no_traceback(done)
    assert proc.returncode == 130, stderr
    s = summary_of(out)
    assert s["status"] == "interrupted" and s["files_done"] + s["files_not_done"] == len(keys)
    assert errors(done)[-1].startswith("error: interrupted by SIGINT")
    assert not list(out.rglob(".*.tmp*")) and not (out / ".scratch").exists()
    rerun = embed(root, "--output-dir", out, "--workers", "1")
    assert rerun.returncode == 0 and summary_of(out)["files_skipped"] == s["files_done"]
    assert read_tree(out) == read_tree(ref)
