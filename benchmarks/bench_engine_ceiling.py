#!/usr/bin/env python3
"""Ceiling of the corpus engine: the real CLI with a zero-cost model, against the engine of an earlier commit.

The model is ``benchmarks/zero_backend.py`` (a plugin backend: rows are input samples, nothing is
computed), so what is measured is everything else a corpus run does: discovery, decoding
(soundfile), mono mixing, resampling (soxr), batching, writing (``.npy`` tree or ``--store``) and
reporting. A synthetic corpus (``--files`` x ``--seconds`` at ``--rate`` Hz, ``--channels``
channels, 16-bit WAV) goes through ``python/embed.py --model zero --zero-dim D`` in a subprocess,
once per ``--workers`` value and output mode, ``--repeats`` times, interleaved with the same
runs through the code of ``--baseline`` (default ``c63be34``, the commit before the engine's
background work), checked out into a temporary ``git worktree`` for the run and removed after.

Printed per configuration (medians of the repeats):

* files/s and audio-s/s inside the engine (``summary.json``: from the start of the corpus loop,
  after the model is loaded) and end to end (interpreter start to exit, which includes
  importing the package; a backend module that imports torch at import time costs ~3 s there);
* the ratio new / baseline of both;
* main-thread milliseconds per file of the new engine (``engine_timing`` in the summary):
  waiting for decoded audio, batching, model, handing to the writer, reporting, other; the
  writer thread's milliseconds per file; and whether the outputs of both versions are
  bit-identical.

``--flop-floor`` adds section 5: each B-script's model on this machine's CPU against its FLOP
floor (matmul/conv FLOPs per 5 s file counted with ``torch.utils.flop_counter``, divided by the
measured float32 matmul rate of this machine), with the engine's time split into model and
the rest. ``--dtype-check`` adds bfloat16 against float32 on a full-size random wav2vec2-large
(24 layers) and Metis (17 w2v-bert layers + codec) on the CPU.

    .venv/bin/python benchmarks/bench_engine_ceiling.py                          # 600 files, workers 0..cores
    .venv/bin/python benchmarks/bench_engine_ceiling.py --files 120 --repeats 1 --workers 0 --outputs tree
    .venv/bin/python benchmarks/bench_engine_ceiling.py --no-baseline --flop-floor --dtype-check --files 0
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
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "python"))


# ---------------------------------------------------------------- corpus and runs


def make_corpus(root: Path, n_files: int, seconds: float, rate: int, channels: int) -> Path:
    """``n_files`` 16-bit WAVs of quiet noise plus a tone under ``root/part_XXX/NNNN.wav``."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    for i in range(n_files):
        path = root / f"part_{i // 100:03d}" / f"{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        tone = 0.2 * np.sin(2 * np.pi * (110.0 + 7 * (i % 50)) * t)
        x = (0.1 * rng.standard_normal((n, channels)) + tone[:, None]).astype(np.float32)
        sf.write(path, x, rate, subtype="PCM_16")
    return root


def baseline_tree(commit: str, where: Path) -> Path:
    """``git worktree add --detach where commit`` (removed by :func:`remove_tree`)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(where), commit],
                   check=True, capture_output=True, text=True)
    return where


def remove_tree(where: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], capture_output=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True)


def run_once(tree: Path, corpus: Path, out: Path, *, workers: int, store: bool, dim: int, batch_size: int,
             extra: list[str] = (), env_extra: dict | None = None) -> dict:
    """One ``embed.py`` run of ``tree`` in a subprocess; returns end-to-end seconds and its summary."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(tree / "python" / "embed.py"), str(corpus), "--model", "zero", "--zero-dim", str(dim),
           "--formats", "npy", "--workers", str(workers), "--batch-size", str(batch_size), "--output-dir", str(out),
           "--device", "cpu", "--quiet", *extra]
    if store:
        cmd += ["--store", str(out / "emb.h5")]
    env = {**os.environ, "AUDIO_EMBEDDINGS_PLUGINS": "zero_backend",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])), **(env_extra or {})}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)  # the run and its reaped decoding processes
    if proc.returncode != 0:
        sys.exit(f"failed ({tree}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"e2e_s": wall, "cpu_s": cpu, "summary": summary}


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (``/proc/self/mounts``; "" where unknown)."""
    best, kind = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 3 and str(path.resolve()).startswith(fields[1]) and len(fields[1]) > len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def fresh_output(tmp: Path, name: str, n_files: int) -> Path:
    """A new output folder per run, the earlier ones kept until the end while the disk has room.

    Creating thousands of files just after deleting thousands costs ext4 extra CPU (it skips inodes
    freed in the last minute, scanning their table blocks: ``recently_deleted`` in a profile), which
    a real corpus run does not pay; both versions get fresh folders alike. With under 4 GiB (plus
    this run's outputs) free, the earlier folders are deleted first.
    """
    runs = sorted(tmp.glob("run_*"))
    need = n_files * 2 * 2 ** 20 + 4 * 2 ** 30
    if filesystem_type(tmp) == "tmpfs" or shutil.disk_usage(tmp).free < need:  # tmpfs: files are memory
        for old in runs:
            shutil.rmtree(old, ignore_errors=True)
    return tmp / f"run_{len(runs):04d}" / name


def outputs_digest(out: Path, store: bool) -> dict[str, bytes]:
    """Rows of every file (tree: the .npy bytes; store: the datasets' bytes) for a bit-for-bit comparison."""
    if store:
        import h5py

        rows = {}
        for part in sorted((out / "emb.h5.parts").rglob("part-*.h5")):
            with h5py.File(part, "r") as f:
                f["embeddings"].visititems(lambda name, ds: rows.__setitem__(name, ds[()].tobytes())
                                           if isinstance(ds, h5py.Dataset) else None)
        return rows
    return {p.relative_to(out).as_posix(): np.load(p).tobytes() for p in sorted(out.rglob("*.npy"))
            if not p.name.startswith(".")}


def med(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def page_write_ms(directory: Path, *, files: int = 64, mib: int = 1) -> float:
    """Milliseconds to write one new ``mib`` MiB file (``files`` of them, into fresh page-cache pages)."""
    directory.mkdir(parents=True, exist_ok=True)
    block = np.ones(mib * 2 ** 18, np.float32)
    t0 = time.perf_counter()
    for i in range(files):
        with open(directory / f"{i}.bin", "wb") as fh:
            fh.write(block.data)
    ms = (time.perf_counter() - t0) * 1000 / files
    shutil.rmtree(directory, ignore_errors=True)
    return ms


def warm_memory(gib: float) -> None:
    """Touch ``gib`` GiB of memory once, then free it.

    In a virtual machine the host backs a guest page only when the guest first touches it: on this
    kind of machine writing 1 MB into never-used page-cache pages cost about 3 ms of system time,
    into pages the guest had used before 0.3 ms. A corpus run writes 1 MB per file, so without this
    both versions spend most of their time in the hypervisor. A server whose memory has been used
    does not pay it; neither do the runs here once it is warm.
    """
    left = int(gib * 2 ** 30)
    while left > 0:
        n = min(left, 2 ** 30)
        chunk = np.empty(n, np.uint8)
        chunk[::4096] = 1
        del chunk
        left -= n


def engine_section(args: argparse.Namespace, tmp: Path) -> None:
    before = page_write_ms(tmp / "page_probe")
    print(f"outputs on {filesystem_type(tmp) or 'an unknown filesystem'} ({tmp}; set TMPDIR to choose)")
    if args.warm_memory_gib > 0:
        warm_memory(args.warm_memory_gib)
        after = page_write_ms(tmp / "page_probe")
        print(f"memory: warmed {args.warm_memory_gib:g} GiB (writing a new 1 MiB file: {before:.2f} ms before, "
              f"{after:.2f} ms after; see warm_memory)")
    else:
        print(f"memory: not warmed (writing a new 1 MiB file: {before:.2f} ms)")
    corpus = make_corpus(tmp / "corpus", args.files, args.seconds, args.rate, args.channels)
    one = tmp / "one_file"  # the same first file alone: start-up CPU, subtracted from the per-file CPU
    (one / "part_000").mkdir(parents=True)
    shutil.copy(corpus / "part_000" / "00000.wav", one / "part_000" / "00000.wav")
    audio_s = args.files * args.seconds
    trees = {"new": REPO}
    if not args.no_baseline:
        trees["old"] = baseline_tree(args.baseline, tmp / "baseline")
        log = subprocess.run(["git", "-C", str(trees["old"]), "log", "--oneline", "-1"], capture_output=True,
                             text=True).stdout.strip()
        print(f"baseline: git worktree of {log[:100]}")
    print(f"corpus: {args.files} files x {args.seconds:g} s, {args.rate} Hz, {args.channels} ch, 16-bit WAV; "
          f"model: zero-cost, {args.dim}-d rows every 20 ms at 16 kHz (soxr {args.rate} -> 16000); "
          f"batch {args.batch_size}; cores {os.cpu_count()}; repeats {args.repeats}")
    configs = [(w, store) for store in [o == "store" for o in args.outputs] for w in args.workers]
    results: dict[tuple, dict[str, list]] = {c: {v: [] for v in trees} for c in configs}
    identical: dict[tuple, bool] = {}
    try:
        for r in range(args.repeats):
            for config in configs:
                workers, store = config
                for version, tree in (trees.items() if r % 2 == 0 else reversed(list(trees.items()))):
                    out = fresh_output(tmp, f"out_{version}", args.files)
                    res = run_once(tree, corpus, out, workers=workers, store=store, dim=args.dim,
                                   batch_size=args.batch_size)
                    if res["summary"]["files_done"] != args.files:
                        sys.exit(f"{version}: {res['summary']['files_done']} of {args.files} done")
                    if r == 0 and len(trees) > 1:
                        res["digest"] = outputs_digest(out, store)
                    if r == 0:
                        res["startup_cpu_s"] = run_once(tree, one, tmp / f"one_{version}", workers=workers, store=store,
                                                        dim=args.dim, batch_size=args.batch_size)["cpu_s"]
                    results[config][version].append(res)
                if r == 0 and len(trees) > 1:
                    identical[config] = results[config]["new"][0].pop("digest") == results[config]["old"][0].pop("digest")
                print(f"  repeat {r + 1}: workers {workers} {'store' if store else 'tree '}: " + ", ".join(
                    f"{v} {args.files / results[config][v][-1]['summary']['wall_time_s']:.0f} files/s"
                    for v in trees), flush=True)
    finally:
        if "old" in trees:
            remove_tree(trees["old"])

    print()
    head = (f"{'workers':>7} {'output':>6} | {'engine files/s':>15} {'audio-s/s':>9} {'ratio':>6} | "
            f"{'end-to-end files/s':>18} {'ratio':>6} | {'CPU ms/file':>15} {'ratio':>6} | identical")
    print(head)
    print("-" * len(head))
    for config in configs:
        workers, store = config
        eng = {v: med(args.files / x["summary"]["wall_time_s"] for x in results[config][v]) for v in trees}
        e2e = {v: med(args.files / x["e2e_s"] for x in results[config][v]) for v in trees}
        start = {v: results[config][v][0]["startup_cpu_s"] for v in trees}
        cpu = {v: med(1000 * (x["cpu_s"] - start[v]) / (args.files - 1) for x in results[config][v]) for v in trees}
        pair = lambda d: f"{d['new']:7.1f}" + (f" /{d['old']:6.1f}" if "old" in d else "")  # noqa: E731
        ratio = lambda d: f"{d['new'] / d['old']:5.2f}x" if "old" in d else "   -  "  # noqa: E731
        same = ("yes" if identical.get(config) else "NO") if config in identical else "-"
        print(f"{workers:>7} {'store' if store else 'tree':>6} | {pair(eng):>15} {eng['new'] * args.seconds:9.0f} "
              f"{ratio(eng):>6} | {pair(e2e):>18} {ratio(e2e):>6} | {pair(cpu):>15} "
              f"{(cpu['old'] / cpu['new'] if 'old' in cpu else float('nan')):5.2f}x | {same}")
    print("(new / old; engine = summary.json wall time, from the corpus loop's start; end to end = process wall; "
          "CPU = user + system seconds of the run and its decoding processes per file, after subtracting a one-file run's "
          "(start-up, imports, model load); ratio old / new)")
    print()
    print("new engine, main thread ms per file (median): decode_wait batching model write report other | "
          "busy non-model | writer thread ms/file, queue-full events")
    for config in configs:
        workers, store = config
        timings = [x["summary"].get("engine_timing") for x in results[config]["new"]]
        if not all(timings):
            continue
        parts = {k: med(t["main_thread_ms_per_file"][k] for t in timings)
                 for k in ("decode_wait", "batching", "model", "write", "report", "other")}
        busy = med(t["main_thread_busy_non_model_ms_per_file"] for t in timings)
        writer = med(t["writer_thread_ms_per_file"] for t in timings)
        full = med(t["write_queue_full"] for t in timings)
        print(f"  workers {workers} {'store' if store else 'tree '}: " + " ".join(f"{v:7.3f}" for v in parts.values())
              + f" | {busy:6.3f} | {writer:6.3f}, {full:.0f}")
    print(f"  (audio: {audio_s:g} s per run; 1 ms per file = {1000 / args.seconds:.0f} files/s of main-thread time)")


# ---------------------------------------------------------------- section 5: FLOP floor on the CPU


def matmul_rate(*, trials: int = 5, seconds: float = 0.5, n: int = 2048) -> float:
    """Peak float32 matmul rate of this machine in FLOP/s (torch, all its threads): the best of ``trials``.

    The best of several short trials, since other load on a shared machine only ever lowers it.
    """
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(trials):
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            count += 1
        best = max(best, 2.0 * n ** 3 * count / (time.perf_counter() - t0))
    return best


def flop_section(args: argparse.Namespace, tmp: Path) -> None:
    import torch

    import gpu_suite

    peak = matmul_rate()
    print(f"\nsection 5: CPU figures against the FLOP floor (torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {os.cpu_count()} cores; best float32 matmul rate of this machine {peak / 1e9:.1f} GFLOP/s, "
          "measured again before each model, the highest kept)")
    print("  FLOPs per 5 s file counted with torch.utils.flop_counter's formulas (matmuls, convolutions, attention: "
          "the floor); floor = FLOPs / matmul rate")
    corpus = make_corpus(tmp / "flop_corpus", args.flop_files, 5.0, args.rate, args.channels)
    print(f"  {'model (script)':28s} {'GFLOP/file':>10} {'floor ms':>9} {'model ms':>9} {'engine ms':>9} "
          f"{'model/floor':>11} {'engine/floor':>12}  where the rest goes")
    for name in args.flop_models:
        peak = max(peak, matmul_rate(trials=3))
        spec = gpu_suite.MODELS[name]
        model_dir = tmp / f"model_{name}"
        model_arg, options = gpu_suite.build_model(name, model_dir, tiny=False)
        backend = gpu_suite.load(model_arg, options, device="cpu", dtype="float32")
        flops = gpu_suite.count_flops(backend, seconds=5.0)
        del backend
        cmd_extra = ["--model", str(model_arg), *gpu_suite.cli_options(options)]
        timings = []
        for _ in range(args.flop_repeats):
            out = tmp / f"flop_out_{name}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, str(REPO / "python" / "embed.py"), str(corpus), *cmd_extra, "--formats", "npy",
                   "--workers", "0", "--batch-size", "4", "--output-dir", str(out), "--device", "cpu", "--quiet"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{name}: {proc.stderr[-2000:]}")
            summary = json.loads((out / "summary.json").read_text())
            timings.append(summary["engine_timing"])
        model_ms = med(t["main_thread_ms_per_file"]["model"] for t in timings)
        engine_ms = med(t["wall_s"] * 1000 / t["files"] for t in timings)
        parts = {k: med(t["main_thread_ms_per_file"][k] for t in timings) for k in ("decode_wait", "batching",
                                                                                    "write", "report", "other")}
        floor_ms = flops / peak * 1000
        rest = ", ".join(f"{k} {v:.0f}" for k, v in parts.items() if v >= 0.5) or "nothing measurable"
        print(f"  {spec['label'][:28]:28s} {flops / 1e9:10.1f} {floor_ms:9.0f} {model_ms:9.0f} {engine_ms:9.0f} "
              f"{model_ms / floor_ms:10.2f}x {engine_ms / floor_ms:11.2f}x  ms/file: {rest}", flush=True)
    print(f"  (floors against the highest matmul rate seen, {peak / 1e9:.1f} GFLOP/s)")
    print("  model/floor > 1 is the model's own inefficiency on this CPU (non-matmul ops: layer norms, GELU, "
          "softmax, the conv front end's small channels, memory traffic); engine/floor - model/floor is the engine.")


def dtype_section(args: argparse.Namespace, tmp: Path) -> None:
    import gpu_suite

    print("\nbfloat16 against float32 on the CPU (full-size random weights, 5 s of speech-like input, one forward):")
    for name in args.dtype_models:
        model_dir = tmp / f"dtype_{name}"
        model_arg, options = gpu_suite.build_model(name, model_dir, tiny=False)
        diff = gpu_suite.dtype_difference(model_arg, options, device="cpu", seconds=5.0)
        print(f"  {gpu_suite.MODELS[name]['label']:32s} max |bf16 - fp32| {diff['max_abs']:.3g}, "
              f"relative RMS {diff['rel_rms']:.3g}, median row cosine {diff['cosine_median']:.5f} "
              f"(min {diff['cosine_min']:.5f}); fp32 row RMS {diff['ref_rms']:.3g}; "
              f"fp32 {diff['fp32_s']:.2f} s, bf16 {diff['bf16_s']:.2f} s on this CPU")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=600, help="corpus files (default 600; 0 skips the engine section)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=44100)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--dim", type=int, default=1024, help="row width of the zero-cost model (default 1024)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                   default=list(range(0, (os.cpu_count() or 1) + 1)), help="comma-separated (default 0..cores)")
    p.add_argument("--outputs", type=lambda s: s.split(","), default=["tree", "store"], help="tree,store")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline", default="c63be34", help="commit to compare with (default c63be34)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--flop-floor", action="store_true", help="section 5: the B-scripts' models against their FLOP floor")
    p.add_argument("--flop-models", type=lambda s: s.split(","),
                   default=["wav2vec2-base", "wav2vec2-large", "metis", "eres2netv2", "campplus"])
    p.add_argument("--flop-files", type=int, default=8)
    p.add_argument("--flop-repeats", type=int, default=3)
    p.add_argument("--dtype-check", action="store_true", help="bf16 vs fp32 on full-size random models (CPU)")
    p.add_argument("--dtype-models", type=lambda s: s.split(","), default=["wav2vec2-large", "metis"])
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--warm-memory-gib", type=float, default=None,
                   help="touch this much memory before measuring (default: the free memory less 1.5 GiB; "
                        "0: none; see warm_memory)")
    args = p.parse_args()
    sys.path.insert(0, str(BENCH))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    if args.warm_memory_gib is None:  # all free memory: the page cache then only gets pages touched before
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
        args.warm_memory_gib = round(max(0.0, free - 1.5), 1)
    try:
        if args.files > 0:
            engine_section(args, tmp)
        if args.flop_floor:
            flop_section(args, tmp)
        if args.dtype_check:
            dtype_section(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
