"""Tests for ``audio_embeddings.outputs.matfile`` (MAT v5 / v7.3 writer)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from audio_embeddings.outputs import matfile
from audio_embeddings.outputs.matfile import (
    V73_THRESHOLD_BYTES,
    write_mat,
    write_mat_or_record_failure,
)

T, D = 5, 7
MODEL_NAME = "wav2vec2-base"
OCTAVE = shutil.which("octave-cli")
needs_octave = pytest.mark.skipif(OCTAVE is None, reason="octave-cli not installed")


@pytest.fixture
def variables() -> dict:
    """A typical embeddings payload: (T, D) single, (T,) time axis, scalar, string, 3-D."""
    rng = np.random.default_rng(0)
    return {
        "embeddings": rng.standard_normal((T, D)).astype(np.float32),
        "time_axis": np.arange(T, dtype=np.float64) * 0.02,
        "frame_stride": 0.02,
        "model_name": MODEL_NAME,
        "layers": rng.standard_normal((3, T, D)),
    }


def _leftovers(directory: Path, final_name: str) -> list[str]:
    """Names in ``directory`` other than the expected final file."""
    return sorted(p.name for p in directory.iterdir() if p.name != final_name)


# ---------------------------------------------------------------------------
# v5
# ---------------------------------------------------------------------------


def test_v5_loads_with_scipy_with_matlab_classes_and_shapes(tmp_path, variables):
    path = write_mat(tmp_path / "x.mat", variables, version="5")
    m = scipy.io.loadmat(path)

    assert m["embeddings"].dtype == np.float32
    assert m["embeddings"].shape == (T, D)
    np.testing.assert_array_equal(m["embeddings"], variables["embeddings"])

    assert m["time_axis"].dtype == np.float64
    assert m["time_axis"].shape == (T, 1)
    np.testing.assert_array_equal(m["time_axis"][:, 0], variables["time_axis"])

    assert m["frame_stride"].dtype == np.float64
    assert m["frame_stride"].shape == (1, 1)
    assert m["frame_stride"][0, 0] == 0.02

    assert m["model_name"].dtype.kind == "U"
    assert str(m["model_name"][0]) == MODEL_NAME

    assert m["layers"].shape == (3, T, D)
    np.testing.assert_array_equal(m["layers"], variables["layers"])


def test_v5_python_and_numpy_integer_scalars_become_double(tmp_path):
    path = write_mat(tmp_path / "x.mat", {"n": 3, "k": np.int64(4), "u": np.uint8(5)}, version="5")
    m = scipy.io.loadmat(path)
    for name, expected in [("n", 3.0), ("k", 4.0), ("u", 5.0)]:
        assert m[name].dtype == np.float64, name
        assert m[name].shape == (1, 1), name
        assert m[name][0, 0] == expected, name


def test_v5_integer_arrays_keep_their_class(tmp_path):
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    m = scipy.io.loadmat(write_mat(tmp_path / "x.mat", {"ints": arr}, version="5"))
    assert m["ints"].dtype == np.int32
    np.testing.assert_array_equal(m["ints"], arr)


def test_v5_is_not_hdf5(tmp_path, variables):
    path = write_mat(tmp_path / "x.mat", variables, version="5")
    assert path.read_bytes()[:19] == b"MATLAB 5.0 MAT-file"
    assert not h5py.is_hdf5(path)


# ---------------------------------------------------------------------------
# v7.3
# ---------------------------------------------------------------------------


def test_v73_has_matlab_user_block_header(tmp_path, variables):
    path = write_mat(tmp_path / "x.mat", variables, version="7.3")
    header = path.read_bytes()[:512]
    assert header.startswith(b"MATLAB 7.3 MAT-file")
    assert b"HDF5 schema 1.00" in header[:116]
    assert header[124:128] == b"\x00\x02IM"
    assert header[128:] == b"\x00" * (512 - 128)
    assert h5py.is_hdf5(path)


def test_v73_datasets_are_column_major_with_matlab_class(tmp_path, variables):
    path = write_mat(tmp_path / "x.mat", variables, version="7.3")
    with h5py.File(path, "r") as f:
        emb = f["embeddings"]
        assert emb.attrs["MATLAB_class"] == b"single"
        assert emb.dtype == np.float32
        assert emb.shape == (D, T)  # HDF5 dims are MATLAB dims reversed
        np.testing.assert_array_equal(np.asarray(emb).T, variables["embeddings"])

        assert f["time_axis"].attrs["MATLAB_class"] == b"double"
        assert f["time_axis"].shape == (1, T)  # MATLAB T x 1

        assert f["layers"].shape == (D, T, 3)
        np.testing.assert_array_equal(np.asarray(f["layers"]).T, variables["layers"])

        stride = f["frame_stride"]
        assert stride.attrs["MATLAB_class"] == b"double"
        assert stride.shape == (1, 1)
        assert stride[0, 0] == 0.02


def test_v73_memory_layout_of_input_does_not_change_element_order(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    inputs = {
        "fortran": np.asfortranarray(a),
        "strided": a[::2, 1::2],
        "bigendian": a.astype(">f4"),
    }
    path = write_mat(tmp_path / "x.mat", inputs, version="7.3")
    with h5py.File(path, "r") as f:
        for name, arr in inputs.items():
            assert f[name].attrs["MATLAB_class"] == b"single", name
            np.testing.assert_array_equal(np.asarray(f[name]).T, arr, err_msg=name)


def test_v73_char_is_uint16_with_int_decode(tmp_path):
    path = write_mat(tmp_path / "x.mat", {"model_name": MODEL_NAME}, version="7.3")
    with h5py.File(path, "r") as f:
        ds = f["model_name"]
        assert ds.attrs["MATLAB_class"] == b"char"
        assert int(ds.attrs["MATLAB_int_decode"]) == 2
        assert ds.dtype == np.uint16
        assert ds.shape == (len(MODEL_NAME), 1)  # MATLAB 1 x N
        assert bytes(np.asarray(ds).ravel().astype("<u2")).decode("utf-16-le") == MODEL_NAME


def test_v73_logical_is_uint8_with_int_decode(tmp_path):
    flags = np.array([True, False, True])
    path = write_mat(tmp_path / "x.mat", {"flags": flags}, version="7.3")
    with h5py.File(path, "r") as f:
        ds = f["flags"]
        assert ds.attrs["MATLAB_class"] == b"logical"
        assert int(ds.attrs["MATLAB_int_decode"]) == 1
        assert ds.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(ds).ravel(), [1, 0, 1])


def test_v73_integer_array_class(tmp_path):
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    path = write_mat(tmp_path / "x.mat", {"ints": arr}, version="7.3")
    with h5py.File(path, "r") as f:
        assert f["ints"].attrs["MATLAB_class"] == b"int32"
        assert f["ints"].dtype == np.int32
        np.testing.assert_array_equal(np.asarray(f["ints"]).T, arr)


def test_v73_empty_array_stores_dims_flagged_empty(tmp_path):
    path = write_mat(tmp_path / "x.mat", {"e": np.zeros((0, 3), dtype=np.float32)}, version="7.3")
    with h5py.File(path, "r") as f:
        ds = f["e"]
        assert ds.attrs["MATLAB_class"] == b"single"
        assert int(ds.attrs["MATLAB_empty"]) == 1
        assert ds.dtype == np.uint64
        np.testing.assert_array_equal(np.asarray(ds), [0, 3])


def test_v73_compresses_only_large_datasets(tmp_path):
    big = np.zeros((200, 64), dtype=np.float32)  # 51 KB
    small = np.zeros((2, 2), dtype=np.float32)
    path = write_mat(tmp_path / "x.mat", {"big": big, "small": small}, version="7.3")
    with h5py.File(path, "r") as f:
        assert f["big"].compression == "gzip"
        assert f["big"].chunks is not None
        assert f["small"].compression is None
    assert path.stat().st_size < big.nbytes  # zeros compress well


def test_v73_loads_with_mat73(tmp_path, variables):
    mat73 = pytest.importorskip("mat73")
    path = write_mat(tmp_path / "x.mat", variables, version="7.3")
    m = mat73.loadmat(str(path), verbose=False)

    assert m["embeddings"].dtype == np.float32
    np.testing.assert_array_equal(m["embeddings"], variables["embeddings"])
    # mat73 squeezes singleton dimensions: T x 1 -> (T,), 1 x 1 -> scalar.
    np.testing.assert_array_equal(np.ravel(m["time_axis"]), variables["time_axis"])
    assert float(m["frame_stride"]) == 0.02
    assert m["model_name"] == MODEL_NAME
    assert m["layers"].shape == (3, T, D)
    np.testing.assert_array_equal(m["layers"], variables["layers"])


# ---------------------------------------------------------------------------
# version selection
# ---------------------------------------------------------------------------


def test_auto_picks_v5_for_small_data(tmp_path, variables):
    path = write_mat(tmp_path / "x.mat", variables)  # version="auto"
    assert path.read_bytes()[:19] == b"MATLAB 5.0 MAT-file"


class _Big:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def test_needs_v73_at_threshold_without_allocating():
    assert V73_THRESHOLD_BYTES == 2**31
    assert matfile._needs_v73({"a": _Big(2**31)})
    assert not matfile._needs_v73({"a": _Big(2**31 - 1), "b": _Big(2**31 - 1)})  # per variable
    assert not matfile._needs_v73({"s": "short", "x": np.zeros(3)})


def test_auto_picks_v73_when_a_variable_reaches_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(matfile, "V73_THRESHOLD_BYTES", 800)
    at = write_mat(tmp_path / "at.mat", {"x": np.zeros(100)})  # exactly 800 bytes
    below = write_mat(tmp_path / "below.mat", {"x": np.zeros(99)})
    assert at.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    assert h5py.is_hdf5(at)
    assert below.read_bytes()[:19] == b"MATLAB 5.0 MAT-file"


@pytest.mark.parametrize("bad", ["7", "v7.3", "", 5, None])
def test_unknown_version_is_value_error(tmp_path, variables, bad):
    with pytest.raises(ValueError):
        write_mat(tmp_path / "x.mat", variables, version=bad)
    with pytest.raises(ValueError):
        write_mat_or_record_failure(tmp_path / "x.mat", variables, version=bad)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_object_array_is_type_error(tmp_path, version):
    with pytest.raises(TypeError, match="obj"):
        write_mat(tmp_path / "x.mat", {"obj": np.array([1, "a"], dtype=object)}, version=version)


@pytest.mark.parametrize("name", ["_x", "1x", "a-b", "x" * 64, ""])
def test_invalid_variable_name_is_value_error(tmp_path, name):
    with pytest.raises(ValueError, match="variable name"):
        write_mat(tmp_path / "x.mat", {name: 1.0})


# ---------------------------------------------------------------------------
# failure recording
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["5", "7.3", "auto"])
def test_unwritable_value_records_failure(tmp_path, version):
    target = tmp_path / "x.mat"
    written, reason = write_mat_or_record_failure(
        target, {"obj": np.array([None, 1], dtype=object)}, version=version
    )
    assert written is None
    assert reason.startswith("TypeError: ")
    assert "\n" not in reason
    marker = tmp_path / "x.mat.failed"
    assert marker.read_text().strip() == reason
    assert not target.exists()
    assert _leftovers(tmp_path, "x.mat.failed") == []


def test_directory_in_the_way_records_failure(tmp_path, variables):
    target = tmp_path / "x.mat"
    target.mkdir()
    written, reason = write_mat_or_record_failure(target, variables)
    assert written is None
    assert reason and "Error" in reason.split(":")[0]
    assert (tmp_path / "x.mat.failed").read_text().strip() == reason
    assert target.is_dir()  # left alone
    assert _leftovers(tmp_path, "x.mat") == ["x.mat.failed"]


def test_success_returns_path_and_removes_stale_marker(tmp_path, variables):
    target = tmp_path / "x.mat"
    marker = tmp_path / "x.mat.failed"
    marker.write_text("TypeError: old failure\n")
    written, reason = write_mat_or_record_failure(target, variables)
    assert (written, reason) == (target, None)
    assert target.is_file()
    assert not marker.exists()


def test_failure_removes_stale_mat_from_earlier_run(tmp_path, variables):
    target = write_mat(tmp_path / "x.mat", variables)
    written, reason = write_mat_or_record_failure(target, {"bad": object()})
    assert written is None and reason.startswith("TypeError")
    assert not target.exists()
    assert (tmp_path / "x.mat.failed").exists()


# ---------------------------------------------------------------------------
# atomicity
# ---------------------------------------------------------------------------


class _Boom(RuntimeError):
    pass


def test_v73_crash_midway_leaves_nothing(tmp_path, variables, monkeypatch):
    real = matfile._write_v73_variable
    calls = []

    def flaky(f, name, value):
        calls.append(name)
        if len(calls) == 2:  # first variable already in the temp file
            raise _Boom("disk on fire")
        real(f, name, value)

    monkeypatch.setattr(matfile, "_write_v73_variable", flaky)
    with pytest.raises(_Boom):
        write_mat(tmp_path / "x.mat", variables, version="7.3")
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_v5_crash_midway_leaves_nothing(tmp_path, variables, monkeypatch):
    def partial_savemat(file, mdict, **kwargs):
        file.write(b"MATLAB 5.0 MAT-file, partial")
        raise _Boom("killed")

    monkeypatch.setattr(scipy.io, "savemat", partial_savemat)
    with pytest.raises(_Boom):
        write_mat(tmp_path / "x.mat", variables, version="5")
    assert list(tmp_path.iterdir()) == []


def test_crash_keeps_previous_file_intact(tmp_path, variables, monkeypatch):
    target = write_mat(tmp_path / "x.mat", variables, version="7.3")
    before = target.read_bytes()

    def boom(f, name, value):
        raise _Boom("midway")

    monkeypatch.setattr(matfile, "_write_v73_variable", boom)
    with pytest.raises(_Boom):
        write_mat(target, {"other": np.ones(3)}, version="7.3")
    assert target.read_bytes() == before
    assert _leftovers(tmp_path, "x.mat") == []


def test_crash_is_recorded_by_failure_wrapper(tmp_path, variables, monkeypatch):
    def boom(f, name, value):
        raise _Boom("midway\nsecond line")

    monkeypatch.setattr(matfile, "_write_v73_variable", boom)
    written, reason = write_mat_or_record_failure(tmp_path / "x.mat", variables, version="7.3")
    assert written is None
    assert reason == "_Boom: midway second line"
    assert _leftovers(tmp_path, "x.mat.failed") == []
    assert not (tmp_path / "x.mat").exists()


# ---------------------------------------------------------------------------
# GNU Octave round trip
# ---------------------------------------------------------------------------

_OCTAVE_PROBE = """
s = load('{path}');
printf('emb_class=%s\\n', class(s.embeddings));
printf('emb_size=%s\\n', mat2str(size(s.embeddings)));
printf('emb_23=%.9g\\n', s.embeddings(2, 3));
printf('emb_rows=%s\\n', sprintf('%.9g,', s.embeddings.'));
printf('t_class=%s\\n', class(s.time_axis));
printf('t_size=%s\\n', mat2str(size(s.time_axis)));
printf('stride_class=%s\\n', class(s.frame_stride));
printf('stride_size=%s\\n', mat2str(size(s.frame_stride)));
printf('stride=%.9g\\n', s.frame_stride);
printf('name_class=%s\\n', class(s.model_name));
printf('name_size=%s\\n', mat2str(size(s.model_name)));
printf('name=%s\\n', char(s.model_name));
printf('layers_size=%s\\n', mat2str(size(s.layers)));
printf('layers_234=%.17g\\n', s.layers(2, 3, 4));
"""


def _octave_load(path: Path) -> dict[str, str]:
    script = _OCTAVE_PROBE.format(path=str(path).replace("'", "''"))
    proc = subprocess.run(
        [OCTAVE, "--no-history", "--no-gui", "--quiet", "--no-window-system", "--eval", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def _assert_octave_layout(out: dict[str, str], variables: dict) -> None:
    arr = variables["embeddings"]
    assert out["emb_size"] == f"[{T} {D}]"
    assert np.float32(out["emb_23"]) == arr[1, 2]
    rows = np.array([float(v) for v in out["emb_rows"].rstrip(",").split(",")], dtype=np.float32)
    np.testing.assert_array_equal(rows, arr.ravel())  # A(i,j) == arr[i-1,j-1] everywhere
    assert out["t_size"] == f"[{T} 1]"
    assert out["stride_size"] == "[1 1]"
    assert float(out["stride"]) == 0.02
    assert out["name"] == MODEL_NAME
    assert out["name_size"] == f"[1 {len(MODEL_NAME)}]"
    assert out["layers_size"] == f"[3 {T} {D}]"
    assert float(out["layers_234"]) == variables["layers"][1, 2, 3]


@pytest.mark.slow
@needs_octave
def test_octave_loads_v5_with_classes_and_layout(tmp_path, variables):
    out = _octave_load(write_mat(tmp_path / "x5.mat", variables, version="5"))
    _assert_octave_layout(out, variables)
    assert out["emb_class"] == "single"
    assert out["t_class"] == "double"
    assert out["stride_class"] == "double"
    assert out["name_class"] == "char"


@pytest.mark.slow
@needs_octave
def test_octave_loads_v73_with_layout(tmp_path, variables):
    # Octave's ``load`` reads a v7.3 file through its generic HDF5 reader,
    # which (up to at least Octave 7-11) ignores MATLAB_class: single comes
    # back as double and char as uint16. The classes are checked above with
    # h5py and mat73; here Octave checks dimensions and element order.
    out = _octave_load(write_mat(tmp_path / "x73.mat", variables, version="7.3"))
    _assert_octave_layout(out, variables)


def test_atomic_writes_get_the_umask_permissions_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from audio_embeddings.atomic import write_text_atomic

    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "shared.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".*.tmp*"))


IDS = ["demo_de_utt1", "demo_en_gb_utt2", "ünï"]


def test_lists_of_str_become_cell_arrays_in_v5_and_v73(tmp_path):
    mat73 = pytest.importorskip("mat73")
    v5 = scipy.io.loadmat(write_mat(tmp_path / "c5.mat", {"ids": IDS}, version="5"))["ids"]
    assert v5.shape == (3, 1) and [str(c[0]) for c in v5.ravel()] == IDS
    path = write_mat(tmp_path / "c73.mat", {"ids": IDS, "x": np.ones((2, 2), np.float32)}, version="7.3")
    with h5py.File(path, "r") as f:
        assert f["ids"].attrs["MATLAB_class"] == b"cell" and f["ids"].shape == (1, 3)
    assert [row[0] for row in mat73.loadmat(str(path), verbose=False)["ids"]] == IDS  # N x 1: one item per row
    with pytest.raises(TypeError, match="every item must be a str"):
        write_mat(tmp_path / "bad.mat", {"ids": ["a", 1]})


@pytest.mark.slow
@needs_octave
def test_octave_reads_cell_arrays_in_v5(tmp_path):
    # v7.3 cells are HDF5 object references (as MATLAB writes them, checked above with mat73): Octave's
    # generic HDF5 reader cannot follow references ("unknown datatype"), so only v5 is loaded here.
    version = "5"
    path = write_mat(tmp_path / f"c{version}.mat", {"ids": IDS[:2]}, version=version)
    script = (f"s = load('{path}'); assert(iscell(s.ids) && isequal(size(s.ids), [2 1])); "
              "printf('%s|%s\\n', char(s.ids{1}), char(s.ids{2}));")
    proc = subprocess.run([OCTAVE, "--no-history", "--quiet", "--eval", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "|".join(IDS[:2])
