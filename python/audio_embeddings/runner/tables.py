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

``source`` (text, first column) names the recording a row comes from: its path relative to the
input folder (the file name for one file, the row's ``source`` in batch mode).

Provenance is a flat mapping of keys to JSON values: in Parquet the file's key-value metadata
(value = the JSON text); for CSV a sidecar ``<table>.csv.json`` next to the table (written first,
so the table's presence marks a finished file), and the CSV itself is plain:
``pandas.read_csv(path)`` reads it with its defaults. (Tables of earlier versions carry the
provenance as ``# key: <json>`` lines before the column names; they are still read.)
:func:`read_table` / :func:`read_embeddings` give every value back exactly.

perch-runner's layouts (QutEcoacoustics/perch-runner, ``src/db_to_table.py``) are read too:
``source, channel, offset`` with either ``f0000 ...`` float columns (its ``columns`` format, and
older files, often float16) or ``embeddings``, the base64 of the float32 vector (``serialized``);
Parquet footers ``perch_runner.version``, ``perch_hoplite.version``, ``perch_runner.config_json``.
:func:`read_embeddings` maps them to our names (``offset`` -> ``start``, ``channel`` ->
``source_separation_channel``; ``end`` = ``start`` + the window when the model is known).
``layout="perch-runner"`` in :func:`write_table` writes their names and footer keys.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..atomic import atomic_path

FORMATS = ("csv", "parquet")
SUFFIXES = {"csv": ".csv", "parquet": ".parquet"}
EMBEDDING = "embedding"
SOURCE = "source"
LAYOUTS = ("ours", "perch-runner", "wide")
WINDOW_COLUMNS = (SOURCE, "start", "end", "source_separation_channel")
EMBEDDING_COLUMNS = (*WINDOW_COLUMNS, EMBEDDING)
CLASSIFY_COLUMNS = (*WINDOW_COLUMNS, "classifier", "label", "score")
DISTANCE_COLUMNS = (*EMBEDDING_COLUMNS, "distance")
FLOAT64 = ("start", "end", "distance")
FLOAT32 = ("score",)
INT32 = ("source_separation_channel",)
STRING = ("classifier", "label", SOURCE, "query")
#: perch-runner's names for ours (``embedding`` is ``embeddings`` there, base64 float32).
PERCH_RUNNER_NAMES = {"start": "offset", "source_separation_channel": "channel", EMBEDDING: "embeddings",
                      "classifier": "recognizer"}
PERCH_RUNNER_FOOTER = ("perch_runner.version", "perch_hoplite.version", "perch_runner.config_json")
#: Window length of the models perch-runner runs, for ``end`` of its tables (its tables have no end column).
PERCH_RUNNER_WINDOW_S = {"perch_v2": 5.0, "perch_8": 5.0, "perch": 5.0, "birdnet": 3.0, "surfperch": 5.0}
#: Units and meaning, recorded in every file under ``columns``.
COLUMN_DOCS = {
    "source": "the recording: its path relative to the input folder (file name for one file)",
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


def sidecar_path(path: str | Path) -> Path:
    """Where a CSV table's provenance goes: ``x.embeddings.csv`` -> ``x.embeddings.csv.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def to_layout(columns: dict[str, Any], layout: str) -> dict[str, Any]:
    """Our columns under ``layout``'s names (``perch-runner``: ``source, channel, offset, ...``, no ``end``)."""
    if layout == "ours":
        return dict(columns)
    if layout == "wide":  # one float32 column per dimension, f0000... (perch-runner's `columns` naming)
        out = {k: v for k, v in columns.items() if k != EMBEDDING}
        if EMBEDDING in columns:
            matrix = np.asarray(columns[EMBEDDING], dtype=np.float32)
            width = max(4, len(str(matrix.shape[1] - 1)))
            out.update({f"f{i:0{width}d}": matrix[:, i] for i in range(matrix.shape[1])})
        return out
    if layout != "perch-runner":
        raise TableError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    order = [SOURCE, "source_separation_channel", "start"] + [c for c in columns if c not in WINDOW_COLUMNS]
    return {PERCH_RUNNER_NAMES.get(c, c): columns[c] for c in order if c in columns}


def perch_runner_footer(provenance: dict[str, Any]) -> dict[str, str]:
    """perch-runner's three footer keys, from our provenance (``config_json``: the effective settings)."""
    import json as _j
    from importlib import metadata

    try:
        hoplite = metadata.version("perch-hoplite")
    except metadata.PackageNotFoundError:
        hoplite = "not installed"
    ours = (provenance.get("versions") or {}).get("audio_embeddings", "")
    config = {"model_choice": provenance.get("model"), "model_spec": provenance.get("model_spec"),
              "hop_length_seconds": provenance.get("hop_s"), "window_s": provenance.get("window_s"),
              "embedding_dim": provenance.get("embedding_dim"), "command": provenance.get("command"),
              "config": provenance.get("config")}
    return {"perch_runner.version": f"audio_embeddings {ours}".strip(), "perch_hoplite.version": hoplite,
            "perch_runner.config_json": _j.dumps(config, sort_keys=True, default=str)}


def write_table(path: str | Path, columns: dict[str, Any], provenance: dict[str, Any], *,
                fmt: str | None = None, layout: str = "ours") -> Path:
    """Write a table atomically (a temporary sibling renamed into place).

    Parameters
    ----------
    path : path-like
    columns : dict
        Column name -> 1-D values (``embedding``: float32 [T, D]), in output order, under our names.
    provenance : dict
        Flat mapping, JSON-able values; keys are plain words. CSV: written to
        :func:`sidecar_path` first; Parquet: the file's key-value metadata.
    fmt : {"csv", "parquet"}, optional
        Default: from the suffix.
    layout : {"ours", "perch-runner"}
        ``perch-runner``: its column names (``source, channel, offset, embeddings``, no ``end``) and,
        in Parquet, its footer keys besides ours.
    """
    from ..atomic import write_text_atomic

    fmt = fmt or format_of(path)
    if fmt not in FORMATS:
        raise TableError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    _check_columns(columns)
    bad = [k for k in provenance if not str(k).replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise TableError(f"provenance keys must be plain words, got {bad}")
    provenance = {**provenance, "layout": layout}
    out = to_layout(columns, layout)
    if fmt == "csv":  # the table, then its provenance: a kill between leaves the old record (or none), never a
        # new record over old rows, so a rerun redoes the table
        with atomic_path(path, suffix=".csv") as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
            _write_csv(fh, out)
        write_text_atomic(sidecar_path(path), json.dumps(provenance, indent=1, ensure_ascii=False, default=str) + "\n")
    else:
        footer = {str(k): _json(v) for k, v in provenance.items()}
        if layout == "perch-runner":
            footer.update(perch_runner_footer(provenance))
        with atomic_path(path, suffix=".parquet") as tmp:
            _write_parquet(tmp, out, footer)
    return Path(path)


def _csv_cells(name: str, values: Any) -> Iterable[str]:
    if name in (EMBEDDING, "embeddings"):
        return (encode_embedding(v) for v in np.asarray(values, dtype=np.float32))
    if name in FLOAT32 or _FEATURE.match(name):
        return (str(v) for v in np.asarray(values, dtype=np.float32))  # numpy: shortest float32 text
    if name in FLOAT64 or name == "offset":
        return (repr(float(v)) for v in np.asarray(values, dtype=np.float64))
    if name in INT32 or name == "channel":
        return (str(int(v)) for v in values)
    return (str(v) for v in values)


def _write_csv(fh: Any, columns: dict[str, Any]) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*(_csv_cells(name, values) for name, values in columns.items())))


def _arrow_column(name: str, values: Any) -> Any:
    import pyarrow as pa

    if name == EMBEDDING:
        array = np.ascontiguousarray(values, dtype=np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1), type=pa.float32()), array.shape[1])
    if name == "embeddings":  # perch-runner: base64 text
        return pa.array([encode_embedding(v) for v in np.asarray(values, dtype=np.float32)], type=pa.string())
    if name in FLOAT32 or _FEATURE.match(name):
        return pa.array(np.asarray(values, dtype=np.float32), type=pa.float32())
    if name in FLOAT64 or name == "offset":
        return pa.array(np.asarray(values, dtype=np.float64), type=pa.float64())
    if name in INT32:
        return pa.array(np.asarray(values, dtype=np.int32), type=pa.int32())
    if name == "channel":
        return pa.array(np.asarray(values, dtype=np.int64), type=pa.int64())
    if name in STRING or name == "recognizer":
        return pa.array([str(v) for v in values], type=pa.string())
    return pa.array(values)


def _write_parquet(path: Path, columns: dict[str, Any], footer: dict[str, str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = [_arrow_column(name, values) for name, values in columns.items()]
    table = pa.Table.from_arrays(arrays, names=list(columns))
    table = table.replace_schema_metadata(footer)
    pq.write_table(table, str(path))


def _read_csv_header(fh: Any, path: Path) -> tuple[dict[str, Any], str]:
    """Provenance from ``#`` lines (tables of earlier versions); returns it and the first other line."""
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


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TableError(f"{side}: unreadable provenance ({exc})") from None
    return data if isinstance(data, dict) else None


def read_provenance(path: str | Path) -> dict[str, Any]:
    """Only the provenance of a table (CSV sidecar or ``#`` lines, Parquet metadata); cheap for big files."""
    p = Path(path)
    if format_of(p) == "csv":
        side = _read_sidecar(p)
        with p.open("r", encoding="utf-8", newline="") as fh:
            inline = _read_csv_header(fh, p)[0]
        return {**inline, **(side or {})}
    import pyarrow.parquet as pq

    return _metadata(pq.read_schema(str(p)).metadata)


def _metadata(raw: dict[bytes, bytes] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (raw or {}).items():
        key = k.decode("utf-8", "replace")
        if key.startswith("ARROW:") or key == "pandas":
            continue
        text = v.decode("utf-8", "replace")
        if key in PERCH_RUNNER_FOOTER[:2]:
            out[key] = text  # version strings, not JSON
            continue
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _typed(name: str, cells: list[str]) -> np.ndarray:
    if name in FLOAT64 or name == "offset":
        return np.array([float(c) for c in cells], dtype=np.float64)
    if name in FLOAT32:
        return np.array([float(c) for c in cells], dtype=np.float64).astype(np.float32)
    if name in INT32 or name == "channel":
        return np.array([int(float(c)) for c in cells], dtype=np.int32)
    if _FEATURE.match(name):
        return np.array([float(c) for c in cells], dtype=np.float32)
    return np.array(cells, dtype=object)


def _stack(vectors: list[np.ndarray], dim: Any, path: Path) -> np.ndarray:
    if not vectors:
        return np.zeros((0, int(dim) if isinstance(dim, int) else 0), dtype=np.float32)
    sizes = {v.shape[0] for v in vectors}
    if len(sizes) != 1:
        raise TableError(f"{path}: embeddings of different lengths {sorted(sizes)}")
    return np.stack(vectors).astype(np.float32, copy=False)


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    side = _read_sidecar(path)
    with path.open("r", encoding="utf-8", newline="") as fh:
        inline, first = _read_csv_header(fh, path)
        provenance = {**inline, **(side or {})}
        if not first:
            raise TableError(f"{path}: no column names")
        rows = csv.reader(io.StringIO(first + fh.read()))
        header = next(rows)
        cells: list[list[str]] = [[] for _ in header]
        for n, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise TableError(f"{path}: data row {n - 1} has {len(row)} cells, not {len(header)}")
            for column, cell in zip(cells, row):
                column.append(cell)
    columns: dict[str, np.ndarray] = {}
    for name, values in zip(header, cells):
        if name in (EMBEDDING, "embeddings"):
            try:
                columns[name] = _stack([decode_embedding(v) for v in values], provenance.get("embedding_dim"), path)
            except (ValueError, TypeError) as exc:
                raise TableError(f"{path}: {name} column: {exc}") from None
        else:
            columns[name] = _typed(name, values)
    return columns, provenance


def _numpy_column(name: str, column: Any, path: Path, dim: Any) -> np.ndarray:
    import pyarrow as pa

    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    kind = array.type
    if name == "embeddings" and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        try:
            return _stack([decode_embedding(v) for v in array.to_pylist()], dim, path)
        except (ValueError, TypeError) as exc:
            raise TableError(f"{path}: embeddings column: {exc}") from None
    if name in (EMBEDDING, "embeddings") or pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) \
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
    """Read a runner table, as written (our names or perch-runner's).

    Returns
    -------
    columns : dict
        Column name -> numpy array (``embedding``: float32 [T, D]; ``start``/``end``/``distance``
        float64; ``score`` float32; ``source_separation_channel`` int32; text columns object arrays).
    provenance : dict
        The sidecar (CSV) or key-value metadata (Parquet), JSON values decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise TableError(f"{p}: file not found")
    return _read_csv(p) if format_of(p) == "csv" else _read_parquet(p)


_FEATURE = re.compile(r"^f\d{4,}$")


def perch_runner_config(provenance: dict[str, Any]) -> dict[str, Any]:
    """perch-runner's ``perch_runner.config_json`` (or a bare ``config_json``) as a dict ({} when absent)."""
    for key in ("perch_runner.config_json", "config_json"):
        value = provenance.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                continue
        if isinstance(value, dict):
            return value
    return {}


def table_model(provenance: dict[str, Any]) -> str | None:
    """The embedding model a table records (ours: ``model``; perch-runner: ``model_choice`` in its config)."""
    model = provenance.get("model")
    if isinstance(model, str) and model:
        return model
    choice = perch_runner_config(provenance).get("model_choice")
    return str(choice) if choice else None


def read_embeddings(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Read a ``generate`` (or ``distance``) table back, ours or perch-runner's.

    Returns
    -------
    table : dict
        The other columns under our names (``source``, ``start``, ``end``, ``source_separation_channel``,
        ...), numpy arrays. perch-runner tables: ``offset`` -> ``start``, ``channel`` ->
        ``source_separation_channel``, ``end`` = ``start`` + the model's window when it is known
        (``provenance["window_s"]``, or perch-runner's ``model_choice``), else left out.
    embeddings : numpy.ndarray
        float32 [T, D], bit for bit what was written (perch-runner's float16 feature columns widened).
    provenance : dict
        Also ``layout``: ``ours`` or ``perch-runner`` (and ``perch-runner-columns`` for ``f0000`` tables).
    """
    columns, provenance = read_table(path)
    features = [c for c in columns if _FEATURE.match(c)]
    if EMBEDDING in columns:
        embeddings = columns.pop(EMBEDDING)
        provenance.setdefault("layout", "ours")
    elif "embeddings" in columns:
        embeddings = columns.pop("embeddings")
        provenance["layout"] = "perch-runner"
    elif features:
        features.sort(key=lambda c: int(c[1:]))
        embeddings = np.stack([np.asarray(columns.pop(c), dtype=np.float32) for c in features], axis=1)
        provenance["layout"] = "wide" if provenance.get("layout") == "wide" else "perch-runner-columns"
    else:
        raise TableError(f"{path}: no {EMBEDDING!r} column, nor perch-runner's 'embeddings' or f0000... columns "
                         f"(columns: {', '.join(columns)})")
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if "offset" in columns and "start" not in columns:
        columns["start"] = np.asarray(columns.pop("offset"), dtype=np.float64)
    if "channel" in columns and "source_separation_channel" not in columns:
        columns["source_separation_channel"] = np.asarray(columns.pop("channel"), dtype=np.int32)
    if "start" in columns and "end" not in columns:
        window = provenance.get("window_s")
        if not isinstance(window, (int, float)):
            window = PERCH_RUNNER_WINDOW_S.get(str(table_model(provenance) or "").lower())
        if isinstance(window, (int, float)):
            columns["end"] = np.asarray(columns["start"], dtype=np.float64) + float(window)
    order = [c for c in WINDOW_COLUMNS if c in columns] + [c for c in columns if c not in WINDOW_COLUMNS]
    return {c: columns[c] for c in order}, embeddings, provenance
