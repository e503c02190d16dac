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

from audio_embeddings.scripts import PERCH as DEFAULTS  # noqa: E402
from audio_embeddings.scripts import PerchFragments, extract_perch, main  # noqa: E402,F401 - public names

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
