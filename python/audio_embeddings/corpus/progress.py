"""Progress bar, log lines and GPU monitoring of a corpus run.

The bar (tqdm: files, audio hours, speed as audio seconds per second, ETA) shows only
on a terminal and never with ``quiet``; errors are always printed, one line each;
``verbose`` adds a line per file and per batch (with GPU memory and utilisation on a GPU).

The GPU monitor keeps off the model's path: a background thread samples ``nvidia-smi``
every few seconds, and a batch only reads the last sample (and torch's allocator counters,
which need no synchronisation).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from typing import Any


class Progress:
    """Files done, audio hours and speed; degrades to plain lines when not on a terminal."""

    def __init__(self, total: int, *, quiet: bool = False, verbose: bool = False, desc: str = "embedding",
                 stream: Any = None, file_lines: Any = None):
        self.stream = sys.stderr if stream is None else stream
        self.file_lines = file_lines  # where per-file lines go (default: the log stream)
        self.quiet, self.verbose = quiet, verbose
        self.audio_s = 0.0
        self._t0 = time.perf_counter()
        self.bar = None
        if not quiet and total and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc=desc, file=self.stream, dynamic_ncols=True)

    def line(self, message: str, *, always: bool = False) -> None:
        """Print a line without breaking the bar (``always``: even with ``quiet``)."""
        if self.quiet and not always:
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def error(self, message: str) -> None:
        self.line("error: " + " ".join(str(message).split()), always=True)

    def file_done(self, audio_s: float, message: str | None = None) -> None:
        self.audio_s += audio_s
        if self.bar is not None:
            elapsed = max(time.perf_counter() - self._t0, 1e-9)
            self.bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio, {self.audio_s / elapsed:.1f}x realtime",
                                     refresh=False)
            self.bar.update(1)
        if message and self.verbose and not self.quiet:
            if self.file_lines is not None and self.bar is None:
                print(message, file=self.file_lines, flush=True)
            else:
                self.line(message)

    def file_failed(self, message: str) -> None:
        self.error(message)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def nvidia_smi_status(index: int = 0) -> dict[str, float] | None:
    """GPU utilisation %, memory used/total MiB and temperature from ``nvidia-smi`` (None without one)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    query = "utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu"
    try:
        out = subprocess.run([exe, f"--query-gpu={query}", "--format=csv,noheader,nounits", f"--id={index}"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        values = [float(v) for v in out.split(",")]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return dict(zip(("gpu_util_pct", "mem_util_pct", "mem_used_mib", "mem_total_mib", "temperature_c"), values))


class GpuMonitor:
    """GPU utilisation and memory of a run, sampled off the critical path.

    A daemon thread runs ``nvidia-smi`` every ``smi_every_s`` seconds (from the first call
    of :meth:`start`, or of :meth:`batch`) and keeps the samples; :meth:`batch` formats the
    latest sample for a verbose log line without waiting for the GPU or for ``nvidia-smi``.
    Does nothing when ``device`` is not a CUDA device.

    Parameters
    ----------
    device : torch.device or str
    smi_every_s : float
        Seconds between ``nvidia-smi`` samples.
    """

    def __init__(self, device: Any, *, smi_every_s: float = 5.0):
        self.enabled = str(getattr(device, "type", device)).startswith("cuda")
        self.index = getattr(device, "index", None) or 0
        self.smi_every_s = float(smi_every_s)
        self.last_smi: dict[str, float] | None = None
        self.peak_mem_mib = 0.0
        self.util_samples: list[float] = []
        self.mem_samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "GpuMonitor":
        """Start the sampling thread (once; nothing off GPU or without ``nvidia-smi``)."""
        if self.enabled and self._thread is None and shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._sample, name="gpu-monitor", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            status = nvidia_smi_status(self.index)
            if status:
                self.last_smi = status
                self.util_samples.append(status["gpu_util_pct"])
                self.mem_samples.append(status["mem_used_mib"])
            if self._stop.wait(self.smi_every_s):
                return

    def stop(self) -> None:
        """Stop sampling (the thread exits within one interval; it is a daemon either way)."""
        self._stop.set()

    def _torch_memory(self) -> tuple[float, float]:
        import torch

        alloc = torch.cuda.memory_allocated(self.index) / 2 ** 20
        self.peak_mem_mib = max(self.peak_mem_mib, torch.cuda.max_memory_allocated(self.index) / 2 ** 20)
        return alloc, self.peak_mem_mib

    def batch(self) -> str | None:
        """A log fragment after a batch from the latest samples (None off GPU); never waits."""
        if not self.enabled:
            return None
        self.start()
        alloc, peak = self._torch_memory()
        util = f", GPU util {self.last_smi['gpu_util_pct']:.0f}%" if self.last_smi else ""
        return f"GPU mem {alloc:.0f} MiB (peak {peak:.0f} MiB){util}"

    def summary(self) -> dict[str, Any]:
        """``{"gpu": {peak_memory_mib, mean_util_pct, samples, last_status}}`` (empty off GPU)."""
        if not self.enabled:
            return {}
        self.stop()
        self._torch_memory()
        mean_util = sum(self.util_samples) / len(self.util_samples) if self.util_samples else None
        return {"gpu": {"peak_memory_mib": round(self.peak_mem_mib, 1), "mean_util_pct": mean_util,
                        "util_samples": len(self.util_samples), "last_status": self.last_smi}}
