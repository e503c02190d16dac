"""perch-runner on the corpus engine: ``generate``, ``classify``, ``distance``, ``train`` and ``batch``.

One self-describing table per input (CSV with a ``#`` provenance header, or Parquet with the
provenance in its key-value metadata), linear classifiers stored as plain JSON in
perch-hoplite's layout, and a strict YAML config. The command line is
``python/perch_runner.py``; :mod:`.cli` parses, :mod:`.commands` runs.

Modules import their heavy dependencies (pyarrow, PyYAML, scikit-learn, the model
frameworks) only when a function needs them, so importing this package is cheap.
"""

from .classifier import ClassifierError, LinearClassifier
from .config import ConfigError, RunnerConfig, load_config, parse_config
from .tables import read_embeddings, read_provenance, read_table

__all__ = [
    "ClassifierError",
    "ConfigError",
    "LinearClassifier",
    "RunnerConfig",
    "load_config",
    "parse_config",
    "read_embeddings",
    "read_provenance",
    "read_table",
]
