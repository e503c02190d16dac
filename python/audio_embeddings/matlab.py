"""What the MATLAB wrappers need from a run besides its outputs: MATLAB wording, and one index of results.

The wrappers (``matlab/*.m``) call the scripts with ``--matlab-names``: the one-line errors then
name the MATLAB options (``'HopSeconds'``) instead of the flags (``--hop-seconds``). With
``--matlab-results FILE`` a run also writes FILE, a MAT v5 index of what it did, so that one
Python call can serve a whole list of files or a folder: ``inputs`` and ``keys`` (N x 1 cell),
``mat_files`` (the result ``.mat`` of each input, '' when it has none) and the failures
(``failed_paths``, ``failed_reasons``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: Flags of the shared command line that the wrappers expose, with their MATLAB names.
GENERIC_NAMES = {"--model": "Model", "--output-dir": "OutputDir", "--basename": "Basename",
                 "--chunk-seconds": "ChunkSeconds", "--context-seconds": "ContextSeconds", "--device": "Device",
                 "--dtype": "Dtype", "--mat-version": "MatVersion", "--channel": "Channel",
                 "--overwrite": "Overwrite", "--checkpoint": "Checkpoint"}


def matlab_wording(message: str) -> str:
    """``message`` with every flag of a declared or shared option replaced by its quoted MATLAB name."""
    from .cli import _declared_options

    names = dict(GENERIC_NAMES)
    names.update({o.flag: o.matlab_name for _, o in _declared_options()})
    return re.sub(r"--[A-Za-z0-9][A-Za-z0-9_-]*", lambda m: f"'{names[m.group(0)]}'" if m.group(0) in names
                  else m.group(0), message)


def write_results_index(path: str | Path, run: Any) -> None:
    """The ``--matlab-results`` index of a finished run (see the module docstring)."""
    from .outputs.matfile import write_mat

    base_of = _base_function(run.writer)
    failures = [*getattr(run.corpus, "failures", ()), *run.report.failures]
    inputs, keys, mats = [], [], []
    for item in run.items:
        inputs.append(str(item.path))
        keys.append(item.key)
        mat = base_of(item.key).with_name(base_of(item.key).name + ".mat") if base_of else None
        mats.append(str(mat) if mat is not None and mat.is_file() else "")
    write_mat(path, {"inputs": inputs, "keys": keys, "mat_files": mats,
                     "failed_paths": [str(_field(f, "path")) for f in failures],
                     "failed_reasons": [str(_field(f, "reason")) for f in failures]}, version="5")


def _field(failure: Any, name: str) -> Any:
    return failure[name] if isinstance(failure, dict) else getattr(failure, name)


def _base_function(writer: Any):
    """The per-file output base of the run's tree writer (through wrappers such as a tee), or None."""
    seen = set()
    while writer is not None and id(writer) not in seen:
        seen.add(id(writer))
        if hasattr(writer, "base"):
            return writer.base
        inner = getattr(writer, "inner", None) or getattr(writer, "writer", None)
        if inner is None and hasattr(writer, "writers"):
            inner = next((w for w in writer.writers if hasattr(w, "base")), None)
        writer = inner
    return None
