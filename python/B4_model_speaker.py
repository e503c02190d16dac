#!/usr/bin/env python3
"""B4: speaker embeddings (3D-Speaker ERes2NetV2 / CAM++, or the offline GE2E) of a file or a data_root tree.

    python python/B4_model_speaker.py INPUT [--model eres2netv2|eres2netv2_w24s4ep4|campplus|ge2e]
        [--checkpoint FILE_OR_ID] [--output-dir D] [--final-output-dir F] [--device DEV] [--batch-size B]
    python python/B4_model_speaker.py --compare a.wav b.wav [--model M] [--checkpoint C]
    torchrun --nproc_per_node=4 python/B4_model_speaker.py DATA_ROOT --model eres2netv2 --output-dir D

INPUT is an audio file or ``data_root/dataset/speaker/utterance.wav``. Per-utterance vectors go
to ``D/utterances/`` (resumable); the per-utterance and per-speaker files of the original
pipeline (pickles, lists, summary, ``.npy`` and ``.mat``) to ``D/final_embeddings/``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.scripts import SPEAKER as DEFAULTS, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
