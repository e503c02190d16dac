"""``audio-embeddings <command> ...``: one installed command for every script of the toolkit.

    audio-embeddings embed FILE... --model ge2e          # python/embed.py
    audio-embeddings perch --input dawn.wav --output out # python/B1_model_perch.py
    audio-embeddings wav2vec2 stimulus.wav               # python/B2_model_wav2vec2.py
    audio-embeddings metis DIR --stats stats.pt          # python/B3_model_metis.py
    audio-embeddings speaker DATA_ROOT --model ge2e      # python/B4_model_speaker.py
    audio-embeddings align FILE.mat --tr 2               # python/align.py
    audio-embeddings runner generate INPUT OUT           # python/perch_runner.py (also: perch-runner)
    audio-embeddings make-tiny-model wav2vec2-base DIR/wav2vec2-base   # random weights, to try offline
    audio-embeddings --list-models                       # the presets (as embed --list-models)
    audio-embeddings --version                           # the installed package's version

``python -m audio_embeddings`` is the same command. Each command takes exactly the options of
its script (``audio-embeddings perch --help``).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Any, Callable, Sequence

PROG = "audio-embeddings"

#: command -> (``module:attribute``, one line for the usage). The attribute is a
#: :class:`~audio_embeddings.cli.ScriptDefaults` (run through ``cli.main``) or a ``main(argv)``.
COMMANDS: dict[str, tuple[str, str]] = {
    "embed": ("audio_embeddings.scripts:EMBED", "any registered model on files, a folder or a manifest"),
    "perch": ("audio_embeddings.scripts:PERCH", "B1: Perch 2.0 / BirdNET window embeddings (_frag<i>.txt too)"),
    "wav2vec2": ("audio_embeddings.scripts:WAV2VEC2", "B2: wav2vec2-family frame embeddings"),
    "metis": ("audio_embeddings.scripts:METIS", "B3: Metis 8-D semantic latents (+ the corpus JSON)"),
    "speaker": ("audio_embeddings.scripts:SPEAKER", "B4: speaker embeddings per utterance and per speaker"),
    "align": ("audio_embeddings.align:main", "align written embeddings to an EEG/MEG rate or an fMRI TR"),
    "runner": ("audio_embeddings.runner.cli:main", "perch-runner: generate | classify | distance | train | batch"),
    "make-tiny-model": ("audio_embeddings.backends.tiny:main",
                        "a tiny model with random weights for trying the toolkit offline (--list)"),
}


def usage() -> str:
    """The top-level help text."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [options]   ({PROG} <command> --help for its options)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", f"  {PROG} --list-models   print the model presets (as {PROG} embed --list-models)",
              f"  {PROG} --version       print the package version"]
    return "\n".join(lines)


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``), else ``audio_embeddings.__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("audio-embeddings")
    except PackageNotFoundError:  # run from a checkout (PYTHONPATH=python) without an install
        from . import __version__

        return __version__


def resolve(target: str) -> Any:
    """Import ``module:attribute``."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _run_main(name: str, entry: Callable[[Sequence[str]], int], argv: list[str]) -> int:
    """A ``main(argv)`` whose argparse takes its ``prog`` from ``sys.argv[0]``: name it after the command."""
    saved = sys.argv[0]
    sys.argv[0] = f"{PROG} {name}"
    try:
        return int(entry(argv) or 0)
    finally:
        sys.argv[0] = saved


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a command; returns its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        ``[command, option, ...]``.

    Returns
    -------
    int
        The command's exit status; 0 for ``--help``/``--version``/``--list-models``, 2 for a missing or
        unknown command.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"{PROG} {package_version()}")
        return 0
    if args[0] == "--list-models":
        from .registry import model_table

        print(model_table())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} ({PROG} --help)",
              file=sys.stderr)
        return 2
    try:
        entry = resolve(COMMANDS[name][0])
    except (ImportError, AttributeError) as exc:
        print(f"error: {PROG} {name} is not available in this installation ({exc})", file=sys.stderr)
        return 2
    from .cli import ScriptDefaults

    if isinstance(entry, ScriptDefaults):
        from .cli import main as script_main

        return script_main(dataclasses.replace(entry, prog=f"{PROG} {name}"), rest)
    return _run_main(name, entry, rest)


__all__ = ["COMMANDS", "main", "usage", "resolve", "package_version"]
