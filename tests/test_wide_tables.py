"""``--layout wide``: one float column per dimension (``f0000...``), read by pandas (and R) with their defaults."""

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.runner import read_embeddings
from audio_embeddings.runner.cli import main
from audio_embeddings.runner.tables import write_table
from helpers import noise, require_birdnet_model

pd = pytest.importorskip("pandas")


def hard_floats(n: int, dim: int) -> np.ndarray:
    """float32 [n, dim] with every kind of value a CSV can get wrong: tiny, huge, subnormal, -0, many digits."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((n, dim)) * 10.0 ** rng.integers(-8, 9, (n, dim))).astype(np.float32)
    x[0, :6] = [np.float32(1e-45), -0.0, np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1 / 3, -2.5e-39]
    return x


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_wide_table_reads_back_the_same_float32(tmp_path, fmt):
    """1000 windows x 1024 dims: pandas' defaults give the written float32 values exactly, columns f0000..f1023;
    read_embeddings gives them back too and records the layout."""
    emb = hard_floats(1000, 1024)
    start = np.arange(1000) * 3.0
    cols = {"source": np.array(["rec.wav"] * 1000, dtype=object), "start": start, "end": start + 3.0,
            "source_separation_channel": np.zeros(1000, np.int32), "embedding": emb}
    path = tmp_path / f"rec.embeddings.{fmt}"
    write_table(path, cols, {"model": "birdnet", "embedding_dim": 1024}, layout="wide")
    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    names = [f"f{i:04d}" for i in range(1024)]
    assert list(frame.columns) == ["source", "start", "end", "source_separation_channel", *names]
    got = frame[names].to_numpy().astype(np.float32)
    np.testing.assert_array_equal(got, emb)
    assert np.signbit(got[0, 1]) and got[0, 0] == np.float32(1e-45)  # -0 and the smallest subnormal survive
    np.testing.assert_array_equal(frame["start"].to_numpy(), start)
    _, back, provenance = read_embeddings(path)
    np.testing.assert_array_equal(back, emb)
    assert provenance["layout"] == "wide"


def test_generate_layout_wide_equals_the_exact_table(tmp_path):
    """``perch_runner.py generate --model birdnet --layout wide``: the CSV's float columns read with
    ``pandas.read_csv(path)`` equal the embeddings of the bit-exact table (the .npy's numbers)."""
    require_birdnet_model()
    sf.write(tmp_path / "rec.wav", noise(7.0, 48000, seed=4), 48000, subtype="FLOAT")
    assert main(["generate", "--quiet", "--model", "birdnet", str(tmp_path / "rec.wav"), str(tmp_path / "ours")]) == 0
    assert main(["generate", "--quiet", "--model", "birdnet", "--layout", "wide", str(tmp_path / "rec.wav"),
                 str(tmp_path / "wide")]) == 0
    _, exact, _ = read_embeddings(tmp_path / "ours" / "rec.embeddings.csv")
    frame = pd.read_csv(tmp_path / "wide" / "rec.embeddings.csv")
    features = [c for c in frame.columns if c.startswith("f")]
    assert len(features) == 1024 and exact.shape == (len(frame), 1024) and len(frame) >= 2
    np.testing.assert_array_equal(frame[features].to_numpy().astype(np.float32), exact)


def write_store(path, recordings):
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["model_name"] = "synthetic"
        f.attrs["window_s"] = 3.0
        f.attrs["frame_stride_s"] = 3.0
        emb, tax = f.create_group("embeddings"), f.create_group("time_axis")
        for key, rows in recordings.items():
            emb.create_dataset(key, data=rows)
            tax.create_dataset(key, data=np.arange(len(rows)) * 3.0)
            emb[key].attrs["source_path"] = f"{key}.wav"


@pytest.mark.parametrize("layout, fmt", [("wide", "parquet"), ("wide", "csv"), ("ours", "csv"),
                                         ("perch-runner", "parquet")])
def test_export_store_to_any_layout(tmp_path, layout, fmt):
    """``perch_runner.py export STORE OUT``: every window of every recording, in order, in blocks smaller than a
    recording and larger (row groups), read back bit for bit in each layout."""
    recs = {f"rec{i}": hard_floats(n, 64)[::-1] if i % 2 else hard_floats(n, 64)
            for i, n in enumerate((5, 700, 1, 300))}
    write_store(tmp_path / "s.h5", recs)
    from audio_embeddings.runner.export import export

    out = tmp_path / f"all.{fmt}"
    result = export(tmp_path / "s.h5", out, layout=layout, block_rows=256)
    assert result["rows"] == 1006 and result["embedding_dim"] == 64
    columns, back, _ = read_embeddings(out)
    np.testing.assert_array_equal(back, np.concatenate(list(recs.values())))
    assert list(columns["source"][[0, 5, 705]]) == ["rec0.wav", "rec1.wav", "rec2.wav"]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        assert pq.ParquetFile(out).metadata.num_row_groups == 2  # 5 + 700 rows, then 1 + 300: blocks of >= 256
    if layout == "wide" and fmt == "csv":
        assert pd.read_csv(out).shape == (1006, 4 + 64)


def test_export_command_line(tmp_path):
    write_store(tmp_path / "s.h5", {"a": hard_floats(4, 8)})
    assert main(["export", str(tmp_path / "s.h5"), str(tmp_path / "w.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "w.csv").columns)[-1] == "f0007"
    assert main(["export", str(tmp_path / "nothing.h5"), str(tmp_path / "x.csv")]) == 2
