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


def extract_perch(audio_path, output_dir, force_10sec=False, verbose=False, *, model="perch_v2", options=()):
    """Embed one file (None: a synthetic tone) and return ``[(fragment .txt path, shape), ...]``.

    ``model`` and extra command-line ``options`` (e.g. ``["--hop-seconds", "2.5"]``) are ours;
    the first four parameters are the extraction script's. Raises RuntimeError when it fails.
    """
    import numpy as np

    argv = ["--output", str(output_dir), "--model", str(model), *map(str, options)]
    argv += ["--input", str(audio_path)] if audio_path is not None else []
    argv += ["--force_10sec"] if force_10sec else []
    argv += ["--verbose"] if verbose else ["--quiet"]
    status = main(DEFAULTS, argv)
    if status != 0:
        raise RuntimeError(f"extract_perch failed (exit status {status}); see the error above")
    stem = Path(audio_path).stem if audio_path is not None else None
    frags = sorted(Path(output_dir).glob(f"{stem or 'synthetic_perch_32khz_*'}_frag*.txt"),
                   key=lambda p: int(p.stem.rsplit("_frag", 1)[1]))
    return [(str(p), np.loadtxt(p, delimiter=",", ndmin=1).shape) for p in frags]


if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
