"""Batched = unbatched for every speaker model (issue 25 item 5).

The corpus engine batches model inputs only with inputs of the same length (nothing is padded)
unless a backend masks padding (``accepts_lengths``; no speaker model does): utterance models
(ERes2NetV2, CAM++) batch utterances of equal length, GE2E batches its fixed 1.6 s windows
across files. Embedding a corpus of mixed lengths with ``--batch-size 8`` must give the same
vectors as ``--batch-size 1``, and must really batch.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import audio
from audio_embeddings.cli import main
from conftest import DEMO_CLIPS, PYTHON_DIR

sys.path.insert(0, str(PYTHON_DIR))
from B4_model_speaker import DEFAULTS  # noqa: E402

#: Utterance lengths (s): groups of equal length (they share batches) and odd ones (alone).
LENGTHS_S = [1.0] * 5 + [1.5] * 4 + [0.7, 2.3, 3.1, 3.7]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Speech cut from the demo clips at different offsets: ``ds/<speaker>/uNN.wav``, 16 kHz."""
    root = tmp_path_factory.mktemp("mixed")
    clips = [audio.load(c, sample_rate_hz=16000).samples for c in DEMO_CLIPS]
    for i, length_s in enumerate(LENGTHS_S):
        x = clips[i % len(clips)]
        n = int(length_s * 16000)
        start = (i * 3217) % max(1, x.shape[0] - n)
        path = root / "ds" / f"spk{i % len(clips)}" / f"u{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x[start:start + n], 16000, subtype="FLOAT")
    return root


def _vectors(out):
    from audio_embeddings.speakers import read_utterances

    return {u.key: v for u, _, v in read_utterances(out)}


@pytest.mark.parametrize("family", ["ge2e", "eres2netv2", "campplus"])
def test_batched_equals_unbatched(family, corpus, tiny_speaker_checkpoints, tmp_path, monkeypatch):
    from audio_embeddings.backends.ge2e import GE2EBackend
    from audio_embeddings.backends.speaker3d import Speaker3DBackend

    rows: list[int] = []
    for cls in (GE2EBackend, Speaker3DBackend):
        original = cls.embed_batch

        def spy(self, audio_batch, *a, _original=original, **k):
            rows.append(int(np.asarray(audio_batch).shape[0]))
            return _original(self, audio_batch, *a, **k)

        monkeypatch.setattr(cls, "embed_batch", spy)
    model = ["--model", "ge2e"] if family == "ge2e" else \
        ["--model", family, "--checkpoint", tiny_speaker_checkpoints[family]]
    got = {}
    for batch in (1, 8):
        rows.clear()
        out = tmp_path / f"b{batch}"
        assert main(DEFAULTS, [str(a) for a in (corpus, *model, "--output-dir", out, "--device", "cpu",
                                                "--batch-size", batch, "--workers", 1)]) == 0
        got[batch] = _vectors(out)
        assert max(rows) == batch if batch == 1 else max(rows) > 1  # batch 8 really put several inputs together
    assert sorted(got[1]) == sorted(got[8]) and len(got[1]) == len(LENGTHS_S)
    worst = max(float(np.max(np.abs(got[1][k] - got[8][k]))) for k in got[1])
    print(f"{family}: max |batched - unbatched| = {worst:.3g}")
    assert worst <= 1e-4
