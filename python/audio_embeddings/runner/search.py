"""``search``: the windows of a corpus nearest to one or more query clips, ranked.

``QUERY`` is an audio clip, a folder of clips, or an embeddings table (each row a query); each
window of a clip is a query (``query`` id ``<clip>#<window>``), or with ``--query-mean`` the clip's
mean embedding is one query (``<clip>``). ``CORPUS`` is a folder of runner tables (ours or
perch-runner's), an HDF5 store, a perch-hoplite database, or a folder of recordings, which is
embedded on the way into ``OUTPUT_DIR/corpus_embeddings/`` by ``generate`` (resumable: a rerun embeds
only what is missing).

Exact search (default) streams the corpus in blocks of ``block`` windows and keeps each query's
``top_k`` best, so memory is ``block x D`` floats plus ``queries x top_k`` results whatever the corpus
size. ``--index usearch`` builds an approximate HNSW index with usearch (what perch-hoplite uses) in
memory, vectors as float16, for corpora of millions of windows (``benchmarks/bench_search.py``
measures both).

Distances: ``cosine`` = 1 - cosine similarity, ``euclidean`` = L2, ``mip`` (maximum inner product,
hoplite's ``dot`` score) = minus the inner product. Rank 1 is the smallest distance.

Outputs: ``search_results.csv`` (``rank, query, source, start, end, distance``), plain for
``pandas.read_csv``, its provenance in ``search_results.csv.json``, and ``search_results.mat`` with
the same columns for MATLAB (``rank``, ``start``, ``end``, ``distance`` double [N x 1];
``source_index``, ``query_index`` int [N x 1], 1-based into ``sources`` and ``queries``, which are
newline-separated char rows: ``strsplit(S.sources, newline)``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

METRICS = ("cosine", "euclidean", "mip")
INDEXES = ("exact", "usearch")
BLOCK = 16384
RESULTS = "search_results"


class SearchError(ValueError):
    """A search that cannot run (the message says why)."""


# -- scoring ---------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.sum(x * x, axis=1, keepdims=True))
    return x / np.where(n > 0, n, 1.0)


def block_distances(queries: np.ndarray, block: np.ndarray, metric: str) -> np.ndarray:
    """Distances float64 [Q, B] of queries [Q, D] to corpus rows [B, D] (see the module notes)."""
    q = np.asarray(queries, dtype=np.float64)
    x = np.asarray(block, dtype=np.float64)
    if metric == "cosine":
        return np.clip(1.0 - _unit(q) @ _unit(x).T, 0.0, 2.0)
    if metric == "mip":
        return -(q @ x.T)
    if metric == "euclidean":
        d2 = np.sum(q * q, axis=1)[:, None] + np.sum(x * x, axis=1)[None, :] - 2.0 * (q @ x.T)
        return np.sqrt(np.maximum(d2, 0.0))
    raise SearchError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


@dataclass
class TopK:
    """Each query's ``k`` smallest distances so far, and where they are (block, row)."""

    n_queries: int
    k: int
    dist: np.ndarray = field(init=False)
    block: np.ndarray = field(init=False)
    row: np.ndarray = field(init=False)

    def __post_init__(self):
        self.dist = np.full((self.n_queries, 0), np.inf)
        self.block = np.zeros((self.n_queries, 0), np.int64)
        self.row = np.zeros((self.n_queries, 0), np.int64)

    def update(self, d: np.ndarray, block_id: int) -> None:
        """Merge distances [Q, B] of one block."""
        b = d.shape[1]
        if b == 0:
            return
        take = min(self.k, b)
        idx = np.argpartition(d, take - 1, axis=1)[:, :take] if take < b else np.tile(np.arange(b), (d.shape[0], 1))
        cand = np.take_along_axis(d, idx, axis=1)
        dist = np.concatenate([self.dist, cand], axis=1)
        block = np.concatenate([self.block, np.full(idx.shape, block_id, np.int64)], axis=1)
        row = np.concatenate([self.row, idx.astype(np.int64)], axis=1)
        order = np.lexsort((row, block, dist), axis=1)[:, :self.k]
        self.dist = np.take_along_axis(dist, order, axis=1)
        self.block = np.take_along_axis(block, order, axis=1)
        self.row = np.take_along_axis(row, order, axis=1)


# -- the corpus as blocks ---------------------------------------------------------------------


@dataclass
class Block:
    """Corpus rows: embeddings float32 [B, D] and how to name them."""

    embeddings: np.ndarray
    describe: Callable[[np.ndarray], list[tuple[str, float, float]]]


@dataclass
class CorpusSource:
    """A corpus that can be read block by block."""

    kind: str
    path: str
    facts: dict[str, Any]
    blocks: Callable[[], Iterator[Block]]
    n_windows: int
    fingerprint: str


def _items_corpus(kind: str, path: str, items: Sequence[Any], block: int) -> CorpusSource:
    from .sources import common_facts

    facts = common_facts(list(items), path)

    def blocks() -> Iterator[Block]:
        buf: list[Any] = []
        rows = 0
        for item in items:
            buf.append(item)
            rows += item.embeddings.shape[0]
            if rows >= block:
                yield _join(buf)
                buf, rows = [], 0
        if buf:
            yield _join(buf)

    n = sum(int(i.embeddings.shape[0]) for i in items)
    digest = hashlib.sha256(json.dumps([(i.source, int(i.embeddings.shape[0])) for i in items]).encode()).hexdigest()
    return CorpusSource(kind, path, facts, blocks, n, digest)


def _join(items: Sequence[Any]) -> Block:
    emb = np.concatenate([np.asarray(i.embeddings, dtype=np.float32) for i in items], axis=0) if items else \
        np.zeros((0, 0), np.float32)
    sources = [i.source for i in items for _ in range(i.embeddings.shape[0])]
    starts = np.concatenate([np.asarray(i.time_axis_s, np.float64) for i in items]) if items else np.zeros(0)
    ends = np.concatenate([np.asarray(i.ends_s, np.float64) for i in items]) if items else np.zeros(0)

    def describe(rows: np.ndarray) -> list[tuple[str, float, float]]:
        return [(sources[r], float(starts[r]), float(ends[r])) for r in rows]

    return Block(emb, describe)


def _hoplite_corpus(path: str, block: int) -> CorpusSource:
    from ..outputs.hoplite import describe_windows, iter_blocks, open_hoplite, read_model_config
    from .sources import hoplite_facts

    db = open_hoplite(path)
    facts = hoplite_facts(read_model_config(db), int(db.get_embedding_dim()))
    n = int(db.count_embeddings())
    digest = hashlib.sha256(f"{Path(path).resolve()}:{n}:{(Path(path) / 'usearch.index').stat().st_mtime_ns}"
                            .encode()).hexdigest()

    def blocks() -> Iterator[Block]:
        for ids, emb in iter_blocks(db, block=block):
            yield Block(emb, lambda rows, ids=ids: [describe_windows(db, [int(ids[r])])[int(ids[r])] for r in rows])

    return CorpusSource("hoplite", path, facts, blocks, n, digest)


def open_corpus(corpus: str | Path, *, block: int = BLOCK) -> CorpusSource | None:
    """The corpus as blocks, or None when it is audio (to embed first)."""
    from .sources import SourceError, kind_of, read_items

    kind = kind_of(corpus)
    if kind is None:
        return None
    try:
        if kind == "hoplite":
            return _hoplite_corpus(str(corpus), block)
        kind, items = read_items(corpus)
    except SourceError as exc:
        raise SearchError(str(exc)) from None
    return _items_corpus(kind, str(corpus), items, block)


# -- queries ----------------------------------------------------------------------------------


@dataclass
class Queries:
    """Query vectors [Q, D] and their ids."""

    vectors: np.ndarray
    ids: list[str]
    info: list[dict[str, Any]]


def _query_files(query: Path) -> list[Path]:
    from ..corpus.discover import walk_directory

    if query.is_dir():
        files = walk_directory(query)
        if not files:
            files = sorted(p for p in query.rglob("*") if p.suffix.lower() in (".csv", ".parquet"))
        return files
    return [query]


def load_queries(query: str | Path, *, backend_factory: Callable[[], Any], mean: bool) -> Queries:
    """Query vectors of clips (each window, or their mean) or of embeddings tables (each row)."""
    from .. import audio
    from ..pipeline import embed_audio
    from .tables import TableError, read_embeddings

    files = _query_files(Path(query))
    if not files:
        raise SearchError(f"{query}: no query clips or tables found")
    vectors, ids, info = [], [], []
    backend = None
    for f in files:
        name = f.name
        if f.suffix.lower() in (".csv", ".parquet"):
            try:
                _, emb, _ = read_embeddings(f)
            except (TableError, OSError) as exc:
                raise SearchError(f"query {f}: {exc}") from None
            rows = emb
        else:
            backend = backend or backend_factory()
            try:
                clip = audio.load(f, sample_rate_hz=int(backend.sample_rate_hz), resampler=backend.resampler)
            except audio.AudioError as exc:
                raise SearchError(f"query {exc}") from None
            rows = embed_audio(backend, clip, batch_size=4).embeddings
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise SearchError(f"query {f}: no windows (too short for the model?)")
        if mean:
            vectors.append(rows.mean(axis=0, dtype=np.float64).astype(np.float32)[None])
            ids.append(name)
            info.append({"query": name, "path": str(f), "windows": int(rows.shape[0]), "mean": True})
        else:
            vectors.append(rows)
            for i in range(rows.shape[0]):
                ids.append(f"{name}#{i}")
                info.append({"query": f"{name}#{i}", "path": str(f), "window": i})
    return Queries(np.concatenate(vectors, axis=0), ids, info)


# -- search -----------------------------------------------------------------------------------


def exact_search(corpus: CorpusSource, queries: np.ndarray, *, top_k: int, metric: str
                 ) -> tuple[np.ndarray, list[list[tuple[str, float, float]]]]:
    """Streamed exact search: (distances [Q, k'], [(source, start, end)] per query)."""
    top = TopK(queries.shape[0], top_k)
    describers: list[Callable] = []
    for i, blk in enumerate(corpus.blocks()):
        if blk.embeddings.shape[0] == 0:
            describers.append(blk.describe)
            continue
        if blk.embeddings.shape[1] != queries.shape[1]:
            raise SearchError(f"corpus {corpus.path}: {blk.embeddings.shape[1]}-d embeddings, the queries are "
                              f"{queries.shape[1]}-d (another model?)")
        top.update(block_distances(queries, blk.embeddings, metric), i)
        # keep only what naming the winners needs: the describers of blocks that hold one
        describers.append(blk.describe)
        keep = set(np.unique(top.block).tolist())
        describers = [d if j in keep else None for j, d in enumerate(describers)]
    named = []
    for q in range(queries.shape[0]):
        named.append([describers[b]([r])[0] for b, r in zip(top.block[q], top.row[q])])
    return top.dist, named


USEARCH_METRICS = {"cosine": "cos", "euclidean": "l2sq", "mip": "ip"}


def _from_usearch(d: np.ndarray, metric: str) -> np.ndarray:
    """usearch's distances in ours: ``cos`` is 1 - cos already, ``l2sq`` squared L2, ``ip`` 1 - inner product."""
    d = np.asarray(d, dtype=np.float64)
    if metric == "euclidean":
        return np.sqrt(np.maximum(d, 0.0))
    if metric == "mip":
        return d - 1.0
    return d


def usearch_search(corpus: CorpusSource, queries: np.ndarray, *, top_k: int, metric: str,
                   dtype: str = "f16", expansion_search: int = 128) -> tuple[np.ndarray, list[list]]:
    """Approximate search with a usearch HNSW index built over the corpus (in memory).

    The vectors are stored as ``dtype`` (``f16`` like hoplite's store: half the memory of float32);
    distances are usearch's on those vectors, in this module's units.
    """
    try:
        from usearch.index import Index
    except ImportError:
        raise SearchError("--index usearch needs the usearch package (pip install usearch)") from None
    dim = int(queries.shape[1])
    index = Index(ndim=dim, metric=USEARCH_METRICS[metric], dtype=dtype, expansion_search=expansion_search)
    offsets, describers = [], []
    start = 0
    for blk in corpus.blocks():
        n = blk.embeddings.shape[0]
        if n:
            if blk.embeddings.shape[1] != dim:
                raise SearchError(f"corpus {corpus.path}: {blk.embeddings.shape[1]}-d embeddings, the queries are "
                                  f"{dim}-d (another model?)")
            index.add(np.arange(start, start + n, dtype=np.uint64), np.ascontiguousarray(blk.embeddings,
                                                                                         dtype=np.float32))
        offsets.append(start)
        describers.append(blk.describe)
        start += n
    if start == 0:
        return np.zeros((queries.shape[0], 0)), [[] for _ in range(queries.shape[0])]
    matches = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(top_k, start))
    keys = np.asarray(matches.keys, dtype=np.int64).reshape(queries.shape[0], -1)
    dist = _from_usearch(np.asarray(matches.distances).reshape(queries.shape[0], -1), metric)
    offs = np.asarray(offsets, dtype=np.int64)
    named = []
    for q in range(queries.shape[0]):
        valid = (keys[q] >= 0) & (keys[q] < start)
        dist[q, ~valid] = np.inf
        rows = []
        for key, ok in zip(keys[q], valid):
            if not ok:
                rows.append(("", np.nan, np.nan))
                continue
            b = int(np.searchsorted(offs, key, side="right") - 1)
            rows.append(describers[b]([int(key - offs[b])])[0])
        named.append(rows)
    return dist, named


# -- the command ------------------------------------------------------------------------------


def results_table(queries: Queries, dist: np.ndarray, named: list[list[tuple[str, float, float]]]
                  ) -> dict[str, np.ndarray]:
    """Columns of the ranked table: ``rank, query, source, start, end, distance``."""
    rank, query, source, start, end, distance = [], [], [], [], [], []
    for q, rows in enumerate(named):
        for r, (src, s, e) in enumerate(rows):
            if not np.isfinite(dist[q, r]):
                continue
            rank.append(r + 1)
            query.append(queries.ids[q])
            source.append(src)
            start.append(s)
            end.append(e)
            distance.append(float(dist[q, r]))
    return {"rank": np.array(rank, dtype=np.int64), "query": np.array(query, dtype=object),
            "source": np.array(source, dtype=object), "start": np.array(start, dtype=np.float64),
            "end": np.array(end, dtype=np.float64), "distance": np.array(distance, dtype=np.float64)}


def write_results(output_dir: Path, columns: dict[str, np.ndarray], provenance: dict[str, Any]) -> dict[str, Path]:
    """``search_results.csv`` (+ ``.csv.json``) and ``search_results.mat``."""
    import csv

    from ..outputs.atomic import atomic_path, write_text_atomic
    from ..outputs.matfile import write_mat

    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / f"{RESULTS}.csv"
    write_text_atomic(csv_path.with_name(csv_path.name + ".json"),
                      json.dumps(provenance, indent=1, default=str) + "\n")
    with atomic_path(csv_path, suffix=".csv") as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(list(columns))
        for row in zip(*(columns[c] for c in columns)):
            w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else str(v) for v in row])
    sources = list(dict.fromkeys(columns["source"].tolist()))
    queries = list(dict.fromkeys(columns["query"].tolist()))
    s_index = {s: i + 1 for i, s in enumerate(sources)}
    q_index = {q: i + 1 for i, q in enumerate(queries)}
    mat_path = write_mat(output_dir / f"{RESULTS}.mat", {
        "rank": columns["rank"].astype(np.float64),
        "query_index": np.array([q_index[q] for q in columns["query"]], dtype=np.int32),
        "source_index": np.array([s_index[s] for s in columns["source"]], dtype=np.int32),
        "start": columns["start"], "end": columns["end"], "distance": columns["distance"],
        "queries": "\n".join(queries), "sources": "\n".join(sources),
        "metric": str(provenance.get("metric", "")),
    })
    return {"csv": csv_path, "mat": mat_path}


def run_search(query: str, corpus: str, output_dir: str | Path, settings: Any, *, top_k: int = 10,
               metric: str = "cosine", query_mean: bool = False, index: str = "exact", block: int = BLOCK) -> int:
    """The ``search`` command; returns the exit status."""
    from dataclasses import replace

    from .commands import EXIT_OK, UsageError, jsonable, load_model, run_table_command, versions

    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if index not in INDEXES:
        raise UsageError(f"unknown index {index!r}; choose from {', '.join(INDEXES)}")
    if top_k < 1:
        raise UsageError("--top-k must be >= 1")
    out = Path(output_dir)
    try:
        source = open_corpus(corpus, block=block)
        embedded_dir = None
        if source is None:  # audio: embed it (resumably) with generate, then search the tables
            embedded_dir = out / "corpus_embeddings"
            status = run_table_command("generate", corpus, embedded_dir, replace(settings, fmt=settings.fmt or "parquet"))
            if status not in (0, 1):
                return status
            source = open_corpus(embedded_dir, block=block)
            if source is None:
                raise UsageError(f"{corpus}: nothing could be embedded")
        model = settings.model or settings.config.model or source.facts.get("model_spec") or source.facts.get("model")

        def factory() -> Any:
            if not model:
                raise UsageError(f"{corpus}: the corpus does not record its model; give --model to embed the query")
            return load_model(replace(settings, model=model))

        queries = load_queries(query, backend_factory=factory, mean=query_mean)
        dim = source.facts.get("embedding_dim")
        if dim and queries.vectors.shape[1] != int(dim):
            raise UsageError(f"the queries are {queries.vectors.shape[1]}-d, the corpus {dim}-d (another model?)")
        if index == "exact":
            dist, named = exact_search(source, queries.vectors, top_k=top_k, metric=metric)
        else:
            dist, named = usearch_search(source, queries.vectors, top_k=top_k, metric=metric)
    except SearchError as exc:
        raise UsageError(str(exc)) from None
    columns = results_table(queries, dist, named)
    provenance = jsonable({
        "format": "audio_embeddings search results", "command": "search", "query": str(query), "corpus": str(corpus),
        "corpus_kind": source.kind, "corpus_windows": source.n_windows, "embedded_into": str(embedded_dir) if
        embedded_dir else None, "model": source.facts.get("model"), "embedding_dim": source.facts.get("embedding_dim"),
        "metric": metric, "distance": {"cosine": "1 - cosine similarity", "euclidean": "L2 distance",
                                       "mip": "minus the inner product (maximum inner product search)"}[metric],
        "index": index, "top_k": top_k, "query_mean": query_mean, "queries": queries.info,
        "columns": {"rank": "1 = nearest", "query": "query id: <clip>#<window> (or <clip> with --query-mean)",
                    "source": "the corpus recording", "start": "window start, s", "end": "window end, s",
                    "distance": "see distance"},
        "versions": versions(), "command_line": settings.argv})
    written = write_results(out, columns, provenance)
    if not settings.quiet:
        print(f"search: {len(queries.ids)} quer{'y' if len(queries.ids) == 1 else 'ies'} over {source.n_windows} "
              f"windows ({index}, {metric}) -> {written['csv']}, {written['mat']}", file=sys.stderr)
    return EXIT_OK
