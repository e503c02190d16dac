#!/usr/bin/env python3
"""Speaker models over many short utterances: utterances/s at ``--batch-size`` 1 and 8, through B4's shared run.

200 utterances (``--count``) of 0.5 to 4 s (lengths drawn on a 0.1 s grid, seeded: utterances of equal
length share batches; the engine never pads a speaker model's input), cut from the demo clips in
``data/``, in a ``ds/<speaker>/<utt>.wav`` tree. Each model (GE2E, and the tiny 3D-Speaker ERes2NetV2
and CAM++ checkpoints of ``audio-embeddings make-tiny-model``) runs B4 over the tree into a fresh
folder ``--repeats`` times per batch size; the figure is the corpus engine's wall time (the run
summary's ``wall_time_s``: decoding, batching, model; not the model load), median of the repeats.

    .venv/bin/python benchmarks/bench_speakers.py [--count 200] [--repeats 3] [--models ge2e,eres2netv2,campplus]

On a shared machine the wall times vary with the other load.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

RATE_HZ = 16000


def make_corpus(root: Path, *, count: int, seed: int = 0) -> float:
    """``count`` utterances of 0.5-4 s under ``root``; returns their total length in s."""
    from audio_embeddings import audio

    clips = [audio.load(c, sample_rate_hz=RATE_HZ).samples for c in sorted((REPO / "data").glob("*.wav"))]
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(count):
        x = clips[i % len(clips)]
        n = int(round(rng.integers(5, 41) / 10 * RATE_HZ))
        if x.shape[0] < n:
            x = np.tile(x, n // x.shape[0] + 1)
        start = int(rng.integers(0, x.shape[0] - n + 1))
        path = root / "ds" / f"spk{i % 20:02d}" / f"u{i:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x[start:start + n], RATE_HZ, subtype="FLOAT")
        total += n / RATE_HZ
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--models", default="ge2e,eres2netv2,campplus")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "python"))
    from B4_model_speaker import DEFAULTS
    from audio_embeddings.backends.tiny import make_tiny_model
    from audio_embeddings.cli import main as cli_main

    logging.getLogger("audio_embeddings").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        hours = make_corpus(tmp_path / "corpus", count=args.count) / 3600
        print(f"{args.count} utterances, {hours * 3600:.0f} s of audio; CPU; median of {args.repeats}")
        print("| model | batch size | utterances/s | audio s per wall s |")
        print("|---|---:|---:|---:|")
        for model in args.models.split(","):
            flags = ["--model", "ge2e"]
            if model != "ge2e":
                folder = make_tiny_model(model, tmp_path / "tiny" / model)
                ckpt = next(p for p in Path(folder).iterdir() if p.suffix in (".ckpt", ".pt", ".bin"))
                flags = ["--model", model, "--checkpoint", str(ckpt)]
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                walls = []
                for r in range(args.repeats):
                    out = tmp_path / f"out-{model}-{batch}-{r}"
                    status = cli_main(DEFAULTS, [str(tmp_path / "corpus"), *flags, "--output-dir", str(out),
                                                 "--device", "cpu", "--batch-size", str(batch), "--quiet"])
                    if status != 0:
                        raise SystemExit(f"{model} batch {batch}: exit status {status}")
                    walls.append(json.loads((out / "summary.json").read_text())["wall_time_s"])
                wall = statistics.median(walls)
                name = model if model == "ge2e" else f"{model} (tiny)"
                print(f"| {name} | {batch} | {args.count / wall:.1f} | {hours * 3600 / wall:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
