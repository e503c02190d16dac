"""MATLAB ``.mat`` writer: v5 through SciPy, v7.3 (HDF5) through h5py.

Both formats are written so that MATLAB (and GNU Octave) see each variable
with the same shape and element order as the NumPy array it came from: an
array ``arr`` of shape ``(T, D)`` loads as a ``T x D`` matrix ``A`` with
``A(i, j) == arr[i - 1, j - 1]``; 1-D arrays become column vectors.

Files are written atomically (temporary sibling, then rename), so a reader
never sees a half-written file under the final name.

Type mapping
------------
========================================  ===============================
Python / NumPy value                       MATLAB class and size
========================================  ===============================
``float32`` array                          ``single``, same shape
``float64`` array                          ``double``, same shape
``complex64`` / ``complex128`` array       complex ``single`` / ``double``
``int8`` ... ``uint64`` array              ``int8`` ... ``uint64``
``bool`` array                             ``logical``
1-D array of length N                      N x 1 column vector
0-d array                                  1 x 1 of the array's class
``float`` / ``int`` / NumPy real scalar    ``double`` 1 x 1
``complex`` / NumPy complex scalar         complex ``double`` 1 x 1
``bool`` / ``numpy.bool_`` scalar          ``logical`` 1 x 1
``str`` of length N                        ``char`` 1 x N
========================================  ===============================

Anything else (object arrays, ``float16``, string arrays, lists, ``None``)
raises :class:`TypeError`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..atomic import atomic_path, write_text_atomic

__all__ = [
    "V73_THRESHOLD_BYTES",
    "failure_marker_path",
    "write_mat",
    "write_mat_or_record_failure",
]

log = logging.getLogger(__name__)

#: A single variable at least this large (in bytes) makes ``version="auto"``
#: choose v7.3: the v5 format cannot hold a variable of 2 GiB or more.
V73_THRESHOLD_BYTES = 2**31

#: Datasets larger than this many bytes are chunked and gzip-compressed in
#: v7.3 files; smaller ones are stored contiguously.
V73_COMPRESS_MIN_BYTES = 4096

#: gzip level for v7.3 datasets (MATLAB itself uses 3).
V73_GZIP_LEVEL = 3

_VERSIONS = ("5", "7.3", "auto")

_USERBLOCK_SIZE = 512
_HEADER_TEXT_SIZE = 116

# Longest variable name MATLAB accepts (``namelengthmax``).
_MAX_NAME_LENGTH = 63
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

_MATLAB_CLASS = {
    np.dtype(np.float32): "single",
    np.dtype(np.float64): "double",
    np.dtype(np.complex64): "single",
    np.dtype(np.complex128): "double",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
    np.dtype(np.bool_): "logical",
}


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def write_mat(
    path: str | os.PathLike,
    variables: Mapping[str, Any],
    *,
    version: str = "auto",
) -> Path:
    """Write ``variables`` to a MATLAB ``.mat`` file, atomically.

    Parameters
    ----------
    path : path-like
        Destination file. Its parent directory is created if missing. An
        existing file is replaced only once the new one is complete.
    variables : mapping of str to value
        Variable name -> value, written in iteration order. Names must be
        valid MATLAB identifiers (a letter, then letters, digits or ``_``;
        at most 63 characters). Values (see the module docstring for the
        full mapping):

        - ``numpy.ndarray`` of shape ``(T, D)`` -> ``T x D`` matrix of the
          matching class (``float32`` -> ``single``, ``float64`` ->
          ``double``, integers -> ``intN``/``uintN``, ``bool`` ->
          ``logical``); any N-D shape ``(L, T, D, ...)`` likewise, with
          ``A(i, j, k) == arr[i-1, j-1, k-1]``.
        - ``numpy.ndarray`` of shape ``(N,)`` -> ``N x 1`` column vector.
        - Python ``float``/``int`` or NumPy number scalar -> ``1 x 1``
          ``double``; ``bool`` -> ``1 x 1`` ``logical``.
        - ``str`` of length N -> ``1 x N`` ``char``.
        - ``list`` or ``tuple`` of N ``str`` -> ``N x 1`` cell array of char (ids, paths).
    version : {"auto", "5", "7.3"}, keyword-only
        MAT-file format. ``"5"``: compressed v5 via :func:`scipy.io.savemat`.
        ``"7.3"``: HDF5-based v7.3 via h5py. ``"auto"`` (default): v5
        unless a single variable holds at least :data:`V73_THRESHOLD_BYTES`
        (2 GiB) of data, which v5 cannot store; then v7.3.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        Unknown ``version``, or an invalid variable name.
    TypeError
        A value of an unsupported type or dtype (e.g. an object array).
    OSError
        The file cannot be created or renamed into place. Nothing is left
        under ``path`` or as a temporary file in its directory.
    """
    _check_version(version)
    prepared = _prepare(variables)
    if version == "auto":
        version = "7.3" if _needs_v73(prepared) else "5"

    final = Path(path)
    with atomic_path(final, suffix=".mat") as tmp:
        if version == "5":
            _write_v5(tmp, prepared)
        else:
            _write_v73(tmp, prepared)
    return final


def write_mat_or_record_failure(
    path: str | os.PathLike,
    variables: Mapping[str, Any],
    *,
    version: str = "auto",
) -> tuple[Path | None, str | None]:
    """Write a ``.mat`` file, or leave a ``<path>.failed`` marker saying why.

    Calls :func:`write_mat`. On success, a stale ``<path>.failed`` from an
    earlier attempt is removed. On failure, ``<path>.failed`` (the file
    name with ``.failed`` appended, e.g. ``x.mat.failed``) is written
    atomically with a one-line reason, and a stale regular file under
    ``path`` from an earlier run is removed, so that exactly one of the two
    describes the latest attempt.

    Parameters
    ----------
    path : path-like
        Destination ``.mat`` file.
    variables : mapping of str to value
        As for :func:`write_mat`.
    version : {"auto", "5", "7.3"}, keyword-only
        As for :func:`write_mat`. An unknown version is a caller error and
        raises :class:`ValueError` instead of being recorded.

    Returns
    -------
    written : pathlib.Path or None
        ``path`` on success, ``None`` on failure.
    reason : str or None
        ``None`` on success; on failure the one-line reason
        (``"<ExceptionType>: <message>"``) also written to the marker.
    """
    _check_version(version)
    final = Path(path)
    marker = failure_marker_path(final)
    try:
        written = write_mat(final, variables, version=version)
    except Exception as exc:  # noqa: BLE001 - every write failure is recorded
        reason = _one_line_reason(exc)
        log.warning("could not write %s: %s", final, reason)
        if final.is_file() and not final.is_symlink():
            try:
                final.unlink()
            except OSError as unlink_exc:
                log.warning("could not remove stale %s: %s", final, unlink_exc)
        try:
            write_text_atomic(marker, reason + "\n")
        except OSError as marker_exc:
            log.error("could not write failure marker %s: %s", marker, marker_exc)
        return None, reason
    try:
        marker.unlink()
    except FileNotFoundError:
        pass
    return written, None


def failure_marker_path(path: str | os.PathLike) -> Path:
    """Return the failure marker path for ``path``: its name plus ``.failed``.

    Parameters
    ----------
    path : path-like
        A ``.mat`` destination, e.g. ``out/x.mat``.

    Returns
    -------
    pathlib.Path
        e.g. ``out/x.mat.failed``.
    """
    p = Path(path)
    return p.with_name(p.name + ".failed")


# ---------------------------------------------------------------------------
# Validation and normalisation
# ---------------------------------------------------------------------------


def _check_version(version: object) -> None:
    if not isinstance(version, str) or version not in _VERSIONS:
        raise ValueError(f"version must be one of {_VERSIONS}, got {version!r}")


def _one_line_reason(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _prepare(variables: Mapping[str, Any]) -> dict[str, np.ndarray | str]:
    """Validate names and convert values to what the writers expect.

    Returns a new dict, same order: ``str`` values stay ``str``; everything
    else becomes a native-byte-order NumPy array of a supported dtype with
    at least two dimensions, in MATLAB orientation (1-D -> ``(N, 1)``,
    scalars -> ``(1, 1)``).
    """
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables must be a mapping of name -> value, got {type(variables).__name__}")
    out: dict[str, np.ndarray | str] = {}
    for name, value in variables.items():
        _check_name(name)
        out[name] = _prepare_value(name, value)
    return out


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > _MAX_NAME_LENGTH:
        raise ValueError(
            f"invalid MATLAB variable name {name!r}: use a letter followed by letters, "
            f"digits or '_', at most {_MAX_NAME_LENGTH} characters"
        )


def _prepare_value(name: str, value: Any) -> np.ndarray | str | tuple[str, ...]:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise TypeError(f"variable {name!r}: lists become cell arrays of char, so every item must be a str")
        return tuple(value)
    if isinstance(value, (bool, np.bool_)):
        return np.full((1, 1), bool(value), dtype=np.bool_)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return np.full((1, 1), float(value), dtype=np.float64)
    if isinstance(value, (complex, np.complexfloating)):
        return np.full((1, 1), complex(value), dtype=np.complex128)
    if isinstance(value, np.ndarray):
        dtype = value.dtype
        if dtype.newbyteorder("=") not in _MATLAB_CLASS:
            raise TypeError(
                f"variable {name!r}: arrays of dtype {dtype} cannot be written to a .mat file "
                f"(supported: float32, float64, complex64, complex128, (u)int8..64, bool)"
            )
        arr = value.astype(dtype.newbyteorder("="), copy=False)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        return arr
    raise TypeError(
        f"variable {name!r}: values of type {type(value).__name__} cannot be written to a .mat file "
        f"(supported: numpy arrays, int/float/bool scalars, str)"
    )


def _nbytes(value: Any) -> int:
    """Bytes of data a value holds (UTF-16 code units for strings)."""
    if isinstance(value, str):
        return len(value.encode("utf-16-le"))
    if isinstance(value, tuple):  # a cell array: the largest item decides
        return max((_nbytes(v) for v in value), default=0)
    nbytes = getattr(value, "nbytes", None)
    if nbytes is not None:
        return int(nbytes)
    return 8


def _needs_v73(variables: Mapping[str, Any]) -> bool:
    """Whether any single variable is too large for v5.

    Parameters
    ----------
    variables : mapping of str to value
        Values are inspected only through ``.nbytes`` (strings: their UTF-16
        size), so any object with an ``nbytes`` attribute can stand in.

    Returns
    -------
    bool
        True when some value holds at least :data:`V73_THRESHOLD_BYTES`.
    """
    return any(_nbytes(v) >= V73_THRESHOLD_BYTES for v in variables.values())


# ---------------------------------------------------------------------------
# v5 (SciPy)
# ---------------------------------------------------------------------------


def _cell_v5(items: tuple[str, ...]) -> np.ndarray:
    """An N x 1 object array of str: scipy writes it as a cell array of char."""
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def _write_v5(tmp: Path, variables: Mapping[str, np.ndarray | str | tuple]) -> None:
    import scipy.io

    with open(tmp, "wb") as fh:
        scipy.io.savemat(
            fh,
            {k: _cell_v5(v) if isinstance(v, tuple) else v for k, v in variables.items()},
            do_compression=True,
            oned_as="column",
            format="5",
        )
        fh.flush()
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------------
# v7.3 (HDF5 with a MATLAB user block)
# ---------------------------------------------------------------------------


def _platform_tag() -> str:
    if sys.platform.startswith("win"):
        return "PCWIN64"
    if sys.platform == "darwin":
        return "MACI64"
    return "GLNXA64"


def _v73_header() -> bytes:
    """The 512-byte user block MATLAB expects at the start of a v7.3 file.

    Layout: 116 bytes of text (space padded), 8 bytes subsystem data offset
    (unused: spaces), version 0x0200 as little-endian uint16, endian
    indicator ``IM``, then zeros up to 512 bytes.
    """
    text = (
        f"MATLAB 7.3 MAT-file, Platform: {_platform_tag()}, "
        f"Created on: {time.asctime()} HDF5 schema 1.00 ."
    ).encode("ascii")[:_HEADER_TEXT_SIZE]
    header = text.ljust(_HEADER_TEXT_SIZE, b" ") + b" " * 8 + b"\x00\x02" + b"IM"
    return header.ljust(_USERBLOCK_SIZE, b"\x00")


def _write_v73(tmp: Path, variables: Mapping[str, np.ndarray | str]) -> None:
    import h5py

    with h5py.File(tmp, "w", userblock_size=_USERBLOCK_SIZE) as f:
        for name, value in variables.items():
            _write_v73_variable(f, name, value)
    with open(tmp, "r+b") as fh:
        fh.seek(0)
        fh.write(_v73_header())
        fh.flush()
        os.fsync(fh.fileno())


def _write_v73_cell(f, name: str, items: tuple[str, ...]) -> None:
    """An N x 1 cell array of char: a dataset of references to char datasets in ``/#refs#``, as MATLAB writes it."""
    import h5py

    refs_group = f.require_group("#refs#")
    refs = np.empty((1, len(items)), dtype=h5py.ref_dtype)  # MATLAB dims (N, 1) -> HDF5 dims (1, N)
    for i, item in enumerate(items):
        target = f"{name}_{i}"
        _write_v73_variable(refs_group, target, item)
        refs[0, i] = refs_group[target].ref
    ds = f.create_dataset(name, data=refs, dtype=h5py.ref_dtype)
    ds.attrs["MATLAB_class"] = np.bytes_("cell")


def _write_v73_variable(f, name: str, value: np.ndarray | str | tuple) -> None:
    if isinstance(value, tuple):
        _write_v73_cell(f, name, value)
        return
    if isinstance(value, str):
        units = np.frombuffer(value.encode("utf-16-le"), dtype="<u2")
        # A 1 x N char row: MATLAB dims (1, N) -> HDF5 dims (N, 1).
        data = units.reshape(1, -1)
        matlab_class = "char"
        int_decode = 2
    else:
        data = value
        matlab_class = _MATLAB_CLASS[value.dtype]
        int_decode = None
        if value.dtype == np.bool_:
            data = value.view(np.uint8)
            int_decode = 1

    if data.size == 0:
        # MATLAB stores an empty array as its dimensions, flagged MATLAB_empty.
        ds = f.create_dataset(name, data=np.asarray(data.shape, dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
        ds.attrs["MATLAB_empty"] = np.uint8(1)
        if int_decode is not None:
            ds.attrs["MATLAB_int_decode"] = np.int32(int_decode)
        return

    # Column-major storage: the transpose's C order is the array's Fortran
    # order, and HDF5 dims are MATLAB dims reversed.
    stored = np.ascontiguousarray(data.T)
    if np.iscomplexobj(stored):
        part = stored.real.dtype
        compound = np.dtype([("real", part), ("imag", part)])
        buf = np.empty(stored.shape, dtype=compound)
        buf["real"] = stored.real
        buf["imag"] = stored.imag
        stored = buf

    kwargs: dict[str, Any] = {}
    if stored.nbytes > V73_COMPRESS_MIN_BYTES:
        kwargs.update(chunks=True, compression="gzip", compression_opts=V73_GZIP_LEVEL)
    ds = f.create_dataset(name, data=stored, **kwargs)
    ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    if int_decode is not None:
        ds.attrs["MATLAB_int_decode"] = np.int32(int_decode)


#: Public names of the checks :func:`audio_embeddings.outputs.contract.write_outputs` shares.
check_version = _check_version
one_line_reason = _one_line_reason
