"""The application layer: what a run is asked to do (:class:`RunConfig`), for every front end.

The scripts, the Python API, perch-runner and MATLAB (through the scripts) build a
:class:`RunConfig` and hand it to the one run (:func:`audio_embeddings.app.run.execute`).
"""

from .config import RunConfig

__all__ = ["RunConfig"]
