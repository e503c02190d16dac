"""B1: Perch 2.0 (Google's bird and bioacoustics model) from a TensorFlow SavedModel or an ONNX export.

The model takes float32 [B, 160000] (5 s at 32 kHz) through ``serving_default(inputs=...)``
and returns ``embedding`` [B, 1536], ``label`` [B, C] logits, ``spatial_embedding``
[B, 16, 4, 1536] and ``spectrogram`` [B, 500, 128]. Audio is cut into fixed windows (hop =
window unless asked); the last window is the file's remaining fragment reflection-padded
to full length, as the extraction script this replaces did. ``force_10sec`` feeds 10 s at
16 kHz into the same 160000-sample input (that script's second mode).

Sources: a SavedModel directory, a ``*.onnx`` file (onnxruntime, same output names), or a
Kaggle handle (``google/bird-vocalization-classifier/tensorFlow2/perch_v2``), downloaded
with ``kagglehub`` when it is installed and the network is there. The GPU build needs a
GPU; without one the ``perch_v2`` preset takes the CPU build (``perch_v2_cpu``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ..device import quiet_native_stderr
from ..windowing import OPTIONS as WINDOW_OPTIONS, RuledWindows
from .base import HOP_SECONDS, LOGITS, TOP_K, BaseBackend, BatchOutput, Option, file_sha256, weights_sha256_of

INPUT_SAMPLES = 160000
EMBEDDING_DIM = 1536
KAGGLE_GPU = "google/bird-vocalization-classifier/tensorFlow2/perch_v2"
KAGGLE_CPU = "google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu"
OUTPUTS = ("embedding", "label", "spatial_embedding", "spectrogram")


def _tf_gpu_visible(tf: Any) -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def _download(handle: str) -> Path:
    """The SavedModel folder of a Kaggle handle (kagglehub; its cache when Kaggle is unreachable; one-line errors)."""
    from ..hub import kaggle_model

    return kaggle_model(handle)


def read_class_list(model_dir: Path) -> list[str] | None:
    """Class names from a label CSV in the SavedModel's ``assets/`` (first column), if there is one."""
    for path in sorted((model_dir / "assets").glob("*.csv")) if (model_dir / "assets").is_dir() else []:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if rows and rows[0][0].strip().lower() in ("label", "labels", "class", "ebird2021", "species"):
            rows = rows[1:]
        return [r[0] for r in rows]
    return None


class _SavedModelRunner:
    def __init__(self, model_dir: Path, *, device: str):
        with quiet_native_stderr():
            self._load(model_dir, device=device)

    def _load(self, model_dir: Path, *, device: str) -> None:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
        elif device.startswith("cuda") and not gpus:
            raise ValueError("--device cuda requested but TensorFlow sees no GPU")
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)  # share the GPU with torch
            except RuntimeError:
                pass
        self.tf = tf
        self.model = tf.saved_model.load(str(model_dir))
        self.fn = self.model.signatures["serving_default"]
        self.device = "cuda" if tf.config.list_logical_devices("GPU") else "cpu"
        self.runtime = f"tensorflow {tf.__version__}"
        self._warm = False

    def __call__(self, batch: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        if not self._warm:  # the first call compiles (XLA) and logs
            self._warm = True
            with quiet_native_stderr():
                out = self.fn(inputs=self.tf.constant(batch))
            return {k: out[k].numpy() for k in names}
        out = self.fn(inputs=self.tf.constant(batch))
        return {k: out[k].numpy() for k in names}


class _OnnxRunner:
    def __init__(self, path: Path, *, device: str):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device.startswith("cuda"):
            raise ValueError("--device cuda requested but onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.available = [o.name for o in self.session.get_outputs()]
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.runtime = f"onnxruntime {ort.__version__}"

    def __call__(self, batch: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        return dict(zip(names, self.session.run(list(names), {self.input: batch})))


class PerchBackend(RuledWindows, BaseBackend):
    """Perch 2.0 embeddings per window; optional ``label`` logits and ``spatial_embedding`` per window.

    Use :meth:`load`. ``embed_batch`` returns ``{"embedding": [B, 1536], ...}``.
    """

    framing = "windows"
    #: ``min_samples``, ``pad_mode`` and ``plan_rows`` come from the window rules (the seed's by default).
    window_offset_samples = 0
    input_norm = "none"  # no file-level preparation: long recordings can be streamed
    options = (
        HOP_SECONDS,
        Option("--force_10sec", "force_10sec", "Perch: 10 s windows at 16 kHz instead of 5 s at 32 kHz", type=None),
        LOGITS,
        Option("--spatial", "spatial", "Perch: also write spatial_embedding [T, 16, 4, 1536]", type=None,
               affects="outputs"),
        TOP_K,
        *WINDOW_OPTIONS,
    )
    option_group = "window models (Perch, BirdNET, CLAP)"

    def __init__(self, runner: Any, *, name: str, source: str, sample_rate_hz: int, hop_s: float,
                 outputs: tuple[str, ...], classes: list[str] | None, provenance: dict[str, Any], top_k: int = 0):
        self.runner = runner
        self.name = name
        self.source = source
        self.sample_rate_hz = int(sample_rate_hz)
        self.window_samples = INPUT_SAMPLES
        self.window_s = INPUT_SAMPLES / self.sample_rate_hz
        self.hop_samples = int(round(hop_s * self.sample_rate_hz))
        self.frame_stride_s = self.hop_samples / self.sample_rate_hz
        self.embedding_dim = EMBEDDING_DIM
        self.outputs = outputs
        self.classes = classes
        self.top_k = int(top_k or 0)
        self.device = runner.device
        self._provenance = provenance

    @classmethod
    def load(cls, source: str, *, name: str = "perch_v2", device: str = "auto", dtype: str = "float32",
             hop_s: float | None = None, force_10sec: bool = False, logits: bool = False,
             spatial: bool = False, top_k: int | None = None, min_seconds: float | None = None,
             partial_window: str | None = None, resampler: str | None = None) -> "PerchBackend":
        """Load a SavedModel directory, an ``.onnx`` file or a Kaggle handle.

        Parameters
        ----------
        source : str
            Directory with ``saved_model.pb``, ``*.onnx``, or a Kaggle model handle.
        name : str
            Registry name recorded in outputs.
        device : {"auto", "cpu", "cuda"}
        dtype : {"float32"}
            The exported graphs are float32.
        hop_s : float, optional
            Seconds between window starts (default: the window, 5 s; 10 s with ``force_10sec``).
        force_10sec : bool
            10 s windows at 16 kHz instead of 5 s at 32 kHz.
        logits : bool
            Also return the ``label`` logits per window.
        spatial : bool
            Also return ``spatial_embedding`` [16, 4, 1536] per window.
        top_k : int, optional
            Write the ``top_k`` best labels per window (implies ``logits``).
        min_seconds, partial_window, resampler : optional
            Window conventions (:mod:`audio_embeddings.windowing`); default the extraction seed's:
            every window kept, the last fragment reflection-padded.
        """
        logits = bool(logits or (top_k or 0) > 0)
        if dtype != "float32":
            raise ValueError(f"Perch runs in float32 (its exported graph), not {dtype}")
        if device == "mps":
            raise ValueError("Perch runs on cpu or cuda")
        rate = 16000 if force_10sec else 32000
        hop = float(hop_s) if hop_s is not None else INPUT_SAMPLES / rate
        if not hop > 0:
            raise ValueError(f"--hop-seconds must be > 0, got {hop_s}")
        path = Path(source).expanduser()
        if not path.exists():
            if source == KAGGLE_GPU and device != "cuda":
                import tensorflow as tf

                if not _tf_gpu_visible(tf):
                    source = KAGGLE_CPU  # the GPU build does not run without a GPU
            path = _download(source)
        if path.is_file() and path.suffix == ".onnx":
            runner: Any = _OnnxRunner(path, device=device)
            weights = {path.name: file_sha256(path)}
            classes = None
        elif (path / "saved_model.pb").is_file():
            runner = _SavedModelRunner(path, device=device)
            weights = weights_sha256_of(path)  # saved_model.pb and variables/variables.* (the weights)
            classes = read_class_list(path)
        else:
            raise ValueError(f"{source}: not a Perch SavedModel directory (saved_model.pb) or an .onnx file")
        outputs = ("embedding",) + (("label",) if logits else ()) + (("spatial_embedding",) if spatial else ())
        provenance = {"checkpoint": str(source) if not Path(source).exists() else str(path.resolve()),
                      "model_path": str(path.resolve()), "weights_sha256": weights, "runtime": runner.runtime,
                      "force_10sec": bool(force_10sec), "n_classes": len(classes) if classes else None}
        backend = cls(runner, name=name, source=str(source), sample_rate_hz=rate, hop_s=hop, outputs=outputs,
                      classes=classes, provenance=provenance, top_k=top_k or 0)
        backend.apply_rules(min_seconds=min_seconds, partial_window=partial_window, resampler=resampler)
        return backend

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a TF SavedModel folder (saved_model.pb), or an ONNX graph taking [batch, 160000] audio."""
        if path.is_dir():
            return "perch_v2" if (path / "saved_model.pb").is_file() else None
        if not path.is_file():
            return None
        try:
            import onnx

            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception:  # noqa: BLE001 - not an ONNX file
            return None
        dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
        return "perch_v2" if len(dims) == 1 and len(dims[0]) == 2 and dims[0][1] == INPUT_SAMPLES else None

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """float32 [B, 160000] -> embeddings [B, 1536], extras ``label`` [B, C], ... (as requested)."""
        out = self.runner(np.ascontiguousarray(audio, dtype=np.float32), self.outputs)
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
        return BatchOutput(arrays.pop("embedding"), arrays)

    def details(self) -> dict[str, Any]:
        """Provenance for the ``.json``."""
        return {**self._provenance, "outputs": list(self.outputs), "pad_mode": self.pad_mode,
                "window_rules": self.rules.describe()}

    def mat_fields(self) -> dict[str, Any]:
        """``hop_s`` (s) for the ``.mat``."""
        fields = {"hop_s": float(self.frame_stride_s)}
        if "label" in self.outputs and self.classes:
            fields["classes"] = list(self.classes)  # one per logit: a cell array in MATLAB
        return fields

