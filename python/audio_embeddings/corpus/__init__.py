"""Corpus runs: discovery, sharding, decoding in workers, batching across files, outputs, resume, reports.

Import the submodules directly (``audio_embeddings.corpus.engine`` etc.); this package
imports nothing at import time.
"""
