"""One HDF5 store for a whole corpus (``--store FILE.h5``), written in crash-safe parts.

During a run each shard appends finished files to a part,
``FILE.h5.parts/<shard label>/part-000001.h5``, written under a temporary name and renamed
when it is closed (every ``part_max_files`` files, ``part_max_bytes`` bytes or
``part_max_s`` seconds), so a killed run loses only the files of its open part. Every
part holds, per file key (``a/b/x.wav``):

* ``/embeddings/<key>``  float32 [T, D] (or [L, T, D]); attributes ``source_path``, ``duration_s``
* ``/time_axis/<key>``   float64 [T] row onsets in seconds
* ``/extras/<name>/<key>`` backend extras (e.g. ``utterance_embedding``)

and, when the run aligns to a brain-data time grid (``StoreWriter(..., align=AlignSettings)``,
see :mod:`audio_embeddings.align`):

* ``/aligned/<key>``            float32 [T', D'] (or [L, T', D']) the aligned rows; attributes
  ``target_rate_hz``, ``start_s``, ``duration_s``, ``method``, ``hrf``, ``delays`` (int64, output rows)
* ``/time_axis_aligned/<key>``  float64 [T'] their times in seconds, ``start_s + k / target_rate_hz``

(each part's root attribute ``alignment`` holds the settings as JSON). Each key's
``/embeddings/<key>`` also carries ``stamp`` (JSON: the settings hash and the input's size, time and
hash, see :mod:`~audio_embeddings.corpus.stamps`), and each part a ``stamps`` dataset beside ``keys``
and the root attribute ``committed_ns`` (its commit order).

``--overwrite`` removes nothing: the redone files go to new parts, and the merge takes every key
from the newest part that holds it, then deletes parts that no longer own any key. A part that
cannot be read (truncated by a crash or a full disk) is renamed ``part-*.h5.corrupt`` with a
warning naming it, and its files count as not done. Before each file the writer checks that the
open part, the file and a reserve fit on the device; otherwise the file fails with "no space left
on device" and the part written so far is committed (HDF5 does not survive a full disk).

:func:`merge_store` writes ``FILE.h5`` itself: an ``/index`` (``key``, ``part``,
``n_frames``, ``duration_s``, ``source_path``) and the same paths as HDF5 external links
into the parts (the aligned datasets too), so one file opens the whole corpus (h5py and
MATLAB's ``h5read`` follow the links; keep ``FILE.h5.parts`` next to it). Arrays are
row-major: MATLAB's ``h5read`` returns them transposed, [D x T].
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import (
    RESERVE_BYTES,
    NoSpaceError,
    ensure_free_space,
    free_bytes,
    is_no_space,
)
from ..outputs.contract import aligned_result, extra_array
from .shard import Shard

LOG = logging.getLogger(__name__)

PART_MAX_FILES = 256
PART_MAX_BYTES = 256 * 2 ** 20
PART_MAX_S = 30.0


def parts_root(store_path: str | Path) -> Path:
    """``FILE.h5`` -> ``FILE.h5.parts``."""
    p = Path(store_path)
    return p.with_name(p.name + ".parts")


def _part_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/part-*.h5")) if root.is_dir() else []


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _keys_of(part: Path) -> list[str]:
    import h5py

    with h5py.File(part, "r") as f:
        return _text(f["keys"][()]) if "keys" in f else []


class StoreError(OSError):
    """A store part that cannot be read or written; ``str()`` names the part."""


def read_part(part: Path) -> tuple[list[str], list[dict[str, Any] | None], int]:
    """(keys, stamps, commit order) of one closed part.

    Raises
    ------
    StoreError
        The part cannot be opened or its key list read (truncated, not HDF5).
    """
    import h5py

    try:
        with h5py.File(part, "r") as f:
            keys = _text(f["keys"][()]) if "keys" in f else []
            raw = _text(f["stamps"][()]) if "stamps" in f else [""] * len(keys)
            order = int(f.attrs.get("committed_ns", 0)) or part.stat().st_mtime_ns
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError... for a broken file
        raise StoreError(f"{part}: store part cannot be read ({' '.join(str(exc).split())[:200]})") from None
    stamps: list[dict[str, Any] | None] = []
    for text in raw:
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = None
        stamps.append(value if isinstance(value, dict) else None)
    if len(stamps) != len(keys):
        stamps = [None] * len(keys)
    return keys, stamps, order


def quarantine_part(part: Path, reason: str) -> Path:
    """Rename an unreadable part ``<part>.corrupt`` (it stops counting) and warn, naming it."""
    moved = part.with_name(part.name + ".corrupt")
    try:
        os.replace(part, moved)
        where = f"moved to {moved.name}; its files will be redone"
    except OSError as exc:
        moved, where = part, f"could not be moved aside ({exc.strerror or exc})"
    LOG.warning(f"warning: {reason}; {where}")
    return moved


def store_parts(store_path: str | Path) -> list[tuple[Path, list[str], list[dict[str, Any] | None]]]:
    """Every readable part of a store in commit order (oldest first): (part, keys, stamps).

    Unreadable parts are quarantined (:func:`quarantine_part`) and left out.
    """
    found = []
    for part in _part_files(parts_root(store_path)):
        try:
            keys, stamps, order = read_part(part)
        except StoreError as exc:
            quarantine_part(part, str(exc))
            continue
        found.append((order, str(part), part, keys, stamps))
    found.sort(key=lambda t: (t[0], t[1]))
    return [(part, keys, stamps) for _, _, part, keys, stamps in found]


class StoreWriter:
    """Append finished files to this shard's parts of ``store_path``.

    Parameters
    ----------
    store_path : path-like
        The final ``FILE.h5``; parts go to ``FILE.h5.parts/<shard.label>/``.
    shard : Shard
    run_info : dict
        ``model_name`` and geometry, stored as root attributes of every part.
    overwrite : bool
        Redo every key (``is_complete`` is False); the earlier parts stay until the merge replaces
        their keys with the new ones.
    align : AlignSettings, optional
        Also store each file's rows aligned to a brain-data time grid (``/aligned/<key>`` and
        ``/time_axis_aligned/<key>``; the duration defaults to the file's, ``n_samples / sample_rate_hz``).
    """

    supports_stamps = True

    def __init__(self, store_path: str | Path, *, shard: Shard, run_info: dict[str, Any], overwrite: bool = False,
                 part_max_files: int = PART_MAX_FILES, part_max_bytes: int = PART_MAX_BYTES,
                 part_max_s: float = PART_MAX_S, align: Any = None):
        self.store_path = Path(store_path)
        self.dir = parts_root(self.store_path) / shard.label
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".part-*.tmp"):  # a killed run's open part (this shard's lock is held)
            stale.unlink()
        self.run_info = run_info
        self.align = align
        self.limits = (int(part_max_files), int(part_max_bytes), float(part_max_s))
        self._done: dict[str, dict[str, Any] | None] = {}
        for _, keys, stamps in store_parts(self.store_path):  # newest part last: its stamp wins
            self._done.update(zip(keys, stamps))
        if overwrite:
            self._done = {}
        numbers = [int(p.name.split("-")[1].split(".")[0]) for p in self.dir.glob("part-*.h5*")]
        self._next = max(numbers, default=0) + 1
        self._file = None
        self._tmp: Path | None = None
        self._keys: list[str] = []
        self._stamps: list[str] = []
        self._bytes = 0
        self._opened = 0.0

    def stored_stamp(self, key: str) -> dict[str, Any] | None:
        """The stamp of ``key`` in the newest closed part that holds it (None: absent, or stored without one)."""
        return self._done.get(key)

    def is_complete(self, key: str, stamp: dict[str, Any] | None = None) -> bool:
        """``key`` is in a closed part (of any shard) and, given ``stamp``, was made by the same settings
        from the same input."""
        if stamp is None:
            return key in self._done
        from .stamps import stamp_difference

        return stamp_difference(self._done.get(key), stamp) is None

    def input_stamp_fields(self, key: str) -> dict[str, Any]:
        """What of ``key``'s own alignment files its stamp records (:meth:`AlignSettings.input_fields`)."""
        return self.align.input_fields(key) if self.align is not None else {}

    def _open(self) -> None:
        import h5py

        self._tmp = self.dir / f".part-{self._next:06d}.h5.tmp"
        self._file = h5py.File(self._tmp, "w")
        for name, value in self.run_info.items():
            if isinstance(value, (str, int, float)):
                self._file.attrs[name] = value
        if self.align is not None:
            import json

            self._file.attrs["alignment"] = json.dumps(self.align.describe())
        self._keys, self._stamps, self._bytes, self._opened = [], [], 0, time.monotonic()

    def _make_room(self, nbytes: int) -> None:
        """Raise :class:`NoSpaceError` (after committing the open part) unless ``nbytes`` more fit.

        The open part's own bytes count as not yet on disk (HDF5 may still hold them), so its commit
        always fits.
        """
        pending = self._bytes + 2 ** 16 * (len(self._keys) + 1)
        free = free_bytes(self.dir)
        if free is None or free >= pending + nbytes + RESERVE_BYTES:
            return
        self.commit()  # what is written so far stays
        ensure_free_space(self.dir, nbytes + 2 ** 16)

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any],
              stamp: dict[str, Any] | None = None) -> dict[str, Any]:
        """Add one file to the open part (committing the part when it is full).

        Raises
        ------
        NoSpaceError
            The file does not fit on the device; the files before it are committed, this one is not written.
        """
        align = self.align.for_input(key) if self.align is not None else None  # its own events/TR (a folder)
        aligned = aligned_result(result, align)  # first: a file that cannot be aligned leaves nothing behind
        emb = np.asarray(result.embeddings, dtype=np.float32)
        size = (emb.nbytes + sum(np.asarray(v).nbytes for v in result.extras.values())
                + (aligned.embeddings.nbytes if aligned is not None else 0) + 8 * np.asarray(result.time_axis_s).size)
        self._make_room(int(size))
        if self._file is None:
            self._open()
        f = self._file
        try:
            ds = f.create_dataset(f"embeddings/{key}", data=emb)  # contiguous: half the cost of chunked
            ds.attrs["source_path"] = str(input_path)
            ds.attrs["duration_s"] = float(audio_info.get("duration_s", 0.0))
            if stamp is not None:
                ds.attrs["stamp"] = json.dumps(stamp, sort_keys=True)
            f.create_dataset(f"time_axis/{key}", data=np.asarray(result.time_axis_s, dtype=np.float64))
            for name, value in result.extras.items():
                f.create_dataset(f"extras/{name}/{key}", data=extra_array(value))
            if aligned is not None:
                out = aligned.embeddings.astype(np.float32, copy=False)
                ds = f.create_dataset(f"aligned/{key}", data=out)
                s = aligned.settings
                ds.attrs.update({"target_rate_hz": np.nan if s.target_rate_hz is None else s.target_rate_hz,
                                 "start_s": s.start_s,
                                 "duration_s": s.duration_s, "method": s.method, "hrf": s.hrf,
                                 "delays": np.asarray(s.delays, dtype=np.int64)})
                f.create_dataset(f"time_axis_aligned/{key}",
                                 data=np.asarray(aligned.time_axis_s, dtype=np.float64))
        except Exception as exc:
            self._abort()
            if is_no_space(exc):
                raise NoSpaceError(self.dir) from exc
            raise
        self._keys.append(key)
        self._stamps.append(json.dumps(stamp, sort_keys=True) if stamp is not None else "")
        self._bytes += int(size)
        max_files, max_bytes, max_s = self.limits
        if len(self._keys) >= max_files or self._bytes >= max_bytes or time.monotonic() - self._opened >= max_s:
            self.commit()
        return {"store": str(self.store_path)}

    def _abort(self) -> None:
        """Drop the open part (its temporary file) after a failed write."""
        lost = list(self._keys)
        try:
            if self._file is not None:
                self._file.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._file, self._tmp, self._keys, self._stamps, self._bytes = None, None, [], [], 0
        if lost:
            LOG.warning(f"warning: {self.dir}: a failed write lost the open part ({len(lost)} file(s), "
                        f"e.g. {lost[0]}); they will be redone")

    def commit(self) -> None:
        """Close the open part and give it its final name (atomic).

        Raises
        ------
        NoSpaceError, StoreError
            The part could not be written; it is removed and its files count as not done.
        """
        if self._file is None:
            return
        import h5py

        try:
            text = h5py.string_dtype()
            self._file.create_dataset("keys", data=np.array(self._keys, dtype=object), dtype=text)
            self._file.create_dataset("stamps", data=np.array(self._stamps, dtype=object), dtype=text)
            self._file.attrs["committed_ns"] = time.time_ns()
            self._file.close()
            final = self.dir / f"part-{self._next:06d}.h5"
            os.replace(self._tmp, final)
        except Exception as exc:
            n = len(self._keys)
            self._abort()
            if is_no_space(exc):
                raise NoSpaceError(self.dir, f"{n} file(s) of the open part not stored") from exc
            raise StoreError(f"{self.dir}: could not commit a store part ({exc})") from exc
        self._done.update(zip(self._keys, (json.loads(t) if t else None for t in self._stamps)))
        self._next += 1
        self._file, self._tmp, self._keys, self._stamps, self._bytes = None, None, [], [], 0

    def close(self) -> None:
        """Commit whatever is open."""
        self.commit()


def _remove_stale_merges(store: Path, *, older_than_s: float) -> None:
    """Remove the ``.FILE.h5.*.tmp`` a killed merge left next to the store (the output folder's own
    clean-up never sees a store kept elsewhere)."""
    from ..atomic import TEMPORARY_NAME

    cutoff = time.time() - float(older_than_s)
    try:
        entries = list(os.scandir(store.parent))
    except OSError:
        return
    for entry in entries:
        match = TEMPORARY_NAME.match(entry.name)
        if match and match.group("final") == store.name:
            try:
                if older_than_s <= 0 or entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                    os.unlink(entry.path)
            except OSError:
                continue


def merge_store(store_path: str | Path, *, prune: bool = True, stale_after_s: float = 3600.0) -> dict[str, Any]:
    """Write ``FILE.h5``: the index of every part and external links to each file's data.

    A key found in several parts (a redone file, a re-sharded run) is taken from the newest part
    (commit order). Unreadable parts are quarantined first (:func:`quarantine_part`).

    Parameters
    ----------
    store_path : path-like
    prune : bool
        After the new ``FILE.h5`` is in place, delete parts none of whose keys it takes.
    stale_after_s : float
        First remove the temporaries of killed merges of this store older than this (0: all of
        them; the caller merges alone).

    Returns
    -------
    dict
        ``files`` (number of keys), ``parts``, ``store`` (path), ``pruned`` (parts deleted),
        ``settings`` (the distinct settings hashes of the stored keys; more than one: mixed runs).
    """
    import h5py

    from ..atomic import atomic_path

    store = Path(store_path)
    _remove_stale_merges(store, older_than_s=stale_after_s)
    parts = store_parts(store)
    owner: dict[str, Path] = {}
    stamp_of: dict[str, dict[str, Any] | None] = {}
    for part, keys, stamps in parts:
        for key, stamp in zip(keys, stamps):
            owner[key] = part
            stamp_of[key] = stamp
    by_part: dict[Path, list[str]] = {}
    for key, part in owner.items():
        by_part.setdefault(part, []).append(key)
    attrs: dict[str, Any] = {}
    with atomic_path(store) as tmp, h5py.File(tmp, "w") as out:
        rows = []
        for part, part_keys in by_part.items():
            rel = os.path.relpath(part, store.parent)
            try:
                src = h5py.File(part, "r")
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"{part}: store part cannot be read ({' '.join(str(exc).split())[:200]})") from None
            with src:
                attrs = attrs or {k: v for k, v in src.attrs.items() if k != "committed_ns"}
                extras = list(src.get("extras", {}))
                for key in part_keys:
                    try:
                        ds = src[f"embeddings/{key}"]
                        n_frames = int(ds.shape[-2]) if ds.ndim >= 2 else 0
                        meta = (float(ds.attrs.get("duration_s", 0)), str(ds.attrs.get("source_path", "")))
                    except Exception as exc:  # noqa: BLE001
                        raise StoreError(f"{part}: store part is damaged at {key} ({exc})") from None
                    settings = (stamp_of.get(key) or {}).get("settings", "")
                    rows.append((key, rel, n_frames, *meta, settings))
                    out[f"embeddings/{key}"] = h5py.ExternalLink(rel, f"/embeddings/{key}")
                    out[f"time_axis/{key}"] = h5py.ExternalLink(rel, f"/time_axis/{key}")
                    for name in extras:
                        if f"extras/{name}/{key}" in src:
                            out[f"extras/{name}/{key}"] = h5py.ExternalLink(rel, f"/extras/{name}/{key}")
                    for group in ("aligned", "time_axis_aligned"):
                        if f"{group}/{key}" in src:
                            out[f"{group}/{key}"] = h5py.ExternalLink(rel, f"/{group}/{key}")
        rows.sort()
        text = h5py.string_dtype()
        out.create_dataset("index/key", data=np.array([r[0] for r in rows], dtype=object), dtype=text)
        out.create_dataset("index/part", data=np.array([r[1] for r in rows], dtype=object), dtype=text)
        out.create_dataset("index/n_frames", data=np.array([r[2] for r in rows], dtype=np.int64))
        out.create_dataset("index/duration_s", data=np.array([r[3] for r in rows], dtype=np.float64))
        out.create_dataset("index/source_path", data=np.array([r[4] for r in rows], dtype=object), dtype=text)
        out.create_dataset("index/settings", data=np.array([r[5] for r in rows], dtype=object), dtype=text)
        for name, value in attrs.items():
            out.attrs[name] = value
    pruned = []
    if prune:
        for part, _, _ in parts:
            if part not in by_part:
                try:
                    part.unlink()
                    pruned.append(str(part))
                except OSError:
                    pass
    settings = sorted({r[5] for r in rows if r[5]})
    if len(settings) > 1:
        LOG.warning(f"warning: {store}: holds files made with {len(settings)} different settings "
                    "(see /index/settings); rerun with --overwrite to redo the old ones")
    return {"files": len(rows), "parts": len(parts), "store": str(store), "pruned": pruned, "settings": settings}
