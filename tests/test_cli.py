"""The scripts as a user runs them: outputs per the contract, exit status, one-line errors."""

import json

import h5py
import numpy as np
import pytest
import soundfile as sf
from scipy.io import loadmat

from audio_embeddings import audio
from conftest import DEMO_CLIPS
from helpers import noise, run_script

B2 = "B2_model_wav2vec2.py"
JSON_FIELDS = {"audio_path", "model_name", "sample_rate", "num_frames", "hidden_size", "frame_stride",
               "time_axis_seconds", "chunking", "backend", "versions", "command_line", "started_at", "finished_at",
               "outputs"}


@pytest.fixture(scope="module")
def b2_run(tiny_model, tmp_path_factory):
    """One B2 run on a demo clip (22.05 kHz -> 16 kHz) with a tiny model, chunked."""
    out = tmp_path_factory.mktemp("b2")
    proc = run_script(B2, str(DEMO_CLIPS[0]), "--model", str(tiny_model("wav2vec2")), "--output-dir", str(out),
                      "--chunk-seconds", "3", "--context-seconds", "0.5", "--device", "cpu")
    return proc, out


@pytest.mark.slow
def test_b2_writes_npy_mat_json_with_the_default_basename(b2_run, tiny_model):
    proc, out = b2_run
    assert proc.returncode == 0, proc.stderr
    n16k = audio.load(DEMO_CLIPS[0], sample_rate_hz=16000).samples.shape[0]
    t = (n16k - 400) // 320 + 1
    emb = np.load(out / "wav2vec2_embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape == (t, 32)

    mat = loadmat(out / "wav2vec2_embeddings.mat")
    assert mat["embeddings"].dtype == np.float32
    np.testing.assert_array_equal(mat["embeddings"], emb)
    assert mat["time_axis"].dtype == np.float64 and mat["time_axis"].shape == (t, 1)
    np.testing.assert_allclose(mat["time_axis"][:, 0], np.arange(t) * 0.02)
    for name, value in (("frame_stride", 0.02), ("sample_rate", 16000.0)):
        assert mat[name].dtype == np.float64 and mat[name].shape == (1, 1) and mat[name][0, 0] == value
    assert str(mat["model_name"][0]) == str(tiny_model("wav2vec2"))

    meta = json.loads((out / "wav2vec2_embeddings.json").read_text())
    assert JSON_FIELDS <= set(meta)
    assert meta["num_frames"] == t and meta["hidden_size"] == 32 and meta["frame_stride"] == 0.02
    assert meta["chunking"]["mode"] == "context-chunks" and meta["chunking"]["chunk_seconds"] == 3.0
    assert meta["backend"]["device"] == "cpu" and meta["backend"]["dtype"] == "float32"
    assert len(meta["backend"]["weights_sha256"]["model.safetensors"]) == 64
    assert meta["time_axis_seconds"]["seconds"][-1] == pytest.approx((t - 1) * 0.02)
    assert meta["audio_source_sample_rate"] == 22050


@pytest.mark.slow
def test_mat_v73_is_real_hdf5_matlab_with_the_same_values(tiny_model, tmp_path):
    mat73 = pytest.importorskip("mat73")
    proc = run_script(B2, str(DEMO_CLIPS[1]), "--model", str(tiny_model("wav2vec2")), "--output-dir", str(tmp_path),
                      "--mat-version", "7.3", "--layers", "all", "--basename", "v73")
    assert proc.returncode == 0, proc.stderr
    emb = np.load(tmp_path / "v73.npy")
    assert emb.ndim == 3 and emb.shape[0] == 4
    with open(tmp_path / "v73.mat", "rb") as fh:
        assert fh.read(19) == b"MATLAB 7.3 MAT-file"
    with h5py.File(tmp_path / "v73.mat", "r") as f:
        assert f["embeddings"].attrs["MATLAB_class"] == b"single"
        np.testing.assert_array_equal(np.asarray(f["embeddings"]).T, emb)  # column-major on disk
    loaded = mat73.loadmat(str(tmp_path / "v73.mat"))
    np.testing.assert_array_equal(loaded["embeddings"], emb)
    assert loaded["frame_stride"] == 0.02 and loaded["sample_rate"] == 16000
    np.testing.assert_array_equal(loaded["layers"], [0, 1, 2, 3])


@pytest.mark.slow
def test_failed_mat_leaves_a_failed_note_and_keeps_npy_and_json(tiny_model, tmp_path):
    (tmp_path / "x.mat").mkdir()  # something in the way of the .mat
    proc = run_script(B2, str(DEMO_CLIPS[2]), "--model", str(tiny_model("wav2vec2")), "--output-dir", str(tmp_path),
                      "--basename", "x")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.npy").is_file() and (tmp_path / "x.json").is_file()
    reason = (tmp_path / "x.mat.failed").read_text()
    assert reason.strip() and "warning" in proc.stderr and ".mat not written" in proc.stderr
    assert json.loads((tmp_path / "x.json").read_text())["outputs"]["mat_failed"] == reason.strip()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "empty", "not-audio", "too-short"])
def test_bad_input_exits_non_zero_with_one_line_naming_the_file(case, tiny_model, tmp_path):
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "not-audio":
        path.write_text("hello, I am a text file\n" * 40)
    elif case == "too-short":
        sf.write(path, noise(0.02, 16000), 16000)  # 20 ms < the 25 ms receptive field
    proc = run_script(B2, str(path), "--model", str(tiny_model("wav2vec2")), "--output-dir", str(tmp_path / "o"))
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(path) in lines[0], proc.stderr
    assert not list((tmp_path / "o").glob("*.npy")) if (tmp_path / "o").exists() else True


@pytest.mark.slow
def test_unknown_model_is_a_usage_error(tmp_path):
    proc = run_script(B2, str(DEMO_CLIPS[0]), "--model", str(tmp_path), "--output-dir", str(tmp_path))
    assert proc.returncode == 2 and "config.json" in proc.stderr


@pytest.mark.slow
def test_embed_script_runs_ge2e_on_several_files(tmp_path):
    proc = run_script("embed.py", *map(str, DEMO_CLIPS), "--model", "ge2e", "--output-dir", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    for clip in DEMO_CLIPS:
        emb = np.load(tmp_path / f"{clip.stem}.npy")
        utt = np.load(tmp_path / f"{clip.stem}_utterance_embedding.npy")
        assert emb.shape[1] == 256 and utt.shape == (1, 256)
        mat = loadmat(tmp_path / f"{clip.stem}.mat")
        np.testing.assert_array_equal(mat["utterance_embedding"], utt)
        assert mat["time_axis"].shape == (emb.shape[0], 1)
