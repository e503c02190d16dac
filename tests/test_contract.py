"""The backend contract, checked on every preset through ``registry.load_backend`` with its tiny stand-in.

Each preset embeds a short input through the shared pipeline: the width equals ``embedding_dim``,
there is one time-axis entry per row, the time axis follows ``frame_stride_s``, ``describe()`` has
the keys every backend shares, and a batch equals its items one by one. A backend added as a
plugin (tests/stub_plugin.py) gets its option into ``--help``, the loader, the resume
fingerprint and MATLAB's name-value pairs without any edit to the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from audio_embeddings import registry
from audio_embeddings.audio import Audio
from audio_embeddings.backends.base import BaseBackend, BatchOutput
from audio_embeddings.pipeline import embed_audio
from conftest import PYTHON_DIR, REPO
from helpers import noise

SHARED_KEYS = {"name", "framing", "sample_rate_hz", "embedding_dim", "frame_stride_s", "window_s", "hop_s",
               "min_samples", "max_input_samples", "device", "dtype"}
#: Options that make the stand-in's output easy to check (no silence trimming moving rows).
OPTIONS = {"ge2e": {"trim_silence": False}}


def _input_seconds(backend) -> float:
    if backend.framing == "windows":
        return 2.5 * backend.window_s
    return 1.3


@pytest.mark.parametrize("name", sorted(registry.PRESETS))
def test_every_preset_follows_the_contract(name, stand_in):
    source, extra = stand_in(name)
    backend = registry.load_backend(source if source is not None else name, preset=name, device="cpu",
                                    **extra, **OPTIONS.get(name, {}))
    preset = registry.PRESETS[name]
    assert isinstance(backend, BaseBackend)
    assert backend.name == name and backend.sample_rate_hz == preset.sample_rate_hz
    assert backend.framing in ("sequence", "windows", "utterance")
    if backend.framing == "utterance":
        assert backend.frame_stride_s is None and preset.frame_stride_s is None
    else:
        assert backend.frame_stride_s == pytest.approx(preset.frame_stride_s)

    rate = backend.sample_rate_hz
    x = noise(_input_seconds(backend), rate, seed=3)
    result = embed_audio(backend, Audio(x, rate, rate, 1, None, "<memory>"))
    rows = result.embeddings
    assert rows.dtype == np.float32 and rows.shape[-1] == backend.embedding_dim
    assert rows.shape[-2] == result.time_axis_s.shape[0] > 0
    if backend.framing == "utterance":
        assert rows.shape[-2] == 1 and result.time_axis_s.tolist() == [0.0]
    else:
        assert rows.shape[-2] >= 2
        np.testing.assert_allclose(np.diff(result.time_axis_s), backend.frame_stride_s, rtol=0, atol=1e-9)
        assert result.time_axis_s[0] == 0.0

    info = backend.describe()
    assert SHARED_KEYS <= set(info), SHARED_KEYS - set(info)
    assert info["name"] == name and info["embedding_dim"] == backend.embedding_dim
    json.dumps(info)

    n = backend.window_samples if backend.framing == "windows" else max(backend.min_samples, int(0.8 * rate))
    if backend.max_input_samples:
        n = min(n, backend.max_input_samples)
    batch = np.stack([noise(n / rate, rate, seed=s)[:n] for s in range(3)])
    together = backend.embed_batch(batch)
    assert isinstance(together, BatchOutput)
    alone = [backend.embed_batch(item[None]) for item in batch]
    scale = float(np.abs(together.embeddings).max()) or 1.0
    for i, one in enumerate(alone):
        np.testing.assert_allclose(together.embeddings[i], one.embeddings[0], rtol=0, atol=2e-4 * scale)
        assert set(one.extras) == set(together.extras)


def _stub_env(**extra):
    import os

    env = dict(os.environ, AUDIO_EMBEDDINGS_PLUGINS="stub_plugin",
               PYTHONPATH=f"{PYTHON_DIR}{os.pathsep}{REPO / 'tests'}", **extra)
    return env


def _embed(*args, env=None):
    return subprocess.run([sys.executable, str(PYTHON_DIR / "embed.py"), *map(str, args)], capture_output=True,
                          text=True, env=env or _stub_env(), timeout=300)


def test_a_plugin_backend_option_reaches_help_loader_fingerprint_and_matlab_names(tmp_path):
    import soundfile as sf

    help_text = _embed("--help").stdout
    assert "stub plugin (tests)" in help_text and "--stub-gain" in help_text

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        sf.write(clips / f"c{i}.wav", noise(1.0, 8000, seed=i), 8000)
    out = tmp_path / "out"
    first = _embed(clips, "--model", "stub-gain", "--output-dir", out, "--stub-gain", "2", "--workers", "0")
    assert first.returncode == 0, first.stderr
    rows2 = np.load(out / "c0.npy")
    assert json.loads((out / ".audio_embeddings_run.json").read_text())["--stub-gain"] == 2.0

    again = _embed(clips, "--model", "stub-gain", "--output-dir", out, "--stub-gain", "3", "--workers", "0")
    assert again.returncode == 2 and "--stub-gain: 2.0 -> 3.0" in again.stderr

    # the MATLAB wrappers pass name-value pairs as --matlab-option NAME VALUE (case-insensitive, as inputParser)
    out3 = tmp_path / "out3"
    matlab = _embed(clips, "--model", "stub-gain", "--output-dir", out3, "--matlab-option", "stubgain", "3",
                    "--workers", "0")
    assert matlab.returncode == 0, matlab.stderr
    np.testing.assert_allclose(np.load(out3 / "c0.npy"), rows2 * 1.5, rtol=1e-6)
    bad = _embed(clips, "--model", "stub-gain", "--output-dir", out3, "--matlab-option", "StubGain", "-1")
    assert bad.returncode == 2 and "'StubGain' must be a number > 0" in bad.stderr
    unknown = _embed(clips, "--output-dir", out3, "--matlab-option", "NoSuchOption", "1")
    assert unknown.returncode == 2 and "'NoSuchOption' is not an option" in unknown.stderr


def test_an_option_the_chosen_backend_does_not_take_is_refused(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", noise(1.0, 8000), 8000)
    proc = _embed(tmp_path / "a.wav", "--model", "stub-gain", "--output-dir", tmp_path / "o", "--codes")
    assert proc.returncode == 2 and "does not take --codes" in proc.stderr


RERUNS = [  # (stand-in preset, first run's extra flags, rerun's extra flags, the option the refusal names)
    ("metis", [], ["--codes"], "--codes"),
    ("wav2vec2-base", [], ["--layers", "all"], "--layers"),
    ("wav2vec2-base", [], ["--formats", "npy,json"], "--formats"),
    ("birdnet", [], ["--logits"], "--logits"),
    ("birdnet", [], ["--top-k", "3"], "--top-k"),
    ("perch_v2", [], ["--spatial"], "--spatial"),
    ("wav2vec2-base", ["--tr", "2"], ["--tr", "1"], "--tr"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,first,second,named", RERUNS, ids=[r[3] + "-" + r[0] for r in RERUNS])
def test_a_rerun_with_an_option_that_changes_the_outputs_is_refused_naming_it(name, first, second, named, stand_in,
                                                                           tmp_path):
    """Never "already done" with outputs missing: a rerun with other outputs asked for is refused."""
    import soundfile as sf

    source, extra = stand_in(name)
    preset = registry.PRESETS[name]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rate = preset.sample_rate_hz
    for i in range(2):
        sf.write(corpus / f"f{i}.wav", noise(3.5, rate, seed=i), rate)
    flags = [f for k, v in extra.items() for f in (f"--{k}", v)]  # the metis stand-in's --codec/--stats
    base = [corpus, "--model", source or name, *flags, "--output-dir", tmp_path / "out", "--workers", "0",
            "--device", "cpu"]
    first_run = _embed(*base, *first)
    assert first_run.returncode == 0, first_run.stderr
    rerun = _embed(*base, *second)
    assert rerun.returncode == 2, rerun.stderr
    assert named in rerun.stderr and "--overwrite" in rerun.stderr
    assert "already done" not in rerun.stderr
