"""B2: Hugging Face wav2vec2-family encoders (Wav2Vec2, HuBERT, WavLM, Data2VecAudio).

Loads any checkpoint of the family by hub id or local directory and returns the hidden
states of the chosen layers on the conv front end's frame grid (20 ms at 16 kHz for
the published models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..device import from_pretrained_sdpa, resolve_device, resolve_dtype, to_device
from .base import LAYERS, BaseBackend, BatchOutput, Prepared, hf_model_type, weights_sha256

#: ``config.model_type`` values this backend accepts.
MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "unispeech", "unispeech-sat")

#: Same epsilon as transformers' ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``.
NORM_EPS = 1e-7


def parse_layers(spec: str | int | list[int] | None, n_layers: int) -> list[int] | None:
    """Turn ``last|all|I,J,...`` into hidden-state indices (None means ``last_hidden_state``).

    Index 0 is the input to the first transformer layer, ``n_layers`` the last layer's output,
    as in transformers' ``hidden_states``.

    Raises
    ------
    ValueError
        Bad syntax or an index outside ``0..n_layers``.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "last"):
        return None
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return list(range(n_layers + 1))
    if isinstance(spec, (int, np.integer)):
        items = [int(spec)]
    elif isinstance(spec, str):
        try:
            items = [int(tok) for tok in spec.replace(" ", "").split(",") if tok != ""]
        except ValueError:
            raise ValueError(f"--layers must be 'last', 'all' or comma-separated integers, got {spec!r}") from None
    else:
        items = [int(x) for x in spec]
    if not items:
        raise ValueError(f"--layers must be 'last', 'all' or comma-separated integers, got {spec!r}")
    bad = [i for i in items if not 0 <= i <= n_layers]
    if bad:
        raise ValueError(f"--layers {bad} out of range: this model has hidden states 0..{n_layers}")
    return items


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
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        from ..hub import hf_download

        with hf_download(source, local_only=local_only) as local_only:  # offline: cache only, one-line error
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        if config.model_type not in MODEL_TYPES:
            raise ValueError(
                f"{source}: model_type {config.model_type!r} is not a wav2vec2-family encoder "
                f"({', '.join(MODEL_TYPES)})"
            )
        layer_idx = parse_layers(layers, int(config.num_hidden_layers))
        try:
            fe = AutoFeatureExtractor.from_pretrained(source, local_files_only=local_only)
            do_normalize = bool(getattr(fe, "do_normalize", True))
            rate = int(getattr(fe, "sampling_rate", 16000))
        except OSError:  # no preprocessor_config.json: the family's defaults
            do_normalize, rate = True, 16000
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype)
        with hf_download(source, local_only=local_only) as local_only:
            model = from_pretrained_sdpa(AutoModel, source, config=config, local_files_only=local_only)
        model.eval().to(device=torch_device, dtype=torch_dtype)
        local = Path(source).is_dir()
        provenance = {
            "checkpoint": str(Path(source).resolve()) if local else source,
            "revision": getattr(config, "_commit_hash", None),
            "weights_sha256": weights_sha256(Path(source)) if local else {},
            "model_type": config.model_type,
            "model_class": type(model).__name__,
        }
        return cls(model, name=name, source=source, do_normalize=do_normalize, sample_rate_hz=rate,
                   layers=layer_idx, device=torch_device, dtype=torch_dtype, provenance=provenance)

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
            if self.layers is None:
                y = out.last_hidden_state
            elif len(self.layers) == 1:
                y = out.hidden_states[self.layers[0]]
            else:
                y = torch.stack([out.hidden_states[i] for i in self.layers], dim=1)
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
        layers = [self.n_layers] if self.layers is None else self.layers
        return {"layers": np.asarray(layers, dtype=np.float64)[None, :]}
