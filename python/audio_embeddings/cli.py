"""Command-line parsing behind the B-scripts and ``embed.py``; every run goes through the corpus engine.

An input is one or more audio files, a directory (searched recursively) or a manifest.
Errors reach the user as one line, ``error: <file>: <reason>``, on stderr, and a non-zero
exit status: 1 when an input failed, 2 for a usage or model error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .device import DEVICES, DTYPES, quiet_framework_logs, sanitize_mkl_threads
from .pipeline import DEFAULT_CHUNK_S, DEFAULT_CONTEXT_S

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
    formats: str = "npy,mat,json"  # for file inputs; directories and manifests default to npy
    seed_flags: bool = False  # the Perch script's --input/--output/--duration_sec, and a tone without input
    backend: str | None = None  # a preset whose backend the script always uses (--model is then its checkpoint)
    chunk_s: float = DEFAULT_CHUNK_S
    context_s: float = DEFAULT_CONTEXT_S
    corpus_json: str | None = None  # default --output-file: one JSON {relative_path: rows} for the corpus
    speakers: bool = False  # B4: utterance vectors per file, then per-utterance/per-speaker files (speakers.py)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _shard_arg(text: str) -> str:
    from .corpus.shard import parse_shard

    try:
        parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _formats(text: str) -> tuple[str, ...]:
    from .outputs.contract import FORMATS

    items = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in items if t not in FORMATS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"choose from {','.join(FORMATS)} (comma-separated), got {text!r}")
    if not set(items) & {"npy", "json", "mat"}:
        raise argparse.ArgumentTypeError("txt fragments come with npy, json or mat (which mark a file complete)")
    return items


def default_workers() -> int:
    """Decoding processes for corpus runs: up to 4, leaving a core for the model."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def build_parser(defaults: ScriptDefaults) -> argparse.ArgumentParser:
    """The shared parser; flag names mirror the MATLAB name-value options."""
    p = argparse.ArgumentParser(prog=defaults.prog, description=defaults.description)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="audio file(s) (wav/flac/ogg/mp3, anything ffmpeg reads, .mat with 'audio' and 'fs'), "
                        "or one directory (searched recursively), or one manifest (.txt/.csv/.tsv/.lst/.scp)")
    g = p.add_argument_group("corpus")
    g.add_argument("--audio-dir", default=None, help="corpus root: keys (and relative manifest entries) start here")
    g.add_argument("--part", default=None, help="only this sub-folder of the corpus root")
    g.add_argument("--pattern", action="append", default=None,
                   help="glob on the relative path or file name (repeatable; default: common audio extensions)")
    g.add_argument("--max-files", type=int, default=None, help="only the first N files (sorted)")
    g.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: up to 4 for directories/manifests, 0 for single files)")
    g.add_argument("--store", default=None, metavar="FILE.h5",
                   help="one HDF5 store for the whole corpus instead of per-file outputs")
    g.add_argument("--overwrite", action="store_true", help="redo files whose outputs exist (default: skip them)")
    g.add_argument("--shard", type=_shard_arg, default=None, metavar="I/N",
                   help="process shard I of N (0-based; default from SLURM_ARRAY_TASK_ID/COUNT; torchrun splits it)")
    g.add_argument("--merge", action="store_true",
                   help="only join the shard summaries (and store parts) in --output-dir into summary.json")
    g.add_argument("--max-batch-seconds", type=_positive_float, default=60.0,
                   help="most audio per model call; long chunks go in smaller batches (default: %(default)g)")
    g.add_argument("--long-file-seconds", type=_positive_float, default=600.0,
                   help="stream recordings longer than this block by block (default: %(default)g)")
    p.add_argument("--model", default=defaults.model,
                   help=f"preset name, hub id or local model directory (default: {defaults.model})")
    p.add_argument("--output-dir", default=str(REPO_ROOT / "Models" / defaults.output_subdir),
                   help=f"where outputs go (default: Models/{defaults.output_subdir} under the repository)")
    p.add_argument("--basename", default=None,
                   help="output base name for a single input file (default: %s)" % (
                       defaults.basename or "the input file's stem"))
    p.add_argument("--formats", type=_formats, default=None,
                   help=f"per-file outputs, from npy,mat,json (default: {defaults.formats} for files, "
                        "npy for directories and manifests)")
    p.add_argument("--chunk-seconds", type=_positive_float, default=defaults.chunk_s,
                   help="longest model input in seconds for sequence models (default: %(default)g)")
    p.add_argument("--context-seconds", type=float, default=defaults.context_s,
                   help="context kept on each side of a chunk and dropped from its output (default: %(default)g)")
    p.add_argument("--layers", default=None,
                   help="wav2vec2 family: last | all | I,J,... (0 = input to the first transformer layer)")
    p.add_argument("--no-trim-silence", dest="trim_silence", action="store_const", const=False, default=None,
                   help="GE2E: do not trim long silences before embedding")
    w = p.add_argument_group("window models (Perch, BirdNET)")
    w.add_argument("--hop-seconds", type=_positive_float, default=None,
                   help="seconds between window starts (default: the window length)")
    w.add_argument("--force_10sec", action="store_const", const=True, default=None,
                   help="Perch: 10 s windows at 16 kHz instead of 5 s at 32 kHz")
    w.add_argument("--logits", action="store_const", const=True, default=None,
                   help="also write the class logits per window (<base>_label.npy, .mat 'label')")
    w.add_argument("--spatial", action="store_const", const=True, default=None,
                   help="Perch: also write spatial_embedding [T, 16, 4, 1536]")
    w.add_argument("--top-k", type=int, default=0,
                   help="the K best labels per window into the .json and <base>_labels.csv (implies --logits)")
    m = p.add_argument_group("Metis semantic latents (B3, --model metis)")
    m.add_argument("--codec", default=None, metavar="FILE_OR_ID",
                   help="RepCodec checkpoint: semantic_codec/model.safetensors of amphion/MaskGCT (file, folder or id)")
    m.add_argument("--stats", default=None, metavar="FILE",
                   help="w2v-bert feature statistics (torch file with 'mean' and 'var'; default: Amphion's)")
    m.add_argument("--layer", type=int, default=None, help="w2v-bert hidden-state index (default: 17)")
    m.add_argument("--codes", action="store_const", const=True, default=None,
                   help="also write each frame's codebook index (<base>_codes.npy, 0-based)")
    if defaults.corpus_json:
        m.add_argument("--output-file", default=defaults.corpus_json,
                       help="the corpus JSON {relative_path: [[...], ...]} in --output-dir (default: %(default)s; "
                            "'' for none)")
    if defaults.speakers:
        k = p.add_argument_group("speaker embeddings (B4)")
        k.add_argument("--checkpoint", default=None, metavar="FILE_OR_ID",
                       help="weights of --model: a local file, or a ModelScope id (default: the published model)")
        k.add_argument("--final-output-dir", default=None, metavar="DIR",
                       help="per-utterance and per-speaker files (default: OUTPUT_DIR/final_embeddings)")
        k.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                       help="only print the cosine similarity of two recordings' embeddings")
    if defaults.seed_flags:
        s = p.add_argument_group("the extraction script's spellings")
        s.add_argument("--input", dest="seed_inputs", action="append", default=None, metavar="AUDIO",
                       help="audio file (same as INPUT); without any input a synthetic tone is embedded")
        s.add_argument("--output", dest="output_dir", default=argparse.SUPPRESS, metavar="DIR",
                       help="same as --output-dir")
        s.add_argument("--duration_sec", type=_positive_float, default=10.0,
                       help="length of the synthetic tone made when no input is given (default: %(default)g)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--batch-size", type=int, default=8,
                   help="model inputs (chunks or windows, from any files) per model call (default: %(default)s)")
    p.add_argument("--mat-version", default="auto", choices=("5", "7.3", "auto"),
                   help="auto: v5 unless a variable reaches 2^31 bytes (default: auto)")
    p.add_argument("--channel", type=int, default=None, help="keep this 0-based channel instead of averaging")
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print errors only")
    verbosity.add_argument("--verbose", action="store_true", help="a line per file and per batch (GPU memory/use)")
    return p


def _fail(message: str) -> str:
    return "error: " + " ".join(str(message).split())


def _usage(message: str) -> int:
    print(_fail(message), file=sys.stderr)
    return EXIT_USAGE


def merge_outputs(output_dir: str | Path, store: str | None = None) -> dict[str, Any]:
    """Join shard summaries (and store parts) of ``output_dir`` into ``summary.json``/``failures.csv`` (and FILE.h5)."""
    from .corpus.report import merge_reports
    from .corpus.store import merge_store

    merged = merge_reports(output_dir)
    if store:
        merged["store_index"] = merge_store(store)
    return merged


def _synthetic_input(output_dir: str, *, duration_s: float, sample_rate_hz: int = 32000) -> Path:
    """The Perch script's smoke-test input: a 440 Hz tone, ``synthetic_perch_32khz_<D>s.wav``."""
    import soundfile as sf

    from .audio import synthetic_tone
    from .outputs.atomic import atomic_path

    path = Path(output_dir) / f"synthetic_perch_32khz_{float(duration_s)}s.wav"
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, synthetic_tone(duration_s=duration_s, sample_rate_hz=sample_rate_hz), sample_rate_hz)
    return path


def _device_for_rank(device: str, dist: Any) -> str:
    if dist is None or device not in ("auto", "cuda"):
        return device
    import torch

    return f"cuda:{dist.local_rank}" if torch.cuda.is_available() else device


def run(args: argparse.Namespace, *, defaults: ScriptDefaults, argv: Sequence[str] | None = None) -> int:
    """Discover, shard, load the model, run the corpus engine, report; return the exit status."""
    from . import audio
    from .corpus.discover import CorpusError, discover
    from .corpus.engine import ConfigMismatch, RunOptions, check_run_config, run_corpus
    from .corpus.progress import Progress
    from .corpus.report import RunReport, all_shards_reported
    from .corpus.shard import distributed_env, resolve_shard
    from .corpus.store import StoreWriter, parts_root
    from .corpus.writers import TreeWriter, colliding_keys
    from .outputs.contract import now_iso, package_versions
    from .outputs.corpus_json import write_corpus_json
    from .speakers import SpeakerWriter

    if args.merge:
        whole = Path(args.output_dir) / "summary.json"
        try:
            merged = merge_outputs(args.output_dir, args.store)
        except FileNotFoundError as exc:
            if not (defaults.speakers and whole.is_file()):
                return _usage(exc)
            merged = {**json.loads(whole.read_text()), "shards_merged": [], "shards_missing": []}  # one process
        if not args.quiet:
            print(f"merged {len(merged['shards_merged'])} shard(s): {merged['files_done']} done, "
                  f"{merged['files_failed']} failed -> {whole}")
        if defaults.speakers:
            try:
                _finalize_speakers(args, merged.get("model"))
            except FileNotFoundError as exc:
                return _usage(exc)
        return EXIT_INPUT_FAILED if merged["files_failed"] or merged["shards_missing"] else 0
    if getattr(args, "compare", None):
        return _compare(args, defaults)
    inputs = list(args.inputs) + list(getattr(args, "seed_inputs", None) or [])
    if not inputs and not args.audio_dir and defaults.seed_flags:
        inputs = [str(_synthetic_input(args.output_dir, duration_s=args.duration_sec))]
    try:
        shard = resolve_shard(args.shard)
        corpus = discover(inputs, audio_dir=args.audio_dir, part=args.part, patterns=args.pattern,
                          max_files=args.max_files, exclude=[args.output_dir])
    except (CorpusError, ValueError, OSError) as exc:
        return _usage(exc)
    single = corpus.kind == "files" and len(corpus.items) == 1
    if args.basename and not single:
        return _usage("--basename needs a single input file")
    items = shard.select(corpus.items)
    basename = (args.basename or defaults.basename) if single else None
    if basename is None and (clashes := colliding_keys(i.key for i in items)):
        a, b = clashes[0]
        return _usage(f"{a} and {b} would write the same outputs; select one with --pattern")
    if corpus.kind == "files":
        try:
            audio.check_file(corpus.items[0].path)  # fail fast, before a model download
        except audio.AudioError as exc:
            print(_fail(exc), file=sys.stderr)
            return EXIT_INPUT_FAILED
    dist = distributed_env(os.environ)
    try:
        backend = _load(args, defaults, device=_device_for_rank(args.device, dist))
    except (ValueError, OSError, ImportError, KeyError) as exc:
        return _usage(f"{args.model}: {exc}")
    model_name = str(getattr(backend, "source", None) or args.model)
    formats = args.formats or (tuple(defaults.formats.split(",")) if corpus.kind == "files" else ("npy",))
    corpus_json = getattr(args, "output_file", None)
    if corpus_json and not args.store and "npy" not in formats:
        formats = ("npy", *formats)  # the corpus JSON is assembled from the per-file arrays
    run_info = {"model_name": model_name, "backend_info": backend.describe(), "backend_fields": backend.mat_fields(),
                "started_at": now_iso(), "mat_version": args.mat_version,
                "argv": list(argv) if argv is not None else None}
    resume = corpus.is_tree and not args.overwrite
    settings = {"model": model_name, "layers": args.layers, "chunk_seconds": args.chunk_seconds,
                "context_seconds": args.context_seconds, "channel": args.channel, "dtype": args.dtype,
                "trim_silence": args.trim_silence, "hop_seconds": args.hop_seconds, "force_10sec": args.force_10sec,
                "codec": args.codec, "stats": args.stats, "layer": args.layer}
    try:
        if args.store:
            check_run_config(parts_root(args.store), settings, overwrite=args.overwrite)
            writer: Any = StoreWriter(args.store, shard=shard, overwrite=args.overwrite,
                                      run_info={"model_name": model_name, "sample_rate_hz": backend.sample_rate_hz,
                                                "frame_stride_s": backend.frame_stride_s, "window_s": backend.window_s})
        else:
            if corpus.is_tree:
                check_run_config(args.output_dir, settings, overwrite=args.overwrite)
            writer = SpeakerWriter(args.output_dir) if defaults.speakers else TreeWriter(args.output_dir, formats=formats, run_info=run_info, basename=basename,
                                top_k=args.top_k, classes=getattr(backend, "classes", None))
    except (ConfigMismatch, OSError) as exc:
        return _usage(exc)
    workers = args.workers if args.workers is not None else (default_workers() if corpus.is_tree else 0)
    options = RunOptions(chunk_s=args.chunk_seconds, context_s=args.context_seconds, batch_size=args.batch_size,
                         workers=workers, channel=args.channel, stream_above_s=args.long_file_seconds,
                         max_batch_seconds=args.max_batch_seconds,
                         resume=resume)
    report = RunReport(args.output_dir, shard=shard, context={
        "model": model_name, "backend": backend.describe(),
        "input": {"kind": corpus.kind, "root": str(corpus.root.resolve()), "files_in_corpus": len(corpus.items),
                  "audio_dir": args.audio_dir, "part": args.part, "patterns": args.pattern,
                  "max_files": args.max_files},
        "outputs": {"output_dir": str(Path(args.output_dir).resolve()), "formats": list(formats),
                    "store": str(Path(args.store).resolve()) if args.store else None},
        "options": {"batch_size": args.batch_size, "workers": workers, "chunk_seconds": args.chunk_seconds,
                    "context_seconds": args.context_seconds, "overwrite": args.overwrite,
                    "long_file_seconds": args.long_file_seconds, "max_batch_seconds": args.max_batch_seconds},
        "command_line": list(argv) if argv is not None else sys.argv,
    })
    report.context["versions"] = package_versions()
    progress = Progress(len(items), quiet=args.quiet, verbose=args.verbose or (corpus.kind == "files"),
                        file_lines=sys.stdout if corpus.kind == "files" else None,
                        desc=f"{backend.name} {shard.label}" if not shard.is_whole else backend.name)
    try:
        run_corpus(backend, items, writer, report, options=options,
                   scratch_dir=Path(args.output_dir) / ".scratch" / shard.label, progress=progress)
    finally:
        progress.close()
    summary_path = report.write()
    if args.store and shard.is_whole:
        from .corpus.store import merge_store

        merge_store(args.store)
    if not shard.is_whole:
        group = _barrier(dist)
        if (group and dist.rank == 0) or (not group and all_shards_reported(args.output_dir, shard.count)):
            merge_outputs(args.output_dir, args.store)
            summary_path = Path(args.output_dir) / "summary.json"
        if group:
            group.destroy_process_group()
    merged_here = shard.is_whole or summary_path == Path(args.output_dir) / "summary.json"
    if defaults.speakers and merged_here and not args.store:
        try:
            _finalize_speakers(args, model_name, backend.describe())
        except FileNotFoundError as exc:  # every file failed
            print(_fail(exc), file=sys.stderr)
    if corpus_json and merged_here:
        n = write_corpus_json(Path(args.output_dir) / corpus_json, _stored_rows(corpus.items, writer, args.store))
        if not args.quiet:
            print(f"{n} file(s) -> {Path(args.output_dir) / corpus_json}", file=sys.stderr)
    if not args.quiet and corpus.is_tree:
        d = report.to_dict()
        print(f"{d['files_done']} done, {d['files_skipped']} already done, {d['files_failed']} failed; "
              f"{d['audio_hours']:.3f} h of audio in {d['wall_time_s']:.1f} s; summary: {summary_path}",
              file=sys.stderr)
    return EXIT_INPUT_FAILED if report.failures else 0


def _load(args: argparse.Namespace, defaults: ScriptDefaults, *, device: str) -> Any:
    """The backend of a run: ``--model`` (a preset, or a checkpoint of the script's fixed backend) and its options."""
    from .registry import load_backend

    preset, spec = defaults.backend, args.model
    if getattr(args, "checkpoint", None):
        preset, spec = args.model, args.checkpoint
    return load_backend(spec, device=device, dtype=args.dtype, preset=preset, codec=args.codec, stats=args.stats,
                        layer=args.layer, codes=args.codes, layers=args.layers, trim_silence=args.trim_silence,
                        hop_s=args.hop_seconds, force_10sec=args.force_10sec,
                        logits=True if args.top_k > 0 else args.logits, spatial=args.spatial)


def _final_dir(args: argparse.Namespace) -> Path:
    from .speakers import FINAL_DIR

    return Path(args.final_output_dir) if args.final_output_dir else Path(args.output_dir) / FINAL_DIR


def _finalize_speakers(args: argparse.Namespace, model: Any, backend_info: dict | None = None) -> None:
    """Stage 2 of B4: per-utterance and per-speaker files from the utterance vectors in ``--output-dir``."""
    from .outputs.contract import package_versions
    from .speakers import finalize

    summary = finalize(args.output_dir, _final_dir(args), provenance={
        "model": model, "backend": backend_info, "versions": package_versions()})
    if not args.quiet:
        print(f"{summary['total_utterances']} utterances, {summary['total_speakers']} speakers, "
              f"{summary['embedding_dimension']}-d -> {_final_dir(args)}", file=sys.stderr)


def _compare(args: argparse.Namespace, defaults: ScriptDefaults) -> int:
    """``--compare A B``: print the cosine similarity of two recordings' speaker embeddings."""
    from . import audio
    from .pipeline import embed_audio
    from .speakers import cosine, utterance_vector

    try:
        backend = _load(args, defaults, device=args.device)
    except (ValueError, OSError, ImportError, KeyError) as exc:
        return _usage(f"{args.model}: {exc}")
    vectors = []
    for path in args.compare:
        try:
            loaded = audio.load(path, sample_rate_hz=backend.sample_rate_hz, channel=args.channel,
                                min_samples=int(backend.min_samples))
            vectors.append(utterance_vector(embed_audio(backend, loaded)))
        except (audio.AudioError, ValueError) as exc:
            print(_fail(exc if str(path) in str(exc) else f"{path}: {exc}"), file=sys.stderr)
            return EXIT_INPUT_FAILED
    print(f"cosine similarity: {cosine(*vectors):.6f}")
    return 0


def _stored_rows(items: Sequence[Any], writer: Any, store: str | None):
    """(key, rows) of every corpus item with finished outputs, in corpus order, one at a time."""
    import numpy as np

    if store:
        import h5py

        with h5py.File(store, "r") as fh:
            for item in items:
                if f"embeddings/{item.key}" in fh:
                    yield item.key, fh[f"embeddings/{item.key}"][()]
        return
    for item in items:
        base = writer.base(item.key)
        path = base.with_name(base.name + ".npy")
        if path.is_file():
            yield item.key, np.load(path)


def _barrier(dist: Any) -> Any:
    """Under torchrun, wait for every rank (gloo); returns ``torch.distributed`` or None."""
    if dist is None or dist.launcher != "torchrun":
        return None
    import datetime

    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    tdist.barrier()
    return tdist


def main(defaults: ScriptDefaults, argv: Sequence[str] | None = None) -> int:
    """Entry point of a thin script: sanitise the environment, parse, run."""
    sanitize_mkl_threads()
    args = build_parser(defaults).parse_args(argv)
    if not args.verbose:
        quiet_framework_logs()
    if args.quiet or not sys.stderr.isatty():  # MATLAB's system(), pipes, logs: no progress bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return run(args, defaults=defaults, argv=[defaults.prog, *(sys.argv[1:] if argv is None else argv)])
