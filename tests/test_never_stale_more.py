"""Issue 27 (never stale), the rest: the run file of a failed start, skipped ``.mat`` files.

* The run file (``.audio_embeddings_run.json``) of a start that failed before writing anything (a
  read-only ``--hoplite-db`` folder, a ``--hoplite-db`` with a model that makes no windows) does
  not refuse the corrected command; once outputs exist, other settings are still refused (tree
  outputs and a store).
* A folder search without ``--pattern`` that leaves ``.mat`` files out says so in one warning line
  (count, an example, ``--pattern '*.mat'``); the toolkit's own ``.mat`` outputs, other data files
  and a search with ``--pattern`` say nothing.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess

import numpy as np
import pytest
import scipy.io
import soundfile as sf

from helpers import noise

RATE_HZ = 16000


@pytest.fixture
def run_main(capsys):
    """``run_main(defaults_name, *argv)``: a script's ``main`` in this process, as a CompletedProcess."""
    from audio_embeddings import scripts

    def call(name: str, *argv: object) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            status = scripts.main(getattr(scripts, name), [str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code
        printed = capsys.readouterr()
        return subprocess.CompletedProcess([name, *map(str, argv)], status, printed.out, printed.err)

    return call


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(2):
        sf.write(folder / f"a{i}.wav", noise(2.0, RATE_HZ, seed=i), RATE_HZ)
    return folder


def _tiny(tiny_model, corpus, out, *more):
    return [corpus, "--model", tiny_model("wav2vec2"), "--output-dir", out, "--device", "cpu", "--workers", "0",
            "--quiet", "--formats", "npy", *more]


# --- the run file of a failed start -------------------------------------------------------------


def test_a_failed_hoplite_start_does_not_refuse_the_corrected_command(run_main, tiny_model, corpus, tmp_path):
    """``--hoplite-db`` with a frame model fails before anything is written; without it the run goes on."""
    pytest.importorskip("perch_hoplite")
    out = tmp_path / "out"
    failed = run_main("EMBED", *_tiny(tiny_model, corpus, out, "--hoplite-db", tmp_path / "db"))
    assert failed.returncode == 2 and "--hoplite-db" in failed.stderr
    assert not list(out.glob("*.npy"))
    corrected = run_main("EMBED", *_tiny(tiny_model, corpus, out))
    assert corrected.returncode == 0, corrected.stderr
    assert sorted(p.name for p in out.glob("*.npy")) == ["a0.npy", "a1.npy"]
    recorded = json.loads((out / ".audio_embeddings_run.json").read_text())
    assert recorded.get("--hoplite-db") is None  # the corrected command's settings replaced the failed one's


def test_a_read_only_hoplite_db_folder_then_the_corrected_command_runs(run_main, corpus, tmp_path, monkeypatch):
    """BirdNET (a window model) into a read-only database folder fails; the same command without
    ``--hoplite-db``, and with a writable one, then run (exit 0)."""
    from helpers import require_birdnet_model

    pytest.importorskip("perch_hoplite")
    require_birdnet_model()
    audio = tmp_path / "birds"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"b{i}.wav", noise(4.0, 48000, seed=10 + i), 48000)
    db = tmp_path / "db"
    db.mkdir()
    db.chmod(0o555)
    if os.access(db, os.W_OK):  # root writes anywhere: the database refuses as a read-only folder would
        import audio_embeddings.app.run as app_run

        def read_only(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(db))

        monkeypatch.setattr(app_run, "writer_for_backend", read_only)
    out = tmp_path / "out"
    common = [audio, "--model", "birdnet", "--device", "cpu", "--workers", "0", "--quiet", "--formats", "npy",
              "--output-dir", out]
    try:
        failed = run_main("EMBED", *common, "--hoplite-db", db)
        assert failed.returncode == 2 and str(db) in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
        assert not list(out.glob("*.npy"))
        monkeypatch.undo()
        corrected = run_main("EMBED", *common)
        assert corrected.returncode == 0, corrected.stderr
        assert sorted(p.name for p in out.glob("*.npy")) == ["b0.npy", "b1.npy"]
    finally:
        db.chmod(0o755)
    out2 = tmp_path / "out2"
    (tmp_path / "db-file").write_text("")  # next: a database path that is a file (fails for root too)
    failed = run_main("EMBED", *common[:-1], out2, "--hoplite-db", tmp_path / "db-file")
    assert failed.returncode == 2
    corrected = run_main("EMBED", *common[:-1], out2, "--hoplite-db", tmp_path / "db2")
    assert corrected.returncode == 0, corrected.stderr
    assert (tmp_path / "db2" / "hoplite.sqlite").exists()


@pytest.mark.parametrize("writer", ["tree", "store"])
def test_the_run_file_still_refuses_other_settings_over_outputs(run_main, tiny_model, corpus, tmp_path, writer):
    """Outputs made with one chunk length: a rerun with another is refused (one line), ``--overwrite`` redoes."""
    out = tmp_path / "out"
    store = ["--store", tmp_path / "all.h5"] if writer == "store" else []
    assert run_main("EMBED", *_tiny(tiny_model, corpus, out, *store)).returncode == 0
    refused = run_main("EMBED", *_tiny(tiny_model, corpus, out, *store, "--chunk-seconds", "10"))
    assert refused.returncode == 2 and "made with other settings" in refused.stderr
    assert "--chunk-seconds" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    redone = run_main("EMBED", *_tiny(tiny_model, corpus, out, *store, "--chunk-seconds", "10", "--overwrite"))
    assert redone.returncode == 0, redone.stderr


def test_holds_results_ignores_only_what_no_settings_describe(tmp_path):
    """The run file, this process's lock, the scratch folder and temporaries are not results; any other
    file, a live lock of another shard, or a store file given as ``results`` is."""
    from audio_embeddings.corpus.engine import check_run_config, ConfigMismatch, holds_results, RUN_CONFIG
    from audio_embeddings.corpus.lock import acquire_run_lock

    folder = tmp_path / "out"
    assert not holds_results(folder)  # missing
    with acquire_run_lock(folder, shard_label="shard-0000-of-0001"):
        (folder / RUN_CONFIG).write_text(json.dumps({"--model": "a"}))
        (folder / ".scratch").mkdir()
        (folder / ".x.npy.abcd1234.tmp").write_bytes(b"")
        assert not holds_results(folder)
        check_run_config(folder, {"--model": "b"}, overwrite=False)  # nothing made with "a": replaced
        assert json.loads((folder / RUN_CONFIG).read_text()) == {"--model": "b"}
        assert holds_results(folder, results=[folder / RUN_CONFIG])
        (folder / ".audio_embeddings.shard-0001-of-0002.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
        assert holds_results(folder)
        (folder / ".audio_embeddings.shard-0001-of-0002.lock").unlink()
        (folder / "x.npy").write_bytes(b"")
        assert holds_results(folder)
        with pytest.raises(ConfigMismatch, match="other settings"):
            check_run_config(folder, {"--model": "c"}, overwrite=False)


# --- .mat files a folder search leaves out ------------------------------------------------------


def _mat(path, seconds=1.0):
    scipy.io.savemat(path, {"audio": noise(seconds, RATE_HZ, seed=3).astype(np.float64), "fs": float(RATE_HZ)})


def test_skipped_mat_files_are_one_warning_naming_count_example_and_pattern(tmp_path, caplog):
    from audio_embeddings.corpus.discover import discover

    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "emb").mkdir()
    sf.write(root / "a.wav", noise(1.0, RATE_HZ), RATE_HZ)
    _mat(root / "m1.mat")
    _mat(root / "sub" / "m2.mat")
    _mat(root / "emb" / "a.mat")
    (root / "emb" / ".a.done").write_text("{}")  # this toolkit's output: not counted
    np.save(root / "feat.npy", np.zeros(3))  # not readable as audio: not counted
    (root / "meta.csv").write_text("x\n")
    with caplog.at_level(logging.INFO, logger="audio_embeddings"):
        corpus = discover([str(root)])
    assert [i.key for i in corpus.items] == ["a.wav"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 .mat file(s)" in warnings[0] and "e.g. m1.mat" in warnings[0]
    assert "--pattern '*.mat'" in warnings[0] and "\n" not in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="audio_embeddings"):
        corpus = discover([str(root)], patterns=["*.wav", "*.mat"])
    assert "m1.mat" in [i.key for i in corpus.items]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_folder_of_mat_files_only_fails_naming_the_pattern(tmp_path):
    from audio_embeddings.corpus.discover import CorpusError, discover

    root = tmp_path / "in"
    root.mkdir()
    _mat(root / "only.mat")
    with pytest.raises(CorpusError, match=r"no audio files found .*skipped 1 \.mat file\(s\).*--pattern '\*\.mat'"):
        discover([str(root)])


def test_embed_says_once_why_mat_files_were_skipped_and_pattern_embeds_them(run_main, tiny_model, corpus, tmp_path):
    _mat(corpus / "matlab_export.mat", seconds=2.0)
    out = tmp_path / "out"
    argv = [corpus, "--model", tiny_model("wav2vec2"), "--output-dir", out, "--device", "cpu", "--workers", "0",
            "--formats", "npy"]
    res = run_main("EMBED", *argv)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if "matlab_export.mat" in line]
    assert len(lines) == 1 and "skipped 1 .mat file(s)" in lines[0] and "--pattern '*.mat'" in lines[0]
    assert not (out / "matlab_export.npy").exists()
    res = run_main("EMBED", *argv, "--output-dir", tmp_path / "out2", "--pattern", "*.wav", "--pattern", "*.mat")
    assert res.returncode == 0, res.stderr
    assert "skipped" not in res.stderr
    assert (tmp_path / "out2" / "matlab_export.npy").exists()
