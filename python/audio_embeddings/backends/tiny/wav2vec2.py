"""Tiny, randomly initialised wav2vec2-family models with the real classes, saved like hub checkpoints.

The conv front end keeps the published geometry (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2:
400-sample receptive field, 320-sample hop) so frame counts and time axes are the real ones.
Random weights: for trying the toolkit and for tests, never for results.

    python tests/tiny_models.py wav2vec2 OUT_DIR     # for the Octave tests
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("wav2vec2", "wav2vec2-stable", "hubert", "wavlm", "data2vec-audio")
_COMMON = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
               conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def build_tiny_model(kind: str, directory: str | Path, *, seed: int = 0, do_normalize: bool = True) -> Path:
    """Save a tiny ``kind`` model (config, safetensors weights, preprocessor config) in ``directory``."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    if kind == "wav2vec2":
        model = tf.Wav2Vec2Model(tf.Wav2Vec2Config(**_COMMON, feat_extract_norm="group"))
    elif kind == "wav2vec2-stable":  # the large/XLSR layout: layer-norm front end, pre-LN encoder
        model = tf.Wav2Vec2Model(tf.Wav2Vec2Config(**_COMMON, feat_extract_norm="layer", do_stable_layer_norm=True))
    elif kind == "hubert":
        model = tf.HubertModel(tf.HubertConfig(**_COMMON))
    elif kind == "wavlm":
        model = tf.WavLMModel(tf.WavLMConfig(**_COMMON, num_buckets=32, max_bucket_distance=100))
    elif kind == "data2vec-audio":
        cfg = {**_COMMON, "num_conv_pos_embeddings": 5}
        model = tf.Data2VecAudioModel(tf.Data2VecAudioConfig(**cfg, conv_pos_kernel_size=5))
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}; one of {KINDS}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                do_normalize=do_normalize, return_attention_mask=False).save_pretrained(out)
    return out


def main(argv: list[str]) -> int:
    """``python tests/tiny_models.py KIND OUT_DIR``: build and print the folder."""
    build_tiny_model(argv[0], argv[1])
    print(argv[1])
    return 0
