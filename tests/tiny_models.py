"""The tests' name for :mod:`audio_embeddings.backends.tiny.wav2vec2` (the builders live in the package).

This module *is* that one once imported (``sys.modules`` points at it), so its constants and
functions are shared, and setting one here sets it there. Run as a script for the Octave tests:

    python tests/tiny_models.py ...      # see audio_embeddings/backends/tiny/wav2vec2.py
"""

import importlib
import sys
from pathlib import Path

_PYTHON = str(Path(__file__).resolve().parents[1] / "python")
if _PYTHON not in sys.path:
    sys.path.insert(0, _PYTHON)

_module = importlib.import_module("audio_embeddings.backends.tiny.wav2vec2")

if __name__ == "__main__":
    sys.exit(_module.main(sys.argv[1:]))
sys.modules[__name__] = _module
