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

(each part's root attribute ``alignment`` holds the settings as JSON).

:func:`merge_store` writes ``FILE.h5`` itself: an ``/index`` (``key``, ``part``,
``n_frames``, ``duration_s``, ``source_path``) and the same paths as HDF5 external links
into the parts (the aligned datasets too), so one file opens the whole corpus (h5py and
MATLAB's ``h5read`` follow the links; keep ``FILE.h5.parts`` next to it). Arrays are
row-major: MATLAB's ``h5read`` returns them transposed, [D x T].
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .shard import Shard
from ..outputs.contract import aligned_result, extra_array

PART_MAX_FILES = 256
PART_MAX_BYTES = 256 * 2 ** 20
PART_MAX_S = 30.0


def parts_root(store_path: str | Path) -> Path:
    """``FILE.h5`` -> ``FILE.h5.parts``."""
    p = Path(store_path)
    return p.with_name(p.name + ".parts")


def _part_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/part-*.h5")) if root.is_dir() else []


def _keys_of(part: Path) -> list[str]:
    import h5py

    with h5py.File(part, "r") as f:
        return [k.decode() if isinstance(k, bytes) else str(k) for k in f["keys"][()]] if "keys" in f else []


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
        Remove this shard's earlier parts and redo every key.
    align : AlignSettings, optional
        Also store each file's rows aligned to a brain-data time grid (``/aligned/<key>`` and
        ``/time_axis_aligned/<key>``; the duration defaults to the file's, ``n_samples / sample_rate_hz``).
    """

    def __init__(self, store_path: str | Path, *, shard: Shard, run_info: dict[str, Any], overwrite: bool = False,
                 part_max_files: int = PART_MAX_FILES, part_max_bytes: int = PART_MAX_BYTES,
                 part_max_s: float = PART_MAX_S, align: Any = None):
        self.store_path = Path(store_path)
        self.dir = parts_root(self.store_path) / shard.label
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".part-*.tmp"):  # a killed run's open part
            stale.unlink()
        if overwrite:
            for old in self.dir.glob("part-*.h5"):
                old.unlink()
        self.run_info = run_info
        self.align = align
        self.limits = (int(part_max_files), int(part_max_bytes), float(part_max_s))
        self._done = set() if overwrite else {k for p in _part_files(parts_root(self.store_path)) for k in _keys_of(p)}
        numbers = [int(p.stem.split("-")[1]) for p in self.dir.glob("part-*.h5")]
        self._next = max(numbers, default=0) + 1
        self._file = None
        self._tmp: Path | None = None
        self._keys: list[str] = []
        self._bytes = 0
        self._opened = 0.0

    def is_complete(self, key: str) -> bool:
        """``key`` is in a closed part (of any shard)."""
        return key in self._done

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
        self._keys, self._bytes, self._opened = [], 0, time.monotonic()

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any]) -> dict[str, Any]:
        """Add one file to the open part (committing the part when it is full)."""
        aligned = aligned_result(result, self.align)  # first: a file that cannot be aligned leaves nothing behind
        if self._file is None:
            self._open()
        f = self._file
        emb = np.asarray(result.embeddings, dtype=np.float32)
        ds = f.create_dataset(f"embeddings/{key}", data=emb, chunks=True if emb.size else None)
        ds.attrs["source_path"] = str(input_path)
        ds.attrs["duration_s"] = float(audio_info.get("duration_s", 0.0))
        f.create_dataset(f"time_axis/{key}", data=np.asarray(result.time_axis_s, dtype=np.float64))
        for name, value in result.extras.items():
            f.create_dataset(f"extras/{name}/{key}", data=extra_array(value))
        if aligned is not None:
            out = aligned.embeddings.astype(np.float32, copy=False)
            ds = f.create_dataset(f"aligned/{key}", data=out, chunks=True if out.size else None)
            s = aligned.settings
            ds.attrs.update({"target_rate_hz": s.target_rate_hz, "start_s": s.start_s, "duration_s": s.duration_s,
                             "method": s.method, "hrf": s.hrf, "delays": np.asarray(s.delays, dtype=np.int64)})
            f.create_dataset(f"time_axis_aligned/{key}", data=np.asarray(aligned.time_axis_s, dtype=np.float64))
            self._bytes += out.nbytes
        self._keys.append(key)
        self._bytes += emb.nbytes
        max_files, max_bytes, max_s = self.limits
        if len(self._keys) >= max_files or self._bytes >= max_bytes or time.monotonic() - self._opened >= max_s:
            self.commit()
        return {"store": str(self.store_path)}

    def commit(self) -> None:
        """Close the open part and give it its final name (atomic)."""
        if self._file is None:
            return
        import h5py

        self._file.create_dataset("keys", data=np.array(self._keys, dtype=object), dtype=h5py.string_dtype())
        self._file.close()
        final = self.dir / f"part-{self._next:06d}.h5"
        os.replace(self._tmp, final)
        self._done.update(self._keys)
        self._next += 1
        self._file, self._tmp = None, None

    def close(self) -> None:
        """Commit whatever is open."""
        self.commit()


def merge_store(store_path: str | Path) -> dict[str, Any]:
    """Write ``FILE.h5``: the index of every part and external links to each file's data.

    A key found in several parts (a redone file) is taken from the newest part.

    Returns
    -------
    dict
        ``files`` (number of keys), ``parts``, ``store`` (path).
    """
    import h5py

    from ..outputs.atomic import atomic_path

    store = Path(store_path)
    root = parts_root(store)
    parts = sorted(_part_files(root), key=lambda p: (p.stat().st_mtime_ns, str(p)))
    owner: dict[str, Path] = {}
    for part in parts:
        for key in _keys_of(part):
            owner[key] = part
    by_part: dict[Path, list[str]] = {}
    for key, part in owner.items():
        by_part.setdefault(part, []).append(key)
    attrs: dict[str, Any] = {}
    with atomic_path(store) as tmp, h5py.File(tmp, "w") as out:
        rows = []
        for part, part_keys in by_part.items():
            rel = os.path.relpath(part, store.parent)
            with h5py.File(part, "r") as src:
                attrs = attrs or dict(src.attrs)
                extras = list(src.get("extras", {}))
                for key in part_keys:
                    ds = src[f"embeddings/{key}"]
                    rows.append((key, rel, int(ds.shape[-2]) if ds.ndim >= 2 else 0,
                                 float(ds.attrs.get("duration_s", 0)), str(ds.attrs.get("source_path", ""))))
                    out[f"embeddings/{key}"] = h5py.ExternalLink(rel, f"/embeddings/{key}")
                    out[f"time_axis/{key}"] = h5py.ExternalLink(rel, f"/time_axis/{key}")
                    for name in extras:
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
        for name, value in attrs.items():
            out.attrs[name] = value
    return {"files": len(rows), "parts": len(parts), "store": str(store)}
