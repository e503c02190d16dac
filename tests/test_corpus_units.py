"""Corpus building blocks: discovery, manifests, shards, streaming loader, scheduler, reports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.corpus.discover import CorpusError, discover, read_manifest
from audio_embeddings.corpus.loader import LoadTask, Prefetcher, load_item
from audio_embeddings.corpus.progress import GpuMonitor, Progress
from audio_embeddings.corpus.report import RunReport, merge_reports
from audio_embeddings.corpus.shard import Shard, parse_shard, resolve_shard
from audio_embeddings.corpus.writers import colliding_keys
from helpers import noise


def _touch_wav(path, seconds=0.1, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, noise(seconds, rate), rate)
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "audios"
    for rel in ("part_000/e8/7b/a.wav", "part_000/e8/b9/b.flac", "part_001/c.wav", "part_001/notes.txt",
                "part_001/.hidden.wav", "d.WAV"):
        p = root / rel
        if rel.endswith(".txt"):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("not audio")
        else:
            _touch_wav(p)
    return root


def test_directory_is_searched_recursively_with_relative_sorted_keys(tree):
    corpus = discover([str(tree)])
    assert corpus.kind == "directory" and corpus.root == tree
    assert [i.key for i in corpus.items] == ["d.WAV", "part_000/e8/7b/a.wav", "part_000/e8/b9/b.flac",
                                             "part_001/c.wav"]


def test_pattern_part_and_max_files_select_as_the_seed_does(tree):
    assert [i.key for i in discover([str(tree)], patterns=["*.flac"]).items] == ["part_000/e8/b9/b.flac"]
    part = discover([], audio_dir=str(tree), part="part_000")
    assert [i.key for i in part.items] == ["part_000/e8/7b/a.wav", "part_000/e8/b9/b.flac"]  # keys from the root
    assert len(discover([str(tree)], max_files=2).items) == 2


def test_no_files_found_says_where_it_looked(tree, tmp_path):
    with pytest.raises(CorpusError, match=r"no audio files found in .*part_001.*\*\.mp3"):
        discover([], audio_dir=str(tree), part="part_001", patterns=["*.mp3"])
    with pytest.raises(CorpusError, match="no such folder"):
        discover([str(tree)], part="part_999")


def test_output_dir_inside_the_input_is_not_searched(tree):
    _touch_wav(tree / "out" / "old.wav")
    keys = [i.key for i in discover([str(tree)], exclude=[tree / "out"]).items]
    assert not any(k.startswith("out/") for k in keys)


def test_text_and_csv_manifests_keep_missing_entries_for_the_report(tree, tmp_path):
    txt = tmp_path / "list.txt"
    txt.write_text(f"# comment\npart_001/c.wav\n{tree / 'd.WAV'}\n\nmissing.wav\n")
    corpus = discover([str(txt)], audio_dir=str(tree))
    assert corpus.kind == "manifest"
    assert [i.key for i in corpus.items] == ["d.WAV", "missing.wav", "part_001/c.wav"]
    csv_path = tree / "list.csv"
    csv_path.write_text("speaker,path\ns1,part_001/c.wav\ns2,part_000/e8/7b/a.wav\n")
    assert [p.name for p in read_manifest(csv_path)] == ["c.wav", "a.wav"]


def test_colliding_output_names_are_found():
    assert colliding_keys(["a/x.wav", "a/x.flac", "b/x.wav"]) == [("a/x.wav", "a/x.flac")]


def test_shards_are_disjoint_cover_everything_and_compose_with_torchrun():
    items = list(range(11))
    shards = [Shard(i, 3).select(items) for i in range(3)]
    assert sorted(sum(shards, [])) == items and shards[0] == [0, 3, 6, 9]
    assert parse_shard("1/4") == Shard(1, 4)
    with pytest.raises(ValueError, match="I/N"):
        parse_shard("4")
    with pytest.raises(ValueError):
        parse_shard("4/4")
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert resolve_shard(None, slurm) == Shard(2, 4)
    both = {**slurm, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert resolve_shard(None, both) == Shard(5, 8)
    assert resolve_shard("0/2", {}) == Shard(0, 2)
    assert resolve_shard(None, {}) == Shard(0, 1)


def test_streamed_loading_matches_loading_whole(tmp_path):
    path = tmp_path / "long.wav"
    x = noise(23.0, 44100, seed=3, channels=2)
    sf.write(path, x, 44100, subtype="PCM_16")
    whole = load_item(LoadTask("long.wav", str(path), 16000))
    streamed = load_item(LoadTask("long.wav", str(path), 16000, stream_above_samples=16000, scratch_dir=str(tmp_path)))
    assert whole.error is None and streamed.error is None and streamed.samples is None
    raw = np.fromfile(streamed.raw_path, dtype="<f4")
    assert raw.shape == whole.samples.shape == (streamed.n_samples,)
    np.testing.assert_allclose(raw, whole.samples, atol=2e-4)  # soxr stream vs one shot: filter edges only
    assert streamed.mean == pytest.approx(float(raw.astype(np.float64).mean()), abs=1e-9)
    assert streamed.var == pytest.approx(float(raw.astype(np.float64).var()), rel=1e-9)


def test_loader_reports_bad_files_in_one_line_and_keeps_order(tmp_path):
    good = _touch_wav(tmp_path / "good.wav", seconds=0.5)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    tasks = [LoadTask(p.name, str(p), 16000, min_samples=400) for p in (good, empty, tmp_path / "gone.wav")]
    results = list(Prefetcher(tasks, workers=2, ahead=2))
    assert [r.key for r in results] == ["good.wav", "empty.wav", "gone.wav"]
    assert results[0].error is None and results[0].n_samples == 8000
    assert "empty.wav" in results[1].error and "gone.wav" in results[2].error
    assert all("\n" not in r.error for r in results[1:])


def test_shard_reports_merge_into_one_summary(tmp_path):
    for i in range(2):
        report = RunReport(tmp_path, shard=Shard(i, 2), context={"model": "m"})
        report.files_total = 3
        report.done(1.5)
        report.failed(f"bad{i}.wav", f"bad{i}.wav: corrupt")
        report.write()
    merged = merge_reports(tmp_path)
    assert merged["files_done"] == 2 and merged["files_failed"] == 2 and merged["files_total"] == 6
    assert merged["shards_missing"] == [] and merged["audio_seconds"] == pytest.approx(3.0)
    assert json.loads((tmp_path / "summary.json").read_text())["files_failed"] == 2
    assert (tmp_path / "failures.csv").read_text().splitlines() == ["path,reason", "bad0.wav,bad0.wav: corrupt",
                                                                   "bad1.wav,bad1.wav: corrupt"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_and_errors_always():
    piped = io.StringIO()
    progress = Progress(3, stream=piped)
    progress.file_done(7200.0, "a.wav: 10x32 -> a.npy")
    progress.file_failed("b.wav: file is empty")
    progress.close()
    assert piped.getvalue() == "error: b.wav: file is empty\n"  # no bar, no per-file line by default
    tty = _Terminal()
    progress = Progress(3, stream=tty, verbose=True)
    progress.file_done(7200.0, "a.wav: 10x32 -> a.npy")
    progress.close()
    text = tty.getvalue()
    assert "1/3" in text and "2.00 h audio" in text and "a.wav: 10x32 -> a.npy" in text
    quiet = _Terminal()
    progress = Progress(3, stream=quiet, quiet=True, verbose=True)
    progress.file_done(1.0, "a.wav")
    progress.file_failed("b.wav: bad")
    progress.close()
    assert quiet.getvalue() == "error: b.wav: bad\n"


def test_gpu_monitor_is_silent_off_gpu():
    monitor = GpuMonitor("cpu")
    assert monitor.batch() is None and monitor.summary() == {}


def test_long_pieces_go_in_smaller_batches_under_the_audio_cap():
    from types import SimpleNamespace

    from audio_embeddings.corpus.batching import BatchScheduler

    scheduler = BatchScheduler(SimpleNamespace(sample_rate_hz=16000, accepts_lengths=False), batch_size=8,
                               max_batch_seconds=60.0)
    assert scheduler.size_for(5 * 16000) == 8  # eight 5 s inputs fit
    assert scheduler.size_for(24 * 16000) == 2  # 20 s chunks with 2 s context on each side
    assert scheduler.size_for(100 * 16000) == 1  # never zero
    assert BatchScheduler(SimpleNamespace(sample_rate_hz=16000, accepts_lengths=False), batch_size=8).size_for(10 ** 9) == 8


# --- keys, stamps, locks and leftovers (the fault-hardening units; tests/test_faults.py runs them end to end) ---


def test_keys_are_normalised_and_never_leave_the_root(tmp_path):
    from audio_embeddings.corpus.discover import corpus_key

    root = tmp_path / "corpus"
    assert corpus_key(root / "a" / "." / "b" / ".." / "x.wav", root) == "a/x.wav"
    assert corpus_key(root / ".." / "up.wav", root) == "_abs/" + str(tmp_path / "up.wav").lstrip("/")
    assert corpus_key("/data/x.wav", root) == "_abs/data/x.wav" != corpus_key(root / "data" / "x.wav", root)
    assert not any(".." in corpus_key(p, root).split("/") for p in ("../../etc/passwd", "/x/../../y.wav"))


def test_a_folder_reached_twice_or_in_a_loop_is_reported_once(tmp_path):
    from audio_embeddings.corpus.discover import walk_directory

    _touch_wav(tmp_path / "r" / "real" / "a.wav")
    (tmp_path / "r" / "real" / "back").symlink_to(tmp_path / "r", target_is_directory=True)
    (tmp_path / "r" / "alias").symlink_to(tmp_path / "r" / "real", target_is_directory=True)
    errors = []
    assert walk_directory(tmp_path / "r", errors=errors) == [tmp_path / "r" / "real" / "a.wav"]
    assert sorted(Path(e.path).name for e in errors) == ["alias", "back"]
    assert "symbolic link loop" in next(e.reason for e in errors if e.path.endswith("back"))


def test_stamps_match_on_settings_and_input_and_say_what_changed(tmp_path):
    from audio_embeddings.corpus.stamps import (
        Stamper,
        input_stamp,
        settings_hash,
        stamp_difference,
    )

    wav = _touch_wav(tmp_path / "a.wav")
    h = settings_hash({"--model": "m", "--layers": None})
    assert h == settings_hash({"--layers": None, "--model": "m"}) != settings_hash({"--model": "n"})
    stored = input_stamp(wav, settings_hash=h)
    assert "sha256" in stored and stamp_difference(stored, input_stamp(wav, settings_hash=h)) is None
    assert stamp_difference(stored, input_stamp(wav, settings_hash="other")) == "were made with other settings"
    assert stamp_difference(None, stored).startswith("have no record")
    st = wav.stat()
    import os

    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10 ** 9))
    assert "modified" in stamp_difference(stored, input_stamp(wav, settings_hash=h, hash_below=0))
    assert Stamper(settings_hash=h).difference(stored, str(wav)) is None  # same bytes, only touched
    _touch_wav(wav, seconds=0.2)
    assert "size" in Stamper(settings_hash=h).difference(stored, str(wav))
    assert "error" in input_stamp(tmp_path / "gone.wav", settings_hash=h)


def test_a_corrupt_run_file_reads_as_absent_and_is_moved_aside(tmp_path):
    from audio_embeddings.corpus.stamps import read_run_config

    path = tmp_path / ".audio_embeddings_run.json"
    assert read_run_config(path) is None
    path.write_text('{"--model": "m"}')
    assert read_run_config(path) == {"--model": "m"}
    said = []
    path.write_text("[1, 2")
    assert read_run_config(path, warn=said.append) is None
    assert not path.exists() and (tmp_path / ".audio_embeddings_run.json.corrupt").read_text() == "[1, 2"
    assert len(said) == 1 and "not valid JSON" in said[0]


def test_locks_refuse_a_second_holder_and_other_shard_counts(tmp_path):
    from audio_embeddings.corpus.lock import RunLocked, acquire_run_lock

    with acquire_run_lock(tmp_path, shard_label="shard-0000-of-0002") as lock:
        assert lock.path.is_file() and lock.alone
        with pytest.raises(RunLocked, match=r"in use by another run \(pid \d+ on .*shard-0000-of-0002\)"):
            with acquire_run_lock(tmp_path, shard_label="shard-0000-of-0002", retries=0):
                pass
        with pytest.raises(RunLocked, match="with other shards"):
            with acquire_run_lock(tmp_path, shard_label="shard-0000-of-0001", retries=0):
                pass
        with acquire_run_lock(tmp_path, shard_label="shard-0001-of-0002") as other:
            assert not other.alone
    assert not lock.path.exists()


def test_only_stale_temporaries_are_removed(tmp_path):
    import os
    import time

    from audio_embeddings.atomic import atomic_path, clean_stale_temporaries

    old, fresh = tmp_path / "a" / ".x.npy.abcd1234.tmp", tmp_path / ".y.json.zzzz9999.tmp"
    old.parent.mkdir()
    for p in (old, fresh, tmp_path / ".x.done", tmp_path / "keep.tmp"):
        p.write_text("-")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert clean_stale_temporaries(tmp_path, older_than_s=3600) == [old]
    assert clean_stale_temporaries(tmp_path) == [fresh]
    assert (tmp_path / ".x.done").exists() and (tmp_path / "keep.tmp").exists()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "z.npy") as tmp:
        assert clean_stale_temporaries(tmp_path, older_than_s=3600) == [] and tmp.exists()
        raise RuntimeError


def test_tree_outputs_are_complete_only_when_whole_and_stamped(tmp_path):
    from types import SimpleNamespace

    from audio_embeddings.corpus.writers import OutputClash, TreeWriter

    result = SimpleNamespace(embeddings=np.ones((3, 2), np.float32), time_axis_s=np.arange(3.0), extras={},
                             sample_rate_hz=16000, n_samples=48000, frame_stride_s=1.0, window_s=1.0, chunking={})
    info = {"model_name": "m", "backend_info": {}, "backend_fields": {}, "started_at": "now"}
    writer = TreeWriter(tmp_path, formats=("npy",), run_info=info, corpus_keys=["a/x.wav", "a/x_codes.wav"])
    stamp = {"settings": "s", "size": 1, "mtime_ns": 1}
    writer.write("a/x.wav", result, input_path="x.wav", audio_info={}, stamp=stamp)
    assert writer.is_complete("a/x.wav") and writer.is_complete("a/x.wav", stamp)
    assert not writer.is_complete("a/x.wav", {**stamp, "settings": "t"})
    (tmp_path / "a" / "x.npy").write_bytes((tmp_path / "a" / "x.npy").read_bytes()[:-4])  # truncated
    assert not writer.is_complete("a/x.wav") and not writer.is_complete("a/x.wav", stamp)
    with pytest.raises(OutputClash, match="x_codes.npy would overwrite the outputs of a/x_codes.wav"):
        writer.write("a/x.wav", SimpleNamespace(**{**vars(result), "extras": {"codes": np.zeros(3)}}),
                     input_path="x.wav", audio_info={})


def test_merge_follows_the_newest_sharding(tmp_path):
    import time

    for count in (3, 2):
        for i in range(count):
            report = RunReport(tmp_path, shard=Shard(i, count), context={"model": "m"})
            report.files_total = 1
            report.done(1.0)
            report.write()
        time.sleep(0.01)
    merged = merge_reports(tmp_path)
    assert merged["shards_merged"] == [0, 1] and merged["files_done"] == 2


def test_an_output_folder_is_checked_without_being_created(tmp_path):
    from audio_embeddings.atomic import NotWritableError, check_writable

    assert check_writable(tmp_path / "new" / "out", create=False) == tmp_path / "new" / "out"
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(NotWritableError, match="cannot create it"):
        check_writable(tmp_path / "file" / "out", create=False)


def test_the_decoder_hashes_the_bytes_it_decodes_and_the_stamp_uses_that_hash(tmp_path):
    import hashlib
    import os

    import soundfile as sf

    from audio_embeddings.corpus.stamps import Stamper

    path = tmp_path / "x.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_item(LoadTask("x.wav", str(path), 16000, hash_below_bytes=2 ** 20))
    assert loaded.error is None and loaded.audio_info["input_sha256"] == digest
    assert "input_sha256" not in load_item(LoadTask("x.wav", str(path), 16000)).audio_info  # not asked for
    assert "input_sha256" not in load_item(LoadTask("x.wav", str(path), 16000, hash_below_bytes=100)).audio_info

    stamper = Stamper(settings_hash="s")
    stamper.quick(str(path))
    assert stamper.full(str(path), sha256=digest)["sha256"] == digest  # taken as given, not read again
    assert stamper.full(str(path))["sha256"] == digest
    with open(path, "ab") as fh:  # edited after it was decoded: the earlier state, without a hash (redo next run)
        fh.write(b"\0\0")
    os.utime(path, ns=(1, 1))
    edited = stamper.full(str(path), sha256=digest)
    assert "sha256" not in edited and edited["size"] == path.stat().st_size - 2
