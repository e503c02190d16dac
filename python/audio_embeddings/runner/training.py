"""``train``: labelled clips through the corpus engine, one-vs-rest linear classifier, held-out metrics.

Writes ``<name>.json`` (the model, perch-hoplite's JSON layout), ``<name>.json.b64`` (its base64,
ready for a config's ``classifiers[].model``), ``<name>.metadata.json`` (held-out metrics, data,
model, provenance) and ``<name>.heldout.csv`` (the classify rows of every held-out window).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..app.session import hold_run_lock
from .classifier import ClassifierError, TrainResult, train_linear_classifier
from .commands import (EXIT_FAILED, EXIT_OK, TABLE_FORMAT, TABLE_FORMAT_VERSION, RunSettings, Target, UsageError,
                       jsonable, load_model, model_facts, read_list_file, run_engine, versions, WHOLE_RUN,
                       window_columns)
from .tables import COLUMN_DOCS, write_table

DEFAULT_CLASSIFIER_NAME = "linear_classifier"


class CollectWriter:
    """The engine's writer for ``train``: keeps each clip's result in memory."""

    def __init__(self):
        self.results: dict[str, Any] = {}

    def is_complete(self, key: str) -> bool:
        return False

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any]) -> dict[str, Any]:
        if np.asarray(result.embeddings).ndim != 2:
            raise ValueError(f"training takes [T, D] embeddings, got {list(np.shape(result.embeddings))}")
        self.results[key] = result
        return {}

    def close(self) -> None:
        """Nothing is buffered."""


@dataclass(frozen=True)
class LabelledClip:
    """A training clip: engine key, path, and its labels."""

    key: str
    path: str
    labels: tuple[str, ...]


def read_labelled(labelled: str | Path, *, negative_label: str | None = None
                  ) -> tuple[list[LabelledClip], tuple[str, ...]]:
    """Clips and labels from a folder with a sub-folder per label, or a CSV of ``path,label`` rows.

    In a CSV, a path on several rows has several labels; a header row ``path,label`` is optional;
    relative paths start at the CSV's folder. Clips under ``negative_label`` are negatives for
    every label and not a class (one other label gives a one-class classifier).

    Raises
    ------
    UsageError
        Neither form, no clips, or fewer than two labels.
    """
    from ..corpus.discover import CorpusError, discover

    p = Path(labelled)
    clips: dict[str, LabelledClip] = {}
    if p.is_dir():
        try:
            corpus = discover([str(p)])
        except CorpusError as exc:
            raise UsageError(f"{exc} (expected a sub-folder of clips per label)") from None
        loose = [item.path for item in corpus.items if "/" not in item.key]
        if loose:
            print(f"warning: {p}: {len(loose)} file(s) outside the label sub-folders are not used "
                  f"(e.g. {loose[0]})", file=sys.stderr)
        for item in corpus.items:
            if "/" in item.key:
                clips[item.key] = LabelledClip(item.key, item.path, (item.key.split("/", 1)[0],))
    elif p.is_file() and p.suffix.lower() in (".csv", ".tsv"):
        delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
        rows = [r for r in csv.reader(read_list_file(p, what="labelled CSV").splitlines(), delimiter=delimiter)
                if r and any(c.strip() for c in r)]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        if "path" in header and "label" in header:
            ip, il, rows = header.index("path"), header.index("label"), rows[1:]
        else:
            ip, il = 0, 1
        labels_of: dict[str, list[str]] = {}
        for n, row in enumerate(rows, start=1):
            if len(row) <= max(ip, il) or not row[ip].strip() or not row[il].strip():
                raise UsageError(f"{p}: row {n}: expected path,label")
            labels_of.setdefault(row[ip].strip(), [])
            if row[il].strip() not in labels_of[row[ip].strip()]:
                labels_of[row[ip].strip()].append(row[il].strip())
        for given, labels in labels_of.items():
            path = Path(given) if Path(given).is_absolute() else p.parent / given
            key = PurePosixPath(*Path(given).parts).as_posix()
            clips[key] = LabelledClip(key, str(path), tuple(labels))
    else:
        raise UsageError(f"{p}: LABELLED must be a folder with a sub-folder of clips per label, "
                         "or a CSV of path,label rows")
    if not clips:
        raise UsageError(f"{p}: no labelled clips found (expected a sub-folder of clips per label)")
    classes = tuple(sorted({label for c in clips.values() for label in c.labels}))
    if negative_label is not None:
        if negative_label not in classes:
            raise UsageError(f"{p}: no clips under the negative label {negative_label!r} (labels: {list(classes)})")
        classes = tuple(c for c in classes if c != negative_label)
        if not classes:
            raise UsageError(f"{p}: only negatives ({negative_label!r}); add a folder of clips to learn")
        clips = {k: LabelledClip(c.key, c.path, tuple(x for x in c.labels if x != negative_label))
                 for k, c in clips.items()}
    elif len(classes) < 2:
        raise UsageError(f"{p}: training needs at least two labels, found {list(classes)} (each label is learnt "
                         "against the clips of the others: add a folder of negatives, e.g. noise, and give "
                         "--negative-label noise for a one-class classifier)")
    return sorted(clips.values(), key=lambda c: c.key), classes


def run_train(labelled: str | Path, output_dir: str | Path, settings: RunSettings, *,
              name: str = DEFAULT_CLASSIFIER_NAME, negative_label: str | None = None) -> int:
    """Embed labelled clips, fit a linear classifier, write the model, its base64, metadata and held-out scores.

    Writes ``<name>.json`` (the model), ``<name>.json.b64`` (its base64, for a config's
    ``classifiers[].model``), ``<name>.metadata.json`` (metrics, data, model, provenance) and
    ``<name>.heldout.csv`` (the classify rows of every held-out window, with its clip and true labels).
    """
    from ..atomic import write_text_atomic
    from ..outputs.contract import now_iso

    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"--name {name!r}: a plain file name is needed")
    negative_label = negative_label or settings.config.training.negative_label
    clips, classes = read_labelled(labelled, negative_label=negative_label)
    out = Path(output_dir)
    backend = load_model(settings)
    facts = model_facts(backend, settings.model_spec)
    writer = CollectWriter()
    targets = [Target(c.key, c.path, out, "csv") for c in clips]
    context = {"command": "train", "model": backend.name, "backend": jsonable(backend.describe())}
    with contextlib.ExitStack() as held:  # one run per output folder at a time, as every run
        hold_run_lock(held, out, shard_label=WHOLE_RUN)
        report = run_engine(backend, targets, writer, settings=settings, report_dir=out, single=False, resume=False,
                            context=context, write_report=False)
    used = [c for c in clips if c.key in writer.results]
    if not used:
        print(f"error: no clip could be embedded ({report.files_failed} failed)", file=sys.stderr)
        return EXIT_FAILED
    embeddings, targets_01, clip_of_row, starts, ends = [], [], [], [], []
    for i, clip in enumerate(used):
        result = writer.results[clip.key]
        window = window_columns(result)
        rows = result.embeddings.shape[0]
        embeddings.append(np.asarray(result.embeddings, dtype=np.float32))
        targets_01.append(np.tile([[c in clip.labels for c in classes]], (rows, 1)))
        clip_of_row.append(np.full(rows, i))
        starts.append(window["start"])
        ends.append(window["end"])
    x, y, clip_index = np.concatenate(embeddings), np.concatenate(targets_01), np.concatenate(clip_of_row)
    from ..outputs.hoplite import backend_model_config

    details = {k: facts[k] for k in ("window_s", "hop_s", "sample_rate_hz", "checkpoint", "weights_sha256")}
    created = now_iso()
    try:
        trained = train_linear_classifier(
            x, y, clip_index, classes, embedding_model=backend.name, model_config=backend_model_config(backend),
            options=settings.config.training,
            info={"name": name, "created_at": created, "created_by": "audio_embeddings perch_runner train",
                  "training_data": str(labelled), "embedding_model_details": details,
                  **({"negative_label": negative_label} if negative_label else {})})
    except ClassifierError as exc:
        raise UsageError(f"{labelled}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    model_path = trained.classifier.save(out / f"{name}.json")
    model_text = model_path.read_text(encoding="utf-8")
    write_text_atomic(out / f"{name}.json.b64", trained.classifier.to_base64() + "\n")
    heldout_path = _write_heldout(out / f"{name}.heldout.csv", trained, used, clip_index, np.concatenate(starts),
                                  np.concatenate(ends), name=name, facts=facts, settings=settings)
    per_label = {c: sum(c in clip.labels for clip in used) for c in classes}
    meta = {
        "classifier": {"name": name, "file": str(model_path), "base64_file": str(out / f"{name}.json.b64"),
                       "sha256": hashlib.sha256(model_text.encode("utf-8")).hexdigest(),
                       "classes": list(classes), "embedding_model": backend.name,
                       "embedding_dim": trained.classifier.embedding_dim, "score": COLUMN_DOCS["score"]},
        "metrics": trained.metrics,
        "heldout_scores": str(heldout_path) if heldout_path else None,
        "training": trained.classifier.info.get("training"),
        "data": {"source": str(labelled), "clips": len(used), "clips_per_label": per_label,
                 "windows": int(x.shape[0]), "clips_failed": report.failures},
        "model": facts,
        "model_info": jsonable(backend.describe()),
        "config": jsonable(settings.config.describe()),
        "versions": versions(),
        "command_line": settings.argv,
        "created_at": created,
        "wall_time_s": report.to_dict()["wall_time_s"],
    }
    write_text_atomic(out / f"{name}.metadata.json", json.dumps(jsonable(meta), indent=2) + "\n")
    if not settings.quiet:
        held = trained.metrics.get("heldout") or {}
        ap, auc = held.get("macro_average_precision"), held.get("macro_roc_auc")
        summary = (f"held-out macro AP {ap:.3f}, ROC AUC {auc:.3f}" if ap is not None and auc is not None
                   else "no held-out metrics")
        print(f"{name}: {len(classes)} labels from {len(used)} clips ({x.shape[0]} windows); {summary}; "
              f"model: {model_path}", file=sys.stderr)
    return EXIT_FAILED if report.failures else EXIT_OK


def _write_heldout(path: Path, trained: TrainResult, clips: list[LabelledClip], clip_index: np.ndarray,
                   starts: np.ndarray, ends: np.ndarray, *, name: str, facts: dict[str, Any],
                   settings: RunSettings) -> Path | None:
    """The classify rows (plus ``path`` and ``true_labels``) of the held-out windows."""
    from ..outputs.contract import now_iso

    held = trained.heldout_rows
    if not held.any():
        return None
    classes = trained.classifier.classes
    scores = trained.heldout_scores
    t, k = scores.shape
    rows_clip = clip_index[held]
    columns = {
        "path": np.repeat(np.array([clips[i].path for i in rows_clip], dtype=object), k),
        "true_labels": np.repeat(np.array([";".join(clips[i].labels) for i in rows_clip], dtype=object), k),
        "start": np.repeat(starts[held], k), "end": np.repeat(ends[held], k),
        "source_separation_channel": np.zeros(t * k, dtype=np.int32),
        "classifier": np.full(t * k, name, dtype=object), "label": np.tile(np.array(classes, dtype=object), t),
        "score": scores.reshape(-1),
    }
    provenance = {"format": TABLE_FORMAT, "format_version": TABLE_FORMAT_VERSION, "command": "train",
                  "table": "heldout_scores", **facts, "score": COLUMN_DOCS["score"],
                  "columns": {c: COLUMN_DOCS.get(c, "clip path" if c == "path" else "the clip's labels, ';'-joined")
                              for c in columns},
                  "versions": versions(), "command_line": settings.argv, "created_at": now_iso()}
    return write_table(path, columns, provenance, fmt="csv")
