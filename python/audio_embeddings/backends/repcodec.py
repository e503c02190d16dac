"""The encoder half of Amphion's RepCodec semantic codec (MaskGCT / Metis), with Amphion's parameter names.

Only what turns normalised w2v-bert features into the 8-D latents is built: the Vocos
ConvNeXt backbone (``encoder.0``), the projection back to the feature width (``encoder.1``)
and the first quantizer's weight-normed input projection
(``quantizer.quantizers.0.in_project``); the codebook is kept for ``--codes``. The decoder
and the rest of the quantizer in ``semantic_codec/model.safetensors`` are not loaded.

Unlike Amphion's module this one takes the valid length of every batch item and zeroes
the padded frames before each convolution, so a padded batch gives what each item gives
alone (Amphion's codec, run one file at a time, never sees padding; its convolutions see
+-39 frames, so padding would otherwise leak into the last 39 frames of an item).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import key_indices

IN_PROJECT = "quantizer.quantizers.0.in_project"
CODEBOOK = "quantizer.quantizers.0.codebook.weight"
#: Checkpoint prefixes this module reads; everything else (decoder, out_project) is ignored.
ENCODER_PREFIXES = ("encoder.", IN_PROJECT + ".", CODEBOOK)
LN_EPS = 1e-6


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k7) -> LayerNorm -> Linear up -> GELU -> Linear down -> gamma, residual; [B, C, T]."""

    def __init__(self, dim: int, intermediate_dim: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x * keep).transpose(1, 2)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Conv1d embed (k7) -> LayerNorm -> ConvNeXt blocks -> final LayerNorm; [B, C_in, T] -> [B, T, dim]."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.convnext = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim) for _ in range(num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x * keep).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x, keep)
        return self.final_layer_norm(x.transpose(1, 2))


class WeightNormConv1d(nn.Module):
    """1-D convolution with weight normalisation over all dims but the first: ``w = g * v / ||v||``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(out_channels, 1, 1))
        self.weight_v = nn.Parameter(torch.zeros(out_channels, in_channels, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def weight(self) -> torch.Tensor:
        norm = self.weight_v.norm(dim=(1, 2), keepdim=True)
        return self.weight_g * self.weight_v / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv1d(x, self.weight(), self.bias)


class _Quantizer(nn.Module):
    def __init__(self, hidden_size: int, codebook_dim: int, codebook_size: int | None):
        super().__init__()
        self.in_project = WeightNormConv1d(hidden_size, codebook_dim, 1)
        if codebook_size:
            self.codebook = nn.Embedding(codebook_size, codebook_dim)


class _ResidualQuantizer(nn.Module):
    def __init__(self, hidden_size: int, codebook_dim: int, codebook_size: int | None):
        super().__init__()
        self.quantizers = nn.ModuleList([_Quantizer(hidden_size, codebook_dim, codebook_size)])


class RepCodecEncoder(nn.Module):
    """Normalised SSL features [B, T, hidden] -> continuous latents [B, T, codebook_dim].

    Parameters
    ----------
    hidden_size : int
        Feature width (1024 for w2v-bert-2.0).
    vocos_dim, intermediate_dim, num_layers : int
        Backbone width (384), ConvNeXt inner width (2048) and depth (12).
    codebook_dim : int
        Latent width (8).
    codebook_size : int, optional
        Codebook entries (8192); None: no codebook (no codes).
    """

    def __init__(self, *, hidden_size: int, vocos_dim: int, intermediate_dim: int, num_layers: int,
                 codebook_dim: int, codebook_size: int | None = None):
        super().__init__()
        self.encoder = nn.Sequential(VocosBackbone(hidden_size, vocos_dim, intermediate_dim, num_layers),
                                     nn.Linear(vocos_dim, hidden_size))
        self.quantizer = _ResidualQuantizer(hidden_size, codebook_dim, codebook_size)
        self.hidden_size = hidden_size
        self.codebook_dim = codebook_dim
        self.num_layers = num_layers

    @property
    def receptive_half_width(self) -> int:
        """Frames seen on each side of an output frame (3 per k7 convolution: 39 for 12 blocks)."""
        return 3 * (self.num_layers + 1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Latents [B, T, codebook_dim] of features [B, T, hidden]; frames at or past ``lengths`` [B] are padding."""
        x = features.transpose(1, 2)
        steps = torch.arange(x.shape[-1], device=x.device)
        keep = torch.ones_like(steps, dtype=x.dtype)[None, None] if lengths is None else \
            (steps[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
        backbone, project = self.encoder[0], self.encoder[1]
        hidden = project(backbone(x, keep))  # [B, T, hidden]
        return self.quantizer.quantizers[0].in_project(hidden.transpose(1, 2)).transpose(1, 2)

    def codes(self, latents: torch.Tensor) -> torch.Tensor:
        """Codebook index [B, T] (int64) of latents [B, T, d]: the most cosine-similar codebook entry."""
        quantizer = self.quantizer.quantizers[0]
        if not hasattr(quantizer, "codebook"):
            raise ValueError(f"this codec checkpoint has no codebook ({CODEBOOK}): codes are not available")
        book = nn.functional.normalize(quantizer.codebook.weight.float(), dim=-1)
        return (nn.functional.normalize(latents.float(), dim=-1) @ book.T).argmax(dim=-1)


def codec_config(state: dict[str, Any]) -> dict[str, int | None]:
    """Widths and depth of a codec from its checkpoint's tensor shapes.

    Raises
    ------
    ValueError
        A tensor the encoder needs is missing.
    """
    need = ("encoder.0.embed.weight", "encoder.0.convnext.0.pwconv1.weight", f"{IN_PROJECT}.weight_v")
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"not a RepCodec checkpoint: missing {', '.join(missing)}")
    dim, hidden, _ = state["encoder.0.embed.weight"].shape
    blocks = key_indices(state, r"encoder\.0\.convnext\.(\d+)\.")
    return {"hidden_size": int(hidden), "vocos_dim": int(dim),
            "intermediate_dim": int(state["encoder.0.convnext.0.pwconv1.weight"].shape[0]),
            "num_layers": max(blocks) + 1, "codebook_dim": int(state[f"{IN_PROJECT}.weight_v"].shape[0]),
            "codebook_size": int(state[CODEBOOK].shape[0]) if CODEBOOK in state else None}


def load_codec(path: str | Path) -> RepCodecEncoder:
    """Build the encoder from a ``model.safetensors`` (its shapes) and load its weights strictly.

    Raises
    ------
    ValueError
        The file lacks a tensor the encoder needs (named in the message), or shapes disagree.
    """
    from safetensors.torch import load_file

    full = load_file(str(path))
    state = {k: v for k, v in full.items() if k.startswith(ENCODER_PREFIXES)}
    try:
        model = RepCodecEncoder(**codec_config(state))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise ValueError(f"{path}: codec checkpoint does not match the RepCodec encoder: {'; '.join(parts)}")
    return model.eval()

