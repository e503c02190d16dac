"""Shards from any array scheduler (Slurm, SGE, PBS Pro, Torque, LSF) and torchrun, and runs that always deliver.

Unit tests read each scheduler's environment as its jobs see it; the end-to-end tests run an SGE-style
array of two ``embed.py`` tasks (the second merges, exactly like a Slurm array) and a torchrun run of B4
with bad files on both ranks (every good file merged, exit 1 listing the bad ones).
"""

from __future__ import annotations

import json
import os
import re
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.corpus.report import RunReport, all_shards_reported, merge_reports
from audio_embeddings.corpus.shard import SCHEDULERS, Shard, parse_array_range, resolve_shard
from conftest import DEMO_CLIPS
from helpers import PYTHON_DIR

# The variables of every scheduler and launcher: removed from the environment of the subprocess tests.
SCHEDULER_VARS = {v for s in SCHEDULERS for v in (s.index, s.first, s.last, s.count, s.step) if v} | {
    "AUDIO_EMBEDDINGS_ARRAY", "RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCHEDULER_VARS}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


# --- unit: one table row per scheduler ----------------------------------------------------------

@pytest.mark.parametrize("environ, index, count, source", [
    # Slurm: sbatch --array=1-4 (task 3), --array=0-3, --array=1-7:2 (1, 3, 5, 7: task 5)
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, 2, 4, "slurm"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, 0, 4, "slurm"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7",
      "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, 2, 4, "slurm"),
    # SGE: qsub -t 1-2 (task 2), qsub -t 1-9:2 (1, 3, 5, 7, 9: task 5), qsub -t 10-12 (task 10)
    ({"SGE_TASK_ID": "2", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "2", "SGE_TASK_STEPSIZE": "1"}, 1, 2, "sge"),
    ({"SGE_TASK_ID": "5", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "9", "SGE_TASK_STEPSIZE": "2"}, 2, 5, "sge"),
    ({"SGE_TASK_ID": "10", "SGE_TASK_FIRST": "10", "SGE_TASK_LAST": "12", "SGE_TASK_STEPSIZE": "1"}, 0, 3, "sge"),
    # PBS Pro (qsub -J 1-8, task 3) and Torque (qsub -t 0-3, task 0): the range comes from AUDIO_EMBEDDINGS_ARRAY
    ({"PBS_ARRAY_INDEX": "3", "AUDIO_EMBEDDINGS_ARRAY": "1-8"}, 2, 8, "pbs"),
    ({"PBS_ARRAY_INDEX": "4", "AUDIO_EMBEDDINGS_ARRAY": "0-8:2"}, 2, 5, "pbs"),
    ({"PBS_ARRAYID": "0", "AUDIO_EMBEDDINGS_ARRAY": "0-3"}, 0, 4, "torque"),
    # LSF: bsub -J "a[1-4]" (task 4; the array starts at 1), "a[1-9:4]" (1, 5, 9: task 9), "a[5-8]" with the range
    ({"LSB_JOBINDEX": "4", "LSB_JOBINDEX_END": "4"}, 3, 4, "lsf"),
    ({"LSB_JOBINDEX": "9", "LSB_JOBINDEX_END": "9", "LSB_JOBINDEX_STEP": "4"}, 2, 3, "lsf"),
    ({"LSB_JOBINDEX": "6", "LSB_JOBINDEX_END": "8", "AUDIO_EMBEDDINGS_ARRAY": "5-8"}, 1, 4, "lsf"),
    # array task x torchrun rank: the array shard split again
    ({"SGE_TASK_ID": "2", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "2", "SGE_TASK_STEPSIZE": "1",
      "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 3, 4, "sge+torchrun"),
    ({"RANK": "1", "WORLD_SIZE": "2"}, 1, 2, "torchrun"),
])
def test_each_scheduler_s_array_task_is_its_shard(environ, index, count, source):
    shard = resolve_shard(None, environ)
    assert (shard.index, shard.count, shard.source) == (index, count, source)


@pytest.mark.parametrize("environ", [
    {},
    {"SGE_TASK_ID": "undefined", "SGE_TASK_FIRST": "undefined", "SGE_TASK_LAST": "undefined",
     "SGE_TASK_STEPSIZE": "undefined"},  # SGE outside an array
    {"LSB_JOBINDEX": "0"},  # LSF sets 0 in every job that is not an array element
    {"PBS_ARRAY_INDEX": ""},
])
def test_jobs_that_are_not_array_tasks_take_the_whole_corpus(environ):
    assert resolve_shard(None, environ) == Shard(0, 1)
    assert resolve_shard(None, environ).source == ""


def test_every_task_of_an_array_takes_its_own_shard_and_together_they_cover_it():
    items = list(range(23))
    for first, last, step in ((1, 8, 1), (0, 14, 2), (3, 3, 1)):
        tasks = range(first, last + 1, step)
        shards = [resolve_shard(None, {"SGE_TASK_ID": str(t), "SGE_TASK_FIRST": str(first), "SGE_TASK_LAST": str(last),
                                       "SGE_TASK_STEPSIZE": str(step)}) for t in tasks]
        assert sorted(s.index for s in shards) == list(range(len(tasks)))
        assert sorted(sum((s.select(items) for s in shards), [])) == items


@pytest.mark.parametrize("environ, needs", [
    ({"PBS_ARRAY_INDEX": "3"}, "PBS Pro does not export the array's range"),
    ({"PBS_ARRAYID": "3"}, "Torque does not export the array's range"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1"}, "SLURM_ARRAY_TASK_COUNT is not"),
    ({"LSB_JOBINDEX": "3"}, "LSB_JOBINDEX_END is not"),
    ({"SGE_TASK_ID": "3", "SGE_TASK_LAST": "4"}, "SGE_TASK_FIRST is not"),
])
def test_an_array_task_whose_range_is_unknown_gets_one_line(environ, needs):
    with pytest.raises(ValueError) as info:
        resolve_shard(None, environ)
    message = str(info.value)
    assert needs in message and "AUDIO_EMBEDDINGS_ARRAY=FIRST-LAST[:STEP]" in message and "--shard I/N" in message
    assert "\n" not in message


@pytest.mark.parametrize("environ, words", [
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"},  # --array=1,5,9
     "SLURM_ARRAY_TASK_ID=9 is not a task of the array 1-3"),
    ({"SGE_TASK_ID": "4", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "9", "SGE_TASK_STEPSIZE": "2"},
     "SGE_TASK_ID=4 is not a task of the array 1-9:2"),
    ({"PBS_ARRAY_INDEX": "9", "AUDIO_EMBEDDINGS_ARRAY": "1-8"}, "PBS_ARRAY_INDEX=9 is not a task of the array 1-8"),
    ({"PBS_ARRAY_INDEX": "3", "AUDIO_EMBEDDINGS_ARRAY": "8"}, "AUDIO_EMBEDDINGS_ARRAY must be the array's range"),
    ({"SGE_TASK_ID": "x1"}, "SGE_TASK_ID='x1' is not a whole number"),
])
def test_inconsistent_array_settings_get_one_line(environ, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        resolve_shard(None, environ)


def test_an_explicit_shard_wins_over_the_scheduler_and_is_backward_compatible():
    sge = {"SGE_TASK_ID": "2", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "2", "SGE_TASK_STEPSIZE": "1"}
    shard = resolve_shard("0/3", sge)
    assert shard == Shard(0, 3) and shard.source == "--shard"
    assert Shard(1, 2, "lsf") == Shard(1, 2) and hash(Shard(1, 2, "lsf")) == hash(Shard(1, 2))
    assert parse_array_range("1-8") == (1, 8, 1) and parse_array_range("0-15:2") == (0, 8, 2)


def test_the_summary_records_the_shard_source_and_the_merge_keeps_it(tmp_path):
    for task in (1, 2):
        env = {"LSB_JOBINDEX": str(task), "LSB_JOBINDEX_END": "2"}
        report = RunReport(tmp_path, shard=resolve_shard(None, env), context={"model": "m"})
        report.done(1.0)
        path = report.write()
        assert json.loads(path.read_text())["shard"] == {"index": task - 1, "count": 2, "source": "lsf"}
    merged = merge_reports(tmp_path)
    assert merged["shard"] == {"index": 0, "count": 1, "source": "lsf"} and merged["status"] == "complete"


def test_a_stopped_shard_has_not_reported_and_its_merge_is_incomplete(tmp_path):
    for i, status in ((0, None), (1, "interrupted")):
        report = RunReport(tmp_path, shard=Shard(i, 2, "sge"), context={"model": "m"})
        report.done(1.0)
        if status:
            report.extra.update(status=status, files_not_done=5)
        report.write()
    assert not all_shards_reported(tmp_path, 2)  # the last task to finish does not merge a partial result
    merged = merge_reports(tmp_path)
    assert merged["status"] == "incomplete: shards stopped" and merged["shards_stopped"] == [1]
    assert merged["files_not_done"] == 5
    report = RunReport(tmp_path, shard=Shard(1, 2, "sge"), context={"model": "m"})  # the rerun of task 2
    report.write()
    assert all_shards_reported(tmp_path, 2)


@pytest.mark.slow
def test_merging_an_incomplete_array_writes_no_final_files_and_says_why(tmp_path):
    out = tmp_path / "out"
    for i, status in ((0, None), (1, "interrupted")):
        report = RunReport(out, shard=Shard(i, 3, "slurm"), context={"model": "ge2e"})
        if status:
            report.extra.update(status=status, files_not_done=7)
        report.write()
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "B4_model_speaker.py"), "--merge", "--model", "ge2e",
                           "--output-dir", str(out)], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the merge is incomplete" in errors[0]
    assert "shard(s) 2 have not reported" in errors[0] and "shard(s) 1 were stopped" in errors[0]
    assert "7 file(s) not done" in errors[0] and "Traceback" not in proc.stderr
    assert not (out / "final_embeddings").exists()


@pytest.mark.slow
def test_a_pbs_array_task_without_its_range_is_one_line_before_any_model_loads(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    sf.write(root / "a.wav", np.zeros(16000, np.float32), 16000)
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "embed.py"), str(root), "--model", "ge2e",
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True,
                          env=clean_env(PBS_ARRAY_INDEX="2"), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: PBS_ARRAY_INDEX=2 is set but PBS Pro does not export the array's range")


# --- end to end ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def speech_root(tmp_path_factory) -> Path:
    """Six short utterances of three voices (dataset/speaker/utt.wav)."""
    root = tmp_path_factory.mktemp("sched") / "data_root"
    for clip in DEMO_CLIPS:
        x, rate = sf.read(clip, dtype="float32")
        for u, part in enumerate((x[: len(x) // 2], x[len(x) // 2:])):
            path = root / "corpus" / clip.stem.removeprefix("speech_") / f"utt{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, part, rate)
    return root


def array_of_two(root: Path, out: Path, task_env) -> list[subprocess.CompletedProcess]:
    """Tasks 1 and 2 of a two-task array, one after the other, as two ``embed.py`` processes."""
    runs = []
    for task in (1, 2):
        runs.append(subprocess.run(
            [sys.executable, str(PYTHON_DIR / "embed.py"), str(root), "--model", "ge2e", "--output-dir", str(out),
             "--device", "cpu", "--workers", "0", "--formats", "npy"],
            capture_output=True, text=True, env=clean_env(**task_env(task)), timeout=300))
    return runs


@pytest.mark.slow
def test_an_sge_array_splits_the_corpus_and_its_last_task_merges_like_a_slurm_array(speech_root, tmp_path):
    pytest.importorskip("resemblyzer")
    sge = array_of_two(speech_root, tmp_path / "sge", lambda t: {
        "SGE_TASK_ID": str(t), "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "2", "SGE_TASK_STEPSIZE": "1"})
    slurm = array_of_two(speech_root, tmp_path / "slurm", lambda t: {
        "SLURM_ARRAY_TASK_ID": str(t), "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "2"})
    for proc in sge + slurm:
        assert proc.returncode == 0, proc.stderr
    assert "merged 2 shard(s): 6 done" in sge[1].stderr and "merged" not in sge[0].stderr  # the last task merges
    summaries = {}
    for name in ("sge", "slurm"):
        out = tmp_path / name
        shards = [json.loads((out / f"summary.shard-{i:04d}-of-0002.json").read_text()) for i in range(2)]
        assert [s["files_done"] for s in shards] == [3, 3]
        assert [s["shard"] for s in shards] == [{"index": i, "count": 2, "source": name} for i in range(2)]
        summaries[name] = json.loads((out / "summary.json").read_text())
    same = ("status", "files_total", "files_done", "files_skipped", "files_failed", "shards_merged", "shards_missing",
            "shards_stopped")
    assert {k: summaries["sge"][k] for k in same} == {k: summaries["slurm"][k] for k in same}
    assert summaries["sge"]["files_done"] == 6 and summaries["sge"]["status"] == "complete"
    assert summaries["sge"]["shard"]["source"] == "sge" and summaries["slurm"]["shard"]["source"] == "slurm"
    sge_outputs = sorted(p.relative_to(tmp_path / "sge") for p in (tmp_path / "sge").rglob("*.npy"))
    assert len([p for p in sge_outputs if not p.stem.endswith("_utterance_embedding")]) == 6
    assert sge_outputs == sorted(p.relative_to(tmp_path / "slurm") for p in (tmp_path / "slurm").rglob("*.npy"))
    for rel in sge_outputs:
        np.testing.assert_allclose(np.load(tmp_path / "sge" / rel), np.load(tmp_path / "slurm" / rel), atol=1e-6)


@pytest.mark.slow
def test_torchrun_with_bad_files_on_both_ranks_merges_every_good_file_and_exits_1(speech_root, tmp_path):
    """A rank's failed files never end another rank or the merge: rank 1 exits 0 after the barrier, rank 0
    merges and writes the final files, lists every failed file and exits 1."""
    pytest.importorskip("resemblyzer")
    root = tmp_path / "root"
    for path in speech_root.rglob("*.wav"):
        target = root / path.relative_to(speech_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    bad = root / "corpus" / "aa_bad"  # sorted first: one bad file on each of the two ranks
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF....WAVEjunk")
    (bad / "empty.wav").write_bytes(b"")
    work, final = tmp_path / "work", tmp_path / "final"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(PYTHON_DIR / "B4_model_speaker.py"), str(root), "--model", "ge2e", "--output-dir",
                           str(work), "--final-output-dir", str(final), "--device", "cpu"],
                          capture_output=True, text=True, env=clean_env(), timeout=300)
    err = proc.stderr
    assert proc.returncode == 1, err[-3000:]
    shards = [json.loads((work / f"summary.shard-{i:04d}-of-0002.json").read_text()) for i in range(2)]
    assert [s["files_failed"] for s in shards] == [1, 1]  # both ranks had a bad file
    # every good file is in the merged output
    good = sorted(f"corpus_{p.parent.name}_{p.stem}" for p in speech_root.rglob("*.wav"))
    utterances = pickle.loads((final / "utterance_embeddings.pkl").read_bytes())
    assert sorted(utterances) == good
    listed = [u["id"] for u in json.loads((final / "utterance_list.json").read_text())]
    assert sorted(listed) == good and np.load(final / "utterance_embeddings.npy").shape == (len(good), 256)
    assert json.loads((final / "summary.json").read_text())["total_utterances"] == len(good)
    # the failed files are listed (from the merged summary), after the merge
    listing = err.split("error: 2 file(s) failed and are not in the merged output")
    assert len(listing) == 2, err[-3000:]
    assert f"{bad / 'corrupt.wav'}: " in listing[1] and f"{bad / 'empty.wav'}: file is empty" in listing[1]
    merged = json.loads((work / "summary.json").read_text())
    assert merged["files_done"] == len(good) and merged["files_failed"] == 2 and merged["shards_missing"] == []
    # torchrun reports only rank 0's status 1 (it can exit non-zero in no other way): rank 1 exited 0
    assert "rank      : 1" not in err and "SIGTERM" not in err and "Signal 15" not in err
