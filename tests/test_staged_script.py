"""run_embedding_extraction.sh: all three stages with bad files (merged, listed, exit 1), --help, GPU detection,
stopping by SIGINT/SIGTERM (exit 130/143, nothing deleted, a rerun resumes) and the check before the clean-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- stopping, checking before clean-up, GPUs ------------------------------------------------------


def stage_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (left-over stage processes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def long_root(tmp_path_factory) -> Path:
    """150 utterances of 3 s (6 speakers): stage 1 with two CPU processes runs for a few seconds."""
    root = tmp_path_factory.mktemp("long") / "data_root"
    rng = np.random.default_rng(0)
    for clip in DEMO_CLIPS:
        x, rate = sf.read(clip, dtype="float32")
        n = 3 * rate
        for spk in range(2):
            for u in range(25):
                path = root / "corpus" / f"{clip.stem.removeprefix('speech_')}{spk}" / f"utt{u:02d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                start = int(rng.integers(0, len(x) - n))
                sf.write(path, x[start:start + n] * (0.6 + 0.2 * spk), rate)
    return root


def final_values(final: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids = [u["id"] for u in json.loads((final / "utterance_list.json").read_text())]
    return ids, np.load(final / "utterance_embeddings.npy"), np.load(final / "speaker_embeddings.npy")


@pytest.mark.slow
def test_sigint_to_the_process_group_stops_stage_1_keeps_its_files_and_a_rerun_completes(long_root, tmp_path):
    pytest.importorskip("resemblyzer")
    ref = script_env(tmp_path / "ref", GPUS="", MODEL="ge2e", DATA_ROOT=str(long_root), NUM_CPU_PROCS="2",
                     MASTER_PORT="29641")
    proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=ref, timeout=600)
    assert proc.returncode == 0, proc.stderr

    env = script_env(tmp_path, GPUS="", MODEL="ge2e", DATA_ROOT=str(long_root), NUM_CPU_PROCS="2",
                     MASTER_PORT="29642")
    utterances = tmp_path / "emb" / "utterances"
    # SIGINT back to its default first: bash cannot trap a signal ignored when it starts (as under a job
    # started with '&' by a non-interactive shell, where CI may run the tests)
    run = subprocess.Popen(["bash", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while len(list(utterances.rglob("*.npz"))) < 5:
        assert run.poll() is None and time.monotonic() < deadline, "stage 1 ended before it could be interrupted"
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the script's whole process group
    _, err = run.communicate(timeout=300)
    assert run.returncode == 130, err
    assert stage_errors(err) == ["error: stopped by SIGINT during stage 1; rerun the same command to resume "
                                 f"(done files are kept in {tmp_path / 'emb'})"], err
    assert "stage 2" not in err and "stage 3" not in err and "Traceback" not in err, err
    kept = list(utterances.rglob("*.npz"))
    assert 5 <= len(kept) < 150  # stopped part-way; the done files are kept for the rerun
    assert not (tmp_path / "final").exists()  # no merged output claiming completeness
    stopped = [json.loads(p.read_text()) for p in (tmp_path / "emb").glob("summary*.json")]
    assert stopped and all(s["status"] == "interrupted" for s in stopped)
    assert not processes_mentioning(str(tmp_path / "emb"))  # every stage process has ended

    proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "emb" / "summary.json").read_text())["files_skipped"] >= len(kept)  # resumed
    ids, utt, spk = final_values(tmp_path / "final")
    ref_ids, ref_utt, ref_spk = final_values(tmp_path / "ref" / "final")
    assert ids == ref_ids and len(ids) == 150
    np.testing.assert_allclose(utt, ref_utt, rtol=0, atol=1e-5)
    np.testing.assert_allclose(spk, ref_spk, rtol=0, atol=1e-5)
    assert not utterances.exists()  # stage 3 ran after the checked merge


def merge_that_waits(folder: Path, mark: Path) -> str:
    """A Python stand-in that records its pid and sleeps when asked to merge (stage 2), else runs Python."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "python"
    exe.write_text(f'#!/bin/sh\nfor a in "$@"; do if [ "$a" = --merge ]; then echo $$ > "{mark}"; sleep 120; fi; done\n'
                   f'exec "{sys.executable}" "$@"\n')
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.slow
def test_sigterm_to_the_script_alone_during_the_merge_stops_it_and_skips_the_clean_up(data_root, tmp_path):
    pytest.importorskip("resemblyzer")
    env = script_env(tmp_path, GPUS="", MODEL="ge2e", DATA_ROOT=str(data_root))
    proc = subprocess.run(["bash", SCRIPT, "--stop_stage", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr  # the two bad files
    mark = tmp_path / "merging.pid"
    slow_env = {**env, "AUDIO_EMBEDDINGS_PYTHON": merge_that_waits(tmp_path / "bin", mark)}
    run = subprocess.Popen(["bash", SCRIPT, "--stage", "2"], env=slow_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not mark.is_file() or not mark.read_text().strip():
        assert run.poll() is None and time.monotonic() < deadline, "stage 2 did not start"
        time.sleep(0.01)
    merger = int(mark.read_text())
    run.send_signal(signal.SIGTERM)  # to the script only: it passes the signal on to the stage
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert stage_errors(err) == ["error: stopped by SIGTERM during stage 2; rerun the same command to resume "
                                 f"(done files are kept in {tmp_path / 'emb'})"]
    assert "stage 3" not in err and (tmp_path / "emb" / "utterances").is_dir()
    assert not Path(f"/proc/{merger}").exists()  # the merge process was ended, not left behind

    proc = subprocess.run(["bash", SCRIPT, "--stage", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "stage 3: removing" in proc.stderr, proc.stderr
    assert json.loads((tmp_path / "final" / "summary.json").read_text())["total_utterances"] == 3


@pytest.mark.slow
def test_the_clean_up_is_refused_when_the_merged_output_lacks_an_utterance(data_root, tmp_path):
    pytest.importorskip("resemblyzer")
    env = script_env(tmp_path, GPUS="", MODEL="ge2e", DATA_ROOT=str(data_root))
    proc = subprocess.run(["bash", SCRIPT, "--stop_stage", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    final = tmp_path / "final"  # a merge that missed one utterance (as one run over a partial stage 1 would)
    listed = json.loads((final / "utterance_list.json").read_text())
    (final / "utterance_list.json").write_text(json.dumps(listed[1:]))
    summary = json.loads((final / "summary.json").read_text())
    (final / "summary.json").write_text(json.dumps({**summary, "total_utterances": len(listed) - 1}))
    proc = subprocess.run(["bash", SCRIPT, "--stage", "3"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    errors = stage_errors(proc.stderr)
    assert errors[0].startswith(f"error: {final} holds 2 utterances but stage 1 finished 3 (not merged: "
                                f"{listed[0]['id']})")
    assert errors[0].endswith(f"stage 3 (clean-up) not run: the per-utterance files stay in "
                              f"{tmp_path / 'emb' / 'utterances'}")
    assert len(list((tmp_path / "emb" / "utterances").rglob("*.npz"))) == 3  # nothing deleted
    env_elsewhere = {**env, "FINAL_OUTPUT_DIR": str(tmp_path / "nothing")}
    proc = subprocess.run(["bash", SCRIPT, "--stage", "3"], capture_output=True, text=True, env=env_elsewhere,
                          timeout=120)
    assert proc.returncode == 1 and "no readable merged output" in proc.stderr
    assert (tmp_path / "emb" / "utterances").is_dir()


@pytest.mark.slow
def test_gpus_on_a_machine_where_torch_sees_no_cuda_gpu_is_one_line_and_exit_2(data_root, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    env = script_env(tmp_path, GPUS="0 1 2 3", MODEL="ge2e", DATA_ROOT=str(data_root))
    proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ['error: GPUS="0 1 2 3" but torch sees no CUDA GPU here; leave GPUS empty '
                                        "(GPUS=) to run on the CPU with NUM_CPU_PROCS processes"]
    assert not (tmp_path / "emb").exists()  # nothing started
