"""Embeddings already made, as inputs: runner tables (ours or perch-runner's), a folder of them, an
HDF5 corpus store (``--store``), or a perch-hoplite database.

``classify``, ``distance`` and ``search`` read these instead of running the model again. Each
source gives :class:`Embedded` items, one per recording, that quack like the engine's
``FileEmbedding`` (``embeddings``, ``time_axis_s``, ``window_s``, ``sample_rate_hz``) and carry
their own window ends and the model facts their provenance records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np

from .tables import FORMATS, TableError, read_embeddings, sidecar_path, table_model

#: Table-name middles that are not embeddings (classify output has no embeddings).
TABLE_KINDS = (".embeddings", ".distances")
STORE_SUFFIXES = (".h5", ".hdf5")


class SourceError(ValueError):
    """An embeddings input that cannot be read (the message names it)."""


@dataclass
class Embedded:
    """One recording's embeddings, read from a table, a store or a database.

    Attributes
    ----------
    key : str
        Relative name used for output tables (``a/b/x.wav`` or the table's stem).
    source : str
        The ``source`` written in output rows (the recording).
    embeddings : numpy.ndarray
        float32 [T, D].
    time_axis_s, ends_s : numpy.ndarray
        float64 [T] window starts and ends.
    channel : numpy.ndarray
        int32 [T] source-separation channel (0 when the input has none).
    facts : dict
        ``model``, ``model_spec``, ``embedding_dim``, ``window_s``, ``hop_s``, ``sample_rate_hz`` where known.
    origin : str
        The file or database it came from.
    """

    key: str
    source: str
    embeddings: np.ndarray
    time_axis_s: np.ndarray
    ends_s: np.ndarray
    channel: np.ndarray
    facts: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def window_s(self) -> float:
        w = self.facts.get("window_s")
        return float(w) if isinstance(w, (int, float)) else 0.0

    @property
    def sample_rate_hz(self) -> int:
        return int(self.facts.get("sample_rate_hz") or 0)

    @property
    def n_samples(self) -> int:
        return 0

    @property
    def extras(self) -> dict[str, np.ndarray]:
        return {}

    @property
    def frame_stride_s(self) -> float:
        return float(self.facts.get("hop_s") or self.window_s)


def kind_of(path: str | Path) -> str | None:
    """``table``, ``tables`` (a folder of them), ``store``, ``hoplite`` or None (audio, or nothing known)."""
    from ..outputs.hoplite import is_hoplite_db

    p = Path(path)
    if is_hoplite_db(p):
        return "hoplite"
    if p.is_file() and p.suffix.lower() in STORE_SUFFIXES:
        return "store"
    if p.is_file() and p.suffix.lower() in (".csv", ".parquet"):
        return "table" if _looks_like_embeddings(p) else None
    if p.is_dir():
        from ..corpus.discover import walk_directory

        if walk_directory(p):
            return None
        if any(True for _ in _table_files(p)):
            return "tables"
    return None


def _looks_like_embeddings(path: Path) -> bool:
    """A table with an embedding column (ours, perch-runner's base64 or f0000 columns), read cheaply."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(str(path)).names
        else:
            with path.open("r", encoding="utf-8", newline="") as fh:
                line = fh.readline()
                while line.startswith("#"):
                    line = fh.readline()
            names = [c.strip() for c in line.strip().split(",")]
    except (OSError, UnicodeDecodeError, ValueError, ImportError):
        return False
    return "embedding" in names or "embeddings" in names or any(n.startswith("f0000") for n in names)


def _table_files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in (".csv", ".parquet") and not p.name.startswith(".") \
                and not any(part.startswith(".") for part in p.relative_to(root).parts) \
                and _looks_like_embeddings(p):
            yield p


def _table_key(path: Path, root: Path | None) -> str:
    rel = path.relative_to(root) if root is not None else Path(path.name)
    name = rel.name[: -len(rel.suffix)]
    for middle in TABLE_KINDS:
        if name.endswith(middle):
            name = name[: -len(middle)]
    return PurePosixPath(*rel.parent.parts, name).as_posix()


def facts_of(provenance: dict[str, Any], embeddings: np.ndarray) -> dict[str, Any]:
    """Model facts a table's provenance records (ours, or perch-runner's config)."""
    from .tables import PERCH_RUNNER_WINDOW_S, perch_runner_config

    model = table_model(provenance)
    facts = {"model": model, "model_spec": provenance.get("model_spec") or model,
             "embedding_dim": int(embeddings.shape[1]) if embeddings.ndim == 2 else None,
             "window_s": provenance.get("window_s"), "hop_s": provenance.get("hop_s"),
             "sample_rate_hz": provenance.get("sample_rate_hz"), "weights_sha256": provenance.get("weights_sha256"),
             "weights": provenance.get("weights"), "checkpoint": provenance.get("checkpoint")}
    if facts["window_s"] is None and model:
        facts["window_s"] = PERCH_RUNNER_WINDOW_S.get(str(model).lower())
    if facts["hop_s"] is None:
        hop = perch_runner_config(provenance).get("hop_length_seconds") or perch_runner_config(provenance).get("hop_size")
        facts["hop_s"] = hop if isinstance(hop, (int, float)) else facts["window_s"]
    return facts


def read_table_items(path: str | Path, *, root: Path | None = None) -> list[Embedded]:
    """The recordings of one table (perch-runner tables may hold several sources)."""
    p = Path(path)
    try:
        columns, emb, provenance = read_embeddings(p)
    except (TableError, OSError, ValueError) as exc:
        raise SourceError(f"{p}: {exc}") from None
    facts = facts_of(provenance, emb)
    n = emb.shape[0]
    starts = np.asarray(columns.get("start", np.zeros(n)), dtype=np.float64)
    window = facts.get("window_s")
    ends = np.asarray(columns["end"], dtype=np.float64) if "end" in columns else \
        starts + (float(window) if isinstance(window, (int, float)) else 0.0)
    channel = np.asarray(columns.get("source_separation_channel", np.zeros(n)), dtype=np.int32)
    key = _table_key(p, root)
    sources = columns.get("source")
    if sources is None:
        recorded = (provenance.get("input") or {}).get("path") if isinstance(provenance.get("input"), dict) else None
        return [Embedded(key, str(recorded or key), emb, starts, ends, channel, facts, str(p), provenance)]
    names = [str(s) for s in sources]
    unique = list(dict.fromkeys(names))
    if len(unique) <= 1:
        return [Embedded(key, unique[0] if unique else key, emb, starts, ends, channel, facts, str(p), provenance)]
    out = []
    for name in unique:
        rows = np.array([s == name for s in names])
        sub = PurePosixPath(name).with_suffix("").as_posix().lstrip("/")
        out.append(Embedded(sub, name, emb[rows], starts[rows], ends[rows], channel[rows], facts, str(p), provenance))
    return out


def read_store_items(path: str | Path) -> list[Embedded]:
    """The files of an HDF5 corpus store (``/embeddings/<key>``, ``/time_axis/<key>``)."""
    return list(iter_store_items(path))


def store_layout(path: str | Path) -> tuple[dict[str, Any], list[tuple[str, tuple[int, ...], str]]]:
    """What an HDF5 corpus store holds, without reading its embeddings.

    Parameters
    ----------
    path : path-like
        The store (``/embeddings/<key>`` datasets).

    Returns
    -------
    attrs : dict
        The file's attributes (``model_name``, ``window_s``, ``frame_stride_s``, ...).
    datasets : list of (str, tuple of int, str)
        ``(key, shape, dtype)`` of each ``/embeddings/<key>`` dataset, sorted by key.

    Raises
    ------
    SourceError
        The file cannot be read or has no ``/embeddings`` group.
    """
    import h5py

    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            if "embeddings" not in f:
                raise SourceError(f"{p}: not a corpus store (no /embeddings group)")
            group = f["embeddings"].id
            found = []
            for key in _dataset_names(group):
                ds = h5py.h5d.open(group, key.encode())
                found.append((key, tuple(int(n) for n in ds.shape), str(ds.dtype)))
            return dict(f.attrs), found
    except OSError as exc:
        raise SourceError(f"{p}: cannot read the store ({exc})") from None


def iter_store_items(path: str | Path) -> Iterator[Embedded]:
    """The files of an HDF5 corpus store, read one at a time (what :func:`read_store_items` lists).

    Only the recording being yielded is in memory: a store of any size streams in memory of its
    largest recording.

    Parameters
    ----------
    path : path-like
        The store (``/embeddings/<key>`` float [T, D] datasets, ``/time_axis/<key>`` float [T] starts, s).

    Yields
    ------
    Embedded
        One per dataset, sorted by key (embeddings float32 [T, D]).

    Raises
    ------
    SourceError
        The file cannot be read, has no ``/embeddings`` group, or a dataset is not [T, D].
    """
    import h5py

    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            attrs = dict(f.attrs)
            if "embeddings" not in f:
                raise SourceError(f"{p}: not a corpus store (no /embeddings group)")
            keys = _dataset_names(f["embeddings"].id)
            window = float(attrs.get("window_s", 0) or 0)
            stride_s = float(attrs.get("frame_stride_s", 0) or 0)
            # h5py's low-level calls: a tenth of the high-level ones' overhead, which dominates a store
            # of many short recordings (the values read are the same)
            groups = f["embeddings"].id, (f["time_axis"].id if "time_axis" in f else None)
            for key in keys:
                name = key.encode()
                ds = h5py.h5d.open(groups[0], name)
                if len(ds.shape) != 2:
                    raise SourceError(f"{p}: /embeddings/{key} is {list(ds.shape)}, not [T, D] window embeddings")
                emb = np.empty(ds.shape, dtype=np.float32)
                ds.read(h5py.h5s.ALL, h5py.h5s.ALL, emb)
                if _has_link(groups[1], name):
                    t = h5py.h5d.open(groups[1], name)
                    starts = np.empty(t.shape, dtype=np.float64)
                    t.read(h5py.h5s.ALL, h5py.h5s.ALL, starts)
                else:
                    starts = np.arange(emb.shape[0], dtype=np.float64) * stride_s
                duration = float(_attr(ds, "duration_s") or 0)
                ends = starts + window
                if duration:
                    ends = np.minimum(ends, duration)
                facts = {"model": _text(attrs.get("model_name")), "model_spec": _text(attrs.get("model_name")),
                         "embedding_dim": int(emb.shape[1]), "window_s": window or None,
                         "hop_s": stride_s or None,
                         "sample_rate_hz": int(attrs.get("sample_rate_hz", 0) or 0) or None}
                yield Embedded(key, _text(_attr(ds, "source_path")) or key, emb, starts, ends,
                               np.zeros(emb.shape[0], np.int32), facts, str(p), {})
    except OSError as exc:
        raise SourceError(f"{p}: cannot read the store ({exc})") from None


def table_files(path: str | Path) -> list[Path]:
    """The embeddings tables of a folder (searched recursively, sorted; hidden files skipped), or
    ``[path]`` for one table."""
    p = Path(path)
    return [p] if p.is_file() else list(_table_files(p))


def iter_table_items(path: str | Path) -> Iterator[Embedded]:
    """The recordings of a table or a folder of tables, read one table at a time (what
    :func:`read_items` lists for kinds ``table`` and ``tables``).

    Yields
    ------
    Embedded
        In the order :func:`read_items` gives them.
    """
    p = Path(path)
    if p.is_file():
        yield from read_table_items(p)
        return
    for table in _table_files(p):
        yield from read_table_items(table, root=p)


def _dataset_names(group: Any) -> list[str]:
    """The datasets under an HDF5 group (low-level id), as paths inside it, sorted (what
    ``visititems`` finds, without making an object of each)."""
    import h5py

    found: list[str] = []

    def visit(name: bytes, info: Any) -> None:
        if info.type == h5py.h5o.TYPE_DATASET:
            found.append(name.decode())

    h5py.h5o.visit(group, visit, info=True)
    return sorted(found)


def _has_link(group: Any, name: bytes) -> bool:
    """Whether an HDF5 group (low-level id, or None) holds ``name`` (a path inside it)."""
    if group is None:
        return False
    try:
        return bool(group.links.exists(name))
    except (KeyError, RuntimeError, ValueError):  # an intermediate group missing
        return False


def _attr(dataset: Any, name: str) -> Any:
    """A dataset's attribute (low-level id) as a scalar, or None when it has none."""
    import h5py

    key = name.encode()
    if not h5py.h5a.exists(dataset, key):
        return None
    try:
        aid = h5py.h5a.open(dataset, key)
        value = np.empty(aid.shape, dtype=aid.dtype)
        aid.read(value)
        return value[()] if value.ndim == 0 else value
    except (TypeError, ValueError, OSError):  # a type the low-level read cannot take: h5py's own reader
        return h5py.Dataset(dataset).attrs.get(name)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def hoplite_facts(model_config: dict[str, Any] | None, dim: int) -> dict[str, Any]:
    """Model facts from a hoplite database's ``model_config``."""
    from .classifier import model_from_config

    inner = (model_config or {}).get("model_config") or {}
    model = model_from_config(model_config, dim) if model_config else None
    return {"model": model, "model_spec": model, "embedding_dim": int(dim),
            "window_s": inner.get("window_size_s"), "hop_s": inner.get("hop_size_s") or inner.get("window_size_s"),
            "sample_rate_hz": inner.get("sample_rate"), "hoplite_model_key": (model_config or {}).get("model_key")}


def read_hoplite_items(path: str | Path) -> list[Embedded]:
    """The recordings of a hoplite database (float16 vectors widened to float32)."""
    from ..outputs.hoplite import HopliteError, iter_recordings, open_hoplite, read_model_config

    try:
        db = open_hoplite(path)
    except HopliteError as exc:
        raise SourceError(str(exc)) from None
    try:
        facts = hoplite_facts(read_model_config(db), int(db.get_embedding_dim()))
        out = []
        for project, filename, starts, ends, emb in iter_recordings(db):
            key = PurePosixPath(filename).as_posix()
            out.append(Embedded(key, filename, emb, starts, ends, np.zeros(len(starts), np.int32), dict(facts),
                                str(path), {"project": project}))
        return out
    finally:
        db.db.close()


def read_items(path: str | Path) -> tuple[str, list[Embedded]]:
    """``(kind, items)`` of an embeddings input; SourceError when it is none of the kinds."""
    p = Path(path)
    kind = kind_of(p)
    if kind == "hoplite":
        return kind, read_hoplite_items(p)
    if kind == "store":
        return kind, read_store_items(p)
    if kind == "table":
        return kind, read_table_items(p)
    if kind == "tables":
        return kind, list(iter_table_items(p))
    raise SourceError(f"{p}: not an embeddings table ({', '.join(FORMATS)} with an embedding column), a folder "
                      "of them, an HDF5 store or a perch-hoplite database")


def common_facts(items: list[Embedded], where: str) -> dict[str, Any]:
    """The facts all items share; SourceError when their models or dimensions differ."""
    if not items:
        raise SourceError(f"{where}: no embeddings found")
    dims = {int(i.embeddings.shape[1]) for i in items if i.embeddings.ndim == 2 and i.embeddings.shape[0]}
    dims |= {int(i.facts["embedding_dim"]) for i in items if i.facts.get("embedding_dim")}
    if len(dims) > 1:
        raise SourceError(f"{where}: embeddings of different sizes {sorted(dims)} (different models?)")
    from .classifier import model_family

    models = {model_family(i.facts["model"]) for i in items if i.facts.get("model")}
    if len(models) > 1:
        raise SourceError(f"{where}: embeddings of different models {sorted(models)}")
    first = next((i.facts for i in items if i.facts.get("model")), items[0].facts)
    return {**first, "embedding_dim": next(iter(dims)) if dims else first.get("embedding_dim")}


def sidecars(path: Path) -> list[Path]:
    """The files a table consists of (the table, and for CSV its provenance sidecar)."""
    return [path, sidecar_path(path)] if path.suffix.lower() == ".csv" else [path]
