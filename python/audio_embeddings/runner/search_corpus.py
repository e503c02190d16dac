"""What a search reads and how it fails: the corpus as blocks of rows (:class:`CorpusSource`,
:class:`Block`), the distance metrics, and :class:`SearchError`.

Both the exact search (:mod:`.search`) and the approximate index (:mod:`.search_index`) use
these; this module imports neither, so the dependency goes one way (search -> search_index ->
search_corpus).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

METRICS = ("cosine", "euclidean", "mip")
#: Corpus rows read per block (memory: ``BLOCK x D`` float32).
BLOCK = 16384


class SearchError(ValueError):
    """A search that cannot run (the message says why)."""


def check_metric(metric: str) -> None:
    """Raise :class:`SearchError` unless ``metric`` is one of :data:`METRICS`."""
    if metric not in METRICS:
        raise SearchError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


@dataclass
class Block:
    """Corpus rows, and how to name them.

    Attributes
    ----------
    embeddings : numpy.ndarray
        float32 [B, D], B at most the corpus' ``block_rows``.
    describe : callable
        Rows of this block (int) -> ``[(source, start_s, end_s)]``.
    keys : numpy.ndarray
        int64 [B]: the rows' keys in an index (the corpus row number; hoplite: the window id).
    source_index, starts_s, ends_s : numpy.ndarray or None
        int32 [B] into :attr:`CorpusSource.names`, float64 [B] window starts and ends (tables and
        stores; None for hoplite, which names windows itself).
    """

    embeddings: np.ndarray
    describe: Callable[[Sequence[int]], list[tuple[str, float, float]]]
    keys: np.ndarray | None = None
    source_index: np.ndarray | None = None
    starts_s: np.ndarray | None = None
    ends_s: np.ndarray | None = None


@dataclass
class CorpusSource:
    """A corpus that can be read block by block.

    Attributes
    ----------
    kind : str
        ``table``, ``tables``, ``store`` or ``hoplite``.
    facts : dict
        Model facts (``model``, ``embedding_dim``, ...), from the first recording (tables), the
        store's attributes, or the database.
    blocks : callable
        ``blocks()`` reads the corpus again, one block at a time: each holds at most
        ``block_rows`` rows, and only the current block's embeddings are in memory (tables and
        stores are read one recording at a time).
    n_windows : int or None
        Rows, where known without reading the corpus (stores, hoplite; tables once read).
    fingerprint : str
        sha256 of ``identity``.
    identity : dict
        What changes when the corpus does, read cheaply: its files (sizes, mtimes, row counts
        where a header says), dimension.
    names : list of str
        The recordings of the last ``blocks()`` pass (what ``Block.source_index`` counts).
    db : object or None
        The open hoplite database (hoplite only).
    """

    kind: str
    path: str
    facts: dict[str, Any]
    blocks: Callable[[], Iterator[Block]]
    n_windows: int | None
    fingerprint: str
    identity: dict[str, Any] = field(default_factory=dict)
    block_rows: int = BLOCK
    names: list[str] = field(default_factory=list)
    db: Any = None
