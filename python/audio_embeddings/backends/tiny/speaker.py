"""Tiny, randomly initialised 3D-Speaker checkpoints (ERes2NetV2, CAM++) with the published tensor names.

Our own modules (:mod:`..eres2netv2`, :mod:`..campplus`) built with tiny widths, their state
dicts filled with random numbers (positive running variances, BatchNorm scales around 1) and
saved with ``torch.save`` as 3D-Speaker publishes them. The loader reads the configuration back
from the tensor shapes. Random weights: for trying the toolkit and for tests, never for results.
"""

from __future__ import annotations

import math
from pathlib import Path

#: Constructor arguments of the tiny models, by family (24-d embeddings, 80 fbank bins as published).
TINY_CONFIGS = {
    "eres2netv2": dict(feat_dim=80, embedding_size=24, m_channels=4, base_width=26, scale=2, expansion=2,
                       num_blocks=(1, 1, 2, 1)),
    "campplus": dict(feat_dim=80, embedding_size=24, growth_rate=8, bn_size=2, init_channels=16, head_channels=4,
                     head_blocks=(2, 1), block_layers=(2, 3, 2)),
}
_CLASSES = {"eres2netv2": "ERes2NetV2", "campplus": "CAMPPlus"}


def random_speaker_state(family: str, *, seed: int = 0) -> dict:
    """A random state dict of the tiny ``family`` model (:data:`TINY_CONFIGS`), with 3D-Speaker's key names.

    Parameters
    ----------
    family : {"eres2netv2", "campplus"}
    seed : int
        Seed of a local generator (the global one is untouched).
    """
    import importlib

    import torch

    if family not in TINY_CONFIGS:
        raise ValueError(f"unknown speaker family {family!r}; one of {', '.join(TINY_CONFIGS)}")
    module = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.{family}")
    model = getattr(module, _CLASSES[family])(**TINY_CONFIGS[family])
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            state[name] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and name.endswith("weight"):  # BatchNorm / LayerNorm scale
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            state[name] = torch.randn(shape, generator=g) * (0.2 if len(shape) <= 1 else 1.5 / math.sqrt(fan_in))
    return state


def build_tiny_speaker(family: str, path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny ``family`` checkpoint (``torch.save`` of the state dict) at ``path``; returns it."""
    import torch

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_speaker_state(family, seed=seed), out)
    return out
