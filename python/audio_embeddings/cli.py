"""Command-line parsing behind the B-scripts and ``embed.py``; every run goes through the corpus engine.

An input is one or more audio files, a directory (searched recursively) or a manifest.
Errors reach the user as one line, ``error: <file>: <reason>``, on stderr, and a non-zero
exit status: 1 when an input failed, 2 for a usage or model error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .corpus.loader import LOADER_OPTIONS
from .corpus.shard import parse_shard
from .device import DEVICES, DTYPES, quiet_framework_logs, sanitize_mkl_threads
from .options import STAGES, declared_stage_options  # noqa: F401 - re-exported (their home is options.py)
from .options import declared_options as _declared_options
from .options import whole_number
from .outputs.contract import FORMATS
from .pipeline import DEFAULT_CHUNK_S, DEFAULT_CONTEXT_S
from .registry import PRESETS, backend_class, model_table, presets, resolve
from .app.config import RunConfig
from .app.run import EXIT_INPUT_FAILED, EXIT_USAGE, RunError, default_workers, execute, one_line  # noqa: F401 - the CLI's public names
from .app.run import merge_outputs as _merge_outputs

REPO_ROOT = Path(__file__).resolve().parents[2]


def models_root() -> Path:
    """Default output root: ``<repo>/Models`` in a checkout, ``./Models`` for an installed package."""
    if (REPO_ROOT / "python" / "audio_embeddings").is_dir():
        return REPO_ROOT / "Models"
    return Path.cwd() / "Models"


@dataclass(frozen=True)
class ScriptDefaults:
    """What differs between the scripts that share this CLI."""

    prog: str
    description: str
    model: str
    output_subdir: str
    basename: str | None  # None: the input file's stem
    formats: str = "npy,mat,json"  # for file inputs; directories and manifests default to npy
    backend: str | None = None  # a preset whose backend the script always uses (--model is then its checkpoint)
    chunk_s: float = DEFAULT_CHUNK_S
    context_s: float = DEFAULT_CONTEXT_S
    hooks: tuple = ()  # app.run.RunHooks: the script's own arguments and steps (seed spellings, corpus JSON, B4)
    help_models: tuple[str, ...] | None = None  # presets whose options --help shows (None: the default model's)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


_positive_int = whole_number(minimum=1)
_non_negative_int = whole_number(minimum=0)


def _shard_arg(text: str) -> str:
    try:
        parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _formats(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in items if t not in (*FORMATS, "ark")]  # ark: B4's Kaldi ark/scp (its hook takes it out)
    if bad or not items:
        raise argparse.ArgumentTypeError(f"choose from {','.join(FORMATS)} (and ark for B4) (comma-separated), "
                                         f"got {text!r}")
    if not set(items) & {"npy", "json", "mat", "ark"}:
        raise argparse.ArgumentTypeError("txt fragments come with npy, json or mat (which mark a file complete)")
    return items


class _ListModels(argparse.Action):
    """``--list-models``: the preset table, then exit."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(model_table())
        parser.exit()


#: Shared flags that ``--help`` shows; ``--help-all`` shows every flag (all are accepted either way).
SHORT_HELP_FLAGS = frozenset({
    "-h", "--help-all", "--version", "--list-models", "--model", "--output-dir", "--basename", "--formats",
    "--chunk-seconds", "--device", "--dtype", "--batch-size", "--overwrite", "--audio-dir", "--part", "--max-files",
    "--shard", "--store", "--quiet", "--verbose",
})
#: The last line of ``--help``: where the other options are.
HELP_POINTER = ("more: --help-all (every option, all models), --model NAME --help (that model's options), "
                "--list-models (the models)")


class _Parser(argparse.ArgumentParser):
    """The scripts' parser: remembers the command line it parses (for ``--help`` and errors, which
    depend on ``--model``), and says which options the chosen model takes when a flag is unknown."""

    defaults: "ScriptDefaults | None" = None
    hook_actions: tuple = ()
    seen_argv: tuple = ()

    def parse_known_args(self, args=None, namespace=None):
        self.seen_argv = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        if message.startswith("unrecognized arguments") and self.defaults is not None:
            message += "; " + model_options_line(self.defaults, self.seen_argv, prog=self.prog)  # one line
        super().error(message)


def _model_given(argv: Sequence[str]) -> str | None:
    """The ``--model`` value on a command line (the last one), or None."""
    value = None
    for i, word in enumerate(argv):
        if word == "--model" and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith("--model="):
            value = word.split("=", 1)[1]
    return value


def help_presets(defaults: ScriptDefaults, argv: Sequence[str] = ()) -> list[str]:
    """The presets whose options ``--help`` shows for this script and command line.

    The script's fixed backend (B3: metis); else ``--model`` as given; else the script's
    :attr:`ScriptDefaults.help_models` (``embed.py``: none), or its default model. A model that
    cannot be resolved (a path not there) shows none.
    """
    if defaults.backend is not None:
        return [defaults.backend]
    model = _model_given(argv)
    if model is None and defaults.help_models is not None:
        return list(defaults.help_models)
    try:
        return [resolve(model or defaults.model)[0].name]
    except (ValueError, OSError, KeyError):
        return []


def help_option_flags(names: Sequence[str]) -> list[str]:
    """The backend flags of these presets (each once, in declaration order)."""
    entries = presets()
    flags: list[str] = []
    for name in names:
        if name in entries:
            flags += [o.flag for o in backend_class(entries[name]).options if o.flag not in flags]
    return flags


def model_options_line(defaults: ScriptDefaults, argv: Sequence[str] = (), *, prog: str = "") -> str:
    """One line naming the options the chosen model takes (for an unknown flag's error)."""
    names = help_presets(defaults, argv)
    flags = help_option_flags(names)
    model = _model_given(argv) or defaults.model
    label = f"model {model}" + (f" ({names[0]})" if names and names[0] != model else "")
    own = f"options of {label}: {', '.join(flags)}" if flags else f"{label} takes no options of its own"
    return f"{own}; shared options: {prog} --help; every option: {prog} --help-all"


def _plugin_presets() -> list[str]:
    """Presets added by ``$AUDIO_EMBEDDINGS_PLUGINS`` (a user's own models: their options are always shown)."""
    return [name for name in presets() if name not in PRESETS]


class _Help(argparse.Action):
    """``-h/--help``: the shared options and the chosen model's (:func:`short_help`); ``--help-all``: every option."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None, full=False):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)
        self.full = full

    def __call__(self, parser, namespace, values, option_string=None):
        print(parser.format_help() if self.full else short_help(parser), end="")
        parser.exit()


def short_help(parser: argparse.ArgumentParser) -> str:
    """The help text with the shared options of :data:`SHORT_HELP_FLAGS`, the script's own (hooks) and the
    options of the model chosen on the command line (:func:`help_presets`); other flags are hidden here,
    listed by ``--help-all``, and accepted either way."""
    defaults = getattr(parser, "defaults", None)
    argv = getattr(parser, "seen_argv", ())
    names = help_presets(defaults, argv) if defaults is not None else []
    shown = set(help_option_flags(names + (_plugin_presets() if _model_given(argv) is None else [])))
    declared = {o.flag for _, o in _declared_options()}
    hooks = set(map(id, getattr(parser, "hook_actions", ())))
    saved = [(a, a.help) for a in parser._actions]
    epilog = parser.epilog
    try:
        for action in parser._actions:
            flags = set(action.option_strings)
            if not flags or id(action) in hooks:
                continue
            visible = bool(flags & shown) if flags & declared else bool(flags & SHORT_HELP_FLAGS)
            if not visible:
                action.help = argparse.SUPPRESS
        model = _model_given(argv)
        if model is None and defaults is not None and defaults.help_models is not None:
            model = ", ".join(names)
        elif model is None and defaults is not None:
            model = defaults.model
        if names and model:
            which = model + (f" ({names[0]})" if len(names) == 1 and names[0] != model else "")
            parser.epilog = f"shown: the shared options and those of {which}. {HELP_POINTER}"
        else:
            parser.epilog = f"shown: the shared options. {HELP_POINTER}"
        return parser.format_help()
    finally:
        for action, text in saved:
            action.help = text
        parser.epilog = epilog


class _MatlabOption(argparse.Action):
    """``--matlab-option NAME VALUE``: a MATLAB name-value pair, checked against the declared options."""

    def __call__(self, parser, namespace, values, option_string=None):
        name, text = values
        table = {o.matlab_name.lower(): o for _, o in _declared_options()}
        option = table.get(name.lower())
        if option is None:
            parser.error(f"'{name}' is not an option of this function (model options: "
                         f"{', '.join(sorted(o.matlab_name for o in table.values()))})")
        try:
            setattr(namespace, option.dest, option.convert(text))
        except ValueError as exc:
            parser.error(f"'{option.matlab_name}' must be {exc}")


def build_parser(defaults: ScriptDefaults) -> argparse.ArgumentParser:
    """The shared parser; flag names mirror the MATLAB name-value options.

    Every flag of every model is accepted; ``--help`` shows the shared options and the chosen
    model's (:func:`short_help`), ``--help-all`` all of them.
    """
    p = _Parser(prog=defaults.prog, description=defaults.description, add_help=False,
                usage="%(prog)s [options] [INPUT ...]",
                epilog=f"models: {', '.join(presets())} (--list-models: dimension, rate, stride, "
                       "licence, offline), or a hub id or a local model folder/file")
    p.defaults = defaults
    p.add_argument("-h", "--help", action=_Help, help="show the shared options and this model's, and exit")
    p.add_argument("--help-all", action=_Help, full=True, help="show every option (all models), and exit")
    p.add_argument("--version", action="version", version=f"%(prog)s (audio_embeddings {__version__})")
    p.add_argument("--list-models", action=_ListModels, nargs=0, help="print the model presets and exit")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="audio file(s) (wav/flac/ogg/mp3, anything ffmpeg reads, .mat with 'audio' and 'fs'), "
                        "or one directory (searched recursively), or one manifest (.txt/.csv/.tsv/.lst/.scp)")
    g = p.add_argument_group("corpus")
    g.add_argument("--audio-dir", default=None, help="corpus root: keys (and relative manifest entries) start here")
    g.add_argument("--part", default=None, help="only this sub-folder of the corpus root")
    g.add_argument("--pattern", action="append", default=None,
                   help="glob on the relative path or file name (repeatable; default: common audio extensions)")
    g.add_argument("--max-files", type=int, default=None, help="only the first N files (sorted)")
    g.add_argument("--workers", type=_non_negative_int, default=None,
                   help="decoding processes (default for directories/manifests: one per 4 usable cores, 1 to 4, "
                        "and none on 1-2 cores; 0 for files named one by one: decoding threads instead)")
    g.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="the model's intra-op (torch, LiteRT) and BLAS threads (default: the usable cores -- CPU "
                        "affinity, cgroup quota, SLURM_CPUS_PER_TASK -- minus the decoding processes, at least 1)")
    g.add_argument("--store", default=None, metavar="FILE.h5",
                   help="one HDF5 store for the whole corpus instead of per-file outputs")
    g.add_argument("--overwrite", action="store_true", help="redo files whose outputs exist (default: skip them)")
    g.add_argument("--shard", type=_shard_arg, default=None, metavar="I/N",
                   help="process shard I of N (0-based; default: the array task of Slurm, SGE, PBS/Torque or LSF, or AUDIO_EMBEDDINGS_ARRAY=FIRST-LAST[:STEP]; torchrun splits it again)")
    g.add_argument("--merge", action="store_true",
                   help="only join the shard summaries (and store parts) in --output-dir into summary.json")
    g.add_argument("--max-batch-seconds", type=_positive_float, default=60.0,
                   help="most audio per model call; long chunks go in smaller batches (default: %(default)g)")
    g.add_argument("--long-file-seconds", type=_positive_float, default=600.0,
                   help="stream recordings longer than this block by block (default: %(default)g)")
    for option in LOADER_OPTIONS:  # how files are read: not part of the resume fingerprint
        option.add_to(g)
    p.add_argument("--model", default=defaults.model,
                   help=f"preset name, hub id or local model directory (default: {defaults.model})")
    p.add_argument("--output-dir", default=str(models_root() / defaults.output_subdir),
                   help=f"where outputs go (default: Models/{defaults.output_subdir} under the repository)")
    p.add_argument("--basename", default=None,
                   help="output base name for a single input file (default: %s)" % (
                       defaults.basename or "the input file's stem"))
    p.add_argument("--formats", type=_formats, default=None,
                   help=f"per-file outputs, from npy,mat,json (default: {defaults.formats} for files, "
                        "npy for directories and manifests)")
    p.add_argument("--chunk-seconds", type=_positive_float, default=None,
                   help=f"longest model input in seconds for sequence models (default: {defaults.chunk_s:g}, or "
                        "the model's fixed input length, e.g. Whisper's 30)")
    p.add_argument("--context-seconds", type=float, default=defaults.context_s,
                   help="context kept on each side of a chunk and dropped from its output (default: %(default)g)")
    groups: dict[str, Any] = {}
    for title, option in _declared_options():
        option.add_to(groups.get(title) or groups.setdefault(title, p.add_argument_group(title)))
    p.add_argument("--matlab-option", nargs=2, action=_MatlabOption, metavar=("NAME", "VALUE"), help=argparse.SUPPRESS)
    p.add_argument("--matlab-names", action="store_true", help=argparse.SUPPRESS)  # errors name MATLAB options
    p.add_argument("--matlab-results", default=None, help=argparse.SUPPRESS)  # an index .mat of the run's results
    before = len(p._actions)
    for hook in defaults.hooks:
        hook.add_arguments(p, defaults)
    p.hook_actions = tuple(p._actions[before:])  # the script's own flags: always in --help
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="model inputs (chunks or windows, from any files) per model call (default: %(default)s)")
    p.add_argument("--mat-version", default="auto", choices=("5", "7.3", "auto"),
                   help="auto: v5 unless a variable reaches 2^31 bytes (default: auto)")
    p.add_argument("--channel", type=int, default=None, help="keep this 0-based channel instead of averaging")
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print errors only")
    verbosity.add_argument("--verbose", action="store_true", help="a line per file and per batch (GPU memory/use)")
    return p


def main(defaults: ScriptDefaults, argv: Sequence[str] | None = None) -> int:
    """Entry point of a thin script: sanitise the environment, parse, run."""
    sanitize_mkl_threads()
    args = build_parser(defaults).parse_args(argv)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    if not args.verbose:
        quiet_framework_logs()
    if args.quiet or not sys.stderr.isatty():  # MATLAB's system(), pipes, logs: no progress bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        _quiet_loaded_hub_libraries()
    try:
        return run(args, defaults=defaults, argv=[defaults.prog, *(sys.argv[1:] if argv is None else argv)])
    except KeyboardInterrupt:  # before the engine takes over the signal (e.g. while the model loads)
        logging.getLogger("audio_embeddings").error("error: interrupted before any file was embedded")
        return 130


def run(args: argparse.Namespace, *, defaults: ScriptDefaults, argv: Sequence[str] | None = None) -> int:
    """Run a parsed command line (:func:`audio_embeddings.app.run.execute`); returns the exit status.

    A run that cannot go on is one line on stderr (naming the MATLAB options with
    ``--matlab-names``); ``--matlab-results FILE`` also writes the MATLAB index of the results.
    """
    from .matlab import matlab_wording, write_results_index

    config = RunConfig.from_namespace(args, argv=argv)
    try:
        state = execute(config, defaults=defaults)
        if config.matlab_results and not config.merge and state.corpus is not None:
            write_results_index(config.matlab_results, state)
        return int(state.status or 0)
    except RunError as exc:
        own = [o for hook in defaults.hooks for o in getattr(hook, "options", ())]
        message = matlab_wording(str(exc), options=own) if config.matlab_names else str(exc)
        logging.getLogger("audio_embeddings").error(one_line(message))
        return exc.status


def _quiet_loaded_hub_libraries() -> None:
    """The same quiet for transformers / huggingface_hub when they were imported before this run
    (a notebook, a test session): their environment variables are read only at import."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging  # only when already imported: never imports it

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars  # likewise

        disable_progress_bars()


def configure_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """The package's ``logging`` levels from ``--quiet`` (errors only) / default (info) / ``--verbose`` (debug).

    Messages go to stderr as they are (``error: ...`` lines stay one line); only the
    ``audio_embeddings`` logger is configured, never the root logger.
    """
    logger = logging.getLogger("audio_embeddings")
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest and notebooks replace it between runs)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def merge_outputs(output_dir: str | Path, store: str | None = None) -> dict[str, Any]:
    """See :func:`audio_embeddings.app.run.merge_outputs` (kept here for callers of the CLI module)."""
    return _merge_outputs(output_dir, store)
