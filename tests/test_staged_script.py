"""run_embedding_extraction.sh: all three stages with bad files (merged, listed, exit 1), --help, GPU detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import DEMO_CLIPS, REPO

SCRIPT = str(REPO / "run_embedding_extraction.sh")


def script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "GPUS")}
    env.update(AUDIO_EMBEDDINGS_PYTHON=sys.executable, OMP_NUM_THREADS="1", OUTPUT_DIR=str(tmp_path / "emb"),
               FINAL_OUTPUT_DIR=str(tmp_path / "final"), **extra)
    return env


def fake_nvidia_smi(folder: Path, listing: str, status: int = 0) -> str:
    """A PATH whose first folder holds an ``nvidia-smi`` printing ``listing``."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nprintf '%s' '{listing}'\nexit {status}\n")
    exe.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Three speakers with one utterance each, plus an empty and a corrupt file."""
    root = tmp_path_factory.mktemp("staged") / "data_root"
    for clip in DEMO_CLIPS:
        x, rate = sf.read(clip, dtype="float32")
        path = root / "corpus" / clip.stem.removeprefix("speech_") / "utt1.wav"
        path.parent.mkdir(parents=True)
        sf.write(path, x[: len(x) // 2], rate)
    (root / "corpus" / "de" / "empty.wav").write_bytes(b"")
    (root / "corpus" / "de" / "corrupt.wav").write_bytes(b"RIFF....WAVEjunk")
    return root


def test_all_stages_run_merge_the_good_files_and_exit_1_naming_the_bad_ones(data_root, tmp_path):
    pytest.importorskip("resemblyzer")
    env = script_env(tmp_path, GPUS="", MODEL="ge2e", DATA_ROOT=str(data_root))
    proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    err = proc.stderr
    assert proc.returncode == 1, err
    for stage in ("stage 1: extracting with 1 process(es) on cpu", "stage 2: merging", "stage 3: removing"):
        assert stage in err
    assert "error: 2 file(s) failed" in err
    assert f"  {data_root}/corpus/de/empty.wav: file is empty (0 bytes)" in err
    assert f"{data_root}/corpus/de/corrupt.wav: " in err.split("error: 2 file(s) failed")[1]
    assert "Traceback" not in err and "unbound variable" not in err
    summary = json.loads((tmp_path / "final" / "summary.json").read_text())
    assert summary["total_utterances"] == 3 and summary["total_speakers"] == 3
    assert (tmp_path / "final" / "speaker_embeddings.npy").is_file()
    assert not (tmp_path / "emb" / "utterances").exists()  # stage 3 ran
    assert "corrupt.wav" in (tmp_path / "emb" / "failures.csv").read_text()
    assert (tmp_path / "emb" / "logs" / "stage1.log").is_file()


def test_a_bad_model_stops_after_stage_1_with_one_line(data_root, tmp_path):
    env = script_env(tmp_path, GPUS="", MODEL="no-such-model", DATA_ROOT=str(data_root))
    proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "unknown model 'no-such-model'" in errors[0] and "stage 1 failed" in errors[1]
    assert "stage 2" not in proc.stderr and "Traceback" not in proc.stderr


def test_help_prints_the_usage(tmp_path):
    proc = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True, env=script_env(tmp_path),
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: run_embedding_extraction.sh")
    assert "NUM_CPU_PROCS" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("argv, message", [
    (["--stage"], "error: --stage needs a value"),
    (["--stage", "x"], "error: --stage must be a number"),
    (["--PATH", "/tmp"], "error: unknown option --PATH"),
    (["data_root"], "error: unknown argument 'data_root'"),
])
def test_bad_arguments_get_one_line(tmp_path, argv, message):
    proc = subprocess.run(["bash", SCRIPT, *argv], capture_output=True, text=True, env=script_env(tmp_path),
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1


def test_gpus_default_to_what_nvidia_smi_lists(tmp_path):
    listing = "GPU 0: NVIDIA A100 (UUID: GPU-aaa)\nGPU 1: NVIDIA A100 (UUID: GPU-bbb)\n"
    env = script_env(tmp_path, PATH=fake_nvidia_smi(tmp_path / "bin", listing))
    out = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True, env=env, timeout=60).stdout
    assert '(now: 0 1)' in out
    env = script_env(tmp_path, PATH=fake_nvidia_smi(tmp_path / "bin2", "", status=9))  # driver present, no GPU
    out = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True, env=env, timeout=60).stdout
    assert "(now: none, CPU)" in out
    env = script_env(tmp_path, PATH=fake_nvidia_smi(tmp_path / "bin3", listing), CUDA_VISIBLE_DEVICES="2,3")
    out = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True, env=env, timeout=60).stdout
    assert "(now: 2 3)" in out
    env = script_env(tmp_path, PATH=fake_nvidia_smi(tmp_path / "bin4", listing), GPUS="")  # GPUS= forces CPU
    out = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True, env=env, timeout=60).stdout
    assert "(now: none, CPU)" in out
