"""B4: 3D-Speaker speaker embeddings (ERes2NetV2, ERes2NetV2 w24s4ep4, CAM++), one per utterance.

Our own torch modules (:mod:`.eres2netv2`, :mod:`.campplus`) with 3D-Speaker's parameter
names load its published checkpoints strictly, from a local file or, when the ``modelscope``
package is installed and the network reachable, by ModelScope id. Features are those of
3D-Speaker's ``speakerlab/bin/infer_sv.py`` (``FBank(80, sample_rate=16000, mean_nor=True)``):
Kaldi fbank with 80 bins at 16 kHz, dither 0, on the waveform in [-1, 1], minus its mean over
the utterance's frames; the model runs in eval mode without gradients. Here the fbank
(:class:`audio_embeddings.fbank.KaldiFbank`) runs batched on the model's device.

``framing = "utterance"``: the engine passes whole utterances of equal length and gets one
row (192-d for the published models) per utterance. On the CPU the model runs on a few
utterances per forward pass (:data:`CPU_FORWARD_FRAMES`) and ERes2NetV2 in the channels-last
layout, which is where these networks are fastest there; GPUs get the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..device import resolve_device, resolve_dtype, to_device
from ..fbank import fbank_frame_count
from .base import BaseBackend, BatchOutput, Option, file_sha256, torch_state_keys

SAMPLE_RATE_HZ = 16000
FRAME_LENGTH_SAMPLES = 400  # 25 ms
FRAME_SHIFT_SAMPLES = 160  # 10 ms

#: On the CPU the model runs on about this many fbank frames per forward pass (at least one
#: utterance), by family; GPUs get the whole batch. Measured with torch 2.13 on 2 EPYC cores:
#: ERes2NetV2 (memory-bound 2-D convolutions) takes 2x as long per 3 s utterance in a forward
#: of 16 as in a forward of 1; CAM++ is fastest at about 4 x 3 s.
CPU_FORWARD_FRAMES = {"eres2netv2": 300, "campplus": 1200}


@dataclass(frozen=True)
class Speaker3DPreset:
    """A published 3D-Speaker model.

    Attributes
    ----------
    model_id : str
        ModelScope id.
    checkpoint_file : str
        Weights file in that repository.
    revision : str
        ModelScope revision pinned by 3D-Speaker's ``infer_sv.py``.
    module, model_class : str
        Our module (under ``audio_embeddings.backends``) and class.
    kwargs : dict
        Constructor arguments of the published model (every argument, so that a
        configuration inferred from a checkpoint can be compared with it).
    """

    model_id: str
    checkpoint_file: str
    revision: str
    module: str
    model_class: str
    kwargs: dict[str, Any] = field(default_factory=dict)


_ERES2NETV2 = dict(feat_dim=80, embedding_size=192, m_channels=64, num_blocks=(3, 4, 6, 3), two_emb_layer=False)

#: The three published 192-d models, by registry name.
PRESETS: dict[str, Speaker3DPreset] = {
    "eres2netv2": Speaker3DPreset(
        "iic/speech_eres2netv2_sv_zh-cn_16k-common", "pretrained_eres2netv2.ckpt", "v1.0.1", "eres2netv2",
        "ERes2NetV2", dict(_ERES2NETV2, base_width=26, scale=2, expansion=2)),
    "eres2netv2_w24s4ep4": Speaker3DPreset(
        "iic/speech_eres2netv2w24s4ep4_sv_zh-cn_16k-common", "pretrained_eres2netv2w24s4ep4.ckpt", "v1.0.1",
        "eres2netv2", "ERes2NetV2", dict(_ERES2NETV2, base_width=24, scale=4, expansion=4)),
    "campplus": Speaker3DPreset(
        "iic/speech_campplus_sv_zh-cn_16k-common", "campplus_cn_common.bin", "v1.0.0", "campplus", "CAMPPlus",
        dict(feat_dim=80, embedding_size=192, growth_rate=32, bn_size=4, init_channels=128, head_channels=32,
             head_blocks=(2, 2), block_layers=(12, 24, 16), block_kernels=(3, 3, 3), block_dilations=(1, 2, 2))),
}

#: Model family (our module) -> class name.
FAMILIES = {"eres2netv2": "ERes2NetV2", "campplus": "CAMPPlus"}


def min_samples_for(family: str) -> int:
    """Shortest input (samples at 16 kHz) that gives a finite embedding.

    ``min_fbank_frames`` of the family (ERes2NetV2: 9, since three stride-2 stages leave
    ``ceil(T / 8)`` frames and the pooled std needs 2; CAM++: 3, since its stride-2 TDNN
    leaves ``ceil(T / 2)``), then the Kaldi frame geometry (25 ms frames every 10 ms, no
    edge padding): ``400 + (frames - 1) * 160``, i.e. 1680 samples (105 ms) and 720 samples
    (45 ms).
    """
    frames = {"eres2netv2": 9, "campplus": 3}[family]
    return FRAME_LENGTH_SAMPLES + (frames - 1) * FRAME_SHIFT_SAMPLES


def detect_family(state: Mapping[str, Any]) -> str | None:
    """``eres2netv2`` or ``campplus`` from a state dict's key prefixes; None when neither (or both)."""
    campplus = any(k.startswith(("xvector.", "head.")) for k in state)
    eres = any(k.startswith(("layer1.", "layer3_ds.", "fuse34.", "seg_1.")) for k in state)
    if campplus == eres:
        return None
    return "campplus" if campplus else "eres2netv2"


def read_state_dict(path: Path) -> dict[str, Any]:
    """Tensors of a 3D-Speaker checkpoint, read with ``torch.load(weights_only=True)`` on the CPU.

    A plain state dict (as 3D-Speaker publishes them); one nested under ``state_dict`` or
    ``model`` is unwrapped.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a torch checkpoint of tensors (or one that needs more than ``weights_only``).
    """
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and zip errors come in several types
        raise ValueError(f"{path}: not a torch checkpoint readable with weights_only=True ({exc})") from None
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor), got {type(obj).__name__}")
    return dict(obj)


def load_strict(model: Any, state: Mapping[str, Any], path: Path) -> None:
    """``model.load_state_dict`` with every key matched; the mismatch is a ValueError naming keys and file.

    Missing ``num_batches_tracked`` buffers are filled in by BatchNorm itself (as in a strict
    load in 3D-Speaker); they are not used in eval mode.

    Raises
    ------
    ValueError
        Missing or unexpected keys, or a tensor of the wrong shape.
    """
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # size mismatches are raised even when not strict
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        shown = "; ".join(lines[:4]) + (f"; ... ({len(lines)} in all)" if len(lines) > 4 else "")
        raise ValueError(f"{path}: does not fit {type(model).__name__} ({_summary(model)}): {shown}") from None
    problems = []
    for kind, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            problems.append(f"{kind} key(s): {shown}")
    if problems:
        raise ValueError(f"{path}: does not fit {type(model).__name__} ({_summary(model)}): "
                         + "; ".join(problems))


def _summary(model: Any) -> str:
    config = getattr(model, "config", {})
    return ", ".join(f"{k}={v}" for k, v in config.items())


def modelscope_file(model_id: str, filename: str, *, revision: str | None) -> Path:
    """Download (or find in the ModelScope cache) ``filename`` of ``model_id``.

    Raises
    ------
    ImportError
        The ``modelscope`` package is not installed; the message says how to go on.
    FileNotFoundError
        The snapshot has no such file.
    """
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        raise ImportError(f"{model_id} is a ModelScope model id: the 'modelscope' package (pip install modelscope) "
                          f"downloads its {filename}; or fetch that file yourself and pass its path with "
                          "--checkpoint") from None
    try:
        directory = snapshot_download(model_id, revision=revision, allow_file_pattern=[filename])
    except TypeError:  # older modelscope: no allow_file_pattern
        directory = snapshot_download(model_id, revision=revision)
    return _file_in(Path(directory), filename, what=f"ModelScope snapshot of {model_id}")


def _file_in(directory: Path, filename: str, *, what: str) -> Path:
    path = directory / filename
    if not path.is_file():
        found = sorted(p.name for p in directory.glob("*") if p.suffix in (".ckpt", ".bin", ".pt", ".pth"))
        raise FileNotFoundError(f"{what} ({directory}) has no {filename}"
                                + (f"; it has {', '.join(found)} (pass checkpoint=...)" if found else ""))
    return path


def _preset_for_id(model_id: str) -> Speaker3DPreset | None:
    return next((p for p in PRESETS.values() if p.model_id == model_id), None)


class Speaker3DBackend(BaseBackend):
    """One 3D-Speaker embedding per utterance.

    Use :meth:`load`. ``embed_batch`` takes equal-length utterances float32 [B, N] (16 kHz,
    [-1, 1]) and returns float32 [B, embedding_dim].
    """

    framing = "utterance"
    sample_rate_hz = SAMPLE_RATE_HZ
    options = (Option("--checkpoint", "checkpoint", "weights of --model: a local file, or a file name in the "
                      "ModelScope repository (default: the published model's)", metavar="FILE_OR_ID"),)
    option_group = "speaker embeddings (3D-Speaker: eres2netv2, campplus)"

    def __init__(self, model: Any, *, name: str, family: str, variant: str, config: dict[str, Any], source: str,
                 device: Any, dtype: Any, provenance: dict[str, Any]):
        from ..fbank import KaldiFbank

        self.model = model
        self.name = name
        self.family = family
        self.variant = variant
        self.config = config
        self.source = source
        self.device = device
        self.dtype = dtype
        self.embedding_dim = int(config["embedding_size"])
        self.min_samples = min_samples_for(family)
        self.fbank = KaldiFbank(sample_rate_hz=SAMPLE_RATE_HZ, num_mel_bins=int(config["feat_dim"]), device=device)
        self._provenance = provenance

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a torch file with 3D-Speaker's ERes2NetV2 or CAM++ tensor names."""
        keys = torch_state_keys(path)
        return detect_family(dict.fromkeys(keys)) if keys else None

    @classmethod
    def load(cls, source: str | None = None, *, name: str = "eres2netv2", device: str = "auto",
             dtype: str = "float32", checkpoint: str | None = None,
             revision: str | None = None) -> "Speaker3DBackend":
        """Load a 3D-Speaker checkpoint into our module.

        Parameters
        ----------
        source : str, optional
            A checkpoint file, a directory holding one (a ModelScope snapshot), or a ModelScope
            id (downloaded with ``modelscope`` when installed); default: the preset's id.
        name : str
            Registry name: ``eres2netv2``, ``eres2netv2_w24s4ep4`` or ``campplus`` pick the
            family and the default file; another name lets the checkpoint's keys decide.
            The configuration (widths, blocks, embedding size) is always read from the
            checkpoint's tensor shapes, so a checkpoint of the other ERes2NetV2 variant loads too.
        device : {"auto", "cpu", "cuda", "mps"}
        dtype : {"float32", "float16", "bfloat16"}
            Model precision; the fbank is computed in float32.
        checkpoint : str, optional
            An existing file: used instead of ``source``. Otherwise the weights file's name
            inside the ModelScope repository or directory (default: the preset's, e.g.
            ``pretrained_eres2netv2.ckpt``).
        revision : str, optional
            ModelScope revision (default: the one 3D-Speaker's ``infer_sv.py`` pins).

        Raises
        ------
        ValueError
            Keys missing or unexpected (named, with the file), a checkpoint of the other family,
            or an unreadable file.
        ImportError
            A ModelScope id without the ``modelscope`` package.
        FileNotFoundError
            No such file, or no weights file of that name in the directory/snapshot.
        """
        import importlib

        import torch

        preset = PRESETS.get(name)
        path, label = cls._locate(source, preset=preset, checkpoint=checkpoint, revision=revision)
        state = read_state_dict(path)
        detected = detect_family(state)
        family = preset.module if preset else detected
        if family is None:
            raise ValueError(f"{path}: neither an ERes2NetV2 nor a CAM++ state dict (keys such as "
                             f"{', '.join(list(state)[:3])})")
        if detected is not None and detected != family:
            raise ValueError(f"{path} holds a {FAMILIES[detected]} state dict, but model {name!r} is "
                             f"{FAMILIES[family]}; use a {detected} model name")
        module = importlib.import_module(f"{__package__}.{family}")
        try:
            config = module.infer_config(state)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        model = getattr(module, FAMILIES[family])(**config)
        load_strict(model, state, path)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype)
        model.eval().to(device=torch_device, dtype=torch_dtype)
        if family == "eres2netv2" and torch_device.type == "cpu":
            model.to(memory_format=torch.channels_last)  # oneDNN's layout: about 1.3x faster on the CPU
        variant = next((n for n, p in PRESETS.items() if p.module == family and p.kwargs == model.config),
                       f"{family}_custom")
        provenance = {
            "checkpoint": label,
            "checkpoint_file": str(path.resolve()),
            "weights_sha256": file_sha256(path),
            "model_class": f"{FAMILIES[family]} (3D-Speaker architecture, audio_embeddings.backends.{family})",
        }
        return cls(model, name=name, family=family, variant=variant, config=model.config, source=label,
                   device=torch_device, dtype=torch_dtype, provenance=provenance)

    @staticmethod
    def _locate(source: str | None, *, preset: Speaker3DPreset | None, checkpoint: str | None,
                revision: str | None) -> tuple[Path, str]:
        """(weights file, what to record as the checkpoint: the file path or the ModelScope id)."""
        if checkpoint and Path(checkpoint).expanduser().is_file():
            path = Path(checkpoint).expanduser()
            return path, str(path.resolve())
        if source is None:
            if preset is None:
                raise ValueError("no checkpoint given: pass a checkpoint file or a ModelScope id")
            source = preset.model_id
        local = Path(source).expanduser()
        if local.is_file():
            return local, str(local.resolve())
        if source.startswith("damo/"):  # ModelScope's former namespace, renamed as in infer_sv.py
            source = "iic/" + source[len("damo/"):]
        by_id = _preset_for_id(source) or preset
        filename = checkpoint or (by_id.checkpoint_file if by_id else None)
        if local.is_dir():
            if filename is None:
                raise ValueError(f"{source}: a directory; name the weights file in it with checkpoint=...")
            path = _file_in(local, filename, what="directory")
            return path, str(path.resolve())
        if source.count("/") != 1 or source.startswith((".", "/", "~")):
            raise FileNotFoundError(f"{source}: no such checkpoint file, and not a ModelScope id (owner/name)")
        if filename is None:
            raise ValueError(f"{source}: not a known 3D-Speaker model id; name its weights file with checkpoint=...")
        pinned = _preset_for_id(source)
        rev = revision or (pinned.revision if pinned else None)
        return modelscope_file(source, filename, revision=rev), source

    def features(self, audio: Any) -> Any:
        """Mean-normalised fbank float32 [B, T, 80] of waveforms [B, N] (a torch tensor on the model's device)."""
        feats = self.fbank(audio)
        return feats - feats.mean(dim=1, keepdim=True)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """Embeddings float32 [B, embedding_dim] of equal-length utterances float32 [B, N].

        The fbank runs on the whole batch; the model on the whole batch too, except on the
        CPU (``CPU_FORWARD_FRAMES``). Each row depends on its own utterance only.

        Raises
        ------
        ValueError
            ``N < min_samples`` (the model would return NaN).
        """
        import torch

        x = np.asarray(audio, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"expected utterances [B, N], got shape {x.shape}")
        if x.shape[1] < self.min_samples:
            raise ValueError(
                f"audio too short for {FAMILIES[self.family]}: {x.shape[1]} samples "
                f"({x.shape[1] / SAMPLE_RATE_HZ * 1000:.1f} ms) give {fbank_frame_count(x.shape[1])} fbank frames; "
                f"the model needs at least {self.min_samples} samples ({self.min_samples / SAMPLE_RATE_HZ * 1000:.0f} "
                f"ms) at {SAMPLE_RATE_HZ} Hz")
        wav = to_device(x, self.device)  # pinned, non-blocking on CUDA
        with torch.inference_mode():
            feats = self.features(wav).to(self.dtype)
            step = feats.shape[0]
            if self.device.type == "cpu":
                step = max(1, CPU_FORWARD_FRAMES[self.family] // feats.shape[1])
            emb = torch.cat([self.model(feats[i:i + step]) for i in range(0, feats.shape[0], step)])
        return BatchOutput(emb.float().cpu().numpy())

    def details(self) -> dict[str, Any]:
        """Provenance, model configuration and feature settings for the ``.json``."""
        return {
            **self._provenance,
            "model_variant": self.variant,
            "model_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.config.items()},
            "features": {
                "type": "kaldi_fbank", "num_mel_bins": int(self.config["feat_dim"]),
                "sample_rate_hz": SAMPLE_RATE_HZ, "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "dither": 0.0,
                "preemphasis": 0.97, "window": "povey", "snip_edges": True, "remove_dc_offset": True,
                "low_freq_hz": 20.0, "high_freq_hz": SAMPLE_RATE_HZ / 2, "waveform_scale": "[-1, 1]",
                "normalisation": "per-utterance mean over frames subtracted",
            },
        }

    def mat_fields(self) -> dict[str, Any]:
        """``model_variant`` (e.g. ``eres2netv2``)."""
        return {"model_variant": self.variant}
