"""MATLAB ``B1_model_perch(..., 'Model', 'birdnet', 'Detections', true, 'MinConf', ...)`` under GNU Octave:
``info.detections`` holds the rows ``perch_runner.py detect`` writes for the same file and settings.

Skipped without ``octave-cli`` (failed instead with ``REQUIRE_OCTAVE=1``, as tests/test_matlab.py).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import soundfile as sf

from audio_embeddings.runner.cli import main as runner_main
from helpers import REPO, require_birdnet_model
from test_perch_runner import RATE, make_clip

require_birdnet_model()


def _mstr(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@pytest.mark.slow
def test_b1_wrapper_returns_detections_equal_to_detect(tmp_path):
    octave = shutil.which("octave-cli")
    if not octave:
        if os.environ.get("REQUIRE_OCTAVE") == "1":
            pytest.fail("REQUIRE_OCTAVE=1 but octave-cli is not on PATH", pytrace=False)
        pytest.skip("octave-cli not installed")
    clip = tmp_path / "dawn chorus.wav"  # a space in the path, on purpose
    sf.write(str(clip), np.concatenate([make_clip("high_tone", 3), make_clip("noise_burst", 4)]), RATE,
             subtype="FLOAT")
    assert runner_main(["detect", "--min-conf", "0.02", "--overlap", "1", "--rtype", "csv", "--quiet", str(clip),
                        str(tmp_path / "ref")]) == 0
    result = tmp_path / "octave_detections.mat"
    code = (f"addpath({_mstr(REPO / 'matlab')}); "
            f"[emb, info] = B1_model_perch({_mstr(clip)}, 'Model', 'birdnet', 'OutputDir', {_mstr(tmp_path / 'out')}, "
            "'Device', 'cpu', 'Detections', true, 'MinConf', 0.02, 'Overlap', 1, 'Rtype', 'table'); "
            "d = info.detections; n = numel(info.detection_files); "
            f"save('-v7', {_mstr(result)}, 'd', 'n', 'emb');")
    env = {**os.environ, "AUDIO_EMBEDDINGS_PYTHON": sys.executable}
    done = subprocess.run([octave, "--no-history", "--eval", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = scipy.io.loadmat(str(result), simplify_cells=True)
    d = got["d"]
    with (tmp_path / "ref" / "dawn chorus.BirdNET.results.csv").open(newline="") as fh:
        ref = list(csv.DictReader(fh))
    assert len(ref) > 0 and np.size(d["confidence"]) == len(ref)
    np.testing.assert_allclose(np.ravel(d["start_s"]), [float(r["Start (s)"]) for r in ref])
    np.testing.assert_allclose(np.ravel(d["confidence"]), [float(r["Confidence"]) for r in ref], atol=5e-5)
    assert list(np.ravel(d["common_name"])) == [r["Common name"] for r in ref]
    assert got["n"] == 2  # 'Rtype', 'table' given: the selection table, and the .mat added for INFO
    assert got["emb"].shape == (3, 1024)  # 6 s: windows at 0, 2, 4 s (3 s each, 'Overlap', 1)
