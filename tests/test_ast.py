"""Audio Spectrogram Transformer backend on a tiny random AST saved like the MIT/ast-* checkpoints (no network).

Rows must equal what a user gets from transformers directly (``ASTFeatureExtractor`` + ``ASTModel``
``pooler_output``) on the same windows, through the registry and through ``python/embed.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from audio_embeddings import audio, registry  # noqa: E402
from audio_embeddings.backends.ast import ASTBackend, fbank_frames, window_samples_for  # noqa: E402
from audio_embeddings.pipeline import embed_audio  # noqa: E402
from audio_embeddings.testing import check_backend  # noqa: E402
from conftest import PYTHON_DIR  # noqa: E402
from helpers import noise  # noqa: E402
from tiny_hf import AST_LABELS  # noqa: E402

RATE = 16000
WINDOW = 10 * RATE
DIM = 32


@pytest.fixture(scope="module")
def ast_dir(tiny_hf_model):
    return tiny_hf_model("ast")


@pytest.fixture(scope="module")
def backend(ast_dir):
    return registry.load_backend(str(ast_dir), device="cpu")


def reference(folder, windows, *, logits=False):
    """transformers directly: the checkpoint's feature extractor and ASTModel (eager attention) per window."""
    fe = transformers.ASTFeatureExtractor.from_pretrained(folder)
    cls = transformers.ASTForAudioClassification if logits else transformers.ASTModel
    model = cls.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = fe([np.asarray(w, dtype=np.float32) for w in windows], sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return (out.logits if logits else out.pooler_output).numpy()


def windows_of(x, onsets):
    padded = np.concatenate([x, np.zeros(WINDOW, dtype=np.float32)])
    return [padded[o:o + WINDOW] for o in onsets]


def as_audio(x):
    return audio.prepare(x, RATE, target_rate_hz=RATE)


def test_window_length_is_the_training_clip_length():
    assert window_samples_for(1024) == 160000 and fbank_frames(160000) == 998  # AudioSet: 10 s into 1024 frames
    assert window_samples_for(128) == 16000 and fbank_frames(16000) == 98  # Speech Commands: 1 s into 128
    assert window_samples_for(512) == 80000  # ESC-50: 5 s into 512
    assert fbank_frames(window_samples_for(64)) == 64 and fbank_frames(window_samples_for(64) + 160) == 65


def test_folder_is_recognised_by_content_and_loads(ast_dir, backend):
    preset, source = registry.resolve(str(ast_dir))
    assert preset.name == "ast-audioset" and source == str(ast_dir)
    assert registry.resolve("MIT/ast-finetuned-audioset-10-10-0.4593")[0] is preset
    assert isinstance(backend, ASTBackend)
    assert (backend.framing, backend.sample_rate_hz, backend.embedding_dim) == ("windows", RATE, DIM)
    assert (backend.window_samples, backend.hop_samples, backend.window_s, backend.frame_stride_s) == (
        WINDOW, WINDOW, 10.0, 10.0)
    facts = backend.describe()
    json.dumps(facts)
    assert facts["checkpoint_class"] == "ASTForAudioClassification" and facts["model_class"] == "ASTModel.pooler_output"
    assert facts["feature_extractor"] == "checkpoint" and facts["fbank_frames_per_window"] == 998
    assert facts["max_length_frames"] == 1024 and facts["num_mel_bins"] == 128 and facts["logits"] is False
    assert len(facts["weights_sha256"]["model.safetensors"]) == 64
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(facts["files"])
    assert backend.mat_fields() == {"hop_s": 10.0, "overlap_s": 0.0}


def test_passes_the_backend_contract(backend):
    result = check_backend(backend, preset="ast-audioset")
    assert result.embeddings.shape == (3, DIM)


def test_rows_equal_the_reference_forward_on_the_same_windows(ast_dir, backend):
    x = noise(25.0, RATE, seed=5)
    res = embed_audio(backend, as_audio(x))
    assert res.embeddings.shape == (3, DIM)
    np.testing.assert_array_equal(res.time_axis_s, [0.0, 10.0, 20.0])
    ref = reference(ast_dir, windows_of(x, [0, WINDOW, 2 * WINDOW]))  # the last one zero-filled past the end
    np.testing.assert_allclose(res.embeddings, ref, rtol=0, atol=1e-4)
    assert np.abs(ref[0] - ref[1]).max() > 1e-3  # the windows differ: the comparison means something


def test_overlapping_windows_with_hop_seconds(ast_dir):
    backend = registry.load_backend(str(ast_dir), device="cpu", hop_s=4.0)
    x = noise(18.0, RATE, seed=6)
    res = embed_audio(backend, as_audio(x))
    onsets = [0, 4 * RATE, 8 * RATE]  # a window at 8 s reaches the end (18 s)
    np.testing.assert_array_equal(res.time_axis_s, [0.0, 4.0, 8.0])
    np.testing.assert_allclose(res.embeddings, reference(ast_dir, windows_of(x, onsets)), rtol=0, atol=1e-4)
    assert backend.mat_fields() == {"hop_s": 4.0, "overlap_s": 6.0}


def test_logits_are_the_classifier_heads(ast_dir):
    backend = registry.load_backend(str(ast_dir), device="cpu", logits=True)
    assert backend.classes == list(AST_LABELS)
    x = noise(12.0, RATE, seed=7)
    res = embed_audio(backend, as_audio(x))
    windows = windows_of(x, [0, WINDOW])
    np.testing.assert_allclose(res.extras["label"], reference(ast_dir, windows, logits=True), rtol=0, atol=1e-4)
    np.testing.assert_allclose(res.embeddings, reference(ast_dir, windows), rtol=0, atol=1e-4)
    assert backend.mat_fields()["classes"] == list(AST_LABELS)
    check_backend(backend, preset="ast-audioset")  # the label extra is per row too


def test_a_bare_model_gets_the_extractor_defaults_and_refuses_logits(tiny_hf_model):
    folder = tiny_hf_model("ast-bare")
    backend = registry.load_backend(str(folder), device="cpu")
    facts = backend.describe()
    assert facts["feature_extractor"] == "ASTFeatureExtractor defaults" and facts["checkpoint_class"] == "ASTModel"
    x = noise(10.0, RATE, seed=8)
    fe = transformers.ASTFeatureExtractor()
    model = transformers.ASTModel.from_pretrained(folder).eval()
    with torch.no_grad():
        ref = model(**fe(x, sampling_rate=RATE, return_tensors="pt")).pooler_output.numpy()
    np.testing.assert_allclose(backend.embed_batch(x[None]).embeddings, ref, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match=r"--logits needs a checkpoint with its classifier head "
                                         r"\(ASTForAudioClassification\); this one holds ASTModel"):
        registry.load_backend(str(folder), device="cpu", logits=True)


def test_embed_py_writes_the_reference_rows(ast_dir, tmp_path):
    x = noise(14.0, RATE, seed=9)
    wav = tmp_path / "clip.wav"
    sf.write(wav, x, RATE, subtype="FLOAT")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "embed.py"), str(wav), "--model", str(ast_dir),
                           "--output-dir", str(out), "--device", "cpu", "--logits", "--workers", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = np.load(out / "clip.npy")
    windows = windows_of(x, [0, WINDOW])
    np.testing.assert_allclose(rows, reference(ast_dir, windows), rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.load(out / "clip_label.npy"), reference(ast_dir, windows, logits=True),
                               rtol=0, atol=1e-4)
    meta = json.loads((out / "clip.json").read_text())
    assert meta["backend"]["model_type"] == "audio-spectrogram-transformer"
