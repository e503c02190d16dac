#!/usr/bin/env python3
"""perch-runner: window embeddings, linear classifiers and query distances as self-describing tables.

    python python/perch_runner.py generate [-F|--format csv|parquet] [-c|--config FILE] INPUT OUTPUT_DIR
    python python/perch_runner.py classify [-F|--format csv|parquet] [-c|--config FILE] INPUT OUTPUT_DIR
    python python/perch_runner.py distance [-F|--format csv|parquet] [-c|--config FILE] INPUT QUERY OUTPUT_DIR
    python python/perch_runner.py train [-c|--config FILE] LABELLED OUTPUT_DIR
    python python/perch_runner.py batch [-F ...] [-c FILE] [--query FILE] COMMAND SOURCE_CSV
    python python/perch_runner.py search [--top-k K] [--metric cosine|euclidean|mip] [--query-mean] QUERY CORPUS OUTPUT_DIR

Extras on every command: --model (default perch_v2; birdnet runs offline), --device,
--batch-size, --workers, --overwrite, --quiet/--verbose; --layout perch-runner for perch-runner's
column names; generate --hoplite-db DIR for a perch-hoplite database; classify/distance also take
existing embeddings (a table, a folder of them, an HDF5 store, a hoplite database). Read a table
back with ``audio_embeddings.runner.read_embeddings(path)`` (or ``pandas.read_csv``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
