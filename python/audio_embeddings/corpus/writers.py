"""Per-file outputs of a corpus run, mirroring the input tree (``a/b/x.wav`` -> ``a/b/x.npy``).

Every writer here takes the same calls from the corpus engine: ``is_complete(key, stamp=None)``,
``write(key, result, *, input_path, audio_info, stamp=None) -> dict`` and ``close()``, plus
``stored_stamp(key)`` (see :mod:`~audio_embeddings.corpus.stamps`). With a stamp, a file is done only
when its outputs are whole and were made by the same settings from the same input; without one
(older callers), when its completion marker is whole (not empty, not truncated).

Names are kept apart: a top-level input whose outputs would take a run file's name
(``summary.wav`` -> ``summary.json``) writes ``_summary.*`` instead (:func:`output_base`), and an
input whose extra outputs would overwrite another input's (``x.wav``'s ``x_utterance_embedding.npy``
against ``x_utterance_embedding.wav``) fails with both names (:class:`OutputClash`).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np

from ..atomic import ensure_free_space, write_text_atomic
from ..outputs.contract import output_files, outputs_whole, read_stamp, stamp_path, write_outputs

#: Top-level names of a run's own files in the output folder (``summary.json``, ``summary.<shard>.json``,
#: ``failures.csv``...): an input at the top of the tree with one of these stems gets ``_`` in front.
RUN_FILE_STEMS = ("summary", "failures")
#: Top-level entries of the output folder that belong to the run (lock, run file, scratch).
RUN_ENTRY_PREFIXES = (".audio_embeddings", ".scratch", ".write-check")


class OutputClash(ValueError):
    """One input's outputs would overwrite another's (or a run file)."""


def _reserved(first: str, *, single: bool) -> bool:
    name = first.casefold()
    if name.startswith(RUN_ENTRY_PREFIXES):
        return True
    return single and any(name == s or name.startswith(s + ".") for s in RUN_FILE_STEMS)


def output_base(key: str) -> str:
    """``a/b/x.wav`` -> ``a/b/x`` (the extension is dropped, the tree kept).

    A key whose outputs would take the name of a run file (``summary.wav`` -> ``summary.json``,
    ``failures.flac``, ``.scratch/...``) gets ``_`` in front: ``_summary``.
    """
    base = PurePosixPath(key).with_suffix("").as_posix()
    parts = base.split("/")
    if _reserved(parts[0], single=len(parts) == 1):
        return "_" + base
    return base


def renamed_keys(keys: Iterable[str]) -> list[tuple[str, str]]:
    """(key, output base) of the keys :func:`output_base` moves away from a run file's name."""
    return [(k, b) for k in keys if (b := output_base(k)) != PurePosixPath(k).with_suffix("").as_posix()]


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


def _estimate_bytes(result: Any, formats: tuple[str, ...]) -> int:
    """About how many bytes one file's outputs take (for the free-space check before writing)."""
    emb = int(np.asarray(result.embeddings).nbytes)
    extras = sum(int(np.asarray(v).nbytes) for v in result.extras.values())
    binary = sum(f in formats for f in ("npy", "mat"))
    text = (3 * emb if "txt" in formats else 0) + (2 ** 16 if "json" in formats else 0)
    return binary * (emb + extras) + text + 2 ** 16


def _sizes_match(sizes: dict[str, int]) -> bool:
    """Every file is there at its recorded size."""
    try:
        return all(os.stat(path).st_size == size for path, size in sizes.items())
    except OSError:
        return False


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
    plot : bool
        Also write ``<base>.png`` (:func:`audio_embeddings.plots.plot_result`: the waveform over the rows).
    corpus_keys : iterable of str, optional
        Every key of the corpus (all shards): a file whose extra outputs (``<base>_<extra>.npy``,
        ``<base>_aligned.npy``) would overwrite one of their outputs fails (see :meth:`claim_keys`).
    """

    supports_stamps = True

    def __init__(self, output_dir: str | Path, *, formats: Iterable[str], run_info: dict[str, Any],
                 basename: str | None = None, top_k: int = 0, classes: list[str] | None = None,
                 align: Any = None, corpus_keys: Iterable[str] | None = None, plot: bool = False):
        self.align = align
        self.plot = bool(plot)
        self.output_dir = Path(output_dir)
        self.formats = tuple(formats)
        self.run_info = run_info
        self.basename = basename
        self.top_k = int(top_k)
        self.classes = classes
        self._claimed: dict[str, str] = {}
        self._derived: dict[str, str] = {}
        self._bases: dict[str, Path] = {}  # key -> output base (asked for several times per file)
        self._written: dict[str, tuple] = {}  # key -> (stamp, {file: size}) of the outputs this writer completed
        if corpus_keys is not None:
            self.claim_keys(corpus_keys)

    def claim_keys(self, keys: Iterable[str]) -> None:
        """Note the output bases of ``keys`` (the whole corpus), so no file's extras overwrite them."""
        for key in keys:
            self._claimed.setdefault(self._rel_base(key), key)

    def _rel_base(self, key: str) -> str:
        return self.basename or output_base(key)

    def base(self, key: str) -> Path:
        base = self._bases.get(key)
        if base is None:
            base = self._bases[key] = self.output_dir / self._rel_base(key)
        return base

    def stored_stamp(self, key: str) -> dict[str, Any] | None:
        """The stamp recorded with ``key``'s outputs when they are whole; None otherwise."""
        return read_stamp(self.base(key))

    def is_complete(self, key: str, stamp: dict[str, Any] | None = None) -> bool:
        """``key``'s outputs are whole and, given ``stamp``, were made by the same settings from the same input.

        Without a stamp: the completion marker (the last output written) exists and is whole.
        """
        if stamp is None:
            return outputs_whole(self.base(key), self.formats)
        from .stamps import stamp_difference

        if key in self._written:  # completed by this writer: its files still at their sizes, no sidecar to read
            written, sizes = self._written[key]
            return _sizes_match(sizes) and stamp_difference(written, stamp) is None
        return stamp_difference(self.stored_stamp(key), stamp) is None

    def input_stamp_fields(self, key: str) -> dict[str, Any]:
        """What of ``key``'s own alignment files its stamp records (:meth:`AlignSettings.input_fields`)."""
        return self.align.input_fields(key) if self.align is not None else {}

    def _check_derived(self, key: str, result: Any) -> None:
        """Raise :class:`OutputClash` when ``key``'s extra ``.npy`` files would overwrite other outputs."""
        if "npy" not in self.formats or self.basename:
            return
        rel = self._rel_base(key)
        derived = [f"{rel}_{name}" for name in result.extras] + ([f"{rel}_aligned"] if self.align is not None else [])
        for name in derived:
            other = self._claimed.get(name) or self._derived.get(name)
            if other is not None and other != key:
                raise OutputClash(f"{key}: its extra output {name}.npy would overwrite the outputs of {other}; "
                                  "rename one of the two files")
        for name in derived:
            self._derived[name] = key

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any],
              stamp: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write one file's outputs (then, given ``stamp``, the sidecar that marks them complete).

        Returns their paths and any ``.mat`` error.

        Raises
        ------
        OutputClash
            An extra output would overwrite another input's outputs; nothing is written.
        NoSpaceError
            The outputs do not fit on the device; nothing is written.
        """
        self._check_derived(key, result)
        base = self.base(key)
        info = self.run_info
        ensure_free_space(base.parent if base.parent.exists() else self.output_dir,
                          _estimate_bytes(result, self.formats))
        self._written.pop(key, None)
        if stamp is not None and (self.plot or (self.top_k > 0 and "label" in result.extras)):
            # files written before the staged outputs: the old outputs stop counting as complete first
            stamp_path(base).unlink(missing_ok=True)
        annotations = {}
        labels = []
        if self.top_k > 0 and "label" in result.extras:
            rows = top_labels(result.extras["label"], result.time_axis_s, k=self.top_k, classes=self.classes)
            labels.append(write_text_atomic(base.with_name(base.name + "_labels.csv"), top_labels_csv(rows)))
            annotations["top_labels"] = rows
        if self.plot:  # before the outputs, whose last file marks the key complete
            from ..plots import plot_result

            plot_result(result, None if input_path == "<memory>" else input_path, path=base, classes=self.classes,
                        top_k=max(self.top_k, 3))
            labels.append(base.with_name(base.name + ".png"))
        written = write_outputs(
            result, output_dir=base.parent, basename=base.name, model_name=info["model_name"],
            backend_info=info["backend_info"], backend_fields=info["backend_fields"], input_path=input_path,
            audio_info=audio_info, started_at=info["started_at"], formats=self.formats,
            mat_version=info.get("mat_version", "auto"), argv=info.get("argv"), annotations=annotations,
            align=self.align.for_input(key) if self.align is not None else None,  # its own events/TR (a folder)
            stamp=stamp, stamp_key=key, also_written=labels,
        )
        if stamp is not None:
            files = output_files(base, written, labels) + [stamp_path(base)]
            self._written[key] = (dict(stamp), {str(f): os.stat(f).st_size for f in files})
        return written

    def close(self) -> None:
        """Nothing is buffered."""


class StampedWriter:
    """Give a writer the stamps of a run's inputs, for an engine that calls ``is_complete(key)`` and
    ``write(key, result, input_path=, audio_info=)`` only.

    Parameters
    ----------
    writer : TreeWriter, StoreWriter or SpeakerWriter
        Any writer with ``stored_stamp``, ``is_complete(key, stamp)`` and ``write(..., stamp=)``.
    items : iterable of CorpusItem
        The inputs (``key`` -> ``path``) this process writes.
    stamper : Stamper
        The run's settings hash and input checks.

    Attributes
    ----------
    stale : dict
        ``key`` -> why its existing outputs do not count (filled by :meth:`is_complete`).
    """

    def __init__(self, writer: Any, items: Iterable[Any], *, stamper: Any):
        self.writer = writer
        items = list(items)
        self.paths = {i.key: str(i.path) for i in items}
        self.fields = {i.key: f for i in items if (f := getattr(i, "stamp_fields", None))}  # segment, command
        self._own = getattr(writer, "input_stamp_fields", None)  # e.g. the digest of the input's own events file
        self.stamper = stamper
        self.stale: dict[str, str] = {}
        self._complete: dict[str, bool] = {}
        self._written: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:  # base(), store_path, ... of the wrapped writer
        if name == "writer":
            raise AttributeError(name)
        return getattr(self.writer, name)

    def stored_stamp(self, key: str) -> dict[str, Any] | None:
        return self.writer.stored_stamp(key)

    def is_complete(self, key: str, stamp: dict[str, Any] | None = None) -> bool:
        """The outputs of ``key`` exist, are whole and match its input and the run's settings.

        Before this run wrote ``key``: checked once against the input (cached). After: whether the
        writer holds it under the stamp written (a store's open part is not complete until committed).
        """
        if key in self._written:
            return self.writer.is_complete(key, self._written[key])
        if key not in self._complete:
            stored = self.writer.stored_stamp(key)
            fields = self._fields(key)
            if fields is not None and "align_inputs" in fields and fields["align_inputs"] is None:
                self._complete[key] = False  # its events file or sidecar is missing: redone, and fails saying so
                return False
            diff = self.stamper.difference(stored, self.paths.get(key, key), item=fields)
            if diff is None and fields is not None and stored.get("align_inputs") != fields.get("align_inputs"):
                diff = "were made from another version of its events file or bold sidecar"
            self._complete[key] = diff is None
            if diff is not None and stored is not None:
                self.stale[key] = diff
        return self._complete[key]

    def _fields(self, key: str) -> dict[str, Any] | None:
        """The item's stamp fields (segment, command) plus the writer's for it (``align_inputs``: the sha256 of
        its own events file or bold sidecar, when those come from a folder; None when it has none)."""
        fields = dict(self.fields.get(key) or {})
        if self._own is not None:
            try:
                fields.update(self._own(key))
            except ValueError:  # no events file for it: not complete; writing it fails with that line
                fields["align_inputs"] = None
        return fields or None

    def first_stale(self, keys: Iterable[str]) -> tuple[str, str, int] | None:
        """(key, reason, how many) of the first key whose outputs exist but belong to other settings or input."""
        found = [k for k in keys if not self.is_complete(k) and k in self.stale]
        return (found[0], self.stale[found[0]], len(found)) if found else None

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any],
              stamp: dict[str, Any] | None = None) -> dict[str, Any]:
        """The wrapped writer's ``write`` with the input's stamp (taken now, checked against its state
        before decoding; the content hash is the decoder's, ``audio_info["input_sha256"]``, when it made one)."""
        if stamp is None:
            stamp = self.stamper.full(self.paths.get(key, input_path), sha256=audio_info.get("input_sha256"),
                                      item=self._fields(key))
        out = self.writer.write(key, result, input_path=input_path, audio_info=audio_info, stamp=stamp)
        self._written[key] = stamp
        self.stale.pop(key, None)
        return out

    def close(self) -> None:
        self.writer.close()
