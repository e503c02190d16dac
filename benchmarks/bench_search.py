#!/usr/bin/env python3
"""Exact (streamed) search vs a usearch HNSW index over synthetic window embeddings.

    .venv/bin/python benchmarks/bench_search.py                 # 1,000,000 x 1024-d, both methods
    .venv/bin/python benchmarks/bench_search.py --n 100000 --queries 16

Each method runs in its own process (``--method exact|usearch``), so the peak resident memory it
prints is its own. The corpus is generated block by block from a seed (never held whole by the
exact search); usearch stores it as float16 (as perch-hoplite does). Prints seconds (build, search)
and peak memory, and the recall of usearch's top-K against the exact top-K. Not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def blocks(n: int, dim: int, block: int, seed: int):
    """Synthetic 'embeddings': clustered, non-negative like pooled CNN features."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((64, dim))).astype(np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        which = rng.integers(0, 64, m)
        yield (centres[which] + 0.5 * np.abs(rng.standard_normal((m, dim)))).astype(np.float32)


def queries(k: int, dim: int, seed: int) -> np.ndarray:
    first = next(blocks(k, dim, k, seed))  # the corpus' first rows: each has an exact match
    return first + 0.01 * np.random.default_rng(seed + 1).standard_normal(first.shape).astype(np.float32)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_exact(args) -> dict:
    from audio_embeddings.runner.search import TopK, block_distances

    q = queries(args.queries, args.dim, args.seed)
    t0 = time.perf_counter()
    top = TopK(q.shape[0], args.top_k)
    offset = 0
    for i, b in enumerate(blocks(args.n, args.dim, args.block, args.seed)):
        top.update(block_distances(q, b, args.metric), i)
        offset += b.shape[0]
    ids = (top.block * args.block + top.row).tolist()
    return {"method": "exact", "build_s": 0.0, "search_s": time.perf_counter() - t0, "peak_mib": peak_mib(),
            "ids": ids}


def run_usearch(args) -> dict:
    from usearch.index import Index

    from audio_embeddings.runner.search import USEARCH_METRICS

    q = queries(args.queries, args.dim, args.seed)
    t0 = time.perf_counter()
    index = Index(ndim=args.dim, metric=USEARCH_METRICS[args.metric], dtype="f16")
    start = 0
    for b in blocks(args.n, args.dim, args.block, args.seed):
        index.add(np.arange(start, start + b.shape[0], dtype=np.uint64), b)
        start += b.shape[0]
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    found = index.search(q, args.top_k)
    search = time.perf_counter() - t1
    ids = np.asarray(found.keys, dtype=np.int64).reshape(q.shape[0], -1).tolist()
    return {"method": "usearch", "build_s": build, "search_s": search, "peak_mib": peak_mib(), "ids": ids}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="corpus windows (default: 1,000,000)")
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--block", type=int, default=16384, help="exact search: rows per block")
    p.add_argument("--metric", default="cosine", choices=("cosine", "euclidean", "mip"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=("exact", "usearch", "both"), default="both")
    args = p.parse_args()
    if args.method != "both":
        out = run_exact(args) if args.method == "exact" else run_usearch(args)
        print(json.dumps(out))
        return 0
    print(f"{args.n:,} windows x {args.dim}-d, {args.queries} queries, top {args.top_k}, {args.metric}")
    results = {}
    for method in ("exact", "usearch"):
        cmd = [sys.executable, __file__, "--method", method] + [f"--{k.replace('_', '-')}={v}" for k, v in
                                                                 vars(args).items() if k != "method"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{method}: failed\n{proc.stderr[-2000:]}")
            return 1
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[method]
        print(f"{method:8s} build {r['build_s']:8.1f} s   search {r['search_s']:8.2f} s   peak {r['peak_mib']:8.0f} MiB")
    exact, approx = results["exact"]["ids"], results["usearch"]["ids"]
    recall = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact, approx)])
    print(f"usearch recall@{args.top_k} vs exact: {recall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
