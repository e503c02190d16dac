"""``perch_runner.py export``: embeddings from a store, a hoplite database or tables, into one table of any layout.

Streaming: an HDF5 store is read one recording at a time and rows go out in blocks of
``block_rows`` (Parquet row groups, CSV lines), so memory stays that of one block plus one
recording whatever the corpus size (``benchmarks/bench_export.py``: 1,000,000 windows).
Layouts are :mod:`.tables`'s: ``wide`` (``f0000...`` float32 columns, for R and spreadsheets),
``ours`` (base64 float32 in CSV, a fixed-size list in Parquet), ``perch-runner``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .sources import SourceError, iter_store_items, iter_table_items, kind_of, read_hoplite_items
from .tables import (FORMATS, LAYOUTS, TableError, _arrow_column, _csv_cells, _json, format_of,
                     perch_runner_footer, sidecar_path, to_layout)

BLOCK_ROWS = 8192


def _items(source: str | Path) -> Iterator[Any]:
    kind = kind_of(source)
    if kind == "store":
        return iter_store_items(source)
    if kind in ("table", "tables"):
        return iter_table_items(source)
    if kind == "hoplite":
        return iter(read_hoplite_items(source))
    raise SourceError(f"{source}: not an HDF5 store, a hoplite database or embeddings tables")


def _blocks(source: str | Path, block_rows: int) -> Iterator[dict[str, Any]]:
    """Our columns (``source, start, end, source_separation_channel, embedding``) in blocks of about ``block_rows``."""
    pending: list[Any] = []
    n = 0

    def flush() -> dict[str, Any]:
        return {"source": np.concatenate([np.full(len(i.time_axis_s), i.source, dtype=object) for i in pending]),
                "start": np.concatenate([i.time_axis_s for i in pending]),
                "end": np.concatenate([i.ends_s for i in pending]),
                "source_separation_channel": np.concatenate([i.channel for i in pending]).astype(np.int32),
                "embedding": np.concatenate([i.embeddings for i in pending]).astype(np.float32, copy=False)}

    for item in _items(source):
        pending.append(item)
        n += len(item.time_axis_s)
        if n >= block_rows:
            yield flush()
            pending, n = [], 0
    if pending:
        yield flush()


def export(source: str | Path, output: str | Path, *, layout: str = "wide", fmt: str | None = None,
           block_rows: int = BLOCK_ROWS) -> dict[str, Any]:
    """Write every window of ``source`` to one table ``output``.

    Parameters
    ----------
    source : path
        An HDF5 corpus store, a perch-hoplite database folder, an embeddings table or a folder of them.
    output : path
        ``.csv`` or ``.parquet`` (or ``fmt``).
    layout : {"wide", "ours", "perch-runner"}
    block_rows : int
        Rows per write (Parquet row group).

    Returns
    -------
    dict
        ``rows``, ``embedding_dim``, ``layout``, ``format``, ``output``.
    """
    from ..outputs.atomic import atomic_path, write_text_atomic

    if layout not in LAYOUTS:
        raise TableError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    out = Path(output)
    fmt = fmt or format_of(out)
    if fmt not in FORMATS:
        raise TableError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    provenance = {"command": "export", "input": str(source), "layout": layout}
    rows, dim = 0, None
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=out.suffix) as tmp:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for block in _blocks(source, block_rows):
                    dim = dim or block["embedding"].shape[1]
                    cols = to_layout(block, layout)
                    table = pa.Table.from_arrays([_arrow_column(k, v) for k, v in cols.items()], names=list(cols))
                    if writer is None:
                        footer = {**{k: _json(v) for k, v in provenance.items()}, "embedding_dim": str(dim)}
                        if layout == "perch-runner":
                            footer.update(perch_runner_footer(provenance))
                        # dictionary encoding only for text columns: on float columns it buffers a
                        # dictionary per column chunk and gains nothing
                        text = [f.name for f in table.schema if pa.types.is_string(f.type)]
                        writer = pq.ParquetWriter(str(tmp), table.schema.with_metadata(footer), use_dictionary=text)
                    writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
                    rows += table.num_rows
            finally:
                if writer is not None:
                    writer.close()
            if writer is None:
                raise SourceError(f"{source}: no windows to export")
        else:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                for block in _blocks(source, block_rows):
                    dim = dim or block["embedding"].shape[1]
                    cols = to_layout(block, layout)
                    if rows == 0:
                        w.writerow(list(cols))
                    w.writerows(zip(*(_csv_cells(k, v) for k, v in cols.items())))
                    rows += len(block["start"])
            if rows == 0:
                raise SourceError(f"{source}: no windows to export")
    if fmt == "csv":
        write_text_atomic(sidecar_path(out), json.dumps({**provenance, "embedding_dim": dim}, indent=1) + "\n")
    return {"rows": rows, "embedding_dim": dim, "layout": layout, "format": fmt, "output": str(out)}


__all__ = ["export", "BLOCK_ROWS"]
