"""Perch 2.0 through the real loading code: a tiny SavedModel and a tiny ONNX file with Perch's interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import registry
from audio_embeddings.audio import Audio, load
from audio_embeddings.pipeline import embed_audio
from helpers import PYTHON_DIR, noise, run_script

tf = pytest.importorskip("tensorflow")
tiny_perch = pytest.importorskip("tiny_perch")


@pytest.fixture(scope="module")
def perch_models(tmp_path_factory):
    """{"savedmodel": dir, "onnx": file} of the tiny Perch stand-in."""
    root = tmp_path_factory.mktemp("perch")
    models = {"savedmodel": tiny_perch.build_savedmodel(root / "perch_v2")}
    if pytest.importorskip("onnxruntime") and pytest.importorskip("onnx"):
        models["onnx"] = tiny_perch.build_onnx(root / "perch_v2.onnx")
    return models


def expected_windows(x: np.ndarray, *, window: int, hop: int) -> tuple[np.ndarray, list[int]]:
    """Windows cut as the Perch script did (last fragment reflection-padded), and the padded indices."""
    count = 1 + int(np.ceil(max(len(x) - window, 0) / hop))
    windows, padded = [], []
    for i in range(count):
        frag = x[i * hop:i * hop + window]
        if len(frag) < window:
            padded.append(i)
            frag = np.pad(frag, (0, window - len(frag)), mode="reflect")
        windows.append(frag)
    return np.stack(windows).astype(np.float32), padded


def as_audio(x: np.ndarray, rate: int) -> Audio:
    return Audio(x, rate, rate, 1, None, "<test>")


@pytest.mark.parametrize("fmt", ["savedmodel", "onnx"])
def test_windows_padding_and_time_axis_match_the_perch_script(fmt, perch_models):
    x = noise(12.3, 32000, seed=1)
    backend = registry.load_backend(str(perch_models[fmt]), device="cpu", logits=True)
    assert backend.name == "perch_v2" and backend.sample_rate_hz == 32000 and backend.window_s == 5.0
    result = embed_audio(backend, as_audio(x, 32000))
    windows, padded = expected_windows(x, window=160000, hop=160000)
    ref = tiny_perch.reference(windows)
    assert result.embeddings.shape == (3, 1536) and padded == [2]
    np.testing.assert_allclose(result.embeddings, ref["embedding"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.extras["label"], ref["label"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(result.time_axis_s, [0.0, 5.0, 10.0])
    assert result.chunking["padded_windows"] == [2] and result.chunking["pad_mode"] == "reflect"


def test_force_10sec_gives_10_s_windows_at_16_khz_and_hop_seconds_overlaps(perch_models):
    x = noise(25.0, 16000, seed=2)
    backend = registry.load_backend(str(perch_models["savedmodel"]), device="cpu", force_10sec=True)
    assert (backend.sample_rate_hz, backend.window_s, backend.frame_stride_s) == (16000, 10.0, 10.0)
    result = embed_audio(backend, as_audio(x, 16000))
    windows, padded = expected_windows(x, window=160000, hop=160000)
    assert result.embeddings.shape[0] == 3 and padded == [2]
    np.testing.assert_allclose(result.embeddings, tiny_perch.reference(windows)["embedding"], rtol=0, atol=1e-5)
    hop = registry.load_backend(str(perch_models["savedmodel"]), device="cpu", force_10sec=True, hop_s=4.0)
    overlapped = embed_audio(hop, as_audio(x, 16000))
    windows, _ = expected_windows(x, window=160000, hop=64000)
    np.testing.assert_array_equal(overlapped.time_axis_s, np.arange(len(windows)) * 4.0)  # 0, 4, 8, 12, 16
    np.testing.assert_allclose(overlapped.embeddings, tiny_perch.reference(windows)["embedding"], rtol=0, atol=1e-5)


def test_a_batch_equals_windows_one_by_one_and_spatial_embeddings_are_kept(perch_models):
    x = noise(31.0, 32000, seed=3)
    backend = registry.load_backend(str(perch_models["savedmodel"]), device="cpu", spatial=True)
    batched = embed_audio(backend, as_audio(x, 32000), batch_size=8)
    single = embed_audio(backend, as_audio(x, 32000), batch_size=1)
    np.testing.assert_allclose(batched.embeddings, single.embeddings, rtol=0, atol=1e-6)
    assert batched.extras["spatial_embedding"].shape == (7, 16, 4, 1536)


def test_model_files_and_directories_resolve_to_perch(perch_models):
    for path in perch_models.values():
        assert registry.resolve(str(path))[0].name == "perch_v2"


@pytest.mark.slow
def test_b1_script_writes_fragments_equal_to_the_npy_rows(tmp_path, perch_models):
    clip = tmp_path / "audio.wav"
    sf.write(clip, noise(11.0, 44100, seed=4, channels=2), 44100)
    out = tmp_path / "out"
    proc = run_script("B1_model_perch.py", "--input", str(clip), "--output", str(out),
                      "--model", str(perch_models["savedmodel"]), "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    emb = np.load(out / "audio.npy")
    assert emb.shape == (3, 1536)
    for i, row in enumerate(emb):
        frag = np.loadtxt(out / f"audio_frag{i}.txt", delimiter=",")
        np.testing.assert_array_equal(frag.astype(np.float32), row)  # the shortest text that reads back exactly
    assert not (out / "audio_frag3.txt").exists()
    expected = tiny_perch.reference(expected_windows(load(clip, sample_rate_hz=32000).samples,
                                                     window=160000, hop=160000)[0])["embedding"]
    np.testing.assert_allclose(emb, expected, rtol=0, atol=1e-5)
    meta = json.loads((out / "audio.json").read_text())
    assert meta["chunking"]["padded_windows"] == [2] and len(meta["top_labels"]) == 3
    assert meta["top_labels"][0]["labels"][0][0].startswith("species")
    assert (out / "audio_labels.csv").read_text().startswith("start_s,rank,label,logit\n")
    assert proc.stderr.count("oneDNN") == 0  # TensorFlow's start-up noise is silenced


@pytest.mark.slow
def test_no_input_embeds_the_synthetic_tone_and_extract_perch_returns_paths_and_shapes(tmp_path, perch_models):
    proc = run_script("B1_model_perch.py", "--output", str(tmp_path / "tone"), "--duration_sec", "8",
                      "--model", str(perch_models["onnx"] if "onnx" in perch_models else perch_models["savedmodel"]))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tone" / "synthetic_perch_32khz_8.0s.wav").is_file()
    assert sorted(p.name for p in (tmp_path / "tone").glob("*_frag*.txt")) == [
        "synthetic_perch_32khz_8.0s_frag0.txt", "synthetic_perch_32khz_8.0s_frag1.txt"]
    import sys

    sys.path.insert(0, str(PYTHON_DIR))
    from B1_model_perch import extract_perch

    clip = tmp_path / "a.wav"
    sf.write(clip, noise(6.0, 32000, seed=5), 32000)
    results = extract_perch(str(clip), str(tmp_path / "api"), model=str(perch_models["savedmodel"]))
    assert results == [(str(tmp_path / "api" / "a_frag0.txt"), (1536,)), (str(tmp_path / "api" / "a_frag1.txt"),
                                                                           (1536,))]
    assert results.embeddings.shape == (2, 1536) and results.embeddings.dtype == np.float32
    np.testing.assert_array_equal(results.embeddings[1], np.loadtxt(results[1][0], delimiter=",", dtype=np.float32))
    np.testing.assert_allclose(results.time_axis_s, [0.0, 5.0])
    ten = extract_perch(str(clip), str(tmp_path / "api10"), force_10sec=True, model=str(perch_models["savedmodel"]))
    assert len(ten) == 1
    # a shorter file into the same folder: only this run's fragment, not the earlier run's second one
    sf.write(clip, noise(3.0, 32000, seed=6), 32000)
    again = extract_perch(str(clip), str(tmp_path / "api"), model=str(perch_models["savedmodel"]),
                          options=["--overwrite"])
    assert [path for path, _ in again] == [str(tmp_path / "api" / "a_frag0.txt")]
    assert again.embeddings.shape == (1, 1536)
    assert not (tmp_path / "api" / "a_frag1.txt").exists()  # the stale fragment was removed with the rewrite
