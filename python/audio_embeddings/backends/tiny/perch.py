"""A tiny stand-in for Perch 2.0 with its exact interface, as a TensorFlow SavedModel and as ONNX.

``serving_default(inputs: float32 [B, 160000])`` returns ``embedding`` [B, 1536], ``label``
[B, 8], ``spatial_embedding`` [B, 16, 4, 1536] and ``spectrogram`` [B, 500, 128], computed
by :func:`reference` (so tests know the exact numbers any window must give).
Not a bird classifier: for trying the toolkit and for tests, never for results.

    python tests/tiny_perch.py savedmodel OUT_DIR | onnx OUT.onnx   # for the Octave tests
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_CLASSES = 8
_USED = 1536 * 100  # the first 153600 samples feed the embedding


def reference(windows: np.ndarray) -> dict[str, np.ndarray]:
    """What the tiny model returns for float32 [B, 160000], computed in numpy."""
    frames = windows[:, :_USED].reshape(-1, 1536, 100).astype(np.float64)
    emb = (frames.mean(-1) * 50.0 + np.abs(frames).mean(-1)).astype(np.float32)
    return {"embedding": emb, "label": emb[:, :N_CLASSES] * 3.0 - 1.0,
            "spatial_embedding": np.broadcast_to(emb[:, None, None, :], (emb.shape[0], 16, 4, 1536)),
            "spectrogram": windows[:, :64000].reshape(-1, 500, 128)}


def build_savedmodel(directory: str | Path) -> Path:
    """Save the tiny model as a TF SavedModel with Perch's signature; returns the directory."""
    import tensorflow as tf

    class TinyPerch(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 160000], tf.float32, name="inputs")])
        def serve(self, inputs):
            frames = tf.reshape(inputs[:, :_USED], [-1, 1536, 100])
            emb = tf.reduce_mean(frames, -1) * 50.0 + tf.reduce_mean(tf.abs(frames), -1)
            return {"embedding": emb, "label": emb[:, :N_CLASSES] * 3.0 - 1.0,
                    "spatial_embedding": tf.tile(emb[:, None, None, :], [1, 16, 4, 1]),
                    "spectrogram": tf.reshape(inputs[:, :64000], [-1, 500, 128])}

    out = Path(directory)
    module = TinyPerch()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    (out / "assets").mkdir(exist_ok=True)
    (out / "assets" / "labels.csv").write_text("label\n" + "".join(f"species{i}\n" for i in range(N_CLASSES)))
    return out


def build_onnx(path: str | Path) -> Path:
    """Save the tiny model as ONNX (input ``inputs``, the same four outputs); returns the path."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, values, dtype=TensorProto.INT64):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, [len(values)], values))

    nodes = [
        const("s0", [0]), const("s_used", [_USED]), const("ax1", [1]), const("s_spec", [64000]),
        const("shape_f", [-1, 1536, 100]), const("shape_s", [-1, 500, 128]), const("n_cls", [N_CLASSES]),
        const("tile", [1, 16, 4, 1]), const("ax12", [1, 2]),
        const("k50", [50.0], TensorProto.FLOAT), const("k3", [3.0], TensorProto.FLOAT),
        const("k1", [1.0], TensorProto.FLOAT),
        helper.make_node("Slice", ["inputs", "s0", "s_used", "ax1"], ["used"]),
        helper.make_node("Reshape", ["used", "shape_f"], ["frames"]),
        helper.make_node("ReduceMean", ["frames"], ["mean"], axes=[2], keepdims=0),
        helper.make_node("Abs", ["frames"], ["absf"]),
        helper.make_node("ReduceMean", ["absf"], ["absmean"], axes=[2], keepdims=0),
        helper.make_node("Mul", ["mean", "k50"], ["scaled"]),
        helper.make_node("Add", ["scaled", "absmean"], ["embedding"]),
        helper.make_node("Slice", ["embedding", "s0", "n_cls", "ax1"], ["first"]),
        helper.make_node("Mul", ["first", "k3"], ["first3"]),
        helper.make_node("Sub", ["first3", "k1"], ["label"]),
        helper.make_node("Unsqueeze", ["embedding", "ax12"], ["emb4"]),
        helper.make_node("Tile", ["emb4", "tile"], ["spatial_embedding"]),
        helper.make_node("Slice", ["inputs", "s0", "s_spec", "ax1"], ["spec_in"]),
        helper.make_node("Reshape", ["spec_in", "shape_s"], ["spectrogram"]),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "tiny_perch", [helper.make_tensor_value_info("inputs", f, ["B", 160000])],
        [helper.make_tensor_value_info("embedding", f, ["B", 1536]),
         helper.make_tensor_value_info("label", f, ["B", N_CLASSES]),
         helper.make_tensor_value_info("spatial_embedding", f, ["B", 16, 4, 1536]),
         helper.make_tensor_value_info("spectrogram", f, ["B", 500, 128])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    out = Path(path)
    onnx.save(model, str(out))
    return out


def main(argv: list[str]) -> int:
    """``python tests/tiny_perch.py savedmodel OUT_DIR | onnx OUT.onnx``: build and print the path."""
    (build_savedmodel if argv[0] == "savedmodel" else build_onnx)(argv[1])
    print(argv[1])
    return 0
