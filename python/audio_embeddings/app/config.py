"""What a run is asked to do: one typed :class:`RunConfig`, whoever asks.

The scripts build it from their parsed flags (:meth:`RunConfig.from_namespace`), the Python API
from its keywords, MATLAB through the scripts. Below the front ends nothing reads an
``argparse.Namespace``: the run (:mod:`audio_embeddings.app.run`) reads this object only.

The shared settings are typed fields. Everything else a run takes is *declared* somewhere else
and kept in :attr:`RunConfig.options` by its ``dest``: the backend's options (``layers``,
``hop_s``...), the shared stages' (``tr``, ``hoplite_db``, ``plot``, ``compile``) and a script
hook's own (B4's ``final_output_dir``, B3's ``output_file``, B1's ``seed_inputs``), read with
:meth:`RunConfig.option`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass
class RunConfig:
    """The settings of one run.

    Attributes
    ----------
    inputs : tuple of str
        Audio files, one folder (searched recursively) or one manifest.
    output_dir : str
        Where the outputs, ``summary.json`` and ``failures.csv`` go.
    model : str or None
        Preset name, hub id or local model (None: the script's default).
    basename : str or None
        Output name of a single-file run (None: the script's default or the file's stem).
    formats : tuple of str or None
        Per-file outputs (None: the script's default for files, ``npy`` for folders).
    audio_dir, part, pattern, max_files
        Corpus selection (``--audio-dir``, ``--part``, ``--pattern``, ``--max-files``).
    workers, threads : int or None
        Decoding processes and the model's threads (None: :mod:`audio_embeddings.corpus.threads`).
    store : str or None
        One HDF5 store instead of per-file outputs.
    overwrite, merge, verify_inputs : bool
        Redo existing outputs; only merge shard summaries; hash every input.
    shard : str or None
        ``I/N`` (None: the array scheduler's task, or the whole corpus).
    max_batch_seconds, long_file_seconds, file_timeout : float
        Engine limits (s).
    scratch_dir : str or None
        Scratch files of streamed recordings.
    chunk_seconds, context_seconds : float or None
        Context chunking (s; None for chunk: the script's default or the model's fixed input).
    channel : int or None
        Keep one 0-based channel instead of the mean.
    device, dtype, mat_version : str
    batch_size : int
    quiet, verbose : bool
    matlab_names : bool
        Errors name the MATLAB options.
    matlab_results : str or None
        Also write the MATLAB results index here.
    options : dict
        Every declared option (backend, shared stages, script hooks) by ``dest``.
    argv : list of str or None
        The command line, for provenance (None: not called from a command line).
    """

    inputs: tuple[str, ...] = ()
    output_dir: str = "."
    model: str | None = None
    basename: str | None = None
    formats: tuple[str, ...] | None = None
    audio_dir: str | None = None
    part: str | None = None
    pattern: tuple[str, ...] | None = None
    max_files: int | None = None
    workers: int | None = None
    threads: int | None = None
    store: str | None = None
    overwrite: bool = False
    shard: str | None = None
    merge: bool = False
    max_batch_seconds: float = 60.0
    long_file_seconds: float = 600.0
    file_timeout: float | None = None
    scratch_dir: str | None = None
    verify_inputs: bool = False
    chunk_seconds: float | None = None
    context_seconds: float = 2.0
    channel: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 8
    mat_version: str = "auto"
    quiet: bool = False
    verbose: bool = False
    matlab_names: bool = False
    matlab_results: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    argv: list[str] | None = None

    def option(self, dest: str, default: Any = None) -> Any:
        """The option ``dest`` declared by a backend, a shared stage or a script hook (its value, or
        ``default`` when not given)."""
        value = self.options.get(dest)
        return default if value is None else value

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, argv: Sequence[str] | None = None) -> "RunConfig":
        """Typed fields from ``values``; every other key (a declared option) into :attr:`options`."""
        names = cls.field_names() - {"options", "argv"}
        known = {k: v for k, v in values.items() if k in names}
        for key in ("inputs", "formats", "pattern"):
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        options = {k: v for k, v in values.items() if k not in names and k not in ("options", "argv")}
        options.update(values.get("options") or {})
        return cls(**known, options=options, argv=list(argv) if argv is not None else None)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, *, argv: Sequence[str] | None = None) -> "RunConfig":
        """The config of a parsed command line (the parser's ``dest`` names are the fields and options)."""
        return cls.from_mapping(vars(args), argv=argv)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes`` (fields or declared options)."""
        names = self.field_names()
        options = {**self.options, **{k: v for k, v in changes.items() if k not in names}}
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in names}, options=options)
