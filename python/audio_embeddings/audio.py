"""Audio in: decode (soundfile, then ffmpeg), mono, resample (soxr), checks, synthetic tone.

Every problem with an input file is raised as :class:`AudioError` whose message is
one line naming the file, so scripts can print it and corpus runs can log it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class AudioError(Exception):
    """A one-line, user-facing problem with an input file (missing, empty, corrupt, too short)."""


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio.

    Attributes
    ----------
    samples : numpy.ndarray
        float32 [N], mono, in [-1, 1] for PCM sources.
    sample_rate_hz : int
        Rate of ``samples``.
    source_sample_rate_hz : int
        Rate of the file before resampling.
    source_channels : int
        Channel count of the file.
    channel : int or None
        The channel kept (0-based), or None when channels were averaged.
    path : str
        The file the audio came from ("<memory>" for in-memory input).
    """

    samples: np.ndarray
    sample_rate_hz: int
    source_sample_rate_hz: int
    source_channels: int
    channel: int | None
    path: str

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.samples.shape[0] / float(self.sample_rate_hz)


def _decode_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    # dtype float32 scales integer PCM (16/24/32-bit) to [-1, 1) inside libsndfile.
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(rate)


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"{path}: not a format soundfile can read, and ffmpeg is not installed")
    probe = shutil.which("ffprobe")
    channels, rate = 0, 0
    if probe is not None:
        out = subprocess.run(
            [probe, "-v", "error", "-select_streams", "a:0", "-show_entries",
             "stream=channels,sample_rate", "-of", "csv=p=0", str(path)],
            capture_output=True, text=True, check=False,
        )
        fields = out.stdout.strip().split(",")
        if out.returncode == 0 and len(fields) >= 2 and all(f.strip().isdigit() for f in fields[:2]):
            rate, channels = int(fields[0]), int(fields[1])
    if rate <= 0 or channels <= 0:
        raise AudioError(f"{path}: not a readable audio file (neither soundfile nor ffmpeg found an audio stream)")
    proc = subprocess.run(
        [exe, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
         "-acodec", "pcm_f32le", "-"],
        capture_output=True, check=False,
    )
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError(f"{path}: ffmpeg could not decode it ({reason[-1] if reason else 'unknown error'})")
    data = np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, channels)
    return data, rate


#: Variable names accepted for the samples of a ``.mat`` input (MATLAB callers), and for its rate.
MAT_AUDIO_NAMES = ("audio", "audioIn", "y", "x")
MAT_RATE_NAMES = ("fs", "Fs", "sample_rate")


def _decode_mat(path: Path) -> tuple[np.ndarray, int]:
    from scipy.io import loadmat

    try:
        contents = loadmat(str(path), squeeze_me=False)
    except Exception as exc:  # noqa: BLE001
        raise AudioError(f"{path}: not a readable .mat file ({exc})") from None
    data = next((contents[k] for k in MAT_AUDIO_NAMES if k in contents), None)
    rate = next((contents[k] for k in MAT_RATE_NAMES if k in contents), None)
    if data is None or rate is None:
        raise AudioError(f"{path}: a .mat input needs variables {MAT_AUDIO_NAMES[0]!r} and {MAT_RATE_NAMES[0]!r}")
    return np.asarray(data), int(np.asarray(rate).ravel()[0])


def check_file(path: str | os.PathLike) -> Path:
    """Raise :class:`AudioError` for a path that is missing, a directory, or empty."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty (0 bytes)")
    return p


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to [N, C] samples and its sample rate: soundfile, then ffmpeg (``.mat``: scipy).

    Raises
    ------
    AudioError
        Missing, empty, or undecodable file.
    """
    p = check_file(path)
    if p.suffix.lower() == ".mat":
        return _decode_mat(p)
    try:
        return _decode_soundfile(p)
    except AudioError:
        raise
    except Exception:  # noqa: BLE001 - any libsndfile failure means "try ffmpeg"
        return _decode_ffmpeg(p)


def to_mono(data: np.ndarray, *, channel: int | None = None, name: str = "<memory>") -> np.ndarray:
    """Reduce [N, C] (or [N]) audio to mono [N].

    Parameters
    ----------
    data : numpy.ndarray
        [N] or [N, C] samples.
    channel : int, optional
        0-based channel to keep; None averages all channels.
    name : str
        Used in error messages.
    """
    if data.ndim == 1:
        data = data[:, None]
    n_channels = data.shape[1]
    if channel is None:
        mono = data.mean(axis=1) if n_channels > 1 else data[:, 0]
    elif 0 <= channel < n_channels:
        mono = data[:, channel]
    else:
        raise AudioError(f"{name}: --channel {channel} requested but the file has {n_channels} channel(s) (0-based)")
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(samples: np.ndarray, *, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample mono float32 [N] with soxr (high quality); identity when rates match."""
    if int(from_hz) == int(to_hz):
        return samples
    import soxr

    return np.ascontiguousarray(soxr.resample(samples, int(from_hz), int(to_hz), quality="HQ"), dtype=np.float32)


def prepare(
    data: np.ndarray,
    source_rate_hz: int,
    *,
    target_rate_hz: int,
    channel: int | None = None,
    min_samples: int = 1,
    name: str = "<memory>",
) -> Audio:
    """Mono, resample and check already-decoded audio.

    Parameters
    ----------
    data : numpy.ndarray
        [N] or [N, C] samples; integer arrays are scaled to [-1, 1].
    source_rate_hz : int
        Rate of ``data``.
    target_rate_hz : int
        The model's rate.
    channel : int, optional
        Keep this 0-based channel instead of averaging.
    min_samples : int
        Shortest acceptable length at ``target_rate_hz``.
    name : str
        File name for error messages.
    """
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        half_range = (float(info.max) + 1.0) / 2.0 if info.min == 0 else -float(info.min)
        zero = half_range if info.min == 0 else 0.0  # unsigned PCM (8-bit WAV) is centred on 128
        data = (data.astype(np.float64) - zero) / half_range
    if data.ndim not in (1, 2):
        raise AudioError(f"{name}: audio must be [N] or [N, channels], got shape {data.shape}")
    if data.ndim == 2 and data.shape[0] < data.shape[1] and data.shape[0] <= 8:
        data = data.T  # accept [channels, N] from MATLAB-style callers
    n_channels = 1 if data.ndim == 1 else data.shape[1]
    if data.shape[0] == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if source_rate_hz <= 0:
        raise AudioError(f"{name}: invalid sample rate {source_rate_hz}")
    mono = to_mono(data, channel=channel, name=name)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{name}: contains NaN or Inf samples")
    samples = resample(mono, from_hz=source_rate_hz, to_hz=target_rate_hz)
    if samples.shape[0] < min_samples:
        raise AudioError(
            f"{name}: too short ({samples.shape[0] / target_rate_hz * 1000:.1f} ms); "
            f"the model needs at least {min_samples / target_rate_hz * 1000:.1f} ms"
        )
    return Audio(samples, int(target_rate_hz), int(source_rate_hz), n_channels, channel, name)


def load(
    path: str | os.PathLike,
    *,
    sample_rate_hz: int,
    channel: int | None = None,
    min_samples: int = 1,
) -> Audio:
    """Load a file as mono float32 at ``sample_rate_hz``.

    Parameters
    ----------
    path : path-like
        Any format soundfile reads (wav, flac, ogg, mp3), anything else via ffmpeg.
    sample_rate_hz : int
        Target rate (the model's).
    channel : int, optional
        0-based channel to keep; None averages channels.
    min_samples : int
        Shortest acceptable length at ``sample_rate_hz``.

    Returns
    -------
    Audio
        ``samples`` float32 [N].

    Raises
    ------
    AudioError
        One line naming the file: missing, empty, corrupt, NaN/Inf, too short.
    """
    data, rate = decode(path)
    return prepare(data, rate, target_rate_hz=sample_rate_hz, channel=channel,
                   min_samples=min_samples, name=str(path))


def synthetic_tone(*, duration_s: float, sample_rate_hz: int, frequency_hz: float = 440.0,
                   amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, float32 [round(duration_s * sample_rate_hz)], for smoke runs without input."""
    n = int(round(duration_s * sample_rate_hz))
    t = np.arange(n, dtype=np.float64) / sample_rate_hz
    return (amplitude * np.sin(2.0 * np.pi * frequency_hz * t)).astype(np.float32)
