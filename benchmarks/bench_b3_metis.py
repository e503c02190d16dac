#!/usr/bin/env python3
"""B3 Metis throughput: the seed's per-file loop against the corpus engine; bf16 vs fp32 on a GPU; chunking error.

Builds a w2v-bert-sized random model (1024-d, 16 heads, 4096 FFN: the real layer widths)
cut to ``--layers`` conformer layers (CPU default 2; 17 on a GPU), a real-size random codec
(384-d, 2048 inner, 12 ConvNeXt blocks) with Amphion's key names, and statistics. Then:

* **seed vs engine** (files/s, median of ``--repeats``): the seed loop does, per file,
  ``librosa.load(sr=16000)`` -> ``SeamlessM4TFeatureExtractor`` -> the model with
  ``output_hidden_states`` -> normalise -> codec -> ``.tolist()`` into a dict, then one
  ``json.dump``; the engine is ``B3_model_metis.py DIR`` in-process (decoding worker, torch
  fbank, padded batches across files, per-file ``.npy`` and the same corpus JSON). Both
  include writing; neither includes model loading. The max difference between the two
  JSON files is printed.
* **GPU only**: audio-seconds per second with all ``--layers`` layers in bfloat16 against
  float32, and the max |difference| of the 8-D latents between them.
* ``--chunk-check S``: one S-second recording embedded whole and in the B3 default chunks
  (30 s + 5 s context): max and median |difference| and the row correlation.

    .venv/bin/python benchmarks/bench_b3_metis.py --files 24 --repeats 3
    .venv/bin/python benchmarks/bench_b3_metis.py --device cuda --layers 17 --files 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests"))


def build_stack(directory: Path, layers: int) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    import tiny_metis

    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(num_hidden_layers=layers)  # the w2v-bert-2.0 widths
    Wav2Vec2BertModel(config).save_pretrained(directory / "w2v")
    SeamlessM4TFeatureExtractor().save_pretrained(directory / "w2v")
    old = (tiny_metis.VOCOS_DIM, tiny_metis.VOCOS_INNER, tiny_metis.CODEBOOK)
    tiny_metis.VOCOS_DIM, tiny_metis.VOCOS_INNER, tiny_metis.CODEBOOK = 384, 2048, (8192, 8)
    try:
        state = tiny_metis.codec_state(hidden=config.hidden_size, layers=12)
    finally:
        tiny_metis.VOCOS_DIM, tiny_metis.VOCOS_INNER, tiny_metis.CODEBOOK = old
    state = {k: v * (0.1 if v.ndim > 1 else 1.0) for k, v in state.items()}  # keep activations moderate
    save_file(state, str(directory / "codec.safetensors"))
    torch.save({"mean": torch.zeros(config.hidden_size), "var": torch.ones(config.hidden_size)},
               directory / "stats.pt")
    return {"model": directory / "w2v", "codec": directory / "codec.safetensors", "stats": directory / "stats.pt"}


def make_corpus(root: Path, n: int) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"part_{i % 2:03d}" / f"{i:02x}" / f"clip{i:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        seconds = rng.uniform(3.0, 6.0)
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 22050))).astype(np.float32), 22050)
    return root


def seed_loop(paths: dict, root: Path, out: Path, device: str) -> float:
    """The original script's loop; returns seconds (model loading excluded)."""
    import librosa
    import torch
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    from audio_embeddings.backends.repcodec import load_codec

    fe = SeamlessM4TFeatureExtractor.from_pretrained(paths["model"])
    model = Wav2Vec2BertModel.from_pretrained(paths["model"]).eval().to(device)
    codec = load_codec(paths["codec"]).to(device)
    stats = torch.load(paths["stats"], weights_only=True)
    mean, std = stats["mean"].to(device), torch.sqrt(stats["var"]).to(device)
    files = sorted(root.rglob("*.wav"))
    start = time.perf_counter()
    result = {}
    for f in files:
        wav, _ = librosa.load(f, sr=16000, mono=True)
        inputs = fe(wav, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            hs = model(input_features=inputs["input_features"].to(device),
                       attention_mask=inputs["attention_mask"].to(device), output_hidden_states=True).hidden_states
            z = codec((hs[model.config.num_hidden_layers] - mean) / std)
        result[f.relative_to(root).as_posix()] = z.squeeze(0).cpu().numpy().tolist()
    with open(out, "w") as fh:
        json.dump(result, fh)
    return time.perf_counter() - start


def engine_run(paths: dict, root: Path, out: Path, device: str, batch_size: int) -> float:
    from audio_embeddings.cli import main
    from B3_model_metis import DEFAULTS

    start = time.perf_counter()
    rc = main(DEFAULTS, [str(root), "--output-dir", str(out), "--model", str(paths["model"]), "--codec",
                         str(paths["codec"]), "--stats", str(paths["stats"]), "--device", device, "--batch-size",
                         str(batch_size), "--workers", "1", "--layer", str(_layers(paths)), "--quiet", "--overwrite"])
    assert rc == 0
    return time.perf_counter() - start


def load_time(paths: dict, device: str) -> float:
    from audio_embeddings.backends.metis import MetisBackend

    start = time.perf_counter()
    MetisBackend.load(str(paths["model"]), codec=str(paths["codec"]), stats=str(paths["stats"]), device=device,
                      layer=_layers(paths))
    return time.perf_counter() - start


def _layers(paths: dict) -> int:
    return json.loads((Path(paths["model"]) / "config.json").read_text())["num_hidden_layers"]


def dtype_check(paths: dict, device: str, seconds: float = 20.0, batch: int = 8, repeats: int = 5) -> None:
    import torch

    from audio_embeddings.backends.metis import MetisBackend

    audio = (0.1 * np.random.default_rng(1).standard_normal((batch, int(seconds * 16000)))).astype(np.float32)
    outs, speeds = {}, {}
    for dtype in ("float32", "bfloat16"):
        backend = MetisBackend.load(str(paths["model"]), codec=str(paths["codec"]), stats=str(paths["stats"]),
                                    device=device, dtype=dtype, layer=_layers(paths))
        backend.embed_batch(audio[:1])
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs[dtype] = backend.embed_batch(audio).embeddings
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        speeds[dtype] = batch * seconds / statistics.median(times)
        del backend
        torch.cuda.empty_cache()
    diff = np.abs(outs["float32"] - outs["bfloat16"])
    print(f"GPU {_layers(paths)} layers, batch {batch} x {seconds:g} s: fp32 {speeds['float32']:.0f} audio-s/s, "
          f"bf16 {speeds['bfloat16']:.0f} audio-s/s, bf16/fp32 {speeds['bfloat16'] / speeds['float32']:.2f}x; "
          f"latents |bf16 - fp32| max {diff.max():.4f}, median {np.median(diff):.4f}, "
          f"latent std {outs['float32'].std():.3f}")


def chunk_check(paths: dict, seconds: float, device: str) -> None:
    from audio_embeddings.audio import Audio
    from audio_embeddings.backends.metis import MetisBackend
    from audio_embeddings.pipeline import embed_audio

    backend = MetisBackend.load(str(paths["model"]), codec=str(paths["codec"]), stats=str(paths["stats"]),
                                device=device, layer=_layers(paths))
    x = (0.1 * np.random.default_rng(2).standard_normal(int(seconds * 16000))).astype(np.float32)
    whole = backend.embed_batch(x[None]).embeddings[0]
    chunked = embed_audio(backend, Audio(x, 16000, 16000, 1, None, "synthetic"), chunk_s=30.0,
                          context_s=5.0).embeddings
    diff = np.abs(whole - chunked)
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(whole, chunked)]
    print(f"chunking {seconds:g} s (30 s chunks + 5 s context), {_layers(paths)} random layers: |chunked - whole| "
          f"max {diff.max():.4f}, median {np.median(diff):.5f} (latent std {whole.std():.3f}); row correlation "
          f"min {min(corr):.4f}, median {np.median(corr):.5f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layers", type=int, default=None, help="conformer layers (default: 2 on CPU, 17 on a GPU)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-check", type=float, default=0.0, metavar="S")
    args = ap.parse_args()
    layers = args.layers or (17 if args.device.startswith("cuda") else 2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = build_stack(tmp / "stack", layers)
        if args.files == 0:
            chunk_check(paths, args.chunk_check, args.device)
            return
        root = make_corpus(tmp / "corpus", args.files)
        seed_s, engine_s = [], []
        for _ in range(args.repeats):
            seed_s.append(seed_loop(paths, root, tmp / "seed.json", args.device))
            engine_s.append(engine_run(paths, root, tmp / "engine", args.device, args.batch_size))
        loading = load_time(paths, args.device)
        engine_net = [max(t - loading, 1e-9) for t in engine_s]
        a = json.loads((tmp / "seed.json").read_text())
        b = json.loads((tmp / "engine" / "semantic_audio_embeddings.json").read_text())
        assert list(a) == list(b)
        diff = max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)
        seed_fps, engine_fps = args.files / statistics.median(seed_s), args.files / statistics.median(engine_net)
        print(f"{args.files} files of 3-6 s at 22.05 kHz, {layers} layers, {args.device}, batch {args.batch_size}: "
              f"seed {seed_fps:.2f} files/s, engine {engine_fps:.2f} files/s (model load {loading:.1f} s "
              f"subtracted): {engine_fps / seed_fps:.2f}x (median of {args.repeats}); "
              f"max |engine - seed| {diff:.2e}")
        if args.device.startswith("cuda"):
            dtype_check(paths, args.device)
        if args.chunk_check:
            chunk_check(paths, args.chunk_check, args.device)


if __name__ == "__main__":
    main()
