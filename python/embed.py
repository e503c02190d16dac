#!/usr/bin/env python3
"""Any registered model on one or more audio files -> <output-dir>/<stem>.npy, .mat, .json.

    python python/embed.py data/*.wav --model ge2e
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.scripts import EMBED as DEFAULTS, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
