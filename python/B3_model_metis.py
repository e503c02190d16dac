#!/usr/bin/env python3
"""B3: Metis 8-D semantic latents (w2v-bert-2.0 layer 17 -> RepCodec projection), 50 Hz, for a file or a corpus.

    python python/B3_model_metis.py [INPUT] [--audio-dir DIR] [--part P] [--max-files N] [--batch-size B]
        [--output-dir D] [--output-file semantic_audio_embeddings.json] [--device DEV]
        [--model W2V_BERT_ID_OR_DIR] [--codec FILE_OR_ID] [--stats FILE] [--layer 17] [--codes]

Writes per-file outputs (``.npy`` [T, 8]; ``.mat``/``.json`` for single files) and the corpus JSON
``{relative_path: [[8 floats], ...]}`` of the original extraction script.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.scripts import METIS as DEFAULTS, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(DEFAULTS))
