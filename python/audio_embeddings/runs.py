"""The names of the run as they were importable before it moved to :mod:`audio_embeddings.app.run`.

Nothing here runs anything: import from :mod:`audio_embeddings.app` in new code.
"""

from .app.run import (EXIT_INPUT_FAILED, EXIT_OK, EXIT_USAGE, LOG, Run, RunError, RunHooks,  # noqa: F401
                      backend_option_values, default_workers, execute, fingerprint, load_model, merge_outputs,
                      model_name_of, one_line, stored_rows, summary_line)

__all__ = ["EXIT_INPUT_FAILED", "EXIT_OK", "EXIT_USAGE", "LOG", "Run", "RunError", "RunHooks",
           "backend_option_values", "default_workers", "execute", "fingerprint", "load_model", "merge_outputs",
           "model_name_of", "one_line", "stored_rows", "summary_line"]
