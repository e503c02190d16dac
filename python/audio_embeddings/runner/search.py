"""``search``: the windows of a corpus nearest to one or more query clips, ranked.

``QUERY`` is an audio clip, a folder of clips, or an embeddings table (each row a query); each
window of a clip is a query (``query`` id ``<clip>#<window>``), or with ``--query-mean`` the clip's
mean embedding is one query (``<clip>``). ``CORPUS`` is a folder of runner tables (ours or
perch-runner's), an HDF5 store, a perch-hoplite database, or a folder of recordings, which is
embedded on the way into ``OUTPUT_DIR/corpus_embeddings/`` by ``generate`` (resumable: a rerun embeds
only what is missing).

Exact search (default) streams the corpus in blocks of ``block`` windows (tables and stores read
one recording at a time; hoplite databases in id order), scores each block in float32 and rescores
its best candidates in float64, and keeps each query's ``top_k`` best: memory is ``block x D``
floats plus ``queries x top_k`` results whatever the corpus size.

``--index usearch`` answers through an approximate HNSW index (usearch, what perch-hoplite uses),
vectors as float16. It is built once and saved (``--index-path``, default
``OUTPUT_DIR/corpus.usearch``, with ``corpus.usearch.json``: the corpus' fingerprint, and
``corpus.usearch.rows.npy`` / ``.names.npy``: what each row is); a later search of the same corpus
memory-maps it (``Index.restore(path, view=True)``), and one whose corpus changed (files, sizes,
mtimes, row counts, dimension), or whose metric or vector type differs, rebuilds it, saying why.
A hoplite database's own ``usearch.index`` answers ``--metric mip`` directly (hoplite's ``IP``)
when it holds exactly the database's windows (:mod:`.search_index`). ``benchmarks/bench_search.py`` measures both.

Distances: ``cosine`` = 1 - cosine similarity, ``euclidean`` = L2, ``mip`` (maximum inner product,
hoplite's ``dot`` score) = minus the inner product. Rank 1 is the smallest distance.

Outputs: ``search_results.csv`` (``rank, query, source, start, end, distance``), plain for
``pandas.read_csv``, its provenance in ``search_results.csv.json``, and ``search_results.mat`` with
the same columns for MATLAB (``rank``, ``start``, ``end``, ``distance`` double [N x 1];
``source_index``, ``query_index`` int [N x 1], 1-based into ``sources`` and ``queries``, which are
newline-separated char rows: ``strsplit(S.sources, newline)``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .. import audio
from ..corpus.discover import walk_directory
from ..atomic import atomic_path, write_text_atomic
from ..outputs.hoplite import HOPLITE_INDEX, describe_windows, iter_blocks, open_hoplite, read_model_config
from ..outputs.matfile import write_mat
from ..pipeline import embed_audio
from .classifier import model_family
from .commands import EXIT_OK, UsageError, jsonable, load_model, run_table_command, versions
from .search_corpus import BLOCK, METRICS, Block, CorpusSource, SearchError, check_metric  # noqa: F401 - re-exported
from .search_index import usearch_search
from .sources import SourceError, common_facts, hoplite_facts, iter_store_items, iter_table_items, kind_of, sidecars
from .sources import store_layout, table_files
from .tables import TableError, read_embeddings

INDEXES = ("exact", "usearch")
RESULTS = "search_results"


# -- scoring ---------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.sum(x * x, axis=1, keepdims=True))
    return x / np.where(n > 0, n, 1.0)


def block_distances(queries: np.ndarray, block: np.ndarray, metric: str) -> np.ndarray:
    """Distances of queries to a block of corpus rows, in float32 (one BLAS ``sgemm``).

    Parameters
    ----------
    queries : numpy.ndarray
        float [Q, D].
    block : numpy.ndarray
        float [B, D] corpus rows.
    metric : {"cosine", "euclidean", "mip"}
        See the module notes.

    Returns
    -------
    numpy.ndarray
        float32 [Q, B]. Good to about 1e-6 of the vectors' scale: :func:`exact_search` uses them to
        pick candidates and reports :func:`candidate_distances` (float64) for the ones it keeps.
    """
    check_metric(metric)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    x = np.ascontiguousarray(block, dtype=np.float32)
    dots = q @ x.T
    if metric == "mip":
        return np.negative(dots, out=dots)
    x2 = np.einsum("ij,ij->i", x, x)  # per-row squared norms, no [B, D] temporary
    if metric == "cosine":
        qn = np.sqrt(np.einsum("ij,ij->i", q, q))
        xn = np.sqrt(x2)
        dots /= np.where(qn > 0, qn, 1.0)[:, None]
        dots /= np.where(xn > 0, xn, 1.0)[None, :]
        return np.clip(1.0 - dots, 0.0, 2.0, out=dots)
    d2 = np.einsum("ij,ij->i", q, q)[:, None] + x2[None, :] - 2.0 * dots
    return np.sqrt(np.maximum(d2, 0.0, out=d2), out=d2)


def candidate_distances(queries: np.ndarray, block: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """Distances, in float64, of each query to its own candidate rows of a block.

    Parameters
    ----------
    queries : numpy.ndarray
        float [Q, D].
    block : numpy.ndarray
        float [B, D] corpus rows.
    rows : numpy.ndarray
        int [Q, C]: the rows of ``block`` to score for each query.
    metric : {"cosine", "euclidean", "mip"}

    Returns
    -------
    numpy.ndarray
        float64 [Q, C]; euclidean is computed from the differences (no cancellation).
    """
    check_metric(metric)
    q = np.asarray(queries, dtype=np.float64)
    out = np.empty(rows.shape, dtype=np.float64)
    if rows.size == 0:
        return out
    step = max(1, (32 << 20) // max(1, rows.shape[1] * q.shape[1] * 8))  # ~32 MiB of gathered rows at a time
    for lo in range(0, q.shape[0], step):
        qs = q[lo:lo + step]
        x = np.asarray(block[rows[lo:lo + step]], dtype=np.float64)  # [q, C, D]
        if metric == "euclidean":
            out[lo:lo + step] = np.sqrt(np.einsum("qcd,qcd->qc", x - qs[:, None, :], x - qs[:, None, :]))
            continue
        if metric == "cosine":
            qs = _unit(qs)
            n = np.sqrt(np.einsum("qcd,qcd->qc", x, x))
            dots = np.einsum("qd,qcd->qc", qs, x) / np.where(n > 0, n, 1.0)
            out[lo:lo + step] = np.clip(1.0 - dots, 0.0, 2.0)
        else:
            out[lo:lo + step] = -np.einsum("qd,qcd->qc", qs, x)
    return out


def candidate_rows(distances: np.ndarray, k: int) -> np.ndarray:
    """Each query's ``2k + 8`` smallest of a block's float32 distances (all of them when fewer),
    ties broken by row: int64 [Q, C] row numbers, rescored in float64 afterwards.

    The margin over ``k`` keeps rows whose float32 distance is off by rounding in the running.
    """
    q, b = distances.shape
    take = min(b, 2 * k + 8)
    if take == b:
        return np.tile(np.arange(b, dtype=np.int64), (q, 1))
    idx = np.argpartition(distances, take - 1, axis=1)[:, :take]
    kth = np.take_along_axis(distances, idx, axis=1).max(axis=1)
    tied = np.count_nonzero(distances <= kth[:, None], axis=1) > take  # rows equal to the kth left out
    if tied.any():  # deterministic: the lowest rows among equals
        idx[tied] = np.argsort(distances[tied], axis=1, kind="stable")[:, :take]
    return idx.astype(np.int64, copy=False)


@dataclass
class TopK:
    """Each query's ``k`` smallest distances so far, and where they are (block, row); ties go to
    the earlier block, then the earlier row."""

    n_queries: int
    k: int
    dist: np.ndarray = field(init=False)
    block: np.ndarray = field(init=False)
    row: np.ndarray = field(init=False)

    def __post_init__(self):
        self.dist = np.full((self.n_queries, 0), np.inf)
        self.block = np.zeros((self.n_queries, 0), np.int64)
        self.row = np.zeros((self.n_queries, 0), np.int64)

    def update(self, d: np.ndarray, block_id: int, rows: np.ndarray | None = None) -> None:
        """Merge one block's distances: [Q, B] of all its rows, or [Q, C] of ``rows`` int [Q, C]."""
        if d.shape[1] == 0:
            return
        if rows is None:
            b = d.shape[1]
            take = min(self.k, b)
            idx = np.argpartition(d, take - 1, axis=1)[:, :take] if take < b else \
                np.tile(np.arange(b), (d.shape[0], 1))
            cand = np.take_along_axis(d, idx, axis=1)
        else:
            idx, cand = rows, d
        dist = np.concatenate([self.dist, np.asarray(cand, np.float64)], axis=1)
        block = np.concatenate([self.block, np.full(idx.shape, block_id, np.int64)], axis=1)
        row = np.concatenate([self.row, idx.astype(np.int64)], axis=1)
        order = np.lexsort((row, block, dist), axis=1)[:, :self.k]
        self.dist = np.take_along_axis(dist, order, axis=1)
        self.block = np.take_along_axis(block, order, axis=1)
        self.row = np.take_along_axis(row, order, axis=1)


# -- the corpus as blocks ---------------------------------------------------------------------


def _digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _stat(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path), int(st.st_size), int(st.st_mtime_ns)]


def _rows_block(emb: np.ndarray, src: np.ndarray, starts: np.ndarray, ends: np.ndarray, names: list[str],
                offset: int) -> Block:
    def describe(rows: Sequence[int]) -> list[tuple[str, float, float]]:
        return [(names[int(src[r])], float(starts[r]), float(ends[r])) for r in rows]

    return Block(emb, describe, np.arange(offset, offset + emb.shape[0], dtype=np.int64), src, starts, ends)


def _item_blocks(items: Iterator[Any], *, block: int, names: list[str], check: Callable[[Any], None]
                 ) -> Iterator[Block]:
    """Recordings (``Embedded``, read one at a time) cut into blocks of exactly ``block`` rows (the
    last one fewer); a recording may straddle two blocks."""
    emb = src = starts = ends = None
    fill = offset = 0
    for item in items:
        check(item)
        x = item.embeddings
        n = int(x.shape[0]) if x.ndim == 2 else 0
        if n == 0:
            continue
        sid = len(names)
        names.append(str(item.source))
        t0 = np.asarray(item.time_axis_s, dtype=np.float64)
        t1 = np.asarray(item.ends_s, dtype=np.float64)
        pos = 0
        while pos < n:
            if emb is None:
                emb = np.empty((block, x.shape[1]), np.float32)
                src, starts, ends = np.empty(block, np.int32), np.empty(block), np.empty(block)
            m = min(block - fill, n - pos)
            emb[fill:fill + m] = x[pos:pos + m]
            src[fill:fill + m] = sid
            starts[fill:fill + m] = t0[pos:pos + m]
            ends[fill:fill + m] = t1[pos:pos + m]
            fill += m
            pos += m
            if fill == block:
                yield _rows_block(emb, src, starts, ends, names, offset)
                offset += fill
                emb, fill = None, 0
    if fill:
        yield _rows_block(emb[:fill], src[:fill], starts[:fill], ends[:fill], names, offset)


class _FactsCheck:
    """Checks each recording, as it streams by, against the corpus' facts (one model, one dimension)."""

    def __init__(self, facts: dict[str, Any], where: str):
        self.where = where
        self.dim = facts.get("embedding_dim")
        self.family = model_family(facts["model"]) if facts.get("model") else None
        self._family = model_family

    def __call__(self, item: Any) -> None:
        x = item.embeddings
        dim = int(x.shape[1]) if x.ndim == 2 and x.shape[0] else item.facts.get("embedding_dim")
        if dim and self.dim and int(dim) != int(self.dim):
            raise SearchError(f"{self.where}: embeddings of different sizes {sorted({int(dim), int(self.dim)})} "
                              f"(different models?)")
        model = item.facts.get("model")
        if model and self.family and self._family(model) != self.family:
            raise SearchError(f"{self.where}: embeddings of different models "
                              f"{sorted({self._family(model), self.family})}")


def _tables_corpus(kind: str, path: str, block: int) -> CorpusSource:
    files = table_files(path)
    identity: dict[str, Any] = {"kind": kind, "path": str(Path(path).resolve()), "files": []}
    for f in files:
        entry = [_stat(s) for s in sidecars(f) if s.exists()]
        if f.suffix.lower() == ".parquet":
            try:
                import pyarrow.parquet as pq  # deferred: pyarrow is heavy and optional ([runner])

                entry.append(["rows", int(pq.read_metadata(str(f)).num_rows)])
            except Exception:  # noqa: BLE001 - a row count is a nicety; size and mtime still tell
                pass
        identity["files"].append(entry)
    # the facts from the first recordings that name a model (usually the first table): read a few only
    seen = []
    for item in iter_table_items(path):
        seen.append(item)
        if item.facts.get("model") or len(seen) >= 8:
            break
    facts = common_facts(seen, path)
    identity["dim"] = facts.get("embedding_dim")
    source = CorpusSource(kind, path, facts, lambda: iter(()), None, _digest(identity), identity, block)

    def blocks() -> Iterator[Block]:
        names: list[str] = []
        source.names = names
        rows = 0
        try:
            for blk in _item_blocks(iter_table_items(path), block=block, names=names,
                                    check=_FactsCheck(facts, path)):
                rows += blk.embeddings.shape[0]
                yield blk
        except SourceError as exc:
            raise SearchError(str(exc)) from None
        source.n_windows = rows

    source.blocks = blocks
    return source


def _store_corpus(path: str, block: int) -> CorpusSource:
    attrs, layout = store_layout(path)
    if not layout:
        raise SourceError(f"{path}: no embeddings found")
    bad = [(k, s) for k, s, _ in layout if len(s) != 2]
    if bad:
        raise SourceError(f"{path}: /embeddings/{bad[0][0]} is {list(bad[0][1])}, not [T, D] window embeddings")
    dims = sorted({s[1] for _, s, _ in layout if s[0]})
    if len(dims) > 1:
        raise SourceError(f"{path}: embeddings of different sizes {dims} (different models?)")
    items = iter_store_items(path)
    first = next(items)  # one recording, for the facts every item shares
    items.close()
    facts = {**first.facts, "embedding_dim": dims[0] if dims else first.facts.get("embedding_dim")}
    n = sum(s[0] for _, s, _ in layout)
    identity = {"kind": "store", "files": [_stat(Path(path).resolve())], "rows": n, "dim": facts["embedding_dim"],
                "datasets": hashlib.sha256(json.dumps(layout).encode()).hexdigest(),
                "attrs": {k: str(v) for k, v in sorted(attrs.items())}}
    source = CorpusSource("store", path, facts, lambda: iter(()), n, _digest(identity), identity, block)

    def blocks() -> Iterator[Block]:
        names: list[str] = []
        source.names = names
        try:
            yield from _item_blocks(iter_store_items(path), block=block, names=names,
                                    check=_FactsCheck(facts, path))
        except SourceError as exc:
            raise SearchError(str(exc)) from None

    source.blocks = blocks
    return source


def _hoplite_corpus(path: str, block: int) -> CorpusSource:
    db = open_hoplite(path)
    facts = hoplite_facts(read_model_config(db), int(db.get_embedding_dim()))
    n = int(db.count_embeddings())
    root = Path(path).resolve()
    identity = {"kind": "hoplite", "path": str(root), "rows": n, "dim": int(db.get_embedding_dim()),
                "files": [_stat(root / name) for name in ("hoplite.sqlite", HOPLITE_INDEX) if (root / name).exists()]}

    def blocks() -> Iterator[Block]:
        for ids, emb in iter_blocks(db, block=block):
            yield Block(emb, lambda rows, ids=ids: [describe_windows(db, [int(ids[r])])[int(ids[r])] for r in rows],
                        np.asarray(ids, dtype=np.int64))

    return CorpusSource("hoplite", path, facts, blocks, n, _digest(identity), identity, block, db=db)


def open_corpus(corpus: str | Path, *, block: int = BLOCK) -> CorpusSource | None:
    """The corpus as blocks, or None when it is audio (to embed first).

    Nothing but the corpus' layout (file names, sizes, dataset shapes) and the facts of its first
    recording is read here; :attr:`CorpusSource.blocks` reads the rest, one recording at a time.

    Parameters
    ----------
    corpus : path-like
        A table, a folder of tables, an HDF5 store or a hoplite database.
    block : int
        Rows per block (memory: ``block x D`` float32).
    """
    if block < 1:
        raise SearchError("block must be >= 1 rows")
    kind = kind_of(corpus)
    if kind is None:
        return None
    try:
        if kind == "hoplite":
            return _hoplite_corpus(str(corpus), block)
        if kind == "store":
            return _store_corpus(str(corpus), block)
        return _tables_corpus(kind, str(corpus), block)
    except SourceError as exc:
        raise SearchError(str(exc)) from None


# -- queries ----------------------------------------------------------------------------------


@dataclass
class Queries:
    """Query vectors [Q, D] and their ids."""

    vectors: np.ndarray
    ids: list[str]
    info: list[dict[str, Any]]


def _query_files(query: Path) -> list[Path]:
    if query.is_dir():
        files = walk_directory(query)
        if not files:
            files = sorted(p for p in query.rglob("*") if p.suffix.lower() in (".csv", ".parquet"))
        return files
    return [query]


def load_queries(query: str | Path, *, backend_factory: Callable[[], Any], mean: bool) -> Queries:
    """Query vectors of clips (each window, or their mean) or of embeddings tables (each row)."""
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
    """Streamed exact search.

    Each block is scored in float32 (:func:`block_distances`), its best ``2 top_k + 8`` rows per
    query rescored in float64 (:func:`candidate_distances`) and merged into the running top-k, so
    the distances reported are float64 and memory is one block plus ``Q x top_k`` results.

    Parameters
    ----------
    corpus : CorpusSource
    queries : numpy.ndarray
        float [Q, D].
    top_k : int
    metric : {"cosine", "euclidean", "mip"}

    Returns
    -------
    distances : numpy.ndarray
        float64 [Q, k'] ascending, ``k' = min(top_k, corpus rows)``.
    named : list of list of (str, float, float)
        ``(source, start_s, end_s)`` of each result, per query.
    """
    check_metric(metric)
    top = TopK(queries.shape[0], top_k)
    q32 = np.ascontiguousarray(queries, dtype=np.float32)
    describers: list[Callable | None] = []
    for i, blk in enumerate(corpus.blocks()):
        if blk.embeddings.shape[0] == 0:
            describers.append(None)
            continue
        if blk.embeddings.shape[1] != queries.shape[1]:
            raise SearchError(f"corpus {corpus.path}: {blk.embeddings.shape[1]}-d embeddings, the queries are "
                              f"{queries.shape[1]}-d (another model?)")
        rows = candidate_rows(block_distances(q32, blk.embeddings, metric), top_k)
        top.update(candidate_distances(queries, blk.embeddings, rows, metric), i, rows=rows)
        # keep only what naming the winners needs: the describers of blocks that hold one
        describers.append(blk.describe)
        keep = set(np.unique(top.block).tolist())
        describers = [d if j in keep else None for j, d in enumerate(describers)]
    named = []
    for q in range(queries.shape[0]):
        named.append([describers[b]([r])[0] for b, r in zip(top.block[q], top.row[q])])
    return top.dist, named


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
               metric: str = "cosine", query_mean: bool = False, index: str = "exact",
               index_path: str | Path | None = None, block: int = BLOCK) -> int:
    """The ``search`` command; returns the exit status.

    Parameters
    ----------
    query, corpus : str
        See the module notes.
    output_dir : path-like
        Where ``search_results.*`` (and, by default, the usearch index of a corpus) go.
    settings : RunSettings
    top_k : int
        Results per query.
    metric : {"cosine", "euclidean", "mip"}
    query_mean : bool
        One query per clip, the mean of its windows.
    index : {"exact", "usearch"}
    index_path : path-like, optional
        ``--index usearch``: where the index is kept (see :func:`.search_index.open_index`).
    block : int
        Rows per block read from the corpus.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if index not in INDEXES:
        raise UsageError(f"unknown index {index!r}; choose from {', '.join(INDEXES)}")
    if top_k < 1:
        raise UsageError("--top-k must be >= 1")
    if index_path is not None and index != "usearch":
        raise UsageError("--index-path goes with --index usearch")
    out = Path(output_dir)
    index_info = None
    t_start = time.perf_counter()
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
        t_search = time.perf_counter()
        if index == "exact":
            dist, named = exact_search(source, queries.vectors, top_k=top_k, metric=metric)
        else:
            dist, named, index_info = usearch_search(
                source, queries.vectors, top_k=top_k, metric=metric, index_path=index_path, output_dir=out,
                log=None if settings.quiet else (lambda line: print(line, file=sys.stderr)))
        t_done = time.perf_counter()
    except SearchError as exc:
        raise UsageError(str(exc)) from None
    columns = results_table(queries, dist, named)
    provenance = jsonable({
        "format": "audio_embeddings search results", "command": "search", "query": str(query), "corpus": str(corpus),
        "corpus_kind": source.kind, "corpus_windows": source.n_windows, "embedded_into": str(embedded_dir) if
        embedded_dir else None, "model": source.facts.get("model"), "embedding_dim": source.facts.get("embedding_dim"),
        "metric": metric, "distance": {"cosine": "1 - cosine similarity", "euclidean": "L2 distance",
                                       "mip": "minus the inner product (maximum inner product search)"}[metric],
        "index": index, "index_info": index_info, "block_rows": source.block_rows,
        "seconds": {"search": round(t_done - t_search, 6), "total": round(t_done - t_start, 6)},
        "top_k": top_k, "query_mean": query_mean, "queries": queries.info,
        "columns": {"rank": "1 = nearest", "query": "query id: <clip>#<window> (or <clip> with --query-mean)",
                    "source": "the corpus recording", "start": "window start, s", "end": "window end, s",
                    "distance": "see distance"},
        "versions": versions(), "command_line": settings.argv})
    written = write_results(out, columns, provenance)
    if not settings.quiet:
        how = index if index_info is None else f"{index}, index {index_info['state']}"
        print(f"search: {len(queries.ids)} quer{'y' if len(queries.ids) == 1 else 'ies'} over {source.n_windows} "
              f"windows ({how}, {metric}) -> {written['csv']}, {written['mat']}", file=sys.stderr)
    return EXIT_OK
