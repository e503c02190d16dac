"""The atomic writes moved to :mod:`audio_embeddings.atomic` (a leaf, so the hub's downloads use them
without importing the outputs layer). This module keeps the old import path; new code imports
``audio_embeddings.atomic``."""

from ..atomic import (atomic_path, check_writable, clean_stale_temporaries, ensure_free_space,  # noqa: F401
                      free_bytes, is_no_space, NoSpaceError, NotWritableError, RESERVE_BYTES, StagedFiles,
                      TEMPORARY_NAME, write_bytes_atomic, write_text_atomic)
