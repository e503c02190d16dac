"""``perch_runner.py search``: a query cut from one recording of a folder finds that recording's
window first, whatever the corpus is (audio embedded on the way, tables, a store, a hoplite database),
exactly or through usearch; the results read in pandas and in scipy's loadmat."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.runner.cli import main
from audio_embeddings.runner.search import TopK, block_distances

RATE = 48000
BIRDNET = ["--model", "birdnet", "--device", "cpu", "--workers", "0", "--quiet"]


def run(*argv) -> int:
    return main([str(a) for a in argv])


def sound(kind, seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "noise":
        return (0.2 * rng.standard_normal(t.size)).astype(np.float32)
    f = {"low": 500, "mid": 1800, "high": 4200}[kind] * (1 + 0.02 * np.sin(2 * np.pi * 3 * t))
    return (0.3 * np.sin(2 * np.pi * np.cumsum(f) / RATE) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    from helpers import require_birdnet_model

    require_birdnet_model()
    root = tmp_path_factory.mktemp("search")
    folder = root / "recordings"
    folder.mkdir()
    sf.write(str(folder / "one.wav"), np.concatenate([sound("low", 3, 1), sound("noise", 3, 2)]), RATE)
    sf.write(str(folder / "two.wav"), np.concatenate([sound("mid", 3, 3), sound("high", 3, 4), sound("low", 3, 5)]),
             RATE)
    sf.write(str(folder / "three.wav"), np.concatenate([sound("noise", 3, 6), sound("mid", 3, 7)]), RATE)
    samples, _ = sf.read(str(folder / "two.wav"), dtype="float32")
    query = root / "query.wav"
    sf.write(str(query), samples[3 * RATE:6 * RATE], RATE)  # two.wav's second window (the high tone)
    return root, folder, query


def results(out):
    import csv

    with (out / "search_results.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_search_a_folder_of_recordings(recordings):
    root, folder, query = recordings
    out = root / "out"
    assert run("search", *BIRDNET, "--top-k", "3", query, folder, out) == 0
    rows = results(out)
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and rows[0]["query"] == "query.wav#0"
    assert rows[0]["source"] == "two.wav" and float(rows[0]["start"]) == 3.0 and float(rows[0]["end"]) == 6.0
    assert float(rows[0]["distance"]) < 1e-6 < float(rows[1]["distance"])
    assert list(rows[0]) == ["rank", "query", "source", "start", "end", "distance"]
    pd = pytest.importorskip("pandas")
    assert list(pd.read_csv(out / "search_results.csv").columns) == list(rows[0])
    from scipy.io import loadmat

    mat = loadmat(out / "search_results.mat")
    assert mat["rank"].shape == (3, 1) and mat["distance"][0, 0] < 1e-6
    sources = str(mat["sources"][0]).split("\n")
    assert sources[int(mat["source_index"][0, 0]) - 1] == "two.wav"
    provenance = json.loads((out / "search_results.csv.json").read_text())
    assert provenance["corpus_kind"] == "tables" and provenance["corpus_windows"] == 7
    # the corpus was embedded into OUTPUT_DIR/corpus_embeddings; a rerun embeds nothing
    tables = sorted(p.name for p in (out / "corpus_embeddings").glob("*.parquet"))
    assert tables == ["one.embeddings.parquet", "three.embeddings.parquet", "two.embeddings.parquet"]
    stamp = (out / "corpus_embeddings" / "two.embeddings.parquet").stat().st_mtime_ns
    assert run("search", *BIRDNET, "--top-k", "3", "--metric", "euclidean", query, folder, out) == 0
    assert (out / "corpus_embeddings" / "two.embeddings.parquet").stat().st_mtime_ns == stamp
    assert json.loads((out / "corpus_embeddings" / "summary.json").read_text())["files_skipped"] == 3
    assert results(out)[0]["source"] == "two.wav"


@pytest.mark.parametrize("index", ["exact", "usearch"])
@pytest.mark.parametrize("metric", ["cosine", "mip", "euclidean"])
def test_search_tables_store_and_hoplite(recordings, index, metric, tmp_path):
    pytest.importorskip("usearch")
    root, folder, query = recordings
    corpus = root / "corpus"
    if not (corpus / "db").exists():
        assert run("generate", *BIRDNET, "--hoplite-db", corpus / "db", folder, corpus / "tables") == 0
    for kind, target in (("tables", corpus / "tables"), ("hoplite", corpus / "db")):
        out = tmp_path / kind
        assert run("search", *BIRDNET, "--top-k", "2", "--metric", metric, "--index", index, query, target, out) == 0
        rows = results(out)
        assert rows[0]["source"] == "two.wav" and float(rows[0]["start"]) == 3.0, (kind, rows)
        assert len(rows) == 2


def test_query_mean_and_a_table_query(recordings, tmp_path):
    root, folder, query = recordings
    corpus = root / "corpus_q"
    assert run("generate", *BIRDNET, folder, corpus) == 0
    two = corpus / "two.embeddings.csv"
    # a table as the query: each row a query
    assert run("search", "--quiet", "--top-k", "1", two, corpus, tmp_path / "t") == 0
    rows = results(tmp_path / "t")
    assert [r["query"] for r in rows] == ["two.embeddings.csv#0", "two.embeddings.csv#1", "two.embeddings.csv#2"]
    assert [(r["source"], float(r["start"])) for r in rows] == [("two.wav", 0.0), ("two.wav", 3.0), ("two.wav", 6.0)]
    # a six-second clip, mean of its two windows: one query
    clip = tmp_path / "q6.wav"
    samples, _ = sf.read(str(folder / "two.wav"), dtype="float32")
    sf.write(str(clip), samples[3 * RATE:9 * RATE], RATE)
    assert run("search", *BIRDNET, "--query-mean", "--top-k", "2", clip, corpus, tmp_path / "m") == 0
    rows = results(tmp_path / "m")
    assert {r["query"] for r in rows} == {"q6.wav"} and rows[0]["source"] == "two.wav"


def test_topk_matches_a_full_sort():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 16))
    blocks = [rng.standard_normal((n, 16)) for n in (5, 1, 40, 7)]
    top = TopK(3, 4)
    for i, b in enumerate(blocks):
        top.update(block_distances(q, b, "cosine"), i)
    full = block_distances(q, np.concatenate(blocks), "cosine")
    np.testing.assert_allclose(top.dist, np.sort(full, axis=1)[:, :4])
    x = np.concatenate(blocks)
    np.testing.assert_allclose(block_distances(q, x, "euclidean"),
                               np.linalg.norm(q[:, None] - x[None], axis=2), atol=1e-9)
    np.testing.assert_allclose(block_distances(q, x, "mip"), -(q @ x.T))
