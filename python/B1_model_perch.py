#!/usr/bin/env python3
"""B1: Perch 2.0 (or BirdNET) embeddings per window -> _frag<i>.txt, .npy, .mat, .json.

    python python/B1_model_perch.py --input audio.wav --output out_dir [--force_10sec] [--verbose]
        [--duration_sec D] [--model perch_v2|perch_v2_cpu|birdnet|DIR|FILE.onnx] [--hop-seconds H]
        [--basename B] [--top-k K]
    python python/B1_model_perch.py --output out_dir          # no input: a synthetic tone

Also importable: ``extract_perch(audio_path, output_dir, force_10sec=False, verbose=False)``.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.cli import ScriptDefaults, main  # noqa: E402
from audio_embeddings.runs import SeedSpellings  # noqa: E402

DEFAULTS = ScriptDefaults(
    prog="B1_model_perch.py",
    description="Perch 2.0 / BirdNET embeddings per window (5 s at 32 kHz; --force_10sec: 10 s at 16 kHz).",
    model="perch_v2",
    output_subdir="perch",
    basename=None,
    formats="npy,mat,json,txt",
    hooks=(SeedSpellings(),),
)


class PerchFragments(list):
    """What :func:`extract_perch` returns: the seed's ``[(fragment .txt path, shape), ...]`` of this run,
    plus the arrays: ``embeddings`` float32 [T, D], ``time_axis_s`` float64 [T] (window onsets),
    and the paths ``npy_file``, ``mat_file``, ``json_file``."""

    embeddings: np.ndarray
    time_axis_s: np.ndarray
    npy_file: str
    mat_file: str
    json_file: str


def extract_perch(audio_path, output_dir, force_10sec=False, verbose=False, *, model="perch_v2", options=()):
    """Embed one file (None: a synthetic tone) and return this run's fragments and arrays (:class:`PerchFragments`).

    ``model`` and extra command-line ``options`` (e.g. ``["--hop-seconds", "2.5"]``) are ours;
    the first four parameters are the extraction script's. Only the fragments this run wrote are
    returned (an earlier, longer run's ``_frag<i>.txt`` in the same folder are not), read from
    the run's ``.npy`` and ``.mat``, not from the text files. Raises RuntimeError when it fails.
    """
    from scipy.io import loadmat

    if audio_path is None:
        duration = next((float(v) for k, v in zip(options, list(options)[1:]) if k == "--duration_sec"), 10.0)
        stem = f"synthetic_perch_32khz_{duration}s"
    else:
        stem = Path(audio_path).stem
    argv = ["--output", str(output_dir), "--model", str(model), "--basename", stem, *map(str, options)]
    argv += ["--input", str(audio_path)] if audio_path is not None else []
    argv += ["--force_10sec"] if force_10sec else []
    argv += ["--verbose"] if verbose else ["--quiet"]
    status = main(DEFAULTS, argv)
    if status != 0:
        raise RuntimeError(f"extract_perch failed (exit status {status}); see the error above")
    base = Path(output_dir) / stem
    embeddings = np.load(base.with_name(stem + ".npy"))
    result = PerchFragments((str(base.with_name(f"{stem}_frag{i}.txt")), row.shape) for i, row in enumerate(embeddings))
    result.embeddings = embeddings
    result.time_axis_s = loadmat(str(base.with_name(stem + ".mat")))["time_axis"].reshape(-1)
    result.npy_file, result.mat_file, result.json_file = (str(base.with_name(stem + ext))
                                                          for ext in (".npy", ".mat", ".json"))
    return result


if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
