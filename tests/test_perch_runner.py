"""perch-runner (python/perch_runner.py) on the offline BirdNET model: tables, classifiers, distance, batch.

Synthetic 48 kHz clips, 3 s each (one BirdNET window): low tones, high tones and noise bursts.
"""

from __future__ import annotations

import base64
import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import audio
from audio_embeddings.pipeline import embed_audio
from audio_embeddings.registry import load_backend
from audio_embeddings.runner import (ConfigError, LinearClassifier, load_config, read_embeddings, read_provenance,
                                     read_table)
from audio_embeddings.runner.cli import USAGE, main
from audio_embeddings.runner.commands import distances
from helpers import require_birdnet_model, run_script

require_birdnet_model()

RATE = 48000
WINDOW_S = 3.0
BIRDNET = ["--model", "birdnet", "--device", "cpu", "--workers", "0", "--quiet"]
LABELS = ("high_tone", "low_tone", "noise_burst")


def tone_clip(freq_hz: float, *, seed: int, seconds: float = WINDOW_S) -> np.ndarray:
    """A tone with slow vibrato, random level and phase, over faint noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    freq = freq_hz * (1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
    phase = 2 * np.pi * np.cumsum(freq) / RATE + rng.uniform(0, 2 * np.pi)
    return (rng.uniform(0.2, 0.5) * np.sin(phase) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def noise_clip(*, seed: int, seconds: float = WINDOW_S) -> np.ndarray:
    """Two to four bursts of white noise over faint noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    x = 0.01 * rng.standard_normal(n)
    for _ in range(int(rng.integers(2, 5))):
        length = int(rng.uniform(0.1, 0.4) * RATE)
        onset = int(rng.integers(0, n - length))
        x[onset:onset + length] += rng.uniform(0.2, 0.5) * rng.standard_normal(length)
    return x.astype(np.float32)


def make_clip(label: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    if label == "low_tone":
        return tone_clip(rng.uniform(400, 800), seed=seed)
    if label == "high_tone":
        return tone_clip(rng.uniform(2500, 4500), seed=seed)
    return noise_clip(seed=seed)


def write_wav(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, RATE, subtype="FLOAT")
    return path


def run(*argv: str) -> int:
    return main([str(a) for a in argv])


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error line on stderr"
    return err[-1]


@pytest.fixture(scope="module")
def backend():
    return load_backend("birdnet", device="cpu")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """7.5 s: a low tone, noise bursts, and half a window of a high tone (the last window is padded)."""
    samples = np.concatenate([make_clip("low_tone", 1), make_clip("noise_burst", 2),
                              make_clip("high_tone", 3)[:RATE * 3 // 2]])
    return write_wav(tmp_path_factory.mktemp("rec") / "recording.wav", samples)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier trained on 10 clips per label (a folder per label); returns (folder, output dir)."""
    root = tmp_path_factory.mktemp("train")
    data = root / "labelled"
    for k, label in enumerate(LABELS):
        for i in range(10):
            write_wav(data / label / f"{label}_{i:02d}.wav", make_clip(label, 100 * k + i))
    out = root / "model"
    config = root / "train.yml"
    config.write_text("training:\n  holdout_fraction: 0.3\n  seed: 1\n")
    assert run("train", "-c", config, *BIRDNET, data, out) == 0
    return data, out


# -- generate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generate_round_trips_to_the_exact_npy_values(fmt, recording, backend, tmp_path):
    reference = embed_audio(backend, audio.load(recording, sample_rate_hz=RATE)).embeddings
    np.save(tmp_path / "reference.npy", reference)
    out = tmp_path / "out"
    assert run("generate", "-F", fmt, *BIRDNET, recording, out) == 0
    table = out / f"recording.embeddings.{fmt}"
    # one table per input, nothing else (CSV: and its provenance sidecar, so that pandas reads the table plainly)
    assert sorted(p.name for p in out.iterdir()) == sorted([table.name] + ([table.name + ".json"] if fmt == "csv"
                                                                           else []))

    columns, embeddings, provenance = read_embeddings(table)
    expected = np.load(tmp_path / "reference.npy")
    assert embeddings.dtype == np.float32 and embeddings.shape == (3, 1024)
    np.testing.assert_array_equal(embeddings, expected)
    assert list(columns) == ["source", "start", "end", "source_separation_channel"]  # source: new column
    assert list(columns["source"]) == ["recording.wav"] * 3
    np.testing.assert_array_equal(columns["start"], [0.0, 3.0, 6.0])
    np.testing.assert_array_equal(columns["end"], [3.0, 6.0, 7.5])  # clipped to the file's 7.5 s
    np.testing.assert_array_equal(columns["source_separation_channel"], [0, 0, 0])

    assert provenance["model"] == "birdnet" and provenance["command"] == "generate"
    assert provenance["checkpoint"].endswith(".tflite") and len(provenance["weights_sha256"]) == 64
    assert provenance["embedding_dim"] == 1024 and provenance["window_s"] == 3.0 and provenance["hop_s"] == 3.0
    assert {"numpy", "pyarrow", "audio_embeddings"} <= set(provenance["versions"])
    assert provenance["config"]["hop_length_seconds"] is None and "created_at" in provenance
    assert provenance["input"]["path"] == str(recording) and provenance["command_line"][1] == "generate"
    if fmt == "csv":
        # provenance moved from '#' lines to the sidecar: the CSV is plain
        lines = table.read_text().splitlines()
        assert not any(line.startswith("#") for line in lines)
        assert len(json.loads((out / (table.name + ".json")).read_text())) >= 10
        assert lines[0] == "source,start,end,source_separation_channel,embedding"
        first = lines[1].split(",")
        vector = np.frombuffer(base64.b64decode(first[4]), dtype="<f4")
        np.testing.assert_array_equal(vector, expected[0])
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(table)
        kind = schema.field("embedding").type
        assert pa.types.is_fixed_size_list(kind) and kind.list_size == 1024 and kind.value_type == pa.float32()
        assert str(schema.field("start").type) == "double"
        assert str(schema.field("source_separation_channel").type) == "int32"
        assert json.loads(schema.metadata[b"model"]) == "birdnet"
        assert read_provenance(table) == provenance


def test_hop_length_from_the_config(recording, tmp_path):
    config = tmp_path / "hop.yml"
    config.write_text("hop_length_seconds: 1.5\n")
    assert run("generate", "-c", config, *BIRDNET, recording, tmp_path / "out") == 0
    columns, embeddings, provenance = read_embeddings(tmp_path / "out" / "recording.embeddings.csv")
    np.testing.assert_array_equal(columns["start"], [0.0, 1.5, 3.0, 4.5])
    assert embeddings.shape == (4, 1024) and provenance["hop_s"] == 1.5


# -- train and classify ------------------------------------------------------------------------


def test_train_beats_chance_on_held_out_clips(trained):
    _, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["linear_classifier.heldout.csv", "linear_classifier.heldout.csv.json",
                                                     "linear_classifier.json", "linear_classifier.json.b64",
                                                     "linear_classifier.metadata.json"]
    meta = json.loads((out / "linear_classifier.metadata.json").read_text())
    held = meta["metrics"]["heldout"]
    assert meta["training"]["heldout_clips"] == 9 and held["windows"] == 9
    for label in LABELS:
        entry = held["per_class"][label]
        assert entry["positives"] == 3 and entry["chance_average_precision"] == pytest.approx(1 / 3)
        assert entry["average_precision"] >= 0.9, entry
        assert entry["roc_auc"] >= 0.9, entry
    assert held["macro_average_precision"] >= 0.9 and held["top1_accuracy"] >= 0.8
    assert meta["classifier"]["embedding_model"] == "birdnet" and meta["classifier"]["classes"] == list(LABELS)
    assert meta["data"]["clips"] == 30 and meta["data"]["clips_per_label"] == {k: 10 for k in LABELS}


def test_model_file_is_plain_hoplite_json(trained):
    _, out = trained
    text = (out / "linear_classifier.json").read_text()
    data = json.loads(text)  # plain JSON: no pickle anywhere
    assert data["classes"] == list(LABELS)
    assert data["model_config"]["model_key"] == "birdnet" and data["model_config"]["embedding_dim"] == 1024
    assert data["embedding_model"] == "birdnet" and data["embedding_dim"] == 1024
    # read it as perch-hoplite's LinearClassifier.from_config_dict does
    beta = np.frombuffer(base64.b64decode(data["beta"]), dtype=np.float32).reshape(-1, len(data["classes"]))
    bias = np.frombuffer(base64.b64decode(data["beta_bias"]), dtype=np.float32)
    clf = LinearClassifier.load(out / "linear_classifier.json")
    np.testing.assert_array_equal(clf.beta, beta)
    np.testing.assert_array_equal(clf.beta_bias, bias)
    assert clf.beta.shape == (1024, 3) and clf.embedding_dim == 1024
    from_b64 = LinearClassifier.from_base64((out / "linear_classifier.json.b64").read_text())
    np.testing.assert_array_equal(from_b64.beta, clf.beta)
    assert from_b64.to_json() == clf.to_json() == text


def test_reloaded_model_gives_the_training_scores_bit_for_bit(trained, backend):
    """The held-out table's scores are the saved model's scores on the clips' embeddings."""
    _, out = trained
    clf = LinearClassifier.load(out / "linear_classifier.json")
    columns, _ = read_table(out / "linear_classifier.heldout.csv")
    paths = list(dict.fromkeys(columns["path"]))
    assert len(paths) == 9
    for path in paths:
        emb = embed_audio(backend, audio.load(path, sample_rate_hz=RATE)).embeddings
        rows = columns["path"] == path
        expected = clf.scores(emb).reshape(-1)
        np.testing.assert_array_equal(columns["score"][rows], expected)
        assert list(columns["label"][rows]) == list(LABELS)
    # one row at a time or all together: the same float32 scores
    many = np.stack([embed_audio(backend, audio.load(p, sample_rate_hz=RATE)).embeddings[0] for p in paths])
    together = clf.scores(many)
    np.testing.assert_array_equal(together, np.concatenate([clf.scores(many[i:i + 1]) for i in range(len(many))]))


def test_classify_reproduces_the_held_out_scores(trained, tmp_path):
    _, out = trained
    held, _ = read_table(out / "linear_classifier.heldout.csv")
    clip = held["path"][0]
    b64 = (out / "linear_classifier.json.b64").read_text().strip()
    config = tmp_path / "classify.yml"
    config.write_text(
        "hop_length_seconds: 3.0\n"
        "classifiers:\n"
        f"  - name: sounds\n    tags: []\n    model: \"{b64}\"\n"
        f"  - name: from_file\n    tags: [noise_burst]\n    model: {out / 'linear_classifier.json'}\n")
    assert run("classify", "-c", config, *BIRDNET, clip, tmp_path / "out") == 0
    from pathlib import Path

    table = tmp_path / "out" / f"{Path(clip).stem}.classifications.csv"
    columns, provenance = read_table(table)
    assert list(columns) == ["source", "start", "end", "source_separation_channel", "classifier", "label", "score"]
    assert list(columns["classifier"]) == ["sounds"] * 3 + ["from_file"]
    assert list(columns["label"]) == [*LABELS, "noise_burst"]
    assert columns["score"].dtype == np.float32
    rows = held["path"] == clip
    np.testing.assert_allclose(columns["score"][:3], held["score"][rows], rtol=0, atol=1e-5)
    assert columns["score"][3] == columns["score"][2]
    assert [c["name"] for c in provenance["classifiers"]] == ["sounds", "from_file"]
    assert provenance["classifiers"][0]["source"] == "base64" and "logit" in provenance["score"]

    assert run("classify", "-F", "parquet", "-c", config, *BIRDNET, clip, tmp_path / "pq") == 0
    pq_columns, _ = read_table(tmp_path / "pq" / f"{Path(clip).stem}.classifications.parquet")
    np.testing.assert_array_equal(pq_columns["score"], columns["score"])  # CSV text gives the float32 back


def test_a_perch_hoplite_model_file_loads_and_is_checked():
    """hoplite's own file: only model_config, classes, beta, beta_bias (its window under its names)."""
    rng = np.random.default_rng(1)
    beta, bias = rng.standard_normal((1536, 2)).astype(np.float32), np.array([0.5, -1], np.float32)
    data = {"model_config": {"model_key": "perch_v2", "embedding_dim": 1536,
                             "model_config": {"window_size_s": 5.0, "sample_rate": 32000, "hop_size_s": 5.0}},
            "classes": ["koala", "other"],
            "beta": base64.b64encode(beta.tobytes()).decode(), "beta_bias": base64.b64encode(bias.tobytes()).decode()}
    clf = LinearClassifier.from_json(json.dumps(data))
    assert clf.embedding_model == "perch_v2" and clf.embedding_dim == 1536 and clf.classes == ("koala", "other")
    x = rng.standard_normal((4, 1536)).astype(np.float32)
    np.testing.assert_allclose(clf.scores(x), x @ beta + bias, rtol=1e-5, atol=1e-4)  # hoplite's __call__
    clf.check_fits(model="perch_v2_cpu", embedding_dim=1536, window_s=5.0, sample_rate_hz=32000)
    with pytest.raises(ValueError, match="10 s windows, not 5 s"):
        LinearClassifier.from_json(json.dumps({**data, "model_config": {
            **data["model_config"], "model_config": {"window_size_s": 10.0}}})).check_fits(
            model="perch_v2", embedding_dim=1536, window_s=5.0)


def _write_classifier(path, clf: LinearClassifier):
    clf.save(path)
    return path


@pytest.mark.parametrize("model, dim, expected", [
    ("perch_v2", 1536, "embedding model 'perch_v2', not 'birdnet'"),
    ("birdnet", 512, "512-d embeddings, not 1024-d"),
])
def test_a_classifier_for_another_model_is_refused(model, dim, expected, recording, tmp_path, capsys):
    rng = np.random.default_rng(0)
    clf = LinearClassifier(rng.standard_normal((dim, 2)).astype(np.float32), np.zeros(2, np.float32),
                           ("a", "b"), model)
    path = _write_classifier(tmp_path / "other.json", clf)
    config = tmp_path / "c.yml"
    config.write_text(f"classifiers:\n  - name: other\n    model: {path}\n")
    assert run("classify", "-c", config, *BIRDNET, recording, tmp_path / "out") == 2
    message = last_error(capsys)
    assert message.startswith("error: classifier 'other' does not fit this run") and expected in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_classify_without_classifiers_is_a_usage_error(recording, tmp_path, capsys):
    assert run("classify", *BIRDNET, recording, tmp_path / "out") == 2
    assert "classify needs classifiers" in last_error(capsys)


def test_train_from_a_csv_of_paths_and_labels(trained, tmp_path):
    data, _ = trained
    listing = tmp_path / "labels.csv"
    rows = [(str(p), p.parent.name) for label in LABELS for p in sorted((data / label).glob("*.wav"))[:4]]
    with listing.open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows, ("missing.wav", "low_tone")])
    config = tmp_path / "t.yml"
    config.write_text("training:\n  holdout_fraction: 0\n")
    # a clip that cannot be read is reported (exit 1); the model is trained on the others
    assert run("train", "-c", config, "--name", "small", *BIRDNET, listing, tmp_path / "m") == 1
    meta = json.loads((tmp_path / "m" / "small.metadata.json").read_text())
    assert meta["data"]["clips"] == 12 and meta["metrics"]["heldout"] is None
    assert len(meta["data"]["clips_failed"]) == 1 and "missing.wav" in meta["data"]["clips_failed"][0]["path"]
    assert meta["metrics"]["train"]["macro_average_precision"] == pytest.approx(1.0)
    assert not (tmp_path / "m" / "small.heldout.csv").exists()


def test_train_needs_two_labels(tmp_path, capsys):
    write_wav(tmp_path / "data" / "only" / "a.wav", make_clip("low_tone", 1))
    assert run("train", *BIRDNET, tmp_path / "data", tmp_path / "m") == 2
    assert "at least two labels" in last_error(capsys)


# -- distance ----------------------------------------------------------------------------------


def test_distance_is_zero_at_the_window_equal_to_the_query(recording, tmp_path):
    samples, _ = sf.read(str(recording), dtype="float32")
    query = write_wav(tmp_path / "query.wav", samples[3 * RATE:6 * RATE])  # the noise window
    for metric in ("cosine", "euclidean"):
        out = tmp_path / metric
        assert run("distance", "--metric", metric, *BIRDNET, recording, query, out) == 0
        columns, embeddings, provenance = read_embeddings(out / "recording.distances.csv")
        assert list(columns) == ["source", "start", "end", "source_separation_channel", "distance"]
        d = columns["distance"]
        assert d.shape == (3,) and int(np.argmin(d)) == 1
        assert d[1] <= 1e-6 and d[0] > 0.01 and d[2] > 0.01
        assert provenance["metric"] == metric and provenance["query"]["duration_s"] == 3.0
        generated = embed_audio(load_backend("birdnet", device="cpu"),
                                audio.load(recording, sample_rate_hz=RATE)).embeddings
        np.testing.assert_array_equal(embeddings, generated)


def test_distance_of_identical_vectors_is_exactly_zero():
    rng = np.random.default_rng(0)
    rows = rng.random((5, 1024)).astype(np.float32)
    cos = distances(rows, rows[3].copy())
    assert cos[3] == 0.0 and np.all(np.delete(cos, 3) > 0)
    assert distances(rows, rows[3].copy(), "euclidean")[3] == 0.0
    x = rows.astype(np.float64)
    np.testing.assert_allclose(cos, 1 - x @ x[3] / np.linalg.norm(x, axis=1) / np.linalg.norm(x[3]), rtol=0, atol=1e-12)


def test_distance_query_must_be_one_window(recording, tmp_path, capsys):
    samples = np.concatenate([make_clip("noise_burst", 5), make_clip("noise_burst", 6)])[:int(4.2 * RATE)]
    query = write_wav(tmp_path / "long_query.wav", samples)
    assert run("distance", *BIRDNET, recording, query, tmp_path / "out") == 2
    message = last_error(capsys)
    assert "the query must be one window long (3 s for birdnet)" in message and "4.200 s" in message
    assert not (tmp_path / "out" / "recording.distances.csv").exists()


def test_perch_windows_and_its_query_length(tiny_perch_model, tmp_path, capsys):
    """The tiny SavedModel with Perch 2.0's signature: 5 s windows at 32 kHz, 1536-d."""
    clip = tmp_path / "rec.wav"
    sf.write(str(clip), 0.1 * np.sin(np.arange(32000 * 6) / 7.0).astype(np.float32), 32000)
    query = tmp_path / "q.wav"
    sf.write(str(query), np.zeros(32000 * 3, np.float32), 32000)
    perch = ["--model", tiny_perch_model, "--device", "cpu", "--quiet"]
    assert run("distance", *perch, clip, query, tmp_path / "out") == 2
    assert "one window long (5 s for perch_v2); it is 3.000 s" in last_error(capsys)
    assert run("generate", *perch, clip, tmp_path / "out") == 0
    columns, embeddings, provenance = read_embeddings(tmp_path / "out" / "rec.embeddings.csv")
    assert embeddings.shape == (2, 1536) and provenance["model"] == "perch_v2" and provenance["window_s"] == 5.0
    np.testing.assert_array_equal(columns["start"], [0.0, 5.0])
    np.testing.assert_array_equal(columns["end"], [5.0, 6.0])


# -- batch mode --------------------------------------------------------------------------------


def test_batch_runs_rows_and_resumes(recording, tmp_path, capsys):
    a = write_wav(tmp_path / "in" / "a.wav", make_clip("low_tone", 7))
    b = write_wav(tmp_path / "in" / "b.wav", make_clip("high_tone", 8))
    c = write_wav(tmp_path / "in" / "c.wav", make_clip("noise_burst", 9))
    listing = tmp_path / "batch.csv"
    listing.write_text(f"source,output\nin/a.wav,out/a\n{b},out/b/b_embeddings.parquet\n")
    assert run("batch", *BIRDNET, "generate", listing) == 0
    made = [tmp_path / "out" / "a" / "a.embeddings.csv", tmp_path / "out" / "b" / "b_embeddings.parquet"]
    assert all(p.is_file() for p in made)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["files_done"] == 2 and summary["files_skipped"] == 0
    stamps = [p.stat().st_mtime_ns for p in made]

    listing.write_text(listing.read_text() + f"{c},out/c\n")
    assert run("batch", *BIRDNET, "generate", listing) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["files_done"] == 1 and summary["files_skipped"] == 2 and summary["files_failed"] == 0
    assert [p.stat().st_mtime_ns for p in made] == stamps  # finished rows were not redone
    assert (tmp_path / "out" / "c" / "c.embeddings.csv").is_file()
    _, emb, _ = read_embeddings(made[1])
    assert emb.shape == (1, 1024)

    hop = tmp_path / "hop.yml"
    hop.write_text("hop_length_seconds: 1.5\n")
    capsys.readouterr()
    assert run("batch", "-c", hop, *BIRDNET, "generate", listing) == 2  # would mix settings
    message = last_error(capsys)
    assert "was made with other settings" in message and "hop_s: 3.0 -> 1.5" in message
    assert run("batch", "-c", hop, "--overwrite", *BIRDNET, "generate", listing) == 0
    assert read_provenance(made[0])["hop_s"] == 1.5


def test_batch_reports_a_failed_row_and_goes_on(tmp_path):
    a = write_wav(tmp_path / "a.wav", make_clip("low_tone", 7))
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    listing = tmp_path / "rows.csv"
    listing.write_text(f"source,output\n{a},out\nbroken.wav,out\nmissing.wav,out\n")
    assert run("batch", *BIRDNET, "generate", listing) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["files_done"] == 1 and summary["files_failed"] == 2
    assert (tmp_path / "out" / "a.embeddings.csv").is_file()
    failures = (tmp_path / "failures.csv").read_text()
    assert "broken.wav" in failures and "missing.wav" in failures


def test_batch_csv_needs_source_and_output(tmp_path, capsys):
    listing = tmp_path / "rows.csv"
    listing.write_text("path,out\na.wav,x\n")
    assert run("batch", *BIRDNET, "generate", listing) == 2
    assert "needs columns source and output (missing source, output" in last_error(capsys)


# -- config ------------------------------------------------------------------------------------


def _b64(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


@pytest.mark.parametrize("text, field", [
    ("hop_length_second: 5.0\n", "hop_length_second: unknown key 'hop_length_second'"),
    ("hop_length_seconds: five\n", "hop_length_seconds: expected a number > 0, got str 'five'"),
    ("hop_length_seconds: true\n", "hop_length_seconds: expected a number > 0"),
    ("hop_length_seconds: -1\n", "hop_length_seconds: must be > 0"),
    ("model: 5\n", "model: expected a model name or path"),
    ("classifiers: {name: a}\n", "classifiers: expected a list"),
    ("classifiers:\n  - name: a\n    model: 'not*base64!'\n", "classifiers[0].model: not valid base64"),
    ("classifiers:\n  - name: a\n    model: 'bm90IGpzb24='\n", "classifiers[0].model: decoded base64: not JSON"),
    (f"classifiers:\n  - name: a\n    model: '{_b64({'classes': ['x']})}'\n",
     "classifiers[0].model: decoded base64: not a linear classifier: missing 'beta', 'beta_bias'"),
    ("classifiers:\n  - name: a\n    model: missing.json\n", "classifiers[0].model: "),
    ("classifiers:\n  - name: a\n    tags: x\n    model: 'e30='\n", "classifiers[0].tags: expected a list"),
    ("classifiers:\n  - name: a\n    colour: red\n    model: 'e30='\n", "classifiers[0].colour: unknown key"),
    ("classifiers:\n  - tags: []\n    model: 'e30='\n", "classifiers[0].name: expected a non-empty string"),
    ("training:\n  holdout_fraction: 1.5\n", "training.holdout_fraction: expected a number in [0, 1)"),
    ("training:\n  seed: 0.5\n", "training.seed: expected an integer"),
    ("- 1\n- 2\n", "expected a mapping of settings at the top level"),
    ("hop_length_seconds: 5\nhop_length_seconds: 3\n", "line 2: key 'hop_length_seconds' is given twice"),
    ("hop_length_seconds: [5\n", "not valid YAML"),
])
def test_bad_config_names_the_field(text, field, tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and field in message, message


def test_bad_classifier_weights_name_the_field(trained, tmp_path):
    _, out = trained
    data = json.loads((out / "linear_classifier.json").read_text())
    data["beta"] = data["beta"][:-8]  # cut: no longer D x C float32 values
    config = tmp_path / "config.yml"
    config.write_text(f"classifiers:\n  - name: cut\n    model: '{_b64(data)}'\n")
    with pytest.raises(ConfigError, match=r"classifiers\[0\]\.model: decoded base64: beta: "):
        load_config(config)
    config.write_text(f"classifiers:\n  - name: a\n    tags: [owl]\n    model: {out / 'linear_classifier.json'}\n")
    with pytest.raises(ConfigError, match=r"classifiers\[0\]\.tags: 'owl' is not a label of this classifier"):
        load_config(config)


def test_a_good_config_loads(trained, tmp_path):
    _, out = trained
    config = tmp_path / "config.yml"
    config.write_text(
        "model: birdnet\nhop_length_seconds: 1.5\n"
        "classifiers:\n  - name: one\n    tags: [low_tone]\n    model: |\n"
        + "".join(f"      {line}\n" for line in _wrap((out / "linear_classifier.json.b64").read_text().strip()))
        + "  - name: two\n    model: model/linear_classifier.json\n")
    (tmp_path / "model").symlink_to(out)
    loaded = load_config(config)
    assert loaded.model == "birdnet" and loaded.hop_length_seconds == 1.5
    assert [c.name for c in loaded.classifiers] == ["one", "two"]
    assert loaded.classifiers[0].labels == ("low_tone",) and loaded.classifiers[1].labels == LABELS
    assert loaded.classifiers[0].sha256 == loaded.classifiers[1].sha256
    assert loaded.classifiers[1].source.startswith("file ")


def _wrap(text: str, width: int = 76) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)]


def test_cli_reports_a_bad_config_in_one_line(recording, tmp_path, capsys):
    config = tmp_path / "bad.yml"
    config.write_text("hop_length_seconds: 5\nclassifers: []\n")
    assert run("generate", "-c", config, *BIRDNET, recording, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {config}: classifers: unknown key 'classifers' (known: model, hop_length_seconds, "
                   "classifiers, recognizers, training); did you mean 'classifiers'?"]  # recognizers: a new key


# -- the script --------------------------------------------------------------------------------


@pytest.mark.slow
def test_script_end_to_end(recording, tmp_path):
    help_text = run_script("perch_runner.py", "--help").stdout
    for line in USAGE.values():
        assert line in help_text
    assert "[-F|--format csv|parquet] [-c|--config FILE] INPUT QUERY OUTPUT_DIR" in USAGE["distance"]
    proc = run_script("perch_runner.py", "generate", "-F", "parquet", *BIRDNET, str(recording), str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    _, emb, _ = read_embeddings(tmp_path / "o" / "recording.embeddings.parquet")
    assert emb.shape == (3, 1024)
    bad = tmp_path / "bad.yml"
    bad.write_text("classifiers:\n  - name: a\n    model: '@@@'\n")
    proc = run_script("perch_runner.py", "classify", "-c", str(bad), str(recording), str(tmp_path / "o"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: classifiers[0].model: not valid base64 (")
    assert lines[0].endswith(") and not an existing file")
    proc = run_script("perch_runner.py", "generate", *BIRDNET, str(tmp_path / "nope.wav"), str(tmp_path / "o"))
    assert proc.returncode == 1 and proc.stderr.strip().endswith("nope.wav: file not found")
    assert os.listdir(tmp_path / "o") == ["recording.embeddings.parquet"]
