"""CAM++ speaker embedding network (3D-Speaker), with 3D-Speaker's parameter names.

A re-statement of ``speakerlab/models/campplus/DTDNN.py`` and ``layers.py`` from the
3D-Speaker repository (Apache-2.0), so that its published checkpoints
(``campplus_cn_common.bin``, ...) load strictly into :class:`CAMPPlus`. Inference only.

Structure (input fbank [B, T, F]):

``head`` (:class:`FCM`): a 2-D residual front end on [B, 1, F, T] that strides frequency
only (``layer1``, ``layer2``, ``conv2``: F -> F / 8), flattened to [B, 32 * F / 8, T].
``xvector``: ``tdnn`` (kernel 5, stride 2: T -> ceil(T / 2)), three densely connected
blocks of context-aware-masking TDNN layers (``block1..3``, 12/24/16 layers, dilation
1/2/2) each followed by a halving ``transit`` layer, ``out_nonlinear`` (BN + ReLU),
``stats`` (mean and unbiased std over time) and ``dense`` (1x1 conv + BN without affine).

The unbiased std needs 2 frames after the stride-2 TDNN, hence at least 3 fbank frames
(:func:`min_fbank_frames`).

This module imports torch at import time; the backend (:mod:`.speaker3d`) imports it only
when a model is loaded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .base import key_indices, tensor_shape

#: Dense-block dilations (not visible in checkpoint shapes).
DEFAULT_DILATIONS = (1, 2, 2)

#: CAMLayer segment length (frames) of its segment-mean context.
SEG_LEN = 100


def min_fbank_frames() -> int:
    """Fewest fbank frames that give a finite embedding: 3 (``ceil(T / 2) >= 2`` after the TDNN)."""
    return 3


def bn_relu(channels: int) -> nn.Sequential:
    """3D-Speaker's ``get_nonlinear('batchnorm-relu')``: keys ``batchnorm.*`` (and a ReLU)."""
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU())]))


class BasicResBlock(nn.Module):
    """FCM residual block: two 3x3 convs, the first (and the 1x1 shortcut) striding frequency only."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=(stride, 1), bias=False),
                                          nn.BatchNorm2d(planes))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class FCM(nn.Module):
    """Front-end convolution module: [B, F, T] -> [B, m_channels * F / 8, T]."""

    def __init__(self, *, m_channels: int = 32, feat_dim: int = 80, num_blocks: Sequence[int] = (2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(*(BasicResBlock(m_channels, m_channels, 2 if j == 0 else 1)
                                      for j in range(num_blocks[0])))
        self.layer2 = nn.Sequential(*(BasicResBlock(m_channels, m_channels, 2 if j == 0 else 1)
                                      for j in range(num_blocks[1])))
        self.conv2 = nn.Conv2d(m_channels, m_channels, kernel_size=3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        y = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(y)))))
        return y.flatten(1, 2)


class TDNNLayer(nn.Module):
    """1-D conv (no bias, 'same' padding) then BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.nonlinear = bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """Context-aware masking: a local dilated conv gated by a sigmoid of global + 100-frame-segment means."""

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int, *, dilation: int = 1,
                 reduction: int = 2):
        super().__init__()
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size,
                                      padding=(kernel_size - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.relu = nn.ReLU()
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)

    @staticmethod
    def segment_mean(x: torch.Tensor) -> torch.Tensor:
        """Mean of each 100-frame segment (the last one possibly shorter), repeated over its frames."""
        seg = F.avg_pool1d(x, kernel_size=SEG_LEN, stride=SEG_LEN, ceil_mode=True)
        return seg.repeat_interleave(SEG_LEN, dim=-1)[..., :x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(dim=-1, keepdim=True) + self.segment_mean(x)
        gate = torch.sigmoid(self.linear2(self.relu(self.linear1(context))))
        return self.linear_local(x) * gate


class CAMDenseTDNNLayer(nn.Module):
    """BN-ReLU, 1x1 bottleneck to ``bn_channels``, BN-ReLU, :class:`CAMLayer` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int, *, dilation: int = 1):
        super().__init__()
        self.nonlinear1 = bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleList):
    """Dense block: ``tdnnd1..N``, each appending its ``out_channels`` to the running concatenation."""

    def __init__(self, num_layers: int, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int, *,
                 dilation: int = 1):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(in_channels + i * out_channels, out_channels,
                                                               bn_channels, kernel_size, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    """BN-ReLU then a 1x1 conv without bias."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    """[B, C, T] -> [B, 2C]: mean and unbiased std over time (no epsilon, as 3D-Speaker)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class DenseLayer(nn.Module):
    """1x1 conv without bias on pooled statistics [B, C], then BatchNorm without affine (``batchnorm_``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(out_channels, affine=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """CAM++ speaker embedding model.

    Parameters
    ----------
    feat_dim : int
        Fbank bins (80 published; a multiple of 8).
    embedding_size : int
        Output dimension (192 for ``campplus_cn_common.bin``).
    growth_rate, bn_size, init_channels : int
        Dense-block growth (32), bottleneck factor (4) and TDNN width (128).
    head_channels, head_blocks : int, sequence of 2 int
        FCM width (32) and residual blocks per FCM stage ((2, 2)); fixed in 3D-Speaker.
    block_layers, block_kernels, block_dilations : sequences of 3 int
        Dense blocks: (12, 24, 16) layers, kernel 3, dilations (1, 2, 2).

    ``forward`` takes fbank features [B, T, feat_dim] and returns [B, embedding_size].
    """

    def __init__(self, *, feat_dim: int = 80, embedding_size: int = 192, growth_rate: int = 32, bn_size: int = 4,
                 init_channels: int = 128, head_channels: int = 32, head_blocks: Sequence[int] = (2, 2),
                 block_layers: Sequence[int] = (12, 24, 16), block_kernels: Sequence[int] = (3, 3, 3),
                 block_dilations: Sequence[int] = DEFAULT_DILATIONS):
        super().__init__()
        self.config = dict(feat_dim=int(feat_dim), embedding_size=int(embedding_size), growth_rate=int(growth_rate),
                           bn_size=int(bn_size), init_channels=int(init_channels), head_channels=int(head_channels),
                           head_blocks=tuple(int(n) for n in head_blocks),
                           block_layers=tuple(int(n) for n in block_layers),
                           block_kernels=tuple(int(n) for n in block_kernels),
                           block_dilations=tuple(int(n) for n in block_dilations))
        self.feat_dim = int(feat_dim)
        self.embedding_size = int(embedding_size)
        self.head = FCM(m_channels=head_channels, feat_dim=feat_dim, num_blocks=head_blocks)
        self.xvector = nn.Sequential(OrderedDict([
            ("tdnn", TDNNLayer(self.head.out_channels, init_channels, 5, stride=2)),
        ]))
        channels = init_channels
        for i, (n_layers, kernel, dilation) in enumerate(zip(block_layers, block_kernels, block_dilations), start=1):
            self.xvector.add_module(f"block{i}", CAMDenseTDNNBlock(n_layers, channels, growth_rate,
                                                                   bn_size * growth_rate, kernel, dilation=dilation))
            channels += n_layers * growth_rate
            self.xvector.add_module(f"transit{i}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", bn_relu(channels))
        self.xvector.add_module("stats", StatsPool())
        self.xvector.add_module("dense", DenseLayer(2 * channels, embedding_size))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, embedding_size] of fbank features [B, T, feat_dim] (T >= 3)."""
        return self.xvector(self.head(feats.transpose(1, 2)))



def infer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """CAM++ constructor arguments from a state dict's keys and tensor shapes.

    FCM width from ``head.conv1.weight``, ``feat_dim`` from the TDNN's input channels
    (``head_channels * feat_dim / 8``), TDNN width, growth rate, bottleneck and kernel sizes
    from ``xvector.block1.tdnnd1.*``, layers per block from the ``tdnndN`` indices,
    ``embedding_size`` from ``xvector.dense.linear.weight``. Dilations are not visible in
    shapes: 3D-Speaker's (1, 2, 2).

    Raises
    ------
    ValueError
        A key the inference needs is absent or the shapes are inconsistent.
    """
    keys = list(state)

    def shape(key: str) -> tuple[int, ...]:
        return tensor_shape(state, key, model="CAM++")

    head_channels = shape("head.conv1.weight")[0]
    head_blocks = tuple(len(key_indices(keys, rf"head\.layer{k}\.(\d+)\.")) for k in (1, 2))
    init_channels, tdnn_in, _ = shape("xvector.tdnn.linear.weight")
    block_ids = key_indices(keys, r"xvector\.block(\d+)\.")
    block_layers = tuple(len(key_indices(keys, rf"xvector\.block{b}\.tdnnd(\d+)\.")) for b in block_ids)
    growth_rate, bn_channels, _ = shape("xvector.block1.tdnnd1.cam_layer.linear_local.weight")
    kernels = tuple(shape(f"xvector.block{b}.tdnnd1.cam_layer.linear_local.weight")[2] for b in block_ids)
    embedding_size = shape("xvector.dense.linear.weight")[0]
    if tdnn_in % head_channels or bn_channels % growth_rate or not block_ids or 0 in block_layers:
        raise ValueError(f"inconsistent CAM++ shapes (head {head_channels}, tdnn in {tdnn_in}, growth {growth_rate}, "
                         f"bottleneck {bn_channels}, blocks {block_layers})")
    return dict(feat_dim=8 * (tdnn_in // head_channels), embedding_size=embedding_size, growth_rate=growth_rate,
                bn_size=bn_channels // growth_rate, init_channels=init_channels, head_channels=head_channels,
                head_blocks=head_blocks, block_layers=block_layers, block_kernels=kernels,
                block_dilations=(DEFAULT_DILATIONS + (2,) * len(block_ids))[:len(block_ids)])
