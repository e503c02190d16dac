#!/usr/bin/env python3
"""Corpus throughput and memory: the seed's per-file loop against the corpus engine.

Builds a randomly initialised wav2vec2 base (``--small``: 4 layers) and a corpus of
``--files`` short WAVs (44.1 kHz stereo 16-bit, nested folders), then measures, each run
in its own subprocess under a small wrapper:

* seed: ``librosa.load`` -> feature extractor -> one forward per file -> ``.tolist()`` into a
  dict -> one ``json.dump`` (the original Metis script's approach);
* engine: ``python/embed.py CORPUS --formats npy`` (decoding workers, batches across files).

Prints files per second (end to end: interpreter start, imports, model load, writing;
median of ``--repeats``), the engine/seed ratio, and peak memory: ``ru_maxrss`` of the
largest single process (RUSAGE_CHILDREN) and the sampled peak of the summed RSS of the
whole process tree (main + decoding workers; pages shared between processes count once
per process). Also times decoding alone (the engine's loader, in-process and through its
``Prefetcher``) against the model alone, and embeds one long recording (``--long-seconds``,
streamed block by block by the engine) to show its peak memory against the size of the
decoded audio and of the output.

    .venv/bin/python benchmarks/bench_corpus.py [--files 300] [--repeats 1] [--long-seconds 3600]
    .venv/bin/python benchmarks/bench_corpus.py --files 40 --small --skip-long   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

RATE = 44100
MODEL_RATE = 16000
MARK = "BENCH_RESULT "


# ---------------------------------------------------------------- data


def make_model_dir(directory: Path, small: bool) -> Path:
    """A randomly initialised wav2vec2 base (768-d, 12 layers; 4 with ``small``) saved like a hub checkpoint."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    config = tf.Wav2Vec2Config(num_hidden_layers=4) if small else tf.Wav2Vec2Config()
    tf.Wav2Vec2Model(config).save_pretrained(directory)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=MODEL_RATE, padding_value=0.0, do_normalize=True,
                                return_attention_mask=False).save_pretrained(directory)
    return directory


def synth(n: int, seed: int, start: int = 0) -> np.ndarray:
    """Deterministic speech-like stereo float32 [n, 2]: modulated noise plus a tone."""
    rng = np.random.default_rng(seed)
    t = (start + np.arange(n)) / RATE
    tone = 110.0 + 10.0 * (seed % 37)
    mono = 0.1 * rng.standard_normal(n) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.2 * np.sin(2 * np.pi * tone * t)
    return np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)


def make_corpus(root: Path, n_files: int, seconds: float) -> list[Path]:
    """``n_files`` WAVs under ``root/part_XXX/hh/NNNN.wav``."""
    import soundfile as sf

    paths = []
    for i in range(n_files):
        path = root / f"part_{i // 100:03d}" / f"{(i * 37) % 256:02x}" / f"{i:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synth(int(seconds * RATE), i), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def make_long(path: Path, seconds: float, block_s: float = 60.0) -> int:
    """One long WAV written block by block (the generator never holds more than a block); returns frames."""
    import soundfile as sf

    total, block = int(seconds * RATE), int(block_s * RATE)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=2, subtype="PCM_16") as f:
        for k, start in enumerate(range(0, total, block)):
            f.write(synth(min(block, total - start), 10_000 + k, start))
    return total


# ---------------------------------------------------------------- subprocess modes


def measure_child(cmd: list[str]) -> None:
    """Wrapper mode: run ``cmd``, print wall time, ``ru_maxrss`` of its largest process and the tree-sum peak."""
    page = os.sysconf("SC_PAGE_SIZE")
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)

    def tree_rss() -> int:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        tree, grew = {proc.pid}, True
        while grew:
            new = {p for p, pp in parents.items() if pp in tree} - tree
            tree |= new
            grew = bool(new)
        total = 0
        for pid in tree:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * page
            except (OSError, IndexError, ValueError):
                pass
        return total

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    sampler.join()
    max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    print(MARK + json.dumps({"rc": rc, "wall_s": wall, "max_rss": max_rss, "tree_rss": peak[0]}), flush=True)


def seed_child(corpus: Path, model_dir: Path, out_json: Path, device: str) -> None:
    """Seed mode: the original per-file loop, embeddings kept as lists, one ``json.dump`` at the end."""
    import librosa
    import torch
    import transformers as tf

    fe = tf.Wav2Vec2FeatureExtractor.from_pretrained(model_dir)
    model = tf.Wav2Vec2Model.from_pretrained(model_dir).eval().to(device)
    files = sorted(corpus.rglob("*.wav"))
    embeddings = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for path in files:
            wav, _ = librosa.load(path, sr=MODEL_RATE, mono=True)
            x = fe(wav, sampling_rate=MODEL_RATE, return_tensors="pt").input_values.to(device)
            embeddings[path.relative_to(corpus).as_posix()] = model(x).last_hidden_state[0].cpu().numpy().tolist()
    loop = time.perf_counter() - t0
    with open(out_json, "w") as f:
        json.dump(embeddings, f)
    print(MARK + json.dumps({"files": len(files), "loop_s": loop, "dump_s": time.perf_counter() - t0 - loop}),
          flush=True)


def measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` under a fresh wrapper process; returns its figures (plus the child's own result line, if any)."""
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--_measure", *cmd]
    out = subprocess.run(wrapper, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    log.write_text(out)
    results = [json.loads(line[len(MARK):]) for line in out.splitlines() if line.startswith(MARK)]
    if not results or results[-1]["rc"] != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out[-3000:]}")
    return {**results[-1], "child": results[0] if len(results) > 1 else None}


# ---------------------------------------------------------------- in-process timings


def decode_timing(paths: list[Path], root: Path, workers: int) -> tuple[float, float]:
    """Files/s of the engine's loader (decode + mono + resample): in this process, and through a Prefetcher."""
    from audio_embeddings.corpus.loader import LoadTask, Prefetcher, load_item

    tasks = [LoadTask(p.relative_to(root).as_posix(), str(p), MODEL_RATE) for p in paths]
    t0 = time.perf_counter()
    bad = [r.error for r in map(load_item, tasks) if r.error]
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    bad += [r.error for r in Prefetcher(iter(tasks), workers=workers, ahead=2 * workers) if r.error]
    pooled = time.perf_counter() - t0
    if bad:
        sys.exit(f"decode failed: {bad[0]}")
    return len(tasks) / serial, len(tasks) / pooled


def model_timing(model_dir: Path, paths: list[Path], device: str, batch_size: int) -> float:
    """Files/s of the model alone (prepared audio in memory, batches of ``batch_size``, after a warm-up batch)."""
    from audio_embeddings import audio
    from audio_embeddings.registry import load_backend

    backend = load_backend(str(model_dir), device=device)
    x = np.stack([backend.prepare(audio.load(p, sample_rate_hz=MODEL_RATE).samples).samples
                  for p in paths[:batch_size]])
    n_batches = max(1, min(4, len(paths) // batch_size))
    backend.embed_batch(x)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        backend.embed_batch(x)
    return n_batches * batch_size / (time.perf_counter() - t0)


# ---------------------------------------------------------------- main


def gib(n: float) -> str:
    """Bytes as GiB, fixed width."""
    return f"{n / 2**30:6.2f} GiB"


def engine_cmd(inputs: Path, model_dir: Path, out: Path, args: argparse.Namespace, corpus: bool) -> list[str]:
    """``embed.py`` on a corpus directory (with ``--workers``) or on one file (the CLI's default: no workers)."""
    cmd = [sys.executable, str(REPO / "python" / "embed.py"), str(inputs), "--model", str(model_dir),
           "--output-dir", str(out), "--device", args.device, "--formats", "npy", "--batch-size", str(args.batch_size)]
    return cmd + ["--workers", str(args.workers)] if corpus else cmd


def main() -> None:
    """Build model and corpus, run seed and engine, print the figures."""
    from audio_embeddings.corpus.threads import default_workers

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=300, help="corpus files (default 300)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each corpus file (default 5)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="engine decoding processes (default: min(4, cores - 1) = %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="corpus runs of each (median printed; default 1)")
    p.add_argument("--long-seconds", type=float, default=900.0,
                   help="long-file run length (default 900; the issue's figure is 3600)")
    p.add_argument("--skip-long", action="store_true", help="no long-file run")
    p.add_argument("--small", action="store_true", help="4 transformer layers instead of 12 (quick run)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="bench_corpus_"))
    try:
        model_dir = make_model_dir(tmp / "w2v2-random", args.small)
        n_layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
        hidden = json.loads((model_dir / "config.json").read_text())["hidden_size"]
        corpus = tmp / "corpus"
        paths = make_corpus(corpus, args.files, args.seconds)
        print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
              f"cores={os.cpu_count()} model=wav2vec2 random {n_layers} layers x {hidden} "
              f"files={args.files} x {args.seconds:g} s (44.1 kHz stereo 16-bit) batch={args.batch_size} "
              f"workers={args.workers} repeats={args.repeats}  tmp={tmp}")
        subprocess.run([sys.executable, "-c", "import torch, transformers, librosa, soxr"], check=True)  # warm caches

        runs: dict[str, list[dict]] = {"seed": [], "engine": []}
        for r in range(args.repeats):
            seed_cmd = [sys.executable, str(Path(__file__).resolve()), "--_seed", str(corpus), str(model_dir),
                        str(tmp / f"seed_{r}.json"), args.device]
            runs["seed"].append(measured(seed_cmd, tmp / f"seed_{r}.log"))
            (tmp / f"seed_{r}.json").unlink()
            out = tmp / f"engine_{r}"
            runs["engine"].append(measured(engine_cmd(corpus, model_dir, out, args, True), tmp / f"engine_{r}.log"))
            summary = json.loads((out / "summary.json").read_text())
            if summary["files_done"] != args.files or summary["files_failed"]:
                sys.exit(f"engine: {summary['files_done']} done, {summary['files_failed']} failed")
            runs["engine"][-1]["summary"] = summary
            shutil.rmtree(out)

        speed = {}
        for name, rs in runs.items():
            walls = [x["wall_s"] for x in rs]
            speed[name] = args.files / statistics.median(walls)
            print(f"{name:6s} wall median {statistics.median(walls):8.1f} s  -> {speed[name]:6.2f} files/s "
                  f"({speed[name] * args.seconds:6.1f} audio-s/s) end to end   runs: "
                  + ", ".join(f"{w:.1f}" for w in walls))
        seed_child_res = [x["child"] for x in runs["seed"]]
        summaries = [x["summary"] for x in runs["engine"]]
        print(f"  seed   inner loop {statistics.median(c['loop_s'] for c in seed_child_res):8.1f} s "
              f"({args.files / statistics.median(c['loop_s'] for c in seed_child_res):.2f} files/s), "
              f"json.dump {statistics.median(c['dump_s'] for c in seed_child_res):.1f} s")
        print(f"  engine summary.json: wall_time_s {statistics.median(s['wall_time_s'] for s in summaries):.1f}, "
              f"files_per_s {statistics.median(s['files_per_s'] for s in summaries):.2f}, "
              f"audio_s_per_s {statistics.median(s['audio_s_per_s'] for s in summaries):.1f}, "
              f"batches {summaries[0]['batches']} (after model load)")
        print(f"ratio engine/seed (files/s, end to end): {speed['engine'] / speed['seed']:.2f}x")
        for name, rs in runs.items():
            print(f"{name:6s} peak RSS: largest process {gib(max(x['max_rss'] for x in rs))}   "
                  f"process tree (sampled sum) {gib(max(x['tree_rss'] for x in rs))}")
        print("  (largest process = ru_maxrss over RUSAGE_CHILDREN: the biggest single process, not the sum; "
              "tree sum sampled every 0.1 s from /proc)")

        dec_serial, dec_pool = decode_timing(paths, corpus, args.workers)
        model_fps = model_timing(model_dir, paths, args.device, args.batch_size)
        print(f"decode alone (load_item: decode + mono + soxr 44.1k->16k): {dec_serial:7.1f} files/s in-process, "
              f"{dec_pool:7.1f} files/s via Prefetcher(workers={args.workers}, ahead={2 * args.workers})")
        print(f"model alone (batches of {args.batch_size}, {args.seconds:g} s each):"
              f"{' ' * 21}{model_fps:7.2f} files/s  -> decode is {dec_serial / model_fps:.0f}x faster "
              f"in one process than the model")

        if not args.skip_long:
            audio_rate = statistics.median(s["audio_s_per_s"] for s in summaries)
            print(f"long file: {args.long_seconds:g} s, batch {args.batch_size} (streamed above 600 s); rough "
                  f"estimate from the corpus rate ({audio_rate:.1f} audio-s/s) plus 20% for the 2 s context per side "
                  f"of 20 s chunks: ~{args.long_seconds * 1.2 / audio_rate / 60:.1f} min", flush=True)
            long_wav = tmp / "long.wav"
            frames = make_long(long_wav, args.long_seconds)
            out = tmp / "long_out"
            res = measured(engine_cmd(long_wav, model_dir, out, args, False), tmp / "long.log")
            emb = np.load(out / "long.npy", mmap_mode="r")
            n16k = int(round(frames * MODEL_RATE / RATE))
            print(f"long   wall {res['wall_s']:8.1f} s ({args.long_seconds / res['wall_s']:.1f} audio-s/s)   peak RSS "
                  f"largest process {gib(res['max_rss'])}, tree {gib(res['tree_rss'])}   output {tuple(emb.shape)}")
            print(f"  for scale: decoded float64 stereo array {gib(frames * 2 * 8)}, float32 mono 16 kHz "
                  f"{gib(n16k * 4)}, embeddings T*{hidden}*4 {gib(emb.shape[0] * hidden * 4)}; "
                  f"WAV on disk {gib(long_wav.stat().st_size)}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_measure":
        measure_child(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--_seed":
        seed_child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
    else:
        main()
