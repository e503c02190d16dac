"""CLAP backend on tiny saved ClapModel checkpoints (real classes, 10 s at 48 kHz; no network)."""

import json

import numpy as np
import pytest
import torch
import transformers

import tiny_hf
from audio_embeddings import audio, registry
from audio_embeddings.backends.clap import ClapBackend, audio_features
from audio_embeddings.pipeline import embed_audio
from helpers import noise

RATE = 48000
WINDOW = 480000
DIM = 24  # tiny_hf's projection_dim


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return tiny_hf.build_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="module")
def backend(clap_dir):
    return registry.load_backend(str(clap_dir), device="cpu")


def direct_forward(folder, **fe_kwargs):
    """What a transformers user does: the extractor's features of a clip -> get_audio_features."""
    fe = transformers.ClapFeatureExtractor.from_pretrained(folder)
    model = transformers.ClapModel.from_pretrained(folder).eval()

    def forward(x, **call_kwargs):
        inputs = fe(x, sampling_rate=RATE, return_tensors="pt", **fe_kwargs, **call_kwargs)
        with torch.no_grad():
            return audio_features(model.get_audio_features(**inputs))[0].numpy()

    return forward


@pytest.fixture(scope="module")
def direct(clap_dir):
    return direct_forward(clap_dir)


def as_audio(x):
    return audio.prepare(x, RATE, target_rate_hz=RATE)


def test_folder_is_recognised_by_content_and_loads(clap_dir, backend):
    preset, source = registry.resolve(str(clap_dir))
    assert preset.name == "clap-htsat-unfused" and source == str(clap_dir)
    assert isinstance(backend, ClapBackend)
    assert (backend.framing, backend.sample_rate_hz, backend.embedding_dim) == ("windows", RATE, DIM)
    assert (backend.window_samples, backend.hop_samples, backend.frame_stride_s, backend.window_s) == (
        WINDOW, WINDOW, 10.0, 10.0)
    assert backend.pad_mode == "zeros" and not backend.fusion
    facts = backend.describe()
    json.dumps(facts)
    assert facts["truncation"] == "rand_trunc" and facts["projection_dim"] == DIM
    assert len(facts["weights_sha256"]["model.safetensors"]) == 64
    assert backend.mat_fields() == {"hop_s": 10.0, "overlap_s": 0.0}


@pytest.mark.parametrize("hub_id,preset", [("laion/clap-htsat-unfused", "clap-htsat-unfused"),
                                           ("laion/larger_clap_general", "larger-clap-general"),
                                           ("laion/clap-htsat-fused", "clap-htsat-unfused")])
def test_hub_ids_resolve_without_loading(hub_id, preset):
    entry, source = registry.resolve(hub_id)
    assert entry.name == preset and entry.cls == "ClapBackend" and source == hub_id


def test_windows_equal_direct_get_audio_features(backend, direct):
    x = noise(25.0, RATE)
    res = embed_audio(backend, as_audio(x))
    assert res.embeddings.shape == (3, DIM)
    np.testing.assert_array_equal(res.time_axis_s, [0.0, 10.0, 20.0])
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(res.embeddings[0], direct(x[:WINDOW]), rtol=0, atol=1e-4)
    np.testing.assert_allclose(res.embeddings[1], direct(x[WINDOW:2 * WINDOW]), rtol=0, atol=1e-4)
    # The last window (5 s of audio) is zero-filled: the extractor's padding="pad", not its repeatpad.
    np.testing.assert_allclose(res.embeddings[2], direct(x[2 * WINDOW:], padding="pad"), rtol=0, atol=1e-4)
    assert np.abs(res.embeddings[2] - direct(x[2 * WINDOW:])).max() > 1e-3
    assert res.chunking["padded_windows"] == [2]


def test_a_clip_shorter_than_a_window_is_repeat_padded_like_the_extractor(backend, direct):
    x = noise(3.0, RATE, seed=1)
    res = embed_audio(backend, as_audio(x))
    assert res.embeddings.shape == (1, DIM) and res.time_axis_s.tolist() == [0.0] and res.n_samples == x.size
    np.testing.assert_allclose(res.embeddings[0], direct(x), rtol=0, atol=1e-4)  # default: repeatpad
    assert backend.prepare(x).samples.shape == (3 * x.size,)
    assert backend.prepare(noise(12.0, RATE)).samples.shape == (12 * RATE,)


def test_hop_gives_overlapping_windows(clap_dir, direct):
    backend = registry.load_backend(str(clap_dir), device="cpu", hop_s=7.5)
    x = noise(16.0, RATE, seed=2)
    res = embed_audio(backend, as_audio(x))
    np.testing.assert_array_equal(res.time_axis_s, [0.0, 7.5])
    np.testing.assert_allclose(res.embeddings[1], direct(x[360000:], padding="pad"), rtol=0, atol=1e-4)
    assert backend.mat_fields() == {"hop_s": 7.5, "overlap_s": 2.5}


def test_batch_equals_items_one_by_one(backend):
    x = np.stack([noise(10.0, RATE, seed=s) for s in range(3)])
    x[2] *= 4.0
    batched = backend.embed_batch(x).embeddings
    single = np.concatenate([backend.embed_batch(row[None]).embeddings for row in x])
    assert batched.shape == (3, DIM)
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)


def test_only_exact_windows_are_taken(backend):
    with pytest.raises(ValueError, match="exact windows"):
        backend.embed_batch(np.zeros((1, WINDOW + 1), np.float32))


def test_fused_checkpoint_is_deterministic_and_equals_laion_style_forward(tmp_path):
    folder = tiny_hf.build_tiny_clap(tmp_path / "fused", seed=3, fusion=True)
    backend = registry.load_backend(str(folder), device="cpu")
    assert backend.fusion and backend.describe()["truncation"] == "fusion"
    x = np.stack([noise(10.0, RATE, seed=s) for s in range(2)])
    out = backend.embed_batch(x).embeddings
    np.testing.assert_array_equal(out, backend.embed_batch(x).embeddings)
    np.testing.assert_allclose(out[1], backend.embed_batch(x[1:]).embeddings[0], rtol=0, atol=1e-5)
    # transformers' extractor marks a random item is_longer when none is; LAION-CLAP (and we) use False.
    fe = transformers.ClapFeatureExtractor.from_pretrained(folder)
    model = transformers.ClapModel.from_pretrained(folder).eval()
    inputs = fe(list(x), sampling_rate=RATE, return_tensors="pt")
    assert inputs.input_features.shape[1] == 4
    with torch.no_grad():
        ref = audio_features(model.get_audio_features(input_features=inputs.input_features,
                                                      is_longer=torch.zeros(2, 1, dtype=torch.bool))).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def test_audio_features_accepts_a_tensor_or_a_model_output():
    y = torch.ones(2, 3)
    assert audio_features(y) is y
    assert audio_features(transformers.modeling_outputs.BaseModelOutputWithPooling(pooler_output=y)) is y
