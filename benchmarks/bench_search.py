#!/usr/bin/env python3
"""``perch_runner.py search`` over a synthetic corpus on disk: exact (streamed) vs a persisted usearch index.

    .venv/bin/python benchmarks/bench_search.py                      # exact at 1,000,000 x 1024-d,
                                                                     # usearch at 100,000
    .venv/bin/python benchmarks/bench_search.py --n 200000 --usearch-n 20000 --queries 16
    nice -n 19 taskset -c 1 .venv/bin/python benchmarks/bench_search.py   # on a shared machine

First writes the corpus as an HDF5 store (``/embeddings/rec<i>`` float32 [W, D], ``/time_axis/rec<i>``:
the layout ``read_store_items`` reads; ``--n / --recording-windows`` recordings), and a query table
(rows of the corpus plus a little noise); that time is reported apart. Then runs the real command,
``search QUERY STORE OUT`` through the CLI, each in its own process so that the peak resident
memory it reports (``VmHWM`` of ``/proc/self/status``) is its own:

- exact over ``--n`` windows: seconds, peak MiB;
- usearch over a store of ``--usearch-n`` windows (building HNSW at 1M x 1024-d takes long): the
  first search builds and saves the index (seconds); the second reuses it, memory-mapped
  (seconds, peak MiB); recall@K of its results against exact search of the same store.

``floor`` is the same command over a store of one recording: the imports and fixed costs under every
peak (the table reports "peak over floor" too). Times
are of the command (``main([...])`` in the child), so interpreter start-up is left out; the
store is read from the page cache when it fits (it was just written). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))


def synthetic_rows(start: int, m: int, dim: int, seed: int) -> np.ndarray:
    """Rows ``start .. start + m`` of the synthetic corpus: clustered, non-negative like pooled CNN
    features, the same rows whatever the block they are asked for in."""
    centres = np.abs(np.random.default_rng(seed).standard_normal((64, dim), dtype=np.float32))
    rng = np.random.default_rng([seed, start])
    which = rng.integers(0, 64, m)
    return centres[which] + 0.5 * np.abs(rng.standard_normal((m, dim), dtype=np.float32))


def write_store(path: Path, *, n: int, dim: int, per_recording: int, seed: int, hop_s: float = 1.0) -> dict:
    """The corpus as an HDF5 store, one recording (``per_recording`` windows) at a time."""
    import h5py

    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["model_name"] = "synthetic"
        f.attrs["window_s"] = 5.0
        f.attrs["frame_stride_s"] = hop_s
        emb, tax = f.create_group("embeddings"), f.create_group("time_axis")
        for r, start in enumerate(range(0, n, per_recording)):
            m = min(per_recording, n - start)
            key = f"rec{r:06d}"
            emb.create_dataset(key, data=synthetic_rows(start, m, dim, seed))
            tax.create_dataset(key, data=np.arange(m, dtype=np.float64) * hop_s)
            emb[key].attrs["source_path"] = f"{key}.wav"
    os.replace(tmp, path)
    return {"seconds": time.perf_counter() - t0, "bytes": path.stat().st_size}


def write_queries(path: Path, *, n: int, dim: int, count: int, per_recording: int, seed: int) -> None:
    """Query rows: windows spread over the corpus, plus noise (each has a near-exact match)."""
    from audio_embeddings.runner.tables import write_table

    rows = np.linspace(0, n - 1, count).astype(np.int64)
    q = np.concatenate([synthetic_rows((r // per_recording) * per_recording, per_recording, dim, seed)
                        [r % per_recording][None] for r in rows])
    q = q + 0.01 * np.random.default_rng(seed + 1).standard_normal(q.shape).astype(np.float32)
    write_table(path, {"source": ["query.wav"] * count, "start": np.arange(count, dtype=np.float64),
                       "end": np.arange(count, dtype=np.float64) + 5.0, "embedding": q.astype(np.float32)},
                {"model": "synthetic", "window_s": 5.0}, fmt="parquet")


def status_mib(field: str = "VmHWM") -> float:
    """A memory line of ``/proc/self/status``, MiB: ``VmHWM`` (peak resident), ``RssAnon`` (heap,
    now), ``RssFile`` (file pages mapped, now: a memory-mapped index, shared with the page cache)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 if field == "VmHWM" else float("nan")


def child(args) -> dict:
    """One search in this process: ``search`` through the CLI, timed, and its peak memory."""
    from audio_embeddings.runner.cli import main

    argv = ["search", "--quiet", "--top-k", str(args.top_k), "--metric", args.metric, "--index", args.child,
            args.query, args.corpus, args.out]
    peaks = {"RssAnon": 0.0, "RssFile": 0.0}
    done = threading.Event()

    def sample() -> None:  # the split of the peak: heap vs mapped file pages (VmHWM has only their sum)
        while not done.wait(0.005):
            for k in peaks:
                peaks[k] = max(peaks[k], status_mib(k))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    status = main(argv)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    if status != 0:
        raise SystemExit(f"search exited {status}")
    prov = json.loads((Path(args.out) / "search_results.csv.json").read_text())
    return {"seconds": seconds, "peak_mib": status_mib("VmHWM"), "anon_mib": peaks["RssAnon"],
            "file_mib": peaks["RssFile"], "search_s": prov["seconds"]["search"],
            "index_info": prov.get("index_info"), "windows": prov["corpus_windows"]}


def spawn(args, method: str, corpus: Path, query: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--corpus", str(corpus), "--query", str(query),
           "--out", str(out), "--top-k", str(args.top_k), "--metric", args.metric]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{method}: failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def top_sets(out: Path) -> dict[str, set]:
    import csv

    found: dict[str, set] = {}
    with (out / "search_results.csv").open() as fh:
        for r in csv.DictReader(fh):
            found.setdefault(r["query"], set()).add((r["source"], float(r["start"])))
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="exact search: corpus windows (default: 1,000,000)")
    p.add_argument("--usearch-n", type=int, default=100_000,
                   help="usearch: corpus windows (default: 100,000; 0 skips it)")
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--recording-windows", type=int, default=100, help="windows per recording (default: 100)")
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--metric", default="cosine", choices=("cosine", "euclidean", "mip"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the stores and results go (default: a temporary folder, "
                                                   "removed afterwards); stores already there are reused")
    p.add_argument("--child", choices=("exact", "usearch"), help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--query", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        return bench(args, work)
    with tempfile.TemporaryDirectory(prefix="bench_search.") as tmp:
        return bench(args, Path(tmp))


def bench(args, work: Path) -> int:
    w = args.recording_windows
    print(f"{args.n:,} windows x {args.dim}-d ({args.n // w:,} recordings of {w}), {args.queries} queries, "
          f"top {args.top_k}, {args.metric}; usearch at {args.usearch_n:,}")
    rows = []
    stores = {}
    for label, n in (("exact", args.n), ("usearch", args.usearch_n)):
        if n <= 0:
            continue
        store = work / f"corpus_{n}x{args.dim}_s{args.seed}.h5"
        if not store.exists():
            made = write_store(store, n=n, dim=args.dim, per_recording=w, seed=args.seed)
            print(f"wrote {store.name}: {made['bytes'] / 2**30:.2f} GiB in {made['seconds']:.1f} s (not counted)")
        query = work / f"queries_{n}.parquet"
        write_queries(query, n=n, dim=args.dim, count=args.queries, per_recording=w, seed=args.seed)
        stores[label] = (store, query, n)
    tiny = work / f"corpus_{w}x{args.dim}_s{args.seed}.h5"  # one recording: the floor under every peak
    if not tiny.exists():
        write_store(tiny, n=w, dim=args.dim, per_recording=w, seed=args.seed)
    idle = spawn(args, "exact", tiny, stores["exact"][1], work / "floor")
    rows.append((f"floor: exact, {w} windows", f"{idle['seconds']:.2f}", f"{idle['search_s']:.2f}", idle["peak_mib"]))

    store, query, n = stores["exact"]
    exact = spawn(args, "exact", store, query, work / "exact")
    rows.append((f"exact, {n:,}", f"{exact['seconds']:.2f}", f"{exact['search_s']:.2f}", exact["peak_mib"]))
    hits = top_sets(work / "exact")
    first = sum(1 for q in hits if hits[q]) == args.queries
    results = {"exact": exact, "floor": idle}
    if "usearch" in stores:
        store, query, n = stores["usearch"]
        for d in ("usearch",):
            for f in (work / d).glob("corpus.usearch*"):
                f.unlink()  # the first search builds it
        ref = spawn(args, "exact", store, query, work / "exact_small")
        built = spawn(args, "usearch", store, query, work / "usearch")
        assert built["index_info"]["state"] == "built", built["index_info"]
        reused = spawn(args, "usearch", store, query, work / "usearch")
        assert reused["index_info"]["state"] == "reused", reused["index_info"]
        truth, approx = top_sets(work / "exact_small"), top_sets(work / "usearch")
        recall = float(np.mean([len(truth[q] & approx.get(q, set())) / len(truth[q]) for q in truth]))
        rows.append((f"exact, {n:,}", f"{ref['seconds']:.2f}", f"{ref['search_s']:.2f}", ref["peak_mib"]))
        rows.append((f"usearch build+search, {n:,}", f"{built['seconds']:.2f}", f"{built['search_s']:.2f}",
                     built["peak_mib"]))
        rows.append((f"usearch reused, {n:,}", f"{reused['seconds']:.3f}", f"{reused['search_s']:.3f}",
                     reused["peak_mib"]))
        results.update({"exact_small": ref, "usearch_built": built, "usearch_reused": reused, "recall": recall})
    print(f"\n{'run':28s} {'command s':>10s} {'search s':>9s} {'peak MiB':>9s}")
    for name, total, search, peak in rows:
        print(f"{name:28s} {total:>10s} {search:>9s} {peak:9.0f}")
    print(f"\nexact: {exact['windows'] / max(exact['search_s'], 1e-9) / 1e6:.2f} M windows/s; peak over floor "
          f"{exact['peak_mib'] - idle['peak_mib']:.0f} MiB for {exact['windows']:,} windows "
          f"({args.n * args.dim * 4 / 2**20:.0f} MiB of float32 on disk)")
    if "recall" in results:
        b, r = results["usearch_built"], results["usearch_reused"]
        print(f"usearch: build {b['index_info']['build_s']:.1f} s once; reused search {r['search_s'] * 1e3:.1f} ms "
              f"({results['exact_small']['search_s'] / max(r['search_s'], 1e-9):.0f}x faster than exact at the "
              f"same size), peak over floor {r['peak_mib'] - idle['peak_mib']:.0f} MiB; recall@{args.top_k} vs exact "
              f"{results['recall']:.3f}")
        print(f"         reused search, sampled peaks: {r['anon_mib']:.0f} MiB heap, {r['file_mib']:.0f} MiB of mapped "
              f"file pages (the index view, shared with the page cache; the floor: {idle['anon_mib']:.0f} and "
              f"{idle['file_mib']:.0f})")
    print(f"exact, sampled peaks: {exact['anon_mib']:.0f} MiB heap, {exact['file_mib']:.0f} MiB mapped file pages")
    if not first:
        print("warning: some queries found nothing")
    (work / "bench_search.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
