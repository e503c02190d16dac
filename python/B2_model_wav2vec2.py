#!/usr/bin/env python3
"""B2: wav2vec2-family frame embeddings of one audio file -> .npy, .mat, .json.

    python python/B2_model_wav2vec2.py INPUT [--model M] [--output-dir D] [--basename B]
        [--chunk-seconds S] [--layers L] [--device DEV] [--dtype T] [--mat-version V] [--channel N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.scripts import WAV2VEC2 as DEFAULTS, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
