"""B4 the way speech teams work: Kaldi data dirs in, ark/scp out, trial scoring (EER/minDCF/AS-norm), VAD segments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import audio, kaldi, scoring
from audio_embeddings.cli import main
from conftest import DEMO_CLIPS, PYTHON_DIR

sys.path.insert(0, str(PYTHON_DIR))
from B4_model_speaker import DEFAULTS  # noqa: E402


def b4(*argv) -> int:
    return main(DEFAULTS, [str(a) for a in argv])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A Kaldi data dir over the three demo clips: wav.scp, utt2spk, and segments cutting each in two."""
    root = tmp_path_factory.mktemp("kaldi")
    wav_lines, seg_lines, spk_lines = [], [], []
    for clip in DEMO_CLIPS:
        spk = clip.stem.removeprefix("speech_").replace("_", "")
        reco = f"{spk}-rec"
        wav_lines.append(f"{reco} {clip.resolve()}\n")
        duration = sf.info(str(clip)).duration
        for i, (s, e) in enumerate(((0.0, duration / 2), (duration / 2, -1)), 1):
            seg_lines.append(f"{spk}-u{i} {reco} {s:.3f} {e:.3f}\n")
            spk_lines.append(f"{spk}-u{i} {spk}\n")
    (root / "wav.scp").write_text("".join(wav_lines))
    (root / "segments").write_text("".join(seg_lines))
    (root / "utt2spk").write_text("".join(spk_lines))
    return root


@pytest.fixture(scope="module")
def ge2e_run(data_dir, tmp_path_factory) -> Path:
    """B4 with GE2E over the data dir, ``--formats ark``: its output folder."""
    out = tmp_path_factory.mktemp("ge2e_kaldi")
    assert b4(data_dir, "--model", "ge2e", "--output-dir", out, "--device", "cpu", "--formats", "ark") == 0
    return out


@pytest.mark.parametrize("family", ["ge2e", "eres2netv2"])
def test_a_kaldi_data_dir_runs_through_b4_and_its_scp_holds_the_npy_vectors(family, data_dir, tiny_speaker_checkpoints,
                                                                             ge2e_run, tmp_path):
    import kaldiio

    out = tmp_path / "out"
    if family == "ge2e":
        out = ge2e_run
    else:
        assert b4(data_dir, "--model", family, "--checkpoint", tiny_speaker_checkpoints[family], "--output-dir", out,
                  "--device", "cpu", "--formats", "ark") == 0
    final = out / "final_embeddings"
    ids = [u["utterance_id"] for u in json.loads((final / "utterance_list.json").read_text())]
    assert sorted(ids) == ["de-u1", "de-u2", "engb-u1", "engb-u2", "enus-u1", "enus-u2"]
    npy = np.load(final / "utterance_embeddings.npy")
    scp = kaldiio.load_scp(str(final / "embeddings.scp"))
    assert sorted(scp) == sorted(ids)
    for i, utt in enumerate(ids):
        np.testing.assert_array_equal(scp[utt], npy[i])
    spk = kaldiio.load_scp(str(final / "spk_embeddings.scp"))
    assert len(spk) == 3
    # the segment is the cut: u2 of a speaker equals the second half embedded on its own
    from audio_embeddings.registry import load_backend
    from audio_embeddings.pipeline import embed_audio
    from audio_embeddings.speakers import utterance_vector

    backend = load_backend("ge2e" if family == "ge2e" else str(tiny_speaker_checkpoints[family]), device="cpu",
                           **({} if family == "ge2e" else {"preset": family}))
    clip = DEMO_CLIPS[0]
    x = audio.load(clip, sample_rate_hz=backend.sample_rate_hz).samples
    half = sf.info(str(clip)).duration / 2
    part = audio.Audio(x[int(round(float(f"{half:.3f}") * 16000)):], 16000, 16000, 1, None, "x")
    spk_id = clip.stem.removeprefix("speech_").replace("_", "")
    np.testing.assert_allclose(scp[f"{spk_id}-u2"], utterance_vector(embed_audio(backend, part)), atol=1e-5)


def test_a_kaldi_data_dir_run_is_the_shared_run_locked_summarised_and_resumed(data_dir, tmp_path, capsys):
    from audio_embeddings.corpus.lock import acquire_run_lock
    from audio_embeddings.corpus.shard import Shard

    out = tmp_path / "out"
    args = ("--model", "ge2e", "--output-dir", out, "--device", "cpu")
    with acquire_run_lock(out, shard_label=Shard().label):  # another run holds the output folder
        assert b4(data_dir, *args) == 2
    assert "run" in capsys.readouterr().err
    assert not (out / "utterances").exists() and not (out / "summary.json").exists()

    assert b4(data_dir, *args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["files_total"], summary["files_done"], summary["files_skipped"], summary["files_failed"]) \
        == (6, 6, 0, 0)
    assert summary["status"] == "complete" and summary["input"]["kind"] == "kaldi"
    assert (out / "failures.csv").read_text().splitlines() == ["path,reason"]
    assert (out / "final_embeddings" / "segments").read_text().count("\n") == 6

    assert b4(data_dir, *args) == 0  # the rerun: every utterance already done
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["files_done"], summary["files_skipped"]) == (0, 6)

    # a changed segments line: the shared rule for changed inputs (refused, naming the change; --overwrite redoes)
    own = tmp_path / "kaldi"
    own.mkdir()
    for name in ("wav.scp", "utt2spk", "segments"):
        (own / name).write_text((data_dir / name).read_text())
    out2 = tmp_path / "out2"
    assert b4(own, "--model", "ge2e", "--output-dir", out2, "--device", "cpu") == 0
    lines = (own / "segments").read_text().splitlines()
    utt, reco, start, end = lines[0].split()
    lines[0] = f"{utt} {reco} {float(start) + 0.25:.3f} {end}"
    (own / "segments").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert b4(own, "--model", "ge2e", "--output-dir", out2, "--device", "cpu") == 2
    assert f"{utt}.utt were made from another segment of the input" in capsys.readouterr().err
    assert b4(own, "--model", "ge2e", "--output-dir", out2, "--device", "cpu", "--overwrite") == 0
    assert f"{utt} {reco} {float(start) + 0.25:.3f}" in (out2 / "final_embeddings" / "segments").read_text()


def test_pipes_are_refused_unless_allowed_and_run_without_a_shell(tmp_path, capsys):
    clip = DEMO_CLIPS[0].resolve()
    (tmp_path / "wav.scp").write_text(f"a cat {clip} |\nb {clip}\n")
    with pytest.raises(kaldi.KaldiError, match="--allow-pipes"):
        kaldi.read_data_dir(tmp_path)
    data = kaldi.read_data_dir(tmp_path, allow_pipes=True)
    assert kaldi.command_argv(data.utterances[0].source) == ["cat", str(clip)]
    assert kaldi.command_argv("sox x.wav -t wav - | cat")[:2] == ["/bin/sh", "-c"]
    piped = kaldi.load_recording(data.utterances[0], sample_rate_hz=16000).samples
    direct = kaldi.load_recording(data.utterances[1], sample_rate_hz=16000).samples
    np.testing.assert_array_equal(piped, direct)
    assert b4(tmp_path, "--model", "ge2e", "--output-dir", tmp_path / "o") == 2
    assert "--allow-pipes" in capsys.readouterr().err
    # allowed: the shared run decodes the command's output (the same vector as the file's)
    assert b4(tmp_path, "--model", "ge2e", "--output-dir", tmp_path / "o", "--device", "cpu", "--allow-pipes") == 0
    with np.load(tmp_path / "o" / "utterances" / tmp_path.name / "a" / "a.npz") as a, \
            np.load(tmp_path / "o" / "utterances" / tmp_path.name / "b" / "b.npz") as b:
        np.testing.assert_array_equal(a["embedding"], b["embedding"])
    assert b4(tmp_path, "--model", "ge2e", "--output-dir", tmp_path / "o", "--device", "cpu", "--allow-pipes") == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["files_skipped"] == 2  # resumed


@pytest.mark.slow
def test_shards_write_one_ark_each_and_the_last_merges_one_scp(data_dir, ge2e_run, tmp_path):
    import kaldiio

    out = tmp_path / "out"
    for i in range(2):
        assert b4(data_dir, "--model", "ge2e", "--output-dir", out, "--device", "cpu", "--formats", "ark",
                  "--shard", f"{i}/2") == 0
    # each shard reports through the shared run; the last one merges the summaries and writes the final files
    assert sorted(p.name for p in out.glob("summary.*.json")) == ["summary.shard-0000-of-0002.json",
                                                                  "summary.shard-0001-of-0002.json"]
    assert json.loads((out / "summary.json").read_text())["files_done"] == 6
    merged = kaldiio.load_scp(str(out / "final_embeddings" / "embeddings.scp"))
    assert len(merged) == 6
    one = kaldiio.load_scp(str(ge2e_run / "final_embeddings" / "embeddings.scp"))
    for k in one:
        np.testing.assert_array_equal(one[k], merged[k])


def test_eer_equals_scikit_learns_roc_and_min_dcf_its_definition():
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    for k in range(50):
        n = int(rng.integers(20, 2000))
        labels = rng.random(n) < rng.uniform(0.05, 0.5)
        labels[:2] = [True, False]
        scores = rng.normal(size=n) + labels * rng.uniform(0.5, 3.0)
        if k % 2:
            scores = np.round(scores, 1)  # ties
        fpr, tpr, _ = roc_curve(labels, scores)
        reference = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
        assert abs(scoring.eer(scores, labels)[0] - reference) <= 1e-6
        # minDCF: the minimum over every threshold, normalised (brute force over all cut points)
        p = 0.01
        cuts = np.r_[np.inf, np.unique(scores)]
        cost = [p * np.mean(scores[labels] < c) + (1 - p) * np.mean(scores[~labels] >= c) for c in cuts]
        assert scoring.min_dcf(scores, labels, p_target=p)[0] == pytest.approx(min(cost) / min(p, 1 - p), abs=1e-12)


def test_trial_forms_and_as_norm(tmp_path):
    (tmp_path / "vox.txt").write_text("1 a b\n0 a c\n")
    (tmp_path / "named.txt").write_text("a b target\na c nontarget\n")
    (tmp_path / "bare.txt").write_text("a b\n")
    vox, named = scoring.read_trials(tmp_path / "vox.txt"), scoring.read_trials(tmp_path / "named.txt")
    assert (vox.enroll, vox.test, vox.labels.tolist()) == (named.enroll, named.test, named.labels.tolist()) \
        == (("a", "a"), ("b", "c"), [True, False])
    assert scoring.read_trials(tmp_path / "bare.txt").labels is None
    rng = np.random.default_rng(1)
    vectors = {k: rng.normal(size=8) for k in "abc"}
    cohort = rng.normal(size=(20, 8))
    trials = scoring.read_trials(tmp_path / "vox.txt")
    raw = scoring.cosine_scores(trials, vectors)
    normed = scoring.as_norm(raw, trials, vectors, cohort, top_n=5)

    def stats(v):
        c = (cohort / np.linalg.norm(cohort, axis=1, keepdims=True)) @ (v / np.linalg.norm(v))
        top = np.sort(c)[::-1][:5]
        return top.mean(), top.std()

    (me, se), (mt, st) = stats(vectors["a"]), stats(vectors["b"])
    assert normed[0] == pytest.approx(0.5 * ((raw[0] - me) / se + (raw[0] - mt) / st))


def test_score_writes_scores_and_metrics_and_compare_decides(ge2e_run, tmp_path, capsys):
    out = ge2e_run
    trials = tmp_path / "trials.txt"
    ids = ["de-u1", "de-u2", "engb-u1", "engb-u2", "enus-u1", "enus-u2"]
    trials.write_text("".join(f"{int(a.split('-')[0] == b.split('-')[0])} {a} {b}\n"
                              for i, a in enumerate(ids) for b in ids[i + 1:]))
    assert b4("--score", trials, out, "--output-dir", tmp_path / "scores", "--score-norm", "asnorm",
              "--cohort", out, "--top-n", 2) == 0
    metrics = json.loads((tmp_path / "scores" / "trials.txt.metrics.json").read_text())
    assert {"eer", "min_dcf_p0.01", "min_dcf_p0.05", "eer_threshold"} <= set(metrics)
    lines = (tmp_path / "scores" / "trials.txt.scores").read_text().splitlines()
    assert len(lines) == 15 and lines[0].split()[3] in ("target", "nontarget")
    assert "EER" in capsys.readouterr().out
    assert b4("--compare", DEMO_CLIPS[0], DEMO_CLIPS[0], "--model", "ge2e", "--device", "cpu",
              "--threshold", "0.5") == 0
    assert "same speaker" in capsys.readouterr().out


@pytest.mark.parametrize("argv,named", [
    (["--threshold", "0.5"], "--threshold: decision options go with --compare A B"),
    (["--metrics", "m.json"], "--metrics: decision options go with --compare A B"),
    (["--cohort", "c", "--score-norm", "asnorm"], "--cohort, --score-norm: scoring options go with --score TRIALS"),
], ids=["threshold", "metrics", "asnorm"])
def test_decision_and_scoring_options_without_their_command_are_refused_in_the_matlab_names(argv, named, tmp_path,
                                                                                              caplog):
    from audio_embeddings.speaker_commands import OPTIONS

    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "out"
    assert b4(tmp_path / "in", "--model", "ge2e", "--device", "cpu", "--output-dir", out, *argv) == 2
    assert named in caplog.text and not out.exists()  # refused before anything was embedded
    caplog.clear()
    assert b4(tmp_path / "in", "--model", "ge2e", "--device", "cpu", "--output-dir", out, *argv, "--matlab-names") == 2
    matlab = {o.flag: o.matlab_name for o in OPTIONS}
    for flag in named.split(":")[0].split(", "):
        assert f"'{matlab[flag]}'" in caplog.text and flag not in caplog.text  # B4's own options, in MATLAB's words


def _voices_with_gaps(duration_s: float, seed: int = 0):
    clips = [audio.load(c, sample_rate_hz=16000).samples for c in DEMO_CLIPS]
    rng = np.random.default_rng(seed)
    parts, truth, t = [], [], 0.0
    while t < duration_s:
        gap = np.zeros(int(16000 * rng.uniform(1.5, 3.0)), np.float32)
        c = clips[len(truth) % len(clips)]
        parts += [gap, c]
        truth.append((t + len(gap) / 16000, t + (len(gap) + len(c)) / 16000))
        t = truth[-1][1]
    parts.append(np.zeros(16000, np.float32))
    return np.concatenate(parts), np.array(truth)


@pytest.mark.parametrize("duration_s", [40.0, pytest.param(600.0, marks=pytest.mark.slow)])
def test_vad_segments_fall_in_the_silences_one_embedding_each(duration_s, tmp_path):
    import kaldiio

    x, truth = _voices_with_gaps(duration_s)
    rec = tmp_path / "in" / "meeting" / "talk" / "long.wav"
    rec.parent.mkdir(parents=True)
    sf.write(rec, x, 16000)
    out = tmp_path / "out"
    assert b4(rec.parent.parent.parent, "--model", "ge2e", "--output-dir", out, "--device", "cpu", "--vad", "silero",
              "--formats", "ark") == 0
    final = out / "final_embeddings"
    rows = [line.split() for line in (final / "segments").read_text().splitlines()]
    assert len(rows) >= len(truth)
    tol = 0.1  # Silero's 32 ms frames and 30 ms padding
    for seg_id, _, start, end in rows:
        s, e = float(start), float(end)
        inside = (truth[:, 0] - tol <= s) & (e <= truth[:, 1] + tol)
        assert inside.any(), f"{seg_id} {s}-{e} crosses a silence"
    for s, e in truth:  # every voice is found
        assert any(float(r[2]) < e and float(r[3]) > s for r in rows)
    scp = kaldiio.load_scp(str(final / "embeddings.scp"))
    assert sorted(scp) == sorted(r[0] for r in rows)
    # the shared guarantees: the run's summary, and the output folder's lock
    summary = json.loads((out / "summary.json").read_text())
    assert summary["vad"]["method"] == "silero" and summary["files_done"] == len(rows) and summary["files_failed"] == 0
    from audio_embeddings.corpus.lock import acquire_run_lock
    from audio_embeddings.corpus.shard import Shard

    with acquire_run_lock(out, shard_label=Shard().label):
        assert b4(rec.parent.parent.parent, "--model", "ge2e", "--output-dir", out, "--device", "cpu",
                  "--vad", "silero") == 2


def test_vad_trims_utterances_to_one_segment_through_the_shared_run_and_resumes(tmp_path, capsys):
    """An utterance up to --max-segment-s becomes one segment under its own id, from its first speech to its
    last; the pre-pass is a Kaldi data dir the shared run takes as input; a rerun redoes neither the VAD nor
    the embeddings, and other VAD settings redo the VAD."""
    from audio_embeddings.speaker_lists import _read_records

    x = audio.load(DEMO_CLIPS[0], sample_rate_hz=16000).samples
    lead, tail = 1.5, 2.0
    padded = np.concatenate([np.zeros(int(lead * 16000), np.float32), x, np.zeros(int(tail * 16000), np.float32)])
    rec = tmp_path / "in" / "ds" / "spk" / "a.wav"
    rec.parent.mkdir(parents=True)
    sf.write(rec, padded, 16000)
    sf.write(rec.with_name("b.wav"), padded[::-1].copy(), 16000)
    out = tmp_path / "out"
    args = (tmp_path / "in", "--model", "ge2e", "--output-dir", out, "--device", "cpu", "--vad", "silero")
    assert b4(*args) == 0
    prepared = out / "vad_segments" / "in"
    rows = {u: (r, float(s), float(e)) for u, r, s, e in
            (line.split() for line in (prepared / "segments").read_text().splitlines())}
    assert sorted(rows) == ["ds_spk_a", "ds_spk_b"]  # one segment each, under the utterance's own id
    _, s, e = rows["ds_spk_a"]
    # the silences around are cut off (the clip's own quiet ends may be too)
    assert lead - 0.1 <= s and e <= lead + len(x) / 16000 + 0.1 and e - s > 0.7 * len(x) / 16000
    assert (prepared / "utt2spk").read_text().splitlines() == ["ds_spk_a ds_spk", "ds_spk_b ds_spk"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"]["kind"] == "kaldi" and summary["files_done"] == 2
    # the embedding is the cut: the trimmed span embedded on its own
    from audio_embeddings.pipeline import embed_audio
    from audio_embeddings.registry import load_backend
    from audio_embeddings.speakers import utterance_vector

    backend = load_backend("ge2e", device="cpu")
    stored_audio = audio.load(rec, sample_rate_hz=16000).samples  # as written (16-bit)
    part = stored_audio[int(round(float(f"{s:.3f}") * 16000)):int(round(float(f"{e:.3f}") * 16000))]
    with np.load(out / "utterances" / "in" / "ds_spk" / "ds_spk_a.npz") as stored:
        np.testing.assert_allclose(stored["embedding"],
                                   utterance_vector(embed_audio(backend, audio.Audio(part, 16000, 16000, 1, None, "a"))),
                                   atol=1e-5)
    records = prepared / "records.whole.jsonl"
    n_records = len(records.read_text().splitlines())
    capsys.readouterr()
    assert b4(*args) == 0
    assert len(records.read_text().splitlines()) == n_records  # the VAD did not run again
    assert "all already done" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["files_skipped"] == 2
    assert b4(*args, "--min-speech-s", "0.5") == 0  # other settings: the VAD runs again (same spans here)
    assert len(records.read_text().splitlines()) == n_records + 2
    assert _read_records(prepared)["ds_spk_a"]["stamp"] != json.loads(records.read_text().splitlines()[0])["stamp"]
