"""Audio Spectrogram Transformer (AST, Hugging Face ``ASTModel``), one pooled embedding per window.

Each window goes through the checkpoint's ``ASTFeatureExtractor`` (128-bin Kaldi-style log-mel
fbank at 16 kHz, 25 ms frames every 10 ms, padded or cut to ``max_length`` frames, normalised
with the AudioSet mean and std) and ``ASTModel``; the row is ``pooler_output``: the mean of the
``[CLS]`` and distillation tokens after the final layer norm (768-d for the published models),
the vector the AST classifier head reads. With ``--logits`` (a checkpoint with its head,
``ASTForAudioClassification``, such as the AudioSet one) the head's logits per window come too
(extra ``label``; 527 AudioSet classes, names from ``config.id2label``).

Windows
-------
AST takes a fixed ``max_length`` fbank frames (1024 for ``MIT/ast-finetuned-audioset-10-10-0.4593``).
Its checkpoints were trained on clips of a whole number of seconds, padded to ``max_length``
frames by the extractor: AudioSet 10 s clips (998 frames) into 1024, Speech Commands 1 s
(98 frames) into 128. A window here is that clip length: the longest whole number of seconds
whose frames fit in ``max_length`` (``floor(max_length / 100)`` s: 10 s for the AudioSet model;
below 1 s, the longest input that fits). So every window reaches the model as a training clip
did, with the extractor's own padding of the last 26 frames, and the time axis is on whole
seconds (0, 10, 20, ... s), the same grid as CLAP's 10 s windows. Rows are windows every
``hop_s`` (default: the window) until one reaches the end of the file
(:func:`audio_embeddings.framing.windows_to_cover`); the last one is zero-filled past the end
of the file (``pad_mode = "zeros"``), as a shorter recording's only window is.

A row equals ``ASTModel(**ASTFeatureExtractor()(window, sampling_rate=16000)).pooler_output``
for the same window (up to float rounding).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..framing import windows_to_cover
from ._hf import load_hf
from .base import HOP_SECONDS, LOGITS, TOP_K, BaseBackend, BatchOutput, hf_model_type

SAMPLE_RATE_HZ = 16000
DEFAULT_CHECKPOINT = "MIT/ast-finetuned-audioset-10-10-0.4593"
MODEL_TYPE = "audio-spectrogram-transformer"
#: ``ASTFeatureExtractor``'s frames: 25 ms every 10 ms at 16 kHz (no centring: Kaldi's ``snip_edges``).
FBANK_FRAME = 400
FBANK_SHIFT = 160
#: The head that gives ``--logits``.
HEAD_CLASS = "ASTForAudioClassification"


def fbank_frames(n_samples: int) -> int:
    """Fbank frames ``ASTFeatureExtractor`` makes of ``n_samples`` at 16 kHz: ``1 + (N - 400) // 160`` (0 below 400)."""
    n = int(n_samples)
    return 0 if n < FBANK_FRAME else 1 + (n - FBANK_FRAME) // FBANK_SHIFT


def window_samples_for(max_length: int) -> int:
    """Samples of one window for a model of ``max_length`` fbank frames.

    The longest whole number of seconds whose frames fit (10 s = 998 frames for 1024); when not
    even 1 s fits, the longest input that does (``400 + 160 (max_length - 1)``).
    """
    seconds = int(max_length) * FBANK_SHIFT // SAMPLE_RATE_HZ
    if seconds >= 1 and fbank_frames(seconds * SAMPLE_RATE_HZ) <= int(max_length):
        return seconds * SAMPLE_RATE_HZ
    return FBANK_FRAME + FBANK_SHIFT * (int(max_length) - 1)


class ASTBackend(BaseBackend):
    """One pooled AST embedding per window (10 s at 16 kHz for the AudioSet checkpoint).

    Use :meth:`load`. ``embed_batch`` takes float32 [B, window_samples] and returns
    [B, hidden_size] (with ``--logits`` also the extra ``label`` [B, n_classes]).
    """

    framing = "windows"
    sample_rate_hz = SAMPLE_RATE_HZ
    window_offset_samples = 0
    pad_mode = "zeros"
    #: No whole-file preparation: long recordings may be streamed.
    input_norm = "none"
    min_samples = 1
    options = (HOP_SECONDS, LOGITS, TOP_K)
    option_group = "window models (Perch, BirdNET, CLAP, AST)"

    def __init__(self, model: Any, feature_extractor: Any, *, name: str, source: str, hop_samples: int,
                 classes: list[str] | None, top_k: int, device: Any, dtype: Any, provenance: dict[str, Any]):
        self.name = name
        self.source = source
        self.feature_extractor = feature_extractor
        with_head = classes is not None
        #: The ``ASTModel`` (inside the classifier when the head is used) and the head (or None).
        self.model = model
        self.encoder = model.audio_spectrogram_transformer if with_head else model
        self.head = model.classifier if with_head else None
        self.classes = classes
        self.top_k = int(top_k or 0)
        config = self.encoder.config
        self.max_length = int(config.max_length)
        self.num_mel_bins = int(config.num_mel_bins)
        self.embedding_dim = int(config.hidden_size)
        self.n_layers = int(config.num_hidden_layers)
        self.window_samples = window_samples_for(self.max_length)
        self.window_s = self.window_samples / self.sample_rate_hz
        self.hop_samples = int(hop_samples)
        self.frame_stride_s = self.hop_samples / self.sample_rate_hz
        self.device = device
        self.dtype = dtype
        self._provenance = provenance

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a Hugging Face folder whose config.json has model_type "audio-spectrogram-transformer" (ASTModel)."""
        return "ast-audioset" if hf_model_type(Path(path)) == MODEL_TYPE else None

    @classmethod
    def load(cls, source: str | None = None, *, name: str = "ast-audioset", device: str = "auto",
             dtype: str = "float32", hop_s: float | None = None, logits: bool = False, top_k: int | None = None,
             local_only: bool = False) -> "ASTBackend":
        """Load an AST checkpoint (``ASTModel``; with ``logits``, ``ASTForAudioClassification``).

        Parameters
        ----------
        source : str, optional
            Hub id (default ``MIT/ast-finetuned-audioset-10-10-0.4593``) or a local folder
            (``config.json``, weights, ``preprocessor_config.json``). A local folder is never sent
            to the hub; a hub id that is not cached and cannot be downloaded gives one line naming
            ``--model PATH``.
        name : str
            Registry name recorded in the outputs.
        device : {"auto", "cpu", "cuda", "mps"}
        dtype : {"float32", "float16", "bfloat16"}
        hop_s : float, optional
            Seconds between window onsets, > 0; default the window (no overlap).
        logits : bool
            Also return the classifier's logits per window (extra ``label``); needs a checkpoint
            with its head (``ASTForAudioClassification``).
        top_k : int, optional
            Write the ``top_k`` best labels per window (implies ``logits``).
        local_only : bool
            Never download (the local cache only).

        Raises
        ------
        ValueError
            Not an AST checkpoint, a feature extractor that does not give the model's input
            (16 kHz, ``num_mel_bins``, ``max_length``), a hop that is not positive, or
            ``logits`` for a checkpoint without its head.
        """
        logits = bool(logits or (top_k or 0) > 0)
        where = source or DEFAULT_CHECKPOINT
        hops: list[int] = []

        def check(config: Any, fe: Any) -> None:  # before any weights are read
            got = (int(fe.sampling_rate), int(fe.num_mel_bins), int(fe.max_length))
            want = (SAMPLE_RATE_HZ, int(config.num_mel_bins), int(config.max_length))
            if got != want:
                raise ValueError(f"{where}: feature extractor gives {got[1]} mel bins x {got[2]} frames at {got[0]} "
                                 f"Hz; the model takes {want[1]} x {want[2]} at {want[0]} Hz")
            window = window_samples_for(int(config.max_length))
            hop_value = window / SAMPLE_RATE_HZ if hop_s is None else float(hop_s)
            if not hop_value > 0:
                raise ValueError(f"hop_s must be > 0, got {hop_s}")
            hops.append(int(round(hop_value * SAMPLE_RATE_HZ)))
            if hops[0] < 1:
                raise ValueError(f"hop_s {hop_s} is shorter than one sample at {SAMPLE_RATE_HZ} Hz")
            architectures = list(getattr(config, "architectures", None) or [])
            if logits and HEAD_CLASS not in architectures:
                raise ValueError(f"{where}: --logits needs a checkpoint with its classifier head ({HEAD_CLASS}); "
                                 f"this one holds {', '.join(architectures) or 'no head'}")

        with warnings.catch_warnings():
            # ASTFeatureExtractor's numpy path builds 128 Kaldi mel filters on 257 FFT bins, the lowest of which
            # are empty: its own, harmless warning, said at every load
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            ckpt = load_hf(source, default=DEFAULT_CHECKPOINT, model_types=(MODEL_TYPE,),
                           what="an Audio Spectrogram Transformer checkpoint (ASTModel)",
                           loader=HEAD_CLASS if logits else "ASTModel", feature_extractor="ASTFeatureExtractor",
                           fe_defaults=lambda config: dict(num_mel_bins=int(config.num_mel_bins),
                                                           max_length=int(config.max_length)),
                           check=check, device=device, dtype=dtype, local_only=local_only)
        config = ckpt.config
        classes = None
        if logits:
            labels = dict(getattr(config, "id2label", None) or {})
            classes = [str(labels.get(i, labels.get(str(i), f"class_{i}"))) for i in range(int(config.num_labels))]
        fe = ckpt.feature_extractor
        provenance = {
            **ckpt.provenance,
            "model_class": "ASTModel.pooler_output" + (f" + {HEAD_CLASS}.classifier" if logits else ""),
            "num_mel_bins": int(config.num_mel_bins),
            "max_length_frames": int(config.max_length),
            "feature_normalisation": {"do_normalize": bool(getattr(fe, "do_normalize", True)),
                                      "mean": float(getattr(fe, "mean", 0.0)), "std": float(getattr(fe, "std", 1.0))},
            "n_classes": len(classes) if classes is not None else None,
        }
        return cls(ckpt.model, fe, name=name, source=ckpt.source, hop_samples=hops[0], classes=classes,
                   top_k=top_k or 0, device=ckpt.device, dtype=ckpt.dtype, provenance=provenance)

    def plan_rows(self, n_samples: int) -> np.ndarray:
        """Window onsets (samples, int64 [W]): every ``hop_samples`` until a window reaches the end."""
        return windows_to_cover(int(n_samples), window_samples=self.window_samples, hop_samples=self.hop_samples)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The feature extractor's input for whole windows.

        Parameters
        ----------
        audio : numpy.ndarray
            float32 [B, window_samples] at 16 kHz.

        Returns
        -------
        numpy.ndarray
            float32 [B, max_length, num_mel_bins]: normalised log-mel fbank, padded to ``max_length`` frames.
        """
        x = np.asarray(audio, dtype=np.float32)
        values = self.feature_extractor(x, sampling_rate=self.sample_rate_hz, return_tensors="np")["input_values"]
        return np.ascontiguousarray(values, dtype=np.float32)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """Pooled AST embeddings of whole windows.

        Parameters
        ----------
        audio : numpy.ndarray
            float32 [B, window_samples] (10 s at 16 kHz for the AudioSet checkpoint).

        Returns
        -------
        BatchOutput
            embeddings float32 [B, hidden_size]; with logits, extras ``label`` float32 [B, n_classes].

        Raises
        ------
        ValueError
            Inputs that are not [B, window_samples].
        """
        import torch

        from ..device import to_device

        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise ValueError(f"AST takes whole windows [B, {self.window_samples}], got {list(x.shape)}")
        features = to_device(self.features(x), self.device, self.dtype)  # pinned, non-blocking on CUDA
        extras = {}
        with torch.inference_mode():
            pooled = self.encoder(features).pooler_output
            if self.head is not None:
                extras["label"] = self.head(pooled).float().cpu().numpy()
        return BatchOutput(pooled.float().cpu().numpy(), extras)

    def details(self) -> dict[str, Any]:
        """Provenance and settings for the ``.json``."""
        return {
            **self._provenance,
            "hidden_size": self.embedding_dim,
            "num_hidden_layers": self.n_layers,
            "window_samples": self.window_samples,
            "fbank_frames_per_window": fbank_frames(self.window_samples),
            "overlap_s": (self.window_samples - self.hop_samples) / self.sample_rate_hz,
            "pooling": "pooler_output: mean of the [CLS] and distillation tokens after the final layer norm",
            "logits": self.head is not None,
            "padding": "each window's fbank is padded to max_length frames by the feature extractor; "
                       "audio past the end of the file is zeros",
        }

    def mat_fields(self) -> dict[str, Any]:
        """``hop_s`` and ``overlap_s`` as doubles (``window_s`` is common already); ``classes`` with logits."""
        fields: dict[str, Any] = {"hop_s": float(self.frame_stride_s),
                                  "overlap_s": float((self.window_samples - self.hop_samples) / self.sample_rate_hz)}
        if self.classes:
            fields["classes"] = list(self.classes)  # one per logit: a cell array in MATLAB
        return fields
