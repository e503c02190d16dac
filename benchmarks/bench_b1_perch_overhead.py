#!/usr/bin/env python3
"""B1 overhead: what our Perch path adds per window on top of the model call itself.

A tiny SavedModel with Perch 2.0's exact signature (``tests/tiny_perch.py``: almost no
compute) makes the model cost small, so the difference is the toolkit's own work: window
cutting and reflection padding, batching across files, TF tensor conversion, collecting
rows. Same windows both ways, batches of ``--batch-size``:

* direct: ``signatures["serving_default"](inputs=tf.constant(batch))`` on pre-cut windows;
* engine: ``run_corpus`` over ``--files`` WAVs of ``--seconds`` at 32 kHz (decode included).

Prints milliseconds per window for both (median of ``--repeats``) and the overhead per
window; also the same through ONNX when onnxruntime is installed.

    .venv/bin/python benchmarks/bench_b1_perch_overhead.py [--files 8] [--seconds 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (graph tracing, first allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import soundfile as sf

    import tiny_perch
    from audio_embeddings.audio import load
    from audio_embeddings.corpus.discover import discover
    from audio_embeddings.corpus.engine import RunOptions, run_corpus
    from audio_embeddings.corpus.report import RunReport
    from audio_embeddings.corpus.shard import Shard
    from audio_embeddings.registry import load_backend

    class Keep:
        """Writer that keeps rows in memory (no disk in the timing)."""

        def __init__(self):
            self.rows = {}

        def is_complete(self, key):
            return False

        def write(self, key, result, **_):
            self.rows[key] = result.embeddings
            return {}

        def close(self):
            pass

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        (tmp / "audio").mkdir()
        for i in range(args.files):
            noise = (0.1 * rng.standard_normal(int(args.seconds * 32000))).astype(np.float32)
            sf.write(tmp / "audio" / f"f{i}.wav", noise, 32000)
        corpus = discover([str(tmp / "audio")])
        models = {"savedmodel": tiny_perch.build_savedmodel(tmp / "perch")}
        try:
            models["onnx"] = tiny_perch.build_onnx(tmp / "perch.onnx")
        except ImportError:
            pass
        for fmt, path in models.items():
            backend = load_backend(str(path), device="cpu")
            windows = []
            for item in corpus.items:
                x = load(item.path, sample_rate_hz=32000).samples
                for onset in backend.plan_rows(len(x)):
                    frag = x[onset:onset + 160000]
                    windows.append(np.pad(frag, (0, 160000 - len(frag)), mode="reflect") if len(frag) < 160000
                                   else frag)
            windows = np.stack(windows)
            n = len(windows)

            def direct():
                for i in range(0, n, args.batch_size):
                    backend.runner(windows[i:i + args.batch_size], ("embedding",))

            def engine():
                writer = Keep()
                run_corpus(backend, corpus.items, writer, RunReport(tmp / "out", shard=Shard(), context={}),
                           options=RunOptions(batch_size=args.batch_size, workers=0), scratch_dir=tmp / "scratch")
                return writer

            t_direct, t_engine = timed(direct, args.repeats), timed(engine, args.repeats)
            print(f"{fmt:10s} {n} windows, batch {args.batch_size}: direct {1000 * t_direct / n:.3f} ms/window, "
                  f"engine {1000 * t_engine / n:.3f} ms/window (decode included) -> overhead "
                  f"{1000 * (t_engine - t_direct) / n:.3f} ms/window")


if __name__ == "__main__":
    main()
