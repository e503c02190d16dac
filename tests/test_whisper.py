"""Whisper encoder backend on tiny saved Whisper checkpoints (real classes, 30 s geometry; no network)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import tiny_hf
from audio_embeddings import audio, registry
from audio_embeddings.backends.whisper import WhisperEncoderBackend
from audio_embeddings.pipeline import embed_audio
from helpers import PYTHON_DIR, noise

RATE = 16000
D_MODEL, N_LAYERS = 32, 2


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """A tiny WhisperForConditionalGeneration checkpoint with its feature extractor."""
    return tiny_hf.build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def backend(whisper_dir):
    return registry.load_backend(str(whisper_dir), device="cpu")


def direct_forward(folder, *, fe=None):
    """What a transformers user does: the extractor's padded 30 s features -> encoder, every hidden state."""
    fe = fe or transformers.WhisperFeatureExtractor.from_pretrained(folder)
    encoder = transformers.WhisperModel.from_pretrained(folder).eval().encoder

    def forward(x):
        inputs = fe(x, sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            out = encoder(inputs.input_features, output_hidden_states=True)
        rows = x.size // 320  # the rows that cover the real audio
        return np.stack([h[0, :rows].numpy() for h in out.hidden_states])  # [L+1, rows, D]

    return forward


@pytest.fixture(scope="module")
def direct(whisper_dir):
    return direct_forward(whisper_dir)


def as_audio(x):
    return audio.prepare(x, RATE, target_rate_hz=RATE)


def modulated_noise(seconds, seed=0):
    x = noise(seconds, RATE, seed=seed)
    return x * (1 + 0.5 * np.sin(np.arange(x.size) / RATE * 2)).astype(np.float32)


def test_folder_is_recognised_by_content_and_loads_the_encoder(whisper_dir, backend):
    preset, source = registry.resolve(str(whisper_dir))
    assert preset.name == "whisper-base" and source == str(whisper_dir)
    assert isinstance(backend, WhisperEncoderBackend)
    assert (backend.framing, backend.sample_rate_hz, backend.embedding_dim) == ("sequence", 16000, D_MODEL)
    assert (backend.hop_samples, backend.receptive_field_samples, backend.max_input_samples) == (320, 320, 480000)
    assert backend.frame_stride_s == 0.02 and backend.min_samples == 320
    facts = backend.describe()
    json.dumps(facts)
    assert facts["model_class"] == "WhisperEncoder"
    assert facts["checkpoint_class"] == "WhisperForConditionalGeneration"
    assert facts["d_model"] == D_MODEL and facts["encoder_layers"] == N_LAYERS and facts["layers"] == "last"
    assert set(facts["weights_sha256"]) == {"model.safetensors"}
    assert len(facts["weights_sha256"]["model.safetensors"]) == 64
    np.testing.assert_array_equal(backend.mat_fields()["layers"], [[float(N_LAYERS)]])


@pytest.mark.parametrize("hub_id,preset", [("openai/whisper-tiny", "whisper-base"),
                                           ("openai/whisper-small", "whisper-small"),
                                           ("openai/whisper-large-v3", "whisper-large-v3"),
                                           ("distil-whisper/distil-large-v3", "whisper-base")])
def test_hub_ids_resolve_without_loading(hub_id, preset):
    entry, source = registry.resolve(hub_id)
    assert entry.name == preset and entry.cls == "WhisperEncoderBackend" and source == hub_id


def test_equals_direct_transformers_forward(whisper_dir, backend, direct):
    x = noise(3.0, RATE)
    ref = direct(x)
    assert ref.shape == (N_LAYERS + 1, 150, D_MODEL)
    last = embed_audio(backend, as_audio(x))
    assert last.embeddings.shape == (150, D_MODEL)
    np.testing.assert_allclose(last.embeddings, ref[-1], rtol=0, atol=1e-4)
    every = embed_audio(registry.load_backend(str(whisper_dir), device="cpu", layers="all"), as_audio(x))
    assert every.embeddings.shape == (N_LAYERS + 1, 150, D_MODEL)
    np.testing.assert_allclose(every.embeddings, ref, rtol=0, atol=1e-4)


def test_layers_select_hidden_states(whisper_dir, direct):
    x = noise(2.0, RATE, seed=1)
    ref = direct(x)
    picked = registry.load_backend(str(whisper_dir), device="cpu", layers="0,2")
    out = picked.embed_batch(x[None]).embeddings
    assert out.shape == (1, 2, 100, D_MODEL)
    np.testing.assert_allclose(out[0], ref[[0, 2]], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(picked.mat_fields()["layers"], [[0.0, 2.0]])
    one = registry.load_backend(str(whisper_dir), device="cpu", layers="1").embed_batch(x[None]).embeddings
    assert one.shape == (1, 100, D_MODEL)
    np.testing.assert_allclose(one[0], ref[1], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="layers"):
        registry.load_backend(str(whisper_dir), device="cpu", layers="3")


def test_batch_equals_items_one_by_one(backend):
    x = np.stack([noise(4.0, RATE, seed=s) for s in range(3)])
    x[1] *= 3.0  # different loudness: the log-mel floor is per item
    batched = backend.embed_batch(x).embeddings
    single = np.concatenate([backend.embed_batch(row[None]).embeddings for row in x])
    assert batched.shape == (3, 200, D_MODEL)
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [320, 639, 16000, 16001, 16161, 479999, 480000])
def test_row_count_is_openai_whisper_content_frames(backend, n):
    out = backend.embed_batch(noise(n / RATE, RATE)[None]).embeddings
    assert out.shape == (1, (n // 160) // 2, D_MODEL)  # openai-whisper: N // 160 mel frames, 2 per row


def test_time_axis_is_exact_and_a_click_lands_on_its_row(whisper_dir):
    # hidden_states[0] is the conv front end (plus positions): local, so a click shows where a row is.
    front = registry.load_backend(str(whisper_dir), device="cpu", layers="0")
    x = noise(30.0, RATE, seed=2)
    k0 = 700
    clicked = x.copy()
    clicked[320 * k0] += 0.3
    res = embed_audio(front, as_audio(x))
    np.testing.assert_array_equal(res.time_axis_s, np.arange(1500) * 0.02)
    change = np.abs(embed_audio(front, as_audio(clicked)).embeddings - res.embeddings).max(axis=1)
    assert np.flatnonzero(change > 1e-5).tolist() == [k0 - 1, k0, k0 + 1]
    assert int(np.argmax(change)) == k0 and res.time_axis_s[k0] == 14.0


def test_too_short_and_too_long_inputs_are_refused(backend):
    with pytest.raises(ValueError, match="at most 480000"):
        backend.embed_batch(np.zeros((1, 480001), np.float32))
    with pytest.raises(ValueError, match="at least 320"):
        backend.embed_batch(np.zeros((1, 319), np.float32))


def test_45_s_file_runs_in_context_chunks_on_the_whole_file_grid(backend, direct):
    x = modulated_noise(45.0)
    n_rows = x.size // 320
    res = embed_audio(backend, as_audio(x), chunk_s=30.0, context_s=2.0)
    assert res.chunking["n_chunks"] == 2 and res.chunking["chunk_samples"] == 480000
    assert res.embeddings.shape == (n_rows, D_MODEL) == (2250, D_MODEL)
    np.testing.assert_array_equal(res.time_axis_s, np.arange(n_rows) * 0.02)
    # Chunks are exact 30 s inputs (no padding): the first keeps rows 0..1399 (100 context rows of
    # 2 s dropped at its end), the second covers 15..45 s and keeps the rest.
    np.testing.assert_allclose(res.embeddings[:1400], direct(x[:480000])[-1][:1400], rtol=0, atol=1e-4)
    np.testing.assert_allclose(res.embeddings[1400:], direct(x[240000:])[-1][650:], rtol=0, atol=1e-4)
    # The default 20 s chunks give the same grid; each chunk is padded to 30 s, so its rows are those
    # of a direct forward of that 20 s (rows 0..899 kept from the first). Attention sees the 10 s of
    # padding, so these rows differ from the 30 s chunks' rows: use chunk_s=30 for Whisper.
    default = embed_audio(backend, as_audio(x))
    assert default.chunking["n_chunks"] == 3 and default.embeddings.shape == (n_rows, D_MODEL)
    np.testing.assert_array_equal(default.time_axis_s, res.time_axis_s)
    np.testing.assert_allclose(default.embeddings[:900], direct(x[:320000])[-1][:900], rtol=0, atol=1e-4)


def test_bare_whisper_model_without_feature_extractor(tmp_path):
    folder = tiny_hf.build_tiny_whisper(tmp_path / "bare", seed=4, with_head=False, with_feature_extractor=False)
    backend = registry.load_backend(str(folder), device="cpu")
    facts = backend.describe()
    assert facts["feature_extractor"] == "WhisperFeatureExtractor defaults" and facts["checkpoint_class"] == "WhisperModel"
    x = noise(1.5, RATE, seed=3)
    ref = direct_forward(folder, fe=transformers.WhisperFeatureExtractor())(x)
    np.testing.assert_allclose(backend.embed_batch(x[None]).embeddings[0], ref[-1], rtol=0, atol=1e-4)


def test_backend_modules_import_no_framework():
    code = ("import sys; import audio_embeddings.backends.whisper, audio_embeddings.backends.clap; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PYTHON_DIR, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
