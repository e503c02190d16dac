"""B2 backend on tiny saved Wav2Vec2 / HuBERT / WavLM / Data2VecAudio models (no network)."""

import numpy as np
import pytest
import torch
import transformers

from audio_embeddings import audio
from audio_embeddings.backends.hf_wav2vec2 import parse_layers
from audio_embeddings.framing import conv_frame_count
from audio_embeddings.pipeline import embed_audio
from audio_embeddings.registry import load_backend
from helpers import noise

KINDS = ["wav2vec2", "wav2vec2-stable", "hubert", "wavlm", "data2vec-audio"]


def direct_forward(model_dir, x):
    """What a user gets from transformers directly: feature extractor + model, all hidden states."""
    fe = transformers.AutoFeatureExtractor.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    inputs = fe(x, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model(inputs.input_values, output_hidden_states=True)
    return out.last_hidden_state[0].numpy(), np.stack([h[0].numpy() for h in out.hidden_states])


def as_audio(x):
    return audio.prepare(x, 16000, target_rate_hz=16000)


def modulated_noise(seconds, seed=0):
    x = noise(seconds, 16000, seed=seed)
    return x * (1 + 0.5 * np.sin(np.arange(x.size) / 16000 * 2)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_unchunked_equals_direct_transformers_forward(kind, tiny_model):
    x = noise(3.0, 16000)
    last_ref, hidden_ref = direct_forward(tiny_model(kind), x)
    last = embed_audio(load_backend(str(tiny_model(kind)), device="cpu"), as_audio(x))
    np.testing.assert_allclose(last.embeddings, last_ref, rtol=0, atol=1e-6)
    every = embed_audio(load_backend(str(tiny_model(kind)), device="cpu", layers="all"), as_audio(x))
    assert every.embeddings.shape == hidden_ref.shape == (4, 149, 32)
    np.testing.assert_allclose(every.embeddings, hidden_ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_chunked_output_is_on_the_whole_file_grid_and_seed_concatenation_drifts(kind, tiny_model):
    x = modulated_noise(30.0)
    backend = load_backend(str(tiny_model(kind)), device="cpu")
    whole = embed_audio(backend, as_audio(x), chunk_s=60.0)
    chunked = embed_audio(backend, as_audio(x), chunk_s=5.0, context_s=1.0)
    t = (x.size - 400) // 320 + 1
    assert chunked.chunking["n_chunks"] > 1
    assert chunked.embeddings.shape == whole.embeddings.shape == (t, 32)
    np.testing.assert_array_equal(chunked.time_axis_s, np.arange(t) * 0.020)

    # The B2 seed: back-to-back 5 s chunks, each through the model, outputs concatenated.
    seed = np.concatenate([backend.embed_batch(backend.prepare(x[s:s + 80000]).samples[None]).embeddings[0]
                           for s in range(0, x.size, 80000)])
    assert seed.shape[0] == t - 5  # one frame lost at each of the 5 boundaries

    def mean_corr(a, b):
        return float(np.mean([np.corrcoef(p, q)[0, 1] for p, q in zip(a, b)]))

    # Ours tracks the whole-file run frame by frame; the seed's rows slide off the audio they claim.
    assert mean_corr(chunked.embeddings, whole.embeddings) > 0.99
    assert mean_corr(seed[-100:], whole.embeddings[t - 5 - 100:t - 5]) < 0.8


def test_more_context_means_closer_to_whole_file(tiny_model):
    x = modulated_noise(20.0)
    backend = load_backend(str(tiny_model("wav2vec2-stable")), device="cpu")
    whole = embed_audio(backend, as_audio(x), chunk_s=60.0).embeddings
    errors = [np.abs(embed_audio(backend, as_audio(x), chunk_s=6.0, context_s=c).embeddings - whole).mean()
              for c in (0.0, 0.5, 2.0)]
    assert errors[0] > errors[1] > errors[2]


def test_layers_select_hidden_states(tiny_model):
    x = noise(2.0, 16000)
    _, hidden_ref = direct_forward(tiny_model("wav2vec2"), x)
    picked = embed_audio(load_backend(str(tiny_model("wav2vec2")), device="cpu", layers="0,2"), as_audio(x))
    assert picked.embeddings.shape == (2, 99, 32)
    np.testing.assert_allclose(picked.embeddings, hidden_ref[[0, 2]], atol=1e-6)
    one = embed_audio(load_backend(str(tiny_model("wav2vec2")), device="cpu", layers="1"), as_audio(x))
    np.testing.assert_allclose(one.embeddings, hidden_ref[1], atol=1e-6)
    last = embed_audio(load_backend(str(tiny_model("wav2vec2")), device="cpu", layers="last"), as_audio(x))
    np.testing.assert_allclose(last.embeddings, hidden_ref[-1], atol=1e-6)


def test_multi_layer_chunked_keeps_layer_axis(tiny_model):
    x = modulated_noise(12.0)
    res = embed_audio(load_backend(str(tiny_model("wav2vec2")), device="cpu", layers="all"), as_audio(x),
                      chunk_s=4.0, context_s=0.5)
    assert res.embeddings.shape == (4, conv_frame_count(x.size, receptive_field_samples=400, hop_samples=320), 32)


@pytest.mark.parametrize("spec,expected", [("last", None), ("all", [0, 1, 2, 3]), ("0,3", [0, 3]), (" 2 ", [2])])
def test_parse_layers(spec, expected):
    assert parse_layers(spec, 3) == expected


@pytest.mark.parametrize("spec", ["4", "-1", "a,b", ","])
def test_parse_layers_rejects(spec):
    with pytest.raises(ValueError, match="layers"):
        parse_layers(spec, 3)


def test_reduced_precision_runs_and_stays_close(tiny_model):
    x = noise(2.0, 16000)
    ref = embed_audio(load_backend(str(tiny_model("wav2vec2")), device="cpu"), as_audio(x)).embeddings
    low = embed_audio(load_backend(str(tiny_model("wav2vec2")), device="cpu", dtype="bfloat16"), as_audio(x))
    assert low.embeddings.dtype == np.float32
    assert np.corrcoef(low.embeddings.ravel(), ref.ravel())[0, 1] > 0.98


def test_normalisation_uses_whole_file_statistics(tiny_model):
    backend = load_backend(str(tiny_model("wav2vec2")), device="cpu")
    x = 3.0 * noise(1.0, 16000) + 0.2
    y = backend.prepare(x).samples
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1.0) < 1e-3


@pytest.mark.parametrize("kind", ["wav2vec2", "wav2vec2-stable"])
def test_batched_chunks_equal_chunks_run_one_by_one(kind, tiny_model):
    x = modulated_noise(14.0)
    backend = load_backend(str(tiny_model(kind)), device="cpu")
    batched = embed_audio(backend, as_audio(x), chunk_s=4.0, context_s=0.5, batch_size=8)
    single = embed_audio(backend, as_audio(x), chunk_s=4.0, context_s=0.5, batch_size=1)
    assert batched.chunking["n_chunks"] >= 4
    np.testing.assert_allclose(batched.embeddings, single.embeddings, rtol=0, atol=1e-5)
