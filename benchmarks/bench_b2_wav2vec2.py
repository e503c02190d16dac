#!/usr/bin/env python3
"""B2 throughput: the seed's loop against ours, same audio, same base-size random wav2vec2.

Seed (``004_e80659cc12a43c91.txt``): ``librosa.load`` + resample, then one 20 s chunk at a time
through ``AutoFeatureExtractor`` and the model, outputs concatenated (one frame lost per boundary).
Ours: soundfile + soxr, whole-file normalisation, 20 s chunks with context on both sides,
batched, on the whole-file frame grid.

Prints audio seconds per wall second for both (median of ``--repeats``) and the ratio.

    .venv/bin/python benchmarks/bench_b2_wav2vec2.py [--seconds 120] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def make_model_dir(directory: Path) -> Path:
    """A randomly initialised wav2vec2 base (768-d, 12 layers) saved like a hub checkpoint."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    tf.Wav2Vec2Model(tf.Wav2Vec2Config()).save_pretrained(directory)
    tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(directory)
    return directory


def make_audio(path: Path, seconds: float) -> None:
    """Speech-like test audio: 44.1 kHz stereo, amplitude-modulated noise and tones."""
    import soundfile as sf

    rate = 44100
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.1 * rng.standard_normal(t.size) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.2 * np.sin(2 * np.pi * 180 * t)
    sf.write(path, np.stack([mono, 0.8 * mono], axis=1).astype(np.float32), rate, subtype="PCM_16")


def seed_run(path: Path, model_dir: Path, device: str, chunk_s: float) -> np.ndarray:
    """The B2 seed's approach, written out."""
    import librosa
    import torch
    import transformers as tf

    fe = tf.AutoFeatureExtractor.from_pretrained(model_dir)
    model = tf.Wav2Vec2Model.from_pretrained(model_dir).eval().to(device)
    wav, _ = librosa.load(path, sr=fe.sampling_rate, mono=True)
    step = int(chunk_s * fe.sampling_rate)
    outs = []
    with torch.inference_mode():
        for start in range(0, wav.size, step):
            inputs = fe(wav[start:start + step], sampling_rate=fe.sampling_rate, return_tensors="pt")
            outs.append(model(inputs.input_values.to(device)).last_hidden_state[0].cpu().numpy())
    return np.concatenate(outs)


def our_run(path: Path, model_dir: Path, device: str, chunk_s: float, context_s: float,
            batch_size: int) -> np.ndarray:
    """This toolkit: load, prepare, context chunks, batched."""
    from audio_embeddings import audio
    from audio_embeddings.pipeline import embed_audio
    from audio_embeddings.registry import load_backend

    backend = load_backend(str(model_dir), device=device)
    loaded = audio.load(path, sample_rate_hz=backend.sample_rate_hz, min_samples=backend.min_samples)
    return embed_audio(backend, loaded, chunk_s=chunk_s, context_s=context_s, batch_size=batch_size).embeddings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0, help="audio length (default 120)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--chunk-seconds", type=float, default=20.0)
    p.add_argument("--context-seconds", type=float, default=2.0, help="ours: context per side (default 2)")
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_model_dir(tmp / "w2v2-base-random")
        wav = tmp / "bench.wav"
        make_audio(wav, args.seconds)
        runs = {"seed": lambda: seed_run(wav, model_dir, args.device, args.chunk_seconds),
                "ours": lambda: our_run(wav, model_dir, args.device, args.chunk_seconds, args.context_seconds,
                                        args.batch_size)}
        for fn in runs.values():  # warm-up: imports, allocator, kernels
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        frames = {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                frames[name] = fn().shape[0]
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
    expected = (int(args.seconds * 16000) - 400) // 320 + 1
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"audio={args.seconds:.0f}s chunk={args.chunk_seconds:.0f}s context={args.context_seconds:g}s "
          f"batch={args.batch_size} repeats={args.repeats}")
    speed = {}
    for name in runs:
        med = statistics.median(times[name])
        speed[name] = args.seconds / med
        print(f"{name:5s} median {med:7.2f} s  -> {speed[name]:7.1f} audio-s/s   frames {frames[name]} "
              f"(whole-file grid {expected}, {'exact' if frames[name] == expected else 'lost %d' % (expected - frames[name])})")
    print(f"ratio ours/seed: {speed['ours'] / speed['seed']:.2f}x")


if __name__ == "__main__":
    main()
