"""Single-file runs never replace outputs made from another input or other settings (issue 21, item 4).

``B2 a.wav`` then ``B2 b.wav`` into one folder (same default basename) used to replace a's results
with b's; a second alignment (EEG rate after fMRI TR) replaced the first. Now a single-file run
whose outputs exist refuses with one line naming ``--overwrite`` and ``--basename`` (MATLAB:
``'Overwrite'``, ``'Basename'``), exactly as corpus runs do, and a rerun with the same input and
settings is "already done". Checked through the scripts' ``main`` (B2, embed.py, in this process: their
exit status and what they print), the Python entry point (``extract_perch``) and the MATLAB wrapper (GNU
Octave, which runs the scripts as subprocesses).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from helpers import noise, require_birdnet_model

PYTHON_DIR = REPO / "python"
B2 = str(PYTHON_DIR / "B2_model_wav2vec2.py")
EMBED = str(PYTHON_DIR / "embed.py")


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """Two different 4 s recordings at 16 kHz."""
    folder = tmp_path_factory.mktemp("inputs")
    a, b = folder / "a.wav", folder / "b.wav"
    sf.write(a, noise(4.0, 16000, seed=1), 16000)
    sf.write(b, noise(4.0, 16000, seed=2), 16000)
    return a, b


@pytest.fixture
def run_main(capsys):
    """``run_main(script, *argv)``: the script's ``main`` in this process (no interpreter to start), as a
    CompletedProcess (its exit status and what it printed)."""
    from audio_embeddings.scripts import EMBED as EMBED_DEFAULTS, WAV2VEC2, main

    scripts = {B2: WAV2VEC2, EMBED: EMBED_DEFAULTS}

    def call(script: str, *argv: object) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            status = main(scripts[script], [str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code
        printed = capsys.readouterr()
        return subprocess.CompletedProcess([script, *map(str, argv)], status, printed.out, printed.err)

    return call


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_a_second_input_with_the_same_basename_is_refused_and_the_first_results_stay(tmp_path, tiny_model,
                                                                                     two_inputs, run_main):
    model, (a, b) = tiny_model(), two_inputs
    out = tmp_path / "out"
    first = run_main(B2, a, "--model", model, "--output-dir", out)
    assert first.returncode == 0, first.stderr
    npy = out / "wav2vec2_embeddings.npy"
    before = np.load(npy)

    again = run_main(B2, a, "--model", model, "--output-dir", out)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stderr

    other = run_main(B2, b, "--model", model, "--output-dir", out)
    assert other.returncode == 2, other.stderr
    lines = _errors(other.stderr)
    assert len(lines) == 1, other.stderr
    assert "made from another input (a.wav)" in lines[0]
    assert "--overwrite" in lines[0] and "--basename" in lines[0]
    assert "Traceback" not in other.stderr
    np.testing.assert_array_equal(np.load(npy), before)  # a's results intact

    kept = run_main(B2, b, "--model", model, "--output-dir", out, "--basename", "b_embeddings")
    assert kept.returncode == 0, kept.stderr
    assert not np.array_equal(np.load(out / "b_embeddings.npy"), before)
    np.testing.assert_array_equal(np.load(npy), before)

    replaced = run_main(B2, b, "--model", model, "--output-dir", out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    np.testing.assert_array_equal(np.load(npy), np.load(out / "b_embeddings.npy"))


def test_a_second_alignment_of_the_same_file_does_not_cost_the_first(tmp_path, tiny_model, two_inputs, run_main):
    """fMRI TR first, then an EEG rate into the same folder: refused, the TR outputs stay; --basename keeps both."""
    model, (a, _) = tiny_model(), two_inputs
    out = tmp_path / "out"
    fmri = run_main(EMBED, a, "--model", model, "--output-dir", out, "--basename", "stim", "--tr", "2")
    assert fmri.returncode == 0, fmri.stderr
    aligned = out / "stim_aligned.npy"
    fmri_rows = np.load(aligned)

    eeg = run_main(EMBED, a, "--model", model, "--output-dir", out, "--basename", "stim", "--target-rate-hz", "100")
    assert eeg.returncode == 2, eeg.stderr
    (line,) = _errors(eeg.stderr)
    assert "made with other settings" in line and "--overwrite" in line and "--basename" in line
    np.testing.assert_array_equal(np.load(aligned), fmri_rows)

    both = run_main(EMBED, a, "--model", model, "--output-dir", out, "--basename", "stim_eeg",
                    "--target-rate-hz", "100")
    assert both.returncode == 0, both.stderr
    assert np.load(out / "stim_eeg_aligned.npy").shape[0] > 100 * fmri_rows.shape[0]  # 100 Hz, not TR 2
    np.testing.assert_array_equal(np.load(aligned), fmri_rows)


def test_the_python_entry_point_refuses_to_replace_another_inputs_fragments(tmp_path, two_inputs):
    """``extract_perch`` (the seed's Python API) with BirdNET: another input under one name raises."""
    require_birdnet_model()
    from audio_embeddings.scripts import extract_perch

    a, b = two_inputs
    shared = tmp_path / "b_as_a"
    shared.mkdir()
    impostor = shared / "a.wav"  # another recording under a's name: same basename, other contents
    shutil.copy(b, impostor)
    out = tmp_path / "out"
    first = extract_perch(str(a), str(out), model="birdnet")
    again = extract_perch(str(a), str(out), model="birdnet")
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    with pytest.raises(RuntimeError):
        extract_perch(str(impostor), str(out), model="birdnet")
    np.testing.assert_array_equal(np.load(first.npy_file), first.embeddings)


@pytest.mark.slow
def test_matlab_wrapper_refuses_with_the_matlab_names(tmp_path, tiny_model, two_inputs):
    octave = shutil.which("octave-cli")
    if not octave:
        if os.environ.get("REQUIRE_OCTAVE") == "1":
            pytest.fail("REQUIRE_OCTAVE=1 but octave-cli is not on PATH", pytrace=False)
        pytest.skip("octave-cli not installed (apt-get install octave)")
    model, (a, b) = tiny_model(), two_inputs
    out = tmp_path / "out"

    def call(audio: Path) -> subprocess.CompletedProcess:
        code = (f"addpath('{REPO / 'matlab'}'); "
                f"try, B2_model_wav2vec2('{audio}', 'Model', '{model}', 'OutputDir', '{out}', 'Device', 'cpu'); "
                "disp('ok'); catch err, disp(err.message); exit(3); end")
        env = {**os.environ, "AUDIO_EMBEDDINGS_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
               "OMP_NUM_THREADS": "1"}
        return subprocess.run([octave, "--no-history", "--eval", code], capture_output=True, text=True, env=env,
                              timeout=300)

    first = call(a)
    assert first.returncode == 0, first.stdout + first.stderr
    before = np.load(out / "wav2vec2_embeddings.npy")
    second = call(b)
    assert second.returncode == 3, second.stdout + second.stderr
    assert "made from another input (a.wav)" in second.stdout
    assert "'Overwrite'" in second.stdout and "'Basename'" in second.stdout
    np.testing.assert_array_equal(np.load(out / "wav2vec2_embeddings.npy"), before)
