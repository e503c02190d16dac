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
