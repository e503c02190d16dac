"""Whisper encoder hidden states (Hugging Face ``WhisperModel`` / ``WhisperForConditionalGeneration``).

Any Whisper checkpoint (hub id or local folder) is loaded with ``WhisperModel``; only its
encoder is kept. Inputs go through the checkpoint's own ``WhisperFeatureExtractor`` (log-mel,
``n_fft`` 400, hop 160 samples at 16 kHz; 80 bins, 128 for large-v3) and the encoder, whose
two convolutions (k3 s1, then k3 s2) give one row per 2 mel frames: 20 ms.

Fixed input length
------------------
The encoder refuses anything but 30 s of mel (``2 * max_source_positions`` frames, 3000), so
:meth:`WhisperEncoderBackend.embed_batch` zero-pads every input to 30 s (as the feature
extractor itself does), runs the encoder on the padded 30 s and returns only the rows that
cover the real audio. Attention is global, so the kept rows do see the padding: they equal a
direct transformers forward of the extractor's padded features, not a forward of a shorter
input (there is none). Longer files run through the engine's context chunks, at most 30 s
each (``max_input_samples = 480000``); the context rows of each chunk are dropped.

Row count and time axis
-----------------------
``hop_samples = 320`` and ``receptive_field_samples = 320``. Row ``k`` is Whisper's encoder
frame ``k``: the centre of its convolutional receptive field (mel frames ``2k-2 .. 2k+2``,
samples ``320 k +- 520``, the mel STFT being centred) is sample ``320 k``, and Whisper itself
dates frame ``k`` at ``k * 20 ms`` (its word timestamps). So the time axis ``k * 320 / 16000``
is exact on Whisper's grid. A row is kept when its 20 ms slot ``[320 k, 320 k + 320)`` lies in
the real audio, which gives ``floor(N / 320)`` rows for ``N`` samples. That is what the
engine's ``conv_frame_count(N) = floor((N - 320) / 320) + 1`` gives with these two numbers,
and it equals openai-whisper's own count of content frames (``N // 160`` mel frames, halved).
With a receptive field of 320 a full chunk is exactly 30 s (1500 rows, no padding at all),
and chunk starts on the 320-sample grid shift the mel grid by whole frames, so every chunk's
rows fall on the whole-file grid. ``window_s`` is the 20 ms slot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..framing import conv_frame_count
from ._hf import layers_field, load_hf, parse_layers, select_hidden
from .base import LAYERS, BaseBackend, BatchOutput, hf_model_type

SAMPLE_RATE_HZ = 16000
#: Mel frames per encoder row (conv2's stride).
MEL_FRAMES_PER_ROW = 2
DEFAULT_CHECKPOINT = "openai/whisper-base"


class WhisperEncoderBackend(BaseBackend):
    """Hidden states of a Whisper encoder, one row per 20 ms of audio.

    Use :meth:`load`. ``embed_batch`` takes float32 [B, N] with N <= 480000 (30 s) and returns
    [B, T, D] for one layer or [B, L, T, D] for several, ``T = N // 320``.
    """

    framing = "sequence"
    sample_rate_hz = SAMPLE_RATE_HZ
    #: Nothing is done to the whole file first, so the corpus engine may stream long recordings.
    input_norm = "none"
    options = (LAYERS,)
    option_group = "wav2vec2 family and Whisper encoder"

    def __init__(self, encoder: Any, feature_extractor: Any, *, name: str, source: str, layers: list[int] | None,
                 device: Any, dtype: Any, provenance: dict[str, Any]):
        cfg = encoder.config
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        self.name = name
        self.source = source
        self.layers = layers
        self.device = device
        self.dtype = dtype
        self.n_layers = int(cfg.encoder_layers)
        self.embedding_dim = int(cfg.d_model)
        self.n_mel_frames = MEL_FRAMES_PER_ROW * int(cfg.max_source_positions)
        mel_hop = int(feature_extractor.hop_length)
        self.hop_samples = MEL_FRAMES_PER_ROW * mel_hop
        self.receptive_field_samples = self.hop_samples
        self.min_samples = self.receptive_field_samples
        self.max_input_samples = self.n_mel_frames * mel_hop
        self.frame_stride_s = self.hop_samples / self.sample_rate_hz
        self.window_s = self.frame_stride_s
        self._provenance = provenance

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a Hugging Face folder whose config.json has model_type "whisper"."""
        return "whisper-base" if hf_model_type(Path(path)) == "whisper" else None

    @classmethod
    def load(cls, source: str | None = None, *, name: str = "whisper-base", device: str = "auto",
             dtype: str = "float32", layers: str | list[int] | None = "last",
             local_only: bool = False) -> "WhisperEncoderBackend":
        """Load the encoder of a Whisper checkpoint.

        Parameters
        ----------
        source : str, optional
            Hub id (``openai/whisper-base``) or a local folder with ``config.json`` and the
            weights of a ``WhisperModel`` or ``WhisperForConditionalGeneration``; default
            ``openai/whisper-base``. A local folder is never sent to the hub; a hub id that is
            not cached and cannot be downloaded gives one line naming ``--model PATH``.
        name : str
            Registry name recorded in the outputs.
        device : {"auto", "cpu", "cuda", "mps"}
        dtype : {"float32", "float16", "bfloat16"}
        layers : str or list of int
            ``last``, ``all`` or indices into the encoder's ``hidden_states`` (0 = input to the
            first layer, ``encoder_layers`` = the output after the final layer norm).
        local_only : bool
            Never download (the local cache only).

        Raises
        ------
        ValueError
            Not a Whisper checkpoint, a bad ``layers``, or a feature extractor whose 30 s does
            not match the encoder's input length.
        """
        selected: list[list[int] | None] = []

        def check(config: Any, fe: Any) -> None:  # before any weights are read
            selected.append(parse_layers(layers, int(config.encoder_layers)))
            where = source or DEFAULT_CHECKPOINT
            if int(fe.sampling_rate) != SAMPLE_RATE_HZ or int(fe.feature_size) != int(config.num_mel_bins):
                raise ValueError(f"{where}: feature extractor gives {fe.feature_size} mel bins at {fe.sampling_rate} "
                                 f"Hz; the encoder takes {config.num_mel_bins} bins at {SAMPLE_RATE_HZ} Hz")
            mel_frames = MEL_FRAMES_PER_ROW * int(config.max_source_positions)
            if int(fe.n_samples) != mel_frames * int(fe.hop_length):
                raise ValueError(f"{where}: feature extractor pads to {fe.n_samples} samples, but the encoder takes "
                                 f"{mel_frames} mel frames of {fe.hop_length} samples")

        ckpt = load_hf(source, default=DEFAULT_CHECKPOINT, model_types=("whisper",), what="a Whisper checkpoint",
                       loader="WhisperModel", feature_extractor="WhisperFeatureExtractor",
                       fe_defaults=lambda config: dict(feature_size=int(config.num_mel_bins),
                                                       sampling_rate=SAMPLE_RATE_HZ),
                       check=check, trim=lambda full: full.get_encoder(),  # the decoder is never used
                       device=device, dtype=dtype, local_only=local_only)
        fe = ckpt.feature_extractor
        dither = float(getattr(fe, "dither", 0.0) or 0.0)
        fe.dither = 0.0  # dithering would make the features random
        provenance = {**ckpt.provenance, "num_mel_bins": int(ckpt.config.num_mel_bins), "checkpoint_dither": dither}
        return cls(ckpt.model, fe, name=name, source=ckpt.source, layers=selected[0], device=ckpt.device,
                   dtype=ckpt.dtype, provenance=provenance)

    def rows_for(self, n_samples: int) -> int:
        """Rows kept for ``n_samples`` of real audio: ``n_samples // hop_samples`` (20 ms slots inside the audio)."""
        return conv_frame_count(int(n_samples), receptive_field_samples=self.receptive_field_samples,
                                hop_samples=self.hop_samples)

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """The feature extractor's log-mel of inputs zero-padded to 30 s.

        Parameters
        ----------
        audio : numpy.ndarray
            float32 [B, N] at 16 kHz, ``N <= max_input_samples``.

        Returns
        -------
        numpy.ndarray
            float32 [B, num_mel_bins, 3000].
        """
        x = np.asarray(audio, dtype=np.float32)
        padded = np.zeros((x.shape[0], self.max_input_samples), dtype=np.float32)
        padded[:, :x.shape[1]] = x
        fe_device = "cuda" if getattr(self.device, "type", str(self.device)) == "cuda" else "cpu"
        features = self.feature_extractor(padded, sampling_rate=self.sample_rate_hz, return_tensors="np",
                                          device=fe_device)
        return np.asarray(features["input_features"], dtype=np.float32)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """Hidden states of the rows that cover the real audio.

        Parameters
        ----------
        audio : numpy.ndarray
            float32 [B, N] at 16 kHz, ``320 <= N <= 480000``; each input is zero-padded to 30 s.

        Returns
        -------
        BatchOutput
            embeddings float32 [B, T, D] (one layer) or [B, L, T, D] (several), ``T = N // 320``.

        Raises
        ------
        ValueError
            Not [B, N], or N outside ``320 .. 480000``.
        """
        import torch

        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"Whisper takes inputs [B, N], got {list(x.shape)}")
        n = int(x.shape[1])
        if n > self.max_input_samples:
            raise ValueError(f"Whisper takes at most {self.max_input_samples} samples "
                             f"({self.max_input_samples / self.sample_rate_hz:g} s) per input, got {n}")
        rows = self.rows_for(n)
        if rows < 1:
            raise ValueError(f"Whisper needs at least {self.min_samples} samples per input, got {n}")
        from ..device import to_device

        features = to_device(self.log_mel(x), self.device, self.dtype)  # pinned, non-blocking on CUDA
        with torch.inference_mode():
            out = self.encoder(features, output_hidden_states=self.layers is not None)
            y = select_hidden(out, self.layers, rows)
        return BatchOutput(y.float().cpu().numpy())

    def details(self) -> dict[str, Any]:
        """Provenance and sizes for the ``.json``."""
        return {
            **self._provenance,
            "d_model": self.embedding_dim,
            "encoder_layers": self.n_layers,
            "layers": "last" if self.layers is None else self.layers,
            "input_padded_to_samples": self.max_input_samples,
            "receptive_field_samples": self.receptive_field_samples,
            "hop_samples": self.hop_samples,
            "rows": "N // 320 per input: 20 ms slots inside the real audio; rows of the 30 s padding dropped",
        }

    def mat_fields(self) -> dict[str, Any]:
        """``layers`` as a double row vector (the last layer's index for ``last``)."""
        return {"layers": layers_field(self.layers, self.n_layers)}
