"""Alignment to brain-data time grids (audio_embeddings.align): known answers, the writers, python/align.py."""

from __future__ import annotations

import json
import math
import time

import h5py
import numpy as np
import pytest
import scipy.io

from audio_embeddings import align as al
from audio_embeddings.align import AlignSettings, align_embeddings, delay_stack, hrf_kernel, settings_from
from audio_embeddings.backends.base import FileEmbedding
from audio_embeddings.corpus.shard import Shard
from audio_embeddings.corpus.store import StoreWriter, merge_store
from audio_embeddings.outputs.contract import write_outputs
from helpers import run_script

STRIDE, WINDOW, SR = 0.02, 0.025, 16000  # wav2vec2's grid


def grid(seconds: float, *, rate_hz: float = 50.0) -> np.ndarray:
    return np.arange(int(round(seconds * rate_hz))) / rate_hz


def tones(onsets: np.ndarray, window_s: float, freqs, phase: float = 0.3) -> np.ndarray:
    """float64 [T, len(freqs)]: unit sinusoids sampled at the rows' centres."""
    centres = onsets + window_s / 2
    return np.stack([np.sin(2 * np.pi * f * centres + phase) for f in freqs], axis=1)


def inner(aligned, duration_s: float) -> np.ndarray:
    """Output rows at least the Lanczos half-support (+1 s) away from both ends of the track."""
    edge = 3 / (2 * aligned.cutoff_hz) + 1.0
    t = aligned.time_axis_s
    return (t > edge) & (t < duration_s - edge)


def attenuation_db(y: np.ndarray) -> float:
    """RMS of y relative to a unit sinusoid's (1/sqrt(2)), in dB."""
    return 20 * math.log10(np.sqrt(np.mean(y ** 2)) * math.sqrt(2))


# --- known answers ----------------------------------------------------------------------------


def test_downsampling_50_to_0_5_hz_keeps_the_pass_band_and_stops_the_rest():
    dur = 300.0
    onsets = grid(dur)
    passband, stopband = [0.02, 0.05], [0.4, 0.6, 1.3, 7.0]  # target Nyquist 0.25 Hz
    x = tones(onsets, WINDOW, passband + stopband)
    x = np.concatenate([x, x.sum(axis=1, keepdims=True)], axis=1)
    a = align_embeddings(x, onsets, window_s=WINDOW, target_rate_hz=0.5)
    assert a.cutoff_hz == pytest.approx(0.25) and a.source_rate_hz == pytest.approx(50.0)
    keep = inner(a, dur)
    t = a.time_axis_s[keep]
    y = a.embeddings[keep]
    for i, f in enumerate(passband):
        assert np.max(np.abs(y[:, i] - np.sin(2 * np.pi * f * t + 0.3))) <= 0.01, f  # within 1 %
    for i, f in enumerate(stopband, start=len(passband)):
        assert attenuation_db(y[:, i]) <= -20.0, f
        assert np.max(np.abs(y[:, i])) <= 0.1, f
    np.testing.assert_allclose(y[:, -1], y[:, :-1].sum(axis=1), atol=1e-9)  # linear: the sum is the sum


def test_downsampling_50_to_10_hz_same_pass_and_stop_bands():
    dur = 60.0
    onsets = grid(dur)
    x = tones(onsets, WINDOW, [1.0, 8.0, 20.0])  # target Nyquist 5 Hz
    a = align_embeddings(x, onsets, window_s=WINDOW, target_rate_hz=10.0)
    keep = inner(a, dur)
    t = a.time_axis_s[keep]
    assert np.max(np.abs(a.embeddings[keep, 0] - np.sin(2 * np.pi * 1.0 * t + 0.3))) <= 0.01
    assert attenuation_db(a.embeddings[keep, 1]) <= -20.0
    assert attenuation_db(a.embeddings[keep, 2]) <= -20.0


def test_upsampling_50_to_64_hz_interpolates_within_1_percent():
    dur = 20.0
    onsets = grid(dur)
    freqs = [0.5, 2.0, 5.0]
    a = align_embeddings(tones(onsets, WINDOW, freqs), onsets, window_s=WINDOW, target_rate_hz=64.0)
    assert a.cutoff_hz == pytest.approx(25.0)  # half the lower (source) rate
    n = math.ceil(round((onsets[-1] + WINDOW) * 64, 9))
    np.testing.assert_array_equal(a.time_axis_s, np.arange(n) / 64)
    keep = inner(a, dur)
    t = a.time_axis_s[keep]
    for i, f in enumerate(freqs):
        assert np.max(np.abs(a.embeddings[keep, i] - np.sin(2 * np.pi * f * t + 0.3))) <= 0.01, f


@pytest.mark.parametrize("method", al.METHODS)
@pytest.mark.parametrize("rate", [0.5, 3.0, 64.0])
def test_a_constant_stays_constant_up_to_the_ends(method, rate):
    onsets = grid(30.0)
    x = np.full((onsets.size, 3), 2.75)
    a = align_embeddings(x, onsets, window_s=WINDOW, target_rate_hz=rate, method=method, duration_s=30.0)
    np.testing.assert_allclose(a.embeddings, 2.75, rtol=1e-12)
    a32 = align_embeddings(x.astype(np.float32), onsets, window_s=WINDOW, target_rate_hz=rate, method=method)
    assert a32.embeddings.dtype == np.float32
    np.testing.assert_allclose(a32.embeddings, 2.75, rtol=5e-6)  # float32 products (up to ~600 terms)


def test_a_step_is_centred_on_the_output_row_of_the_window_centres():
    # rows every 20 ms seeing 420 ms: centres at onset + 0.21 s; the step between rows 489 and 490
    # lies half-way between their centres (9.99 s, 10.01 s), i.e. on output row 10 at 1 Hz
    onsets = grid(20.0)
    x = (np.arange(onsets.size) >= 490).astype(np.float64)[:, None]
    y = align_embeddings(x, onsets, window_s=0.42, target_rate_hz=1.0).embeddings[:, 0]
    assert y[10] == pytest.approx(0.5, abs=1e-9)
    for k in range(1, 4):  # odd symmetry about row 10
        assert y[10 - k] + y[10 + k] == pytest.approx(1.0, abs=1e-9)
    assert np.all(y[:9] < 0.1) and np.all(y[12:] > 0.9) and y[9] < 0.1 < 0.9 < y[11]
    # taken at the onsets instead of the centres, the step would sit 0.21 s late
    unshifted = align_embeddings(x, onsets, window_s=0.0, target_rate_hz=1.0).embeddings[:, 0]
    assert unshifted[10] > 0.6


def test_mean_is_the_tr_boxcar_and_nearest_the_nearest_centre():
    onsets = grid(10.0)
    x = np.arange(onsets.size, dtype=np.float64)[:, None]  # row j holds j
    mean = align_embeddings(x, onsets, window_s=0.02, target_rate_hz=1.0, method="mean")
    # centres 0.02 j + 0.01: [k, k + 1) holds rows 50k .. 50k + 49
    np.testing.assert_allclose(mean.embeddings[:10, 0], 50 * np.arange(10) + 24.5, rtol=0, atol=1e-9)
    nearest = align_embeddings(x, onsets, window_s=0.008, target_rate_hz=1.0, method="nearest", duration_s=11.0)
    np.testing.assert_array_equal(nearest.embeddings[:10, 0], 50 * np.arange(10))
    assert nearest.embeddings[10, 0] == onsets.size - 1  # past the last centre: the last row
    # upsampling: an empty boxcar takes the row nearest t_k
    up = align_embeddings(x, onsets, window_s=0.008, target_rate_hz=200.0, method="mean")
    near = align_embeddings(x, onsets, window_s=0.008, target_rate_hz=200.0, method="nearest")
    empty = np.array([not np.any((c >= t) & (c < t + 1 / 200)) for t in up.time_axis_s[:100]
                      for c in [onsets + 0.004]])
    assert empty.any()
    np.testing.assert_array_equal(up.embeddings[:100][empty], near.embeddings[:100][empty])


def test_output_rows_far_past_the_audio_take_the_nearest_row():
    onsets = grid(4.0)
    x = tones(onsets, WINDOW, [0.3])
    a = align_embeddings(x, onsets, window_s=WINDOW, target_rate_hz=2.0, duration_s=60.0)
    assert np.all(np.isfinite(a.embeddings))
    np.testing.assert_array_equal(a.embeddings[a.time_axis_s > 10.0], np.float64(x[-1, 0]))


@pytest.mark.parametrize("name", ["spm", "glover"])
def test_hrf_peaks_5_to_6_s_after_an_impulse(name):
    rate = 10.0
    onsets = np.arange(600) / rate  # 60 s of rows at 10 Hz, aligned to themselves
    x = np.zeros((600, 2))
    x[100, 0] = 1.0  # an impulse at 10 s
    x[:, 1] = 4.0
    a = align_embeddings(x, onsets, window_s=0.0, target_rate_hz=rate, method="nearest", hrf=name,
                         duration_s=59.9, hrf_oversampling=1)
    y = a.embeddings[:, 0]
    assert 5.0 <= a.time_axis_s[np.argmax(y)] - 10.0 <= 6.0
    assert np.all(np.abs(y[:100]) < 1e-12)  # causal (an FFT convolution at 320 taps: rounding only)
    h = hrf_kernel(name, rate)
    assert h.shape == (320,) and h.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(y[100:100 + 320], h[:500], atol=1e-12)
    assert np.min(h) < 0  # the undershoot
    np.testing.assert_allclose(a.embeddings[330:, 1], 4.0, rtol=1e-9)  # after 32 s a constant is kept
    assert 5.0 <= np.argmax(hrf_kernel(name, 0.5)) * 2.0 <= 6.0  # TR 2


def test_hrf_kernels_shapes_and_none():
    # the values are checked against nilearn's spm_hrf/glover_hrf in tests/test_events_runs.py
    np.testing.assert_array_equal(hrf_kernel("none", 0.5), [1.0])
    assert hrf_kernel("spm", 0.5).shape == (16,)  # round(32 s / 2 s)
    assert hrf_kernel("spm", 0.5, oversampling=50).shape == (800,)
    with pytest.raises(ValueError, match="oversampling"):
        hrf_kernel("spm", 0.5, oversampling=0)


def test_long_hrf_through_the_fft_equals_the_direct_sum():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 3))
    h = hrf_kernel("glover", 8.0)  # 256 taps
    direct = np.stack([np.convolve(x[:, j], h)[:400] for j in range(3)], axis=1)
    np.testing.assert_allclose(al._causal_convolve(x, h), direct, atol=1e-12)
    np.testing.assert_allclose(al._causal_convolve(x, h[:10]), np.stack(
        [np.convolve(x[:, j], h[:10])[:400] for j in range(3)], axis=1), atol=1e-12)


def test_delays_shift_by_exactly_one_row():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 3)).astype(np.float32)
    out = delay_stack(x, (0, 1))
    assert out.shape == (7, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :3], x)
    np.testing.assert_array_equal(out[1:, 3:], x[:-1])
    np.testing.assert_array_equal(out[0, 3:], 0)
    layers = delay_stack(np.stack([x, 2 * x]), (2,))
    np.testing.assert_array_equal(layers[1, 2:], 2 * x[:-2])
    assert np.all(delay_stack(x, (9,)) == 0)
    with pytest.raises(ValueError):
        delay_stack(x, (-1,))


def test_hrf_and_delays_shapes_for_tr_2():
    dur = 31.0
    onsets = np.arange(int(dur / STRIDE) - 1) * STRIDE
    x = np.random.default_rng(3).standard_normal((onsets.size, 5)).astype(np.float32)
    base = align_embeddings(x, onsets, window_s=WINDOW, target_rate_hz=0.5, hrf="spm", duration_s=dur)
    a = align_embeddings(x, onsets, window_s=WINDOW, target_rate_hz=0.5, hrf="spm", delays=(1, 2, 3, 4),
                         duration_s=dur)
    assert a.embeddings.shape == (math.ceil(dur / 2), 4 * 5) == (16, 20)
    np.testing.assert_array_equal(a.time_axis_s, np.arange(16) * 2.0)
    for i, d in enumerate((1, 2, 3, 4)):
        np.testing.assert_array_equal(a.embeddings[d:, 5 * i:5 * (i + 1)], base.embeddings[:16 - d])
        np.testing.assert_array_equal(a.embeddings[:d, 5 * i:5 * (i + 1)], 0)


@pytest.mark.parametrize("start, duration, rate, n", [
    (0.0, 10.0, 0.5, 5), (0.0, 7.0, 1 / 0.7, 10), (1.5, 3.0, 64.0, 192), (-2.0, 4.0, 1 / 1.5, 3), (0.25, 0.5, 2.0, 1),
    (0.0, 10.1, 0.5, 6), (0.0, 0.3, 10.0, 3)])
def test_the_time_axis_is_exactly_start_plus_k_over_r(start, duration, rate, n):
    onsets = grid(12.0)
    a = align_embeddings(np.ones((onsets.size, 1)), onsets, window_s=WINDOW, target_rate_hz=rate, start_s=start,
                         duration_s=duration)
    assert a.time_axis_s.dtype == np.float64 and a.time_axis_s.shape == (n,)
    np.testing.assert_array_equal(a.time_axis_s, start + np.arange(n) / rate)
    assert a.settings.duration_s == duration


@pytest.mark.parametrize("duration, rate, n", [
    (600.0, 0.5, 300), (600.0, 100.0, 60000), (4.0, 0.5, 2), (4.1, 0.5, 3), (3.9, 0.5, 2), (600.0, 64.0, 38400),
    (7.0, 1 / 0.7, 10), (0.3, 10.0, 3), (1e-6, 0.5, 1)])
def test_the_grid_is_the_points_inside_the_stimulus(duration, rate, n):
    """ceil(D * R) rows at t = 0 .. (n - 1) / R: 600 s at TR 2 is 300 volumes (0, 2, ..., 598): a scanner's grid."""
    assert al.grid_size(duration, rate) == n
    onsets = grid(min(duration, 20.0) + 1.0)
    a = align_embeddings(np.ones((onsets.size, 2), np.float32), onsets, window_s=WINDOW, target_rate_hz=rate,
                         duration_s=duration, method="nearest")
    assert a.embeddings.shape == (n, 2) and a.describe()["n_rows"] == n
    assert a.time_axis_s[-1] < duration <= a.time_axis_s[-1] + 1 / rate + 1e-9


def test_a_zero_duration_is_refused():
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        AlignSettings(target_rate_hz=0.5, duration_s=0.0)
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        align_embeddings(np.ones((5, 1)), np.arange(5.0), window_s=1.0, target_rate_hz=0.5, duration_s=0.0)


def test_a_result_aligns_as_the_writers_do_on_its_files_duration(tmp_path):
    """The API and the scripts agree: 600 s of wav2vec2 rows at TR 2 are 300 rows whether aligned from the arrays
    (duration: the last row's end, 599.985 s), from the result (the file's 600 s) or by write_outputs (the scripts);
    4 s are 2 rows."""
    for seconds, n in [(600.0, 300), (4.0, 2)]:
        result = file_embedding(seconds, dim=3)
        from_arrays = align_embeddings(result.embeddings, result.time_axis_s, window_s=result.window_s,
                                       target_rate_hz=0.5)
        from_result = align_embeddings(result, target_rate_hz=0.5)
        assert from_result.settings.duration_s == seconds
        assert from_arrays.embeddings.shape == from_result.embeddings.shape == (n, 3)
        np.testing.assert_array_equal(from_result.time_axis_s, np.arange(n) * 2.0)
        np.testing.assert_array_equal(AlignSettings(target_rate_hz=0.5).apply(result).embeddings,
                                      from_result.embeddings)
        out = tmp_path / f"{seconds:g}"
        write(result, out, align=AlignSettings(target_rate_hz=0.5), formats=("npy",))
        np.testing.assert_array_equal(np.load(out / "emb_aligned.npy"), from_result.embeddings)  # bit for bit
    eeg = align_embeddings(file_embedding(600.0, dim=2), target_rate_hz=100.0)
    assert eeg.embeddings.shape == (60000, 2) and eeg.time_axis_s[-1] == 599.99
    with pytest.raises(ValueError, match="its own time axis"):
        align_embeddings(result, result.time_axis_s, window_s=WINDOW, target_rate_hz=0.5)
    with pytest.raises(ValueError, match="needs time_axis_s"):
        align_embeddings(result.embeddings, target_rate_hz=0.5)


def test_default_duration_is_the_last_rows_end():
    onsets = grid(9.99)
    a = align_embeddings(np.ones((onsets.size, 1)), onsets, window_s=WINDOW, target_rate_hz=2.0)
    assert a.settings.duration_s == pytest.approx(onsets[-1] + WINDOW)
    assert a.time_axis_s[-1] == 10.0


def test_layers_are_aligned_one_by_one():
    onsets = grid(12.0)
    x = np.random.default_rng(4).standard_normal((3, onsets.size, 4)).astype(np.float32)
    kw = dict(window_s=WINDOW, target_rate_hz=0.5, hrf="glover", delays=(0, 2))
    a = align_embeddings(x, onsets, **kw)
    assert a.embeddings.shape == (3, 7, 8) and a.embeddings.dtype == np.float32
    for layer in range(3):
        np.testing.assert_array_equal(a.embeddings[layer], align_embeddings(x[layer], onsets, **kw).embeddings)


def test_ten_minutes_at_50_hz_to_64_hz_is_fast():
    onsets = grid(600.0)
    x = np.random.default_rng(5).standard_normal((onsets.size, 16)).astype(np.float32)
    align_embeddings(x[:200], onsets[:200], window_s=WINDOW, target_rate_hz=64.0)  # imports
    t0 = time.perf_counter()
    a = align_embeddings(x, onsets, window_s=WINDOW, target_rate_hz=64.0)
    elapsed = time.perf_counter() - t0
    assert a.embeddings.shape == (38401, 16)
    assert elapsed < 1.0, elapsed


def test_rows_without_a_time_grid_are_refused():
    with pytest.raises(ValueError, match="utterance"):
        align_embeddings(np.ones((1, 4)), np.zeros(1), window_s=3.0, target_rate_hz=0.5)
    with pytest.raises(ValueError, match="one onset per row"):
        align_embeddings(np.ones((5, 4)), np.arange(4.0), window_s=0.0, target_rate_hz=0.5)
    with pytest.raises(ValueError, match="non-decreasing"):
        align_embeddings(np.ones((3, 4)), np.array([0.0, 2.0, 1.0]), window_s=0.0, target_rate_hz=0.5)
    with pytest.raises(ValueError, match="method"):
        align_embeddings(np.ones((3, 4)), np.arange(3.0), window_s=0.0, target_rate_hz=0.5, method="cubic")
    with pytest.raises(ValueError, match="target_rate_hz"):
        AlignSettings(target_rate_hz=0)
    assert AlignSettings(target_rate_hz=0.5, delays=None).delays == (0,)


# --- options ----------------------------------------------------------------------------------


def test_options_are_declared_once_with_their_matlab_names():
    flags = {o.flag: o.matlab_name for o in al.OPTIONS}
    assert flags == {"--target-rate-hz": "TargetRate", "--tr": "TR", "--align-start": "AlignStart",
                     "--align-duration": "AlignDuration", "--align-method": "AlignMethod", "--hrf": "HRF",
                     "--delays": "Delays", "--events": "Events", "--events-tier": "EventsTier",
                     "--n-volumes": "NVolumes", "--bold-json": "BoldJson", "--slice-time-ref": "SliceTimeRef",
                     "--dummy-scans": "DummyScans", "--hrf-oversampling": "HRFOversampling"}
    assert all(o.affects == "outputs" for o in al.OPTIONS)
    by_flag = {o.flag: o for o in al.OPTIONS}
    assert by_flag["--delays"].convert("1,2,3,4") == (1, 2, 3, 4)
    assert by_flag["--align-method"].convert("mean") == "mean"
    with pytest.raises(ValueError):
        by_flag["--align-method"].convert("cubic")
    with pytest.raises(ValueError):
        by_flag["--delays"].convert("1,-2")
    with pytest.raises(ValueError):
        by_flag["--tr"].convert("0")


def test_settings_from_parsed_values():
    assert settings_from({}) is None
    assert settings_from({o.dest: None for o in al.OPTIONS}) is None
    s = settings_from({"tr_s": 2.0, "hrf": "spm", "delays": (1, 2, 3, 4)})
    assert s == AlignSettings(target_rate_hz=0.5, hrf="spm", delays=(1, 2, 3, 4))
    assert s.tr_s == 2.0 and s.describe()["delays"] == [1, 2, 3, 4]
    assert settings_from({"target_rate_hz": "64", "align_method": "nearest", "align_start_s": "-1.5"}) == \
        AlignSettings(target_rate_hz=64.0, method="nearest", start_s=-1.5)
    with pytest.raises(ValueError, match="--target-rate-hz.*--tr"):
        settings_from({"target_rate_hz": 0.5, "tr_s": 2.0})
    with pytest.raises(ValueError, match="--hrf"):
        settings_from({"hrf": "spm"})


def test_options_parse_on_a_command_line():
    import argparse

    parser = argparse.ArgumentParser()
    for option in al.OPTIONS:
        option.add_to(parser)
    args = parser.parse_args(["--tr", "2", "--hrf", "glover", "--delays", "0,1", "--align-duration", "30"])
    assert settings_from(vars(args)) == AlignSettings(target_rate_hz=0.5, hrf="glover", delays=(0, 1),
                                                      duration_s=30.0)


# --- the writers -------------------------------------------------------------------------------


def file_embedding(seconds: float = 7.3, *, dim: int = 6, layers: int | None = None) -> FileEmbedding:
    n_samples = int(seconds * SR)
    n_rows = (n_samples - 400) // 320 + 1
    rng = np.random.default_rng(6)
    shape = (n_rows, dim) if layers is None else (layers, n_rows, dim)
    return FileEmbedding(embeddings=rng.standard_normal(shape).astype(np.float32),
                         time_axis_s=np.arange(n_rows) * STRIDE, frame_stride_s=STRIDE, window_s=WINDOW,
                         sample_rate_hz=SR, n_samples=n_samples, extras={"codes": np.arange(n_rows)})


def write(result, out_dir, *, align=None, mat_version="5", formats=("npy", "mat", "json")):
    return write_outputs(result, output_dir=out_dir, basename="emb", model_name="tiny", backend_info={"name": "t"},
                         backend_fields={}, input_path="<memory>", audio_info={"duration_s": 7.3},
                         started_at="now", formats=formats, mat_version=mat_version, argv=["x"], align=align)


SETTINGS = AlignSettings(target_rate_hz=0.5, hrf="spm", delays=(1, 2, 3, 4))


@pytest.mark.parametrize("mat_version", ["5", "7.3"])
def test_write_outputs_aligned_equals_the_pure_function_on_the_npy(tmp_path, mat_version):
    result = file_embedding()
    paths = write(result, tmp_path, align=SETTINGS, mat_version=mat_version)
    assert paths["aligned"] == str(tmp_path / "emb_aligned.npy")
    raw = np.load(tmp_path / "emb.npy")
    aligned = np.load(tmp_path / "emb_aligned.npy")
    if mat_version == "5":
        mat = scipy.io.loadmat(tmp_path / "emb.mat")
        axis, window = mat["time_axis"], float(mat["window_s"][0, 0])
    else:
        mat = al.read_mat(tmp_path / "emb.mat")
        axis, window = mat["time_axis"], float(mat["window_s"][0, 0])
    expected = align_embeddings(raw, axis.ravel(), window_s=window, target_rate_hz=0.5, hrf="spm",
                                delays=(1, 2, 3, 4), duration_s=result.n_samples / result.sample_rate_hz)
    np.testing.assert_array_equal(aligned, expected.embeddings)  # bit for bit
    assert aligned.shape == (math.ceil(7.3 / 2), 4 * 6) == (4, 24) and aligned.dtype == np.float32
    # the .mat variables: shapes and classes
    if mat_version == "5":
        assert mat["embeddings_aligned"].dtype == np.float32 and mat["embeddings_aligned"].shape == (4, 24)
        np.testing.assert_array_equal(mat["embeddings_aligned"], aligned)
        assert mat["time_axis_aligned"].dtype == np.float64 and mat["time_axis_aligned"].shape == (4, 1)
        np.testing.assert_array_equal(mat["time_axis_aligned"].ravel(), [0.0, 2.0, 4.0, 6.0])
        assert mat["target_rate"].shape == (1, 1) and mat["target_rate"][0, 0] == 0.5
        assert mat["align_method"][0] == "lanczos" and mat["hrf"][0] == "spm"
        assert mat["delays"].dtype == np.float64 and mat["delays"].shape == (1, 4)
        np.testing.assert_array_equal(mat["delays"], [[1, 2, 3, 4]])
        np.testing.assert_array_equal(mat["embeddings"], raw)  # the raw embeddings are written too
    else:
        with h5py.File(tmp_path / "emb.mat", "r") as f:
            assert f["embeddings_aligned"].attrs["MATLAB_class"] == b"single"
            assert f["embeddings_aligned"].shape == (24, 4)  # MATLAB 4 x 24, column-major
            assert f["time_axis_aligned"].shape == (1, 4) and f["delays"].shape == (4, 1)  # 4 x 1, 1 x 4
            assert f["hrf"].attrs["MATLAB_class"] == b"char"
        np.testing.assert_array_equal(mat["embeddings_aligned"], aligned)
        np.testing.assert_array_equal(mat["time_axis_aligned"], [[0.0], [2.0], [4.0], [6.0]])
        assert mat["align_method"] == "lanczos" and mat["hrf"] == "spm"
        np.testing.assert_array_equal(mat["delays"], [[1, 2, 3, 4]])
    meta = json.loads((tmp_path / "emb.json").read_text())
    section = meta["alignment"]
    assert section["target_rate_hz"] == 0.5 and section["tr_s"] == 2.0 and section["method"] == "lanczos"
    assert section["hrf"] == "spm" and section["delays"] == [1, 2, 3, 4] and section["shape"] == [4, 24]
    assert section["duration_s"] == pytest.approx(7.3) and section["start_s"] == 0.0
    assert section["npy"] == str(tmp_path / "emb_aligned.npy")
    # the main .npy, which marks the file complete, is written last
    assert (tmp_path / "emb.npy").stat().st_mtime_ns >= (tmp_path / "emb_aligned.npy").stat().st_mtime_ns


def test_write_outputs_without_align_is_unchanged(tmp_path):
    paths = write(file_embedding(), tmp_path)
    assert "aligned" not in paths
    assert not (tmp_path / "emb_aligned.npy").exists()
    mat = scipy.io.loadmat(tmp_path / "emb.mat")
    assert not {"embeddings_aligned", "time_axis_aligned", "target_rate", "delays"} & set(mat)
    assert "alignment" not in json.loads((tmp_path / "emb.json").read_text())


def test_write_outputs_aligns_layers_and_refuses_an_utterance(tmp_path):
    result = file_embedding(layers=3)
    write(result, tmp_path, align=AlignSettings(target_rate_hz=0.5), formats=("npy",))
    aligned = np.load(tmp_path / "emb_aligned.npy")
    assert aligned.shape == (3, 4, 6)
    one = FileEmbedding(embeddings=np.ones((1, 4), np.float32), time_axis_s=np.zeros(1), frame_stride_s=0.0,
                        window_s=3.0, sample_rate_hz=SR, n_samples=3 * SR)
    with pytest.raises(ValueError, match="utterance"):
        write(one, tmp_path / "u", align=SETTINGS)
    assert not (tmp_path / "u").exists()


def test_store_holds_aligned_datasets_and_the_merged_file_links_them(tmp_path):
    store = tmp_path / "emb.h5"
    writer = StoreWriter(store, shard=Shard(0, 1), run_info={"model_name": "tiny"}, align=SETTINGS)
    results = {"a/x.wav": file_embedding(7.3), "b/y.wav": file_embedding(12.0)}
    for key, result in results.items():
        writer.write(key, result, input_path=key, audio_info={"duration_s": result.n_samples / SR})
    writer.close()
    merge_store(store)
    with h5py.File(store, "r") as f:
        assert json.loads(f.attrs["alignment"])["hrf"] == "spm"
        for key, result in results.items():
            expected = SETTINGS.apply(result.embeddings, result.time_axis_s, window_s=WINDOW,
                                      duration_s=result.n_samples / SR)
            ds = f[f"aligned/{key}"]
            np.testing.assert_array_equal(ds[()], expected.embeddings)
            np.testing.assert_array_equal(f[f"time_axis_aligned/{key}"][()], expected.time_axis_s)
            assert ds.attrs["target_rate_hz"] == 0.5 and ds.attrs["hrf"] == "spm"
            np.testing.assert_array_equal(ds.attrs["delays"], [1, 2, 3, 4])
        assert f["aligned/b/y.wav"].shape == (6, 24)  # 12 s at TR 2: t = 0, 2, ..., 10


# --- python/align.py ---------------------------------------------------------------------------


@pytest.mark.parametrize("mat_version", ["5", "7.3"])
def test_align_script_on_a_mat_written_earlier(tmp_path, mat_version):
    result = file_embedding()
    write(result, tmp_path, mat_version=mat_version)  # no alignment at extraction time
    proc = run_script("align.py", str(tmp_path / "emb.mat"), "--tr", "2", "--hrf", "spm", "--delays", "1,2,3,4")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "emb_aligned.mat"
    got = al.read_mat(out)
    assert (al._is_hdf5(out)) == (mat_version == "7.3")
    expected = SETTINGS.apply(result.embeddings, result.time_axis_s, window_s=WINDOW,
                              duration_s=result.n_samples / SR)  # the duration comes from emb.json
    np.testing.assert_array_equal(got["embeddings_aligned"], expected.embeddings)
    np.testing.assert_array_equal(got["time_axis_aligned"].ravel(), [0.0, 2.0, 4.0, 6.0])
    np.testing.assert_array_equal(got["embeddings"], result.embeddings)  # the raw variables are kept
    np.testing.assert_array_equal(got["codes"].ravel(), result.extras["codes"])
    assert got["model_name"] == "tiny" and got["hrf"] == "spm" and got["align_method"] == "lanczos"
    assert float(got["target_rate"][0, 0]) == 0.5


def test_align_script_on_a_npy_and_its_errors(tmp_path):
    result = file_embedding()
    np.save(tmp_path / "rows.npy", result.embeddings)
    np.save(tmp_path / "axis.npy", result.time_axis_s)
    proc = run_script("align.py", str(tmp_path / "rows.npy"), "--time-axis", str(tmp_path / "axis.npy"),
                      "--window-s", str(WINDOW), "--target-rate-hz", "10", "--align-method", "mean")
    assert proc.returncode == 0, proc.stderr
    expected = align_embeddings(result.embeddings, result.time_axis_s, window_s=WINDOW, target_rate_hz=10.0,
                                method="mean")
    np.testing.assert_array_equal(np.load(tmp_path / "rows_aligned.npy"), expected.embeddings)
    np.testing.assert_array_equal(np.load(tmp_path / "rows_aligned_time_axis.npy"), expected.time_axis_s)

    write(result, tmp_path)
    for args, words in [(["--tr", "2", "--target-rate-hz", "0.5"], ["--target-rate-hz", "--tr"]),
                        ([], ["--tr"]), (["--tr", "0"], ["--tr"]), (["--tr", "2", "--hrf", "x"], ["--hrf"])]:
        proc = run_script("align.py", str(tmp_path / "emb.mat"), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert all(w in lines[0] for w in words), lines[0]
    proc = run_script("align.py", str(tmp_path / "missing.mat"), "--tr", "2")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")


# --- end to end ---------------------------------------------------------------------------------


def test_b2_with_tr_hrf_and_delays_writes_the_aligned_outputs(tiny_model, tmp_path):
    from conftest import DEMO_CLIPS

    proc = run_script("B2_model_wav2vec2.py", str(DEMO_CLIPS[0]), "--model", str(tiny_model("wav2vec2")),
                      "--output-dir", str(tmp_path), "--tr", "2", "--hrf", "spm", "--delays", "1,2,3,4")
    assert proc.returncode == 0, proc.stderr
    base = tmp_path / "wav2vec2_embeddings"
    meta = json.loads(base.with_suffix(".json").read_text())
    duration = meta["num_samples"] / meta["sample_rate"]
    raw = np.load(base.with_suffix(".npy"))
    mat = scipy.io.loadmat(base.with_suffix(".mat"))
    n = math.ceil(round(duration / 2, 9))
    assert mat["embeddings_aligned"].shape == (n, 4 * raw.shape[1])
    np.testing.assert_array_equal(mat["time_axis_aligned"].ravel(), np.arange(n) * 2.0)
    expected = align_embeddings(raw, mat["time_axis"].ravel(), window_s=float(mat["window_s"][0, 0]),
                                target_rate_hz=0.5, hrf="spm", delays=(1, 2, 3, 4), duration_s=duration)
    np.testing.assert_array_equal(np.load(tmp_path / "wav2vec2_embeddings_aligned.npy"), expected.embeddings)
    np.testing.assert_array_equal(mat["embeddings_aligned"], expected.embeddings)
    assert meta["alignment"]["hrf"] == "spm" and meta["alignment"]["shape"] == [n, 4 * raw.shape[1]]


@pytest.mark.slow
def test_600_s_at_tr_2_is_300_rows_from_the_api_and_from_embed_py(tiny_model, tmp_path):
    """Issue 22: the API said 300 and the scripts 301. Both: the volumes inside the stimulus (t = 0, 2, ..., 598);
    4 s at TR 2: 2 rows."""
    import soundfile as sf

    import audio_embeddings as ae
    from helpers import noise

    clips = tmp_path / "clips"
    clips.mkdir()
    for i, (name, seconds) in enumerate([("long", 600.0), ("short", 4.0)]):
        sf.write(clips / f"{name}.wav", noise(seconds, SR, seed=i), SR, subtype="PCM_16")
    model_dir = str(tiny_model("wav2vec2"))
    out = tmp_path / "out"
    proc = run_script("embed.py", str(clips), "--model", model_dir, "--output-dir", str(out), "--device", "cpu",
                      "--formats", "npy,mat,json", "--tr", "2")
    assert proc.returncode == 0, proc.stderr
    model = ae.load_model(model_dir, device="cpu")
    for name, n in [("long", 300), ("short", 2)]:
        scripted = np.load(out / f"{name}_aligned.npy")
        mat = scipy.io.loadmat(out / f"{name}.mat")
        np.testing.assert_array_equal(mat["time_axis_aligned"].ravel(), np.arange(n) * 2.0)
        result = model.embed_file(clips / f"{name}.wav")
        api = align_embeddings(result, target_rate_hz=0.5)
        from_arrays = align_embeddings(result.embeddings, result.time_axis_s, window_s=result.window_s,
                                       target_rate_hz=0.5)
        assert scripted.shape[0] == api.embeddings.shape[0] == from_arrays.embeddings.shape[0] == n, name
        np.testing.assert_array_equal(api.time_axis_s, np.arange(n) * 2.0)
        np.testing.assert_allclose(api.embeddings, scripted, rtol=1e-4, atol=1e-5)  # batched there, whole here
        raw = np.load(out / f"{name}.npy")
        expected = align_embeddings(raw, mat["time_axis"].ravel(), window_s=float(mat["window_s"][0, 0]),
                                    target_rate_hz=0.5, duration_s=result.duration_s)
        np.testing.assert_array_equal(scripted, expected.embeddings)  # the script's rows, bit for bit
