"""Corpus runs as users run them: bad files, kill -9 and resume, shards and torchrun, batching, the store."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.audio import load
from audio_embeddings.cli import main
from audio_embeddings.pipeline import embed_audio
from audio_embeddings.registry import load_backend
from conftest import DEMO_CLIPS
from embed import DEFAULTS
from helpers import PYTHON_DIR, noise, run_script
from tiny_models import KINDS

#: Batched kernels may round differently from single calls; everything else is exact.
BATCH_ATOL = 1e-5


def make_corpus(root: Path, durations_s, *, rate: int = 16000, channels: int = 1) -> list[str]:
    """Write WAVs in a nested tree, one per duration; returns their keys."""
    keys = []
    for i, seconds in enumerate(durations_s):
        key = f"part_{i % 3:03d}/{i % 2}/clip{i:03d}.wav"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, noise(seconds, rate, seed=i, channels=channels), rate, subtype="PCM_16")
        keys.append(key)
    return keys


def read_tree(out: Path) -> dict[str, np.ndarray]:
    """Every final ``.npy`` under ``out`` by relative path (temporary files excluded)."""
    return {p.relative_to(out).as_posix(): np.load(p) for p in sorted(out.rglob("*.npy"))
            if not p.name.startswith(".")}


def assert_same_outputs(a: dict, b: dict, *, atol: float = 0.0) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol, err_msg=key)


def embed(*argv: str) -> int:
    """Run ``embed.py`` in this process (as its ``main``)."""
    return main(DEFAULTS, [*map(str, argv)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Twelve files, four lengths (so both full and partial length buckets occur), 44.1 kHz stereo."""
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, [1.0, 1.0, 1.5, 2.25] * 3, rate=44100, channels=2)
    return root


@pytest.mark.slow
def test_bad_files_are_listed_with_reasons_and_the_rest_is_written(tmp_path, tiny_model):
    root = tmp_path / "audio"
    good = make_corpus(root, [0.5 + 0.05 * i for i in range(24)])
    (root / "bad").mkdir()
    (root / "bad" / "empty.wav").write_bytes(b"")
    (root / "bad" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 4)
    sf.write(root / "bad" / "short.wav", noise(0.01, 16000), 16000)  # 160 samples < 400
    manifest = tmp_path / "list.txt"
    manifest.write_text("\n".join(good + ["bad/empty.wav", "bad/corrupt.wav", "bad/short.wav", "bad/missing.wav"]))
    out = tmp_path / "out"
    proc = run_script("embed.py", str(manifest), "--audio-dir", str(root), "--model", str(tiny_model()),
                      "--output-dir", str(out), "--device", "cpu", "--workers", "2")
    assert proc.returncode == 1, proc.stderr
    assert sorted(read_tree(out)) == sorted(k.replace(".wav", ".npy") for k in good)
    with open(out / "failures.csv", newline="") as fh:
        failures = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(fh)}
    assert sorted(failures) == ["corrupt.wav", "empty.wav", "missing.wav", "short.wav"]
    assert "empty" in failures["empty.wav"] and "not found" in failures["missing.wav"]
    assert "too short" in failures["short.wav"] and "corrupt.wav" in failures["corrupt.wav"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["files_total"], summary["files_done"], summary["files_failed"]) == (28, 24, 4)
    assert summary["audio_seconds"] == pytest.approx(sum(0.5 + 0.05 * i for i in range(24)), abs=1e-3)
    assert summary["input"]["kind"] == "manifest" and summary["model"] == str(tiny_model())


@pytest.mark.slow
def test_a_killed_run_resumes_and_loses_nothing(tmp_path, tiny_model):
    root = tmp_path / "audio"
    keys = make_corpus(root, [2.0] * 40)  # enough files that the run is still going when the third is written
    model = str(tiny_model())
    common = [str(root), "--model", model, "--device", "cpu", "--batch-size", "1", "--workers", "1",
              "--threads", "1", "--formats", "npy,json"]  # one thread count: bit-equal reductions
    ref = tmp_path / "ref"
    assert embed(*common, "--output-dir", ref, "--workers", "0", "--quiet") == 0
    out = tmp_path / "out"
    cmd = [sys.executable, str(PYTHON_DIR / "embed.py"), *common, "--output-dir", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("clip*.npy"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p: p.stat().st_mtime_ns for p in out.rglob("clip*.npy")}
    assert 3 <= len(first) < len(keys), "the run was not killed mid-way"
    for path in out.rglob("*"):  # whatever has a final name is whole
        if path.suffix == ".npy" and not path.name.startswith("."):
            np.load(path)
        elif path.suffix == ".json" and not path.name.startswith("."):
            json.loads(path.read_text())
    assert embed(*common, "--output-dir", out) == 0  # the rerun: in this process (only the kill needs another)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files_skipped"] == len(first)
    assert summary["files_done"] + summary["files_skipped"] == len(keys)
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # done before the kill: not redone
    assert_same_outputs(read_tree(out), read_tree(ref))
    assert not (out / ".scratch").exists()


def test_two_shards_together_equal_a_single_run(tmp_path, corpus, tiny_model):
    model = tiny_model()
    assert embed(corpus, "--model", model, "--output-dir", tmp_path / "one", "--device", "cpu", "--workers", "0") == 0
    for i in range(2):
        assert embed(corpus, "--model", model, "--output-dir", tmp_path / "two", "--device", "cpu",
                     "--workers", "0", "--shard", f"{i}/2") == 0
    assert_same_outputs(read_tree(tmp_path / "two"), read_tree(tmp_path / "one"), atol=BATCH_ATOL)
    merged = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert merged["files_done"] == 12 and merged["shards_merged"] == [0, 1] and merged["shards_missing"] == []
    assert (tmp_path / "two" / "summary.shard-0001-of-0002.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed next to this interpreter")
def test_torchrun_two_processes_equal_a_single_run(tmp_path, corpus, tiny_model):
    model = tiny_model()
    assert embed(corpus, "--model", model, "--output-dir", tmp_path / "one", "--device", "cpu", "--workers", "0") == 0
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(PYTHON_DIR / "embed.py"),
                           str(corpus), "--model", str(model), "--output-dir", str(tmp_path / "tr"),
                           "--device", "cpu", "--workers", "0", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_outputs(read_tree(tmp_path / "tr"), read_tree(tmp_path / "one"), atol=BATCH_ATOL)
    for i in range(2):
        shard = json.loads((tmp_path / "tr" / f"summary.shard-{i:04d}-of-0002.json").read_text())
        assert shard["files_done"] == 6
    merged = json.loads((tmp_path / "tr" / "summary.json").read_text())
    assert merged["files_done"] == 12 and merged["shards_missing"] == []


@pytest.mark.parametrize("kind", [*KINDS, pytest.param("ge2e", marks=pytest.mark.slow)])  # GE2E: a minute on 2 cores
def test_batches_across_files_equal_files_run_one_by_one(kind, tmp_path, tiny_model):
    root = tmp_path / "audio"
    make_corpus(root, [1.0, 1.0, 1.6, 2.3, 1.0, 3.1] if kind != "ge2e" else [2.0, 2.0, 3.3, 4.1])
    if kind == "ge2e":
        for i, clip in enumerate(DEMO_CLIPS):
            shutil.copy(clip, root / f"speech{i}.wav")
    model = "ge2e" if kind == "ge2e" else str(tiny_model(kind))
    args = [root, "--model", model, "--device", "cpu", "--workers", "0", "--quiet"]
    assert embed(*args, "--output-dir", tmp_path / "b8", "--batch-size", "8") == 0
    assert embed(*args, "--output-dir", tmp_path / "b1", "--batch-size", "1") == 0
    batched, single = read_tree(tmp_path / "b8"), read_tree(tmp_path / "b1")
    assert_same_outputs(batched, single, atol=BATCH_ATOL)
    backend = load_backend(model, device="cpu")
    for path in sorted(root.rglob("*.wav")):  # and each file equals the one-file pipeline
        rel = path.relative_to(root).with_suffix(".npy").as_posix()
        alone = embed_audio(backend, load(path, sample_rate_hz=backend.sample_rate_hz), batch_size=1)
        np.testing.assert_allclose(batched[rel], alone.embeddings, rtol=0, atol=BATCH_ATOL, err_msg=rel)
    summary = json.loads((tmp_path / "b8" / "summary.json").read_text())
    assert summary["batches"] < summary["pieces"]  # inputs from several files shared model calls


def test_store_holds_the_same_embeddings_with_an_index(tmp_path, corpus, tiny_model):
    model = tiny_model()
    assert embed(corpus, "--model", model, "--output-dir", tmp_path / "tree", "--device", "cpu", "--workers", "0") == 0
    store = tmp_path / "emb.h5"
    argv = [corpus, "--model", model, "--output-dir", tmp_path / "s", "--device", "cpu", "--workers", "0",
            "--store", store]
    assert embed(*argv) == 0
    tree = read_tree(tmp_path / "tree")
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path, moved, ignore=shutil.ignore_patterns("moved"))  # links are relative
    with h5py.File(moved / "emb.h5", "r") as f:
        keys = [k.decode() for k in f["index/key"][()]]
        assert keys == sorted(k.replace(".npy", ".wav") for k in tree)
        for key, n_frames in zip(keys, f["index/n_frames"][()]):
            emb = f[f"embeddings/{key}"][()]
            np.testing.assert_allclose(emb, tree[key.replace(".wav", ".npy")], rtol=0, atol=BATCH_ATOL)
            assert emb.shape[0] == n_frames == f[f"time_axis/{key}"].shape[0]
        assert f.attrs["sample_rate_hz"] == 16000
    assert embed(*argv) == 0  # a rerun finds every file in the store
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["files_skipped"] == 12 and summary["files_done"] == 0


def test_long_recordings_are_streamed_and_match_loading_whole(tmp_path, tiny_model):
    root = tmp_path / "audio"
    make_corpus(root, [31.0, 2.0], rate=44100, channels=2)
    model = tiny_model()
    args = [root, "--model", model, "--device", "cpu", "--workers", "1", "--chunk-seconds", "5", "--quiet"]
    assert embed(*args, "--output-dir", tmp_path / "whole") == 0
    assert embed(*args, "--output-dir", tmp_path / "streamed", "--long-file-seconds", "10") == 0
    whole, streamed = read_tree(tmp_path / "whole"), read_tree(tmp_path / "streamed")
    # Only the resampler's block edges and float64 statistics differ.
    assert_same_outputs(streamed, whole, atol=2e-3)
    assert not (tmp_path / "streamed" / ".scratch").exists()


def test_a_rerun_with_other_settings_is_refused_until_overwrite(tmp_path, corpus, tiny_model, capsys):
    args = [corpus, "--model", tiny_model(), "--output-dir", tmp_path, "--device", "cpu", "--workers", "0", "--quiet"]
    assert embed(*args) == 0
    capsys.readouterr()
    assert embed(*args, "--layers", "1") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert embed(*args, "--layers", "1", "--overwrite") == 0
    assert np.load(next(tmp_path.rglob("clip000.npy"))).shape[-1] == 32
    assert json.loads((tmp_path / "summary.json").read_text())["files_done"] == 12


@pytest.mark.slow
def test_b2_script_takes_a_directory_and_mirrors_its_tree(tmp_path, corpus, tiny_model):
    proc = run_script("B2_model_wav2vec2.py", str(corpus), "--model", str(tiny_model()), "--output-dir",
                      str(tmp_path), "--device", "cpu", "--max-files", "4", "--formats", "npy,mat")
    assert proc.returncode == 0, proc.stderr
    first4 = sorted(p.relative_to(corpus).with_suffix(".mat").as_posix() for p in corpus.rglob("*.wav"))[:4]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.mat")) == first4
    assert (tmp_path / "failures.csv").read_text() == "path,reason\n"


@pytest.mark.slow
def test_no_files_found_is_a_usage_error_naming_the_folder(tmp_path):
    proc = run_script("embed.py", str(tmp_path), "--pattern", "*.nothing")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no audio files found in {tmp_path} (recursive, *.nothing)"


def test_slurm_array_tasks_with_a_store_merge_into_one_store(tmp_path, corpus, tiny_model, monkeypatch):
    model, store, out = tiny_model(), tmp_path / "emb.h5", tmp_path / "out"
    for task in (1, 2):  # an array 1-2, as `sbatch --array=1-2` numbers it
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        assert embed(corpus, "--model", model, "--output-dir", out, "--device", "cpu", "--workers", "0",
                     "--store", store, "--quiet") == 0
    (out / "summary.json").unlink()
    assert embed("--merge", "--output-dir", out, "--store", store, "--quiet") == 0  # the merge stage
    assert json.loads((out / "summary.json").read_text())["files_done"] == 12
    with h5py.File(store, "r") as f:
        assert len(f["index/key"]) == 12
        assert {Path(p.decode()).parent.name for p in f["index/part"][()]} == {"shard-0000-of-0002",
                                                                                "shard-0001-of-0002"}


def test_long_recordings_for_whole_file_models_are_decoded_in_blocks(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    data, rate = sf.read(DEMO_CLIPS[0])
    sf.write(root / "speech.wav", np.stack([data, data], axis=1), rate)  # stereo
    args = [root, "--model", "ge2e", "--device", "cpu", "--workers", "0", "--quiet"]
    assert embed(*args, "--output-dir", tmp_path / "whole") == 0
    assert embed(*args, "--output-dir", tmp_path / "blocks", "--long-file-seconds", "1") == 0
    assert_same_outputs(read_tree(tmp_path / "blocks"), read_tree(tmp_path / "whole"), atol=1e-3)
