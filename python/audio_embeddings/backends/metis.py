"""B3: Metis / MaskGCT 8-D semantic latents (w2v-bert-2.0 layer 17 -> normalisation -> RepCodec projection).

The steps of Amphion's semantic tokenizer, up to the continuous latents before vector
quantisation:

1. 16 kHz audio -> 80-bin Kaldi fbank of the int16-scaled waveform, normalised per mel bin
   over the file (mean, unbiased variance), padded to an even frame count and stacked in
   pairs: [T, 160] at 50 Hz (``SeamlessM4TFeatureExtractor``, computed here in torch on the
   model's device; the extractor stays the reference in the tests);
2. ``Wav2Vec2BertModel`` (``facebook/w2v-bert-2.0``), ``hidden_states[layer]`` (17): only the
   first ``layer`` conformer layers are built and run;
3. ``(h - mean) / sqrt(var)`` with the 1024-d statistics file (``wav2vec2bert_stats.pt``);
4. the RepCodec encoder and ``quantizer.quantizers.0.in_project`` -> [T, 8]
   (:mod:`.repcodec`); optionally the codebook index of every frame (``codes``).

Row ``t`` starts at ``t * 320`` samples (20 ms). A file of N samples gives
``floor((N - 400) / 320) + 1`` rows, as the extractor's frame count ``F = 1 + (N - 400) // 160``
gives ``ceil(F / 2)`` stacked frames; when F is odd the last one is half padding and masked
from attention, as in the published pipeline.

Batches of different lengths are exact: fbank frames past an item's end are zeroed, the
attention mask covers its padded frames, and the codec zeroes them before each convolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..device import to_device
from ..fbank import KaldiFbank, fbank_frame_count
from ._hf import layer_index, load_hf
from .base import BaseBackend, BatchOutput, Option, file_sha256, hf_model_type, nonnegative_int

W2V_BERT_ID = "facebook/w2v-bert-2.0"
#: Where Amphion publishes the w2v-bert-2.0 layer-17 statistics (``mean``, ``var``, 1024 each).
STATS_URL = "https://github.com/open-mmlab/Amphion/raw/main/models/tts/maskgct/ckpt/wav2vec2bert_stats.pt"
DEFAULT_LAYER = 17
#: Where the published RepCodec encoder lives (Amphion's MaskGCT release).
CODEC_REPO_ID = "amphion/MaskGCT"
CODEC_FILENAME = "semantic_codec/model.safetensors"
SAMPLE_RATE_HZ = 16000
INT16_SCALE = 2.0 ** 15
FBANK_FRAME = 400
FBANK_SHIFT = 160
STACK = 2  # fbank frames per model frame
MEL_NORM_EPS = 1e-7


def metis_frame_count(n_samples: int) -> int:
    """Rows of latents for ``n_samples`` of 16 kHz audio: ceil(fbank frames / 2)."""
    return (fbank_frame_count(n_samples, frame_length=FBANK_FRAME, frame_shift=FBANK_SHIFT) + 1) // STACK


def _download_url(url: str, *, local_only: bool) -> Path:
    import torch

    cache = Path(torch.hub.get_dir()) / "audio_embeddings"
    target = cache / Path(url).name
    if not target.is_file():
        if local_only:
            raise FileNotFoundError(f"{target} is not cached and downloads are off; pass --stats FILE")
        from ..hub import fetch_url

        fetch_url(url, target, flag="--stats")  # quick probe first: offline gives one line naming --stats
    return target


def load_stats(spec: str | None, *, hidden_size: int, local_only: bool = False) -> tuple[Any, Any, str]:
    """``mean`` and ``sqrt(var)`` (float32 tensors [hidden_size]) from a statistics file, and its path.

    ``spec`` is a local file or None (Amphion's published file, downloaded once). The file
    is read with ``torch.load(weights_only=True)``.

    Raises
    ------
    ValueError
        The file lacks ``mean``/``var`` or their size is not ``hidden_size``.
    """
    import torch

    path = Path(spec) if spec else _download_url(STATS_URL, local_only=local_only)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file not found: {path}")
    try:
        stats = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - not a torch file, pickled objects, truncated: one line
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ValueError(f"{path}: not a statistics file torch.load(weights_only=True) can read "
                         f"({type(exc).__name__}: {reason[:160]})") from None
    if not isinstance(stats, dict) or not {"mean", "var"} <= set(stats):
        raise ValueError(f"{path}: a statistics file holds 'mean' and 'var' tensors")
    mean, var = (torch.as_tensor(stats[k], dtype=torch.float32).reshape(-1) for k in ("mean", "var"))
    if mean.numel() != hidden_size or var.numel() != hidden_size:
        raise ValueError(f"{path}: mean/var have {mean.numel()}/{var.numel()} values, the model's features "
                         f"have {hidden_size}")
    return mean, torch.sqrt(var), str(path)


def codec_file(spec: str | None, *, local_only: bool = False) -> Path:
    """The codec's safetensors file: a local file, a directory holding it, or a hub id (default amphion/MaskGCT)."""
    if spec and Path(spec).expanduser().is_file():
        return Path(spec).expanduser()
    if spec and Path(spec).expanduser().is_dir():
        for candidate in (Path(spec) / CODEC_FILENAME, Path(spec) / "model.safetensors"):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{spec}: no {CODEC_FILENAME} or model.safetensors in this directory")
    from huggingface_hub import hf_hub_download

    from ..hub import hf_download

    repo = spec or CODEC_REPO_ID
    with hf_download(repo, flag="--codec", local_only=local_only, what=f"{CODEC_FILENAME} file",
                     local_hint=f"hf download {repo} {CODEC_FILENAME} --local-dir <folder>") as local_only:
        return Path(hf_hub_download(repo, CODEC_FILENAME, local_files_only=local_only))


class MetisBackend(BaseBackend):
    """Continuous 8-D semantic latents at 50 Hz. Use :meth:`load`.

    ``embed_batch(audio, lengths=)`` returns [B, T, 8] (and ``codes`` [B, T] when asked).
    """

    framing = "sequence"
    accepts_lengths = True
    options = (
        Option("--codec", "codec", "RepCodec checkpoint: semantic_codec/model.safetensors of amphion/MaskGCT "
               "(file, folder or id)", metavar="FILE_OR_ID"),
        Option("--stats", "stats", "w2v-bert feature statistics (torch file with 'mean' and 'var'; default: Amphion's)",
               metavar="FILE"),
        Option("--layer", "layer", "w2v-bert hidden-state index (default: 17)", type=nonnegative_int, metavar="I"),
        Option("--codes", "codes", "also write each frame's codebook index (<base>_codes.npy, 0-based)", type=None,
               affects="outputs"),
    )
    option_group = "Metis semantic latents (B3, --model metis)"
    sample_rate_hz = SAMPLE_RATE_HZ
    hop_samples = STACK * FBANK_SHIFT
    #: Row count follows a conv grid of 400 samples every 320 (see the module docstring).
    receptive_field_samples = FBANK_FRAME
    frame_stride_s = hop_samples / SAMPLE_RATE_HZ
    window_s = (FBANK_FRAME + FBANK_SHIFT) / SAMPLE_RATE_HZ
    #: Two fbank frames: one unmasked model frame, and an unbiased variance per mel bin.
    min_samples = FBANK_FRAME + FBANK_SHIFT

    def __init__(self, *, name: str, source: str, model: Any, codec: Any, mean: Any, std: Any, layer: int,
                 codes: bool, device: Any, dtype: Any, provenance: dict[str, Any]):
        self.name = name
        self.source = source
        self.model = model
        self.codec = codec
        self.layer = layer
        self.codes = codes
        self.device = device
        self.dtype = dtype
        self.mean = mean.to(device)
        self.std = std.to(device)
        self.embedding_dim = int(codec.codebook_dim)
        self.fbank = KaldiFbank(sample_rate_hz=SAMPLE_RATE_HZ, num_mel_bins=80, device=device)
        self._provenance = provenance

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a Hugging Face folder whose config.json has model_type wav2vec2-bert (w2v-bert-2.0)."""
        return "metis" if hf_model_type(path) == "wav2vec2-bert" else None

    @classmethod
    def load(cls, source: str = W2V_BERT_ID, *, name: str = "metis", device: str = "auto", dtype: str = "float32",
             codec: str | None = None, stats: str | None = None, layer: int = DEFAULT_LAYER, codes: bool = False,
             local_only: bool = False) -> "MetisBackend":
        """Load w2v-bert (first ``layer`` layers), the statistics and the codec encoder.

        Parameters
        ----------
        source : str
            w2v-bert-2.0 hub id or a local directory (``config.json`` + weights).
        codec : str, optional
            ``semantic_codec/model.safetensors`` of amphion/MaskGCT: a file, a directory, or a hub id.
        stats : str, optional
            The 1024-d ``mean``/``var`` file (default: Amphion's ``wav2vec2bert_stats.pt``).
        layer : int
            ``hidden_states`` index (17): 0 is the feature projection's output.
        codes : bool
            Also return each frame's codebook index.
        device, dtype : str
            w2v-bert runs in ``dtype``; features, normalisation and the codec in float32.
        local_only : bool
            Never download.

        Raises
        ------
        ValueError
            Not a w2v-bert checkpoint, a layer out of range, or a codec/statistics file that
            does not fit (the message names the file and the key).
        """
        chosen: list[int] = []

        def check(config: Any, fe: Any) -> None:  # before any weights are read
            chosen.append(layer_index(layer, int(config.num_hidden_layers), flag="--layer"))
            _check_feature_extractor(source, fe)

        def first_layers(model: Any) -> Any:
            # hidden_states[layer] is the output of the first `layer` layers: drop the rest before the device move
            model.encoder.layers = model.encoder.layers[:chosen[0]]
            model.config.num_hidden_layers = chosen[0]
            return model

        ckpt = load_hf(source, default=W2V_BERT_ID, model_types=("wav2vec2-bert",), what="wav2vec2-bert (w2v-bert-2.0)",
                       loader="Wav2Vec2BertModel", feature_extractor="SeamlessM4TFeatureExtractor",
                       any_feature_extractor=True, check=check, trim=first_layers, device=device, dtype=dtype,
                       local_only=local_only)
        config, model, layer = ckpt.config, ckpt.model, chosen[0]
        torch_device, torch_dtype = ckpt.device, ckpt.dtype
        codec_path = codec_file(codec, local_only=local_only)
        from .repcodec import load_codec  # imports torch: only when a model is loaded

        codec_model = load_codec(codec_path).to(torch_device)
        if codec_model.hidden_size != config.hidden_size:
            raise ValueError(f"{codec_path}: the codec takes {codec_model.hidden_size}-d features, "
                             f"{source} gives {config.hidden_size}-d")
        if codes and not hasattr(codec_model.quantizer.quantizers[0], "codebook"):
            raise ValueError(f"{codec_path}: no quantizer.quantizers.0.codebook.weight, so no --codes")
        mean, std, stats_path = load_stats(stats, hidden_size=int(config.hidden_size), local_only=local_only)
        provenance = {
            **ckpt.provenance,
            "codec": str(codec_path), "codec_sha256": file_sha256(codec_path),
            "stats": stats_path, "stats_sha256": file_sha256(stats_path),
            "codec_layers": codec_model.num_layers, "codec_context_frames": codec_model.receptive_half_width,
        }
        return cls(name=name, source=ckpt.source, model=model, codec=codec_model, mean=mean, std=std, layer=layer,
                   codes=bool(codes), device=torch_device, dtype=torch_dtype, provenance=provenance)

    def features(self, audio: Any, lengths: Any) -> tuple[Any, Any, Any]:
        """Stacked, normalised fbank features of a padded batch.

        Parameters
        ----------
        audio : torch.Tensor
            float32 [B, N] at 16 kHz in [-1, 1], zero-padded past ``lengths``.
        lengths : torch.Tensor
            int64 [B] valid samples.

        Returns
        -------
        features : torch.Tensor
            float32 [B, T, 160].
        attention_mask : torch.Tensor
            int64 [B, T]: 1 where both stacked fbank frames are real.
        rows : torch.Tensor
            int64 [B] model frames of each item alone (ceil(fbank frames / 2)).
        """
        import torch

        fb = self.fbank(audio * INT16_SCALE)  # [B, F, 80]
        n_frames = torch.clamp((lengths - FBANK_FRAME) // FBANK_SHIFT + 1, min=0)
        valid = (torch.arange(fb.shape[1], device=fb.device)[None, :] < n_frames[:, None]).to(fb.dtype)[..., None]
        count = n_frames.to(fb.dtype)[:, None, None]
        mean = (fb * valid).sum(1, keepdim=True) / count
        var = ((fb - mean).square() * valid).sum(1, keepdim=True) / (count - 1)
        fb = (fb - mean) / torch.sqrt(var + MEL_NORM_EPS) * valid
        if fb.shape[1] % STACK:
            fb = torch.nn.functional.pad(fb, (0, 0, 0, STACK - fb.shape[1] % STACK))
        stacked = fb.reshape(fb.shape[0], fb.shape[1] // STACK, STACK * fb.shape[2])
        steps = torch.arange(stacked.shape[1], device=fb.device)[None, :]
        return stacked, (steps < (n_frames // STACK)[:, None]).long(), (n_frames + 1) // STACK

    def embed_batch(self, audio: np.ndarray, lengths: np.ndarray | None = None) -> BatchOutput:
        """Latents of float32 [B, N] audio (valid lengths ``lengths`` [B]) -> embeddings [B, T, 8].

        With ``codes``, also the extra ``codes``: int64 [B, T] codebook indices.
        """
        import torch

        x = to_device(np.asarray(audio, dtype=np.float32), self.device)  # pinned, non-blocking on CUDA
        n = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64) if lengths is None else \
            torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
        n = n.to(self.device)
        with torch.inference_mode():
            feats, mask, rows = self.features(x, n)
            hidden = self.model.feature_projection(feats.to(self.dtype))[0]
            hidden = self.model.encoder(hidden, attention_mask=mask).last_hidden_state
            normed = (hidden.float() - self.mean) / self.std
            latents = self.codec(normed, rows)
            extras = {"codes": self.codec.codes(latents).cpu().numpy()} if self.codes else {}
            return BatchOutput(latents.cpu().numpy(), extras)

    def details(self) -> dict[str, Any]:
        """Provenance and sizes for the ``.json``."""
        return {**self._provenance, "layer": self.layer, "latent_dim": self.embedding_dim, "codes": self.codes,
                "features": "kaldi fbank 80 (torch), per-mel-bin normalised, stacked x2 (SeamlessM4TFeatureExtractor)"}

    def mat_fields(self) -> dict[str, Any]:
        """``layer`` (the w2v-bert hidden-state index) as a double."""
        return {"layer": float(self.layer)}


def _check_feature_extractor(source: str, fe: Any) -> None:
    """Refuse a checkpoint whose feature extractor differs from the one computed here (a checkpoint
    without one gets w2v-bert-2.0's own settings: ``SeamlessM4TFeatureExtractor`` defaults)."""
    got = (type(fe).__name__, getattr(fe, "num_mel_bins", 80), getattr(fe, "stride", STACK),
           getattr(fe, "sampling_rate", SAMPLE_RATE_HZ))
    if got != ("SeamlessM4TFeatureExtractor", 80, STACK, SAMPLE_RATE_HZ):
        raise ValueError(f"{source}: feature extractor {got} is not SeamlessM4T 80 bins, stride 2, 16 kHz")
