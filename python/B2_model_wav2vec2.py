#!/usr/bin/env python3
"""B2: wav2vec2-family frame embeddings of one audio file -> .npy, .mat, .json.

    python python/B2_model_wav2vec2.py INPUT [--model M] [--output-dir D] [--basename B]
        [--chunk-seconds S] [--layers L] [--device DEV] [--dtype T] [--mat-version V] [--channel N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.cli import ScriptDefaults, main  # noqa: E402

DEFAULTS = ScriptDefaults(
    prog="B2_model_wav2vec2.py",
    description="wav2vec2 / HuBERT / WavLM / data2vec-audio frame embeddings (20 ms grid at 16 kHz).",
    model="facebook/wav2vec2-large-xlsr-53",
    output_subdir="wav2vec2",
    basename="wav2vec2_embeddings",
)

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
