"""Outputs are never stale, never half-replaced, and failures are one line (issue 27, cases 4, 5, 6, 7, 11).

* case 4: an input edited in place with its size kept and its time restored (``touch -r``) is redone or
  refused, naming why: under 16 MiB by its whole-file hash, above by the sampled hash (head, middle,
  tail blocks); ``--verify-inputs`` hashes large inputs whole.
* case 5: a truncated WAV (fewer frames than its header promises) fails with one line naming both
  counts, unless ``--allow-truncated`` embeds what is there and records it.
* case 6: ``--overwrite`` replaces outputs atomically (new files complete under temporary names, one
  rename each, the stamp last): a kill at any point leaves the old or the new complete result.
* case 7: SIGTERM in the end phase of a store run exits 143 with one line and leaves nothing a
  rerun does not clean; the summary never says complete before the ``.h5`` is in place.
* case 11: unloadable weights, a ``--stats`` file that is not weights, ``--basename ../x``,
  skipped ``.mat`` files and the run file of a failed start are one line each.

Scripts run in this process (``scripts.main``) where they can; subprocess/signal tests are ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from helpers import noise

PYTHON_DIR = REPO / "python"


@pytest.fixture
def run_main(capsys):
    """``run_main(defaults_name, *argv)``: a script's ``main`` in this process, as a CompletedProcess."""
    from audio_embeddings import scripts

    def call(name: str, *argv: object) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            status = scripts.main(getattr(scripts, name), [str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code
        printed = capsys.readouterr()
        return subprocess.CompletedProcess([name, *map(str, argv)], status, printed.out, printed.err)

    return call


def _edit_same_size(path: Path, offset: int, *, keep_time: bool = True) -> None:
    """Flip bytes at ``offset`` (size kept) and restore the modification time (``touch -r``)."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        old = fh.read(64)
        fh.seek(offset)
        fh.write(bytes((b ^ 0x5A) for b in old))
    if keep_time:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# --- case 4: same-size edits with the time restored ------------------------------------------------


def test_case4_sampled_hash_reads_three_blocks(tmp_path):
    """The sampled hash changes with an edit in the head, middle or tail block, not elsewhere."""
    from audio_embeddings.corpus.stamps import SAMPLE_BLOCK_BYTES, sampled_sha256

    path = tmp_path / "big.bin"
    size = 19 * 10 ** 6
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    first = sampled_sha256(path)
    middle = (size - SAMPLE_BLOCK_BYTES) // 2 + 100
    for offset, seen in ((10, True), (middle, True), (size - 100, True), (size // 4, False)):
        _edit_same_size(path, offset)
        assert (sampled_sha256(path) != first) is seen, offset
        _edit_same_size(path, offset)  # flipped back
    assert sampled_sha256(path) == first


@pytest.mark.parametrize("writer", ["tree", "store"])
def test_case4_touch_r_same_size_edit_is_detected(run_main, tiny_model, tmp_path, writer):
    """A 3 s input and a 19 MB input edited in place (size kept, ``touch -r``): the rerun refuses, naming
    the changed contents; a large input only touched is refused too, and ``--verify-inputs`` stores
    whole-file hashes so that an edit outside the sampled blocks is then found."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "small.wav", noise(3.0, 16000, seed=1), 16000, subtype="PCM_16")
    sf.write(corpus / "big.wav", noise(600.0, 16000, seed=2), 16000, subtype="PCM_16")  # 19.2 MB
    assert (corpus / "big.wav").stat().st_size > 16 * 2 ** 20
    out = tmp_path / "out"
    common = [corpus, "--model", tiny_model("wav2vec2"), "--output-dir", out, "--device", "cpu",
              "--workers", "0", "--quiet", "--chunk-seconds", "30"]
    if writer == "store":
        common += ["--store", tmp_path / "all.h5"]
    assert run_main("WAV2VEC2", *common).returncode == 0
    assert run_main("WAV2VEC2", *common).returncode == 0  # nothing changed: all done

    _edit_same_size(corpus / "small.wav", 20000)  # inside the data, not in a sampled block sense
    refused = run_main("WAV2VEC2", *common)
    assert refused.returncode == 2 and "small.wav" in refused.stderr and "other contents" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    _edit_same_size(corpus / "small.wav", 20000)  # back as it was: done again
    assert run_main("WAV2VEC2", *common).returncode == 0

    size = (corpus / "big.wav").stat().st_size
    _edit_same_size(corpus / "big.wav", size // 2)  # the middle block
    refused = run_main("WAV2VEC2", *common)
    assert refused.returncode == 2 and "big.wav" in refused.stderr and "sampled blocks" in refused.stderr
    _edit_same_size(corpus / "big.wav", size // 2)
    assert run_main("WAV2VEC2", *common).returncode == 0

    os.utime(corpus / "big.wav")  # only touched: the time changed, the sampled blocks did not
    refused = run_main("WAV2VEC2", *common)
    assert refused.returncode == 2 and "big.wav" in refused.stderr and "--verify-inputs" in refused.stderr
    # --verify-inputs: the old stamp has no whole-file hash -> redone with one (overwrite), then compared
    assert run_main("WAV2VEC2", *common, "--verify-inputs", "--overwrite").returncode == 0
    assert run_main("WAV2VEC2", *common, "--verify-inputs").returncode == 0
    _edit_same_size(corpus / "big.wav", size // 4)  # outside the sampled blocks
    refused = run_main("WAV2VEC2", *common, "--verify-inputs")
    assert refused.returncode == 2 and "big.wav" in refused.stderr and "other contents" in refused.stderr


# --- case 6: --overwrite replaces atomically --------------------------------------------------------


class _Killed(BaseException):
    """Stands for SIGKILL at one point of a write (the process never runs its clean-up)."""


def _result(seed: int):
    from audio_embeddings.pipeline import FileEmbedding

    rng = np.random.default_rng(seed)
    n = 49
    return FileEmbedding(embeddings=rng.standard_normal((n, 8)).astype(np.float32),
                         time_axis_s=np.arange(n) * 0.02, frame_stride_s=0.02, window_s=0.025,
                         sample_rate_hz=16000, n_samples=16000, extras={"codes": np.arange(n) + seed})


def _write(out: Path, result, stamp: dict, formats=("npy", "mat", "json")):
    from audio_embeddings.outputs.contract import write_outputs

    return write_outputs(result, output_dir=out, basename="x", model_name="tiny", backend_info={"name": "t"},
                         backend_fields={}, input_path="<memory>", audio_info={"duration_s": 1.0},
                         started_at="now", formats=formats, mat_version="5", stamp=stamp, stamp_key="x.wav")


@pytest.mark.parametrize("kill_at", range(8))
def test_case6_killed_overwrite_leaves_old_or_new_whole(tmp_path, monkeypatch, kill_at):
    """A write killed before its k-th step (the .mat's own temporary, the old stamp's removal, then the
    renames of extra, mat, json, npy and stamp; 7: not killed) leaves every output file whole, old or new, never a missing ``.npy``; the stamp says
    complete only for a whole old or new set, and a rerun's write completes the new one."""
    import scipy.io

    from audio_embeddings import atomic
    from audio_embeddings.atomic import clean_stale_temporaries
    from audio_embeddings.outputs.contract import read_stamp

    old, new = _result(1), _result(2)
    old_stamp, new_stamp = {"settings": "old", "size": 1}, {"settings": "new", "size": 1}
    _write(tmp_path, old, old_stamp)
    calls = {"n": 0}
    real_replace = os.replace

    def replace(src, dst):
        if calls["n"] == kill_at:
            raise _Killed()
        calls["n"] += 1
        return real_replace(src, dst)

    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):  # the old stamp's removal counts as one step
        if self.name == ".x.done":
            if calls["n"] == kill_at:
                raise _Killed()
            calls["n"] += 1
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(atomic.StagedFiles, "discard", lambda self: None)  # a killed process cleans nothing
    killed = False
    try:
        _write(tmp_path, new, new_stamp)
    except _Killed:
        killed = True
    monkeypatch.undo()
    assert killed == (kill_at < 7)
    npy = np.load(tmp_path / "x.npy")  # always there, always whole
    assert np.array_equal(npy, old.embeddings) or np.array_equal(npy, new.embeddings)
    mat = scipy.io.loadmat(tmp_path / "x.mat")["embeddings"]
    assert np.array_equal(mat, old.embeddings) or np.array_equal(mat, new.embeddings)
    json.loads((tmp_path / "x.json").read_text())
    stamp = read_stamp(tmp_path / "x")
    if stamp == old_stamp:  # complete means complete: every file is the old one
        assert np.array_equal(npy, old.embeddings) and np.array_equal(mat, old.embeddings)
        assert np.array_equal(np.load(tmp_path / "x_codes.npy"), old.extras["codes"])
    elif stamp == new_stamp:
        assert np.array_equal(npy, new.embeddings) and np.array_equal(mat, new.embeddings)
        assert np.array_equal(np.load(tmp_path / "x_codes.npy"), new.extras["codes"])
    else:
        assert stamp is None  # incomplete: a rerun redoes it
    clean_stale_temporaries(tmp_path)
    _write(tmp_path, new, new_stamp)  # the rerun
    assert read_stamp(tmp_path / "x") == new_stamp
    assert np.array_equal(np.load(tmp_path / "x.npy"), new.embeddings)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_case6_tree_overwrite_never_deletes_first(run_main, tiny_model, tmp_path, monkeypatch):
    """Through B2 ``--overwrite``: no output of the file is ever deleted before its new version is whole."""
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(3.0, 16000, seed=3), 16000)
    out = tmp_path / "out"
    common = [wav, "--model", tiny_model("wav2vec2"), "--output-dir", out, "--device", "cpu", "--quiet"]
    assert run_main("WAV2VEC2", *common).returncode == 0
    first = {p.name: p.stat().st_ino for p in out.iterdir() if p.suffix in (".npy", ".mat", ".json")}
    assert len(first) >= 3
    removed = []
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.suffix in (".npy", ".mat", ".json") and self.exists():
            removed.append(self.name)
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert run_main("WAV2VEC2", *common, "--overwrite").returncode == 0
    monkeypatch.undo()
    assert removed == []
    again = {p.name: p.stat().st_ino for p in out.iterdir() if p.suffix in (".npy", ".mat", ".json")}
    assert again.keys() == first.keys() and all(again[k] != first[k] for k in first)  # each replaced by a rename


# --- case 5: truncated WAVs -------------------------------------------------------------------------


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


@pytest.mark.parametrize("seconds, subtype, fraction", [(600.0, "PCM_16", 0.6), (600.0, "PCM_24", 0.6),
                                                        (3.0, "PCM_16", 0.5)])
def test_case5_truncated_wav_fails_unless_allowed(tmp_path, seconds, subtype, fraction):
    """A WAV cut short fails in the loader with one line naming both frame counts; ``allow_truncated``
    embeds the frames there and records them (``audio_info["truncated"]``)."""
    from audio_embeddings import audio
    from audio_embeddings.corpus.loader import LoadTask, load_item

    rate = 16000
    path = tmp_path / "cut.wav"
    sf.write(path, noise(seconds, rate, seed=4), rate, subtype=subtype)
    _cut(path, fraction)
    frames = int(seconds * rate)
    declared, present = audio.wav_frame_counts(path)
    assert declared == frames and 0 < present < frames
    for hash_below in (0, 2 ** 30):  # from the file, and from the bytes read to hash
        task = LoadTask("cut.wav", str(path), rate, stream_above_samples=60 * rate, hash_below_bytes=hash_below)
        failed = load_item(task)
        assert failed.samples is None and failed.raw_path is None
        assert failed.error == (f"{path}: truncated: the header promises {frames} frames but the file holds "
                                f"{present}; not embedded (--allow-truncated embeds the frames that are there)")
        allowed = load_item(LoadTask("cut.wav", str(path), rate, stream_above_samples=60 * rate,
                                     hash_below_bytes=hash_below, allow_truncated=True))
        assert allowed.error is None and allowed.n_samples == present
        assert allowed.audio_info["truncated"] == {"frames_declared": frames, "frames_present": present}
        if allowed.raw_path:
            os.unlink(allowed.raw_path)
    with pytest.raises(audio.AudioError, match="truncated"):
        audio.load(path, sample_rate_hz=rate)


def test_case5_header_claiming_4_gb_is_refused(tmp_path):
    """A 3 s WAV whose data chunk claims 4 GB is truncated: refused, not decoded."""
    from audio_embeddings import audio

    path = tmp_path / "huge.wav"
    sf.write(path, noise(3.0, 16000, seed=5), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(audio.AudioError, match=r"promises 2147483640 frames but the file holds 48000"):
        audio.load(path, sample_rate_hz=16000)


def test_case5_allow_truncated_through_b2(run_main, tiny_model, tmp_path):
    """Through B2: rc 1 and one line naming the counts; ``--allow-truncated`` embeds 74 of 149 frames and
    records the truncation in the ``.json``; the flag is in the resume fingerprint and the MATLAB table."""
    from audio_embeddings.docs_tables import matlab_options_table

    corpus = tmp_path / "c"
    corpus.mkdir()
    sf.write(corpus / "a.wav", noise(3.0, 16000, seed=6), 16000, subtype="PCM_16")
    _cut(corpus / "a.wav", 0.5)
    out = tmp_path / "out"
    common = [corpus, "--model", tiny_model("wav2vec2"), "--output-dir", out, "--device", "cpu", "--workers", "0"]
    failed = run_main("WAV2VEC2", *common, "--quiet")
    assert failed.returncode == 1 and "truncated: the header promises 48000 frames" in failed.stderr
    assert "--allow-truncated: False -> True" in run_main("WAV2VEC2", *common, "--allow-truncated").stderr
    out = tmp_path / "allowed"
    common[common.index("--output-dir") + 1] = out
    done = run_main("WAV2VEC2", *common, "--quiet", "--allow-truncated", "--formats", "npy,json")
    assert done.returncode == 0
    assert np.load(out / "a.npy").shape[0] == (23989 - 400) // 320 + 1 == 74  # of 149 for the whole 3 s
    meta = json.loads((out / "a.json").read_text())
    assert meta["audio_truncated"]["frames_declared"] == 48000
    assert meta["audio_truncated"]["frames_present"] < 48000
    assert "'AllowTruncated'" in matlab_options_table()


# --- case 7: signals in the end phase of a store run ------------------------------------------------


def test_case7_sigterm_while_merging_the_store(run_main, tiny_model, tmp_path, monkeypatch):
    """SIGTERM during the store merge: rc 143, one line, no ``.h5`` temporary left, no summary saying the
    run completed before the ``.h5`` is in place; the rerun merges and completes."""
    import signal

    from audio_embeddings.corpus import store as store_module

    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(3):
        sf.write(corpus / f"{i}.wav", noise(2.0, 16000, seed=10 + i), 16000)
    out, h5 = tmp_path / "out", tmp_path / "elsewhere" / "all.h5"
    h5.parent.mkdir()
    (h5.parent / ".all.h5.deadbeef.tmp").write_bytes(b"left by a killed merge")
    common = [corpus, "--model", tiny_model("wav2vec2"), "--output-dir", out, "--store", h5, "--device", "cpu",
              "--workers", "0", "--quiet"]
    real = store_module.merge_store

    def killed_merge(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr("audio_embeddings.app.run.merge_store", killed_merge)
    stopped = run_main("WAV2VEC2", *common)
    monkeypatch.undo()
    assert stopped.returncode == 143
    assert len(stopped.stderr.strip().splitlines()) == 1 and "SIGTERM" in stopped.stderr
    assert not h5.exists() and [p.name for p in h5.parent.glob(".all.h5.*")] == [".all.h5.deadbeef.tmp"]
    summary = out / "summary.json"
    assert not summary.exists() or json.loads(summary.read_text()).get("status") != "complete"
    again = run_main("WAV2VEC2", *common)
    assert again.returncode == 0 and h5.is_file()
    assert not list(h5.parent.glob(".all.h5.*"))  # the killed merge's temporary is removed by the rerun
    assert json.loads(summary.read_text())["files_done"] + json.loads(summary.read_text())["files_skipped"] == 3


# --- case 11: one line, never a traceback -----------------------------------------------------------


def test_case11_basename_outside_the_output_folder_is_refused(run_main, tiny_model, tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(2.0, 16000, seed=20), 16000)
    out = tmp_path / "deep" / "er" / "out"
    res = run_main("WAV2VEC2", wav, "--model", tiny_model("wav2vec2"), "--output-dir", out, "--device", "cpu",
                   "--basename", "../../x")
    assert res.returncode == 2 and "--basename" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("x.*"))


def test_case11_mat_version_is_in_the_fingerprint(run_main, tiny_model, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    sf.write(corpus / "a.wav", noise(2.0, 16000, seed=21), 16000)
    common = [corpus, "--model", tiny_model("wav2vec2"), "--output-dir", tmp_path / "o", "--device", "cpu",
              "--workers", "0", "--quiet", "--formats", "npy,mat"]
    assert run_main("WAV2VEC2", *common).returncode == 0
    res = run_main("WAV2VEC2", *common, "--mat-version", "7.3")
    assert res.returncode == 2 and "--mat-version" in res.stderr


def test_case11_unloadable_hf_weights_are_one_line(run_main, tiny_model, tmp_path):
    """A folder whose ``pytorch_model.bin`` holds pickled objects (not plain tensors): rc 2, one line."""
    import shutil

    import torch

    model = tmp_path / "model"
    shutil.copytree(tiny_model("wav2vec2"), model)
    for f in model.glob("*.safetensors"):
        f.unlink()
    torch.save({"weights": Path("not a tensor")}, model / "pytorch_model.bin")
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(2.0, 16000, seed=22), 16000)
    res = run_main("WAV2VEC2", wav, "--model", model, "--output-dir", tmp_path / "o", "--device", "cpu")
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "weights cannot be loaded" in res.stderr
