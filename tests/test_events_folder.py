"""Several stimuli = several runs: ``--events``/``--bold-json`` naming a folder (a BIDS ``func/`` folder),
each input aligned to its own events file or sidecar, end to end in-process with a tiny wav2vec2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.align import settings_from
from audio_embeddings.cli import main
from audio_embeddings.events import EventsError
from audio_embeddings.scripts import WAV2VEC2

SR = 16000
#: stimulus -> (its events file in func/, its rows: onset, duration, trial_type, stim_file)
RUNS = {
    "sub-01_task-listen_run-1.wav": ("sub-01_task-listen_run-1_events.tsv",  # the stem is the BIDS entities
                                     [(0.2, 0.5, "speech", "n/a"), (1.0, 0.4, "tone", "n/a")]),
    "story2.wav": ("sub-01_task-listen_run-2_events.tsv",  # named in stim_file
                   [(0.1, 0.3, "w1", "stimuli/story2.wav"), (0.6, 0.3, "w2", "stimuli/story2.wav"),
                    (1.2, 0.0, "w3", "stimuli/story2.wav")]),
    "story3.wav": ("sub-01_task-listen_run-3_events.tsv", [(0.5, 1.0, "long", "story3.wav")]),
}


def write_events(path, rows):
    path.write_text("onset\tduration\ttrial_type\tstim_file\n"
                    + "".join(f"{o}\t{d}\t{t}\t{s}\n" for o, d, t, s in rows))


def loadmat(path):
    import scipy.io

    return scipy.io.loadmat(path)


def labels(mat):
    """The ``.mat``'s ``event_label`` cell as a list of str."""
    return ["".join(np.ravel(cell).tolist()) for cell in mat["event_label"].ravel()]


def run(*argv):
    return main(WAV2VEC2, [*map(str, argv), "--device", "cpu", "--quiet"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("events-folder")
    (tmp / "clips").mkdir()
    (tmp / "func").mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate([*RUNS, "orphan.wav"]):
        sf.write(tmp / "clips" / name, (0.1 * rng.standard_normal(int((1.8 + 0.2 * i) * SR))).astype(np.float32),
                 SR, subtype="PCM_16")
    for events_file, rows in RUNS.values():
        write_events(tmp / "func" / events_file, rows)
    for run_no, tr_s in ((1, 2.0), (2, 0.5), (3, 1.0)):
        (tmp / "func" / f"sub-01_task-listen_run-{run_no}_bold.json").write_text(f'{{"RepetitionTime": {tr_s}}}')
    argv = [tmp / "clips", "--model", tiny_model("wav2vec2"), "--output-dir", tmp / "out", "--events", tmp / "func",
            "--formats", "npy,mat,json"]
    status = run(*argv)
    return {"tmp": tmp, "argv": argv, "status": status}


@pytest.mark.slow  # the tiny model over 4 short stimuli (a few seconds)
def test_each_stimulus_gets_one_row_per_event_of_its_own_events_file(corpus):
    out = corpus["tmp"] / "out"
    for name, (events_file, rows) in RUNS.items():
        stem = name[:-4]
        mat = loadmat(out / f"{stem}.mat")
        assert labels(mat) == [r[2] for r in rows], name
        np.testing.assert_allclose(mat["event_onset"].ravel(), [r[0] for r in rows])
        np.testing.assert_allclose(mat["event_duration"].ravel(), [r[1] for r in rows])
        assert np.load(out / f"{stem}_aligned.npy").shape[0] == len(rows)
        meta = json.loads((out / f"{stem}.json").read_text())
        assert meta["alignment"]["events"] == {"source": str(corpus["tmp"] / "func" / events_file),
                                               "n_events": len(rows)}


@pytest.mark.slow
def test_a_stimulus_without_events_is_a_failed_file_with_one_line(corpus):
    out = corpus["tmp"] / "out"
    assert corpus["status"] == 1  # the others are written
    assert not (out / "orphan.mat").exists() and not (out / "orphan_aligned.npy").exists()
    text = (out / "failures.csv").read_text()
    assert len([line for line in text.splitlines() if "orphan" in line]) == 1
    assert "orphan.wav: no events file for it in" in text
    assert "orphan_events.tsv, orphan.tsv, orphan.csv, orphan.TextGrid, or a *_events.tsv whose stim_file is " \
           "orphan.wav" in text


@pytest.mark.slow
def test_an_edited_events_file_is_refused_as_an_edited_input_and_overwrite_redoes_it(corpus, capsys):
    tmp, out = corpus["tmp"], corpus["tmp"] / "out"
    (tmp / "clips" / "orphan.wav").unlink()  # the rerun is about the three runs
    assert run(*corpus["argv"]) == 0  # nothing changed: all done
    before = {n: (out / f"{n[:-4]}.mat").stat().st_mtime_ns for n in RUNS}
    events_file, rows = RUNS["story2.wav"]
    write_events(tmp / "func" / events_file, [(0.1, 0.3, "edited", "stimuli/story2.wav")])
    capsys.readouterr()
    assert run(*corpus["argv"]) == 2  # refused, as for an edited input
    err = capsys.readouterr().err
    assert "story2" in err and "another version of its events file" in err and "--overwrite" in err
    print(err)
    assert run(*corpus["argv"], "--overwrite") == 0
    assert labels(loadmat(out / "story2.mat")) == ["edited"]
    after = {n: (out / f"{n[:-4]}.mat").stat().st_mtime_ns for n in RUNS}
    assert after["story2.wav"] != before["story2.wav"]


@pytest.mark.slow
def test_a_store_aligns_each_input_to_the_tr_of_its_own_bold_sidecar(corpus):
    import math
    import shutil

    import h5py

    tmp = corpus["tmp"]
    clips = tmp / "runs"
    clips.mkdir()
    for name in RUNS:
        shutil.copy(tmp / "clips" / name, clips / name)
    store = tmp / "bold.h5"
    assert run(clips, "--model", corpus["argv"][2], "--output-dir", tmp / "bold-out", "--store", store,
               "--bold-json", tmp / "func", "--hrf", "spm") == 0
    with h5py.File(store, "r") as f:
        for name, tr_s in zip(RUNS, (2.0, 0.5, 1.0)):  # run-1 by its entities, run-2/3 through stim_file
            duration_s = sf.info(str(clips / name)).duration
            ds = f[f"aligned/{name}"]
            assert ds.attrs["target_rate_hz"] == pytest.approx(1 / tr_s), name
            assert ds.shape[0] == math.ceil(duration_s / tr_s), name


def test_folder_rules_and_the_line_naming_what_was_looked_for(tmp_path):
    func = tmp_path / "func"
    func.mkdir()
    (func / "a.TEXTGRID").write_text("not read here")
    (func / "b.csv").write_text("0.5,1\n")
    (func / "b.tsv").write_text("onset\n0.5\n")
    write_events(func / "sub-01_task-x_run-1_events.tsv", [(0, 1, "x", "c.wav")])
    write_events(func / "sub-01_task-x_run-2_events.tsv", [(0, 1, "y", "c.wav")])
    (func / "sub-01_task-x_run-1_bold.json").write_text('{"RepetitionTime": 1.5, "SliceTiming": [0, 1.0]}')
    s = settings_from({"events_file": str(func)})
    assert s.per_input and s.events.find("dir/a.wav").name == "a.TEXTGRID"
    with pytest.raises(EventsError, match=r"b.wav: several events files match it .*\(b.tsv, b.csv\)"):
        s.for_input("b.wav")
    with pytest.raises(EventsError, match="c.wav: several runs .* name it in their stim_file"):
        s.for_input("c.wav")
    with pytest.raises(ValueError, match="folder"):
        s.apply(np.zeros((3, 2)), np.arange(3.0), window_s=0.02)
    bold = settings_from({"bold_json": str(func), "hrf": "spm", "slice_time_ref": 0.0})
    with pytest.raises(EventsError, match="sub-01_task-x_run-2.wav: no bold sidecar"):
        bold.for_input("sub-01_task-x_run-2.wav")
    with pytest.raises(ValueError, match="folder"):
        settings_from({"bold_json": str(func), "tr_s": 2.0})
    one = bold.for_input("sub-01_task-x_run-1.wav")  # <entities>.wav -> <entities>_bold.json
    assert one.target_rate_hz == pytest.approx(1 / 1.5) and one.hrf == "spm" and one.slice_time_s == 0.0
    digest = bold.input_fields("sub-01_task-x_run-1.wav")["align_inputs"]
    assert len(digest) == 64


def test_an_edited_single_events_file_is_noticed(tmp_path, tiny_model, capsys):
    """One --events FILE for every input: its contents are in the resume fingerprint (Option.reads_file), so
    editing it refuses the rerun, naming the file, as an edited input would be; --overwrite redoes it."""
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "a.wav", 0.1 * np.ones(int(1.6 * SR), np.float32), SR, subtype="PCM_16")
    events = tmp_path / "events.tsv"
    write_events(events, [(0.2, 0.5, "before", "n/a")])
    argv = [tmp_path / "clips", "--model", tiny_model("wav2vec2"), "--output-dir", tmp_path / "out", "--events",
            events, "--formats", "npy,mat"]
    assert run(*argv) == 0
    write_events(events, [(0.2, 0.5, "after", "n/a")])  # same size, same path
    capsys.readouterr()
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert "--events sha256" in err and "--overwrite" in err, err
    assert run(*argv, "--overwrite") == 0
    assert labels(loadmat(tmp_path / "out" / "a.mat")) == ["after"]


def test_a_bundle_over_stimuli_with_their_own_events(tmp_path, tiny_model):
    """--bundle with --events FOLDER: each run takes its own events file (one bundle row per event)."""
    from audio_embeddings.features import FeatureBundle

    (tmp_path / "clips").mkdir()
    (tmp_path / "func").mkdir()
    rows = {"s1": [(0.1, 0.4, "a", "n/a"), (0.9, 0.4, "b", "n/a")], "s2": [(0.3, 0.6, "c", "n/a")]}
    for i, (stem, events) in enumerate(rows.items()):
        sf.write(tmp_path / "clips" / f"{stem}.wav", 0.1 * np.ones(int((1.6 + 0.2 * i) * SR), np.float32), SR,
                 subtype="PCM_16")
        write_events(tmp_path / "func" / f"{stem}_events.tsv", events)
    bundle = tmp_path / "bundle.npz"
    assert run(tmp_path / "clips", "--model", tiny_model("wav2vec2"), "--output-dir", tmp_path / "out",
               "--events", tmp_path / "func", "--bundle", bundle) == 0
    loaded = FeatureBundle.load(bundle)
    assert list(loaded.run_names) == ["s1.wav", "s2.wav"]
    np.testing.assert_array_equal(loaded.run_ids, [0, 0, 1])
    np.testing.assert_allclose(loaded.time_axis_s, [0.1, 0.9, 0.3])
