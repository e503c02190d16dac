"""``summary.json`` and ``failures.csv`` of a corpus run, per shard and merged.

A whole run writes ``summary.json`` and ``failures.csv`` in the output directory; a
shard writes ``summary.<label>.json`` and ``failures.<label>.csv`` there, and
:func:`merge_reports` joins them into ``summary.json``/``failures.csv`` once every shard
has reported. The merge follows the latest sharding: after a run in 3 shards and a later one in
2, it joins the 2-shard summaries (the shard count of the newest summary), not the older 3.
Inputs that could not even be searched (unreadable folders, symbolic link loops: the
discovery's ``Corpus.failed``) are failures like any file (:meth:`RunReport.add_failures`).

A shard that was stopped (SIGINT/SIGTERM: ``status`` ``"interrupted"``; a full disk: ``"failed"``)
has written its summary but has not reported: :func:`all_shards_reported` waits for its rerun, and
a merge that includes it says ``"incomplete: shards stopped"`` and lists it in ``shards_stopped``.
The summary's ``shard`` records where the shard came from (``{"index": 1, "count": 4, "source":
"sge"}``, see :func:`~.shard.resolve_shard`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

from ..atomic import NoSpaceError, is_no_space, write_text_atomic
from ..outputs.contract import now_iso
from .shard import Shard

SUMMARY = "summary.json"
FAILURES = "failures.csv"
LOG = logging.getLogger(__name__)
_SUMMED = ("files_total", "files_done", "files_skipped", "files_failed", "audio_seconds", "batches", "pieces")
#: ``status`` of a summary whose run was stopped before its files were all tried.
STOPPED = ("interrupted", "failed")


def _names(shard: Shard) -> tuple[str, str]:
    if shard.is_whole:
        return SUMMARY, FAILURES
    return f"summary.{shard.label}.json", f"failures.{shard.label}.csv"


def _failures_csv(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows([r["path"], r["reason"]] for r in rows)
    return buf.getvalue()


def _rates(summary: dict[str, Any]) -> dict[str, Any]:
    wall = summary["wall_time_s"]
    return {"audio_hours": round(summary["audio_seconds"] / 3600.0, 6),
            "files_per_s": round(summary["files_done"] / wall, 4) if wall > 0 else None,
            "audio_s_per_s": round(summary["audio_seconds"] / wall, 4) if wall > 0 else None}


class RunReport:
    """Counts, failures and timing of one process's run.

    Parameters
    ----------
    output_dir : path-like
        Where the summary and failures go.
    shard : Shard
    context : dict
        JSON-able fields copied into the summary (model, backend, input, outputs, options...).
    """

    def __init__(self, output_dir: str | Path, *, shard: Shard, context: dict[str, Any]):
        self.output_dir = Path(output_dir)
        self.shard = shard
        self.context = context
        self.started_at = now_iso()
        self._t0 = time.perf_counter()
        self.files_total = 0
        self.files_done = 0
        self.files_skipped = 0
        self.failures: list[dict[str, str]] = []
        self.audio_seconds = 0.0
        self.extra: dict[str, Any] = {}

    @property
    def files_failed(self) -> int:
        return len(self.failures)

    def done(self, duration_s: float) -> None:
        self.files_done += 1
        self.audio_seconds += float(duration_s)

    def failed(self, path: str, reason: str) -> None:
        self.failures.append({"path": str(path), "reason": " ".join(str(reason).split())})

    def add_failures(self, failures: Iterable[Any]) -> None:
        """Count inputs that failed before the engine saw them (``CorpusFailure`` s: ``path``, ``reason``)."""
        for f in failures:
            self.failed(f.path, f.reason)

    def to_dict(self) -> dict[str, Any]:
        summary = {
            "status": "complete" if not self.failures else "some files failed",
            "files_total": self.files_total,
            "files_done": self.files_done,
            "files_skipped": self.files_skipped,
            "files_failed": self.files_failed,
            "audio_seconds": round(self.audio_seconds, 6),
            "wall_time_s": round(time.perf_counter() - self._t0, 3),
            **self.extra,
            "shard": {"index": self.shard.index, "count": self.shard.count,
                      "source": getattr(self.shard, "source", "") or None},
            **self.context,
            "failures": self.failures,
            "started_at": self.started_at,
            "finished_at": now_iso(),
        }
        return {**summary, **_rates(summary)}

    @property
    def summary_path(self) -> Path:
        """Where :meth:`write` puts this process's summary (``summary.json`` or ``summary.<label>.json``)."""
        return self.output_dir / _names(self.shard)[0]

    def write(self) -> Path:
        """Write the summary and failures (atomically); returns the summary path."""
        summary_name, failures_name = _names(self.shard)
        path = self.output_dir / summary_name
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.output_dir / failures_name, _failures_csv(self.failures))
            write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        except NoSpaceError:
            raise
        except OSError as exc:
            if is_no_space(exc):
                raise NoSpaceError(path) from None
            raise OSError(exc.errno, f"{path}: could not write the run summary "
                                     f"({(exc.strerror or str(exc)).lower()})") from None
        return path


def shard_summaries(output_dir: str | Path) -> list[Path]:
    """The shard summaries present in ``output_dir``."""
    return sorted(Path(output_dir).glob("summary.shard-*-of-*.json"))


def all_shards_reported(output_dir: str | Path, count: int) -> bool:
    """Every shard of a ``count``-way run has written its summary, and none of them was stopped
    (an interrupted shard reports when its rerun finishes)."""
    labels = {p.name: p for p in shard_summaries(output_dir)}
    for i in range(count):
        path = labels.get(f"summary.{Shard(i, count).label}.json")
        if path is None:
            return False
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("status") in STOPPED:
                return False
        except (OSError, ValueError, AttributeError):
            return False
    return True


def merge_reports(output_dir: str | Path) -> dict[str, Any]:
    """Join the shard summaries of the latest sharding (the shard count of the newest summary) into
    ``summary.json`` and ``failures.csv``; summaries of an earlier sharding, and unreadable ones, are left out.

    Raises
    ------
    FileNotFoundError
        No shard summaries in ``output_dir``.
    """
    out = Path(output_dir)
    loaded = []  # (mtime, summary)
    for p in shard_summaries(out):
        try:
            summary = json.loads(p.read_text(encoding="utf-8"))
            int(summary["shard"]["count"]), int(summary["shard"]["index"])
            loaded.append((p.stat().st_mtime_ns, summary))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            LOG.warning(f"warning: {p}: not a readable shard summary ({' '.join(str(exc).split())}); left out")
    if not loaded:
        raise FileNotFoundError(f"no shard summaries (summary.shard-*.json) in {out}")
    count = max(loaded, key=lambda t: t[0])[1]["shard"]["count"]  # the latest sharding
    shards = sorted((s for _, s in loaded if s["shard"]["count"] == count), key=lambda s: s["shard"]["index"])
    missing = sorted(set(range(count)) - {s["shard"]["index"] for s in shards})
    merged = {k: v for k, v in shards[0].items() if k not in ("shard", "failures", "started_at", "finished_at")}
    for key in _SUMMED:
        merged[key] = sum(s.get(key, 0) for s in shards)
    merged.pop("files_not_done", None)
    if any("files_not_done" in s for s in shards):  # files a stopped shard did not get to
        merged["files_not_done"] = sum(s.get("files_not_done", 0) for s in shards)
    failures = [f for s in shards for f in s["failures"]]
    stopped = [s["shard"]["index"] for s in shards if s.get("status") in STOPPED]
    merged.update({
        "status": ("incomplete: shards missing" if missing else "incomplete: shards stopped" if stopped
                   else "complete" if not failures else "some files failed"),
        "shards_merged": [s["shard"]["index"] for s in shards],
        "shards_missing": missing,
        "shards_stopped": stopped,
        "shard": {"index": 0, "count": 1, "source": shards[0]["shard"].get("source")},
        "wall_time_s": max(s["wall_time_s"] for s in shards),
        "started_at": min(s["started_at"] for s in shards),
        "finished_at": max(s["finished_at"] for s in shards),
        "failures": failures,
    })
    merged.update(_rates(merged))
    write_text_atomic(out / FAILURES, _failures_csv(failures))
    write_text_atomic(out / SUMMARY, json.dumps(merged, indent=2) + "\n")
    return merged
