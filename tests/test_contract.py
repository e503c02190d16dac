"""The backend contract, checked on every preset through ``registry.load_backend`` with its tiny stand-in.

The rules live in :func:`audio_embeddings.testing.check_backend` (public, for plugin authors too):
width, rows against the time axis and the framing's promise, stride, the shared ``describe()``
keys, ``BatchOutput``, and a batch equal to its items one by one. Here every preset is loaded
and checked; the checker itself is shown to catch each broken rule. A backend added as a plugin
(tests/stub_plugin.py) passes the same check and gets its option into ``--help``, the loader,
the resume fingerprint and MATLAB's name-value pairs without any edit to the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from audio_embeddings import registry
from audio_embeddings.backends.base import BatchOutput
from audio_embeddings.testing import check_backend
from conftest import PYTHON_DIR, REPO
from helpers import noise

#: Options that make the stand-in's output easy to check (no silence trimming moving rows).
OPTIONS = {"ge2e": {"trim_silence": False}}


@pytest.mark.parametrize("name", sorted(registry.PRESETS))
def test_every_preset_follows_the_contract(name, stand_in):
    source, extra = stand_in(name)
    backend = registry.load_backend(source if source is not None else name, preset=name, device="cpu",
                                    **extra, **OPTIONS.get(name, {}))
    result = check_backend(backend, preset=name)
    assert result.embeddings.shape[-1] == backend.embedding_dim


# -- the checker catches what it claims to -------------------------------------------------------------


def test_a_plugin_backend_passes_the_public_check():
    import stub_plugin

    result = check_backend(stub_plugin.StubBackend.load(None, name="stub-gain", gain=2.0),
                           preset=stub_plugin.PRESETS[0])
    assert result.embeddings.shape == (3, 2)  # 2.5 windows of 0.25 s: windows at 0, 0.25 and 0.5 s
    np.testing.assert_array_equal(result.time_axis_s, [0.0, 0.25, 0.5])


@pytest.mark.parametrize("breakage, message", [
    ("width", "rows are 3 wide, embedding_dim says 2"),
    ("type", "embed_batch must return a BatchOutput, not ndarray"),
    ("batch", "a batch must equal its items run one by one: item"),
    ("stride", "frame_stride_s (0.5) must be hop_samples / sample_rate_hz (0.25)"),
    ("describe", "describe() lacks the shared keys ['hop_s']"),
    ("preset", "runs at 8000 Hz, its preset says 16000 Hz"),
])
def test_check_backend_names_the_broken_rule(breakage, message):
    import stub_plugin

    preset = stub_plugin.PRESETS[0]

    class Broken(stub_plugin.StubBackend):
        def embed_batch(self, audio):
            out = super().embed_batch(audio)
            if breakage == "width":
                return BatchOutput(np.concatenate([out.embeddings, out.embeddings[:, :1]], axis=1))
            if breakage == "type":
                return out.embeddings
            if breakage == "batch" and audio.shape[0] > 1:
                return BatchOutput(out.embeddings + 1.0)
            return out

        def describe(self):
            info = super().describe()
            if breakage == "describe":
                del info["hop_s"]
            return info

    backend = Broken.load(None, name="stub-gain")
    if breakage == "stride":
        backend.frame_stride_s = 0.5
    if breakage == "preset":
        import dataclasses

        preset = dataclasses.replace(preset, sample_rate_hz=16000)
    with pytest.raises(AssertionError) as info:
        check_backend(backend, preset=preset)
    assert str(info.value).startswith("backend 'stub-gain' (Broken): ")
    assert message in str(info.value), str(info.value)


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
