#!/usr/bin/env python3
"""B4 throughput: ERes2NetV2 (real size, random weights), the seed's per-utterance loop against our batched path.

Seed (``003_cec8c7c5afde472b.txt``, following 3D-Speaker's ``infer_sv.py``): for each utterance,
a Kaldi fbank on the CPU (``torchaudio.compliance.kaldi.fbank`` there; kaldi-native-fbank here,
since torchaudio does not install next to this torch), minus its mean, moved to the device,
one forward pass of batch 1.
Ours: ``Speaker3DBackend.embed_batch`` on batches of equal-length utterances (what the engine's
``utterance`` framing passes): the fbank runs batched on the model's device, one forward per batch.

Both load the same checkpoint into the same module class (the seed keeps torch's default memory
layout, as 3D-Speaker does); the script checks that both give the same embeddings.
Prints utterances per wall second (median of ``--repeats``) and the ratio, per device.

    .venv/bin/python benchmarks/bench_b4_speaker.py [--count 64] [--seconds 3] [--batch-size 16] \\
        [--repeats 3] [--devices cpu,cuda] [--threads N]

On a shared machine the wall times vary with the other load; the process CPU seconds
(all threads) are printed next to them, and ``--threads 1`` gives the steadiest comparison.
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

RATE_HZ = 16000


def make_checkpoint(path: Path) -> Path:
    """A randomly initialised full-size ERes2NetV2 (192-d, 26/2/2, 17.86 M parameters), saved like 3D-Speaker's."""
    import torch

    from audio_embeddings.backends.eres2netv2 import ERes2NetV2
    from audio_embeddings.backends.speaker3d import PRESETS

    torch.manual_seed(0)
    model = ERes2NetV2(**PRESETS["eres2netv2"].kwargs)
    torch.save(model.state_dict(), path)
    return path


def make_utterances(count: int, seconds: float) -> np.ndarray:
    """Speech-like utterances float32 [count, seconds * 16 kHz] in [-1, 1]: modulated noise plus a voiced tone."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    out = np.empty((count, t.size), dtype=np.float32)
    for i in range(count):
        f0 = rng.uniform(90, 250)
        envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)))
        voiced = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        out[i] = 0.1 * envelope * (0.5 * voiced + rng.standard_normal(t.size))
    return out


def knf_fbank(x: np.ndarray) -> np.ndarray:
    """3D-Speaker's features for one utterance on the CPU: Kaldi fbank, 80 bins, dither 0 -> [T, 80]."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = RATE_HZ
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(RATE_HZ, x)
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def seed_run(model, utterances: np.ndarray, device) -> np.ndarray:
    """The seed's loop: fbank per utterance on the CPU, mean removed, one forward of batch 1."""
    import torch

    out = []
    for wav in utterances:
        feat = torch.from_numpy(knf_fbank(wav))
        feat = (feat - feat.mean(dim=0, keepdim=True)).unsqueeze(0).to(device)
        with torch.no_grad():
            out.append(model(feat).squeeze(0).cpu().numpy())
    return np.stack(out)


def our_run(backend, utterances: np.ndarray, batch_size: int) -> np.ndarray:
    """Ours: equal-length utterances in batches through ``embed_batch``."""
    return np.concatenate([backend.embed_batch(utterances[i:i + batch_size]).embeddings
                           for i in range(0, len(utterances), batch_size)])


def bench_device(device: str, ckpt: Path, utterances: np.ndarray, *, batch_size: int, repeats: int) -> None:
    import torch

    from audio_embeddings.backends.speaker3d import Speaker3DBackend

    from audio_embeddings.backends.eres2netv2 import ERes2NetV2
    from audio_embeddings.backends.speaker3d import PRESETS

    backend = Speaker3DBackend.load(str(ckpt), name="eres2netv2", device=device)
    # the seed's model: 3D-Speaker's way, load_state_dict, .to(device), .eval() (default memory layout)
    seed_model = ERes2NetV2(**PRESETS["eres2netv2"].kwargs)
    seed_model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    seed_model.to(backend.device).eval()
    runs = {"seed": lambda: seed_run(seed_model, utterances, backend.device),
            "ours": lambda: our_run(backend, utterances, batch_size)}
    warm = utterances[:batch_size]
    seed_run(seed_model, warm, backend.device)  # warm-up: kernels, allocator, oneDNN/cuDNN plans
    our_run(backend, warm, batch_size)
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu_times: dict[str, list[float]] = {k: [] for k in runs}
    results = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            if backend.device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            results[name] = fn()
            if backend.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)
    n = len(utterances)
    diff = float(np.abs(results["seed"] - results["ours"]).max() / np.abs(results["seed"]).max())
    print(f"device={backend.device} ({torch.cuda.get_device_name() if backend.device.type == 'cuda' else 'cpu'}) "
          f"torch={torch.__version__} threads={torch.get_num_threads()} utterances={n} x "
          f"{utterances.shape[1] / RATE_HZ:g}s batch={batch_size} repeats={repeats}")
    speed = {}
    for name in runs:
        med = statistics.median(times[name])
        speed[name] = n / med
        print(f"  {name:5s} median {med:7.2f} s -> {speed[name]:7.1f} utt/s  (runs: "
              f"{', '.join(f'{t:.2f}' for t in times[name])}; process CPU s: "
              f"{', '.join(f'{t:.2f}' for t in cpu_times[name])})")
    print(f"  ratio ours/seed: {speed['ours'] / speed['seed']:.2f}x   max |seed - ours| / max |emb| = {diff:.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=64, help="utterances (default 64)")
    p.add_argument("--seconds", type=float, default=3.0, help="utterance length (default 3)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped when absent")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--cpu-forward-frames", type=int, default=0,
                   help="ours: override speaker3d.CPU_FORWARD_FRAMES for ERes2NetV2 (100000: the whole batch at once)")
    args = p.parse_args()
    import torch

    from audio_embeddings.backends import speaker3d

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.cpu_forward_frames > 0:
        speaker3d.CPU_FORWARD_FRAMES["eres2netv2"] = args.cpu_forward_frames
    print(f"ours: CPU forwards of about {speaker3d.CPU_FORWARD_FRAMES['eres2netv2']} fbank frames")

    utterances = make_utterances(args.count, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(Path(tmp) / "pretrained_eres2netv2.ckpt")
        for device in args.devices.split(","):
            if device.startswith("cuda") and not torch.cuda.is_available():
                print(f"device={device}: not available, skipped")
                continue
            bench_device(device, ckpt, utterances, batch_size=args.batch_size, repeats=args.repeats)


if __name__ == "__main__":
    main()
