"""B4 over utterance lists: Kaldi data directories, and the ``--vad`` pre-pass that turns any input into one.

A Kaldi data directory runs as any corpus through the shared run (the discovery makes one item per
utterance, cut to its segment: :func:`~audio_embeddings.corpus.discover.discover`); afterwards
:func:`kaldi_final_files` writes its Kaldi outputs from the stored vectors.

``--vad``: :func:`vad_prepass` runs the voice-activity detector over each utterance of the input
(a Kaldi data directory, or the items of a folder or manifest: :func:`utterances_from`) and writes
a Kaldi data directory, ``OUT/vad_segments/<name>/`` (``wav.scp``, ``utt2spk``, ``segments``),
which the shared run then takes as its input exactly as a user's data directory: the engine cuts
the segments, batches, resumes, locks, reports and shards as for any corpus. In it

* an utterance up to ``max_segment_s`` long is *trimmed*: one segment under its own id, from the
  start of its first speech region to the end of its last (silences inside are kept: a segment is
  one cut; today's WeSpeaker CLI joins the regions instead);
* a longer recording is *segmented*: one segment per speech region, ids ``<utt>-<start cs>-<end cs>``
  (Kaldi's centisecond sub-segment convention), times relative to the recording;
* an utterance whose audio cannot be read is listed whole (the run then reports it as failed, with
  the decoder's reason); one without speech is left out and named in ``no_speech.txt``.

The pre-pass is resumable: each utterance's result is appended to ``records.<shard>.jsonl`` with the
input's stamp (size, time and content hash, or the command) and the VAD settings, and an utterance
whose input stamp and settings match a record is not run again. Shards run their own share first,
then the rest not yet recorded by another shard, so each shard writes the same data directory.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

import numpy as np

from . import audio, kaldi
from .corpus.discover import discover
from .corpus.stamps import input_stamp, settings_hash
from .outputs.atomic import write_text_atomic
from .speakers import UTTERANCE_DIR, Utterance, read_utterances
from .vad import VAD_RATE_HZ, VadSettings, load_detector, speech_regions

#: The pre-pass's folder under ``--output-dir``.
VAD_DIR = "vad_segments"


def utterances_from(inputs: Sequence[str], *, allow_pipes: bool = False, **discover_options: Any
                    ) -> tuple[str, list[kaldi.KaldiUtterance]]:
    """``(dataset name, utterances sorted by id)`` of a Kaldi data directory or of any corpus input.

    Items of a folder or manifest get B4's ids (``dataset_speaker_utterance``) and speakers
    (``dataset_speaker``) from their keys; their dataset name is the input's (folder or manifest) name.
    """
    if len(inputs) == 1 and kaldi.is_data_dir(inputs[0]):
        data = kaldi.read_data_dir(inputs[0], allow_pipes=allow_pipes)
        return Path(inputs[0]).resolve().name, list(data.utterances)
    corpus = discover(inputs, **discover_options)
    out = []
    for item in corpus.items:
        u = Utterance.from_key(item.key)
        out.append(kaldi.KaldiUtterance(u.id, u.id, item.path, False, u.speaker_key))
    name = Path(inputs[0]).stem if len(inputs) == 1 and not Path(inputs[0]).is_dir() else Path(corpus.root).resolve().name
    return name or "utterances", sorted(out, key=lambda x: x.utt_id)


def segment_id(utt_id: str, start_s: float, end_s: float) -> str:
    """``<utt>-<start>-<end>`` in centiseconds, 7 digits each (Kaldi's sub-segment ids)."""
    return f"{utt_id}-{int(round(start_s * 100)):07d}-{int(round(end_s * 100)):07d}"


def vad_data_dir(output_dir: str | Path, dataset: str) -> Path:
    """Where the pre-pass writes its data directory: ``<output_dir>/vad_segments/<dataset>``."""
    return Path(output_dir) / VAD_DIR / dataset


def _utterance_stamp(utt: kaldi.KaldiUtterance, vad: VadSettings, channel: int | None) -> dict[str, Any]:
    """What a pre-pass record must match: the input's stamp (with its cut and command) and the VAD settings."""
    fields: dict[str, Any] = {"recording": utt.recording_id, "speaker": utt.speaker}
    if utt.start_s is not None:
        fields["segment"] = [float(utt.start_s), None if utt.end_s is None else float(utt.end_s)]
    if utt.is_command:
        fields["command"] = utt.source
    return input_stamp(utt.source if not utt.is_command else "", item=fields,
                       settings_hash=settings_hash({"vad": vad.describe(), "channel": channel,
                                                    "rate_hz": VAD_RATE_HZ}))


def _read_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every whole line of ``records.*.jsonl`` (a line cut short by a stop is ignored), by utterance id."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("records.*.jsonl")):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            try:
                rec = json.loads(line)
                records[rec["utt"]] = rec
            except (ValueError, KeyError, TypeError):
                continue
    return records


def vad_prepass(utterances: Sequence[kaldi.KaldiUtterance], *, output_dir: str | Path, dataset: str,
                vad: VadSettings, channel: int | None = None, mine: Sequence[kaldi.KaldiUtterance] | None = None,
                shard_label: str = "whole", resampler: str = "soxr-hq",
                on_utterance: Callable[[str, str], None] | None = None) -> Path:
    """Run the VAD over ``utterances`` and write the data directory the run takes as input (module docstring).

    Parameters
    ----------
    utterances : sequence of KaldiUtterance
        Every utterance of the input (each shard writes the whole data directory).
    output_dir : path-like
        B4's ``--output-dir``: the data directory goes to ``vad_segments/<dataset>/`` in it.
    dataset : str
        The data directory's folder name (the first level of the run's keys).
    vad : VadSettings
    channel : int, optional
        Keep one channel instead of averaging (as the run does).
    mine : sequence of KaldiUtterance, optional
        This shard's share, run first (default: all of them).
    shard_label : str
        Names this process's records file.
    on_utterance : callable, optional
        ``(utterance id, what happened)`` after each utterance run now ("trimmed", "segmented",
        "no speech" or the reason it could not be read).

    Returns
    -------
    Path
        The data directory.
    """
    folder = vad_data_dir(output_dir, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    records = _read_records(folder)
    own = folder / f"records.{shard_label}.jsonl"
    detector = None
    cache: tuple[tuple[str, bool], np.ndarray] | None = None
    first = list(mine) if mine is not None else list(utterances)
    first_ids = {u.utt_id for u in first}
    queue = [(u, True) for u in first] + [(u, False) for u in utterances if u.utt_id not in first_ids]
    reread = mine is not None
    with open(own, "a", encoding="utf-8") as log:
        for utt, is_mine in queue:
            if not is_mine and reread:  # the others' share: take what other shards recorded meanwhile
                records.update(_read_records(folder))
                reread = False
            stamp = _utterance_stamp(utt, vad, channel)
            if records.get(utt.utt_id, {}).get("stamp") == stamp and "error" not in stamp:
                continue
            rec: dict[str, Any] = {"utt": utt.utt_id, "stamp": stamp}
            try:
                if cache is None or cache[0] != (utt.source, utt.is_command):
                    loaded = kaldi.load_recording(utt, sample_rate_hz=VAD_RATE_HZ, channel=channel,
                                                  resampler=resampler).samples
                    cache = ((utt.source, utt.is_command), loaded)
                samples = kaldi.cut(cache[1], utt, sample_rate_hz=VAD_RATE_HZ)
                detector = load_detector() if detector is None else detector
                regions = speech_regions(samples, sample_rate_hz=VAD_RATE_HZ, settings=vad, detector=detector)
                offset = utt.start_s or 0.0
                duration_s = samples.shape[0] / VAD_RATE_HZ
                if not len(regions):
                    rec.update(kind="no speech", segments=[])
                elif duration_s <= vad.max_segment_s:
                    rec.update(kind="trimmed", segments=[[utt.utt_id, offset + regions[0, 0], offset + regions[-1, 1]]])
                else:
                    rec.update(kind="segmented", segments=[[segment_id(utt.utt_id, offset + s, offset + e),
                                                            offset + s, offset + e] for s, e in regions])
            except (audio.AudioError, kaldi.KaldiError, ValueError, OSError) as exc:
                # listed whole: the run decodes it again and reports it as failed, with the reason
                rec.update(kind="unreadable", reason=" ".join(str(exc).split()), segments=[])
            records[utt.utt_id] = rec
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if on_utterance is not None:
                on_utterance(utt.utt_id, rec.get("reason") or rec["kind"])
    _write_data_dir(folder, utterances, records, vad)
    return folder


def _write_data_dir(folder: Path, utterances: Sequence[kaldi.KaldiUtterance], records: dict[str, dict[str, Any]],
                    vad: VadSettings) -> None:
    """``wav.scp``, ``utt2spk``, ``segments``, ``no_speech.txt`` and ``vad.json`` of the pre-pass (atomically)."""
    wav: dict[str, str] = {}
    segments: list[tuple[str, str, float, float]] = []
    spk: list[tuple[str, str]] = []
    silent: list[str] = []
    for utt in utterances:
        rec = records[utt.utt_id]
        wav[utt.recording_id] = f"{utt.source} |" if utt.is_command else os.path.abspath(utt.source)
        if rec["kind"] == "unreadable":
            start = utt.start_s or 0.0
            segments.append((utt.utt_id, utt.recording_id, start, -1.0 if utt.end_s is None else utt.end_s))
            spk.append((utt.utt_id, utt.speaker))
        elif rec["kind"] == "no speech":
            silent.append(utt.utt_id)
        for vid, s, e in rec["segments"]:
            segments.append((vid, utt.recording_id, float(s), float(e)))
            spk.append((vid, utt.speaker))
    used = {r for _, r, _, _ in segments}
    write_text_atomic(folder / "wav.scp", "".join(f"{r} {p}\n" for r, p in sorted(wav.items()) if r in used))
    write_text_atomic(folder / "utt2spk", "".join(f"{u} {s}\n" for u, s in sorted(spk)))
    kaldi.write_segments(folder / "segments", sorted(segments))
    write_text_atomic(folder / "no_speech.txt", "".join(f"{u}\n" for u in silent))
    write_text_atomic(folder / "vad.json", json.dumps({"vad": vad.describe(), "utterances": len(utterances),
                                                       "segments": len(segments), "no_speech": len(silent)},
                                                      indent=2) + "\n")


def kaldi_final_files(output_dir: str | Path, final_dir: str | Path, *, data_dir: str | Path, allow_pipes: bool,
                      ark: bool) -> int:
    """The Kaldi outputs of a data-directory run, from the stored utterance vectors (after
    :func:`~audio_embeddings.speakers.finalize`, in the process that merged the shards).

    Writes ``segments`` and ``segments.csv`` (each stored utterance of ``data_dir``: id, recording,
    start and end in seconds) and, with ``ark``, ``embeddings.ark/.scp`` (keyed by utterance id) and
    ``spk_embeddings.ark/.scp`` (speaker means, keyed by speaker id) in ``final_dir``.

    Returns
    -------
    int
        Segments written.

    Raises
    ------
    kaldi.KaldiError
        The data directory cannot be read again.
    """
    data = kaldi.read_data_dir(data_dir, allow_pipes=allow_pipes)
    by_id = {u.utt_id: u for u in data.utterances}
    final = Path(final_dir)
    vectors: list[tuple[str, np.ndarray]] = []
    rows: list[tuple[str, str, float, float]] = []
    speakers: dict[str, list[np.ndarray]] = {}
    for utt, _, vec, duration_s in _stored_utterances(output_dir):
        u = by_id.get(utt.utterance_id)
        if u is None:  # not of this data directory (an older run's)
            continue
        vectors.append((u.utt_id, vec))
        speakers.setdefault(utt.speaker_id, []).append(vec)
        start = u.start_s or 0.0
        rows.append((u.utt_id, u.recording_id, start, start + duration_s))
    rows.sort()
    kaldi.write_segments(final / "segments", rows)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "recording", "start_s", "end_s"])
    w.writerows((u, r, f"{s:.3f}", f"{e:.3f}") for u, r, s, e in rows)
    write_text_atomic(final / "segments.csv", buf.getvalue())
    if ark:
        kaldi.write_vectors(final / "embeddings.ark", final / "embeddings.scp", sorted(vectors, key=lambda kv: kv[0]))
        kaldi.write_vectors(final / "spk_embeddings.ark", final / "spk_embeddings.scp",
                            [(s, np.mean(np.stack(v), axis=0, dtype=np.float64)) for s, v in sorted(speakers.items())])
    return len(rows)


def _stored_utterances(output_dir: str | Path):
    """(utterance, path, float32 [D], duration in s) of every stored stage-1 vector, sorted by key."""
    for utt, path, vec in read_utterances(output_dir):
        npz = Path(output_dir) / UTTERANCE_DIR / (PurePosixPath(utt.key).with_suffix("").as_posix() + ".npz")
        with np.load(npz, allow_pickle=False) as data:
            duration_s = float(data["duration_s"]) if "duration_s" in data.files else 0.0
        yield utt, path, vec, duration_s


__all__ = ["VAD_DIR", "kaldi_final_files", "segment_id", "utterances_from", "vad_data_dir", "vad_prepass"]
