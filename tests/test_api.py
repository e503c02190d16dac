"""The Python API (audio_embeddings.api): arrays, files, folders; results to .mat/.npz/DataFrame; the README example."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy.io import loadmat

import audio_embeddings as ae
from audio_embeddings.audio import AudioError
from conftest import DEMO_CLIPS, PYTHON_DIR, REPO
from helpers import noise

README = REPO / "docs" / "python-api.md"  # the Python API's page (the README links to it)
SECTION = "## Use from Python"
README_HUB_ID = '"wav2vec2-base"'


def python_blocks(markdown: str) -> list[str]:
    """The ```python code blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


@pytest.fixture(scope="module")
def ge2e():
    pytest.importorskip("resemblyzer")
    return ae.load_model("ge2e", device="cpu")


@pytest.fixture(scope="module")
def w2v(tiny_model):
    return ae.load_model(str(tiny_model("wav2vec2")), device="cpu", layers="all")


def test_the_readme_example_runs_as_written(tiny_model, tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/python-api.md's "Use from Python" section, in one namespace, from a
    folder holding data/. (tests/test_examples.py runs them too, as a user would, in subprocesses.)

    The last block loads a hub preset; here it gets the tiny wav2vec2's folder instead (no network).
    The pictures/DataFrame block needs matplotlib and pandas.
    """
    pytest.importorskip("resemblyzer")
    (tmp_path / "data").mkdir()
    for clip in DEMO_CLIPS:
        (tmp_path / "data" / clip.name).symlink_to(clip)
    monkeypatch.chdir(tmp_path)
    text = README.read_text()
    section = text[text.index(SECTION):]
    end = section.find("\n## ", len(SECTION))
    section = section if end < 0 else section[:end]
    blocks = python_blocks(section)
    assert len(blocks) == 3 and README_HUB_ID in blocks[2]
    namespace: dict = {}
    exec(compile(blocks[0], f"{README}:block1", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Model('ge2e': 256-d every 0.77 s at 16000 Hz)" in out and "(8, 256) [0.   0.77 1.54]" in out
    assert "3 []" in out
    assert (tmp_path / "speech_en_us.mat").is_file() and (tmp_path / "ge2e_out" / "summary.json").is_file()
    assert sorted(p.name for p in (tmp_path / "ge2e_out").glob("*.mat")) == sorted(c.stem + ".mat" for c in DEMO_CLIPS)
    if all(__import__("importlib").util.find_spec(m) for m in ("matplotlib", "pandas")):
        exec(compile(blocks[1], f"{README}:block2", "exec"), namespace)
        assert (tmp_path / "speech_en_us.png").is_file() and (tmp_path / "speakers.png").is_file()
        assert namespace["frame"].shape == (8, 1 + 256)
    local = blocks[2].replace(README_HUB_ID, repr(str(tiny_model("wav2vec2"))))
    exec(compile(local, f"{README}:block3", "exec"), namespace)
    frames = namespace["frames"]
    assert frames.embeddings.shape[0] == 4 and frames.embeddings.shape[2] == 32  # tiny: 3 layers + input, 32-d
    assert capsys.readouterr().out.strip().endswith("True")


def test_model_geometry_and_describe(ge2e, w2v):
    assert (ge2e.name, ge2e.embedding_dim, ge2e.sample_rate_hz, ge2e.frame_stride_s) == ("ge2e", 256, 16000, 0.77)
    assert (w2v.embedding_dim, w2v.sample_rate_hz, w2v.frame_stride_s, w2v.framing) == (32, 16000, 0.02, "sequence")
    info = w2v.describe()
    assert info["model_name"] == w2v.name and info["embedding_dim"] == 32 and info["layers"] == [0, 1, 2, 3]
    json.dumps(ge2e.describe())


def test_embed_an_array_at_any_rate_in_any_layout(w2v):
    x16 = noise(1.5, 16000, seed=3)
    result = w2v.embed(x16, 16000)
    n = x16.shape[0]
    assert result.embeddings.shape == (4, (n - 400) // 320 + 1, 32) and result.embeddings.dtype == np.float32
    np.testing.assert_allclose(result.time_axis_s, np.arange(result.n_frames) * 0.02)
    assert (result.sample_rate_hz, result.n_samples, result.duration_s, result.layers) == (16000, n, 1.5, [0, 1, 2, 3])
    stereo = np.stack([x16, 0.5 * x16], axis=1)  # channels-last [N, 2]: averaged
    np.testing.assert_allclose(w2v.embed(stereo, 16000).embeddings, w2v.embed(0.75 * x16, 16000).embeddings,
                               atol=1e-5)
    np.testing.assert_array_equal(w2v.embed(stereo, 16000, channel=1).embeddings,
                                  w2v.embed(0.5 * x16, 16000).embeddings)
    x48 = noise(1.5, 48000, seed=4)
    from audio_embeddings.audio import resample

    np.testing.assert_array_equal(w2v.embed(x48, 48000).embeddings,
                                  w2v.embed(resample(x48, from_hz=48000, to_hz=16000), 16000).embeddings)
    pcm16 = (x16 * 32767).astype(np.int16)  # integer PCM is scaled to [-1, 1)
    np.testing.assert_allclose(w2v.embed(pcm16, 16000).embeddings,
                               w2v.embed(pcm16.astype(np.float32) / 32768, 16000).embeddings, atol=1e-5)


def test_bad_arrays_get_one_line_errors(w2v):
    with pytest.raises(AudioError, match="NaN or Inf"):
        w2v.embed(np.full(16000, np.nan, np.float32), 16000)
    with pytest.raises(AudioError, match="too short"):
        w2v.embed(np.zeros(100, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        w2v.embed(np.zeros(0, np.float32), 16000)


def test_embed_file_equals_embed_of_its_samples(ge2e):
    x, rate = sf.read(DEMO_CLIPS[0], dtype="float32")
    a, b = ge2e.embed_file(DEMO_CLIPS[0]), ge2e.embed(x, rate)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.time_axis_s, b.time_axis_s)
    assert a.source == str(DEMO_CLIPS[0]) and b.source == "<memory>" and "utterance_embedding" in a.extras
    with pytest.raises(AudioError, match="file not found"):
        ge2e.embed_file(DEMO_CLIPS[0].with_name("missing.wav"))


def test_embed_files_in_memory_equals_one_by_one_and_lists_bad_files(ge2e, tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    for clip in DEMO_CLIPS:
        (folder / "sub" / clip.name).symlink_to(clip)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    run = ge2e.embed_files(folder)
    assert list(run) == sorted(f"sub/{c.name}" for c in DEMO_CLIPS) and run.output_dir is None
    assert run.summary["files_done"] == 3 and run.summary["files_failed"] == 1
    assert len(run.failures) == 1 and "broken.wav" in run.failures[0]["reason"]
    for clip in DEMO_CLIPS:
        one = ge2e.embed_file(clip)
        np.testing.assert_allclose(run[f"sub/{clip.name}"].embeddings, one.embeddings, atol=1e-5)
        np.testing.assert_array_equal(run[f"sub/{clip.name}"].time_axis_s, one.time_axis_s)
    assert not list(tmp_path.glob("corpus/**/*.npy"))


def test_embed_files_to_a_folder_resumes_and_reads_back_lazily(w2v, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, seconds in enumerate((1.0, 2.5)):
        sf.write(src / f"f{i}.wav", noise(seconds, 16000, seed=i), 16000)
    out = tmp_path / "out"
    first = w2v.embed_files(src, output_dir=out, formats=("npy", "mat"))
    assert first.summary["files_done"] == 2 and (out / "summary.json").is_file() and (out / "failures.csv").is_file()
    assert (out / "f0.npy").is_file() and (out / "f1.mat").is_file()
    again = w2v.embed_files(src, output_dir=out, formats=("npy", "mat"))
    assert again.summary["files_done"] == 0 and again.summary["files_skipped"] == 2 and list(again) == ["f0.wav", "f1.wav"]
    for key in again:
        fresh = w2v.embed_file(src / key)
        back = again[key]
        assert isinstance(back.embeddings, np.memmap)
        np.testing.assert_allclose(back.embeddings, fresh.embeddings, atol=1e-5)
        np.testing.assert_allclose(back.time_axis_s, fresh.time_axis_s)  # from the .mat
        np.testing.assert_allclose(first[key].time_axis_s, fresh.time_axis_s)  # remembered by the first call
    with pytest.raises(ValueError, match="other settings"):
        ae.load_model(w2v.name, device="cpu", layers="last").embed_files(src, output_dir=out, formats=("npy", "mat"))


def test_to_mat_npz_and_dataframe(w2v, tmp_path):
    result = w2v.embed(noise(1.0, 16000, seed=9), 16000)
    mat = loadmat(str(result.to_mat(tmp_path / "r.mat")))
    assert mat["embeddings"].dtype == np.float32 and mat["embeddings"].shape == result.embeddings.shape
    assert mat["time_axis"].shape == (result.n_frames, 1) and mat["sample_rate"].item() == 16000.0
    assert str(mat["model_name"][0]) == w2v.name
    back = ae.EmbeddingResult.from_npz(result.to_npz(tmp_path / "r.npz"))
    np.testing.assert_array_equal(back.embeddings, result.embeddings)
    np.testing.assert_array_equal(back.time_axis_s, result.time_axis_s)
    assert (back.frame_stride_s, back.window_s, back.n_samples, back.model_name) == (
        result.frame_stride_s, result.window_s, result.n_samples, result.model_name)
    pd = pytest.importorskip("pandas")
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns[:3]) == ["layer", "time_s", "d0000"]
    assert frame.shape == (4 * result.n_frames, 2 + 32) and list(frame.columns)[-1] == "d0031"
    layer2 = frame[frame.layer == 2]
    np.testing.assert_array_equal(layer2.filter(like="d0").to_numpy(), result.embeddings[2])
    np.testing.assert_allclose(layer2.time_s.to_numpy(), result.time_axis_s)


def test_importing_the_api_imports_no_framework():
    code = ("import sys, audio_embeddings as ae\n"
            "assert 'numpy' not in sys.modules\n"
            "ae.load_model, ae.EmbeddingResult, ae.Model\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'transformers', 'pandas', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(PYTHON_DIR), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_unknown_options_and_models_are_refused():
    with pytest.raises(ValueError, match="does not take layers") as refused:  # the API's keyword, not the flag
        ae.load_model("ge2e", device="cpu", layers="all")
    assert "--layers" not in str(refused.value)
    with pytest.raises(ValueError, match="unknown model"):
        ae.load_model("no-such-model")
    with pytest.raises(AttributeError):
        ae.no_such_name  # noqa: B018


def test_a_missing_package_names_the_extra_to_install(monkeypatch):
    pytest.importorskip("resemblyzer")
    monkeypatch.setitem(sys.modules, "librosa", None)  # as if [torch] had not been installed
    with pytest.raises(ImportError, match=r"librosa.*pip install 'audio-embeddings\[torch\]'"):
        ae.load_model("ge2e", device="cpu")


# -- the API runs the scripts' own run: never stale, extras on resume, one run per folder (issue 22) --------------


def test_embed_files_after_an_input_changed_refuses_as_embed_py_does(w2v, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        sf.write(src / f"f{i}.wav", noise(1.5, 16000, seed=i), 16000)
    out = tmp_path / "out"
    w2v.embed_files(src, output_dir=out)
    sf.write(src / "f1.wav", noise(2.0, 16000, seed=7), 16000)  # edited after the first call
    with pytest.raises(ValueError, match="f1.wav .*another version of the input.*overwrite=True"):  # the keyword
        w2v.embed_files(src, output_dir=out)
    from audio_embeddings.cli import main
    from audio_embeddings.scripts import EMBED

    assert main(EMBED, [str(src), "--model", w2v.name, "--layers", "all", "--output-dir", str(out)]) == 2
    redone = w2v.embed_files(src, output_dir=out, overwrite=True)
    assert redone.summary["files_done"] == 2
    np.testing.assert_allclose(redone["f1.wav"].embeddings, w2v.embed_file(src / "f1.wav").embeddings, atol=1e-5)


def test_a_resumed_api_run_returns_the_extras(ge2e, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for clip in DEMO_CLIPS:
        (folder / clip.name).symlink_to(clip)
    out = tmp_path / "out"
    first = ge2e.embed_files(folder, output_dir=out)
    again = ge2e.embed_files(folder, output_dir=out)
    assert again.summary["files_skipped"] == len(DEMO_CLIPS) and again.summary["files_done"] == 0
    for key in first:
        np.testing.assert_array_equal(again[key].extras["utterance_embedding"], first[key].extras["utterance_embedding"])


def test_a_second_api_run_on_the_same_folder_is_refused_while_the_first_holds_it(w2v, tmp_path):
    from audio_embeddings.corpus.lock import acquire_run_lock

    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "f0.wav", noise(1.0, 16000, seed=0), 16000)
    sf.write(src / "f1.wav", noise(1.0, 16000, seed=1), 16000)
    out = tmp_path / "out"
    out.mkdir()
    with acquire_run_lock(out, shard_label="shard-0000-of-0001"):  # what a running embed.py or API call holds
        with pytest.raises(ValueError, match="(?i)lock|another run|in use|running"):
            w2v.embed_files(src, output_dir=out)
    assert w2v.embed_files(src, output_dir=out).summary["files_done"] == 2


@pytest.mark.parametrize("to_folder", [False, True], ids=["in-memory", "output_dir"])
def test_embed_files_stopped_by_ctrl_c_raises_instead_of_returning_part(w2v, tmp_path, monkeypatch, to_folder):
    """Ctrl-C during embed_files: KeyboardInterrupt saying what was done, never a partial result returned
    as if it were whole (both paths run the shared engine session)."""
    import os
    import signal
    import threading

    src = tmp_path / "src"
    src.mkdir()
    for i in range(16):
        sf.write(src / f"f{i:02d}.wav", noise(1.0, 16000, seed=i), 16000)
    monkeypatch.setenv("AUDIO_EMBEDDINGS_WRITE_DELAY_S", "0.3")  # the run lasts about 5 s
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted by SIGINT") as stopped:
            w2v.embed_files(src, output_dir=tmp_path / "out" if to_folder else None)
    finally:
        timer.cancel()
    assert "not done" in str(stopped.value)
