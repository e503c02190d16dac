"""A tiny Metis stack with the real classes and key names: w2v-bert (18 layers, 32-d), codec, statistics.

Random weights: for trying the toolkit and for tests, never for results.

    python tests/tiny_metis.py OUT_DIR      # for the Octave test: OUT_DIR/{w2v-bert,codec.safetensors,stats.pt}

Also :func:`reference_latents`, a plain re-computation of the published steps (transformers'
feature extractor, the full model's ``hidden_states[17]``, the statistics, and the codec
written out with ``torch.nn.functional`` from the state dict), which the tests compare our
backend with.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN = 32
VOCOS_DIM = 16
VOCOS_INNER = 24
CODEC_LAYERS = 12
CODEBOOK = (64, 8)


def codec_state(*, seed: int = 0, hidden: int = HIDDEN, layers: int = CODEC_LAYERS) -> dict:
    """Random tensors under Amphion's RepCodec key names (encoder, quantizer and some decoder keys)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    state = {"encoder.0.embed.weight": rnd(VOCOS_DIM, hidden, 7), "encoder.0.embed.bias": rnd(VOCOS_DIM),
             "encoder.0.norm.weight": 1 + rnd(VOCOS_DIM), "encoder.0.norm.bias": rnd(VOCOS_DIM)}
    for i in range(layers):
        p = f"encoder.0.convnext.{i}."
        state.update({p + "dwconv.weight": rnd(VOCOS_DIM, 1, 7), p + "dwconv.bias": rnd(VOCOS_DIM),
                      p + "norm.weight": 1 + rnd(VOCOS_DIM), p + "norm.bias": rnd(VOCOS_DIM),
                      p + "pwconv1.weight": rnd(VOCOS_INNER, VOCOS_DIM), p + "pwconv1.bias": rnd(VOCOS_INNER),
                      p + "pwconv2.weight": rnd(VOCOS_DIM, VOCOS_INNER), p + "pwconv2.bias": rnd(VOCOS_DIM),
                      p + "gamma": rnd(VOCOS_DIM, scale=0.5)})
    state.update({"encoder.0.final_layer_norm.weight": 1 + rnd(VOCOS_DIM),
                  "encoder.0.final_layer_norm.bias": rnd(VOCOS_DIM),
                  "encoder.1.weight": rnd(hidden, VOCOS_DIM), "encoder.1.bias": rnd(hidden),
                  "quantizer.quantizers.0.in_project.weight_g": 1 + rnd(CODEBOOK[1], 1, 1).abs(),
                  "quantizer.quantizers.0.in_project.weight_v": rnd(CODEBOOK[1], hidden, 1),
                  "quantizer.quantizers.0.in_project.bias": rnd(CODEBOOK[1]),
                  "quantizer.quantizers.0.codebook.weight": rnd(*CODEBOOK),
                  "quantizer.quantizers.0.out_project.weight_g": rnd(hidden, 1, 1),
                  "quantizer.quantizers.0.out_project.weight_v": rnd(hidden, CODEBOOK[1], 1),
                  "quantizer.quantizers.0.out_project.bias": rnd(hidden),
                  "decoder.0.embed.weight": rnd(VOCOS_DIM, hidden, 7), "decoder.1.weight": rnd(hidden, VOCOS_DIM)})
    return {k: v.contiguous() for k, v in state.items()}


def build(directory: str | Path, *, seed: int = 0, layers: int = 18) -> dict[str, Path]:
    """Save ``w2v-bert/`` (config, weights, preprocessor), ``codec.safetensors`` and ``stats.pt``."""
    import torch
    from safetensors.torch import save_file
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    directory = Path(directory)
    torch.manual_seed(seed)
    config = Wav2Vec2BertConfig(hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=2,
                                intermediate_size=48, output_hidden_size=HIDDEN, conv_depthwise_kernel_size=5,
                                left_max_position_embeddings=8, right_max_position_embeddings=4)
    model = Wav2Vec2BertModel(config).eval()
    w2v = directory / "w2v-bert"
    model.save_pretrained(w2v)
    SeamlessM4TFeatureExtractor().save_pretrained(w2v)
    save_file(codec_state(seed=seed), str(directory / "codec.safetensors"))
    g = torch.Generator().manual_seed(seed + 1)
    torch.save({"mean": torch.randn(HIDDEN, generator=g) * 0.1, "var": torch.rand(HIDDEN, generator=g) + 0.5},
               directory / "stats.pt")
    return {"model": w2v, "codec": directory / "codec.safetensors", "stats": directory / "stats.pt"}


def reference_latents(paths: dict[str, Path], audio, *, layer: int = 17):
    """The published steps, written out plainly: float32 [T, 8] latents of one 16 kHz recording."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    fe = SeamlessM4TFeatureExtractor.from_pretrained(paths["model"])
    inputs = fe(np.asarray(audio, dtype=np.float32), sampling_rate=16000, return_tensors="pt")
    model = Wav2Vec2BertModel.from_pretrained(paths["model"]).eval()
    stats = torch.load(paths["stats"], weights_only=True)
    s = load_file(str(paths["codec"]))
    with torch.no_grad():
        out = model(input_features=inputs["input_features"], attention_mask=inputs["attention_mask"],
                    output_hidden_states=True)
        x = (out.hidden_states[layer] - stats["mean"]) / torch.sqrt(stats["var"])  # [1, T, C]
        x = F.conv1d(x.transpose(1, 2), s["encoder.0.embed.weight"], s["encoder.0.embed.bias"], padding=3)
        x = F.layer_norm(x.transpose(1, 2), (VOCOS_DIM,), s["encoder.0.norm.weight"], s["encoder.0.norm.bias"],
                         eps=1e-6).transpose(1, 2)
        i = 0
        while f"encoder.0.convnext.{i}.gamma" in s:
            p = f"encoder.0.convnext.{i}."
            y = F.conv1d(x, s[p + "dwconv.weight"], s[p + "dwconv.bias"], padding=3, groups=VOCOS_DIM)
            y = F.layer_norm(y.transpose(1, 2), (VOCOS_DIM,), s[p + "norm.weight"], s[p + "norm.bias"], eps=1e-6)
            y = F.linear(F.gelu(F.linear(y, s[p + "pwconv1.weight"], s[p + "pwconv1.bias"])),
                         s[p + "pwconv2.weight"], s[p + "pwconv2.bias"])
            x = x + (s[p + "gamma"] * y).transpose(1, 2)
            i += 1
        x = F.layer_norm(x.transpose(1, 2), (VOCOS_DIM,), s["encoder.0.final_layer_norm.weight"],
                         s["encoder.0.final_layer_norm.bias"], eps=1e-6)
        x = F.linear(x, s["encoder.1.weight"], s["encoder.1.bias"])
        v, g = s["quantizer.quantizers.0.in_project.weight_v"], s["quantizer.quantizers.0.in_project.weight_g"]
        w = g * v / torch.sqrt((v ** 2).sum(dim=(1, 2), keepdim=True))
        z = F.conv1d(x.transpose(1, 2), w, s["quantizer.quantizers.0.in_project.bias"]).transpose(1, 2)
    return z[0].numpy()


def main(argv: list[str]) -> int:
    """``python tests/tiny_metis.py OUT_DIR``: build and print the three paths."""
    if len(argv) != 1:
        print(__doc__)
        return 2
    for name, path in build(argv[0]).items():
        print(f"{name}={path}")
    return 0


#: Where :func:`build_stand_in` puts the codec and the statistics inside the w2v-bert folder
#: (the codec at its path in amphion/MaskGCT, the statistics under Amphion's file name).
STAND_IN_CODEC = "semantic_codec/model.safetensors"
STAND_IN_STATS = "wav2vec2bert_stats.pt"


def build_stand_in(directory: str | Path, *, seed: int = 0, layers: int = 18) -> dict[str, Path]:
    """One self-sufficient folder: w2v-bert at its top, ``semantic_codec/model.safetensors``, the statistics.

    The layout a ``--model`` folder of Metis needs to run with no other file: :func:`build`'s
    three parts, with the w2v-bert checkpoint (``config.json``, weights, preprocessor) at the top
    so the folder is recognised as Metis. The caller records where the codec and statistics are
    (``audio_embeddings_options.json``, :func:`audio_embeddings.hub.local_options`).

    Returns
    -------
    dict
        ``model`` (the folder), ``codec`` and ``stats`` (paths inside it).
    """
    import shutil

    directory = Path(directory)
    parts = build(directory / ".parts", seed=seed, layers=layers)
    for item in parts["model"].iterdir():
        shutil.move(str(item), str(directory / item.name))
    codec = directory / STAND_IN_CODEC
    codec.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(parts["codec"]), str(codec))
    stats = directory / STAND_IN_STATS
    shutil.move(str(parts["stats"]), str(stats))
    shutil.rmtree(directory / ".parts")
    return {"model": directory, "codec": codec, "stats": stats}
