"""The runner's output tables, CSV or Parquet, self-describing, written atomically.

Columns (the same names and meaning in both formats):

==============================  ===========================  =========================================
column                          Parquet type                 CSV text
==============================  ===========================  =========================================
``start``                       float64                      window onset in s (shortest round-trip)
``end``                         float64                      ``min(start + window, file duration)``
``source_separation_channel``   int32                        always 0 (no separation: the whole mix)
``embedding``                   fixed_size_list<float32>[D]  base64 of the float32 vector, little-endian
``classifier``, ``label``       string                       text
``score``                       float32                      shortest text that gives the float32 back
``distance``                    float64                      shortest round-trip text
==============================  ===========================  =========================================

Provenance is a flat mapping of keys to JSON values: in CSV one ``# key: <json>`` line each
before the column names, in Parquet the file's key-value metadata (value = the JSON text).
:func:`read_table` / :func:`read_embeddings` give every value back exactly.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..outputs.atomic import atomic_path

FORMATS = ("csv", "parquet")
SUFFIXES = {"csv": ".csv", "parquet": ".parquet"}
EMBEDDING = "embedding"
WINDOW_COLUMNS = ("start", "end", "source_separation_channel")
EMBEDDING_COLUMNS = (*WINDOW_COLUMNS, EMBEDDING)
CLASSIFY_COLUMNS = (*WINDOW_COLUMNS, "classifier", "label", "score")
DISTANCE_COLUMNS = (*EMBEDDING_COLUMNS, "distance")
FLOAT64 = ("start", "end", "distance")
FLOAT32 = ("score",)
INT32 = ("source_separation_channel",)
STRING = ("classifier", "label")
#: Units and meaning, recorded in every file under ``columns``.
COLUMN_DOCS = {
    "start": "s from the start of the input file, window onset",
    "end": "s, window end (start + window length), clipped to the file's duration",
    "source_separation_channel": "virtual channel of a source-separation model; 0 = the whole mix (none used)",
    "embedding": "float32 vector; CSV: base64 of its little-endian bytes, Parquet: fixed_size_list<float32>",
    "classifier": "name of the classifier in the config",
    "label": "the classifier's label (class name)",
    "score": "float32 logit: embedding @ beta + beta_bias; sigmoid(score) is the label's probability",
    "distance": "distance of the window's embedding to the query's",
}


class TableError(ValueError):
    """A file that is not a runner table (or is damaged)."""


def format_of(path: str | Path) -> str:
    """``csv`` or ``parquet`` from a file name's suffix."""
    suffix = Path(path).suffix.lower()
    for fmt, s in SUFFIXES.items():
        if suffix == s:
            return fmt
    raise TableError(f"{path}: unknown table suffix (expected {', '.join(SUFFIXES.values())})")


def encode_embedding(vector: np.ndarray) -> str:
    """Base64 of a vector's float32 little-endian bytes."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_embedding(text: str) -> np.ndarray:
    """Inverse of :func:`encode_embedding`: float32 [D]."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise TableError(f"embedding of {len(raw)} bytes is not float32 values")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, allow_nan=True)


def _check_columns(columns: dict[str, Any]) -> int:
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise TableError(f"columns of different lengths: {lengths}")
    if EMBEDDING in columns and np.asarray(columns[EMBEDDING]).ndim != 2:
        raise TableError("embedding column must be [T, D]")
    return next(iter(lengths.values()), 0)


def write_table(path: str | Path, columns: dict[str, Any], provenance: dict[str, Any], *,
                fmt: str | None = None) -> Path:
    """Write a table atomically (a temporary sibling renamed into place).

    Parameters
    ----------
    path : path-like
    columns : dict
        Column name -> 1-D values (``embedding``: float32 [T, D]), in output order.
    provenance : dict
        Flat mapping, JSON-able values; keys are plain words.
    fmt : {"csv", "parquet"}, optional
        Default: from the suffix.
    """
    fmt = fmt or format_of(path)
    if fmt not in FORMATS:
        raise TableError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    _check_columns(columns)
    bad = [k for k in provenance if not str(k).replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise TableError(f"provenance keys must be plain words, got {bad}")
    if fmt == "csv":
        with atomic_path(path, suffix=".csv") as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
            _write_csv(fh, columns, provenance)
    else:
        with atomic_path(path, suffix=".parquet") as tmp:
            _write_parquet(tmp, columns, provenance)
    return Path(path)


def _csv_cells(name: str, values: Any) -> Iterable[str]:
    if name == EMBEDDING:
        return (encode_embedding(v) for v in np.asarray(values, dtype=np.float32))
    if name in FLOAT32:
        return (str(v) for v in np.asarray(values, dtype=np.float32))  # numpy: shortest float32 text
    if name in FLOAT64:
        return (repr(float(v)) for v in np.asarray(values, dtype=np.float64))
    if name in INT32:
        return (str(int(v)) for v in values)
    return (str(v) for v in values)


def _write_csv(fh: Any, columns: dict[str, Any], provenance: dict[str, Any]) -> None:
    for key, value in provenance.items():
        fh.write(f"# {key}: {_json(value)}\n")
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*(_csv_cells(name, values) for name, values in columns.items())))


def _arrow_column(name: str, values: Any) -> Any:
    import pyarrow as pa

    if name == EMBEDDING:
        array = np.ascontiguousarray(values, dtype=np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1), type=pa.float32()), array.shape[1])
    if name in FLOAT32:
        return pa.array(np.asarray(values, dtype=np.float32), type=pa.float32())
    if name in FLOAT64:
        return pa.array(np.asarray(values, dtype=np.float64), type=pa.float64())
    if name in INT32:
        return pa.array(np.asarray(values, dtype=np.int32), type=pa.int32())
    if name in STRING:
        return pa.array([str(v) for v in values], type=pa.string())
    return pa.array(values)


def _write_parquet(path: Path, columns: dict[str, Any], provenance: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = [_arrow_column(name, values) for name, values in columns.items()]
    table = pa.Table.from_arrays(arrays, names=list(columns))
    table = table.replace_schema_metadata({str(k): _json(v) for k, v in provenance.items()})
    pq.write_table(table, str(path))


def _read_csv_header(fh: Any, path: Path) -> tuple[dict[str, Any], str]:
    """Provenance from the ``#`` lines; returns it and the first non-comment line."""
    provenance: dict[str, Any] = {}
    for line in fh:
        if not line.startswith("#"):
            return provenance, line
        body = line[1:].strip()
        if not body:
            continue
        key, sep, value = body.partition(": ")
        if not sep:
            key, value = body.rstrip(":"), "null"
        try:
            provenance[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            provenance[key.strip()] = value
    return provenance, ""


def read_provenance(path: str | Path) -> dict[str, Any]:
    """Only the provenance of a table (CSV header lines or Parquet metadata); cheap for big files."""
    p = Path(path)
    if format_of(p) == "csv":
        with p.open("r", encoding="utf-8", newline="") as fh:
            return _read_csv_header(fh, p)[0]
    import pyarrow.parquet as pq

    return _metadata(pq.read_schema(str(p)).metadata)


def _metadata(raw: dict[bytes, bytes] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (raw or {}).items():
        key = k.decode("utf-8", "replace")
        if key.startswith("ARROW:") or key == "pandas":
            continue
        text = v.decode("utf-8", "replace")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _typed(name: str, cells: list[str]) -> np.ndarray:
    if name in FLOAT64:
        return np.array([float(c) for c in cells], dtype=np.float64)
    if name in FLOAT32:
        return np.array([float(c) for c in cells], dtype=np.float64).astype(np.float32)
    if name in INT32:
        return np.array([int(c) for c in cells], dtype=np.int32)
    return np.array(cells, dtype=object)


def _stack(vectors: list[np.ndarray], dim: Any, path: Path) -> np.ndarray:
    if not vectors:
        return np.zeros((0, int(dim) if isinstance(dim, int) else 0), dtype=np.float32)
    sizes = {v.shape[0] for v in vectors}
    if len(sizes) != 1:
        raise TableError(f"{path}: embeddings of different lengths {sorted(sizes)}")
    return np.stack(vectors).astype(np.float32, copy=False)


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with path.open("r", encoding="utf-8", newline="") as fh:
        provenance, first = _read_csv_header(fh, path)
        if not first:
            raise TableError(f"{path}: no column names after the provenance header")
        rows = csv.reader(io.StringIO(first + fh.read()))
        header = next(rows)
        cells: list[list[str]] = [[] for _ in header]
        for n, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise TableError(f"{path}: data row {n - 1} has {len(row)} cells, not {len(header)}")
            for column, cell in zip(cells, row):
                column.append(cell)
    columns: dict[str, np.ndarray] = {}
    for name, values in zip(header, cells):
        if name == EMBEDDING:
            try:
                columns[name] = _stack([decode_embedding(v) for v in values], provenance.get("embedding_dim"), path)
            except (ValueError, TypeError) as exc:
                raise TableError(f"{path}: embedding column: {exc}") from None
        else:
            columns[name] = _typed(name, values)
    return columns, provenance


def _numpy_column(name: str, column: Any, path: Path, dim: Any) -> np.ndarray:
    import pyarrow as pa

    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    kind = array.type
    if name == EMBEDDING or pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) \
            or pa.types.is_large_list(kind) or pa.types.is_binary(kind) or pa.types.is_fixed_size_binary(kind):
        if pa.types.is_fixed_size_list(kind):
            flat = np.asarray(array.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
            return flat.reshape(len(array), kind.list_size)
        if pa.types.is_binary(kind) or pa.types.is_fixed_size_binary(kind) or pa.types.is_large_binary(kind):
            return _stack([np.frombuffer(b, dtype="<f4").astype(np.float32) for b in array.to_pylist()], dim, path)
        return _stack([np.asarray(v, dtype=np.float32) for v in array.to_pylist()], dim, path)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.array(array.to_pylist(), dtype=object)
    return array.to_numpy(zero_copy_only=False)


def _read_parquet(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(str(path))
    provenance = _metadata(table.schema.metadata)
    columns = {name: _numpy_column(name, table.column(name), path, provenance.get("embedding_dim"))
               for name in table.column_names}
    return columns, provenance


def read_table(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a runner table.

    Returns
    -------
    columns : dict
        Column name -> numpy array (``embedding``: float32 [T, D]; ``start``/``end``/``distance``
        float64; ``score`` float32; ``source_separation_channel`` int32; text columns object arrays).
    provenance : dict
        The header (CSV) or key-value metadata (Parquet), JSON values decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise TableError(f"{p}: file not found")
    return _read_csv(p) if format_of(p) == "csv" else _read_parquet(p)


def read_embeddings(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Read a ``generate`` (or ``distance``) table back.

    Returns
    -------
    table : dict
        The other columns (``start``, ``end``, ``source_separation_channel``, ...), numpy arrays.
    embeddings : numpy.ndarray
        float32 [T, D], bit for bit what was written.
    provenance : dict
    """
    columns, provenance = read_table(path)
    if EMBEDDING not in columns:
        raise TableError(f"{path}: no {EMBEDDING!r} column (columns: {', '.join(columns)})")
    embeddings = columns.pop(EMBEDDING)
    return columns, embeddings, provenance
