"""``perch_runner.py search``: a query cut from one recording of a folder finds that recording's
window first, whatever the corpus is (audio embedded on the way, tables, a store, a hoplite database),
exactly or through usearch; the results read in pandas and in scipy's loadmat."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.runner.cli import main
from audio_embeddings.runner.search import TopK, block_distances, candidate_distances, candidate_rows

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
        info = json.loads((out / "search_results.csv.json").read_text())["index_info"]
        if index == "exact":
            assert info is None
            continue
        # mip on a hoplite database: its own usearch.index (consistent with it); else ours, built once
        owner = "hoplite" if kind == "hoplite" and metric == "mip" else "search"
        assert info["owner"] == owner and info["state"] == ("reused" if owner == "hoplite" else "built"), info
        assert run("search", *BIRDNET, "--top-k", "2", "--metric", metric, "--index", index, query, target, out) == 0
        again = json.loads((out / "search_results.csv.json").read_text())["index_info"]
        assert again["state"] == "reused" and results(out) == rows
    stamp = (corpus / "db" / "hoplite.sqlite").stat().st_mtime_ns, (corpus / "db" / "usearch.index").stat().st_mtime_ns
    assert stamp == ((corpus / "db" / "hoplite.sqlite").stat().st_mtime_ns,
                     (corpus / "db" / "usearch.index").stat().st_mtime_ns)  # searching never writes the database


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


def reference(q, x, metric):
    """Plain float64 numpy, one row at a time."""
    q, x = np.asarray(q, np.float64), np.asarray(x, np.float64)
    if metric == "euclidean":
        return np.array([[np.sqrt(np.sum((a - b) ** 2)) for b in x] for a in q])
    if metric == "mip":
        return np.array([[-np.dot(a, b) for b in x] for a in q])
    return np.array([[np.clip(1 - np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), 0, 2) for b in x]
                     for a in q])


@pytest.mark.parametrize("metric", ["cosine", "mip", "euclidean"])
def test_float32_block_distances_and_float64_candidates(metric):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((4, 64)).astype(np.float32)
    x = np.abs(rng.standard_normal((50, 64))).astype(np.float32)
    ref = reference(q, x, metric)
    d32 = block_distances(q, x, metric)
    assert d32.dtype == np.float32 and d32.shape == (4, 50)
    np.testing.assert_allclose(d32, ref, rtol=1e-4, atol=1e-4)
    rows = candidate_rows(d32, 3)
    assert rows.shape == (4, 14)
    for i in range(4):  # the candidates hold the true best 3
        assert set(np.argsort(ref[i], kind="stable")[:3]) <= set(rows[i].tolist())
    np.testing.assert_allclose(candidate_distances(q, x, rows, metric), np.take_along_axis(ref, rows, axis=1),
                               rtol=1e-12, atol=1e-12)


# -- lazily read corpora: a store and a folder of tables, against plain numpy -----------------


def synthetic(n_recordings, seed, dim=24):
    """Recordings of 1..9 windows; rec001 repeats rec000's rows (ties: the earlier row ranks first)."""
    rng = np.random.default_rng(seed)
    recs = {}
    for r in range(n_recordings):
        recs[f"rec{r:03d}"] = np.abs(rng.standard_normal((int(rng.integers(1, 10)), dim))).astype(np.float32)
    recs["rec001"] = recs["rec000"].copy()
    return recs


def write_store(path, recs, *, hop_s=1.5):
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["model_name"] = "birdnet"
        f.attrs["window_s"] = 3.0
        f.attrs["frame_stride_s"] = hop_s
        for key, emb in recs.items():
            f.create_dataset(f"embeddings/{key}", data=emb)
            f.create_dataset(f"time_axis/{key}", data=np.arange(len(emb)) * hop_s)
            f[f"embeddings/{key}"].attrs["source_path"] = f"{key}.wav"
    return path


def write_tables(folder, recs, fmt="parquet", hop_s=1.5):
    from audio_embeddings.runner.tables import write_table

    folder.mkdir(parents=True, exist_ok=True)
    for key, emb in recs.items():
        t = np.arange(len(emb)) * hop_s
        write_table(folder / f"{key}.embeddings.{fmt}", {"source": [f"{key}.wav"] * len(emb), "start": t,
                                                         "end": t + 3.0, "embedding": emb},
                    {"model": "birdnet", "window_s": 3.0, "hop_s": hop_s})
    return folder


def flat(recs, hop_s=1.5):
    x = np.concatenate(list(recs.values()))
    names = [(f"{k}.wav", i * hop_s, i * hop_s + 3.0) for k, e in recs.items() for i in range(len(e))]
    return x, names


@pytest.mark.parametrize("kind", ["store", "tables"])
def test_lazy_blocks_are_the_corpus_in_order_and_never_over_the_block_size(kind, tmp_path):
    from audio_embeddings.runner.search import open_corpus
    from audio_embeddings.runner.sources import read_items

    recs = synthetic(30, 2)
    path = write_store(tmp_path / "c.h5", recs) if kind == "store" else write_tables(tmp_path / "t", recs)
    x, names = flat(recs)
    for block in (1, 7, 16, 1000):
        source = open_corpus(path, block=block)
        assert source.kind == kind
        got, described = [], []
        for blk in source.blocks():
            assert 0 < blk.embeddings.shape[0] <= block and blk.embeddings.dtype == np.float32
            got.append(blk.embeddings)
            described += blk.describe(range(blk.embeddings.shape[0]))
        assert all(b.shape[0] == block for b in got[:-1])  # full blocks: recordings straddle them
        np.testing.assert_array_equal(np.concatenate(got), x)
        assert described == names and source.n_windows == len(x)
    # what classify and distance read is unchanged: every recording whole, in the same order
    _, items = read_items(path)
    assert [i.source for i in items] == [f"{k}.wav" for k in recs]
    np.testing.assert_array_equal(np.concatenate([i.embeddings for i in items]), x)


@pytest.mark.parametrize("metric", ["cosine", "mip", "euclidean"])
@pytest.mark.parametrize("kind", ["store", "tables"])
def test_lazy_exact_search_equals_brute_force(kind, metric, tmp_path):
    from audio_embeddings.runner.search import exact_search, open_corpus

    recs = synthetic(25, 3)
    path = write_store(tmp_path / "c.h5", recs) if kind == "store" else write_tables(tmp_path / "t", recs, fmt="csv")
    x, names = flat(recs)
    rng = np.random.default_rng(4)
    q = np.concatenate([x[[0, 5, 40]] + 0.01 * rng.standard_normal((3, x.shape[1])), rng.random((2, x.shape[1]))])
    q = q.astype(np.float32)
    ref = reference(q, x, metric)
    for block in (5, 64, 4096):
        dist, named = exact_search(open_corpus(path, block=block), q, top_k=6, metric=metric)
        assert dist.shape == (5, 6)
        for i in range(5):
            order = np.lexsort((np.arange(len(x)), ref[i]))[:6]  # ties: the earlier row first
            np.testing.assert_allclose(dist[i], ref[i][order], rtol=1e-10, atol=1e-12)
            assert named[i] == [names[j] for j in order], (block, i)
    # rec001 repeats rec000: an exact query of rec000's first row ties the two; rec000 ranks first
    dist, named = exact_search(open_corpus(path, block=3), x[:1], top_k=2, metric=metric)
    assert [n[0] for n in named[0]] == ["rec000.wav", "rec001.wav"] and dist[0, 0] == dist[0, 1]


def query_table(path, q):
    from audio_embeddings.runner.tables import write_table

    write_table(path, {"source": ["q.wav"] * len(q), "start": np.arange(len(q)) * 3.0,
                       "end": np.arange(len(q)) * 3.0 + 3.0, "embedding": np.asarray(q, np.float32)},
                {"model": "birdnet", "window_s": 3.0})
    return path


def provenance(out):
    return json.loads((out / "search_results.csv.json").read_text())


@pytest.mark.parametrize("kind", ["store", "tables"])
def test_the_usearch_index_is_persisted_reused_and_never_stale(kind, tmp_path, capsys):
    import os

    pytest.importorskip("usearch")
    recs = synthetic(40, 5)
    corpus = write_store(tmp_path / "c.h5", recs) if kind == "store" else write_tables(tmp_path / "t", recs)
    x, names = flat(recs)
    qt = query_table(tmp_path / "q.parquet", x[[30, 50, 100]])
    out = tmp_path / "out"
    argv = ["search", "--top-k", "3", "--index", "usearch", qt, corpus, out]
    assert run(*argv) == 0
    info = provenance(out)["index_info"]
    assert info["state"] == "built" and info["owner"] == "search" and info["reason"] == "no index there yet"
    assert info["path"] == str(out / "corpus.usearch") and info["vectors"] == len(x)
    for suffix in ("", ".json", ".rows.npy", ".names.npy"):
        assert (out / f"corpus.usearch{suffix}").is_file()
    first = results(out)
    best = [(r["source"], float(r["start"])) for r in first if r["rank"] == "1"]
    assert best == [names[i][:2] for i in (30, 50, 100)]
    assert "building the usearch index" in capsys.readouterr().err
    stamp = (out / "corpus.usearch").stat().st_mtime_ns

    assert run(*argv) == 0  # the same corpus: the saved index, memory-mapped
    assert provenance(out)["index_info"]["state"] == "reused" and results(out) == first
    assert (out / "corpus.usearch").stat().st_mtime_ns == stamp

    # a corpus file changes (same size, new contents): rebuilt, never answered from the stale index
    changed = dict(recs)
    changed["rec010"] = (recs["rec010"][::-1] + 1.0).astype(np.float32)
    if kind == "store":
        write_store(corpus, changed)
    else:
        write_tables(corpus, {"rec010": changed["rec010"]})
        target = corpus / "rec010.embeddings.parquet"
        os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**6))
    qt2 = query_table(tmp_path / "q2.parquet", changed["rec010"][:1])
    assert run("search", "--top-k", "3", "--index", "usearch", qt2, corpus, out) == 0
    info = provenance(out)["index_info"]
    assert info["state"] == "built" and info["reason"].startswith("the corpus changed"), info
    assert results(out)[0]["source"] == "rec010.wav" and float(results(out)[0]["start"]) == 0.0
    # another metric: its own build (the fingerprint records the metric)
    assert run("search", "--top-k", "3", "--index", "usearch", "--metric", "euclidean", qt2, corpus, out) == 0
    assert "metric" in provenance(out)["index_info"]["reason"]


def test_an_index_path_of_ones_choosing(tmp_path):
    pytest.importorskip("usearch")
    from audio_embeddings.runner.search import open_corpus
    from audio_embeddings.runner.search_index import usearch_search

    recs = synthetic(12, 6)
    store = write_store(tmp_path / "c.h5", recs)
    x, names = flat(recs)
    where = tmp_path / "indexes" / "birds.usearch"
    dist, named, info = usearch_search(open_corpus(store), x[[7]], top_k=2, metric="cosine", index_path=where)
    assert info["state"] == "built" and info["path"] == str(where) and named[0][0] == names[7]
    dist, named, info = usearch_search(open_corpus(store), x[[7]], top_k=2, metric="cosine", index_path=where)
    assert info["state"] == "reused" and named[0][0] == names[7] and dist[0, 0] < 1e-3
    # a torn index file (changed after its fingerprint was written) is rebuilt
    where.write_bytes(where.read_bytes())
    assert usearch_search(open_corpus(store), x[[7]], top_k=2, metric="cosine",
                          index_path=where)[2]["reason"] == "the index file changed since it was built"
    # the command line's --index-path: another output folder reuses the index kept there
    qt = query_table(tmp_path / "q.parquet", x[[7]])
    assert run("search", "--top-k", "2", "--index", "usearch", "--index-path", where, qt, store,
               tmp_path / "out") == 0
    info = provenance(tmp_path / "out")["index_info"]
    assert info["state"] == "reused" and info["path"] == str(where)
    assert not (tmp_path / "out" / "corpus.usearch").exists()


def test_the_streamed_store_reader_reads_what_it_did(tmp_path):
    """Nested keys, float16 data, a missing time axis (starts from the stride), ``duration_s``
    clipping the last window's end, ``source_path``, and a dataset that is not [T, D]."""
    import h5py

    from audio_embeddings.runner.sources import SourceError, iter_store_items, read_store_items

    path = tmp_path / "s.h5"
    a = np.arange(12, dtype=np.float16).reshape(3, 4)
    with h5py.File(path, "w") as f:
        f.attrs.update({"model_name": b"birdnet", "window_s": 3.0, "frame_stride_s": 1.0, "sample_rate_hz": 48000})
        f.create_dataset("embeddings/site1/a.wav", data=a)
        f["embeddings/site1/a.wav"].attrs["duration_s"] = 4.5
        f["embeddings/site1/a.wav"].attrs["source_path"] = "/data/site1/a.wav"
        f.create_dataset("time_axis/site1/a.wav", data=[0.0, 1.0, 2.0])
        f.create_dataset("embeddings/b.wav", data=np.ones((2, 4), np.float32))
    items = read_store_items(path)
    assert [i.key for i in items] == ["b.wav", "site1/a.wav"] == [i.key for i in iter_store_items(path)]
    b, s = items
    assert b.source == "b.wav" and b.time_axis_s.tolist() == [0.0, 1.0] and b.ends_s.tolist() == [3.0, 4.0]
    assert s.source == "/data/site1/a.wav" and s.embeddings.dtype == np.float32
    np.testing.assert_array_equal(s.embeddings, a.astype(np.float32))
    assert s.ends_s.tolist() == [3.0, 4.0, 4.5] and s.facts["model"] == "birdnet" and s.facts["sample_rate_hz"] == 48000
    with h5py.File(path, "a") as f:
        f.create_dataset("embeddings/c.wav", data=np.ones(4, np.float32))
    with pytest.raises(SourceError, match=r"not \[T, D\]"):
        read_store_items(path)
