"""What made an output: a stamp of the run's settings and of the input file, kept with every file's outputs.

A stamp is a small JSON-able dict::

    {"v": 1, "settings": "<sha256 of the run settings>", "size": 48044, "mtime_ns": 1733100000000000000,
     "sha256": "<sha256 of the input's bytes>"}

``settings`` hashes the dict :func:`audio_embeddings.app.run.fingerprint` gives (model, cutting options,
formats and every declared option); ``sha256`` is there for inputs under :data:`HASH_BELOW_BYTES`
(or every input with ``verify``). Tree outputs keep the stamp in a sidecar written last
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


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if isinstance(exc, OSError) else str(exc)


def input_stamp(path: str | os.PathLike, *, settings_hash: str, verify: bool = False,
                hash_below: int = HASH_BELOW_BYTES) -> dict[str, Any]:
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

    Returns
    -------
    dict
        ``v``, ``settings``, ``size`` (bytes), ``mtime_ns`` and, when hashed, ``sha256``; an input that
        cannot be read gets ``error`` (its reason) instead, and never matches a stored stamp.
    """
    stamp: dict[str, Any] = {"v": STAMP_VERSION, "settings": str(settings_hash)}
    try:
        st = os.stat(path)
    except OSError as exc:
        stamp["error"] = _reason(exc)
        return stamp
    stamp.update(size=int(st.st_size), mtime_ns=int(st.st_mtime_ns))
    if verify or st.st_size < hash_below:
        try:
            stamp["sha256"] = file_sha256(path)
        except OSError as exc:
            stamp["error"] = _reason(exc)
    return stamp


def _when(ns: Any) -> str:
    try:
        return _dt.datetime.fromtimestamp(int(ns) / 1e9).astimezone().isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(ns)


def stamp_difference(stored: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str | None:
    """Why outputs stamped ``stored`` do not belong to ``current``, or None when they do.

    The settings must be equal; then the contents decide when both stamps hold a hash (a copied or
    touched input with the same bytes still matches), else the size and the modification time.

    Returns
    -------
    str or None
        A phrase that completes "the outputs ...", e.g. ``"were made with other settings"``.
    """
    if not stored:
        return "have no record of the settings and input that made them"
    if stored.get("settings") != current.get("settings"):
        return "were made with other settings"
    if "error" in current:
        return f"cannot be checked against the input ({current['error']})"
    if stored.get("size") != current.get("size"):
        return f"were made from another version of the input (size {stored.get('size')} -> {current.get('size')} bytes)"
    if stored.get("sha256") and current.get("sha256"):
        if stored["sha256"] != current["sha256"]:
            return "were made from another version of the input (same size, other contents)"
        return None
    if stored.get("mtime_ns") != current.get("mtime_ns"):
        return ("were made from another version of the input (modified "
                f"{_when(stored.get('mtime_ns'))} -> {_when(current.get('mtime_ns'))})")
    return None


class Stamper:
    """The stamps of one run's inputs: cheap checks first, a content hash only when it can decide.

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

    def quick(self, path: str) -> dict[str, Any]:
        """Settings, size and modification time (no hash), remembered as the input's state before decoding."""
        stamp = input_stamp(path, settings_hash=self.settings_hash, hash_below=0)
        self._before.setdefault(str(path), stamp)
        return stamp

    @property
    def decoder_hash_below(self) -> int:
        """Inputs smaller than this are hashed by the decoders as they read them (``LoadTask``):
        ``hash_below``, capped at :data:`HASH_BELOW_BYTES` so no decoder holds a larger file's bytes
        (with ``verify``, :meth:`full` hashes larger inputs itself, in blocks)."""
        return max(0, min(self.hash_below, HASH_BELOW_BYTES))

    def full(self, path: str, *, sha256: str | None = None) -> dict[str, Any]:
        """The stamp to write, with a hash for small inputs (or with ``verify``).

        ``sha256``: the hash of the bytes the decoder read and decoded (so not read again here).
        When the input's size or modification time changed since :meth:`quick` first saw it (it was
        edited during the run), the earlier state without a hash is returned, so the next run redoes it.
        """
        if sha256 is not None:
            stamp = input_stamp(path, settings_hash=self.settings_hash, hash_below=0)
            if "error" not in stamp and (self.verify or stamp["size"] < self.hash_below):
                stamp["sha256"] = str(sha256)
        else:
            stamp = input_stamp(path, settings_hash=self.settings_hash, verify=self.verify,
                                hash_below=self.hash_below)
        before = self._before.get(str(path))
        if before is not None and (before.get("size"), before.get("mtime_ns")) != (stamp.get("size"),
                                                                                  stamp.get("mtime_ns")):
            return dict(before)
        return stamp

    def difference(self, stored: Mapping[str, Any] | None, path: str) -> str | None:
        """:func:`stamp_difference` of ``stored`` and the input now, hashing only when that can decide."""
        quick = self.quick(path)
        if not stored:
            return stamp_difference(stored, quick)
        if not self.verify:
            diff = stamp_difference(stored, quick)
            if diff is None or not stored.get("sha256") or stored.get("size") != quick.get("size") \
                    or stored.get("settings") != quick.get("settings") or "error" in quick:
                return diff
        return stamp_difference(stored, input_stamp(path, settings_hash=self.settings_hash, verify=True))


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
