"""The B3 seed's corpus file: one JSON object ``{relative_path: [[8 floats], ...], ...}`` for a whole corpus.

The object is streamed one entry at a time (memory does not grow with the corpus) into a
temporary file that is renamed at the end. The text is what ``json.dump`` writes for the
same dictionary of ``array.tolist()`` values: float32 values become the shortest decimal
of their float64 value, keys are in corpus (sorted) order.

B3's run hook that writes it after a run (``--output-file``) is
:class:`audio_embeddings.hooks.CorpusJson`: outputs never import the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from ..atomic import atomic_path

#: The seed's default file name.
DEFAULT_NAME = "semantic_audio_embeddings.json"


def write_corpus_json(path: str | Path, entries: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write ``{key: rows.tolist(), ...}`` for ``entries`` of (key, float32 [T, D]); returns the entry count."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("{")
        for key, rows in entries:
            fh.write((", " if count else "") + json.dumps(key) + ": " + json.dumps(np.asarray(rows).tolist()))
            count += 1
        fh.write("}")
    return count
