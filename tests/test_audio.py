"""Audio in: formats, bit depths, channels, rates, and one-line errors for bad files."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from scipy.io import savemat

from audio_embeddings import audio
from helpers import noise

RATE = 16000


def tone(rate_hz, seconds=1.0, channels=1):
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    x = 0.5 * np.sin(2 * np.pi * 220 * t)
    return np.stack([x, -0.5 * x], axis=1) if channels == 2 else x


@pytest.mark.parametrize("subtype,atol", [("PCM_16", 2 / 2**15), ("PCM_24", 2 / 2**23), ("FLOAT", 1e-7),
                                          ("PCM_U8", 2 / 2**7)])
def test_wav_bit_depths_are_scaled_to_unit_range(tmp_path, subtype, atol):
    path = tmp_path / f"x_{subtype}.wav"
    sf.write(path, tone(RATE), RATE, subtype=subtype)
    got = audio.load(path, sample_rate_hz=RATE)
    np.testing.assert_allclose(got.samples, tone(RATE), atol=atol)
    assert got.samples.dtype == np.float32


def test_flac(tmp_path):
    sf.write(tmp_path / "x.flac", tone(RATE), RATE, subtype="PCM_16")
    np.testing.assert_allclose(audio.load(tmp_path / "x.flac", sample_rate_hz=RATE).samples, tone(RATE), atol=1e-4)


def test_stereo_is_averaged_or_one_channel_is_kept(tmp_path):
    sf.write(tmp_path / "st.wav", tone(RATE, channels=2), RATE, subtype="FLOAT")
    mean = audio.load(tmp_path / "st.wav", sample_rate_hz=RATE)
    np.testing.assert_allclose(mean.samples, 0.125 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE), atol=1e-6)
    right = audio.load(tmp_path / "st.wav", sample_rate_hz=RATE, channel=1)
    np.testing.assert_allclose(right.samples, tone(RATE, channels=2)[:, 1], atol=1e-6)
    assert (mean.source_channels, right.channel) == (2, 1)
    with pytest.raises(audio.AudioError, match="st.wav.*channel 2.*2 channel"):
        audio.load(tmp_path / "st.wav", sample_rate_hz=RATE, channel=2)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampled_to_model_rate(tmp_path, rate):
    sf.write(tmp_path / "r.wav", tone(rate, seconds=2.0), rate, subtype="FLOAT")
    got = audio.load(tmp_path / "r.wav", sample_rate_hz=RATE)
    assert got.samples.shape[0] == 2 * RATE and got.source_sample_rate_hz == rate
    # the 220 Hz tone survives resampling: compare the middle (away from filter edges)
    np.testing.assert_allclose(got.samples[4000:-4000], tone(RATE, seconds=2.0)[4000:-4000], atol=2e-3)


def test_mat_input_from_matlab(tmp_path):
    x = tone(RATE, channels=2)
    savemat(tmp_path / "a.mat", {"audio": x, "fs": float(RATE)})
    got = audio.load(tmp_path / "a.mat", sample_rate_hz=RATE)
    np.testing.assert_allclose(got.samples, x.mean(axis=1), atol=1e-6)
    savemat(tmp_path / "bad.mat", {"signal": x})
    with pytest.raises(audio.AudioError, match="bad.mat.*'audio' and 'fs'"):
        audio.load(tmp_path / "bad.mat", sample_rate_hz=RATE)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_fallback_for_formats_soundfile_cannot_read(tmp_path):
    sf.write(tmp_path / "src.wav", tone(RATE), RATE, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "src.wav"), "-c:a", "aac",
                    str(tmp_path / "x.m4a")], check=True)
    got = audio.load(tmp_path / "x.m4a", sample_rate_hz=RATE)
    assert abs(got.samples.shape[0] - RATE) < 2048  # AAC priming/padding
    rms = float(np.sqrt(np.mean(got.samples[2000:-2000] ** 2)))
    assert 0.3 < rms < 0.42  # a 0.5-amplitude sine: rms 0.354


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "file not found"),
    (lambda p: p.write_bytes(b""), "empty"),
    # soundfile fails, then ffmpeg: it says it cannot decode the file, or (no ffmpeg here) that it is not installed
    (lambda p: p.write_text("this is not audio\n" * 50),
     "not a readable audio file|could not decode" if shutil.which("ffmpeg") else "ffmpeg is not installed"),
])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(audio.AudioError, match=message) as err:
        audio.load(path, sample_rate_hz=RATE)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_too_short_and_non_finite(tmp_path):
    sf.write(tmp_path / "short.wav", noise(0.02, RATE), RATE)
    with pytest.raises(audio.AudioError, match=r"short.wav: too short \(20.0 ms\).*25.0 ms"):
        audio.load(tmp_path / "short.wav", sample_rate_hz=RATE, min_samples=400)
    x = noise(0.5, RATE)
    x[10] = np.nan
    with pytest.raises(audio.AudioError, match="NaN"):
        audio.prepare(x, RATE, target_rate_hz=RATE, name="n.wav")


def test_synthetic_tone():
    x = audio.synthetic_tone(duration_s=0.5, sample_rate_hz=32000, frequency_hz=1000.0)
    assert x.shape == (16000,) and x.dtype == np.float32 and abs(x.max() - 0.5) < 1e-3


def test_integer_arrays_in_memory_are_scaled():
    got = audio.prepare(np.array([-32768, 0, 16384], np.int16), RATE, target_rate_hz=RATE).samples
    np.testing.assert_array_equal(got, [-1.0, 0.0, 0.5])
    got8 = audio.prepare(np.array([0, 128, 192], np.uint8), RATE, target_rate_hz=RATE).samples
    np.testing.assert_array_equal(got8, [-1.0, 0.0, 0.5])
