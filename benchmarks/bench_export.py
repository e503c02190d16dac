#!/usr/bin/env python3
"""Peak memory of ``perch_runner.py export`` from an HDF5 store of N windows to a wide Parquet table.

    .venv/bin/python benchmarks/bench_export.py --n 1000000 --dim 1024 [--work DIR] [--layout wide]

Writes the store (bench_search.py's synthetic rows, ``--per-recording`` windows a recording), then
runs the export in a child process and reports its wall time and peak resident memory (VmHWM).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="windows in the store (default: 1,000,000)")
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--per-recording", type=int, default=1200, help="windows a recording (1 h of 3 s windows)")
    p.add_argument("--layout", default="wide")
    p.add_argument("--format", default="parquet")
    p.add_argument("--work", default=None, help="folder for the store and the table (default: a temporary one)")
    args = p.parse_args()
    from bench_search import write_store

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        store = work / "store.h5"
        made = write_store(store, n=args.n, dim=args.dim, per_recording=args.per_recording, seed=0)
        out = work / f"export.{args.format}"
        code = ("import json, resource, sys, time; sys.path.insert(0, %r)\n"
                "from audio_embeddings.runner.export import export\n"
                "t = time.perf_counter(); r = export(%r, %r, layout=%r)\n"
                "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
                "print(json.dumps({**r, 'seconds': time.perf_counter() - t, 'peak_rss_mib': int(peak) / 1024}))"
                % (str(ROOT / "python"), str(store), str(out), args.layout))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return 1
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result.update(store_bytes=made["bytes"], store_seconds=made["seconds"], table_bytes=out.stat().st_size,
                      wall_s=time.perf_counter() - t0, n=args.n, dim=args.dim)
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
