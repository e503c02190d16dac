"""Events, TextGrids, scanner grids from bold sidecars, runs, HRFs against nilearn, feature bundles, BIDS out."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from audio_embeddings import align as al
from audio_embeddings.align import AlignSettings, align_embeddings, grid_size, hrf_kernel, settings_from
from audio_embeddings.events import EventsError, read_bold_json, read_events, slice_time_offset_s
from audio_embeddings.features import FeatureBundle, FeaturesError, build_bundle, write_bids_timeseries

RATE_HZ = 50.0  # wav2vec2's 20 ms rows
WINDOW_S = 0.025


def rows_for(duration_s, dim=16, seed=0):
    """Embedding rows at 50 Hz over ``duration_s`` (onsets, 25 ms windows) with a slow random walk."""
    rng = np.random.default_rng(seed)
    n = int(math.floor((duration_s - WINDOW_S) * RATE_HZ)) + 1
    x = np.cumsum(rng.standard_normal((n, dim)), axis=0).astype(np.float32) * 0.05
    return x, np.arange(n) / RATE_HZ


def write_textgrid(path, words, duration_s):
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("phones", [Interval(0.0, 0.1, "sil")], 0, duration_s))
    tg.addTier(textgrid.IntervalTier("words", [Interval(o, o + d, w) for o, d, w in words], 0, duration_s))
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)


# --- events ------------------------------------------------------------------------------------


def test_textgrid_of_a_ten_minute_stimulus_gives_one_row_per_word(tmp_path):
    duration = 600.0
    x, onsets = rows_for(duration)
    rng = np.random.default_rng(3)
    starts = np.sort(rng.choice(np.arange(0, 5990) / 10.0, 1500, replace=False))
    ends = np.minimum(np.append(starts[1:], duration), starts + rng.uniform(0.1, 0.6, starts.size))
    words = [(float(s), float(e - s), f"w{i}") for i, (s, e) in enumerate(zip(starts, ends))]
    path = tmp_path / "stim.TextGrid"
    write_textgrid(path, words, duration)

    settings = settings_from({"events_file": str(path)})
    assert settings.target_rate_hz is None and len(settings.events) == len(words)
    a = settings.apply(x, onsets, window_s=WINDOW_S, duration_s=duration)
    assert a.embeddings.shape == (len(words), 16)
    np.testing.assert_allclose(a.time_axis_s, [w[0] for w in words])
    np.testing.assert_allclose(a.durations_s, [w[1] for w in words], atol=1e-9)
    assert a.labels == tuple(w[2] for w in words)
    centres = onsets + WINDOW_S / 2
    for k in (0, 700, len(words) - 1):
        o, d, _ = words[k]
        inside = (centres >= o) & (centres < o + d)
        expected = x[inside].mean(axis=0) if inside.any() else x[np.argmin(np.abs(centres - (o + d / 2)))]
        np.testing.assert_allclose(a.embeddings[k], expected, rtol=1e-5, atol=1e-6)
    mat = a.mat_variables()
    assert mat["event_label"][:2] == ["w0", "w1"] and mat["event_onset"].shape == (len(words), 1)
    assert np.isnan(mat["target_rate"])


def test_bids_events_tsv_and_plain_csv(tmp_path):
    tsv = tmp_path / "sub-01_task-listen_events.tsv"
    tsv.write_text("onset\tduration\ttrial_type\n1.0\t0.5\tspeech\n2.0\tn/a\tbeep\n3.5\t0\tn/a\n")
    ev = read_events(tsv)
    assert ev.onsets_s == (1.0, 2.0, 3.5) and ev.durations_s == (0.5, 0.0, 0.0)
    assert ev.labels == ("speech", "beep", "")
    csv = tmp_path / "onsets.csv"
    csv.write_text("0.5,1.0\n2.25,0.5\n")
    ev = read_events(csv)
    assert ev.onsets_s == (0.5, 2.25) and ev.durations_s == (1.0, 0.5) and ev.labels == ("", "")
    x = np.arange(200, dtype=np.float64)[:, None] * np.ones((1, 2))  # row j = j
    on = np.arange(200) / 50.0
    a = align_embeddings(x, on, window_s=0.0, target_rate_hz=None, events=read_events(tsv))
    # 1.0-1.5 s: centres 50..74 -> mean 62; zero duration: the row at the onset (100 and 175)
    np.testing.assert_allclose(a.embeddings[:, 0], [62.0, 100.0, 175.0])


def test_events_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("time\tduration\n1\t2\n")
    with pytest.raises(EventsError, match="bad.tsv.*onset"):
        read_events(bad)
    neg = tmp_path / "neg.tsv"
    neg.write_text("onset\tduration\n1\t-2\n")
    with pytest.raises(EventsError, match="duration"):
        read_events(neg)
    with pytest.raises(EventsError, match="no such events file"):
        read_events(tmp_path / "missing.tsv")
    with pytest.raises(ValueError, match="--events.*--tr"):
        settings_from({"events_file": str(neg), "tr_s": 2.0})


# --- scanner grids, bold sidecars, runs ------------------------------------------------------


def test_bold_sidecar_gives_tr_and_fmriprep_slice_time_reference(tmp_path):
    side = tmp_path / "sub-01_task-listen_bold.json"
    timing = [0.0, 1.0, 0.25, 1.25, 0.5, 1.5, 0.75, 1.75]
    side.write_text(json.dumps({"RepetitionTime": 2.0, "SliceTiming": timing}))
    assert read_bold_json(side).repetition_time_s == 2.0
    assert slice_time_offset_s(timing, 0.5) == 0.875 and slice_time_offset_s(timing, 0.0) == 0.0
    s = settings_from({"bold_json": str(side)})
    assert s.target_rate_hz == 0.5 and s.slice_time_s == 0.875
    assert settings_from({"bold_json": str(side), "slice_time_ref": 0.0}).slice_time_s == 0.0
    with pytest.raises(ValueError, match="RepetitionTime 2"):
        settings_from({"bold_json": str(side), "tr_s": 1.5})
    with pytest.raises(ValueError, match="--bold-json"):
        settings_from({"tr_s": 2.0, "slice_time_ref": 0.5})
    x, on = rows_for(30.0, dim=2)
    a = s.apply(x, on, window_s=WINDOW_S, duration_s=30.0)
    np.testing.assert_allclose(a.time_axis_s, 0.875 + 2.0 * np.arange(15))


def test_three_runs_with_a_sidecar_and_dummy_scans(tmp_path):
    side = tmp_path / "bold.json"
    side.write_text(json.dumps({"RepetitionTime": 2.0}))
    durations = [200.0, 195.3, 204.7]  # a 10-minute stimulus in 3 runs
    settings = settings_from({"bold_json": str(side), "dummy_scans": 3, "hrf": "spm"})
    runs = [rows_for(d, seed=i) for i, d in enumerate(durations)]
    bundle = build_bundle([(x, on, WINDOW_S, d) for (x, on), d in zip(runs, durations)], settings=settings)
    counts = np.bincount(bundle.run_ids)
    assert counts.tolist() == [math.ceil(d / 2.0) - 3 for d in durations] == [97, 95, 100]
    for r, d in enumerate(durations):
        assert grid_size(d, 0.5) - 3 == counts[r]
        np.testing.assert_allclose(bundle.time_axis_s[bundle.run_ids == r], 2.0 * np.arange(3, grid_size(d, 0.5)))
    # each run equals the run aligned alone: nothing of run 0's HRF tail reaches run 1
    alone = settings.apply(*runs[1], window_s=WINDOW_S, duration_s=durations[1]).embeddings
    np.testing.assert_array_equal(bundle.bands["features"][bundle.run_ids == 1], alone)
    # an impulse at the very end of run 0 changes nothing in run 1
    x0, on0 = runs[0]
    kicked = x0.copy()
    kicked[-20:] += 100.0
    b2 = build_bundle([(kicked, on0, WINDOW_S, durations[0]), (*runs[1], WINDOW_S, durations[1])], settings=settings)
    b1 = build_bundle([(x0, on0, WINDOW_S, durations[0]), (*runs[1], WINDOW_S, durations[1])], settings=settings)
    assert not np.allclose(b2.bands["features"][b2.run_ids == 0], b1.bands["features"][b1.run_ids == 0])
    np.testing.assert_array_equal(b2.bands["features"][b2.run_ids == 1], b1.bands["features"][b1.run_ids == 1])


def test_n_volumes_sets_the_grid_and_dummy_scans_drop_computed_rows():
    x, on = rows_for(60.0, dim=3)
    full = align_embeddings(x, on, window_s=WINDOW_S, target_rate_hz=0.5, hrf="glover", n_volumes=35)
    assert full.embeddings.shape == (35, 3)
    cut = align_embeddings(x, on, window_s=WINDOW_S, target_rate_hz=0.5, hrf="glover", n_volumes=35, dummy_scans=4)
    np.testing.assert_array_equal(cut.embeddings, full.embeddings[4:])
    np.testing.assert_array_equal(cut.time_axis_s, full.time_axis_s[4:])
    with pytest.raises(ValueError, match="dummy_scans"):
        AlignSettings(target_rate_hz=0.5, n_volumes=3, dummy_scans=3)


def test_delays_never_cross_a_run_boundary():
    x1, on1 = rows_for(40.0, dim=2, seed=1)
    x2, on2 = rows_for(40.0, dim=2, seed=2)
    s = AlignSettings(target_rate_hz=0.5, delays=(1, 2))
    b = build_bundle([(x1, on1, WINDOW_S, 40.0), (x2, on2, WINDOW_S, 40.0)], settings=s)
    run2 = b.bands["features"][b.run_ids == 1]
    assert run2.shape == (20, 4)
    np.testing.assert_array_equal(run2[0], 0.0)          # both delays zero-filled at the run's start
    np.testing.assert_array_equal(run2[1, 2:], 0.0)


# --- HRF and regressors against nilearn ------------------------------------------------------


@pytest.mark.parametrize("name", ["spm", "glover"])
@pytest.mark.parametrize("tr_s", [0.72, 1.5, 2.0])
@pytest.mark.parametrize("oversampling", [1, 16, 50])
def test_hrf_kernels_equal_nilearns(name, tr_s, oversampling):
    from nilearn.glm.first_level import glover_hrf, spm_hrf

    ref = {"spm": spm_hrf, "glover": glover_hrf}[name](tr_s, oversampling=oversampling)
    ours = hrf_kernel(name, 1.0 / tr_s, oversampling=oversampling)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["lanczos", "mean"])
@pytest.mark.parametrize("name", ["spm", "glover"])
def test_convolved_event_train_matches_nilearns_compute_regressor(method, name):
    from nilearn.glm.first_level import compute_regressor

    rng = np.random.default_rng(0)
    duration, tr = 600.0, 2.0
    onsets = np.sort(rng.uniform(0, duration - 5, 40))
    durations = rng.uniform(0.2, 3.0, 40)
    t = np.arange(int(duration * 100)) / 100.0  # the event train as 100 Hz rows (overlaps add, as nilearn's)
    train = ((t[:, None] >= onsets) & (t[:, None] < onsets + durations)).sum(axis=1).astype(np.float64)
    ours = align_embeddings(train[:, None], t, window_s=0.0, target_rate_hz=1 / tr, duration_s=duration,
                            method=method, hrf=name)
    ref, _ = compute_regressor(np.vstack([onsets, durations, np.ones(40)]), name, ours.time_axis_s)
    r = np.corrcoef(ours.embeddings[:, 0], ref[:, 0])[0, 1]
    assert r >= 0.999, r
    coarse = align_embeddings(train[:, None], t, window_s=0.0, target_rate_hz=1 / tr, duration_s=duration,
                              method=method, hrf=name, hrf_oversampling=1)
    assert np.corrcoef(coarse.embeddings[:, 0], ref[:, 0])[0, 1] < r  # why the default oversamples


# --- bundles -----------------------------------------------------------------------------------


def layered_runs(n_runs=3, duration=120.0, layers=3, dim=12):
    out = []
    for r in range(n_runs):
        x, on = rows_for(duration, dim=dim * layers, seed=10 + r)
        out.append((x.reshape(-1, layers, dim).transpose(1, 0, 2).copy(), on, WINDOW_S, duration))
    return out


@pytest.mark.parametrize("suffix", [".npz", ".mat", ".h5"])
def test_bundle_with_pca_and_zscore_round_trips(tmp_path, suffix):
    runs = layered_runs()
    s = AlignSettings(target_rate_hz=0.5, hrf="spm", delays=(1, 2, 3))
    b = build_bundle(runs, settings=s, band_names=["low", "mid", "high"], pca=4, zscore="run",
                     info={"model": "tiny"})
    assert list(b.bands) == ["low", "mid", "high"] and b.bands["mid"].shape == (180, 12)
    assert b.groups.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert b.pca["low"].components.shape == (4, 12) and b.pca["low"].explained_variance_ratio.shape == (4,)
    undelayed = build_bundle(runs, settings=AlignSettings(target_rate_hz=0.5, hrf="spm"), pca=4, zscore="run")
    z = undelayed.bands["layer0"]
    for r in range(3):
        np.testing.assert_allclose(z[undelayed.run_ids == r].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(z[undelayed.run_ids == r].std(axis=0), 1, atol=1e-4)
    path = b.save(tmp_path / f"bundle{suffix}")
    back = FeatureBundle.load(path)
    assert list(back.bands) == ["low", "mid", "high"] and back.run_names == ("run-1", "run-2", "run-3")
    np.testing.assert_array_equal(back.run_ids, b.run_ids)
    np.testing.assert_allclose(back.bands["high"], b.bands["high"])
    assert back.delays == (1, 2, 3) and back.info["model"] == "tiny"
    np.testing.assert_allclose(back.pca["mid"].components, b.pca["mid"].components)
    # the same projection applied to new stimuli
    new = build_bundle(runs[:1], settings=s, band_names=["low", "mid", "high"], pca_from=path)
    again = build_bundle(runs[:1], settings=s, band_names=["low", "mid", "high"], pca_from=b)
    np.testing.assert_allclose(new.bands["low"], again.bands["low"], rtol=1e-6)
    with pytest.raises(FeaturesError, match="not both"):
        build_bundle(runs, settings=s, pca=2, pca_from=b)


def test_pca_equals_scikit_learn_on_the_aligned_rows():
    from sklearn.decomposition import PCA

    runs = layered_runs(n_runs=2, layers=1)
    s = AlignSettings(target_rate_hz=0.5)
    b = build_bundle(runs, settings=s, pca=3)
    rows = np.concatenate([s.apply(x, on, window_s=w, duration_s=d).embeddings[0] for x, on, w, d in runs])
    ref = PCA(n_components=3, svd_solver="full").fit_transform(rows.astype(np.float64))
    np.testing.assert_allclose(b.bands["layer0"], ref, rtol=1e-4, atol=1e-5)


# --- BIDS derivatives --------------------------------------------------------------------------


def test_bids_out_is_found_by_pybids(tmp_path):
    from bids import BIDSLayout

    raw = tmp_path / "raw"
    (raw / "sub-01" / "func").mkdir(parents=True)
    (raw / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}))
    (raw / "sub-01" / "func" / "sub-01_task-listen_run-1_events.tsv").write_text("onset\tduration\n0\t1\n")
    out = tmp_path / "derivatives" / "audio-embeddings"
    rows = np.random.default_rng(0).standard_normal((150, 5)).astype(np.float32)
    tsv, side = write_bids_timeseries(out, stim="sub-01_task-listen_run-1", model="wav2vec2-base", layer=6,
                                      rows=rows, sampling_frequency_hz=0.5, start_time_s=0.875,
                                      settings={"hrf": "spm"})
    assert tsv.name == "sub-01_task-listen_run-1_desc-wav2vec2baselayer6_timeseries.tsv.gz"
    with gzip.open(tsv, "rt") as f:
        back = np.loadtxt(f, delimiter="\t")
    np.testing.assert_allclose(back, rows, rtol=1e-6)
    layout = BIDSLayout(raw, derivatives=str(out), validate=False)
    found = layout.get(desc="wav2vec2baselayer6", suffix="timeseries", extension=".tsv.gz", scope="derivatives")
    assert [f.path for f in found] == [str(tsv)]
    meta = found[0].get_metadata()
    assert meta["SamplingFrequency"] == 0.5 and meta["StartTime"] == 0.875 and len(meta["Columns"]) == 5
    assert meta["Model"] == "wav2vec2-base"
    with pytest.raises(FeaturesError, match="BIDS entities"):
        write_bids_timeseries(out, stim="my stim", model="m", layer=None, rows=rows, sampling_frequency_hz=1.0)


def test_declared_options_reach_the_align_stage():
    flags = {o.flag for o in al.OPTIONS}
    assert {"--events", "--n-volumes", "--bold-json", "--dummy-scans", "--slice-time-ref"} <= flags
    s = settings_from({"tr_s": "2", "n_volumes": "40", "dummy_scans": "2"})
    assert s.n_volumes == 40 and s.dummy_scans == 2 and s.target_rate_hz == 0.5
