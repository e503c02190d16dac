"""perch-runner on the corpus engine: ``generate``, ``classify``, ``distance``, ``train`` and ``batch``.

One self-describing table per input (a plain CSV with its provenance in ``<table>.csv.json``, or
Parquet with the provenance in its key-value metadata; ours or perch-runner's layout), perch-hoplite
databases (:mod:`audio_embeddings.outputs.hoplite`), linear classifiers stored as plain JSON in
perch-hoplite's layout (and perch-runner's recognizer files), search across a corpus
(:mod:`.search`), and a strict YAML config. The command line is ``python/perch_runner.py``;
:mod:`.cli` parses, :mod:`.commands` runs; :mod:`.sources` reads embeddings that exist already.

Modules import their heavy dependencies (pyarrow, PyYAML, scikit-learn, the model
frameworks) only when a function needs them, so importing this package is cheap.
"""

from .classifier import ClassifierError, LinearClassifier, load_classifiers
from .config import ConfigError, RunnerConfig, load_config, parse_config
from .tables import read_embeddings, read_provenance, read_table

__all__ = [
    "ClassifierError",
    "ConfigError",
    "LinearClassifier",
    "load_classifiers",
    "RunnerConfig",
    "load_config",
    "parse_config",
    "read_embeddings",
    "read_provenance",
    "read_table",
]
