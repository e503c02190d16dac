"""LAION CLAP audio embeddings (Hugging Face ``ClapModel.get_audio_features``), one row per 10 s window.

Each window goes through the checkpoint's ``ClapFeatureExtractor`` (log-mel at 48 kHz, hop
480) and the HTSAT audio tower plus the audio projection; the row is the L2-normalised
``projection_dim`` vector (512 for the LAION checkpoints), the same vector
``ClapModel.get_audio_features`` returns for that window. Rows are windows of
``window_samples`` (10 s, the extractor's ``max_length_s``) every ``hop_s`` (default: the
window), as many as it takes for the last one to reach the end of the file
(:func:`audio_embeddings.framing.windows_to_cover`).

Only exact 10 s windows reach the extractor, so nothing is ever cropped at random:

* unfused checkpoints (``truncation="rand_trunc"``) would crop a longer input at a random
  offset; an exact window is taken whole, with the Slaney mel filters as in the extractor;
* fused checkpoints (``enable_fusion``, ``truncation="fusion"``) get the extractor's 4
  copies of the window's mel, with ``is_longer`` False for every window, which is what
  LAION-CLAP does for input that is not longer than 10 s. (The Hugging Face extractor marks
  one random item of a batch ``is_longer`` when none is; that training trick is not copied, so
  a batch equals its items.)

Padding
-------
* A recording **shorter than one window** is repeat-padded as ``ClapFeatureExtractor`` does by
  default (``padding="repeatpad"``): :meth:`ClapBackend.prepare` tiles it ``floor(10 s / N)``
  times and the engine zero-fills the rest of the window. Its one row therefore equals
  ``ClapModel.get_audio_features(**ClapFeatureExtractor()(clip))``, the embedding users of the
  Hugging Face and LAION tools get for a short clip.
* In a longer recording the **last window** runs past the end and is zero-filled
  (``pad_mode = "zeros"``; ``padding="pad"`` in the extractor's terms): the engine hands the
  backend fixed-length windows, and repeating the tail would put audio into the last window
  that is not there at that time.

The repeat is the only preparation, and only for recordings under 10 s; the corpus engine
streams only long recordings (``--long-file-seconds``, 600 s by default), which are never
repeated, so ``input_norm = "none"`` holds for every file that is streamed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..framing import windows_to_cover
from ._hf import load_hf
from .base import HOP_SECONDS, BaseBackend, BatchOutput, Prepared, hf_model_type

SAMPLE_RATE_HZ = 48000
WINDOW_S = 10.0
DEFAULT_CHECKPOINT = "laion/clap-htsat-unfused"


def audio_features(output: Any) -> Any:
    """The projected audio embedding from ``get_audio_features``: a tensor (transformers 4) or the
    ``pooler_output`` of a model output (transformers 5)."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    if isinstance(output, (tuple, list)):
        return output[1] if len(output) > 1 else output[0]
    return output


class ClapBackend(BaseBackend):
    """One L2-normalised CLAP audio embedding per 10 s window at 48 kHz.

    Use :meth:`load`. ``embed_batch`` takes float32 [B, 480000] windows and returns
    [B, projection_dim].
    """

    framing = "windows"
    sample_rate_hz = SAMPLE_RATE_HZ
    window_s = WINDOW_S
    window_offset_samples = 0
    pad_mode = "zeros"
    input_norm = "none"
    options = (HOP_SECONDS,)
    option_group = "window models (Perch, BirdNET, CLAP)"

    def __init__(self, model: Any, feature_extractor: Any, *, name: str, source: str, hop_samples: int,
                 fusion: bool, device: Any, dtype: Any, provenance: dict[str, Any]):
        self.model = model
        self.feature_extractor = feature_extractor
        self.name = name
        self.source = source
        self.fusion = bool(fusion)
        self.truncation = "fusion" if self.fusion else "rand_trunc"
        self.sample_rate_hz = int(feature_extractor.sampling_rate)
        self.window_samples = int(feature_extractor.nb_max_samples)
        self.window_s = self.window_samples / self.sample_rate_hz
        self.min_samples = 1
        self.hop_samples = int(hop_samples)
        self.frame_stride_s = self.hop_samples / self.sample_rate_hz
        self.embedding_dim = int(model.config.projection_dim)
        self.device = device
        self.dtype = dtype
        self._provenance = provenance

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a Hugging Face folder whose config.json has model_type "clap" (a ClapModel)."""
        return "clap-htsat-unfused" if hf_model_type(Path(path)) == "clap" else None

    @classmethod
    def load(cls, source: str | None = None, *, name: str = "clap-htsat-unfused", device: str = "auto",
             dtype: str = "float32", hop_s: float | None = None, local_only: bool = False) -> "ClapBackend":
        """Load a CLAP checkpoint (audio tower and projection; the text tower is dropped).

        Parameters
        ----------
        source : str, optional
            Hub id (``laion/clap-htsat-unfused``) or a local folder of a ``ClapModel``
            (``config.json``, weights, ``preprocessor_config.json``); default
            ``laion/clap-htsat-unfused``. A local folder is never sent to the hub; a hub id that
            is not cached and cannot be downloaded gives one line naming ``--model PATH``.
        name : str
            Registry name recorded in the outputs.
        device : {"auto", "cpu", "cuda", "mps"}
        dtype : {"float32", "float16", "bfloat16"}
        hop_s : float, optional
            Seconds between window onsets, > 0; default the window (10 s, no overlap).
        local_only : bool
            Never download (the local cache only).

        Raises
        ------
        ValueError
            Not a CLAP checkpoint, a hop that is not positive, or a feature extractor at a rate
            other than 48 kHz.
        """
        hops: list[int] = []

        def check(config: Any, fe: Any) -> None:  # before any weights are read
            if int(fe.sampling_rate) != SAMPLE_RATE_HZ:
                raise ValueError(f"{source or DEFAULT_CHECKPOINT}: feature extractor at {fe.sampling_rate} Hz; "
                                 f"CLAP runs at {SAMPLE_RATE_HZ} Hz")
            hop_s_value = int(fe.nb_max_samples) / SAMPLE_RATE_HZ if hop_s is None else float(hop_s)
            if not hop_s_value > 0:
                raise ValueError(f"hop_s must be > 0, got {hop_s}")
            hops.append(int(round(hop_s_value * SAMPLE_RATE_HZ)))
            if hops[0] < 1:
                raise ValueError(f"hop_s {hop_s} is shorter than one sample at {SAMPLE_RATE_HZ} Hz")

        def fusion_of(config: Any) -> bool:
            return bool(getattr(config.audio_config, "enable_fusion", False))

        def audio_only(model: Any) -> Any:
            model.text_model = None  # get_audio_features uses the audio tower and projection only
            model.text_projection = None
            return model

        ckpt = load_hf(source, default=DEFAULT_CHECKPOINT, model_types=("clap",), what="a CLAP checkpoint (ClapModel)",
                       loader="ClapModel", feature_extractor="ClapFeatureExtractor",
                       fe_defaults=lambda config: dict(truncation="fusion" if fusion_of(config) else "rand_trunc"),
                       check=check, trim=audio_only, device=device, dtype=dtype, local_only=local_only)
        config, fe = ckpt.config, ckpt.feature_extractor
        fusion = fusion_of(config)
        provenance = {
            **ckpt.provenance,
            "model_class": type(ckpt.model).__name__ + ".get_audio_features",
            "enable_fusion": fusion,
            "truncation": "fusion" if fusion else "rand_trunc",
            "checkpoint_truncation": getattr(fe, "truncation", None),
            "projection_dim": int(config.projection_dim),
            "num_mel_bins": int(fe.feature_size),
        }
        return cls(ckpt.model, fe, name=name, source=ckpt.source, hop_samples=hops[0], fusion=fusion,
                   device=ckpt.device, dtype=ckpt.dtype, provenance=provenance)

    def prepare(self, samples: np.ndarray) -> Prepared:
        """Repeat a recording shorter than one window ``floor(window / N)`` times (the extractor's
        ``repeatpad``; the engine zero-fills the rest); longer recordings are left as they are.

        Parameters
        ----------
        samples : numpy.ndarray
            float32 [N] at 48 kHz.

        Returns
        -------
        Prepared
            float32 [N * floor(window / N)] for ``N < window``, else the input.
        """
        x = np.asarray(samples, dtype=np.float32)
        n = int(x.shape[0])
        if 0 < n < self.window_samples and self.window_samples // n > 1:
            return Prepared(np.tile(x, self.window_samples // n))
        return Prepared(x)

    def plan_rows(self, n_samples: int) -> np.ndarray:
        """Window onsets (samples, int64 [W]): every ``hop_samples`` until a window reaches the end."""
        return windows_to_cover(int(n_samples), window_samples=self.window_samples, hop_samples=self.hop_samples)

    def log_mel(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The feature extractor's input for exact windows.

        Parameters
        ----------
        audio : numpy.ndarray
            float32 [B, window_samples] at 48 kHz.

        Returns
        -------
        input_features : numpy.ndarray
            float32 [B, C, frames, mel bins], C = 1 (unfused) or 4 (fused).
        is_longer : numpy.ndarray
            bool [B, 1], all False (no window is longer than the model's input).
        """
        x = np.asarray(audio, dtype=np.float32)
        features = self.feature_extractor(list(x), sampling_rate=self.sample_rate_hz, truncation=self.truncation,
                                          return_tensors="np")
        mel = np.asarray(features["input_features"], dtype=np.float32)
        return mel, np.zeros((x.shape[0], 1), dtype=bool)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """CLAP embeddings of exact windows.

        Parameters
        ----------
        audio : numpy.ndarray
            float32 [B, window_samples] (10 s at 48 kHz).

        Returns
        -------
        BatchOutput
            embeddings float32 [B, projection_dim], each row of unit L2 norm.

        Raises
        ------
        ValueError
            Inputs that are not [B, window_samples] (a longer input would be cropped at random).
        """
        import torch

        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise ValueError(f"CLAP takes exact windows [B, {self.window_samples}], got {list(x.shape)}")
        mel, is_longer = self.log_mel(x)
        features = torch.from_numpy(mel).to(self.device, self.dtype)
        longer = torch.from_numpy(is_longer).to(self.device)
        with torch.inference_mode():
            y = audio_features(self.model.get_audio_features(input_features=features, is_longer=longer))
        return BatchOutput(y.float().cpu().numpy())

    def details(self) -> dict[str, Any]:
        """Provenance and settings for the ``.json``."""
        return {
            **self._provenance,
            "window_samples": self.window_samples,
            "overlap_s": (self.window_samples - self.hop_samples) / self.sample_rate_hz,
            "normalised": "L2 (get_audio_features)",
            "padding": "a recording under one window: repeated floor(window / N) times, then zeros (repeatpad); "
                       "the last window of a longer recording: zeros",
        }

    def mat_fields(self) -> dict[str, Any]:
        """``hop_s`` and ``overlap_s`` as doubles (``window_s`` is common already)."""
        return {"hop_s": float(self.frame_stride_s),
                "overlap_s": float((self.window_samples - self.hop_samples) / self.sample_rate_hz)}
