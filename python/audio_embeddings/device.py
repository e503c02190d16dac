"""Device and dtype selection for torch backends, host<->device copies, ``--compile``, and the B2 seed's
MKL_NUM_THREADS sanitising.

GPU habits the backends share (each is a no-op or the plain path on the CPU):

* :func:`to_device`: host arrays go to a CUDA device through a reused page-locked (pinned)
  buffer with a non-blocking copy, and are cast to the model's dtype there;
* :func:`to_host`: one copy back per batch (the only synchronisation of a batch);
* :func:`from_pretrained_sdpa`: Hugging Face models load with PyTorch's fused
  ``scaled_dot_product_attention`` where the architecture offers it, else its default;
* :data:`COMPILE` / :func:`compile_backend`: opt-in ``torch.compile`` of a backend's modules.

Importing this module imports no framework.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Iterator, MutableMapping

from .declarations import Option

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")

#: ``--compile``: declared once here; a shared stage option (``cli.STAGES`` lists this module).
COMPILE = Option("--compile", "compile", "compile the model with torch.compile before the run (opt-in; the first "
                 "batches of each input length are slow while it compiles; worth it on a GPU for long runs)",
                 type=None, affects="numbers")
#: The options this module declares (read by ``cli.STAGES``).
OPTIONS = (COMPILE,)


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


def is_cuda(device: Any) -> bool:
    """Whether ``device`` (a ``torch.device`` or a name) is a CUDA device."""
    return str(getattr(device, "type", device)).startswith("cuda")


class _PinnedRing:
    """Page-locked host buffers, reused for host -> GPU copies: two per device, grown as needed.

    A buffer is reused only after the copy out of it has finished (a CUDA event recorded
    after the copy), so the next batch can be staged while the previous one is on its way.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._slots: dict[str, list] = {}
        self._next: dict[str, int] = {}

    def to_device(self, array: Any, device: Any) -> Any:
        import numpy as np
        import torch

        key = str(device)
        with self._lock:
            slots = self._slots.setdefault(key, [[None, None], [None, None]])
            i = self._next.get(key, 0)
            self._next[key] = 1 - i
            slot = slots[i]
            if slot[1] is not None:
                slot[1].synchronize()  # the copy that last used this buffer is done
            if slot[0] is None or slot[0].numel() < array.nbytes:
                slot[0] = torch.empty(max(array.nbytes, 1 << 20), dtype=torch.uint8, pin_memory=True)
            host = slot[0][:array.nbytes].numpy().view(array.dtype).reshape(array.shape)
            np.copyto(host, array)
            staged = torch.from_numpy(host)
            out = staged.to(device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(out.device))
            slot[1] = event
            return out


_PINNED: _PinnedRing | None = None  # made at the first CUDA copy, never at import


def to_device(array: Any, device: Any, dtype: Any = None) -> Any:
    """A host array as a torch tensor on ``device`` (cast to ``dtype`` there).

    Parameters
    ----------
    array : numpy.ndarray
        Any shape, e.g. float32 [B, N] audio.
    device : torch.device or str
    dtype : torch.dtype, optional
        The model's dtype (float32, float16, bfloat16); None keeps the array's.

    Returns
    -------
    torch.Tensor
        Same shape. On CUDA the copy goes through a reused pinned buffer without blocking
        the host, and the cast runs on the GPU; on the CPU the tensor shares the array's
        memory when no cast is needed.
    """
    import numpy as np
    import torch

    global _PINNED
    host = np.ascontiguousarray(array)
    if is_cuda(device):
        if _PINNED is None:
            _PINNED = _PinnedRing()
        tensor = _PINNED.to_device(host, device)
    else:
        tensor = torch.from_numpy(host)
        if str(getattr(device, "type", device)) != "cpu":
            tensor = tensor.to(device)
    return tensor if dtype is None or tensor.dtype == dtype else tensor.to(dtype)


def to_host(tensor: Any) -> Any:
    """float32 NumPy copy of a model output (waits for the device: call it once per batch).

    Parameters
    ----------
    tensor : torch.Tensor
        Any shape and floating dtype, on any device.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    return tensor.detach().float().cpu().numpy()


def from_pretrained_sdpa(loader: Any, source: Any, **kwargs: Any) -> Any:
    """``loader.from_pretrained(source, **kwargs)`` with PyTorch's fused attention (SDPA) where offered.

    Parameters
    ----------
    loader : type
        A transformers class (``AutoModel``, ``WhisperModel``, ...).
    source : str or path-like
    **kwargs
        Passed on (``config``, ``local_files_only``, ...).

    Returns
    -------
    transformers.PreTrainedModel
        Loaded with ``attn_implementation="sdpa"``; architectures without an SDPA attention
        (WavLM's relative position bias) load with their default instead. The choice is in
        ``model.config._attn_implementation``.
    """
    try:
        return loader.from_pretrained(source, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError, TypeError) as exc:
        text = str(exc).lower()
        if "sdpa" not in text and "scaled_dot_product" not in text and "attn_implementation" not in text:
            raise
    return loader.from_pretrained(source, **kwargs)


def compile_backend(backend: Any, **options: Any) -> list[str]:
    """``torch.compile`` a backend's modules in place (``--compile``).

    Every ``torch.nn.Module`` attribute of the backend is compiled with
    ``Module.compile`` (the module keeps its type and attributes), and so is its
    ``encoder`` child, which some backends call directly (Metis runs w2v-bert's encoder
    without the model's own ``forward``).

    Parameters
    ----------
    backend : Backend
    **options
        Passed to ``Module.compile`` (e.g. ``mode="max-autotune"``, ``dynamic=True``).

    Returns
    -------
    list of str
        The attributes compiled (``["model", "model.encoder"]``); empty for a backend without
        torch modules (TensorFlow, LiteRT, plain NumPy).
    """
    try:
        import torch
    except ImportError:
        return []
    done = []
    for name, value in list(vars(backend).items()):
        if not isinstance(value, torch.nn.Module):
            continue
        value.compile(**options)
        done.append(name)
        encoder = getattr(value, "encoder", None)
        if isinstance(encoder, torch.nn.Module) and encoder is not value:
            encoder.compile(**options)
            done.append(f"{name}.encoder")
    return done
