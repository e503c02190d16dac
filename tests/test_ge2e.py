"""GE2E backend with the weights shipped in resemblyzer: same numbers as resemblyzer's own encoder."""

import numpy as np
import pytest

from audio_embeddings import audio
from audio_embeddings.pipeline import embed_audio
from audio_embeddings.registry import load_backend
from conftest import DEMO_CLIPS

resemblyzer = pytest.importorskip("resemblyzer")


@pytest.fixture(scope="module")
def reference_encoder():
    return resemblyzer.VoiceEncoder(device="cpu", verbose=False)


@pytest.fixture(scope="module")
def ge2e():
    return load_backend("ge2e", device="cpu")


@pytest.mark.parametrize("clip", DEMO_CLIPS, ids=lambda p: p.name)
def test_same_embedding_as_resemblyzer(clip, reference_encoder, ge2e):
    ref_utt, ref_partials, ref_slices = reference_encoder.embed_utterance(
        resemblyzer.preprocess_wav(clip), return_partials=True)
    ours = embed_audio(ge2e, audio.load(clip, sample_rate_hz=16000))
    assert ours.embeddings.shape == ref_partials.shape and ours.embeddings.shape[1] == 256
    np.testing.assert_allclose(ours.embeddings, ref_partials, atol=1e-5)
    np.testing.assert_allclose(ours.extras["utterance_embedding"][0], ref_utt, atol=1e-5)
    assert np.linalg.norm(ours.extras["utterance_embedding"]) == pytest.approx(1.0, abs=1e-5)
    # partial onsets are mapped back from the silence-trimmed signal to the file's own time
    assert ours.time_axis_s[0] >= 0 and np.all(np.diff(ours.time_axis_s) >= 0.77 - 1e-9)
    assert ours.time_axis_s[-1] < audio.load(clip, sample_rate_hz=16000).duration_s


def test_without_trimming_times_are_the_partial_grid(ge2e):
    backend = load_backend("ge2e", device="cpu", trim_silence=False)
    clip = audio.load(DEMO_CLIPS[0], sample_rate_hz=16000)
    res = embed_audio(backend, clip)
    np.testing.assert_allclose(res.time_axis_s, np.arange(res.embeddings.shape[0]) * 0.77)
    assert res.embeddings.shape[0] > embed_audio(ge2e, clip).embeddings.shape[0] - 1


def test_batch_equals_one_by_one(ge2e):
    clip = audio.load(DEMO_CLIPS[0], sample_rate_hz=16000)
    batched = embed_audio(ge2e, clip, batch_size=8).embeddings
    single = embed_audio(ge2e, clip, batch_size=1).embeddings
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_silence_is_a_clear_error(ge2e):
    with pytest.raises(ValueError, match="silence"):
        ge2e.prepare(np.zeros(16000, dtype=np.float32))
