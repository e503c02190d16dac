"""Shared fixtures: the package on sys.path, tiny saved models, and audio files written on the fly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# No test reaches a network: the Hugging Face libraries read these when first imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
PYTHON_DIR = REPO / "python"
for p in (str(PYTHON_DIR), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from tiny_models import build_tiny_model  # noqa: E402

DEMO_CLIPS = sorted((REPO / "data").glob("*.wav"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Factory: ``tiny_model(kind)`` -> directory of a saved tiny model (built once per kind)."""
    cache: dict[str, Path] = {}

    def make(kind: str = "wav2vec2") -> Path:
        if kind not in cache:
            cache[kind] = build_tiny_model(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return cache[kind]

    return make


@pytest.fixture(scope="session")
def tiny_perch_model(tmp_path_factory):
    """A tiny SavedModel with Perch 2.0's signature (tests/tiny_perch.py); skips without TensorFlow."""
    pytest.importorskip("tensorflow")
    import tiny_perch

    return tiny_perch.build_savedmodel(tmp_path_factory.mktemp("tiny-perch") / "perch_v2")


@pytest.fixture(scope="session")
def tiny_metis_model(tmp_path_factory):
    """Paths of a tiny Metis stack (tests/tiny_metis.py): ``model`` (w2v-bert dir), ``codec``, ``stats``."""
    import tiny_metis

    return tiny_metis.build(tmp_path_factory.mktemp("tiny-metis"))


@pytest.fixture(scope="session")
def tiny_speaker_checkpoints(tmp_path_factory):
    """Tiny ERes2NetV2 and CAM++ checkpoints with 3D-Speaker's key names: {"eres2netv2": path, "campplus": path}."""
    import torch
    from test_speaker_models import FAMILY, TINY_CKPT, random_state

    root = tmp_path_factory.mktemp("tiny-speaker")
    paths = {}
    for family, cfg in TINY_CKPT.items():
        paths[family] = root / f"tiny_{family}.ckpt"
        torch.save(random_state(FAMILY[family][1](**cfg), seed=6), paths[family])
    return paths


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory):
    """Factory: ``tiny_hf_model("whisper" | "clap")`` -> folder of a tiny saved model (tests/tiny_hf.py)."""
    import tiny_hf

    cache: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = tiny_hf.build(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return cache[kind]

    return make


#: What every preset loads in the tests instead of its published checkpoint: (fixture, argument).
#: ``None`` as the fixture: the weights ship in a package (GE2E, BirdNET).
STAND_INS = {
    "wav2vec2": ("tiny_model", "wav2vec2-stable"), "wav2vec2-base": ("tiny_model", "wav2vec2"),
    "hubert-base": ("tiny_model", "hubert"), "hubert-large": ("tiny_model", "hubert"),
    "wavlm-base-plus": ("tiny_model", "wavlm"), "wavlm-large": ("tiny_model", "wavlm"),
    "data2vec-audio-base": ("tiny_model", "data2vec-audio"),
    "perch_v2": ("tiny_perch_model", None), "perch_v2_cpu": ("tiny_perch_model", None),
    "metis": ("tiny_metis_model", None),
    "eres2netv2": ("tiny_speaker_checkpoints", "eres2netv2"),
    "eres2netv2_w24s4ep4": ("tiny_speaker_checkpoints", "eres2netv2"),
    "campplus": ("tiny_speaker_checkpoints", "campplus"),
    "whisper-base": ("tiny_hf_model", "whisper"), "whisper-small": ("tiny_hf_model", "whisper"),
    "whisper-medium": ("tiny_hf_model", "whisper"), "whisper-large-v3": ("tiny_hf_model", "whisper"),
    "clap-htsat-unfused": ("tiny_hf_model", "clap"), "larger-clap-general": ("tiny_hf_model", "clap"),
    "birdnet": (None, None), "ge2e": (None, None),
}


@pytest.fixture
def stand_in(request):
    """Factory: ``stand_in(preset)`` -> (source, loader options) of the preset's tiny local stand-in."""

    def make(name: str) -> tuple[str | None, dict]:
        fixture, arg = STAND_INS[name]
        if fixture is None:
            if name == "birdnet":
                from helpers import require_birdnet_model

                require_birdnet_model()
            return None, {}
        value = request.getfixturevalue(fixture)
        if fixture == "tiny_metis_model":
            return str(value["model"]), {k: str(v) for k, v in value.items() if k != "model"}
        if fixture == "tiny_speaker_checkpoints":
            return str(value[arg]), {}
        return str(value(arg) if callable(value) else value), {}

    return make


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (subprocesses, torchrun, big models); "
                                       "deselect with -m 'not slow'")
