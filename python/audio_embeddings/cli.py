"""Command-line parsing and the per-file run behind the B-scripts and ``embed.py``.

Errors reach the user as one line, ``error: <file>: <reason>``, on stderr, and a non-zero
exit status: 1 when an input failed, 2 for a usage or model error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .device import DEVICES, DTYPES, sanitize_mkl_threads
from .pipeline import DEFAULT_CHUNK_S, DEFAULT_CONTEXT_S, embed_audio

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class ScriptDefaults:
    """What differs between the scripts that share this CLI."""

    prog: str
    description: str
    model: str
    output_subdir: str
    basename: str | None  # None: the input file's stem
    multi_input: bool = False


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser(defaults: ScriptDefaults) -> argparse.ArgumentParser:
    """The shared parser; flag names mirror the MATLAB name-value options."""
    p = argparse.ArgumentParser(prog=defaults.prog, description=defaults.description)
    if defaults.multi_input:
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file(s); also .mat with 'audio' and 'fs'")
    else:
        p.add_argument("input", metavar="INPUT", help="audio file (wav/flac/ogg/mp3, anything ffmpeg reads, or "
                                                      ".mat with 'audio' and 'fs')")
    p.add_argument("--model", default=defaults.model,
                   help=f"preset name, hub id or local model directory (default: {defaults.model})")
    p.add_argument("--output-dir", default=str(REPO_ROOT / "Models" / defaults.output_subdir),
                   help="where outputs go (default: Models/%(default)s under the repository)".replace(
                       "%(default)s", defaults.output_subdir))
    p.add_argument("--basename", default=defaults.basename,
                   help="output file base name (default: %s)" % (defaults.basename or "the input file's stem"))
    p.add_argument("--chunk-seconds", type=_positive_float, default=DEFAULT_CHUNK_S,
                   help="longest model input in seconds for sequence models (default: %(default)g)")
    p.add_argument("--context-seconds", type=float, default=DEFAULT_CONTEXT_S,
                   help="context kept on each side of a chunk and dropped from its output (default: %(default)g)")
    p.add_argument("--layers", default=None,
                   help="wav2vec2 family: last | all | I,J,... (0 = input to the first transformer layer)")
    p.add_argument("--no-trim-silence", dest="trim_silence", action="store_const", const=False, default=None,
                   help="GE2E: do not trim long silences before embedding")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--batch-size", type=int, default=4, help="chunks or windows per model call (default: 4)")
    p.add_argument("--mat-version", default="auto", choices=("5", "7.3", "auto"),
                   help="auto: v5 unless a variable reaches 2^31 bytes (default: auto)")
    p.add_argument("--channel", type=int, default=None, help="keep this 0-based channel instead of averaging")
    p.add_argument("--quiet", action="store_true", help="print errors only")
    return p


def _fail(message: str) -> str:
    return "error: " + " ".join(str(message).split())


def run(args: argparse.Namespace, *, argv: Sequence[str] | None = None) -> int:
    """Embed each input and write its outputs; return the exit status."""
    from . import audio
    from .outputs.contract import now_iso, write_outputs
    from .registry import load_backend

    started = now_iso()
    inputs = list(getattr(args, "inputs", None) or [args.input])
    if args.basename and len(inputs) > 1:
        print(_fail("--basename needs a single input"), file=sys.stderr)
        return EXIT_USAGE
    try:
        audio.check_file(inputs[0])  # fail fast, before a model download
        backend = load_backend(args.model, device=args.device, dtype=args.dtype, layers=args.layers,
                               trim_silence=args.trim_silence)
    except audio.AudioError as exc:
        print(_fail(exc), file=sys.stderr)
        return EXIT_INPUT_FAILED
    except (ValueError, OSError, ImportError) as exc:
        print(_fail(f"{args.model}: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    model_name = getattr(backend, "source", None) or args.model
    failed = 0
    for path in inputs:
        try:
            data, rate = audio.decode(path)
            loaded = audio.prepare(data, rate, target_rate_hz=backend.sample_rate_hz, channel=args.channel,
                                   min_samples=backend.min_samples, name=str(path))
            try:
                result = embed_audio(backend, loaded, chunk_s=args.chunk_seconds, context_s=args.context_seconds,
                                     batch_size=args.batch_size)
            except ValueError as exc:
                raise audio.AudioError(f"{path}: {exc}") from exc
            written = write_outputs(
                result, output_dir=args.output_dir, basename=args.basename or Path(path).stem,
                model_name=str(model_name), backend_info=backend.describe(), backend_fields=backend.mat_fields(),
                input_path=str(path), audio_info={"source_sample_rate": loaded.source_sample_rate_hz,
                                                  "source_channels": loaded.source_channels,
                                                  "channel": loaded.channel, "duration_s": loaded.duration_s},
                started_at=started, mat_version=args.mat_version, argv=list(argv) if argv is not None else None,
            )
        except audio.AudioError as exc:
            failed += 1
            print(_fail(exc), file=sys.stderr)
            continue
        if written["mat_error"]:
            print(f"warning: {path}: .mat not written ({written['mat_error']}); see {written['npy']}.", file=sys.stderr)
        if not args.quiet:
            shape = "x".join(str(s) for s in result.embeddings.shape)
            print(f"{path}: {shape} -> {written['npy']}")
    return EXIT_INPUT_FAILED if failed else 0


def main(defaults: ScriptDefaults, argv: Sequence[str] | None = None) -> int:
    """Entry point of a thin script: sanitise the environment, parse, run."""
    import os

    sanitize_mkl_threads()
    args = build_parser(defaults).parse_args(argv)
    if args.quiet or not sys.stderr.isatty():  # MATLAB's system(), pipes, logs: no progress bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return run(args, argv=[defaults.prog, *(sys.argv[1:] if argv is None else argv)])
