"""ERes2NetV2 speaker embedding network (3D-Speaker), with 3D-Speaker's parameter names.

A re-statement of ``speakerlab/models/eres2net/ERes2NetV2.py`` (with ``fusion.AFF`` and
``pooling_layers.TSTP``) from the 3D-Speaker repository (Apache-2.0), so that its published
checkpoints (``pretrained_eres2netv2.ckpt``, ``pretrained_eres2netv2w24s4ep4.ckpt``) load
strictly into :class:`ERes2NetV2`. Inference only: no training paths.

Structure (input fbank [B, T, F], seen as an image [B, 1, F, T]):

``conv1``/``bn1`` (3x3, ``m_channels``) + ReLU; ``layer1``..``layer4`` of residual blocks with
``planes = m_channels * (1, 2, 4, 8)``, stride 1, 2, 2, 2 (layers 3 and 4 fuse their
Res2Net-style splits with attentional feature fusion, :class:`AFF`); ``layer3_ds`` (3x3,
stride 2) brings layer 3 to layer 4's size and ``fuse34`` fuses them; temporal statistics
pooling (:class:`TSTP`, mean and std over time of every channel x frequency) and ``seg_1``,
a linear layer to the embedding. Inside the blocks the activation is 3D-Speaker's ``ReLU``
(a ``Hardtanh(0, 20)``), in the stem a plain ReLU.

Time resolution: three stride-2 stages, each ``ceil(T / 2)`` frames, so the pooled map has
``ceil(T / 8)`` frames; the unbiased standard deviation needs at least 2, hence at least
9 fbank frames (see :func:`min_fbank_frames`).

This module imports torch at import time; the backend (:mod:`.speaker3d`) imports it only
when a model is loaded.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .base import key_indices, tensor_shape

#: Stride-2 stages along time (layer2, layer3, layer4; layer3_ds matches layer4's grid).
TIME_STRIDE_STAGES = 3


def min_fbank_frames() -> int:
    """Fewest fbank frames that give a finite embedding: 9.

    The pooled map has ``ceil(T / 2**3)`` frames (every stride-2 convolution, 1x1 without
    padding or 3x3 with padding 1, maps T frames to ``ceil(T / 2)``), and the unbiased
    variance in :class:`TSTP` is NaN for a single frame, so ``ceil(T / 8) >= 2``.
    """
    return 2 ** TIME_STRIDE_STAGES + 1


class Hardtanh20(nn.Hardtanh):
    """3D-Speaker's ``ReLU``: ``clamp(x, 0, 20)`` (no parameters)."""

    def __init__(self) -> None:
        super().__init__(0.0, 20.0)


class AFF(nn.Module):
    """Attentional feature fusion of two maps of ``channels`` channels.

    ``local_att`` (1x1 conv to ``channels // r``, BN, SiLU, 1x1 conv back, BN) on the
    concatenation gives ``a = 1 + tanh(.)`` in (0, 2); the output is ``x * a + y * (2 - a)``.
    """

    def __init__(self, channels: int = 64, r: int = 4):
        super().__init__()
        inner = channels // r
        self.local_att = nn.Sequential(
            nn.Conv2d(2 * channels, inner, kernel_size=1),
            nn.BatchNorm2d(inner),
            nn.SiLU(),
            nn.Conv2d(inner, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, ds_y: torch.Tensor) -> torch.Tensor:
        """Fuse [B, C, F, T] maps ``x`` and ``ds_y``."""
        weight = 1.0 + torch.tanh(self.local_att(torch.cat([x, ds_y], dim=1)))
        return x * weight + ds_y * (2.0 - weight)


class TSTP(nn.Module):
    """Temporal statistics pooling: per channel x frequency, mean and std (unbiased, +1e-8) over time.

    [B, C, F, T] -> [B, 2 * C * F] (all means, then all standard deviations).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1).flatten(1)
        std = torch.sqrt(x.var(dim=-1, unbiased=True) + 1e-8).flatten(1)
        return torch.cat([mean, std], dim=1)


class BasicBlockERes2NetV2(nn.Module):
    """Bottleneck block with a ``scale``-way hierarchical split (the splits added, not fused).

    Parameters
    ----------
    in_planes, planes : int
        Input channels; the block outputs ``planes * expansion``.
    stride : int
        Stride of ``conv1`` and the shortcut (both 1x1).
    base_width, scale, expansion : int
        Each split has ``floor(planes * base_width / 64)`` channels; ``scale`` splits.
    """

    uses_fusion = False

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, base_width: int = 26, scale: int = 2,
                 expansion: int = 2):
        super().__init__()
        width = int(math.floor(planes * (base_width / 64.0)))
        out_planes = planes * expansion
        self.width = width
        self.nums = scale
        self.conv1 = nn.Conv2d(in_planes, width * scale, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
                                   for _ in range(scale))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale))
        if self.uses_fusion:
            self.fuse_models = nn.ModuleList(AFF(channels=width, r=4) for _ in range(scale - 1))
        self.relu = Hardtanh20()
        self.conv3 = nn.Conv2d(width * scale, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        else:
            self.shortcut = nn.Sequential()

    def _merge(self, i: int, previous: torch.Tensor, split: torch.Tensor) -> torch.Tensor:
        return previous + split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_planes, F, T] -> [B, planes * expansion, F', T']."""
        splits = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outs = []
        for i in range(self.nums):
            sp = splits[0] if i == 0 else self._merge(i, outs[-1], splits[i])
            outs.append(self.relu(self.bns[i](self.convs[i](sp))))
        y = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        return self.relu(y + self.shortcut(x))


class BasicBlockERes2NetV2AFF(BasicBlockERes2NetV2):
    """As :class:`BasicBlockERes2NetV2`, but split ``i`` is fused with branch ``i-1`` by ``fuse_models[i-1]``."""

    uses_fusion = True

    def _merge(self, i: int, previous: torch.Tensor, split: torch.Tensor) -> torch.Tensor:
        return self.fuse_models[i - 1](previous, split)


class ERes2NetV2(nn.Module):
    """ERes2NetV2 speaker embedding model.

    Parameters
    ----------
    feat_dim : int
        Fbank bins (80 for the published models; a multiple of 8).
    embedding_size : int
        Output dimension (192 published).
    m_channels : int
        Stem channels (64 published).
    base_width, scale, expansion : int
        Block geometry (3D-Speaker's ``baseWidth``, ``scale``, ``expansion``): 26/2/2 for
        ``eres2netv2``, 24/4/4 for ``eres2netv2_w24s4ep4``.
    num_blocks : sequence of 4 int
        Blocks per stage ((3, 4, 6, 3) published).
    two_emb_layer : bool
        3D-Speaker's optional second embedding layer (``seg_bn_1``, ``seg_2``); False published.

    ``forward`` takes fbank features [B, T, feat_dim] and returns [B, embedding_size].
    """

    def __init__(self, *, feat_dim: int = 80, embedding_size: int = 192, m_channels: int = 64, base_width: int = 26,
                 scale: int = 2, expansion: int = 2, num_blocks: Sequence[int] = (3, 4, 6, 3),
                 two_emb_layer: bool = False):
        super().__init__()
        self.config = dict(feat_dim=int(feat_dim), embedding_size=int(embedding_size), m_channels=int(m_channels),
                           base_width=int(base_width), scale=int(scale), expansion=int(expansion),
                           num_blocks=tuple(int(n) for n in num_blocks), two_emb_layer=bool(two_emb_layer))
        self.feat_dim = int(feat_dim)
        self.embedding_size = int(embedding_size)
        self.two_emb_layer = bool(two_emb_layer)
        top = m_channels * 8 * expansion
        stats_dim = (feat_dim // 8) * m_channels * 8 * expansion

        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        in_planes = m_channels
        stages = []
        for k, (n_blocks, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            block = BasicBlockERes2NetV2AFF if k >= 2 else BasicBlockERes2NetV2
            planes = m_channels * 2 ** k
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(in_planes, planes, stride if j == 0 else 1, base_width=base_width, scale=scale,
                                    expansion=expansion))
                in_planes = planes * expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.layer3_ds = nn.Conv2d(m_channels * 4 * expansion, top, kernel_size=3, stride=2, padding=1, bias=False)
        self.fuse34 = AFF(channels=top, r=4)
        self.pool = TSTP()
        self.seg_1 = nn.Linear(2 * stats_dim, embedding_size)
        if self.two_emb_layer:
            self.seg_bn_1 = nn.BatchNorm1d(embedding_size, affine=False)
            self.seg_2 = nn.Linear(embedding_size, embedding_size)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, embedding_size] of fbank features [B, T, feat_dim] (T >= 9)."""
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        x = F.relu(self.bn1(self.conv1(x)))
        out3 = self.layer3(self.layer2(self.layer1(x)))
        out4 = self.layer4(out3)
        embedding = self.seg_1(self.pool(self.fuse34(out4, self.layer3_ds(out3))))
        if self.two_emb_layer:
            embedding = self.seg_2(self.seg_bn_1(F.relu(embedding)))
        return embedding



def infer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """ERes2NetV2 constructor arguments from a state dict's keys and tensor shapes.

    ``m_channels`` from ``conv1.weight``; ``expansion`` from ``layer1.0.bn3.weight``; ``scale``
    from the count of ``layer1.0.convs.*``/``bns.*``; ``base_width`` as the smallest integer
    reproducing every stage's split width (``convs.0.weight``); blocks per stage from the
    ``layerK.J.`` indices; ``embedding_size`` and ``feat_dim`` from ``seg_1.weight``
    ([E, 2 * (feat_dim // 8) * m_channels * 8 * expansion]). Tells the two published models
    apart (26/2/2 and 24/4/4).

    Raises
    ------
    ValueError
        A key the inference needs is absent or the shapes are inconsistent.
    """
    keys = list(state)

    def shape(key: str) -> tuple[int, ...]:
        return tensor_shape(state, key, model="ERes2NetV2")

    m_channels = shape("conv1.weight")[0]
    expansion = shape("layer1.0.bn3.weight")[0] // m_channels
    scale = len(key_indices(keys, r"layer1\.0\.(?:convs|bns)\.(\d+)\."))
    num_blocks = tuple(len(key_indices(keys, rf"layer{k}\.(\d+)\.")) for k in (1, 2, 3, 4))
    widths = [shape(f"layer{k}.0.convs.0.weight")[0] for k in (1, 2, 3, 4)]
    base_width = next((bw for bw in range(1, 1025)
                       if all(int(math.floor(m_channels * 2 ** k * bw / 64.0)) == w for k, w in enumerate(widths))),
                      None)
    embedding_size, seg_in = shape("seg_1.weight")
    per_band = 2 * m_channels * 8 * expansion
    if base_width is None or scale < 1 or 0 in num_blocks or expansion < 1 or seg_in % per_band:
        raise ValueError(f"inconsistent ERes2NetV2 shapes (m_channels={m_channels}, expansion={expansion}, "
                         f"scale={scale}, split widths={widths}, seg_1 in={seg_in})")
    return dict(feat_dim=8 * (seg_in // per_band), embedding_size=embedding_size, m_channels=m_channels,
                base_width=base_width, scale=scale, expansion=expansion, num_blocks=num_blocks,
                two_emb_layer="seg_2.weight" in state)
