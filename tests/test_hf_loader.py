"""One Hugging Face loader (backends/_hf.py) for every transformers family: the same offline line, the same
layer-selection messages, the same provenance keys, and a hub id read from the local cache when offline."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")
pytest.importorskip("transformers")

from audio_embeddings import registry  # noqa: E402
from audio_embeddings.backends._hf import layer_index, parse_layers  # noqa: E402
from conftest import PYTHON_DIR  # noqa: E402
from helpers import noise  # noqa: E402

PROVENANCE_KEYS = {"checkpoint", "revision", "files", "weights_sha256", "model_type", "checkpoint_class",
                   "model_class", "feature_extractor"}
#: The transformers families, by preset (their default checkpoints are hub ids).
HF_PRESETS = ["wav2vec2-base", "whisper-base", "clap-htsat-unfused", "metis", "ast-audioset"]


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf-loader") / "clip.wav"
    sf.write(path, noise(1.5, 16000, seed=1), 16000)
    return path


def embed_py(*args, env=None):
    return subprocess.run([sys.executable, str(PYTHON_DIR / "embed.py"), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def unreachable_hub_env(tmp_path):
    """No HF_HUB_OFFLINE, an endpoint that refuses connections, an empty cache: a machine without network."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(PYTHON_DIR))
    return env


@pytest.mark.parametrize("preset", HF_PRESETS)
def test_every_transformers_family_gives_the_same_one_line_without_network(preset, wav, tmp_path):
    checkpoint = registry.PRESETS[preset].checkpoint
    proc = embed_py(wav, "--model", preset, "--output-dir", tmp_path / "out", env=unreachable_hub_env(tmp_path))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    # wav2vec2-base's line, with the preset and its checkpoint put in: one shape for every family
    assert lines[0] == (f"error: {preset}: {checkpoint}: not in the local cache and 127.0.0.1:9 is unreachable; "
                        f"download it on a machine with network (hf download {checkpoint} --local-dir <folder>) and "
                        f"pass the folder with --model PATH, or use an offline model (--model birdnet, --model ge2e)")


def _shape(line: str, model_dir) -> str:
    line = line.replace(str(model_dir), "<MODEL>")
    return re.sub(r"\d+ = the last", "N = the last", re.sub(r"0\.\.\d+", "0..N", line))


def test_layer_selection_errors_are_identical_for_wav2vec2_and_whisper(tiny_model, tiny_hf_model, wav, tmp_path):
    folders = {"wav2vec2": tiny_model("wav2vec2"), "whisper": tiny_hf_model("whisper")}
    shapes = {}
    for family, folder in folders.items():
        proc = embed_py(wav, "--model", folder, "--layers", "1,9", "--output-dir", tmp_path / family)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        shapes[family] = _shape(lines[0], folder)
    assert shapes["wav2vec2"] == shapes["whisper"] == (
        "error: <MODEL>: --layers 9 out of range: this model has hidden states 0..N "
        "(0 = the input to the first layer, N = the last layer's output)")

    for spec in ("1,x", "-1", [0, 7]):  # the same through the Python API, for syntax too
        messages = set()
        for folder in folders.values():
            with pytest.raises(ValueError) as info:
                registry.load_backend(str(folder), device="cpu", layers=spec)
            messages.add(_shape(str(info.value), folder))
        assert len(messages) == 1, messages
        assert next(iter(messages)).startswith("--layers ")


def test_parse_layers_and_layer_index():
    assert parse_layers("last", 3) is None and parse_layers(None, 3) is None
    assert parse_layers("all", 2) == [0, 1, 2] and parse_layers(" 0, 3 ", 3) == [0, 3] and parse_layers(2, 3) == [2]
    assert parse_layers([1, 2], 3) == [1, 2]
    with pytest.raises(ValueError, match=r"^--layers must be 'last', 'all' or comma-separated layer indices"):
        parse_layers("a,b", 3)
    with pytest.raises(ValueError, match=r"^--layers 4,5 out of range: this model has hidden states 0\.\.3 "):
        parse_layers("4,5", 3)
    with pytest.raises(ValueError, match=r"^--layers must be 'last', 'all' or layer indices"):
        parse_layers([], 3)
    assert layer_index(17, 24) == 17
    with pytest.raises(ValueError, match=r"^--layer 19 out of range: this model has hidden states 0\.\.18 "):
        layer_index(19, 18)


def test_every_family_records_provenance_in_one_shape(tiny_model, tiny_hf_model, tiny_metis_model):
    loaded = {
        "wav2vec2": registry.load_backend(str(tiny_model("wav2vec2")), device="cpu"),
        "whisper": registry.load_backend(str(tiny_hf_model("whisper")), device="cpu"),
        "clap": registry.load_backend(str(tiny_hf_model("clap")), device="cpu"),
        "ast": registry.load_backend(str(tiny_hf_model("ast")), device="cpu"),
        "metis": registry.load_backend(str(tiny_metis_model["model"]), device="cpu",
                                       codec=str(tiny_metis_model["codec"]), stats=str(tiny_metis_model["stats"])),
    }
    for family, backend in loaded.items():
        facts = backend.describe()
        assert PROVENANCE_KEYS <= set(facts), (family, PROVENANCE_KEYS - set(facts))
        assert facts["revision"] is None  # a local folder has no hub commit
        assert facts["checkpoint"] == str(backend.source) or facts["checkpoint"].endswith(os.path.basename(backend.source))
        assert "config.json" in facts["files"], (family, facts["files"])
        assert facts["weights_sha256"] and all(len(v) == 64 for v in facts["weights_sha256"].values()), family
        json.dumps(facts)


def _fake_hub_cache(hf_home, repo_id, folder, commit):
    """``folder`` laid out as huggingface_hub's cache of ``repo_id`` at ``commit``: blobs named by their
    SHA-256 (as LFS files are), a snapshot of links, refs/main."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    digests = {}
    for path in sorted(folder.iterdir()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        digests[path.name] = digest
        shutil.copy2(path, repo / "blobs" / digest)
        (snapshot / path.name).symlink_to(os.path.relpath(repo / "blobs" / digest, snapshot))
    return digests


def test_a_cached_hub_id_loads_offline_and_records_its_revision(tiny_model, wav, tmp_path):
    """HF_HUB_OFFLINE: a hub id in the local cache still loads (never a download), with its commit and blob digests."""
    repo_id, commit = "someone/tiny-wav2vec2", "0123456789abcdef0123456789abcdef01234567"
    digests = _fake_hub_cache(tmp_path / "hf", repo_id, tiny_model("wav2vec2"), commit)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PYTHON_DIR)}
    out = tmp_path / "out"
    proc = embed_py(wav, "--model", repo_id, "--output-dir", out, "--workers", "0", env=env)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads((out / "clip.json").read_text())["backend"]
    assert facts["checkpoint"] == repo_id and facts["revision"] == commit
    assert facts["weights_sha256"] == {"model.safetensors": digests["model.safetensors"]}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(facts["files"])
    assert facts["feature_extractor"] == "checkpoint" and facts["checkpoint_class"] == "Wav2Vec2Model"
    local = registry.load_backend(str(tiny_model("wav2vec2")), device="cpu")
    x = np.asarray(sf.read(wav, dtype="float32")[0])
    from audio_embeddings.audio import prepare
    from audio_embeddings.pipeline import embed_audio

    np.testing.assert_allclose(np.load(out / "clip.npy"), embed_audio(local, prepare(x, 16000, target_rate_hz=16000)).embeddings,
                               rtol=0, atol=1e-5)
