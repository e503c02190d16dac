"""``audio-embeddings make-tiny-model`` and ``$AUDIO_EMBEDDINGS_LOCAL_MODELS``: every preset family gets a tiny
random model that its preset then loads by name, offline, with the folder in the provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from audio_embeddings import commands, registry
from audio_embeddings.backends import tiny
from audio_embeddings.hub import LOCAL_MODELS_ENV
from conftest import DEMO_CLIPS, PYTHON_DIR

#: One preset per builder (the builder of each is tiny.PRESET_FAMILIES[preset]).
ONE_PRESET_PER_FAMILY = ["wav2vec2-base", "wav2vec2", "hubert-base", "wavlm-base-plus", "data2vec-audio-base",
                         "whisper-base", "clap-htsat-unfused", "ast-audioset", "metis", "perch_v2", "eres2netv2",
                         "eres2netv2_w24s4ep4", "campplus"]


def short_input(backend) -> np.ndarray:
    """float32 [1, N]: one window for window models, else 1 s of quiet noise at the model's rate."""
    rate = int(backend.sample_rate_hz)
    n = int(round(backend.window_s * rate)) if backend.framing == "windows" else rate
    return (np.random.default_rng(0).standard_normal((1, max(n, int(backend.min_samples)))) * 0.1).astype(np.float32)


def test_every_preset_with_a_download_has_a_builder_and_every_builder_is_listed():
    needing = {name for name, p in registry.presets().items() if p.checkpoint is not None}
    assert needing == set(tiny.PRESET_FAMILIES)
    assert {p for p, p_ in registry.presets().items() if p_.checkpoint is None} == set(tiny.NEEDS_NOTHING)
    assert {tiny.PRESET_FAMILIES[p] for p in ONE_PRESET_PER_FAMILY} | {"clap-fused"} == set(tiny.FAMILIES)


@pytest.mark.parametrize("preset", ONE_PRESET_PER_FAMILY)
def test_make_tiny_model_then_the_preset_loads_it_by_name(preset, tmp_path, monkeypatch, capsys):
    if preset.startswith("perch"):
        pytest.importorskip("tensorflow")
    folder = tmp_path / "stand-ins" / preset
    assert commands.main(["make-tiny-model", preset, str(folder)]) == 0
    printed = capsys.readouterr().out
    assert tiny.RANDOM_WEIGHTS in printed
    assert tiny.RANDOM_WEIGHTS in (folder / tiny.README_NAME).read_text()

    monkeypatch.setenv(LOCAL_MODELS_ENV, str(tmp_path / "stand-ins"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
    backend = registry.load_backend(preset, device="cpu")
    assert backend.preset == preset
    described = backend.describe()
    assert described["local_stand_in"]["folder"] == str(folder.resolve())  # provenance names the folder
    assert str(folder) in json.dumps(described)
    out = backend.embed_batch(short_input(backend))
    rows = np.asarray(out.embeddings)
    assert rows.shape[0] == 1 and rows.shape[-1] == backend.embedding_dim and np.isfinite(rows).all()


def test_metis_folder_holds_its_codec_and_statistics(tmp_path, monkeypatch):
    """The Metis stand-in is one self-sufficient folder; the script's default checkpoint (B3) finds it too."""
    folder = tiny.make_tiny_model("metis", tmp_path / "metis")
    monkeypatch.setenv(LOCAL_MODELS_ENV, str(tmp_path))
    backend = registry.load_backend("facebook/w2v-bert-2.0", preset="metis", device="cpu")  # B3's default --model
    details = backend.describe()
    assert details["local_stand_in"]["options_from_folder"] == ["codec", "stats"]
    assert details["codec"].startswith(str(folder.resolve())) and details["stats"].startswith(str(folder.resolve()))


def test_without_a_folder_the_preset_keeps_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCAL_MODELS_ENV, str(tmp_path))  # holds no wav2vec2-base folder
    assert registry.resolve("wav2vec2-base") == (registry.presets()["wav2vec2-base"], "facebook/wav2vec2-base")
    (tmp_path / "wav2vec2-base").mkdir()
    assert registry.resolve("wav2vec2-base")[1] == str(tmp_path / "wav2vec2-base")
    assert registry.resolve("facebook/wav2vec2-base")[1] == str(tmp_path / "wav2vec2-base")  # the preset's own id
    monkeypatch.delenv(LOCAL_MODELS_ENV)
    assert registry.resolve("wav2vec2-base")[1] == "facebook/wav2vec2-base"


def test_presets_that_need_nothing_and_unknown_families_are_refused(tmp_path, capsys):
    assert commands.main(["make-tiny-model", "ge2e", str(tmp_path / "ge2e")]) == 2
    assert "already runs offline" in capsys.readouterr().err and not (tmp_path / "ge2e").exists()
    assert commands.main(["make-tiny-model", "no-such", str(tmp_path / "x")]) == 2
    assert "unknown family 'no-such'" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f.txt").write_text("x")
    assert commands.main(["make-tiny-model", "wav2vec2", str(tmp_path / "full")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert commands.main(["make-tiny-model", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in tiny.FAMILIES) and "whisper-large-v3" in listed


@pytest.mark.slow
def test_embed_py_runs_a_preset_from_local_models(tmp_path):
    """As a user would: make-tiny-model PRESET DIR/PRESET, then AUDIO_EMBEDDINGS_LOCAL_MODELS=DIR embed.py --model PRESET."""
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "HF_HUB_OFFLINE": "1", LOCAL_MODELS_ENV: str(tmp_path / "m")}
    made = subprocess.run([sys.executable, "-m", "audio_embeddings", "make-tiny-model", "wav2vec2-base",
                           str(tmp_path / "m" / "wav2vec2-base")], capture_output=True, text=True, env=env, timeout=300)
    assert made.returncode == 0, made.stderr
    assert tiny.RANDOM_WEIGHTS in made.stdout
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "embed.py"), str(DEMO_CLIPS[0]), "--model", "wav2vec2-base",
                           "--output-dir", str(out), "--device", "cpu", "--formats", "npy,json", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / f"{DEMO_CLIPS[0].stem}.json").read_text())
    assert meta["model_name"] == "wav2vec2-base"
    assert meta["backend"]["local_stand_in"]["folder"] == str((tmp_path / "m" / "wav2vec2-base").resolve())
    assert np.load(out / f"{DEMO_CLIPS[0].stem}.npy").shape[-1] == 32
