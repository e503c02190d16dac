"""The B3 seed's corpus file: one JSON object ``{relative_path: [[8 floats], ...], ...}`` for a whole corpus.

The object is streamed one entry at a time (memory does not grow with the corpus) into a
temporary file that is renamed at the end. The text is what ``json.dump`` writes for the
same dictionary of ``array.tolist()`` values: float32 values become the shortest decimal
of their float64 value, keys are in corpus (sorted) order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from ..runs import RunHooks, stored_rows
from .atomic import atomic_path

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


class CorpusJson(RunHooks):
    """B3's run hook: ``--output-file`` names the corpus JSON, assembled from the per-file arrays after the run.

    Parameters
    ----------
    default_name : str
        The default ``--output-file`` ('' for none).
    """

    def __init__(self, default_name: str = DEFAULT_NAME):
        self.default_name = default_name

    def add_arguments(self, parser, defaults) -> None:
        parser.add_argument("--output-file", default=self.default_name,
                            help="the corpus JSON {relative_path: [[...], ...]} in --output-dir "
                                 "(default: %(default)s; '' for none)")

    def formats(self, run, formats):
        if run.args.output_file and not run.args.store and "npy" not in formats:
            return ("npy", *formats)  # the corpus JSON is assembled from the per-file arrays
        return formats

    def after(self, run, *, merged) -> None:
        if not run.args.output_file or merged is not None:
            return
        path = run.output_dir / run.args.output_file
        n = write_corpus_json(path, stored_rows(run.corpus.items, run.writer, run.args.store))
        run.say(f"{n} file(s) -> {path}")
