"""Kaldi data directories in, Kaldi ``ark``/``scp`` embeddings out.

A Kaldi data directory is a folder holding ``wav.scp`` (``utt-id path`` or ``utt-id command |``)
and, when present, ``utt2spk``, ``spk2utt``, ``segments`` (``utt-id reco-id start end``, seconds;
an end of -1 means the end of the recording) and ``reco2dur``. :func:`read_data_dir` turns it into
:class:`KaldiUtterance` s: utterance ids from ``segments`` (or ``wav.scp``), speakers from
``utt2spk`` (else ``spk2utt``; an utterance of neither is its own speaker, as in Kaldi's
``utt2spk`` identity convention). ``wav.scp`` entries that are commands run a program, so they
are refused unless ``allow_pipes``; then :func:`load_recording` runs them without a shell when
the command has no shell syntax, and with ``/bin/sh -c`` otherwise.

The data directory is read by the corpus discovery (:func:`~audio_embeddings.corpus.discover.read_data_dir`,
re-exported here), which turns it into corpus items cut to their segments, and the commands are run
by the corpus loader; both are named here too.

Vectors are written and read with ``kaldiio`` (the reader/writer WeSpeaker and ESPnet use):
:func:`write_vectors` writes an ``ark`` and its ``scp`` (float32 vectors, Kaldi's binary
``FV`` token, what ``copy-vector`` reads), :func:`merge_scp` joins the ``scp`` of several shards.
Relative ``wav.scp`` paths are taken from the current folder, as Kaldi does.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import audio
from .corpus.discover import is_data_dir, KaldiDataDir, KaldiError, KaldiUtterance, read_data_dir, read_table
from .corpus.loader import COMMAND_TIMEOUT_S, command_argv, decode_bytes, run_command, SHELL_SYNTAX
from .outputs.atomic import atomic_path, write_text_atomic


def load_recording(utt: KaldiUtterance, *, sample_rate_hz: int, channel: int | None = None,
                   resampler: str = "soxr-hq") -> audio.Audio:
    """A recording of ``utt`` (whole, not cut) as mono float32 at ``sample_rate_hz``.

    Runs read the recordings through the corpus loader
    (:func:`~audio_embeddings.corpus.loader.load_item`); this is for a single utterance.

    Raises
    ------
    KaldiError
        A command that fails, times out or prints no readable audio.
    audio.AudioError
        An audio file that cannot be read.
    """
    if not utt.is_command:
        return audio.load(utt.source, sample_rate_hz=sample_rate_hz, channel=channel, resampler=resampler)
    name = f"{utt.recording_id} ({utt.source} |)"
    try:
        data, rate = decode_bytes(run_command(utt.source, name=name, timeout_s=COMMAND_TIMEOUT_S), name=name)
    except audio.AudioError as exc:
        raise KaldiError(str(exc)) from None
    return audio.prepare(data, rate, target_rate_hz=sample_rate_hz, channel=channel, name=name, resampler=resampler)


def cut(samples: np.ndarray, utt: KaldiUtterance, *, sample_rate_hz: int, tolerance_s: float = 0.05) -> np.ndarray:
    """The ``[start_s, end_s)`` part of a recording's samples (the whole of it without a segment).

    Raises
    ------
    KaldiError
        The segment starts after the recording ends or ends more than ``tolerance_s`` past it.
    """
    if utt.start_s is None:
        return samples
    duration_s = samples.shape[0] / sample_rate_hz
    end_s = duration_s if utt.end_s is None else utt.end_s
    if utt.start_s >= duration_s or end_s > duration_s + tolerance_s:
        raise KaldiError(f"{utt.utt_id}: segment {utt.start_s:g}-{end_s:g} s is outside recording "
                         f"{utt.recording_id} ({duration_s:.3f} s)")
    return samples[int(round(utt.start_s * sample_rate_hz)):int(round(min(end_s, duration_s) * sample_rate_hz))]


def write_vectors(ark_path: str | Path, scp_path: str | Path, vectors: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write float32 vectors as a Kaldi ``ark`` and its ``scp`` (through ``kaldiio``), atomically.

    The ``scp`` names the ``ark`` by its absolute path, so ``kaldiio.load_scp`` and Kaldi's tools
    read it from any folder (move both and the ``scp`` must be rewritten).

    Parameters
    ----------
    ark_path, scp_path : path-like
        The two files written.
    vectors : iterable of (str, ndarray)
        ``(key, float [D])``; keys must hold no white space.

    Returns
    -------
    int
        Vectors written.
    """
    import kaldiio  # deferred: only ark/scp outputs need it

    ark_path, scp_path = Path(ark_path).resolve(), Path(scp_path)
    n = 0
    with atomic_path(ark_path, suffix=".ark") as tmp_ark:
        buf = io.StringIO()
        with open(tmp_ark, "wb") as ark:
            for key, vec in vectors:
                if not key or any(c.isspace() for c in key):
                    raise KaldiError(f"{key!r}: Kaldi keys cannot be empty or hold white space")
                offset = ark.tell()
                kaldiio.save_ark(ark, {key: np.asarray(vec, dtype=np.float32).reshape(-1)})
                # the scp names the byte after "key " (what kaldiio's WriteHelper writes)
                buf.write(f"{key} {ark_path}:{offset + len(key.encode()) + 1}\n")
                n += 1
        write_text_atomic(scp_path, buf.getvalue())
    return n


def merge_scp(parts: Sequence[str | Path], output: str | Path) -> int:
    """Join the ``scp`` files of several shards into one, sorted by key; returns the number of entries.

    Raises
    ------
    KaldiError
        A key in two parts (the shards overlapped).
    """
    lines: dict[str, str] = {}
    for part in parts:
        for n, key, rest in read_table(part):
            if key in lines:
                raise KaldiError(f"{part} line {n}: {key} is also in another shard's scp")
            lines[key] = f"{key} {rest}"
    write_text_atomic(output, "".join(lines[k] + "\n" for k in sorted(lines)))
    return len(lines)


def read_vectors(path: str | Path) -> dict[str, np.ndarray]:
    """Every vector of an ``scp`` or ``ark`` (``kaldiio``), float32 [D] by key."""
    import kaldiio  # deferred: only ark/scp inputs need it

    p = Path(path)
    try:
        table = kaldiio.load_scp(str(p)) if p.suffix == ".scp" else kaldiio.load_ark(str(p))
        return {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in table.items()}
    except (OSError, ValueError) as exc:
        raise KaldiError(f"{p}: cannot read as Kaldi {p.suffix[1:] or 'ark'} ({exc})") from None


def write_segments(path: str | Path, rows: Iterable[tuple[str, str, float, float]]) -> None:
    """A Kaldi ``segments`` file: ``utt-id reco-id start end`` (seconds, 3 decimals), atomically."""
    write_text_atomic(path, "".join(f"{u} {r} {s:.3f} {e:.3f}\n" for u, r, s, e in rows))


__all__ = ["COMMAND_TIMEOUT_S", "SHELL_SYNTAX", "KaldiDataDir", "KaldiError", "KaldiUtterance", "command_argv", "cut",
           "is_data_dir", "load_recording", "merge_scp", "read_data_dir", "read_table", "read_vectors",
           "write_segments", "write_vectors"]
