"""Kaldi-compatible log mel filterbank features in torch, batched and on any device.

Both w2v-bert-2.0 (through ``SeamlessM4TFeatureExtractor``) and 3D-Speaker's models
(through ``torchaudio.compliance.kaldi.fbank``) use Kaldi's default fbank: 25 ms frames
every 10 ms without edge padding (``snip_edges``), DC offset removed, pre-emphasis 0.97,
a Povey window, a 512-point FFT, the power spectrum through triangular mel filters
(20 Hz to Nyquist, Kaldi's mel scale ``1127 ln(1 + f / 700)``), and the natural log
floored at float32 epsilon. This module computes exactly that, so it can run on the
model's GPU instead of in numpy; tests compare it with ``kaldi-native-fbank`` and with
transformers' extractor.
"""

from __future__ import annotations

import math

import numpy as np

#: Kaldi's log floor (float32 machine epsilon).
LOG_FLOOR = float(np.finfo(np.float32).eps)


def fbank_frame_count(n_samples: int, *, frame_length: int = 400, frame_shift: int = 160) -> int:
    """Frames Kaldi cuts from ``n_samples`` (``snip_edges``: no padding at the edges); 0 when too short."""
    return 0 if n_samples < frame_length else 1 + (n_samples - frame_length) // frame_shift


def _mel(freq_hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(freq_hz, dtype=np.float64) / 700.0)


def kaldi_mel_banks(*, num_mel_bins: int, fft_length: int, sample_rate_hz: float, low_freq_hz: float = 20.0,
                    high_freq_hz: float = 0.0) -> np.ndarray:
    """Kaldi's triangular mel filters, float64 [fft_length // 2 + 1, num_mel_bins] (Nyquist row zero).

    ``high_freq_hz <= 0`` is an offset from Nyquist, as in Kaldi.
    """
    nyquist = 0.5 * sample_rate_hz
    high = high_freq_hz if high_freq_hz > 0 else nyquist + high_freq_hz
    n_bins = fft_length // 2
    mel_low, mel_high = _mel(low_freq_hz), _mel(high)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    fft_mel = _mel(np.arange(n_bins) * sample_rate_hz / fft_length)[:, None]
    left = mel_low + delta * np.arange(num_mel_bins)[None, :]
    center, right = left + delta, left + 2 * delta
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = np.where((fft_mel > left) & (fft_mel < right), np.where(fft_mel <= center, up, down), 0.0)
    return np.vstack([banks, np.zeros((1, num_mel_bins))])


def povey_window(length: int) -> np.ndarray:
    """Kaldi's Povey window, float64 [length]: a Hann window (symmetric) to the power 0.85."""
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * math.pi * n / (length - 1))) ** 0.85


class KaldiFbank:
    """Kaldi fbank of batched waveforms.

    Parameters
    ----------
    sample_rate_hz : int
    num_mel_bins : int
    frame_length_ms, frame_shift_ms : float
    preemphasis : float
    low_freq_hz, high_freq_hz : float
        Filterbank range (``high_freq_hz <= 0``: offset from Nyquist).
    device, dtype
        Where the filters live and the precision of the computation (float32 by default;
        features are never computed in half precision).

    Call it with float [B, N] (or [N]) waveforms in the scale the model expects
    (3D-Speaker: [-1, 1]; w2v-bert: int16 scale) to get float [B, T, num_mel_bins] log
    mel energies, T = :func:`fbank_frame_count` (N).
    """

    def __init__(self, *, sample_rate_hz: int = 16000, num_mel_bins: int = 80, frame_length_ms: float = 25.0,
                 frame_shift_ms: float = 10.0, preemphasis: float = 0.97, low_freq_hz: float = 20.0,
                 high_freq_hz: float = 0.0, device: str | None = None, dtype=None):
        import torch

        self.sample_rate_hz = int(sample_rate_hz)
        self.frame_length = int(round(sample_rate_hz * frame_length_ms / 1000.0))
        self.frame_shift = int(round(sample_rate_hz * frame_shift_ms / 1000.0))
        self.fft_length = 1 << (self.frame_length - 1).bit_length()
        self.preemphasis = float(preemphasis)
        self.dtype = dtype or torch.float32
        banks = kaldi_mel_banks(num_mel_bins=num_mel_bins, fft_length=self.fft_length, sample_rate_hz=sample_rate_hz,
                                low_freq_hz=low_freq_hz, high_freq_hz=high_freq_hz)
        self.mel_banks = torch.as_tensor(banks, dtype=self.dtype, device=device)
        self.window = torch.as_tensor(povey_window(self.frame_length), dtype=self.dtype, device=device)

    def n_frames(self, n_samples: int) -> int:
        """Frames from ``n_samples``."""
        return fbank_frame_count(n_samples, frame_length=self.frame_length, frame_shift=self.frame_shift)

    def __call__(self, waveform):
        import torch

        x = torch.as_tensor(waveform).to(device=self.window.device, dtype=self.dtype)
        if x.ndim == 1:
            x = x[None]
        if x.shape[-1] < self.frame_length:
            raise ValueError(f"{x.shape[-1]} samples is shorter than one {self.frame_length}-sample fbank frame")
        frames = x.unfold(-1, self.frame_length, self.frame_shift)  # [B, T, L]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - self.preemphasis * previous) * self.window
        spectrum = torch.fft.rfft(frames, n=self.fft_length, dim=-1)
        power = spectrum.real.square() + spectrum.imag.square()
        return torch.log(torch.clamp(power @ self.mel_banks, min=LOG_FLOOR))
