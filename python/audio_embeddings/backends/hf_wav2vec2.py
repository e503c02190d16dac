"""B2: Hugging Face wav2vec2-family encoders (Wav2Vec2, HuBERT, WavLM, Data2VecAudio).

Loads any checkpoint of the family by hub id or local directory and returns the hidden
states of the chosen layers on the conv front end's frame grid (20 ms at 16 kHz for
the published models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..device import to_device
from ._hf import layers_field, load_hf, parse_layers, select_hidden
from .base import LAYERS, BaseBackend, BatchOutput, Prepared, hf_model_type

#: ``config.model_type`` values this backend accepts.
MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "unispeech", "unispeech-sat")

#: Same epsilon as transformers' ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``.
NORM_EPS = 1e-7

def conv_geometry(kernels: list[int], strides: list[int]) -> tuple[int, int]:
    """Receptive field and hop (samples) of a stack of 1-D convolutions."""
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return field, jump


class HFWav2Vec2Backend(BaseBackend):
    """Hidden states of a wav2vec2-family model.

    Use :meth:`load`. ``embed_batch`` returns [B, T, D] for one layer, [B, L, T, D] for several.
    """

    framing = "sequence"
    norm_eps = NORM_EPS
    options = (LAYERS,)
    option_group = "wav2vec2 family and Whisper encoder"

    def __init__(self, model: Any, *, name: str, source: str, do_normalize: bool, sample_rate_hz: int,
                 layers: list[int] | None, device: Any, dtype: Any, provenance: dict[str, Any]):
        cfg = model.config
        self.name = name
        self.source = source
        self.model = model
        self.do_normalize = do_normalize
        #: Streamable preparation: whole-file z-score (or none), applied block by block to long files.
        self.input_norm = "zscore" if do_normalize else "none"
        self.sample_rate_hz = int(sample_rate_hz)
        self.layers = layers
        self.device = device
        self.dtype = dtype
        self.n_layers = int(cfg.num_hidden_layers)
        self.embedding_dim = int(cfg.hidden_size)
        self.receptive_field_samples, self.hop_samples = conv_geometry(list(cfg.conv_kernel), list(cfg.conv_stride))
        self.frame_stride_s = self.hop_samples / self.sample_rate_hz
        self.window_s = self.receptive_field_samples / self.sample_rate_hz
        self.min_samples = self.receptive_field_samples
        self._provenance = provenance

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a Hugging Face folder whose config.json has a wav2vec2-family model_type."""
        return "wav2vec2" if hf_model_type(path) in MODEL_TYPES else None

    @classmethod
    def load(cls, source: str, *, name: str = "wav2vec2", device: str = "auto", dtype: str = "float32",
             layers: str | list[int] | None = "last", local_only: bool = False) -> "HFWav2Vec2Backend":
        """Load a checkpoint by hub id or local directory.

        Parameters
        ----------
        source : str
            Hub id (``facebook/wav2vec2-large-xlsr-53``) or a directory with ``config.json``.
        name : str
            Registry name recorded in outputs.
        device : {"auto", "cpu", "cuda", "mps"}
        dtype : {"float32", "float16", "bfloat16"}
        layers : str or list of int
            ``last``, ``all`` or indices into ``hidden_states``.
        local_only : bool
            Never download (``local_files_only``).
        """
        selected: list[list[int] | None] = []

        def check(config: Any, fe: Any) -> None:  # before any weights are read
            selected.append(parse_layers(layers, int(config.num_hidden_layers)))

        family = f"a wav2vec2-family encoder ({', '.join(MODEL_TYPES)})"
        ckpt = load_hf(source, model_types=MODEL_TYPES, what=family, loader="AutoModel",
                       feature_extractor="Wav2Vec2FeatureExtractor", any_feature_extractor=True,
                       fe_defaults=dict(do_normalize=True, sampling_rate=16000), check=check,
                       device=device, dtype=dtype, local_only=local_only)
        fe = ckpt.feature_extractor
        do_normalize = bool(getattr(fe, "do_normalize", True))
        rate = int(getattr(fe, "sampling_rate", 16000))
        return cls(ckpt.model, name=name, source=ckpt.source, do_normalize=do_normalize, sample_rate_hz=rate,
                   layers=selected[0], device=ckpt.device, dtype=ckpt.dtype, provenance=ckpt.provenance)

    def prepare(self, samples: np.ndarray) -> Prepared:
        """Zero-mean, unit-variance over the whole file when the checkpoint normalises inputs."""
        if not self.do_normalize:
            return Prepared(samples)
        x = np.asarray(samples, dtype=np.float32)  # float32 arithmetic, as the feature extractor does
        return Prepared(np.ascontiguousarray((x - x.mean()) / np.sqrt(x.var() + NORM_EPS), dtype=np.float32))

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """Hidden states for equal-length windows float32 [B, N] -> [B, T, D] or [B, L, T, D]."""
        import torch

        x = to_device(np.asarray(audio, dtype=np.float32), self.device, self.dtype)  # pinned, non-blocking on CUDA
        with torch.inference_mode():
            out = self.model(x, output_hidden_states=self.layers is not None)
            y = select_hidden(out, self.layers)
        return BatchOutput(y.float().cpu().numpy())

    def details(self) -> dict[str, Any]:
        """Provenance and sizes for the ``.json``."""
        return {
            **self._provenance,
            "hidden_size": self.embedding_dim,
            "num_hidden_layers": self.n_layers,
            "layers": "last" if self.layers is None else self.layers,
            "do_normalize": self.do_normalize,
            "receptive_field_samples": self.receptive_field_samples,
            "hop_samples": self.hop_samples,
        }

    def mat_fields(self) -> dict[str, Any]:
        """``layers`` as a double row vector (the last layer's index for ``last``)."""
        return {"layers": layers_field(self.layers, self.n_layers)}
