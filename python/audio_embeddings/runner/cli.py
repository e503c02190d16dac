"""Argument parsing of ``python/perch_runner.py`` (the work is in :mod:`.commands`).

Exit status: 0 when every input was written (or already was), 1 when an input failed
(listed in ``failures.csv`` for directory, manifest and batch runs), 2 for a usage, config,
model or classifier error; errors are one line, ``error: ...``, on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Sequence

from ..device import DEVICES, quiet_framework_logs, sanitize_mkl_threads
from ..options import whole_number

PROG = "perch_runner.py"
USAGE = {
    "generate": "generate [-F|--format csv|parquet] [-c|--config FILE] [--hoplite-db DIR] INPUT OUTPUT_DIR",
    "classify": "classify [-F|--format csv|parquet] [-c|--config FILE] INPUT OUTPUT_DIR",
    "distance": "distance [-F|--format csv|parquet] [-c|--config FILE] INPUT QUERY OUTPUT_DIR",
    "train": "train [-c|--config FILE] LABELLED OUTPUT_DIR",
    "batch": "batch [-F|--format csv|parquet] [-c|--config FILE] [--query FILE] COMMAND SOURCE_CSV",
    "search": "search [--top-k K] [--metric cosine|euclidean|mip] [--query-mean] QUERY CORPUS OUTPUT_DIR",
    "detect": "detect [--min-conf C] [--sensitivity S] [--overlap S] [--species-list FILE] [--lat DEG --lon DEG "
              "[--week W]] [--rtype table,audacity,kaleidoscope,csv,parquet,json,mat] INPUT OUTPUT_DIR",
    "export": "export [--layout wide|ours|perch-runner] [-F csv|parquet] SOURCE OUTPUT",
    "review": "review [--top N] [--label NAME] [--audio-root DIR] [--context-s S] [--model M] "
              "[--projection auto|pca|umap|none] RESULTS OUTPUT_DIR",
}
DESCRIPTION = """\
perch-runner on the audio_embeddings corpus engine: window embeddings (Perch 2.0 by default,
or any model B1's --model takes) as self-describing CSV or Parquet tables (ours or perch-runner's
layout), perch-hoplite databases, linear classifiers (perch-hoplite's JSON, perch-runner's
recognizers), distances to a query window, and search across a corpus.

""" + "\n".join(f"  {PROG} {line}" for line in USAGE.values())
INPUT_HELP = "audio file (or a directory, searched recursively, or a manifest .txt/.csv of paths)"
EMBEDDED_HELP = (INPUT_HELP + "; or embeddings made already: a generate table (ours or perch-runner's), a folder of "
                 "them, an HDF5 store (.h5) or a perch-hoplite database folder (nothing is embedded again)")


def _fmt(text: str) -> str:
    value = text.strip().lower()
    if value not in ("csv", "parquet"):
        raise argparse.ArgumentTypeError(f"choose csv or parquet, got {text!r}")
    return value


_positive_int = whole_number(minimum=1)
_row = whole_number(minimum=0, what="a 0-based row number")


def _layout(text: str) -> str:
    value = text.strip().lower()
    if value not in ("ours", "perch-runner", "wide"):
        raise argparse.ArgumentTypeError(f"choose ours, perch-runner or wide, got {text!r}")
    return value


def _common(p: argparse.ArgumentParser, *, table: bool) -> None:
    if table:
        p.add_argument("-F", "--format", dest="fmt", type=_fmt, default=None, metavar="csv|parquet",
                       help="table format (default: csv; base64 float32 embeddings; provenance in <table>.csv.json)")
        p.add_argument("--layout", type=_layout, default="ours", metavar="ours|perch-runner|wide",
                       help="column names: ours (source,start,end,source_separation_channel,...), perch-runner's "
                            "(source,channel,offset,embeddings; its Parquet footer keys), or wide (ours with one "
                            "float column per dimension, f0000...: pandas.read_csv, R's read.csv, spreadsheets)")
    p.add_argument("-c", "--config", default=None, metavar="FILE",
                   help="YAML config: hop_length_seconds, model, classifiers [{name, tags, model}], training")
    g = p.add_argument_group("options")
    g.add_argument("--model", default=None,
                   help="model as B1's --model takes it: perch_v2 (default), perch_v2_cpu, birdnet, a SavedModel "
                        "directory, .onnx or .tflite file; overrides the config's model")
    g.add_argument("--device", default="auto", choices=DEVICES)
    g.add_argument("--batch-size", type=_positive_int, default=8, help="windows per model call (default: 8)")
    g.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: 0 for one file, up to 4 for directories and batches)")
    g.add_argument("--overwrite", action="store_true", help="redo inputs whose table exists (default: skip them)")
    verbosity = g.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print errors only")
    verbosity.add_argument("--verbose", action="store_true", help="a line per file and per batch")
    from ..windowing import OPTIONS

    w = p.add_argument_group("window conventions (default: the model's reference tool's)")
    for option in OPTIONS:
        option.add_to(w)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{generate,classify,distance,train,batch,search,detect,export,review}")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, usage=f"{PROG} {USAGE[name]}")

    p = add("generate", "embeddings per window of INPUT -> OUTPUT_DIR/<stem>.embeddings.csv|parquet")
    _common(p, table=True)
    p.add_argument("--hoplite-db", default=None, metavar="DIR",
                   help="also write a perch-hoplite database (hoplite.sqlite + usearch.index, float16 vectors) "
                        "that perch-hoplite, BirdNET-Analyzer and OpenSoundscape open; resumable")
    p.add_argument("input", metavar="INPUT", help=INPUT_HELP)
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the table goes")

    p = add("classify", "the config's linear classifiers on every window -> OUTPUT_DIR/<stem>.classifications.*")
    _common(p, table=True)
    p.add_argument("--recognizers", default=None, metavar="FILE",
                   help="classifiers from a perch-runner recognizers file ({\"recognizers\": [...]}) or a "
                        "perch-hoplite classifier JSON, besides the config's")
    p.add_argument("--embeddings", dest="embeddings_dir", default=None, metavar="DIR",
                   help="where generate tables of the inputs are (default: OUTPUT_DIR); they are read, not redone")
    p.add_argument("input", metavar="INPUT", help=EMBEDDED_HELP)
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the table goes")

    p = add("distance", "embeddings and their distance to a one-window QUERY -> OUTPUT_DIR/<stem>.distances.*")
    _common(p, table=True)
    p.add_argument("--metric", default="cosine", choices=("cosine", "euclidean"),
                   help="cosine (1 - cosine similarity, default) or euclidean")
    p.add_argument("--embeddings", dest="embeddings_dir", default=None, metavar="DIR",
                   help="where generate tables of the inputs are (default: OUTPUT_DIR); they are read, not redone")
    p.add_argument("input", metavar="INPUT", help=EMBEDDED_HELP)
    p.add_argument("query", metavar="QUERY", help="audio one window long (5 s for Perch, 3 s for BirdNET)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the table goes")

    p = add("train", "a linear classifier from labelled clips -> <name>.json, .json.b64, .metadata.json, "
                     ".heldout.csv")
    _common(p, table=False)
    p.add_argument("--name", default="linear_classifier", help="base name of the files (default: %(default)s)")
    p.add_argument("--negative-label", default=None, metavar="LABEL",
                   help="clips under this label are negatives only (one other label: a one-class classifier, "
                        "as perch-hoplite trains them)")
    p.add_argument("labelled", metavar="LABELLED",
                   help="a folder with a sub-folder of clips per label, or a CSV of path,label rows")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the model and its metadata go")

    p = add("batch", "run generate, classify or distance over the source,output rows of a CSV (resumable)")
    _common(p, table=True)
    p.add_argument("--query", default=None, metavar="FILE", help="distance: the query (one window long)")
    p.add_argument("--metric", default="cosine", choices=("cosine", "euclidean"), help="distance: the metric")
    p.add_argument("--start-row", type=_row, default=None, help="first row to run (0-based)")
    p.add_argument("--end-row", type=_row, default=None, help="last row to run (0-based, inclusive)")
    p.add_argument("--report-dir", default=None,
                   help="where summary.json and failures.csv go (default: the CSV's folder)")
    p.add_argument("batch_command", metavar="COMMAND", choices=("generate", "classify", "distance"),
                   help="generate | classify | distance")
    p.add_argument("source_csv", metavar="SOURCE_CSV",
                   help="CSV with columns source (audio) and output (a folder, or the .csv/.parquet table itself)")

    p = add("search", "the corpus windows nearest to QUERY -> OUTPUT_DIR/search_results.csv and .mat")
    _common(p, table=False)
    p.add_argument("-F", "--format", dest="fmt", type=_fmt, default=None, metavar="csv|parquet",
                   help="format of the tables an audio CORPUS is embedded into (default: parquet)")
    p.add_argument("--top-k", type=_positive_int, default=10, help="results per query (default: 10)")
    p.add_argument("--metric", default="cosine", choices=("cosine", "euclidean", "mip"),
                   help="cosine (1 - cosine similarity, default), euclidean, or mip (minus the inner product)")
    p.add_argument("--query-mean", action="store_true",
                   help="one query per clip, the mean of its windows (default: each window is a query)")
    p.add_argument("--index", default="exact", choices=("exact", "usearch"),
                   help="exact (streamed, default) or usearch (approximate HNSW, for millions of windows)")
    p.add_argument("--index-path", default=None, metavar="PATH",
                   help="--index usearch: where the index is kept and reused (default: a hoplite CORPUS's own "
                        "usearch.index when consistent and --metric mip, else OUTPUT_DIR/corpus.usearch)")
    p.add_argument("query", metavar="QUERY", help="an audio clip, a folder of clips, or an embeddings table")
    p.add_argument("corpus", metavar="CORPUS",
                   help="a folder of generate tables, an HDF5 store, a perch-hoplite database, or a folder of "
                        "recordings (embedded into OUTPUT_DIR/corpus_embeddings, resumably)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the results go")

    p = add("detect", "BirdNET detections as BirdNET-Analyzer 2.4 writes them (0-1 confidences, species and "
                      "location filters) -> OUTPUT_DIR/<stem>.BirdNET.selection.table.txt, ...")
    _common(p, table=False)
    from ..detections import detection_options

    d = p.add_argument_group("detections (BirdNET-Analyzer's analyze options)")
    for option in detection_options():
        option.add_to(d)
    p.add_argument("input", metavar="INPUT", help="audio file or folder (searched recursively)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the result files go (mirroring INPUT)")

    p = sub.add_parser("export", help="embeddings of a store, a hoplite database or tables -> one table of any "
                       "layout (streamed)", usage=f"{PROG} {USAGE['export']}")
    p.add_argument("--layout", type=_layout, default="wide", metavar="wide|ours|perch-runner",
                   help="wide (default: f0000... float columns), ours (base64 float32 in CSV) or perch-runner's")
    p.add_argument("-F", "--format", dest="fmt", type=_fmt, default=None, metavar="csv|parquet",
                   help="default: OUTPUT's suffix")
    p.add_argument("source", metavar="SOURCE", help="an HDF5 store, a perch-hoplite database, a table or a folder")
    p.add_argument("output", metavar="OUTPUT", help="the table to write (.csv or .parquet)")

    p = sub.add_parser("review", help="a static page to listen to and label the hits of search, classify or "
                       "detect results; exports labels.csv for train", usage=f"{PROG} {USAGE['review']}")
    p.add_argument("--top", type=_positive_int, default=100, help="hits on the page, best first (default: 100)")
    p.add_argument("--label", default=None, help="classify/detections: only this label; search: the label of "
                   "positives (default: the query's stem)")
    p.add_argument("--audio-root", default=None, metavar="DIR", help="where relative sources are looked for first")
    p.add_argument("--context-s", type=float, default=1.0, help="seconds of audio around the window (default: 1)")
    p.add_argument("--model", default=None, help="embedding model of the projection (default: the results')")
    p.add_argument("--projection", default="auto", choices=("auto", "pca", "umap", "none"),
                   help="auto: UMAP when umap-learn is installed, else PCA")
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.add_argument("results", metavar="RESULTS", help="search_results.csv, classify tables, BirdNET detection "
                   "files, or a folder of them")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where review.html, clips/ and images/ go")
    return parser


def _error(message: object) -> int:
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, return the exit status (argparse's own usage errors exit 2 from ``parse_args``)."""
    from ..app.session import RunError
    from ..corpus.engine import signals_raise, StoppedBySignal
    from .classifier import ClassifierError
    from .commands import RunSettings, UsageError, run_batch, run_table_command
    from .training import run_train
    from .config import ConfigError, load_config
    from .tables import TableError

    sanitize_mkl_threads()
    args = build_parser().parse_args(argv)
    if args.command == "export":  # no model, no config
        from .export import export
        from .sources import SourceError

        try:
            result = export(args.source, args.output, layout=args.layout, fmt=args.fmt)
        except (SourceError, TableError) as exc:
            return _error(exc)
        print(f"{result['rows']} windows -> {result['output']}", file=sys.stderr)
        return 0
    if args.command == "review":  # no config; a model only for the projection
        from .review import ReviewError, run_review

        quiet_framework_logs()
        try:
            run_review(args.results, args.output_dir, top=args.top, label=args.label, audio_root=args.audio_root,
                       context_s=args.context_s, model=args.model, projection=args.projection, device=args.device,
                       quiet=args.quiet)
        except (ReviewError, OSError) as exc:
            return _error(exc)
        return 0
    if not args.verbose:
        quiet_framework_logs()
    if args.quiet or not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    command_line = [PROG, *(sys.argv[1:] if argv is None else list(argv))]
    with contextlib.ExitStack() as stopping:  # SIGINT/SIGTERM in any phase: 130/143 and one line, as the scripts
        stopping.enter_context(signals_raise("running perch-runner"))
        try:
            config = load_config(args.config)
            if getattr(args, "recognizers", None):
                from dataclasses import replace
                from pathlib import Path

                from .config import recognizer_specs

                config = replace(config, classifiers=config.classifiers + tuple(recognizer_specs(args.recognizers,
                                                                                                     Path.cwd())))
            window_options = {k: getattr(args, k, None) for k in ("min_seconds", "partial_window", "resampler")}
            settings = RunSettings(fmt=getattr(args, "fmt", None), config=config, model=args.model, device=args.device,
                                   batch_size=args.batch_size, workers=args.workers, overwrite=args.overwrite,
                                   quiet=args.quiet, verbose=args.verbose, argv=command_line,
                                   layout=getattr(args, "layout", "ours"), hoplite_db=getattr(args, "hoplite_db", None),
                                   embeddings_dir=getattr(args, "embeddings_dir", None),
                                   backend_options={k: v for k, v in window_options.items() if v is not None})
            if args.command in ("generate", "classify"):
                return run_table_command(args.command, args.input, args.output_dir, settings)
            if args.command == "distance":
                return run_table_command("distance", args.input, args.output_dir, settings, query=args.query,
                                         metric=args.metric)
            if args.command == "train":
                return run_train(args.labelled, args.output_dir, settings, name=args.name,
                                 negative_label=args.negative_label)
            if args.command == "detect":
                from ..detections import DetectionError, settings_from
                from .detect import run_detect

                try:
                    return run_detect(args.input, args.output_dir, settings_from(vars(args)), rtypes=args.rtypes,
                                      model=args.model, resampler=args.resampler, batch_size=args.batch_size,
                                      overwrite=args.overwrite, quiet=args.quiet, argv=command_line)
                except (DetectionError, FileNotFoundError) as exc:
                    return _error(exc)
            if args.command == "search":
                from .search import run_search

                return run_search(args.query, args.corpus, args.output_dir, settings, top_k=args.top_k,
                                  metric=args.metric, query_mean=args.query_mean, index=args.index,
                                  index_path=args.index_path)
            if args.batch_command == "distance" and not args.query:
                return _error("batch distance needs --query FILE (one window long)")
            return run_batch(args.batch_command, args.source_csv, settings, query=args.query, metric=args.metric,
                             start_row=args.start_row, end_row=args.end_row, report_dir=args.report_dir)
        except (UsageError, ConfigError, ClassifierError, TableError) as exc:
            return _error(exc)
        except RunError as exc:  # the shared run's refusals and stops (130/143 on SIGINT/SIGTERM), as the scripts'
            print("error: " + str(exc), file=sys.stderr)
            return exc.status
        except StoppedBySignal as exc:
            print("error: " + str(exc), file=sys.stderr)
            return exc.exit_status
