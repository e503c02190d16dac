"""perch-runner and BirdNET-Analyzer conventions: perch-runner's tables and recognizer files, hoplite's
classifier files, the window rules of windowing.py, classify/distance over existing embeddings.

perch-runner is not on PyPI: its layouts are written here as its ``src/db_to_table.py`` and
``src/data_frames.py`` write them (``source, channel, offset`` + base64 ``embeddings`` or ``f0000...``
columns; footer keys ``perch_runner.version``, ``perch_hoplite.version``, ``perch_runner.config_json``;
recognizers ``{"recognizers": [{hoplite's keys, "name", "notes"}]}``). BirdNET-Analyzer's model
is not offline, so its window rules are tested from its ``audio.split_signal`` as documented in
windowing.py.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import windowing
from audio_embeddings.runner import LinearClassifier, read_embeddings, read_provenance, read_table
from audio_embeddings.runner.classifier import load_classifiers, model_from_config
from audio_embeddings.runner.cli import main

RATE = 48000


def run(*argv) -> int:
    return main([str(a) for a in argv])


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def hoplite_classifier(dim: int, classes, *, seed: int = 0, model_config="perch") -> dict:
    """A classifier file as perch-hoplite's LinearClassifier.save writes it (to_config_dict().to_json())."""
    rng = np.random.default_rng(seed)
    beta = rng.standard_normal((dim, len(classes))).astype(np.float32) * 0.1
    bias = rng.standard_normal(len(classes)).astype(np.float32)
    config = {"model_key": "taxonomy_model_tf", "embedding_dim": dim, "logits_key": None, "logits_idxes": None,
              "model_config": {"window_size_s": 5.0, "hop_size_s": 5.0, "sample_rate": 32000,
                               "tfhub_path": "google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu",
                               "tfhub_version": 1, "model_path": ""}} if model_config == "perch" else model_config
    return {"model_config": config, "classes": list(classes), "beta": b64(beta), "beta_bias": b64(bias)}


# -- classifier files --------------------------------------------------------------------------


@pytest.mark.parametrize("variant, expected_model, warns", [
    ("taxonomy_model_tf", "perch_v2", False),
    ("no_model_key", None, True),
    ("model_config_null", None, True),
    ("model_name_only", "perch_v2", False),
    ("one_class", "perch_v2", False),
])
def test_hoplite_classifier_variants_load_and_are_checked(variant, expected_model, warns):
    data = hoplite_classifier(1536, ["koala", "other"])
    if variant == "no_model_key":
        data["model_config"] = {"embedding_dim": 1536, "model_config": {"window_size_s": 5.0}}
    elif variant == "model_config_null":
        data["model_config"] = None
    elif variant == "model_name_only":
        data["model_config"] = None
        data["model_name"] = "perch_v2"
    elif variant == "one_class":
        data = hoplite_classifier(1536, ["koala"])
    clf = LinearClassifier.from_json(json.dumps(data))
    assert clf.embedding_model == expected_model and clf.embedding_dim == 1536
    notes = clf.check_fits(model="perch_v2_cpu", embedding_dim=1536, window_s=5.0, sample_rate_hz=32000)
    assert bool(notes) == warns
    if warns:
        assert "could not be confirmed" in notes[0] and "1536-d" in notes[0]
    with pytest.raises(ValueError, match="1536-d embeddings, not 1024-d"):
        clf.check_fits(model="birdnet", embedding_dim=1024)
    if expected_model:
        with pytest.raises(ValueError, match="embedding model 'perch_v2', not 'birdnet'"):
            clf.check_fits(model="birdnet", embedding_dim=1536)
    # saved again, hoplite's model_key is kept
    assert json.loads(clf.to_json())["model_config"]["model_key"] in ("taxonomy_model_tf", "perch_v2", None)


def test_model_from_hoplite_model_config():
    assert model_from_config({"model_key": "birdnet", "embedding_dim": 1024}) == "birdnet"
    assert model_from_config({"model_key": "taxonomy_model_tf", "embedding_dim": 1536}) == "perch_v2"
    assert model_from_config({"model_key": "taxonomy_model_tf", "embedding_dim": 1280,
                              "model_config": {"tfhub_path": "google/surfperch/TensorFlow2/1"}}) == "surfperch"
    assert model_from_config({"model_key": "taxonomy_model_tf", "embedding_dim": 1280}) is None
    assert model_from_config(None) is None


def test_perch_runner_recognizers_file(tmp_path):
    koala = {**hoplite_classifier(1536, ["Koala"], seed=1), "name": "koala", "notes": "MDM"}
    owl = {**hoplite_classifier(1536, ["Owl", "Frog"], seed=2), "name": "owl"}
    path = tmp_path / "recognizers.json"
    path.write_text(json.dumps({"recognizers": [koala, owl]}))
    pairs = load_classifiers(path)
    assert [n for n, _ in pairs] == ["koala", "owl"]
    assert pairs[0][1].classes == ("Koala",) and pairs[1][1].classes == ("Owl", "Frog")
    assert pairs[0][1].info["notes"] == "MDM"
    single = tmp_path / "koala.json"
    single.write_text(json.dumps(koala))
    assert [n for n, _ in load_classifiers(single)] == ["koala"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"recognizers": [koala, {"name": "x", "classes": ["a"]}]}))
    with pytest.raises(ValueError, match=r"recognizers\[1\]: not a linear classifier: missing 'beta'"):
        load_classifiers(bad)


def test_scores_equal_hoplites_linear_classifier(tmp_path):
    pytest.importorskip("perch_hoplite")
    pytest.importorskip("tensorflow")
    from perch_hoplite.agile import classifier as hoplite

    data = hoplite_classifier(1536, ["koala", "other", "frog"], seed=3)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    theirs = hoplite.LinearClassifier.load(str(path))
    ours = LinearClassifier.load(path)
    x = np.random.default_rng(4).standard_normal((50, 1536)).astype(np.float32)
    np.testing.assert_allclose(ours.scores(x), theirs(x), rtol=1e-5, atol=1e-5)
    # and ours saved is loaded by hoplite, with the same weights
    ours.save(tmp_path / "ours.json")
    again = hoplite.LinearClassifier.load(str(tmp_path / "ours.json"))
    np.testing.assert_array_equal(again.beta, ours.beta)
    np.testing.assert_allclose(again(x), ours.scores(x), rtol=1e-5, atol=1e-5)
    assert tuple(again.classes) == ours.classes


# -- perch-runner's tables ---------------------------------------------------------------------


def perch_runner_rows(n=4, dim=1536, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), np.arange(n) * 5.0


def write_perch_runner_csv(path, source, emb, offsets):
    """What its build_rows(serialized) + df.to_csv(index=False) writes."""
    lines = ["source,channel,offset,embeddings"]
    lines += [f"{source},0,{o},{b64(e)}" for o, e in zip(offsets, emb)]
    path.write_text("\n".join(lines) + "\n")


def write_perch_runner_parquet(path, source, emb, offsets, *, columns=False, float16=False):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = {"source": [source] * len(offsets), "channel": [0] * len(offsets), "offset": list(map(float, offsets))}
    if columns:
        for j in range(emb.shape[1]):
            data[f"f{j:04d}"] = pa.array(emb[:, j].astype(np.float16 if float16 else np.float32))
    else:
        data["embeddings"] = [b64(e) for e in emb]
    table = pa.table(data)
    meta = {b"perch_runner.version": b"1.2.3", b"perch_hoplite.version": b"1.0.2",
            b"perch_runner.config_json": json.dumps({"model_choice": "perch_v2", "hop_size": 5}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), str(path))


@pytest.mark.parametrize("kind", ["csv", "parquet", "columns", "columns16"])
def test_read_perch_runner_layouts(kind, tmp_path):
    emb, offsets = perch_runner_rows()
    path = tmp_path / ("site1_rec.csv" if kind == "csv" else "site1_rec.parquet")
    if kind == "csv":
        write_perch_runner_csv(path, "site1/rec.wav", emb, offsets)
    else:
        write_perch_runner_parquet(path, "site1/rec.wav", emb, offsets, columns=kind != "parquet",
                                   float16=kind == "columns16")
    columns, got, provenance = read_embeddings(path)
    expected = emb.astype(np.float16).astype(np.float32) if kind == "columns16" else emb
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float32 and got.shape == (4, 1536)
    assert list(columns)[:3] == ["source", "start", "source_separation_channel"] or \
        list(columns)[:4] == ["source", "start", "end", "source_separation_channel"]
    np.testing.assert_array_equal(columns["start"], offsets)
    assert list(columns["source"]) == ["site1/rec.wav"] * 4
    if kind != "csv":
        assert provenance["perch_runner.version"] == "1.2.3" and provenance["perch_hoplite.version"] == "1.0.2"
        np.testing.assert_array_equal(columns["end"], offsets + 5.0)  # model_choice perch_v2: 5 s windows
    assert provenance["layout"].startswith("perch-runner")


def test_classify_a_perch_runner_table_without_the_model(tmp_path, capsys):
    """No model is loaded: the embeddings are read, the recognizers applied, warnings where unconfirmed."""
    emb, offsets = perch_runner_rows(n=6)
    table = tmp_path / "in" / "rec.parquet"
    table.parent.mkdir()
    write_perch_runner_parquet(table, "rec.wav", emb, offsets)
    recognizers = tmp_path / "rec.json"
    koala = {**hoplite_classifier(1536, ["Koala"], seed=5), "name": "koala"}
    recognizers.write_text(json.dumps({"recognizers": [koala]}))
    out = tmp_path / "out"
    assert run("classify", "--recognizers", recognizers, "--model", "does-not-exist", "--quiet", table, out) == 0
    columns, provenance = read_table(out / "rec.classifications.csv")
    assert list(columns["source"]) == ["rec.wav"] * 6 and list(columns["label"]) == ["Koala"] * 6
    clf = LinearClassifier.from_json_dict(koala)
    np.testing.assert_allclose(columns["score"], (emb @ clf.beta + clf.beta_bias)[:, 0], rtol=1e-5, atol=1e-5)
    assert provenance["classifiers"][0]["name"] == "koala"
    # in perch-runner's layout: its column names
    assert run("classify", "--recognizers", recognizers, "--layout", "perch-runner", "-F", "parquet", "--quiet",
               table, tmp_path / "pr") == 0
    import pyarrow.parquet as pq

    names = pq.read_schema(tmp_path / "pr" / "rec.classifications.parquet").names
    assert names == ["source", "channel", "offset", "recognizer", "label", "score"]


def test_generate_layouts_and_pandas(tmp_path):
    """Our CSV reads with pandas' defaults; --layout perch-runner writes their names and footer keys."""
    pd = pytest.importorskip("pandas")
    from audio_embeddings.runner.tables import write_table

    emb, offsets = perch_runner_rows(n=3, dim=8)
    cols = {"source": np.array(["a.wav"] * 3, dtype=object), "start": offsets, "end": offsets + 5.0,
            "source_separation_channel": np.zeros(3, np.int32), "embedding": emb}
    prov = {"model": "perch_v2", "window_s": 5.0, "hop_s": 5.0, "embedding_dim": 8, "command": "generate",
            "versions": {"audio_embeddings": "0.test"}}
    write_table(tmp_path / "a.embeddings.csv", cols, prov)
    df = pd.read_csv(tmp_path / "a.embeddings.csv")
    assert list(df.columns) == ["source", "start", "end", "source_separation_channel", "embedding"]
    assert len(df) == 3 and df["start"].tolist() == offsets.tolist()
    assert read_provenance(tmp_path / "a.embeddings.csv")["model"] == "perch_v2"
    write_table(tmp_path / "b.parquet", cols, prov, layout="perch-runner")
    import pyarrow.parquet as pq

    meta = pq.read_metadata(tmp_path / "b.parquet").metadata
    assert meta[b"perch_runner.version"].decode().startswith("audio_embeddings")
    assert b"perch_hoplite.version" in meta
    assert json.loads(meta[b"perch_runner.config_json"])["model_choice"] == "perch_v2"
    frame = pd.read_parquet(tmp_path / "b.parquet")
    assert list(frame.columns) == ["source", "channel", "offset", "embeddings"]
    _, back, _ = read_embeddings(tmp_path / "b.parquet")
    np.testing.assert_array_equal(back, emb)
    write_table(tmp_path / "c.csv", cols, prov, layout="perch-runner")
    assert list(pd.read_csv(tmp_path / "c.csv").columns) == ["source", "channel", "offset", "embeddings"]


# -- window rules (BirdNET-Analyzer's split_signal, as documented) ---------------------------


@pytest.mark.parametrize("seconds, starts, ends", [
    (0.5, [], []),                      # under 1 s: skipped
    (1.2, [0.0], [1.2]),                # one zero-padded window
    (3.8, [0.0], [3.0]),                # trailing 0.8 s piece dropped
    (7.9, [0.0, 3.0, 6.0], [3.0, 6.0, 7.9]),  # trailing 1.9 s kept
])
def test_birdnet_analyzer_windows(seconds, starts, ends):
    rules = windowing.rules_for("birdnet")
    assert rules.min_seconds == 1.0 and rules.partial == "pad"
    n = int(round(seconds * RATE))
    onsets, pad = windowing.plan_windows(n, window_samples=3 * RATE, hop_samples=3 * RATE,
                                         min_samples=rules.min_samples(RATE), partial=rules.partial)
    assert pad == "zeros"
    np.testing.assert_array_equal(onsets / RATE, starts)
    np.testing.assert_allclose(windowing.window_ends_s(onsets / RATE, window_s=3.0, duration_s=seconds), ends)
    # hoplite's offsets: [start, start + window]
    np.testing.assert_allclose(windowing.window_ends_s(onsets / RATE, window_s=3.0, duration_s=seconds,
                                                       end="window"), np.asarray(starts) + 3.0)


def _split_signal_onsets(n, chunk, step, minsize):
    """BirdNET-Analyzer 2.4's split_signal index arithmetic (the rule, restated)."""
    last = int((n - chunk + step - 1) / step) * step
    if last < 0:
        last = 0
    elif n - last < minsize:
        last -= step
    return list(range(0, last + 1, step))


@pytest.mark.parametrize("hop_s", [3.0, 2.0, 1.5])
def test_pad_rule_matches_split_signal_for_many_lengths(hop_s):
    chunk, step, minsize = 3 * 100, int(hop_s * 100), 100  # 100 Hz keeps it quick
    for n in range(1, 2000, 7):
        ours, _ = windowing.plan_windows(n, window_samples=chunk, hop_samples=step, min_samples=minsize)
        theirs = _split_signal_onsets(n, chunk, step, minsize) if n >= minsize else []
        assert ours.tolist() == theirs, n


def test_other_partial_modes():
    w, h = 300, 300
    assert windowing.plan_windows(750, window_samples=w, hop_samples=h, partial="drop")[0].tolist() == [0, 300]
    assert windowing.plan_windows(250, window_samples=w, hop_samples=h, partial="drop")[0].tolist() == []
    onsets, pad = windowing.plan_windows(750, window_samples=w, hop_samples=h, partial="reflect")
    assert onsets.tolist() == [0, 300, 600] and pad == "reflect"
    assert windowing.plan_windows(750, window_samples=w, hop_samples=h, partial="center")[0].tolist() == [225]
    assert windowing.plan_windows(200, window_samples=w, hop_samples=h, partial="center")[0].tolist() == [0]
    assert windowing.rules_for("perch_v2_cpu").partial == "reflect"
    with pytest.raises(ValueError):
        windowing.plan_windows(10, window_samples=w, hop_samples=h, partial="wrap")


def test_window_options_are_declared_once():
    from audio_embeddings.backends.base import Option

    assert all(isinstance(o, Option) and o.affects == "numbers" for o in windowing.OPTIONS)
    assert [o.flag for o in windowing.OPTIONS] == ["--min-seconds", "--partial-window", "--resampler"]
    assert windowing.PARTIAL_WINDOW.convert("Center") == "center"
    assert windowing.MIN_SECONDS.convert("1.5") == 1.5
    with pytest.raises(ValueError):
        windowing.RESAMPLER.convert("linear")
    assert windowing.RESAMPLER.matlab_name == "Resampler"


def test_kaiser_fast_is_librosas():
    librosa = pytest.importorskip("librosa")
    pytest.importorskip("resampy")
    x = np.random.default_rng(0).standard_normal(22050 * 2).astype(np.float32) * 0.1
    ours = windowing.resample(x, from_hz=22050, to_hz=48000, method="kaiser-fast")
    theirs = librosa.resample(x, orig_sr=22050, target_sr=48000, res_type="kaiser_fast")
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)
    soxr = windowing.resample(x, from_hz=22050, to_hz=48000)
    # soxr gives round(N * ratio) samples; librosa ceil(N * ratio) in floating point (here one more)
    assert abs(soxr.shape[0] - ours.shape[0]) <= 1 and not np.array_equal(soxr[:1000], ours[:1000])


# -- classify and distance over existing embeddings ---------------------------------------------


def test_classify_an_hdf5_store(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(7)
    store = tmp_path / "corpus.h5"
    with h5py.File(store, "w") as f:
        f.attrs.update({"model_name": "birdnet", "sample_rate_hz": 48000, "frame_stride_s": 3.0, "window_s": 3.0})
        for key in ("a/x.wav", "b/y.wav"):
            ds = f.create_dataset(f"embeddings/{key}", data=rng.standard_normal((3, 1024)).astype(np.float32))
            ds.attrs["duration_s"] = 8.0
            ds.attrs["source_path"] = f"/audio/{key}"
            f.create_dataset(f"time_axis/{key}", data=np.array([0.0, 3.0, 6.0]))
    clf = LinearClassifier(rng.standard_normal((1024, 2)).astype(np.float32), np.zeros(2, np.float32),
                           ("a", "b"), "birdnet")
    clf.save(tmp_path / "c.json")
    config = tmp_path / "c.yml"
    config.write_text(f"classifiers:\n  - name: c\n    model: {tmp_path / 'c.json'}\n")
    assert run("classify", "-c", config, "--quiet", store, tmp_path / "out") == 0
    columns, _ = read_table(tmp_path / "out" / "a" / "x.classifications.csv")
    np.testing.assert_array_equal(columns["end"], np.repeat([3.0, 6.0, 8.0], 2))  # clipped to the 8 s file
    assert list(columns["source"]) == ["/audio/a/x.wav"] * 6
    with h5py.File(store, "r") as f:
        emb = f["embeddings/a/x.wav"][()]
    np.testing.assert_allclose(columns["score"].reshape(3, 2), clf.scores(emb), rtol=1e-6)


def test_distance_over_a_table_with_a_table_query(tmp_path):
    from audio_embeddings.runner.tables import write_table

    emb, offsets = perch_runner_rows(n=5, dim=16, seed=9)
    cols = {"source": np.array(["r.wav"] * 5, dtype=object), "start": offsets, "end": offsets + 5.0,
            "source_separation_channel": np.zeros(5, np.int32), "embedding": emb}
    prov = {"model": "perch_v2", "model_spec": "perch_v2", "window_s": 5.0, "hop_s": 5.0, "embedding_dim": 16,
            "command": "generate", "settings": {}}
    write_table(tmp_path / "r.embeddings.csv", cols, prov)
    write_table(tmp_path / "q.csv", {k: v[2:3] for k, v in cols.items()}, prov)
    assert run("distance", "--quiet", tmp_path / "r.embeddings.csv", tmp_path / "q.csv", tmp_path / "out") == 0
    columns, _, _ = read_embeddings(tmp_path / "out" / "r.distances.csv")
    assert int(np.argmin(columns["distance"])) == 2 and columns["distance"][2] == 0.0


def test_classify_reuses_generate_tables(tmp_path, capsys):
    """Audio input whose generate table is in the output folder: read, not embedded again (BirdNET)."""
    from helpers import require_birdnet_model

    require_birdnet_model()
    t = np.arange(int(3.5 * RATE)) / RATE
    clip = tmp_path / "rec.wav"
    sf.write(str(clip), (0.3 * np.sin(2 * np.pi * 800 * t)).astype(np.float32), RATE)
    out = tmp_path / "out"
    base = ["--model", "birdnet", "--device", "cpu", "--workers", "0"]
    assert run("generate", *base, "--quiet", clip, out) == 0
    _, emb, _ = read_embeddings(out / "rec.embeddings.csv")
    clf = LinearClassifier(np.random.default_rng(1).standard_normal((1024, 2)).astype(np.float32),
                           np.zeros(2, np.float32), ("x", "y"), "birdnet")
    clf.save(tmp_path / "c.json")
    config = tmp_path / "c.yml"
    config.write_text(f"classifiers:\n  - name: c\n    model: {tmp_path / 'c.json'}\n")
    import audio_embeddings.registry as registry

    real = registry.load_backend

    def refuse(*a, **k):
        raise AssertionError("the model was loaded although the embeddings exist")

    registry.load_backend = refuse
    try:
        capsys.readouterr()
        assert run("classify", "-c", config, *base, clip, out) == 0
    finally:
        registry.load_backend = real
    assert "not embedded again" in capsys.readouterr().err
    columns, _ = read_table(out / "rec.classifications.csv")
    np.testing.assert_allclose(columns["score"].reshape(-1, 2), clf.scores(emb), rtol=1e-6)
