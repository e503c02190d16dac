"""What made an output: a stamp of the run's settings and of the input file, kept with every file's outputs.

A stamp is a small JSON-able dict::

    {"v": 1, "settings": "<sha256 of the run settings>", "size": 48044, "mtime_ns": 1733100000000000000,
     "sha256": "<sha256 of the input's bytes>"}

    {"v": 1, "settings": "...", "size": 19200044, "mtime_ns": ...,
     "sha256_sampled": "<sha256 of its head, middle and tail blocks>", "sampled_block_bytes": 65536}

``settings`` hashes the dict :func:`audio_embeddings.app.run.fingerprint` gives (model, cutting options,
formats and every declared option). The input's identity is its size, modification time and a content
hash that every rerun compares, so an edit that keeps the size and restores the time (``touch -r``) is
still seen:

* inputs under :data:`HASH_BELOW_BYTES` (16 MiB): ``sha256`` of the whole file (read again on each
  rerun: about 1 ms per MiB from the page cache);
* larger inputs: ``sha256_sampled``, the hash of three :data:`SAMPLE_BLOCK_BYTES` blocks (head, middle,
  tail; :func:`sampled_sha256`), a few reads whatever the size. An edit outside those blocks with the
  time restored is not seen by default: ``--verify-inputs`` hashes every input whole (stored as
  ``sha256`` beside the sampled hash) and, on a rerun, redoes outputs whose stamp holds no whole-file
  hash to compare.

An input that is a part of a recording (a Kaldi ``segments`` line) adds ``"segment": [start_s, end_s]``
to its stamp, so a changed segment redoes it; an input that is a ``wav.scp`` command has no file to
check: its stamp holds ``"command"`` (the command's text) instead of size, time and hash, and its
outputs count as long as the command and the settings are the same (``--overwrite`` redoes them
after the files the command reads change).

A whole-file hash that matches forgives a changed time (a copied or touched input); a sampled one does
not (the rest of the file may have changed), so a touched large input is redone unless its stamp holds a
whole-file hash (``--verify-inputs``). Tree outputs keep the stamp in a sidecar written last
(:func:`audio_embeddings.outputs.contract.write_stamp`), the store as an attribute per key, B4's
utterance files in the ``.npz``. A rerun skips a file only when its stored stamp matches
(:func:`stamp_difference`); a file with outputs but no stamp (an older run, a killed write) is not done.

:func:`read_run_config` reads ``.audio_embeddings_run.json`` safely: a corrupt one is moved aside
(``<name>.corrupt``) with a warning and reads as absent.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

LOG = logging.getLogger(__name__)

#: Inputs smaller than this get a content hash in their stamp (all inputs with ``verify``).
HASH_BELOW_BYTES = 16 * 2 ** 20
#: Bytes of each block of a large input's sampled hash (:func:`sampled_sha256`).
SAMPLE_BLOCK_BYTES = 64 * 2 ** 10
STAMP_VERSION = 1


def settings_hash(settings: Mapping[str, Any]) -> str:
    """sha256 (hex) of the run settings as canonical JSON (sorted keys; tuples as lists; other objects as str)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike, *, block_bytes: int = 2 ** 20) -> str:
    """sha256 (hex) of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def sampled_sha256(path: str | os.PathLike, *, block_bytes: int = SAMPLE_BLOCK_BYTES) -> str:
    """sha256 (hex) of a file's size and of three blocks of it: the head, the middle and the tail.

    Three reads of ``block_bytes`` whatever the file's size (a file of up to three blocks is hashed
    whole), so every rerun can afford it for every large input. An edit inside a block changes it;
    an edit elsewhere that keeps the size does not (``--verify-inputs`` hashes whole files).

    Parameters
    ----------
    path : path-like
    block_bytes : int
        Bytes per block (:data:`SAMPLE_BLOCK_BYTES`; recorded in the stamp as ``sampled_block_bytes``).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        digest.update(f"{size}:{int(block_bytes)}:".encode())
        if size <= 3 * block_bytes:
            offsets = [0]
            block_bytes = max(size, 1)
        else:
            offsets = [0, (size - block_bytes) // 2, size - block_bytes]
        for offset in offsets:
            fh.seek(offset)
            digest.update(fh.read(block_bytes))
    return digest.hexdigest()


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if isinstance(exc, OSError) else str(exc)


def input_stamp(path: str | os.PathLike, *, settings_hash: str, verify: bool = False,
                hash_below: int = HASH_BELOW_BYTES, sampled: bool = True,
                item: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stamp of one input under one run's settings.

    Parameters
    ----------
    path : path-like
        The input file.
    settings_hash : str
        :func:`settings_hash` of the run settings.
    verify : bool
        Hash the contents whatever the size (``--verify-inputs``).
    hash_below : int
        Hash the contents of files smaller than this many bytes (0: never, unless ``verify``).

    sampled : bool
        Inputs not hashed whole (``hash_below`` or more bytes) get ``sha256_sampled``
        (:func:`sampled_sha256`) and ``sampled_block_bytes``.
    item : mapping, optional
        What else identifies the input (``CorpusItem.stamp_fields``): ``segment`` (kept in the stamp)
        and ``command`` (the stamp holds it instead of the file's size, time and hash).

    Returns
    -------
    dict
        ``v``, ``settings``, ``size`` (bytes), ``mtime_ns`` and, when hashed, ``sha256`` (whole file)
        and/or ``sha256_sampled``; an input that cannot be read gets ``error`` (its reason) instead, and
        never matches a stored stamp.
    """
    stamp: dict[str, Any] = {"v": STAMP_VERSION, "settings": str(settings_hash), **dict(item or {})}
    if stamp.get("command") is not None:
        return stamp
    try:
        st = os.stat(path)
    except OSError as exc:
        stamp["error"] = _reason(exc)
        return stamp
    stamp.update(size=int(st.st_size), mtime_ns=int(st.st_mtime_ns))
    try:
        if verify or st.st_size < hash_below:
            stamp["sha256"] = file_sha256(path)
        if sampled and st.st_size >= max(hash_below, 1):
            stamp.update(sha256_sampled=sampled_sha256(path), sampled_block_bytes=SAMPLE_BLOCK_BYTES)
    except OSError as exc:
        stamp.pop("sha256", None)
        stamp["error"] = _reason(exc)
    return stamp


def _when(ns: Any) -> str:
    try:
        return _dt.datetime.fromtimestamp(int(ns) / 1e9).astimezone().isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(ns)


def stamp_difference(stored: Mapping[str, Any] | None, current: Mapping[str, Any], *,
                     need_whole_hash: bool = False) -> str | None:
    """Why outputs stamped ``stored`` do not belong to ``current``, or None when they do.

    The settings must be equal, then the size. Then the contents: when both stamps hold a whole-file
    ``sha256`` it decides (a copied or touched input with the same bytes still matches); else, when both
    hold a ``sha256_sampled`` of the same block size, a difference there is a different input, and the
    modification time must match too (the unsampled bytes may have changed).

    Parameters
    ----------
    need_whole_hash : bool
        ``--verify-inputs``: outputs whose stamp holds no whole-file hash cannot be verified and
        do not match.

    Returns
    -------
    str or None
        A phrase that completes "the outputs ...", e.g. ``"were made with other settings"``.
    """
    if not stored:
        return "have no record of the settings and input that made them"
    if stored.get("settings") != current.get("settings"):
        return "were made with other settings"
    if stored.get("segment") != current.get("segment"):
        return f"were made from another segment of the input ({_segment(stored)} -> {_segment(current)})"
    if stored.get("command") != current.get("command"):
        return "were made from another input (another command, or a file instead of a command)"
    if current.get("command") is not None:
        return None  # nothing more to compare: a command has no file
    if "error" in current:
        return f"cannot be checked against the input ({current['error']})"
    if stored.get("size") != current.get("size"):
        return f"were made from another version of the input (size {stored.get('size')} -> {current.get('size')} bytes)"
    if stored.get("sha256") and current.get("sha256"):
        if stored["sha256"] != current["sha256"]:
            return "were made from another version of the input (same size, other contents)"
        return None
    if need_whole_hash and not stored.get("sha256"):
        return ("cannot be verified (their stamp holds no whole-file hash of the input: made without "
                "--verify-inputs)")
    if stored.get("sha256_sampled") and current.get("sha256_sampled") \
            and stored.get("sampled_block_bytes") == current.get("sampled_block_bytes") \
            and stored["sha256_sampled"] != current["sha256_sampled"]:
        return "were made from another version of the input (same size, other contents in the sampled blocks)"
    if stored.get("mtime_ns") != current.get("mtime_ns"):
        sampled_same = bool(stored.get("sha256_sampled")) and stored.get("sha256_sampled") == current.get("sha256_sampled")
        hint = "; its sampled blocks are unchanged: --verify-inputs compares it whole" if sampled_same else ""
        return ("were made from another version of the input (modified "
                f"{_when(stored.get('mtime_ns'))} -> {_when(current.get('mtime_ns'))}{hint})")
    return None


def _segment(stamp: Mapping[str, Any]) -> str:
    seg = stamp.get("segment")
    if not seg:
        return "the whole recording"
    return f"{seg[0]:g}-{'end' if seg[1] is None else format(seg[1], 'g')} s"


class Stamper:
    """The stamps of one run's inputs: cheap checks first, then the content hash that can decide.

    What a rerun compares for an input whose size and settings match (its cost):

    * under ``hash_below`` (16 MiB): the whole file's sha256 (one read of the file);
    * larger: the sampled hash (:func:`sampled_sha256`: three 64 KiB reads) and the modification time;
    * with ``verify`` (``--verify-inputs``): the whole file's sha256 whatever its size (one read of
      every input), and outputs whose stamp holds none are redone.

    Parameters
    ----------
    settings_hash : str
    verify : bool
        Always compare contents (``--verify-inputs``): every input is hashed.
    hash_below : int
        Inputs smaller than this get a content hash in the stamps written.
    """

    def __init__(self, *, settings_hash: str, verify: bool = False, hash_below: int = HASH_BELOW_BYTES):
        self.settings_hash = settings_hash
        self.verify = bool(verify)
        self.hash_below = int(hash_below)
        self._before: dict[str, dict[str, Any]] = {}

    def quick(self, path: str, *, item: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Settings, size and modification time (no hash), remembered as the input's state before decoding.

        ``item``: the input's segment or command (:func:`input_stamp`)."""
        stamp = input_stamp(path, settings_hash=self.settings_hash, hash_below=0, sampled=False, item=item)
        self._before.setdefault(str(path), stamp)
        return stamp

    @property
    def decoder_hash_below(self) -> int:
        """Inputs smaller than this are hashed by the decoders as they read them (``LoadTask``):
        ``hash_below``, capped at :data:`HASH_BELOW_BYTES` so no decoder holds a larger file's bytes
        (with ``verify``, :meth:`full` hashes larger inputs itself, in blocks)."""
        return max(0, min(self.hash_below, HASH_BELOW_BYTES))

    def full(self, path: str, *, sha256: str | None = None, item: Mapping[str, Any] | None = None
             ) -> dict[str, Any]:
        """The stamp to write, with a hash for small inputs (or with ``verify``).

        ``sha256``: the hash of the bytes the decoder read and decoded (so not read again here).
        When the input's size or modification time changed since :meth:`quick` first saw it (it was
        edited during the run), the earlier state without a hash is returned, so the next run redoes it.
        """
        if item and item.get("command") is not None:
            return input_stamp(path, settings_hash=self.settings_hash, item=item)
        if sha256 is not None:
            stamp = input_stamp(path, settings_hash=self.settings_hash, hash_below=0, sampled=False, item=item)
            if "error" not in stamp and (self.verify or stamp["size"] < self.hash_below):
                stamp["sha256"] = str(sha256)
            if "error" not in stamp and stamp["size"] >= self.hash_below:
                stamp.update(sha256_sampled=sampled_sha256(path), sampled_block_bytes=SAMPLE_BLOCK_BYTES)
        else:
            stamp = input_stamp(path, settings_hash=self.settings_hash, verify=self.verify,
                                hash_below=self.hash_below, item=item)
        before = self._before.get(str(path))
        if before is not None and (before.get("size"), before.get("mtime_ns")) != (stamp.get("size"),
                                                                                  stamp.get("mtime_ns")):
            return {**before, **dict(item or {})}
        return stamp

    def difference(self, stored: Mapping[str, Any] | None, path: str, *, item: Mapping[str, Any] | None = None
                   ) -> str | None:
        """:func:`stamp_difference` of ``stored`` and the input now, hashing only what can decide.

        Size and settings first (no read); then the whole-file hash under ``hash_below`` (or with
        ``verify``, or when ``stored`` holds one), else the sampled hash and the time.
        """
        quick = self.quick(path, item=item)
        if not stored or stored.get("settings") != quick.get("settings") or "error" in quick \
                or quick.get("command") is not None or stored.get("size") != quick.get("size"):
            return stamp_difference(stored, quick)
        whole = self.verify or quick["size"] < self.hash_below or bool(stored.get("sha256"))
        current = input_stamp(path, settings_hash=self.settings_hash, verify=whole, hash_below=self.hash_below,
                              item=item)
        return stamp_difference(stored, current, need_whole_hash=self.verify)


def read_run_config(path: str | os.PathLike, *, warn: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """A run file (``.audio_embeddings_run.json``) as a dict, or None when it is absent or corrupt.

    A file that cannot be parsed as a JSON object is renamed ``<name>.corrupt`` (an older one of that
    name is replaced) and reported through ``warn`` (default: a warning on the ``audio_embeddings``
    logger), never raised: the run goes on as if it were the first, and the per-file stamps still
    decide what is done.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problem = _reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
    else:
        try:
            value = json.loads(text)
        except ValueError as exc:
            problem = f"not valid JSON ({' '.join(str(exc).split())})"
        else:
            if isinstance(value, dict):
                return value
            problem = f"not a JSON object (a {type(value).__name__})"
    moved = p.with_name(p.name + ".corrupt")
    try:
        os.replace(p, moved)
        where = f"moved to {moved}"
    except OSError as exc:
        where = f"could not be moved aside ({_reason(exc)})"
    (warn or LOG.warning)(f"warning: {p}: {problem}; {where}; the run goes on as if it were the first")
    return None
