"""Issue 27 (never stale), cases 2, 3, 9 and 10: replaced weights and perch-hoplite databases.

* case 2: other weights copied into the same ``--model`` folder change the resume fingerprint
  (``--model weights``), so the rerun is refused naming them and ``--overwrite`` redoes it; the
  weights hash is cached by file state;
* case 3: a hoplite database records each recording's stamp and the run's settings: a changed input
  or window rule is refused (or redone with ``--overwrite``), never kept;
* case 9: a second run on the same database is refused, naming the holder;
* case 10: a full disk stops a ``--hoplite-db`` run after 3 failed writes, leaves no temporary, and
  the summary's done count is what the database holds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.backends import base
from audio_embeddings.cli import main
from audio_embeddings.scripts import EMBED
from helpers import noise

RATE = 48000


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch):
    """The weights hash cache in this test's folder (never the user's)."""
    monkeypatch.setenv(base.CACHE_DIR_ENV, str(tmp_path / "cache"))
    base._MEMO.clear()


def embed(*argv) -> int:
    return main(EMBED, [str(a) for a in argv])


# --- case 2: weights replaced inside the same model folder -----------------------------------------


@pytest.mark.parametrize("front_end", ["embed.py", "api"])
def test_case2_replaced_weights_in_the_same_folder_are_refused_then_redone(front_end, tiny_model, tmp_path, capsys):
    from tiny_models import build_tiny_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_model("wav2vec2"), folder)
    other = build_tiny_model("wav2vec2", tmp_path / "other", seed=1)
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(2):
        sf.write(str(audio / f"c{i}.wav"), noise(1.0, 16000, seed=i), 16000)
    out = tmp_path / "out"

    def run(overwrite=False):
        if front_end == "api":
            from audio_embeddings.api import load_model

            return load_model(str(folder), device="cpu").embed_files(audio, output_dir=out, overwrite=overwrite)
        return embed(audio, "--model", folder, "--output-dir", out, "--workers", "0", "--formats", "npy",
                     *(["--overwrite"] if overwrite else []))

    from audio_embeddings.registry import load_backend

    old_digest = base.weights_digest(load_backend(str(folder), device="cpu"))
    first = run()
    assert front_end == "api" or first == 0
    before = np.load(out / "c0.npy")
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    capsys.readouterr()
    if front_end == "api":
        with pytest.raises(ValueError, match=r"weights: 'sha256:[0-9a-f]{64}' -> 'sha256:[0-9a-f]{64}'"):
            run()
    else:
        assert run() == 2
        err = capsys.readouterr().err
        assert "--model weights" in err and old_digest in err and "--overwrite" in err
    np.testing.assert_array_equal(np.load(out / "c0.npy"), before)  # refused: nothing replaced
    result = run(overwrite=True)
    assert front_end == "api" or result == 0
    after = np.load(out / "c0.npy")
    assert np.abs(after - before).max() > 1e-3  # the new weights' outputs
    config = json.loads((out / ".audio_embeddings_run.json").read_text())
    assert config["--model weights"] != old_digest and config["--model weights"].startswith("sha256:")


def test_case2_weights_digest_covers_every_weight_file_and_is_cached(tmp_path, monkeypatch):
    """A SavedModel's variables count; a rerun reads no weights again; a copy with the mtime kept is seen."""
    model = tmp_path / "saved"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    big = model / "variables" / "variables.data-00000-of-00001"
    big.write_bytes(os.urandom(2 * base.SHA256_CACHE_MIN_BYTES))
    (model / "variables" / "variables.index").write_bytes(b"index")

    class Fake:
        def describe(self):
            return {"model_path": str(model), "checkpoint": "google/some-handle"}

    first = base.weights_digest(Fake())
    assert set(base.weights_sha256_of(model)) == {"saved_model.pb", "variables/variables.data-00000-of-00001",
                                                  "variables/variables.index"}
    base._MEMO.clear()  # a new process: only the cache file remains
    reads = []
    real = base._sha256_of
    monkeypatch.setattr(base, "_sha256_of", lambda p: reads.append(str(p)) or real(p))
    assert base.weights_digest(Fake()) == first
    assert not any(r.endswith("variables.data-00000-of-00001") for r in reads)  # the big file: from the cache
    st = big.stat()
    big.write_bytes(os.urandom(2 * base.SHA256_CACHE_MIN_BYTES))  # other weights, same size and mtime (cp -p)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert base.weights_digest(Fake()) != first


# --- perch-hoplite databases (BirdNET makes the windows) -------------------------------------------


@pytest.fixture
def corpus(tmp_path):
    from helpers import require_birdnet_model

    pytest.importorskip("perch_hoplite")
    require_birdnet_model()
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, name in enumerate(("crow", "wren", "owl")):
        sf.write(str(audio / f"{name}.wav"), noise(7.5, RATE, seed=i), RATE)
    return audio


BIRDNET = ("--model", "birdnet", "--device", "cpu", "--workers", "0", "--formats", "npy")


def vectors(db_dir) -> dict[str, np.ndarray]:
    from audio_embeddings.outputs import hoplite as H

    db = H.open_hoplite(db_dir)
    try:
        return {name: emb for _, name, _, _, emb in H.iter_recordings(db)}
    finally:
        db.db.close()


def test_case3_hoplite_db_refuses_a_changed_window_rule_or_input_and_overwrite_redoes_it(corpus, tmp_path, capsys):
    db = tmp_path / "db"
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o1", "--hoplite-db", db) == 0
    first = vectors(db)
    assert sorted(first) == ["crow.wav", "owl.wav", "wren.wav"] and first["crow.wav"].shape == (3, 1024)
    capsys.readouterr()
    # another window rule into the same database (fresh tree outputs): refused, naming the setting
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o2", "--hoplite-db", db,
                 "--partial-window", "drop") == 2
    assert "--partial-window: None -> 'drop'" in capsys.readouterr().err
    # the crow's input changed: refused naming the file; nothing in the database changed
    sf.write(str(corpus / "crow.wav"), noise(7.5, RATE, seed=42), RATE)
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o3", "--hoplite-db", db) == 2
    err = capsys.readouterr().err
    assert "the windows of crow.wav were made from another version of the input" in err and "--overwrite" in err
    np.testing.assert_array_equal(vectors(db)["crow.wav"], first["crow.wav"])
    # --overwrite redoes it: the crow's vectors are the new input's, with no old window left
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o4", "--hoplite-db", db, "--overwrite") == 0
    now = vectors(db)
    fresh = np.load(tmp_path / "o4" / "crow.npy").astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(now["crow.wav"], fresh)
    assert np.abs(now["crow.wav"] - first["crow.wav"]).max() > 0.1
    np.testing.assert_array_equal(now["owl.wav"], first["owl.wav"])
    from audio_embeddings.outputs import hoplite as H

    handle = H.open_hoplite(db)
    assert handle.count_embeddings() == 9 and len(handle.get_all_windows()) == 9
    handle.db.close()
    # and --partial-window drop with --overwrite: recorded, then a plain rerun is done
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o5", "--hoplite-db", db, "--partial-window", "drop",
                 "--overwrite") == 0
    capsys.readouterr()
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o5", "--hoplite-db", db, "--partial-window",
                 "drop") == 0
    assert "0 done, 3 already done" in capsys.readouterr().err


def test_case3_the_writer_keyword_the_runner_passes_checks_stamps(corpus, tmp_path):
    """perch_runner's ``hoplite_writer`` passes ``settings=``/``stamper=``/``input_paths=``: same behaviour."""
    from audio_embeddings.backends.base import FileEmbedding
    from audio_embeddings.corpus.stamps import settings_hash, Stamper
    from audio_embeddings.outputs.hoplite import HopliteError, HopliteWriter

    settings = {"--model": "birdnet", "--partial-window": None}
    cfg = {"model_key": "birdnet", "embedding_dim": 4, "model_config": {"window_size_s": 3.0, "hop_size_s": 3.0,
                                                                        "sample_rate": RATE}}
    paths = {p.name: str(p) for p in corpus.iterdir()}

    def result(seed):
        return FileEmbedding(np.random.default_rng(seed).standard_normal((2, 4)).astype(np.float32),
                             np.array([0.0, 3.0]), 3.0, 3.0, RATE, 2 * 3 * RATE)

    def writer(**kw):
        s = kw.pop("settings", settings)
        return HopliteWriter(tmp_path / "db", model_config=cfg, window_s=3.0, audio_root=corpus, settings=s,
                             stamper=Stamper(settings_hash=settings_hash(s)), input_paths=paths, **kw)

    w = writer()
    for key in paths:
        w.write(key, result(0), input_path=paths[key], audio_info={})
    w.close()
    w = writer()
    assert all(w.is_complete(k) for k in paths) and w.first_stale(paths) is None
    w.close()
    sf.write(paths["owl.wav"], noise(7.5, RATE, seed=9), RATE)
    w = writer()
    assert w.first_stale(paths)[:2] == ("owl.wav", "were made from another version of the input "
                                                   "(same size, other contents)")
    w.close()
    with pytest.raises(HopliteError, match=r"--partial-window: None -> 'drop'"):
        writer(settings={**settings, "--partial-window": "drop"})


# --- case 9: one run per database -----------------------------------------------------------------


def test_case9_a_second_run_on_the_same_database_is_refused_naming_the_holder(corpus, tmp_path, capsys):
    from audio_embeddings.corpus.lock import acquire_run_lock, RunLocked
    from audio_embeddings.outputs.hoplite import HopliteWriter

    db = tmp_path / "db"
    with acquire_run_lock(db, shard_label="shard-0000-of-0001"):  # another run holds the database
        assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o1", "--hoplite-db", db) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{db} is in use by another run (pid {os.getpid()}" in err[0]
        cfg = {"model_key": "birdnet", "embedding_dim": 4, "model_config": {}}
        with pytest.raises(RunLocked, match="is in use by another run"):  # the runner's keyword
            HopliteWriter(db, model_config=cfg, window_s=3.0, lock=acquire_run_lock)
    assert not (db / "hoplite.sqlite").exists()  # nothing was written by the refused runs
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "o1", "--hoplite-db", db) == 0
    assert not list(db.glob(".audio_embeddings.*.lock"))  # released at the end of the run


# --- case 10: a full disk -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["insert", "commit"])
def test_case10_disk_full_stops_after_three_and_the_done_count_is_what_the_database_holds(
        where, corpus, tmp_path, monkeypatch, capsys):
    from perch_hoplite.db import sqlite_usearch_impl as impl

    for i in range(5):
        sf.write(str(corpus / f"more{i}.wav"), noise(3.5, RATE, seed=10 + i), RATE)
    db, out = tmp_path / "db", tmp_path / "o1"
    if where == "insert":  # the third file on fails, as a full disk does
        calls = {"n": 0}
        real = impl.SQLiteUSearchDB.insert_windows_batch

        def full(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(impl.SQLiteUSearchDB, "insert_windows_batch", full)
    else:  # the index cannot be saved: a half temporary file, then ENOSPC
        import usearch.index

        real_save = usearch.index.Index.save

        def save(self, path=None, *args, **kwargs):
            if path and str(path).endswith(".tmp"):
                with open(path, "wb") as fh:
                    fh.write(b"half an index")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(self, path, *args, **kwargs)  # hoplite's own save of a new, empty index

        monkeypatch.setattr(usearch.index.Index, "save", save)
    status = embed(corpus, *BIRDNET, "--output-dir", out, "--hoplite-db", db)
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert status == 1
    lines = [line for line in err.splitlines() if "no space left on device" in line]
    summary = json.loads((out / "summary.json").read_text())
    if where == "insert":
        assert len(lines) == 4 and "stopped after 3 failed writes" in lines[-1]
    else:
        assert summary["files_done"] == 0 and summary["files_failed"] == 8
    assert not [p.name for p in db.iterdir() if p.name.endswith(".tmp")]
    in_db = set(vectors(db)) if (db / "usearch.index").exists() else set()
    assert len(in_db) == summary["files_done"]
    assert embed(corpus, *BIRDNET, "--output-dir", out, "--hoplite-db", db) == 0
    rerun = json.loads((out / "summary.json").read_text())
    assert rerun["files_skipped"] == summary["files_done"] and rerun["files_done"] == 8 - summary["files_done"]
    assert len(vectors(db)) == 8


def test_adding_a_hoplite_db_to_a_finished_folder_redoes_nothing_there_and_fills_the_database(corpus, tmp_path,
                                                                                              capsys):
    """--hoplite-db writes elsewhere, guarded by the database's own settings and stamps: it is not in the
    output folder's fingerprint, so a finished folder is not refused (nor redone) when one is added."""
    out, db = tmp_path / "out", tmp_path / "db"
    assert embed(corpus, *BIRDNET, "--output-dir", out, "--quiet") == 0
    made = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    capsys.readouterr()
    assert embed(corpus, *BIRDNET, "--output-dir", out, "--hoplite-db", db) == 0, capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == made
    assert sorted(vectors(db)) == ["crow.wav", "owl.wav", "wren.wav"]


def test_a_hoplite_db_that_is_a_file_is_one_line_naming_the_flag(corpus, tmp_path, capsys):
    bad = tmp_path / "db"
    bad.write_text("not a folder")
    assert embed(corpus, *BIRDNET, "--output-dir", tmp_path / "out", "--hoplite-db", bad) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and f"--hoplite-db {bad}" in err[0], err
