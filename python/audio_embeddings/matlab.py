"""What the MATLAB wrappers need from a run besides its outputs: MATLAB wording, and one index of results.

The wrappers (``matlab/*.m``) call the scripts with ``--matlab-names``: the one-line errors then
name the MATLAB options (``'HopSeconds'``) instead of the flags (``--hop-seconds``). With
``--matlab-results FILE`` a run also writes FILE, a MAT v5 index of what it did, so that one
Python call can serve a whole list of files or a folder: ``inputs`` and ``keys`` (N x 1 cell),
``mat_files`` (the result ``.mat`` of each input, '' when it has none), the failures
(``failed_paths``, ``failed_reasons``), and where the run wrote: ``output_dir``,
``corpus_json_file`` (B3's corpus JSON) and ``final_dir`` (B4's per-speaker files), '' when it has none.
The wrappers read their outputs from there, so they never restate a Python default (a base name,
a folder, a file name).

Their name-value options come from :data:`WRAPPER_FLAGS` and every declared
:class:`~audio_embeddings.backends.base.Option`, through ``matlab/private/ae_options_table.m``,
which :mod:`audio_embeddings.docs_tables` writes from these declarations.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from .backends.base import Option

#: Flags of the shared command line that the wrappers take as their own name-value options (checked
#: in MATLAB, sent only when given). Their MATLAB names follow the rule of every declared Option
#: (``--output-dir`` -> ``OutputDir``); their kinds, choices and defaults are read off the parser.
WRAPPER_FLAGS = ("--model", "--output-dir", "--basename", "--chunk-seconds", "--context-seconds", "--device",
                 "--dtype", "--mat-version", "--channel", "--overwrite", "--formats")
#: What the wrappers take for these flags where the parser's type says less: how a text value is sent
#: (Python's working folder may differ from MATLAB's: ``folder`` made absolute, ``path`` made absolute
#: when it exists, else a preset name or hub id, ``name`` a file name without folders), and bounds the
#: parser does not check (``number>=0``, ``integer>=0``: refused in MATLAB before Python runs).
WRAPPER_KINDS = {"--model": "path", "--output-dir": "folder", "--basename": "name",
                 "--context-seconds": "number>=0", "--channel": "integer>=0", "--formats": "text"}


def matlab_name(flag: str) -> str:
    """The MATLAB name of a command-line flag (``--chunk-seconds`` -> ``ChunkSeconds``), as for an Option."""
    return Option(flag, flag.lstrip("-").replace("-", "_"), "").matlab_name


#: ``{flag: MATLAB name}`` of :data:`WRAPPER_FLAGS`.
GENERIC_NAMES = {flag: matlab_name(flag) for flag in WRAPPER_FLAGS}


def matlab_wording(message: str, *, options: Iterable[Option] = ()) -> str:
    """``message`` with every flag of a declared or shared option replaced by its quoted MATLAB name.

    Parameters
    ----------
    message : str
        A one-line error of a run.
    options : iterable of Option, optional
        The script's own declared options besides the backends' and stages' (a hook's ``options``,
        e.g. B4's ``--threshold`` -> ``'Threshold'``).
    """
    from .options import declared_options as _declared_options

    names = dict(GENERIC_NAMES)
    names.update({o.flag: o.matlab_name for _, o in _declared_options()})
    names.update({o.flag: o.matlab_name for o in options})
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
                     "failed_reasons": [str(_field(f, "reason")) for f in failures],
                     **_written_where(run)}, version="5")


def _written_where(run: Any) -> dict[str, str]:
    """``output_dir``, ``corpus_json_file`` (B3's ``--output-file``) and ``final_dir`` (B4) of a run, '' when none."""
    output_dir = Path(run.output_dir)
    config = run.config
    output_file = config.option("output_file")
    corpus_json = output_dir / output_file if output_file and not config.store else ""
    final_dir = next((hook.final_dir(run) for hook in getattr(run, "hooks", ()) if hasattr(hook, "final_dir")), "")
    return {"output_dir": str(output_dir), "corpus_json_file": str(corpus_json), "final_dir": str(final_dir)}


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
