"""B4 pipeline as users run it: a dataset/speaker/utterance tree, the seed's files, torchrun + merge, stages, compare."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.io import loadmat

from audio_embeddings.cli import main
from audio_embeddings.speakers import Utterance, cosine
from conftest import DEMO_CLIPS, PYTHON_DIR, REPO

sys.path.insert(0, str(PYTHON_DIR))
from B4_model_speaker import DEFAULTS  # noqa: E402


def b4(*argv) -> int:
    return main(DEFAULTS, [str(a) for a in argv])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """The three demo voices (eSpeak NG en-us, en-gb, de), each cut in two utterances, in two datasets."""
    root = tmp_path_factory.mktemp("data_root")
    for clip in DEMO_CLIPS:
        x, rate = sf.read(clip, dtype="float32")
        speaker = clip.stem.removeprefix("speech_")
        dataset = "corpus_de" if speaker == "de" else "corpus_en"
        half = len(x) // 2
        for i, part in enumerate((x[:half], x[half:]), 1):
            path = root / dataset / speaker / f"utt{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, part, rate)
    return root


@pytest.fixture(scope="module")
def single_run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    assert b4(data_root, "--model", "ge2e", "--output-dir", out, "--device", "cpu") == 0
    return out / "final_embeddings"


def test_keys_are_dataset_speaker_utterance():
    u = Utterance.from_key("vox/id001/sess/00001.wav")
    assert (u.dataset, u.speaker_id, u.utterance_id, u.id, u.speaker_key) == (
        "vox", "id001", "sess_00001", "vox_id001_sess_00001", "vox_id001")
    assert Utterance.from_key("clip.flac").id == "__clip"


def test_pickles_and_lists_have_the_seeds_keys(single_run, data_root):
    with open(single_run / "utterance_embeddings.pkl", "rb") as fh:  # our own file, written by this test's run
        utts = pickle.load(fh)
    with open(single_run / "speaker_embeddings.pkl", "rb") as fh:
        spks = pickle.load(fh)
    assert sorted(utts) == sorted(f"corpus_{'de' if s == 'de' else 'en'}_{s}_utt{i}"
                                  for s in ("de", "en_gb", "en_us") for i in (1, 2))
    for entry in utts.values():
        assert set(entry) == {"embedding", "dataset", "speaker_id", "utterance_id", "path"}
        assert entry["embedding"].shape == (256,) and entry["embedding"].dtype == np.float32
        assert Path(entry["path"]).is_file()
    assert sorted(spks) == ["corpus_de_de", "corpus_en_en_gb", "corpus_en_en_us"]
    for key, entry in spks.items():
        assert set(entry) == {"embedding", "dataset", "speaker_id", "num_utterances"}
        assert entry["num_utterances"] == 2
        mine = [u["embedding"] for u in utts.values() if f"{u['dataset']}_{u['speaker_id']}" == key]
        np.testing.assert_allclose(entry["embedding"], np.mean(mine, axis=0), rtol=0, atol=1e-7)
    summary = json.loads((single_run / "summary.json").read_text())
    assert (summary["total_utterances"], summary["total_speakers"], summary["embedding_dimension"]) == (6, 3, 256)
    assert summary["datasets"] == {"corpus_de": {"utterances": 2, "speakers": 1},
                                   "corpus_en": {"utterances": 4, "speakers": 2}}
    utt_list = json.loads((single_run / "utterance_list.json").read_text())
    assert [u["id"] for u in utt_list] == list(utts) and "embedding" not in utt_list[0]
    spk_list = json.loads((single_run / "speaker_list.json").read_text())
    assert [s["num_utterances"] for s in spk_list] == [2, 2, 2]


def test_npy_and_mat_hold_the_same_matrices_with_ids(single_run):
    utt = np.load(single_run / "utterance_embeddings.npy")
    spk = np.load(single_run / "speaker_embeddings.npy")
    mat = loadmat(single_run / "embeddings.mat")
    np.testing.assert_array_equal(mat["utterance_embeddings"], utt)
    np.testing.assert_array_equal(mat["speaker_embeddings"], spk)
    ids = [c[0] for c in mat["utterance_ids"][:, 0]]
    assert ids == [u["id"] for u in json.loads((single_run / "utterance_list.json").read_text())]
    assert [c[0] for c in mat["speaker_ids"][:, 0]] == ["corpus_de_de", "corpus_en_en_gb", "corpus_en_en_us"]
    assert mat["num_utterances"][:, 0].tolist() == [2, 2, 2]


def test_same_speaker_utterances_score_higher_than_different_speakers(single_run):
    # The only voices available offline are the three eSpeak NG demo voices, each cut into two halves of
    # 2.7-3.6 s. With GE2E, same-voice pairs score higher on average (0.89 vs 0.86) and every utterance's
    # own speaker is the nearest speaker mean, but a single pair does not separate strictly (de halves
    # 0.865 < en_gb/en_us 0.889), so those are the properties asserted.
    utt = np.load(single_run / "utterance_embeddings.npy")
    speakers = [f"{u['dataset']}_{u['speaker_id']}" for u in json.loads((single_run / "utterance_list.json").read_text())]
    same, different = [], []
    for i in range(len(utt)):
        for j in range(i + 1, len(utt)):
            (same if speakers[i] == speakers[j] else different).append(cosine(utt[i], utt[j]))
    assert np.mean(same) > np.mean(different) + 0.02, (same, different)
    spk = np.load(single_run / "speaker_embeddings.npy")
    spk_ids = [s["id"] for s in json.loads((single_run / "speaker_list.json").read_text())]
    for row, speaker in zip(utt, speakers):
        nearest = spk_ids[int(np.argmax([cosine(row, s) for s in spk]))]
        assert nearest == speaker, (speaker, nearest)


def test_compare_prints_a_higher_score_for_the_same_voice(data_root, capsys):
    scores = {}
    for name, other in (("same", "corpus_en/en_us/utt2.wav"), ("different", "corpus_de/de/utt2.wav")):
        assert b4("--compare", data_root / "corpus_en/en_us/utt1.wav", data_root / other, "--model", "ge2e",
                  "--device", "cpu") == 0
        scores[name] = float(capsys.readouterr().out.split(":")[-1])
    assert scores["same"] > scores["different"]
    assert b4("--compare", data_root / "missing.wav", data_root / other, "--model", "ge2e") == 1
    assert "missing.wav" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_plus_merge_equal_one_process(data_root, single_run, tmp_path):
    out = tmp_path / "ranks"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(PYTHON_DIR / "B4_model_speaker.py"), str(data_root), "--model", "ge2e",
                           "--output-dir", str(out), "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("summary.shard-*.json")) == [
        "summary.shard-0000-of-0002.json", "summary.shard-0001-of-0002.json"]
    shutil.rmtree(out / "final_embeddings")  # the merge stage alone rebuilds it
    assert b4("--merge", "--model", "ge2e", "--output-dir", out) == 0
    for name in ("utterance_embeddings.npy", "speaker_embeddings.npy"):
        np.testing.assert_array_equal(np.load(out / "final_embeddings" / name), np.load(single_run / name))
    assert (out / "final_embeddings" / "utterance_list.json").read_text() == (
        single_run / "utterance_list.json").read_text()


@pytest.mark.slow
def test_the_staged_script_runs_extract_merge_and_cleanup(data_root, single_run, tmp_path):
    env = {**os.environ, "GPUS": "", "MODEL": "ge2e", "DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1",
           "BATCH_SIZE": "8",  # single_run's batch size: the same batches give the same bits
           "OUTPUT_DIR": str(tmp_path / "embeddings_output"), "FINAL_OUTPUT_DIR": str(tmp_path / "final"),
           "AUDIO_EMBEDDINGS_PYTHON": sys.executable}
    script = str(REPO / "run_embedding_extraction.sh")
    proc = subprocess.run(["bash", script, "--stage", "1", "--stop_stage", "2", "--MASTER_PORT", "29633"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "embeddings_output" / "utterances").is_dir()
    np.testing.assert_array_equal(np.load(tmp_path / "final" / "speaker_embeddings.npy"),
                                  np.load(single_run / "speaker_embeddings.npy"))
    proc = subprocess.run(["bash", script, "--stage", "3", "--stop_stage", "3"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0 and not (tmp_path / "embeddings_output" / "utterances").exists()
    assert (tmp_path / "final" / "utterance_embeddings.pkl").is_file()


def test_a_bad_utterance_is_skipped_and_counted(data_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(data_root, root)
    (root / "corpus_de" / "de" / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    out = tmp_path / "out"
    assert b4(root, "--model", "ge2e", "--output-dir", out, "--device", "cpu") == 1
    assert json.loads((out / "final_embeddings" / "summary.json").read_text())["total_utterances"] == 6
    assert "broken.wav" in (out / "failures.csv").read_text()


@pytest.mark.slow
def test_example_usage_runs_on_the_outputs(single_run):
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "example_usage.py"), str(single_run)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "nearest utterances of the same speaker" in proc.stdout


@pytest.mark.parametrize("family", ["eres2netv2", "campplus"])
def test_3dspeaker_models_run_the_pipeline_from_a_local_checkpoint(family, data_root, tiny_speaker_checkpoints,
                                                                   tmp_path):
    out = tmp_path / "out"
    assert b4(data_root, "--model", family, "--checkpoint", tiny_speaker_checkpoints[family], "--output-dir", out,
              "--device", "cpu", "--batch-size", 4) == 0
    summary = json.loads((out / "final_embeddings" / "summary.json").read_text())
    assert summary["total_utterances"] == 6 and summary["backend"]["model_variant"].startswith(family)
    utt = np.load(out / "final_embeddings" / "utterance_embeddings.npy")
    assert utt.shape[0] == 6 and np.isfinite(utt).all()
