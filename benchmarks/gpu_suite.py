#!/usr/bin/env python3
"""GPU suite: full-size random-weight models through the corpus engine on one GPU, with the figures that matter.

Models (random weights at the published sizes; nothing is downloaded):

==================  ========================================================================
``metis``           w2v-bert-2.0 widths (1024-d, 16 heads, 4096 FFN), the 17 layers Metis uses,
                    plus a real-size RepCodec encoder (384-d, 12 ConvNeXt blocks) under Amphion's keys
``wav2vec2-large``  XLSR-53 geometry (24 layers, 1024-d, layer-norm conv front end)
``wavlm-large``     WavLM large (24 layers, relative position bias: no SDPA, eager attention)
``hubert-large``    HuBERT large (24 layers)
``whisper``         the Whisper large-v3 encoder (32 layers, 1280-d, 128 mel bins; 30 s per input)
``eres2netv2``      3D-Speaker ERes2NetV2 (17.9 M parameters, 192-d)
``campplus``        3D-Speaker CAM++ (192-d)
==================  ========================================================================

For each model, on a synthetic corpus of ``--files`` 5 s WAVs decoded from disk by the engine
(decoding workers, batches across files, per-file ``.npy`` written by the background writer):

* audio-s/s (x real time) and files/s of the engine run, in float32 and in bfloat16;
* GPU utilisation (``nvidia-smi`` sampled every 0.2 s in a thread) and peak allocated memory;
* achieved TFLOP/s: the FLOPs of one 5 s file counted with ``torch.utils.flop_counter``
  (matmuls, convolutions, attention) times the files, over the model time and over the wall time;
* the bfloat16 outputs against float32 (relative RMS difference, median row cosine);
* the ratio against a seed-style loop (decode one file, one forward per file, copy back).

It first checks that soundfile, soxr and kaldi-native-fbank import, and says what is missing.
A GPU machine without network may lack them: on a networked machine with the same Python and
platform, ``pip download --only-binary=:all: --python-version 3.11 --platform
manylinux2014_x86_64 -d wheels soundfile soxr kaldi-native-fbank``, carry ``wheels/`` along, and
``pip install --no-index --find-links wheels soundfile soxr kaldi-native-fbank`` there.

Full form (one H100/H200, 16 cores; about 4 to 6 minutes, under 8: building and saving the
random models is about a third of it, Whisper's float32 run the longest single step)::

    .venv/bin/python benchmarks/gpu_suite.py                         # every model, 256 files each
    .venv/bin/python benchmarks/gpu_suite.py --models metis,whisper --files 512 --json out.json

``--dry-run``: CPU, tiny models (one of each builder: Metis, wav2vec2, Whisper, ERes2NetV2;
``--models`` for others), three 1 s files, every code path, well under a minute (the test suite
runs it: tests/test_gpu_suite.py).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

RATE_HZ = 16000

#: Registry of the suite: label, kind (which builder), and the CLI/loader options it needs.
MODELS: dict[str, dict[str, Any]] = {
    "metis": {"label": "Metis (w2v-bert 17 L + codec)", "kind": "metis"},
    "wav2vec2-large": {"label": "wav2vec2-large (XLSR-53, 24 L)", "kind": "hf", "family": "wav2vec2"},
    "wavlm-large": {"label": "WavLM-large (24 L)", "kind": "hf", "family": "wavlm"},
    "hubert-large": {"label": "HuBERT-large (24 L)", "kind": "hf", "family": "hubert"},
    "whisper": {"label": "Whisper large-v3 encoder (32 L)", "kind": "whisper"},
    "eres2netv2": {"label": "ERes2NetV2 (3D-Speaker)", "kind": "speaker", "family": "eres2netv2"},
    "campplus": {"label": "CAM++ (3D-Speaker)", "kind": "speaker", "family": "campplus"},
    # CPU figures of bench_engine_ceiling (section 5) also use:
    "wav2vec2-base": {"label": "wav2vec2-base (12 L, B2)", "kind": "hf", "family": "wav2vec2-base"},
}
GPU_MODELS = ("metis", "wav2vec2-large", "wavlm-large", "hubert-large", "whisper", "eres2netv2", "campplus")
#: ``--dry-run`` default: one model of each builder and attention path.
DRY_RUN_MODELS = ("metis", "wav2vec2-large", "whisper", "eres2netv2")
SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


# ---------------------------------------------------------------- environment


def check_packages() -> list[str]:
    """Names of the audio packages the engine needs that do not import here."""
    missing = []
    for module, package in (("soundfile", "soundfile"), ("soxr", "soxr"), ("kaldi_native_fbank", "kaldi-native-fbank"),
                            ("transformers", "transformers"), ("safetensors", "safetensors")):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - any failure to import counts as missing
            missing.append(package)
    return missing


# ---------------------------------------------------------------- models


def _hf_config(family: str, tiny: bool):
    import transformers as tf

    if tiny:
        small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                     conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
        cls = {"wav2vec2": tf.Wav2Vec2Config, "wav2vec2-base": tf.Wav2Vec2Config, "wavlm": tf.WavLMConfig,
               "hubert": tf.HubertConfig}[family]
        return cls(**small), {"wav2vec2": tf.Wav2Vec2Model, "wav2vec2-base": tf.Wav2Vec2Model,
                              "wavlm": tf.WavLMModel, "hubert": tf.HubertModel}[family]
    large = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                 feat_extract_norm="layer", do_stable_layer_norm=True)
    if family == "wav2vec2-base":
        return tf.Wav2Vec2Config(), tf.Wav2Vec2Model
    if family == "wav2vec2":
        return tf.Wav2Vec2Config(**large, conv_bias=True), tf.Wav2Vec2Model
    if family == "wavlm":
        return tf.WavLMConfig(**large, conv_bias=False), tf.WavLMModel
    return tf.HubertConfig(**large, conv_bias=True), tf.HubertModel


def _build_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _save_hf(model_cls: Any, config: Any, directory: Path) -> None:
    """Random weights of ``model_cls(config)``, initialised on the GPU when there is one, saved as safetensors."""
    import torch

    torch.manual_seed(0)
    with torch.device(_build_device()):
        model = model_cls(config)
    model.eval().save_pretrained(directory)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_model(name: str, directory: Path, *, tiny: bool) -> tuple[str, dict[str, str]]:
    """Save a random-weight model ``name`` under ``directory``.

    Returns
    -------
    model : str
        What ``--model`` takes (a folder or a checkpoint file; recognised by its contents).
    options : dict
        Loader options (``codec``, ``stats`` for Metis), by ``Option.dest``.
    """
    import torch
    import transformers as tf

    spec = MODELS[name]
    directory.mkdir(parents=True, exist_ok=True)
    if spec["kind"] == "hf":
        config, cls = _hf_config(spec["family"], tiny)
        _save_hf(cls, config, directory)
        tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE_HZ, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=True).save_pretrained(directory)
        return str(directory), {}
    if spec["kind"] == "whisper":
        if tiny:
            sys.path.insert(0, str(REPO / "tests"))
            import tiny_hf

            return str(tiny_hf.build_tiny_whisper(directory)), {}
        config = tf.WhisperConfig(num_mel_bins=128, d_model=1280, encoder_layers=32, encoder_attention_heads=20,
                                  encoder_ffn_dim=5120, decoder_layers=1, decoder_attention_heads=20,
                                  decoder_ffn_dim=5120, max_source_positions=1500, vocab_size=51866)
        _save_hf(tf.WhisperModel, config, directory)  # a one-layer decoder: the backend keeps the encoder only
        tf.WhisperFeatureExtractor(feature_size=128, sampling_rate=RATE_HZ).save_pretrained(directory)
        return str(directory), {}
    if spec["kind"] == "metis":
        from safetensors.torch import save_file

        sys.path.insert(0, str(REPO / "tests"))
        import tiny_metis

        if tiny:
            paths = tiny_metis.build(directory, layers=17)
            return str(paths["model"]), {"codec": str(paths["codec"]), "stats": str(paths["stats"])}
        config = tf.Wav2Vec2BertConfig(num_hidden_layers=17)  # the w2v-bert-2.0 widths, the layers Metis uses
        _save_hf(tf.Wav2Vec2BertModel, config, directory / "w2v")
        tf.SeamlessM4TFeatureExtractor().save_pretrained(directory / "w2v")
        old = (tiny_metis.VOCOS_DIM, tiny_metis.VOCOS_INNER, tiny_metis.CODEBOOK)
        tiny_metis.VOCOS_DIM, tiny_metis.VOCOS_INNER, tiny_metis.CODEBOOK = 384, 2048, (8192, 8)
        try:
            state = tiny_metis.codec_state(hidden=config.hidden_size, layers=12)
        finally:
            tiny_metis.VOCOS_DIM, tiny_metis.VOCOS_INNER, tiny_metis.CODEBOOK = old
        state = {k: v * (0.1 if v.ndim > 1 else 1.0) for k, v in state.items()}  # moderate activations
        save_file(state, str(directory / "codec.safetensors"))
        torch.save({"mean": torch.zeros(config.hidden_size), "var": torch.ones(config.hidden_size)},
                   directory / "stats.pt")
        return str(directory / "w2v"), {"codec": str(directory / "codec.safetensors"),
                                        "stats": str(directory / "stats.pt")}
    # 3D-Speaker models: our modules, random weights, saved like the published checkpoints
    from audio_embeddings.backends.campplus import CAMPPlus
    from audio_embeddings.backends.eres2netv2 import ERes2NetV2
    from audio_embeddings.backends.speaker3d import PRESETS

    family = spec["family"]
    if tiny:
        kwargs = (dict(feat_dim=80, embedding_size=24, m_channels=4, base_width=26, scale=2, expansion=2,
                       num_blocks=(1, 1, 2, 1)) if family == "eres2netv2" else
                  dict(feat_dim=80, embedding_size=24, growth_rate=8, bn_size=2, init_channels=16, head_channels=4,
                       head_blocks=(2, 1), block_layers=(2, 3, 2)))
    else:
        kwargs = PRESETS[family].kwargs
    torch.manual_seed(0)
    model = (ERes2NetV2 if family == "eres2netv2" else CAMPPlus)(**kwargs)
    path = directory / f"{family}.ckpt"
    torch.save(model.state_dict(), path)
    return str(path), {}


def cli_options(options: dict[str, str]) -> list[str]:
    """Loader options as command-line flags (``codec`` -> ``--codec FILE``)."""
    return [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def load(model: str, options: dict[str, str], *, device: str, dtype: str) -> Any:
    """The backend of a built model, through the registry (the real loading code)."""
    from audio_embeddings.registry import load_backend

    return load_backend(model, device=device, dtype=dtype, **options)


def modules_of(backend: Any) -> list[Any]:
    import torch

    return [v for v in vars(backend).values() if isinstance(v, torch.nn.Module)]


def n_params(backend: Any) -> int:
    return sum(p.numel() for m in modules_of(backend) for p in m.parameters())


def _embed(backend: Any, x: np.ndarray) -> Any:
    if backend.accepts_lengths:
        return backend.embed_batch(x, lengths=np.full(x.shape[0], x.shape[1], dtype=np.int64))
    return backend.embed_batch(x)


def speechlike(seconds: float, *, seed: int = 0) -> np.ndarray:
    """Speech-like float32 [N] at 16 kHz: modulated noise plus a voiced tone with harmonics."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    f0 = 100.0 + 15.0 * (seed % 9)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t + seed))
    return (0.1 * envelope * (0.5 * voiced + rng.standard_normal(t.size))).astype(np.float32)


def _flop_mode():
    """A dispatch mode counting FLOPs with ``torch.utils.flop_counter``'s formulas (matmuls, convolutions).

    ``FlopCounterMode`` itself fails on weight-normed convolutions under ``inference_mode``
    (wav2vec2's positional convolution), so this mode uses its formula table directly,
    decomposes composite ops as it does, runs ops whose decomposition fails as they are
    (weight norm: no matmul FLOPs), and counts attention as its two matmuls,
    ``2 B H Lq Lk (Dk + Dv)``, whichever fused kernel runs it.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    formulas = FlopCounterMode(display=False).flop_registry

    class FlopMode(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if "scaled_dot_product" in str(func):
                q, k, v = args[:3]
                self.flops += 2 * q.shape[:-2].numel() * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
                return func(*args, **kwargs)
            formula = formulas.get(func._overloadpacket)
            if formula is not None:
                out = func(*args, **kwargs)
                self.flops += int(formula(*args, **kwargs, out_val=out))
                return out
            if func is not torch.ops.prim.device.default:
                try:
                    with self:
                        out = func.decompose(*args, **kwargs)
                    if out is not NotImplemented:
                        return out
                except Exception:  # noqa: BLE001 - not decomposable here: run it as it is
                    pass
            return func(*args, **kwargs)

    return FlopMode()


def count_flops(backend: Any, *, seconds: float = 5.0) -> float:
    """FLOPs of one ``seconds``-long input through ``embed_batch`` (matmuls, convolutions, attention)."""
    x = backend.prepare(speechlike(seconds)).samples[None]
    mode = _flop_mode()
    with mode:
        _embed(backend, x)
    return float(mode.flops)


def row_metrics(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Difference of ``other`` from ``ref`` (same shape, rows on the last axis)."""
    a = np.asarray(ref, np.float64).reshape(-1, ref.shape[-1])
    b = np.asarray(other, np.float64).reshape(-1, ref.shape[-1])
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return {"max_abs": float(np.abs(a - b).max()), "rel_rms": float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
            "cosine_median": float(np.median(cos)), "cosine_min": float(cos.min()),
            "ref_rms": float(np.sqrt((a ** 2).mean()))}


def dtype_difference(model: str, options: dict[str, str], *, device: str, seconds: float = 5.0) -> dict[str, float]:
    """bfloat16 against float32 on one ``seconds`` input (and the time of each forward)."""
    out, times = {}, {}
    x = speechlike(seconds, seed=3)
    for dtype in ("float32", "bfloat16"):
        backend = load(model, options, device=device, dtype=dtype)
        xp = backend.prepare(x).samples[None]
        _embed(backend, xp)  # warm-up
        t0 = time.perf_counter()
        out[dtype] = np.asarray(_embed(backend, xp).embeddings)
        times[dtype] = time.perf_counter() - t0
        del backend
    return {**row_metrics(out["float32"], out["bfloat16"]), "fp32_s": times["float32"], "bf16_s": times["bfloat16"]}


# ---------------------------------------------------------------- corpus, engine, seed loop


def make_corpus(root: Path, n_files: int, seconds: float) -> list[Path]:
    """``n_files`` 16 kHz mono 16-bit WAVs of speech-like audio."""
    import soundfile as sf

    paths = []
    for i in range(n_files):
        path = root / f"part_{i // 100:03d}" / f"{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, speechlike(seconds, seed=i), RATE_HZ, subtype="PCM_16")
        paths.append(path)
    return paths


class UtilSampler:
    """GPU utilisation from ``nvidia-smi`` every ``every_s`` seconds in a thread (nothing without one)."""

    def __init__(self, *, every_s: float = 0.2):
        from audio_embeddings.corpus.progress import nvidia_smi_status

        self._status = nvidia_smi_status
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if shutil.which("nvidia-smi") else None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            status = self._status()
            if status:
                self.samples.append(status["gpu_util_pct"])

    def __enter__(self) -> "UtilSampler":
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def engine_run(backend: Any, corpus: Path, out: Path, *, workers: int, batch_size: int, max_batch_s: float) -> dict:
    """The corpus engine over ``corpus`` (per-file ``.npy`` in ``out``); figures of the run."""
    import torch

    from audio_embeddings.corpus.discover import discover
    from audio_embeddings.corpus.engine import RunOptions, run_corpus
    from audio_embeddings.corpus.report import RunReport
    from audio_embeddings.corpus.shard import Shard
    from audio_embeddings.corpus.writers import TreeWriter

    shutil.rmtree(out, ignore_errors=True)
    items = discover([str(corpus)]).items
    writer = TreeWriter(out, formats=("npy",), run_info={"model_name": backend.name, "backend_info": {},
                                                         "backend_fields": {}, "started_at": "", "argv": []})
    report = RunReport(out, shard=Shard(0, 1), context={})
    cuda = torch.cuda.is_available() and str(backend.device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with UtilSampler() as util:
        run_corpus(backend, items, writer, report, scratch_dir=out / ".scratch",
                   options=RunOptions(batch_size=batch_size, workers=workers, max_batch_seconds=max_batch_s,
                                      resume=False, chunk_s=30.0, context_s=5.0))
    timing = report.extra["engine_timing"]
    if report.failures:
        raise RuntimeError(f"{backend.name}: {report.failures[0]['reason']}")
    return {"files": report.files_done, "audio_s": report.audio_seconds, "wall_s": timing["wall_s"],
            "model_s": timing["main_thread_ms_per_file"]["model"] * timing["files"] / 1000.0,
            "timing": timing, "batches": report.extra["batches"], "util_pct": util.mean,
            "peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None}


def seed_loop(backend: Any, paths: list[Path]) -> float:
    """Files/s of the seeds' loop: decode a file, one forward for it, copy back; nothing overlaps."""
    from audio_embeddings import audio

    t0 = time.perf_counter()
    for path in paths:
        x = backend.prepare(audio.load(path, sample_rate_hz=backend.sample_rate_hz).samples).samples
        _embed(backend, x[None])
    return len(paths) / (time.perf_counter() - t0)


def read_rows(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): np.load(p) for p in sorted(out.rglob("*.npy")) if not p.name.startswith(".")}


def run_model(name: str, args: argparse.Namespace, tmp: Path, corpus: Path, paths: list[Path]) -> dict:
    import torch

    t0 = time.perf_counter()
    model, options = build_model(name, tmp / f"model_{name}", tiny=args.dry_run)
    built_s = time.perf_counter() - t0
    result: dict[str, Any] = {"model": name, "label": MODELS[name]["label"], "build_s": round(built_s, 2)}
    rows = {}
    for dtype in args.dtypes:
        t0 = time.perf_counter()
        backend = load(model, options, device=args.device, dtype=dtype)
        result["load_s_" + dtype] = round(time.perf_counter() - t0, 2)
        if dtype == args.dtypes[0]:
            result["params_m"] = round(n_params(backend) / 1e6, 2)
            result["gflop_per_file"] = count_flops(backend, seconds=args.seconds) / 1e9
            result["attention"] = getattr(getattr(getattr(backend, "model", None), "config", None),
                                          "_attn_implementation", None)
        _embed(backend, np.stack([backend.prepare(speechlike(args.seconds, seed=i)).samples
                                  for i in range(min(args.batch_size, 4))]))  # warm-up: kernels, allocator
        out = tmp / f"out_{name}_{dtype}"
        run = engine_run(backend, corpus, out, workers=args.workers, batch_size=args.batch_size,
                         max_batch_s=args.batch_size * args.seconds)
        flops = result["gflop_per_file"] * 1e9 * run["files"]
        run.update({"x_realtime": run["audio_s"] / run["wall_s"], "files_per_s": run["files"] / run["wall_s"],
                    "tflops_model": flops / max(run["model_s"], 1e-9) / 1e12, "tflops_wall": flops / run["wall_s"] / 1e12})
        run.pop("timing")
        result[dtype] = run
        rows[dtype] = read_rows(out)
        if dtype == args.dtypes[-1]:
            result["seed_files_per_s"] = seed_loop(backend, paths[:args.seed_files])
            result["seed_dtype"] = dtype
        shutil.rmtree(out, ignore_errors=True)
        del backend
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if "float32" in rows and "bfloat16" in rows:
        keys = sorted(rows["float32"])
        ref = np.concatenate([rows["float32"][k].reshape(-1, rows["float32"][k].shape[-1]) for k in keys])
        low = np.concatenate([rows["bfloat16"][k].reshape(-1, rows["bfloat16"][k].shape[-1]) for k in keys])
        result["bf16_vs_fp32"] = row_metrics(ref, low)
    last = result[args.dtypes[-1]]
    result["ratio_vs_seed"] = last["files_per_s"] / result["seed_files_per_s"]
    shutil.rmtree(tmp / f"model_{name}", ignore_errors=True)
    return result


def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def print_result(r: dict, dtypes: tuple[str, ...]) -> None:
    parts = [f"{r['label']:32s} {r['params_m']:7.1f} M {r['gflop_per_file']:8.1f} GFLOP/file"]
    for dtype in dtypes:
        d = r[dtype]
        parts.append(f"{SHORT.get(dtype, dtype)}: {d['x_realtime']:7.0f}x RT {d['files_per_s']:7.1f} files/s "
                     f"{d['tflops_model']:6.1f}/{d['tflops_wall']:5.1f} TFLOP/s util {_fmt(d['util_pct'], '3.0f')}% "
                     f"peak {_fmt(d['peak_mib'] and d['peak_mib'] / 1024, '5.1f')} GiB")
    if "bf16_vs_fp32" in r:
        m = r["bf16_vs_fp32"]
        parts.append(f"bf16-fp32: rel RMS {m['rel_rms']:.2e}, cos med {m['cosine_median']:.5f} min {m['cosine_min']:.4f}")
    parts.append(f"seed loop ({SHORT.get(r['seed_dtype'], r['seed_dtype'])}) {r['seed_files_per_s']:.1f} files/s -> {r['ratio_vs_seed']:.1f}x")
    print(" | ".join(parts), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=lambda s: s.split(","), default=None,
                   help=f"comma-separated from {','.join(GPU_MODELS)} (default: all; --dry-run: "
                        f"{','.join(DRY_RUN_MODELS)})")
    p.add_argument("--files", type=int, default=256, help="corpus files per model (default 256)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each file (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="inputs per model call (default 64)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 2, at most 12)")
    p.add_argument("--seed-files", type=int, default=32, help="files through the seed-style loop (default 32)")
    p.add_argument("--dtypes", type=lambda s: tuple(s.split(",")), default=("float32", "bfloat16"))
    p.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny models, a few short files (CI)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device = args.device or "cpu"
        args.files, args.seconds, args.batch_size, args.seed_files = min(args.files, 3), 1.0, 4, 1
        args.workers = 0 if args.workers is None else args.workers
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args.models = args.models or list(DRY_RUN_MODELS if args.dry_run else GPU_MODELS)
    missing = check_packages()
    if missing:
        print(f"missing packages: {', '.join(missing)}. Without network: on a networked machine run "
              f"`pip download --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 -d wheels "
              f"{' '.join(missing)}`, carry wheels/ here, then `pip install --no-index --find-links wheels "
              f"{' '.join(missing)}`", flush=True)
        if any(m in missing for m in ("soundfile", "soxr", "transformers")):
            return 2
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.device = device
    if args.workers is None:
        args.workers = max(1, min(12, (os.cpu_count() or 2) - 2))
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    print(f"gpu suite: device {device} ({gpu}), torch {torch.__version__}, {os.cpu_count()} cores, "
          f"{args.files} files x {args.seconds:g} s (16 kHz mono WAV) per model, batch {args.batch_size}, "
          f"workers {args.workers}, dtypes {','.join(args.dtypes)}{' [dry run: tiny models]' if args.dry_run else ''}",
          flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_suite_"))
    results = []
    t_start = time.perf_counter()
    try:
        paths = make_corpus(tmp / "corpus", args.files, args.seconds)
        for name in args.models:
            if name == "whisper" and importlib.util.find_spec("audio_embeddings.backends.whisper") is None:
                print("whisper: no backends/whisper.py here; skipped")
                continue
            t0 = time.perf_counter()
            result = run_model(name, args, tmp, tmp / "corpus", paths)
            result["total_s"] = round(time.perf_counter() - t0, 1)
            results.append(result)
            print_result(result, args.dtypes)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"done in {time.perf_counter() - t_start:.0f} s. TFLOP/s: counted FLOPs over the model time / over the "
          "wall time; util: nvidia-smi mean over the run; seed loop: decode + one forward per file, serial.")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": gpu, "args": {k: v for k, v in vars(args).items()},
                                               "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
