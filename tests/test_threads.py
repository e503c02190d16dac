"""Threads that fit the machine (issue 21, item 5): usable cores, the default plan, the summary's record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf

from conftest import REPO
from helpers import noise

from audio_embeddings.corpus.threads import limit_model_threads, plan_threads, usable_cores

EMBED = str(REPO / "python" / "embed.py")


def affinity() -> int:
    return len(os.sched_getaffinity(0))


def test_usable_cores_are_the_affinity_without_other_limits(tmp_path):
    assert usable_cores({}, cgroup_root=tmp_path) == (affinity(), "affinity")


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1)])
def test_a_cgroup_v2_quota_bounds_the_cores(tmp_path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    cores, source = usable_cores({}, cgroup_root=tmp_path)
    if expected is None or expected >= affinity():
        assert (cores, source) == (affinity(), "affinity")
    else:
        assert (cores, source) == (expected, "cgroup")


def test_a_cgroup_v1_quota_bounds_the_cores(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores({}, cgroup_root=tmp_path)[0] == 1


def test_slurm_cpus_per_task_bounds_the_cores(tmp_path):
    assert usable_cores({"SLURM_CPUS_PER_TASK": "1"}, cgroup_root=tmp_path) == (1, "SLURM_CPUS_PER_TASK")
    assert usable_cores({"SLURM_CPUS_PER_TASK": "9999"}, cgroup_root=tmp_path) == (affinity(), "affinity")
    assert usable_cores({"SLURM_CPUS_PER_TASK": "junk"}, cgroup_root=tmp_path)[1] == "affinity"


@pytest.mark.parametrize("cores, corpus_plan, files_plan", [
    (1, (0, 1), (0, 1)), (2, (0, 1), (0, 1)), (3, (1, 1), (0, 2)), (4, (1, 2), (0, 3)),
    (8, (2, 5), (0, 7)), (64, (4, 59), (0, 63))])
def test_the_default_plan_never_has_more_busy_threads_than_cores(cores, corpus_plan, files_plan):
    for corpus, expected in ((True, corpus_plan), (False, files_plan)):
        plan = plan_threads(cores=cores, corpus=corpus)
        assert (plan.workers, plan.model_threads) == expected
        assert plan.model_threads >= 1 and plan.workers + plan.model_threads <= cores
        assert plan.chosen_by == "default"


def test_the_users_choice_is_kept_and_the_other_fills_the_rest():
    assert plan_threads(cores=8, workers=2).model_threads == 5
    assert plan_threads(cores=8, threads=3).workers == 4  # at most 4 decoding processes
    assert plan_threads(cores=8, threads=7).workers == 1
    plan = plan_threads(cores=2, workers=3, threads=5)  # oversubscribing on purpose is allowed
    assert (plan.workers, plan.model_threads, plan.chosen_by) == (3, 5, "--workers --threads")


def test_limit_model_threads_sets_torchs_threads_within_the_run_only():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with limit_model_threads(1) as done:
        assert torch.get_num_threads() == 1 and done["torch"] == 1
    assert torch.get_num_threads() == before
    if before > 1:
        with limit_model_threads(before + 1):
            assert torch.get_num_threads() == before + 1
        assert torch.get_num_threads() == before


@pytest.mark.slow
def test_a_corpus_run_records_its_thread_plan_and_gives_birdnet_its_threads(tmp_path):
    from helpers import require_birdnet_model

    require_birdnet_model()
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(3):
        sf.write(corpus / f"r{i}.wav", noise(3.5, 48000, seed=i), 48000)
    env = {**os.environ, "SLURM_CPUS_PER_TASK": "1"}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, EMBED, str(corpus), "--model", "birdnet", "--output-dir", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threads"] == {"cores": 1, "cores_from": "SLURM_CPUS_PER_TASK", "workers": 0,
                                  "model_threads": 1, "chosen_by": "default"}
    assert summary["backend"]["num_threads"] == 1

    out2 = tmp_path / "out2"
    proc = subprocess.run([sys.executable, EMBED, str(corpus), "--model", "birdnet", "--output-dir", str(out2),
                           "--workers", "1", "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out2 / "summary.json").read_text())
    assert (summary["threads"]["workers"], summary["threads"]["model_threads"]) == (1, 2)
    assert summary["threads"]["chosen_by"] == "--workers --threads"
    assert summary["backend"]["num_threads"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("flag, value", [("--threads", "0"), ("--workers", "-1"), ("--batch-size", "0")])
def test_nonsense_counts_are_usage_errors(tmp_path, flag, value):
    proc = subprocess.run([sys.executable, EMBED, str(REPO / "data"), "--model", "ge2e", "--output-dir",
                           str(tmp_path), flag, value], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert flag in proc.stderr and "Traceback" not in proc.stderr
