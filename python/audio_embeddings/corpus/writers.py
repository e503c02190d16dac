"""Per-file outputs of a corpus run, mirroring the input tree (``a/b/x.wav`` -> ``a/b/x.npy``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np

from ..outputs.atomic import write_text_atomic
from ..outputs.contract import completion_marker, write_outputs


def output_base(key: str) -> str:
    """``a/b/x.wav`` -> ``a/b/x`` (the extension is dropped, the tree kept)."""
    return PurePosixPath(key).with_suffix("").as_posix()


def top_labels(logits: np.ndarray, time_axis_s: np.ndarray, *, k: int,
               classes: list[str] | None = None) -> list[dict[str, Any]]:
    """The ``k`` highest logits of each row: ``[{"start_s", "labels": [[name, logit], ...]}, ...]``.

    ``logits`` is float [T, C]; names come from ``classes`` (else the class index).
    """
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [{"start_s": round(float(t), 6),
             "labels": [[classes[c] if classes else str(int(c)), round(float(row[c]), 6)] for c in idx]}
            for t, row, idx in zip(time_axis_s, logits, order)]


def top_labels_csv(rows: list[dict[str, Any]]) -> str:
    """``start_s,rank,label,logit`` lines for :func:`top_labels`."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["start_s", "rank", "label", "logit"])
    for row in rows:
        out.writerows([row["start_s"], rank, name, logit] for rank, (name, logit) in enumerate(row["labels"], 1))
    return buf.getvalue()


def colliding_keys(keys: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of keys that would write the same outputs (``x.wav`` and ``x.flac`` in one folder)."""
    seen: dict[str, str] = {}
    clashes = []
    for key in keys:
        base = output_base(key)
        if base in seen:
            clashes.append((seen[base], key))
        else:
            seen[base] = key
    return clashes


class TreeWriter:
    """Writes ``<output_dir>/<key without extension>.{npy,mat,json}`` per file.

    Parameters
    ----------
    output_dir : path-like
    formats : iterable of {"npy", "mat", "json"}
    run_info : dict
        ``model_name``, ``backend_info``, ``backend_fields``, ``started_at``, ``mat_version``, ``argv``.
    basename : str, optional
        Name of the outputs of a single-file run (instead of the key).
    top_k : int
        With per-row ``label`` logits: the top ``k`` labels per row into the ``.json``
        (``top_labels``) and ``<base>_labels.csv``.
    classes : list of str, optional
        Label names for ``top_k``.
    align : AlignSettings, optional
        Also write the rows aligned to a brain-data time grid (see :mod:`audio_embeddings.align`).
    """

    def __init__(self, output_dir: str | Path, *, formats: Iterable[str], run_info: dict[str, Any],
                 basename: str | None = None, top_k: int = 0, classes: list[str] | None = None,
                 align: Any = None):
        self.align = align
        self.output_dir = Path(output_dir)
        self.formats = tuple(formats)
        self.run_info = run_info
        self.basename = basename
        self.top_k = int(top_k)
        self.classes = classes

    def base(self, key: str) -> Path:
        return self.output_dir / (self.basename or output_base(key))

    def is_complete(self, key: str) -> bool:
        """All requested outputs of ``key`` exist (the last-written one is there)."""
        return any(p.exists() for p in completion_marker(self.base(key), self.formats))

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any]) -> dict[str, Any]:
        """Write one file's outputs; returns their paths and any ``.mat`` error."""
        base = self.base(key)
        info = self.run_info
        annotations = {}
        if self.top_k > 0 and "label" in result.extras:
            rows = top_labels(result.extras["label"], result.time_axis_s, k=self.top_k, classes=self.classes)
            write_text_atomic(base.with_name(base.name + "_labels.csv"), top_labels_csv(rows))
            annotations["top_labels"] = rows
        return write_outputs(
            result, output_dir=base.parent, basename=base.name, model_name=info["model_name"],
            backend_info=info["backend_info"], backend_fields=info["backend_fields"], input_path=input_path,
            audio_info=audio_info, started_at=info["started_at"], formats=self.formats,
            mat_version=info.get("mat_version", "auto"), argv=info.get("argv"), annotations=annotations,
            align=self.align,
        )

    def close(self) -> None:
        """Nothing is buffered."""
