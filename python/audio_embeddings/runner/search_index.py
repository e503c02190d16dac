"""``search --index usearch``: an approximate HNSW index over a corpus (usearch, what perch-hoplite
uses), built once, saved with a fingerprint of the corpus, and memory-mapped by later searches.

See :mod:`audio_embeddings.runner.search` for where the index lives and when it is rebuilt; what it
reads (:class:`~.search_corpus.CorpusSource`) is in :mod:`.search_corpus`, which the search imports too.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import atomic_path, write_text_atomic
from ..outputs.hoplite import HOPLITE_INDEX, describe_windows
from .search_corpus import CorpusSource, SearchError, check_metric

USEARCH_METRICS = {"cosine": "cos", "euclidean": "l2sq", "mip": "ip"}
INDEX_FORMAT = "audio_embeddings search index"
INDEX_VERSION = 1
ROWS_DTYPE = np.dtype([("source", "<i4"), ("start", "<f8"), ("end", "<f8")])


def _from_usearch(d: np.ndarray, metric: str) -> np.ndarray:
    """usearch's distances in ours: ``cos`` is 1 - cos already, ``l2sq`` squared L2, ``ip`` 1 - inner product."""
    d = np.asarray(d, dtype=np.float64)
    if metric == "euclidean":
        return np.sqrt(np.maximum(d, 0.0))
    if metric == "mip":
        return d - 1.0
    return d


@dataclass
class PersistedIndex:
    """An approximate index, memory-mapped from disk, and how to name what it finds.

    Attributes
    ----------
    index : usearch.index.Index
        A view (``Index.restore(path, view=True)``): memory does not grow with the corpus.
    describe : callable
        Keys int64 [K] -> ``[(source, start_s, end_s)]``.
    info : dict
        For the provenance: ``path``, ``state`` (``built`` or ``reused``), ``reason`` (why it was
        built), ``owner`` (``search`` or ``hoplite``), ``vectors``, ``dtype``, ``build_s``.
    """

    index: Any
    describe: Callable[[np.ndarray], list[tuple[str, float, float]]]
    info: dict[str, Any]


def _usearch():
    try:
        from usearch.index import Index  # deferred: optional package, missing it is one line (below)
    except ImportError:
        raise SearchError("--index usearch needs the usearch package (pip install usearch)") from None
    return Index


def default_index_path(output_dir: str | Path) -> Path:
    """Where ``search --index usearch`` keeps a corpus' index unless told: ``OUTPUT_DIR/corpus.usearch``
    (beside it ``corpus.usearch.json``, its fingerprint, and ``corpus.usearch.rows.npy`` /
    ``.names.npy``, what each row is)."""
    return Path(output_dir) / "corpus.usearch"


def _index_files(path: Path) -> dict[str, Path]:
    return {"index": path, "meta": path.with_name(path.name + ".json"),
            "rows": path.with_name(path.name + ".rows.npy"), "names": path.with_name(path.name + ".names.npy")}


def _wanted(corpus: CorpusSource, metric: str, dtype: str, dim: int) -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "version": INDEX_VERSION, "corpus": corpus.identity,
            "fingerprint": corpus.fingerprint, "metric": metric, "usearch_metric": USEARCH_METRICS[metric],
            "dtype": dtype, "dim": int(dim)}


def _stale_reason(files: dict[str, Path], wanted: dict[str, Any], hoplite: bool) -> str | None:
    """Why the index at ``files`` cannot answer for this corpus (None: it can)."""
    if not files["index"].exists() or not files["meta"].exists():
        return "no index there yet"
    try:
        meta = json.loads(files["meta"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its fingerprint file cannot be read"
    if meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
        return "it was written by another version"
    for key, what in (("metric", "metric"), ("dtype", "vector type"), ("dim", "dimension")):
        if meta.get(key) != wanted[key]:
            return f"its {what} is {meta.get(key)}, this search's {wanted[key]}"
    if meta.get("fingerprint") != wanted["fingerprint"]:
        old, new = meta.get("corpus") or {}, wanted["corpus"]
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return f"the corpus changed ({', '.join(changed) or 'fingerprint'} differ)"
    st = files["index"].stat()
    if [int(st.st_size), int(st.st_mtime_ns)] != meta.get("index_file"):
        return "the index file changed since it was built"
    if not hoplite and not (files["rows"].exists() and files["names"].exists()):
        return "its row table is missing"
    return None


def _rows_describer(rows: np.ndarray, names: np.ndarray) -> Callable[[np.ndarray], list]:
    def describe(keys: np.ndarray) -> list[tuple[str, float, float]]:
        r = rows[np.asarray(keys, dtype=np.int64)]
        return [(str(names[int(s)]), float(a), float(b)) for s, a, b in zip(r["source"], r["start"], r["end"])]

    return describe


def _hoplite_describer(db: Any) -> Callable[[np.ndarray], list]:
    def describe(keys: np.ndarray) -> list[tuple[str, float, float]]:
        found = describe_windows(db, [int(k) for k in keys])
        return [found[int(k)] for k in keys]

    return describe


def _hoplite_own_index(corpus: CorpusSource, metric: str, dim: int) -> tuple[Any, str | None]:
    """hoplite's own ``usearch.index`` when it can answer this search, else (None, why not)."""
    db = corpus.db
    ui = getattr(db, "ui", None)
    where = Path(corpus.path) / HOPLITE_INDEX
    if ui is None:
        return None, f"{where} is not open"
    # the file says how it ranks (a view made with hoplite's arguments reports usearch's default metric)
    meta = _usearch().metadata(str(where)) or {}
    kind = str(meta.get("kind_metric", "")).lower().rsplit(".", 1)[-1]
    if kind != USEARCH_METRICS[metric]:
        return None, f"{where} ranks by {kind or 'an unknown metric'}, this search by {metric}"
    if int(ui.ndim) != int(dim):
        return None, f"{where} is {ui.ndim}-d, the queries {dim}-d"
    ids = np.asarray(db.match_window_ids(), dtype=np.int64)
    if len(ids) != len(ui) or (len(ids) and not np.asarray(ui.contains(ids), dtype=bool).all()):
        return None, f"{where} holds {len(ui)} vectors for the database's {len(ids)} windows (not consistent)"
    return ui, None


def _build_index(corpus: CorpusSource, files: dict[str, Path], wanted: dict[str, Any], *, expansion_search: int
                 ) -> dict[str, Any]:
    """Build an HNSW index of the corpus (read in blocks), save it, then its row table, then its
    fingerprint (written last: an interrupted build is never taken for a finished one)."""
    Index = _usearch()
    t0 = time.perf_counter()
    dim, metric = wanted["dim"], wanted["metric"]
    index = Index(ndim=dim, metric=USEARCH_METRICS[metric], dtype=wanted["dtype"], expansion_search=expansion_search)
    src, starts, ends = [], [], []
    for blk in corpus.blocks():
        n = blk.embeddings.shape[0]
        if not n:
            continue
        if blk.embeddings.shape[1] != dim:
            raise SearchError(f"corpus {corpus.path}: {blk.embeddings.shape[1]}-d embeddings, the queries are "
                              f"{dim}-d (another model?)")
        index.add(blk.keys.astype(np.uint64), np.ascontiguousarray(blk.embeddings, dtype=np.float32))
        if blk.source_index is not None:
            src.append(blk.source_index.copy())
            starts.append(blk.starts_s.copy())
            ends.append(blk.ends_s.copy())
    files["index"].parent.mkdir(parents=True, exist_ok=True)
    files["meta"].unlink(missing_ok=True)  # stale from here on, until the new fingerprint is written
    with atomic_path(files["index"], suffix=".usearch") as tmp:
        index.save(str(tmp))
    vectors = len(index)
    del index
    if corpus.kind != "hoplite":
        rows = np.zeros(sum(len(s) for s in src), dtype=ROWS_DTYPE)
        rows["source"] = np.concatenate(src) if src else np.zeros(0, np.int32)
        rows["start"] = np.concatenate(starts) if starts else np.zeros(0)
        rows["end"] = np.concatenate(ends) if ends else np.zeros(0)
        del src, starts, ends
        for key, arr in (("rows", rows), ("names", np.array(corpus.names, dtype=str))):
            with atomic_path(files[key], suffix=".npy") as tmp:
                np.save(tmp, arr)
    st = os.stat(files["index"])
    build_s = time.perf_counter() - t0
    write_text_atomic(files["meta"], json.dumps({**wanted, "vectors": int(vectors), "build_s": round(build_s, 3),
                                                 "index_file": [int(st.st_size), int(st.st_mtime_ns)]},
                                                indent=1, default=str) + "\n")
    return {"vectors": int(vectors), "build_s": build_s}


def open_index(corpus: CorpusSource, *, metric: str, dim: int, index_path: str | Path | None = None,
               output_dir: str | Path | None = None, dtype: str = "f16", expansion_search: int = 128,
               log: Callable[[str], None] | None = None) -> PersistedIndex:
    """The corpus' approximate (HNSW) index: reused from disk when its fingerprint matches the
    corpus, else built (once) and saved; either way memory-mapped.

    Parameters
    ----------
    corpus : CorpusSource
    metric : {"cosine", "euclidean", "mip"}
    dim : int
        The queries' dimension.
    index_path : path-like, optional
        Where the index is kept (``.json``, ``.rows.npy``, ``.names.npy`` beside it). Default: a
        hoplite database's own ``usearch.index`` when it is consistent with the database and ranks
        by this metric (hoplite keeps it up to date; ``mip`` only, hoplite's ``IP``), else
        :func:`default_index_path` of ``output_dir``.
    output_dir : path-like, optional
        The search's output folder (for the default path).
    dtype : str
        usearch's vector type (``f16``, as hoplite keeps them: half of float32's memory).
    expansion_search : int
        HNSW search breadth (hoplite's default, 128).
    log : callable, optional
        Gets one line when an index is (re)built, saying why.

    Raises
    ------
    SearchError
        usearch is missing, or the corpus does not match the queries' dimension.
    """
    check_metric(metric)
    Index = _usearch()
    reason_hoplite = None
    if corpus.kind == "hoplite" and index_path is None:
        ui, reason_hoplite = _hoplite_own_index(corpus, metric, dim)
        if ui is not None:
            ui.expansion_search = max(int(getattr(ui, "expansion_search", 0) or 0), expansion_search)
            return PersistedIndex(ui, _hoplite_describer(corpus.db), {
                "path": str(Path(corpus.path) / HOPLITE_INDEX), "owner": "hoplite", "state": "reused",
                "reason": None, "vectors": int(len(ui)), "dtype": str(ui.dtype), "build_s": 0.0})
    if index_path is None:
        if output_dir is None:
            raise SearchError("an index path or an output folder is needed for --index usearch")
        index_path = default_index_path(output_dir)
    files = _index_files(Path(index_path))
    wanted = _wanted(corpus, metric, dtype, dim)
    hoplite = corpus.kind == "hoplite"
    reason = _stale_reason(files, wanted, hoplite)
    built = None
    if reason is not None:
        if reason_hoplite:
            reason = f"{reason_hoplite}; {reason}"
        if log:
            log(f"search: building the usearch index {files['index']}: {reason}")
        built = _build_index(corpus, files, wanted, expansion_search=expansion_search)
    index = Index.restore(str(files["index"]), view=True)
    if index is None:
        raise SearchError(f"{files['index']}: not a usearch index")
    index.expansion_search = expansion_search
    meta = json.loads(files["meta"].read_text(encoding="utf-8"))
    if hoplite:
        describe = _hoplite_describer(corpus.db)
    else:
        rows = np.load(files["rows"], mmap_mode="r")
        names = np.load(files["names"], mmap_mode="r")
        describe = _rows_describer(rows, names)
        if corpus.n_windows is None:
            corpus.n_windows = int(len(rows))
    return PersistedIndex(index, describe, {
        "path": str(files["index"]), "owner": "search", "state": "built" if built else "reused",
        "reason": reason, "vectors": int(len(index)), "dtype": dtype,
        "build_s": built["build_s"] if built else float(meta.get("build_s") or 0.0),
        "fingerprint": corpus.fingerprint})


def usearch_search(corpus: CorpusSource, queries: np.ndarray, *, top_k: int, metric: str,
                   index_path: str | Path | None = None, output_dir: str | Path | None = None,
                   dtype: str = "f16", expansion_search: int = 128, log: Callable[[str], None] | None = None
                   ) -> tuple[np.ndarray, list[list], dict[str, Any]]:
    """Approximate search through the corpus' persisted usearch HNSW index (see :func:`open_index`).

    Distances are usearch's, on the stored (``dtype``) vectors, in this module's units.

    Returns
    -------
    distances : numpy.ndarray
        float64 [Q, k'] (inf where the index found fewer than k').
    named : list of list of (str, float, float)
    info : dict
        :attr:`PersistedIndex.info`.
    """
    dim = int(queries.shape[1])
    found = open_index(corpus, metric=metric, dim=dim, index_path=index_path, output_dir=output_dir, dtype=dtype,
                       expansion_search=expansion_search, log=log)
    size = int(len(found.index))
    if size == 0:
        return np.zeros((queries.shape[0], 0)), [[] for _ in range(queries.shape[0])], found.info
    matches = found.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(top_k, size))
    keys = np.asarray(matches.keys, dtype=np.int64).reshape(queries.shape[0], -1)
    dist = _from_usearch(np.asarray(matches.distances).reshape(queries.shape[0], -1), metric)
    counts = np.asarray(getattr(matches, "counts", np.full(queries.shape[0], keys.shape[1]))).reshape(-1)
    named = []
    for q in range(queries.shape[0]):
        valid = (np.arange(keys.shape[1]) < counts[q]) & (keys[q] >= 0)
        dist[q, ~valid] = np.inf
        names = iter(found.describe(keys[q][valid]))
        named.append([next(names) if ok else ("", np.nan, np.nan) for ok in valid])
    return dist, named, found.info
