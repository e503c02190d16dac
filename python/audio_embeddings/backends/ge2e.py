"""GE2E speaker encoder with the weights shipped in the ``resemblyzer`` package (offline, Apache-2.0).

A 3-layer LSTM (256 units) on 40-band mel power spectra (25 ms / 10 ms at 16 kHz) gives one
L2-normalised 256-d embedding per 1.6 s partial; partials start every 0.77 s (1.3 per
second) and the utterance embedding is the L2-normalised mean of the partials, as in
resemblyzer's ``VoiceEncoder.embed_utterance``. Preprocessing follows resemblyzer's
``preprocess_wav``: volume raised to -30 dBFS (never lowered) and long silences trimmed
with WebRTC VAD; row times are mapped back to the untrimmed file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..device import resolve_device, resolve_dtype
from ..framing import covering_window_onsets
from .base import BaseBackend, BatchOutput, Option, Prepared, file_sha256, installed_package_dir, torch_state_keys

SAMPLE_RATE_HZ = 16000
N_FFT = 400  # 25 ms
MEL_HOP_SAMPLES = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75
HIDDEN = 256
N_LAYERS = 3
TARGET_DBFS = -30.0
INT16_MAX = 2 ** 15 - 1
VAD_WINDOW_SAMPLES = 480  # 30 ms
VAD_AVERAGE_WIDTH = 8
VAD_MAX_SILENCE_WINDOWS = 6


def packaged_weights() -> Path:
    """Path of ``pretrained.pt`` inside the installed ``resemblyzer`` package (not imported).

    Raises
    ------
    FileNotFoundError
        resemblyzer is not installed.
    """
    return installed_package_dir("resemblyzer", provides="the GE2E weights") / "pretrained.pt"


def normalize_volume(samples: np.ndarray, *, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Scale float32 [N] up to ``target_dbfs`` RMS (relative to int16 full scale); never scale down."""
    rms = float(np.sqrt(np.mean((samples.astype(np.float64) * INT16_MAX) ** 2)))
    if rms == 0.0:
        raise ValueError("audio is digital silence; a speaker embedding needs sound")
    change_db = target_dbfs - 20.0 * np.log10(rms / INT16_MAX)
    if change_db < 0:
        return samples
    return (samples * (10.0 ** (change_db / 20.0))).astype(np.float32)


def voiced_sample_index(samples: np.ndarray) -> np.ndarray:
    """Indices of the samples kept by resemblyzer-style silence trimming, int64 [N'].

    WebRTC VAD (mode 3) on 30 ms windows of 16-bit PCM, smoothed by a moving average of
    8 windows, rounded, then dilated by 7 windows; the tail shorter than a window is dropped.
    """
    import webrtcvad
    from scipy.ndimage import binary_dilation

    n_windows = samples.shape[0] // VAD_WINDOW_SAMPLES
    usable = n_windows * VAD_WINDOW_SAMPLES
    pcm = np.round(samples[:usable] * INT16_MAX).astype("<i2").tobytes()
    vad = webrtcvad.Vad(3)
    step = VAD_WINDOW_SAMPLES * 2
    flags = np.array([vad.is_speech(pcm[i * step:(i + 1) * step], SAMPLE_RATE_HZ) for i in range(n_windows)],
                     dtype=np.float64)
    width = VAD_AVERAGE_WIDTH
    padded = np.concatenate([np.zeros((width - 1) // 2), flags, np.zeros(width // 2)])
    csum = np.cumsum(padded)
    csum[width:] = csum[width:] - csum[:-width]
    smoothed = np.round(csum[width - 1:] / width).astype(bool)
    mask = binary_dilation(smoothed, np.ones(VAD_MAX_SILENCE_WINDOWS + 1))
    return np.flatnonzero(np.repeat(mask, VAD_WINDOW_SAMPLES)).astype(np.int64)


def _build_encoder(torch: Any) -> Any:
    class SpeakerEncoder(torch.nn.Module):
        """LSTM(40 -> 256, 3 layers) -> Linear(256) -> ReLU -> L2 norm; key names as in resemblyzer."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(N_MELS, HIDDEN, N_LAYERS, batch_first=True)
            self.linear = torch.nn.Linear(HIDDEN, HIDDEN)

        def forward(self, mels: Any) -> Any:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True)

    return SpeakerEncoder()


class GE2EBackend(BaseBackend):
    """256-d GE2E partial embeddings (rows) and the utterance embedding (extra)."""

    framing = "windows"
    options = (Option("--no-trim-silence", "trim_silence", "GE2E: do not trim long silences before embedding",
                      type=None, const=False, matlab="NoTrimSilence"),)
    option_group = "GE2E speaker encoder"
    name = "ge2e"
    sample_rate_hz = SAMPLE_RATE_HZ
    embedding_dim = HIDDEN
    hop_samples = int(round(SAMPLE_RATE_HZ / PARTIALS_PER_S / MEL_HOP_SAMPLES)) * MEL_HOP_SAMPLES  # 77 frames
    frame_stride_s = hop_samples / SAMPLE_RATE_HZ
    window_s = PARTIAL_FRAMES * MEL_HOP_SAMPLES / SAMPLE_RATE_HZ
    # A partial's 160 centred STFT frames need 200 samples before its onset and N_FFT-200 after its last frame.
    window_offset_samples = -(N_FFT // 2)
    window_samples = (PARTIAL_FRAMES - 1) * MEL_HOP_SAMPLES + N_FFT
    min_samples = VAD_WINDOW_SAMPLES

    def __init__(self, model: Any, mel_basis: Any, *, device: Any, dtype: Any, trim_silence: bool,
                 provenance: dict[str, Any], name: str = "ge2e"):
        self.model = model
        self.mel_basis = mel_basis
        self.device = device
        self.dtype = dtype
        self.trim_silence = trim_silence
        self.name = name
        self._provenance = provenance

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a torch file with resemblyzer's lstm.* and linear.* tensors (GE2E)."""
        keys = set(torch_state_keys(path) or ())
        return "ge2e" if {"lstm.weight_ih_l0", "linear.weight"} <= keys else None

    @classmethod
    def load(cls, source: str | None = None, *, name: str = "ge2e", device: str = "auto", dtype: str = "float32",
             trim_silence: bool = True) -> "GE2EBackend":
        """Load the encoder.

        Parameters
        ----------
        source : str, optional
            A resemblyzer-format ``.pt`` checkpoint (``model_state`` with ``lstm.*`` and
            ``linear.*``); default: the one shipped in the ``resemblyzer`` package.
        device, dtype : str
            See :mod:`audio_embeddings.device`.
        trim_silence : bool
            Trim long silences with WebRTC VAD before embedding (resemblyzer's default).
        """
        import librosa
        import torch

        weights = Path(source) if source else packaged_weights()
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: GE2E weights not found")
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        state = checkpoint.get("model_state", checkpoint)
        model = _build_encoder(torch)
        model.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype)
        model.eval().to(device=torch_device, dtype=torch_dtype)
        mel = librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS)  # Slaney, as resemblyzer
        provenance = {
            "checkpoint": str(weights.resolve()),
            "weights_sha256": file_sha256(weights),
            "model_class": "GE2E LSTM speaker encoder (resemblyzer)",
        }
        return cls(model, torch.from_numpy(mel).to(torch_device), device=torch_device, dtype=torch_dtype,
                   trim_silence=trim_silence, provenance=provenance, name=name)

    def prepare(self, samples: np.ndarray) -> Prepared:
        """Raise the volume to -30 dBFS and, when ``trim_silence``, drop long silences (keeping an index map)."""
        loud = normalize_volume(samples)
        if not self.trim_silence:
            return Prepared(loud)
        index = voiced_sample_index(loud)
        if index.size == 0:
            raise ValueError("no speech found by the voice activity detector (try --no-trim-silence)")
        return Prepared(np.ascontiguousarray(loud[index]), index)

    def plan_rows(self, n_samples: int) -> np.ndarray:
        """Partial onsets (samples, int64 [W]) for a prepared signal of ``n_samples``."""
        return covering_window_onsets(n_samples, grid_samples=MEL_HOP_SAMPLES, window_frames=PARTIAL_FRAMES,
                                      step_frames=self.hop_samples // MEL_HOP_SAMPLES, min_coverage=MIN_COVERAGE)

    def mel_power(self, audio: Any) -> Any:
        """Mel power spectra [B, 160, 40] of windows [B, window_samples] (uncentred STFT, Hann)."""
        import torch

        window = torch.hann_window(N_FFT, periodic=True, device=audio.device, dtype=audio.dtype)
        spec = torch.stft(audio, N_FFT, hop_length=MEL_HOP_SAMPLES, win_length=N_FFT, window=window,
                          center=False, return_complex=True)
        return (self.mel_basis @ spec.abs().pow(2)).transpose(1, 2)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """Partial embeddings float32 [B, 256] for windows float32 [B, window_samples]."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            emb = self.model(self.mel_power(x).to(self.dtype))
        return BatchOutput(emb.float().cpu().numpy())

    def summarize(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``utterance_embedding`` float32 [1, 256]: the L2-normalised mean of the partials."""
        mean = rows.astype(np.float64).mean(axis=0)
        return {"utterance_embedding": (mean / np.linalg.norm(mean)).astype(np.float32)[None, :]}

    def details(self) -> dict[str, Any]:
        """Provenance and settings for the ``.json``."""
        return {
            **self._provenance,
            "partials_per_second": PARTIALS_PER_S,
            "min_coverage": MIN_COVERAGE,
            "trim_silence": self.trim_silence,
            "volume_target_dbfs": TARGET_DBFS,
        }
