"""Kaldi data directories in, Kaldi ``ark``/``scp`` embeddings out.

A Kaldi data directory is a folder holding ``wav.scp`` (``utt-id path`` or ``utt-id command |``)
and, when present, ``utt2spk``, ``spk2utt``, ``segments`` (``utt-id reco-id start end``, seconds;
an end of -1 means the end of the recording) and ``reco2dur``. :func:`read_data_dir` turns it into
:class:`KaldiUtterance` s: utterance ids from ``segments`` (or ``wav.scp``), speakers from
``utt2spk`` (else ``spk2utt``; an utterance of neither is its own speaker, as in Kaldi's
``utt2spk`` identity convention). ``wav.scp`` entries that are commands run a program, so they
are refused unless ``allow_pipes``; then :func:`load_recording` runs them without a shell when
the command has no shell syntax, and with ``/bin/sh -c`` otherwise.

Vectors are written and read with ``kaldiio`` (the reader/writer WeSpeaker and ESPnet use):
:func:`write_vectors` writes an ``ark`` and its ``scp`` (float32 vectors, Kaldi's binary
``FV`` token, what ``copy-vector`` reads), :func:`merge_scp` joins the ``scp`` of several shards.
Relative ``wav.scp`` paths are taken from the current folder, as Kaldi does.
"""

from __future__ import annotations

import io
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import audio
from .outputs.atomic import atomic_path, write_text_atomic

#: Characters that need a shell: a command with any of them runs under ``/bin/sh -c``.
SHELL_SYNTAX = set("|&;<>()$`*?[]{}~\\\"'\n")
#: Longest a ``wav.scp`` command may run (seconds).
COMMAND_TIMEOUT_S = 600.0


class KaldiError(ValueError):
    """A Kaldi data directory, ``wav.scp`` command or ``ark``/``scp`` that cannot be used (one line)."""


@dataclass(frozen=True)
class KaldiUtterance:
    """One utterance of a data directory.

    Attributes
    ----------
    utt_id : str
        Utterance id (the ``segments`` id, else the ``wav.scp`` id).
    recording_id : str
        The ``wav.scp`` id it is cut from.
    source : str
        The recording's path, or its command without the final ``|``.
    is_command : bool
        ``source`` is a command whose standard output is the audio.
    speaker : str
        From ``utt2spk``/``spk2utt``; the utterance id itself when neither lists it.
    start_s, end_s : float or None
        The cut in seconds (``segments``); None for the whole recording, ``end_s`` None: to its end.
    """

    utt_id: str
    recording_id: str
    source: str
    is_command: bool
    speaker: str
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True)
class KaldiDataDir:
    """A parsed data directory: ``path``, its utterances sorted by id, and whether it had ``segments``."""

    path: Path
    utterances: tuple[KaldiUtterance, ...]
    has_segments: bool


def is_data_dir(path: str | Path) -> bool:
    """``path`` is a folder holding a ``wav.scp``."""
    p = Path(path)
    return p.is_dir() and (p / "wav.scp").is_file()


def read_table(path: str | Path, *, min_fields: int = 2) -> list[tuple[int, str, str]]:
    """``(line number, first field, rest of the line)`` of a Kaldi text table (blank lines skipped).

    Raises
    ------
    KaldiError
        Unreadable, not UTF-8, a line with fewer than ``min_fields`` fields, or a key listed twice.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise KaldiError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise KaldiError(f"{p}: not UTF-8 text") from None
    rows, seen = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(line.split()) < min_fields:
            raise KaldiError(f"{p} line {n}: expected at least {min_fields} fields, got {line!r}")
        if parts[0] in seen:
            raise KaldiError(f"{p} line {n}: {parts[0]} is listed twice (first on line {seen[parts[0]]})")
        seen[parts[0]] = n
        rows.append((n, parts[0], parts[1].strip()))
    return rows


def read_data_dir(path: str | Path, *, allow_pipes: bool = False) -> KaldiDataDir:
    """The utterances of a Kaldi data directory (see the module docstring).

    Parameters
    ----------
    path : path-like
        The folder holding ``wav.scp``.
    allow_pipes : bool
        Accept ``wav.scp`` entries that are commands (``... |``); they run programs.

    Raises
    ------
    KaldiError
        One line: no ``wav.scp``, a malformed table, a command without ``allow_pipes``, an
        ``ark:offset`` entry, a segment of an unknown recording or with end <= start.
    """
    root = Path(path)
    if not (root / "wav.scp").is_file():
        raise KaldiError(f"{root}: not a Kaldi data directory (no wav.scp)")
    recordings: dict[str, tuple[str, bool]] = {}
    commands = []
    for n, reco, rest in read_table(root / "wav.scp"):
        if rest.endswith("|"):
            commands.append((n, reco))
            recordings[reco] = (rest[:-1].strip(), True)
        else:
            if rest.startswith("-") or (":" in rest and rest.rsplit(":", 1)[-1].isdigit()):
                raise KaldiError(f"{root / 'wav.scp'} line {n}: {reco}: {rest!r} is an ark offset or standard "
                                 "input, not an audio file; write the audio out (wav-copy) or list a command ending in |")
            recordings[reco] = (rest, False)
    if commands and not allow_pipes:
        n, reco = commands[0]
        raise KaldiError(f"{root / 'wav.scp'} line {n}: {reco} is a command ('... |'; {len(commands)} such "
                         "entries): commands run programs on this machine, so they are refused; pass --allow-pipes "
                         "to run them")
    speakers: dict[str, str] = {}
    if (root / "utt2spk").is_file():
        speakers = {utt: rest.split()[0] for _, utt, rest in read_table(root / "utt2spk")}
    elif (root / "spk2utt").is_file():
        for _, spk, rest in read_table(root / "spk2utt"):
            speakers.update({utt: spk for utt in rest.split()})
    utterances = []
    has_segments = (root / "segments").is_file()
    if has_segments:
        for n, utt, rest in read_table(root / "segments", min_fields=4):
            fields = rest.split()
            reco = fields[0]
            if reco not in recordings:
                raise KaldiError(f"{root / 'segments'} line {n}: {utt}: recording {reco} is not in wav.scp")
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                raise KaldiError(f"{root / 'segments'} line {n}: {utt}: start and end must be seconds, "
                                 f"got {fields[1]!r} {fields[2]!r}") from None
            if start < 0 or (end != -1 and end <= start):
                raise KaldiError(f"{root / 'segments'} line {n}: {utt}: needs 0 <= start < end (or end -1), "
                                 f"got {start:g} {end:g}")
            source, is_command = recordings[reco]
            utterances.append(KaldiUtterance(utt, reco, source, is_command, speakers.get(utt, utt), start,
                                             None if end == -1 else end))
    else:
        for reco, (source, is_command) in recordings.items():
            utterances.append(KaldiUtterance(reco, reco, source, is_command, speakers.get(reco, reco)))
    utterances.sort(key=lambda u: u.utt_id)
    return KaldiDataDir(root, tuple(utterances), has_segments)


def command_argv(command: str) -> list[str]:
    """The argument list a ``wav.scp`` command runs as: split without a shell where it has no shell syntax."""
    if not SHELL_SYNTAX & set(command):
        return shlex.split(command)
    return ["/bin/sh", "-c", command]


def load_recording(utt: KaldiUtterance, *, sample_rate_hz: int, channel: int | None = None,
                   resampler: str = "soxr-hq") -> audio.Audio:
    """A recording of ``utt`` (whole, not cut) as mono float32 at ``sample_rate_hz``.

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
        done = subprocess.run(command_argv(utt.source), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KaldiError(f"{name}: cannot run the command ({exc})") from None
    if done.returncode != 0:
        tail = " ".join(done.stderr.decode(errors="replace").split())[-300:]
        raise KaldiError(f"{name}: the command exited with status {done.returncode}: {tail}")
    import soundfile as sf  # deferred: only commands decode from memory

    try:
        data, rate = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=False)
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types for unreadable bytes
        raise KaldiError(f"{name}: its output is not readable audio ({exc})") from None
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


__all__ = ["COMMAND_TIMEOUT_S", "KaldiDataDir", "KaldiError", "KaldiUtterance", "command_argv", "cut",
           "is_data_dir", "load_recording", "merge_scp", "read_data_dir", "read_table", "read_vectors",
           "write_segments", "write_vectors"]
