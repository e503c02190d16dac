"""Tiny, randomly initialised Whisper, CLAP and AST models with the real classes, saved like hub checkpoints.

Random weights: for trying the toolkit and for tests, never for results.

Whisper keeps the published input geometry (80 mel bins, ``max_source_positions`` 1500: 30 s of
log-mel, 1500 rows at 20 ms); CLAP keeps HTSAT's input (64 mel bins, 10 s at 48 kHz) with a
4-stage tower of one block each and a tiny text tower; AST keeps its input (128 mel bins x 1024
frames at 16 kHz, 16x16 patches every 10) with a 2-layer, 32-d transformer and a 5-class head.

    python tests/tiny_hf.py whisper OUT_DIR     # for the Octave tests
    python tests/tiny_hf.py clap OUT_DIR
    python tests/tiny_hf.py ast OUT_DIR
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("whisper", "whisper-base-model", "clap", "clap-fused", "ast", "ast-bare")


def build_tiny_whisper(directory: str | Path, *, seed: int = 0, with_head: bool = True,
                       with_feature_extractor: bool = True) -> Path:
    """Save a tiny Whisper checkpoint (config, safetensors weights, preprocessor config) in ``directory``.

    Parameters
    ----------
    directory : str or Path
    seed : int
        Seed of the random weights (a local generator state; the global one is restored).
    with_head : bool
        Save a ``WhisperForConditionalGeneration`` (as the openai/whisper-* hub checkpoints are);
        False saves a bare ``WhisperModel``.
    with_feature_extractor : bool
        Also save ``WhisperFeatureExtractor`` defaults (``preprocessor_config.json``).
    """
    import torch
    import transformers as tf

    config = tf.WhisperConfig(
        vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=48,
        max_source_positions=1500, max_target_positions=32, pad_token_id=1, bos_token_id=2, eos_token_id=2,
        decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (tf.WhisperForConditionalGeneration if with_head else tf.WhisperModel)(config)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    if with_feature_extractor:
        tf.WhisperFeatureExtractor(feature_size=80, sampling_rate=16000).save_pretrained(out)
    return out


def tiny_clap_config(*, fusion: bool = False):
    """A ``ClapConfig`` small enough to run on a CPU in well under a second per 10 s window."""
    import transformers as tf

    audio = tf.ClapAudioConfig(depths=[1, 1, 1, 1], hidden_size=64, patch_embeds_hidden_size=8,
                               enable_fusion=fusion)
    text = tf.ClapTextConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=40)
    return tf.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=24)


def build_tiny_clap(directory: str | Path, *, seed: int = 0, fusion: bool = False,
                    with_feature_extractor: bool = True) -> Path:
    """Save a tiny ``ClapModel`` (config, safetensors weights, ``ClapFeatureExtractor``) in ``directory``.

    Parameters
    ----------
    directory : str or Path
    seed : int
        Seed of the random weights (the global generator state is restored).
    fusion : bool
        A fused model (``enable_fusion``, extractor ``truncation="fusion"``) instead of an unfused
        one (``"rand_trunc"``).
    with_feature_extractor : bool
        Also save the feature extractor (``preprocessor_config.json``).
    """
    import torch
    import transformers as tf

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.ClapModel(tiny_clap_config(fusion=fusion))
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    if with_feature_extractor:
        tf.ClapFeatureExtractor(truncation="fusion" if fusion else "rand_trunc").save_pretrained(out)
    return out


#: Class names of the tiny AST head (the published AudioSet head has 527).
AST_LABELS = ("Speech", "Music", "Bird", "Dog", "Silence")


def tiny_ast_config(**overrides):
    """An ``ASTConfig`` with the published input geometry and a tiny transformer."""
    import transformers as tf

    settings = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                    initializer_range=0.2,  # larger random weights than 0.02: rows that differ between inputs
                    num_mel_bins=128, max_length=1024, patch_size=16, frequency_stride=10, time_stride=10,
                    id2label=dict(enumerate(AST_LABELS)),
                    label2id={name: i for i, name in enumerate(AST_LABELS)})
    settings.update(overrides)
    return tf.ASTConfig(**settings)


def build_tiny_ast(directory: str | Path, *, seed: int = 0, with_head: bool = True,
                   with_feature_extractor: bool = True) -> Path:
    """Save a tiny AST checkpoint (config, safetensors weights, ``ASTFeatureExtractor``) in ``directory``.

    Parameters
    ----------
    directory : str or Path
    seed : int
        Seed of the random weights (the global generator state is restored). The [CLS] and
        distillation tokens and the position embeddings, which transformers initialises to zeros,
        are random too, so every part of the pooled output is exercised.
    with_head : bool
        Save an ``ASTForAudioClassification`` (as the MIT/ast-* hub checkpoints are); False saves
        a bare ``ASTModel``.
    with_feature_extractor : bool
        Also save ``ASTFeatureExtractor`` defaults (``preprocessor_config.json``).
    """
    import torch
    import transformers as tf

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (tf.ASTForAudioClassification if with_head else tf.ASTModel)(tiny_ast_config())
        embeddings = (model.audio_spectrogram_transformer if with_head else model).embeddings
        with torch.no_grad():
            for tensor in (embeddings.cls_token, embeddings.distillation_token, embeddings.position_embeddings):
                tensor.normal_(0.0, 0.02)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    if with_feature_extractor:
        tf.ASTFeatureExtractor().save_pretrained(out)
    return out


def build(kind: str, directory: str | Path) -> Path:
    """Build one of :data:`KINDS` in ``directory``."""
    if kind == "whisper":
        return build_tiny_whisper(directory)
    if kind == "whisper-base-model":
        return build_tiny_whisper(directory, with_head=False)
    if kind == "clap":
        return build_tiny_clap(directory)
    if kind == "clap-fused":
        return build_tiny_clap(directory, fusion=True)
    if kind == "ast":
        return build_tiny_ast(directory)
    if kind == "ast-bare":
        return build_tiny_ast(directory, with_head=False, with_feature_extractor=False)
    raise ValueError(f"unknown tiny model kind {kind!r}; one of {KINDS}")


def main(argv: list[str]) -> int:
    """``python tests/tiny_hf.py KIND OUT_DIR``: build and print the folder."""
    build(argv[0], argv[1])
    print(argv[1])
    return 0
