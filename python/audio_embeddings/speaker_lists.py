"""B4 over utterance lists: Kaldi data directories and voice-activity segments, with Kaldi ``ark``/``scp`` out.

:func:`utterances_from` turns an input into :class:`~audio_embeddings.kaldi.KaldiUtterance` s: a
Kaldi data directory (:mod:`audio_embeddings.kaldi`), or the items of a folder or manifest
(:mod:`audio_embeddings.corpus.discover`) when only ``--vad`` brings them here.
:func:`embed_utterances` embeds this process's share of them, one utterance at a time, into B4's
stage-1 files (:class:`~audio_embeddings.speakers.SpeakerWriter`, resumable: an utterance is done
when its ``.npz`` holds the same stamp: model, source, cut and VAD settings). With VAD, an
utterance up to ``max_segment_s`` long is trimmed to its speech (one vector, its own id); a longer
recording is cut into its speech regions, one vector each, ids ``<utt>-<start cs>-<end cs>``
(Kaldi's centisecond convention). Each process writes its ``parts/embeddings.<shard>.ark/.scp``
and ``parts/segments.<shard>``; :func:`finalize_lists` then writes B4's final files
(:func:`~audio_embeddings.speakers.finalize`) and, in the final folder, ``embeddings.scp`` (the
shards' scp merged; a whole run's ``embeddings.ark`` beside it), ``spk_embeddings.ark/.scp``
(speaker means, keyed by speaker id) and the segments (Kaldi ``segments`` and ``segments.csv``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

import numpy as np

from . import audio, kaldi
from .corpus.discover import discover
from .outputs.atomic import write_text_atomic
from .pipeline import embed_audio
from .speakers import SpeakerWriter, Utterance, finalize, read_utterances, utterance_vector
from .vad import VadSettings, keep_speech, load_detector, speech_regions

PARTS_DIR = "parts"
#: The suffix of stage-1 keys of this module (so ``Utterance.from_key`` keeps dots in Kaldi ids).
KEY_SUFFIX = ".utt"


@dataclass
class ListResult:
    """What :func:`embed_utterances` did: ids embedded now, ids already done, and ``(id, reason)`` failures."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def utterances_from(inputs: Sequence[str], *, allow_pipes: bool = False, **discover_options: Any
                    ) -> tuple[str, list[kaldi.KaldiUtterance]]:
    """``(dataset name, utterances sorted by id)`` of a Kaldi data directory or of any corpus input.

    Items of a folder or manifest get B4's ids (``dataset_speaker_utterance``) and speakers
    (``dataset_speaker``) from their keys.
    """
    if len(inputs) == 1 and kaldi.is_data_dir(inputs[0]):
        data = kaldi.read_data_dir(inputs[0], allow_pipes=allow_pipes)
        return Path(inputs[0]).resolve().name, list(data.utterances)
    corpus = discover(inputs, **discover_options)
    out = []
    for item in corpus.items:
        u = Utterance.from_key(item.key)
        out.append(kaldi.KaldiUtterance(u.id, u.id, item.path, False, u.speaker_key))
    return "", sorted(out, key=lambda x: x.utt_id)


def stage_key(dataset: str, speaker: str, vector_id: str) -> str:
    """The stage-1 key of one vector: ``dataset/speaker/id.utt`` (empty parts left out)."""
    return PurePosixPath(*[p for p in (dataset, speaker) if p], vector_id + KEY_SUFFIX).as_posix()


def segment_id(utt_id: str, start_s: float, end_s: float) -> str:
    """``<utt>-<start>-<end>`` in centiseconds, 7 digits each (Kaldi's sub-segment ids)."""
    return f"{utt_id}-{int(round(start_s * 100)):07d}-{int(round(end_s * 100)):07d}"


def _stamp(utt: kaldi.KaldiUtterance, model: str, vad: VadSettings | None) -> dict[str, Any]:
    return {"model": model, "source": utt.source, "is_command": utt.is_command, "start_s": utt.start_s,
            "end_s": utt.end_s, "vad": vad.describe() if vad is not None else None}


class _Result:
    """A tiny stand-in for the pipeline's result (what :meth:`SpeakerWriter.write` reads)."""

    def __init__(self, vector: np.ndarray):
        self.extras = {"utterance_embedding": vector}
        self.embeddings = vector[None, :]


def embed_utterances(backend: Any, utterances: Sequence[kaldi.KaldiUtterance], *, output_dir: str | Path,
                     dataset: str, model_name: str, shard_label: str = "whole", vad: VadSettings | None = None,
                     channel: int | None = None, resume: bool = True, batch_size: int = 4,
                     on_item: Callable[[str, str | None], None] | None = None) -> ListResult:
    """Embed ``utterances`` (this process's share) into ``output_dir`` (see the module docstring).

    Parameters
    ----------
    backend : Backend
        A loaded speaker model.
    utterances : sequence of KaldiUtterance
    output_dir : path-like
        B4's ``--output-dir``: stage-1 files under ``utterances/``, shard parts under ``parts/``.
    dataset, model_name : str
        The first level of the stage-1 keys, and the model recorded in each stamp.
    shard_label : str
        Names this process's part files.
    vad : VadSettings, optional
        Trim or segment with a voice-activity detector.
    channel : int, optional
        Keep one channel instead of averaging.
    resume : bool
        Skip vectors whose ``.npz`` holds the same stamp.
    on_item : callable, optional
        Called with ``(utterance id, error or None)`` after each utterance.
    """
    writer = SpeakerWriter(output_dir)
    result = ListResult()
    detector = load_detector() if vad is not None else None
    rate = int(backend.sample_rate_hz)
    parts = Path(output_dir) / PARTS_DIR
    vectors: list[tuple[str, np.ndarray]] = []
    segments: list[tuple[str, str, float, float]] = []
    cache: tuple[tuple[str, bool], np.ndarray] | None = None
    # recordings in turn (segments of one recording share one decode); ids stay this shard's
    for utt in sorted(utterances, key=lambda u: (u.recording_id, u.start_s or 0.0, u.utt_id)):
        stamp = _stamp(utt, model_name, vad)
        key = stage_key(dataset, utt.speaker, utt.utt_id)
        done_before = resume and vad is None and writer.is_complete(key, stamp)
        error = None
        try:
            if done_before:
                vectors.append((utt.utt_id, _stored(writer, key)))
                result.skipped.append(utt.utt_id)
                continue
            if cache is None or cache[0] != (utt.source, utt.is_command):
                cache = ((utt.source, utt.is_command),
                         kaldi.load_recording(utt, sample_rate_hz=rate, channel=channel,
                                              resampler=getattr(backend, "resampler", "soxr-hq")).samples)
            samples = kaldi.cut(cache[1], utt, sample_rate_hz=rate)
            offset = utt.start_s or 0.0
            pieces: list[tuple[str, np.ndarray, float, float]]
            if vad is None:
                pieces = [(utt.utt_id, samples, offset, offset + samples.shape[0] / rate)]
            else:
                regions = speech_regions(samples, sample_rate_hz=rate, settings=vad, detector=detector)
                if not len(regions):
                    raise ValueError("no speech found by the VAD")
                if samples.shape[0] / rate <= vad.max_segment_s:
                    pieces = [(utt.utt_id, keep_speech(samples, regions, sample_rate_hz=rate),
                               offset + regions[0, 0], offset + regions[-1, 1])]
                else:
                    pieces = [(segment_id(utt.utt_id, offset + s, offset + e),
                               samples[int(round(s * rate)):int(round(e * rate))], offset + s, offset + e)
                              for s, e in regions]
            for vid, piece, start, end in pieces:
                vkey = stage_key(dataset, utt.speaker, vid)
                pstamp = {**stamp, "id": vid}
                if resume and vad is not None and writer.is_complete(vkey, pstamp):
                    vec = _stored(writer, vkey)
                    result.skipped.append(vid)
                else:
                    if piece.shape[0] < int(backend.min_samples):
                        raise ValueError(f"{vid}: {piece.shape[0] / rate * 1000:.0f} ms of audio; the model needs "
                                         f"{backend.min_samples / rate * 1000:.0f} ms")
                    clip = audio.Audio(np.ascontiguousarray(piece, dtype=np.float32), rate, rate, 1, channel,
                                       f"{utt.source}:{start:.3f}-{end:.3f}")
                    vec = utterance_vector(embed_audio(backend, clip, batch_size=batch_size))
                    writer.write(vkey, _Result(vec), input_path=utt.source,
                                 audio_info={"duration_s": piece.shape[0] / rate}, stamp=pstamp)
                    result.done.append(vid)
                vectors.append((vid, vec))
                segments.append((vid, utt.recording_id, start, end))
        except (audio.AudioError, kaldi.KaldiError, ValueError, OSError) as exc:
            error = " ".join(str(exc).split())
            error = error if utt.utt_id in error or utt.source in error else f"{utt.utt_id}: {error}"
            result.failed.append((utt.utt_id, error))
        if on_item is not None:
            on_item(utt.utt_id, error)
    vectors.sort(key=lambda kv: kv[0])
    segments.sort()
    kaldi.write_vectors(parts / f"embeddings.{shard_label}.ark", parts / f"embeddings.{shard_label}.scp", vectors)
    kaldi.write_segments(parts / f"segments.{shard_label}", segments)
    if result.failed:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["utterance", "reason"])
        w.writerows(result.failed)
        write_text_atomic(parts / f"failures.{shard_label}.csv", buf.getvalue())
    else:
        (parts / f"failures.{shard_label}.csv").unlink(missing_ok=True)
    return result


def _stored(writer: SpeakerWriter, key: str) -> np.ndarray:
    with np.load(writer._path(key), allow_pickle=False) as data:
        return np.asarray(data["embedding"], dtype=np.float32)


def finalize_lists(output_dir: str | Path, final_dir: str | Path, *, shard_labels: Sequence[str],
                   ark: bool, provenance: dict[str, Any]) -> dict[str, Any]:
    """B4's final files, plus the merged Kaldi outputs and segments (see the module docstring).

    Parameters
    ----------
    shard_labels : sequence of str
        The part files to merge (``["whole"]`` for an unsharded run).
    ark : bool
        Write ``embeddings.scp`` (and a whole run's ``embeddings.ark``) and ``spk_embeddings.ark/.scp``.

    Raises
    ------
    FileNotFoundError
        A shard's part files are missing (that shard has not finished).
    """
    out, final = Path(output_dir), Path(final_dir)
    parts = out / PARTS_DIR
    missing = [label for label in shard_labels if not (parts / f"embeddings.{label}.scp").is_file()]
    if missing:
        raise FileNotFoundError(f"{parts}: no part files of {', '.join(missing)} (run those shards first)")
    summary = finalize(out, final, provenance=provenance)
    rows = []
    for label in shard_labels:
        rows += [(u, *rest.split()) for _, u, rest in kaldi.read_table(parts / f"segments.{label}")] \
            if (parts / f"segments.{label}").stat().st_size else []
    rows.sort()
    kaldi.write_segments(final / "segments", [(u, r, float(s), float(e)) for u, r, s, e in rows])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "recording", "start_s", "end_s"])
    w.writerows(rows)
    write_text_atomic(final / "segments.csv", buf.getvalue())
    if ark:
        if list(shard_labels) == ["whole"]:
            vectors = kaldi.read_vectors(parts / "embeddings.whole.scp")
            kaldi.write_vectors(final / "embeddings.ark", final / "embeddings.scp", sorted(vectors.items()))
        else:
            kaldi.merge_scp([parts / f"embeddings.{label}.scp" for label in shard_labels], final / "embeddings.scp")
        speakers: dict[str, list[np.ndarray]] = {}
        for utt, _, vec in read_utterances(out):
            speakers.setdefault(utt.speaker_id, []).append(vec)
        kaldi.write_vectors(final / "spk_embeddings.ark", final / "spk_embeddings.scp",
                            [(s, np.mean(np.stack(v), axis=0, dtype=np.float64)) for s, v in sorted(speakers.items())])
    write_text_atomic(final / "summary.json", json.dumps({**summary, "segments": len(rows)}, indent=2,
                                                         default=str) + "\n")
    return summary


__all__ = ["KEY_SUFFIX", "ListResult", "PARTS_DIR", "embed_utterances", "finalize_lists", "segment_id", "stage_key",
           "utterances_from"]
