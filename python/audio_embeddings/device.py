"""Device and dtype selection for torch backends, and the B2 seed's MKL_NUM_THREADS sanitising."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, MutableMapping

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")


def sanitize_mkl_threads(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Remove an invalid ``MKL_NUM_THREADS`` (not a positive integer) before torch is imported.

    MKL aborts or warns on values such as ``""`` or ``"auto"``. Returns the removed value,
    or None when nothing was changed.
    """
    env = os.environ if environ is None else environ
    value = env.get("MKL_NUM_THREADS")
    if value is None:
        return None
    stripped = value.strip()
    if stripped.isdigit() and int(stripped) > 0:
        return None
    del env["MKL_NUM_THREADS"]
    return value


def resolve_device(name: str = "auto") -> Any:
    """``torch.device`` for ``auto|cpu|cuda|mps`` (auto: cuda, then mps, then cpu).

    Raises
    ------
    ValueError
        Unknown name, or an explicit device that is not available here.
    """
    import torch

    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch sees no CUDA GPU")
    if name == "mps" and not has_mps:
        raise ValueError("--device mps requested but MPS is not available")
    return torch.device(name)


def resolve_dtype(name: str = "float32") -> Any:
    """``torch.dtype`` for ``float32|float16|bfloat16``."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def quiet_framework_logs(environ: MutableMapping[str, str] | None = None) -> None:
    """Silence TensorFlow's and XLA's C++ start-up logging (before TensorFlow is imported; keeps a user's setting)."""
    env = os.environ if environ is None else environ
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide native start-up lines (TensorFlow's oneDNN/XLA/absl, LiteRT's XNNPACK) when ``TF_CPP_MIN_LOG_LEVEL`` >= 2.

    They are written to file descriptor 2 directly, below Python; errors still surface as
    Python exceptions.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") < "2":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
