"""Experiment files that define a stimulus's time grid: event tables, Praat TextGrids, BIDS bold sidecars.

Readers only (no alignment here; :mod:`audio_embeddings.align` uses them):

* :func:`read_events` -- one :class:`Events` (onset, duration, label per event) from

  - a BIDS ``events.tsv`` (columns ``onset``, ``duration``, optional ``trial_type``; ``n/a``
    durations count as 0),
  - a plain CSV/TSV of onsets (with or without a header; without one the columns are onset,
    duration, label), or
  - a Praat TextGrid (read with ``praatio``, a maintained reader of all TextGrid flavours):
    one tier's labelled intervals (``tier``; default the tier named ``words``/``word``, else
    the first tier), or a point tier's points (duration 0). Empty intervals (silences) are
    not events.

* :func:`read_bold_json` -- ``RepetitionTime`` and ``SliceTiming`` of a BIDS ``*_bold.json``.
* :func:`slice_time_offset_s` -- fMRIPrep's reference time of a slice-time-corrected volume.
* :class:`EventsFolder`, :class:`BoldFolder` -- several stimuli (runs): each input's events file or
  bold sidecar found by name in a folder (e.g. a BIDS ``func/`` folder), read once and cached.

The tables and sidecars are parsed with the standard library (``csv``, ``json``) rather than
pybids: reading two columns of one file does not justify pybids' dependency tree (SQLAlchemy,
formulaic, nibabel, bids-validator); pybids is used in the tests to check that our BIDS
derivatives are found by it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["EventsError", "Events", "BoldSidecar", "read_events", "read_bold_json", "slice_time_offset_s",
           "EventsFolder", "BoldFolder", "stimulus_names"]

#: Column names taken as the event label, in order of preference (BIDS ``trial_type`` first).
LABEL_COLUMNS = ("trial_type", "label", "word", "value", "stim_file")
#: Tier names taken by default from a TextGrid, in order (case-insensitive), before the first tier.
DEFAULT_TIERS = ("words", "word")


class EventsError(ValueError):
    """An events file, TextGrid or sidecar that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Events:
    """Events of a stimulus, in seconds of the audio.

    Attributes
    ----------
    onsets_s : tuple of float
        [n] onsets, seconds, finite.
    durations_s : tuple of float
        [n] durations, seconds, >= 0 (0: the value at the onset).
    labels : tuple of str
        [n] labels (``trial_type``, the TextGrid's word...; ``""`` when the file has none).
    source : str
        The file read (for the outputs' provenance).
    """

    onsets_s: tuple[float, ...]
    durations_s: tuple[float, ...]
    labels: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.onsets_s)
        if len(self.durations_s) != n or len(self.labels) != n:
            raise EventsError(f"{self.source or 'events'}: onsets, durations and labels differ in length")
        if n == 0:
            raise EventsError(f"{self.source or 'events'}: no events")
        for o, d in zip(self.onsets_s, self.durations_s):
            if not (math.isfinite(o) and math.isfinite(d)) or d < 0:
                raise EventsError(f"{self.source or 'events'}: onset {o!r} / duration {d!r} must be finite, "
                                  "duration >= 0")

    def __len__(self) -> int:
        return len(self.onsets_s)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (the source and the count)."""
        return {"source": self.source, "n_events": len(self)}


def _number(text: str, *, what: str, path: Path, line: int) -> float:
    t = text.strip()
    if t.lower() in ("n/a", "na", "nan", ""):
        return float("nan")
    try:
        return float(t)
    except ValueError:
        raise EventsError(f"{path}:{line}: {what} must be a number, got {text!r}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(path: Path) -> Events:
    text = path.read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise EventsError(f"{path}: no events")
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".tsv") or "\t" in lines[0]:
        delimiter = "\t"
    elif "," in lines[0] or suffix.endswith(".csv"):
        delimiter = ","
    else:
        delimiter = None  # whitespace
    rows = ([r.split() for r in lines] if delimiter is None
            else list(csv.reader(lines, delimiter=delimiter)))
    header = [c.strip().lower() for c in rows[0]]
    has_header = not _is_number(rows[0][0].strip())
    if has_header:
        if "onset" not in header:
            raise EventsError(f"{path}: no 'onset' column (columns: {', '.join(header)})")
        i_onset = header.index("onset")
        i_dur = header.index("duration") if "duration" in header else None
        i_label = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
        body, first_line = rows[1:], 2
    else:
        i_onset, i_dur, i_label = 0, 1 if len(rows[0]) > 1 else None, 2 if len(rows[0]) > 2 else None
        body, first_line = rows, 1
    onsets, durations, labels = [], [], []
    for k, row in enumerate(body):
        line = first_line + k
        if len(row) <= i_onset:
            raise EventsError(f"{path}:{line}: missing onset")
        onset = _number(row[i_onset], what="onset", path=path, line=line)
        if not math.isfinite(onset):
            raise EventsError(f"{path}:{line}: onset must be a number, got {row[i_onset]!r}")
        duration = _number(row[i_dur], what="duration", path=path, line=line) if (
            i_dur is not None and i_dur < len(row)) else 0.0
        label = row[i_label].strip() if i_label is not None and i_label < len(row) else ""
        onsets.append(onset)
        durations.append(0.0 if math.isnan(duration) else duration)
        labels.append("" if label.lower() == "n/a" else label)
    return Events(tuple(onsets), tuple(durations), tuple(labels), source=str(path))


def _read_textgrid(path: Path, tier: str | None) -> Events:
    try:
        from praatio import textgrid  # a TextGrid reader only needed for TextGrids
    except ImportError:
        raise EventsError(f"{path}: reading a TextGrid needs praatio: pip install praatio") from None
    try:
        tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence")
    except Exception as exc:  # praatio raises several types on malformed files
        raise EventsError(f"{path}: not a readable TextGrid ({type(exc).__name__}: {exc})") from None
    names = list(tg.tierNames)
    if not names:
        raise EventsError(f"{path}: the TextGrid has no tiers")
    if tier is None:
        lower = {n.lower(): n for n in names}
        tier = next((lower[t] for t in DEFAULT_TIERS if t in lower), names[0])
    elif tier not in names:
        raise EventsError(f"{path}: no tier {tier!r} (tiers: {', '.join(names)})")
    entries = tg.getTier(tier).entries
    onsets, durations, labels = [], [], []
    for entry in entries:
        if hasattr(entry, "end"):
            if not entry.label.strip():
                continue
            onsets.append(float(entry.start))
            durations.append(float(entry.end) - float(entry.start))
        else:  # a point tier
            onsets.append(float(entry.time))
            durations.append(0.0)
        labels.append(entry.label.strip())
    if not onsets:
        raise EventsError(f"{path}: tier {tier!r} has no labelled intervals or points")
    return Events(tuple(onsets), tuple(durations), tuple(labels), source=f"{path}#{tier}")


def read_events(path: str | Path, *, tier: str | None = None) -> Events:
    """Events from a BIDS ``events.tsv``, a CSV/TSV of onsets, or a Praat TextGrid tier.

    Parameters
    ----------
    path : str or Path
        ``*.TextGrid`` (any case) is read as a TextGrid; anything else as a table.
    tier : str, keyword-only
        TextGrid tier (default: ``words``/``word``, else the first tier). Not with tables.

    Returns
    -------
    Events
        In file order (onsets need not increase).

    Raises
    ------
    EventsError
        A missing or unreadable file, no ``onset`` column, a non-numeric onset, a negative
        duration, no events, or an unknown tier.
    """
    path = Path(path)
    if not path.is_file():
        raise EventsError(f"no such events file: {path}")
    if path.suffix.lower() == ".textgrid":
        return _read_textgrid(path, tier)
    if tier is not None:
        raise EventsError(f"{path}: a tier is only for TextGrids")
    return _read_table(path)


@dataclass(frozen=True)
class BoldSidecar:
    """What a BIDS ``*_bold.json`` says about the scanner grid.

    Attributes
    ----------
    repetition_time_s : float
        ``RepetitionTime``, seconds (> 0).
    slice_timing_s : tuple of float or None
        ``SliceTiming``, seconds from the volume's start for each slice; None when absent.
    source : str
    """

    repetition_time_s: float
    slice_timing_s: tuple[float, ...] | None
    source: str = ""


def read_bold_json(path: str | Path) -> BoldSidecar:
    """``RepetitionTime`` and ``SliceTiming`` of a BIDS bold sidecar.

    Raises
    ------
    EventsError
        A missing file, invalid JSON, or a missing/non-positive ``RepetitionTime``.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EventsError(f"no such bold sidecar: {path}") from None
    except (OSError, ValueError) as exc:
        raise EventsError(f"{path}: not a JSON sidecar ({exc})") from None
    tr = meta.get("RepetitionTime") if isinstance(meta, dict) else None
    if isinstance(tr, bool) or not isinstance(tr, (int, float)) or not tr > 0 or not math.isfinite(tr):
        raise EventsError(f"{path}: needs a RepetitionTime > 0 in seconds (sparse or variable-TR acquisitions "
                          "are not supported)")
    timing = meta.get("SliceTiming")
    if timing is not None:
        try:
            timing = tuple(float(t) for t in timing)
        except (TypeError, ValueError):
            raise EventsError(f"{path}: SliceTiming must be a list of seconds") from None
        if not timing or any(not math.isfinite(t) or t < 0 for t in timing):
            raise EventsError(f"{path}: SliceTiming must hold seconds >= 0")
    return BoldSidecar(float(tr), timing, source=str(path))


def slice_time_offset_s(slice_timing_s: Sequence[float], ref: float) -> float:
    """Time within a volume that slice-time-corrected data stand for, fMRIPrep's convention.

    fMRIPrep (``workflows/bold/stc.py``) corrects to ``tzero = round(first + ref * (last - first), 3)``
    with ``first``/``last`` the earliest/latest ``SliceTiming`` and ``ref`` its
    ``--slice-time-ref`` (0: the first slice, 0.5 the default, 1 the last); volume ``k`` then
    stands for ``k * TR + tzero``.

    Parameters
    ----------
    slice_timing_s : sequence of float
        ``SliceTiming`` (seconds).
    ref : float
        Fraction in [0, 1].
    """
    if not 0.0 <= float(ref) <= 1.0:
        raise EventsError(f"the slice-time reference must be in [0, 1] (fMRIPrep's --slice-time-ref), got {ref!r}")
    first, last = min(slice_timing_s), max(slice_timing_s)
    return round(first + float(ref) * (last - first), 3)


# ---------------------------------------------------------------------------------------------
# Per-stimulus files in a folder (several stimuli = several runs)
# ---------------------------------------------------------------------------------------------

#: Names tried for stimulus ``<stem>`` in an events folder, in this order (the suffix's case is free).
EVENTS_NAMES = ("{stem}_events.tsv", "{stem}.tsv", "{stem}.csv", "{stem}.TextGrid")
#: Names tried for stimulus ``<stem>`` in a bold-sidecar folder (``<entities>_bold.json`` through ``stim_file``).
BOLD_NAMES = ("{stem}_bold.json", "{stem}.json")


def stimulus_names(key: str) -> tuple[str, str]:
    """(file name, stem) of an input key or path: ``"sub/story1.wav"`` -> ``("story1.wav", "story1")``."""
    name = Path(str(key).replace("\\", "/")).name
    return name, (Path(name).stem or name)


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Folder:
    """Files of one folder matched to stimuli by name (see :class:`EventsFolder`, :class:`BoldFolder`)."""

    names: tuple[str, ...] = ()
    what = "file"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise EventsError(f"no such folder: {self.folder}")
        self._by_lower: dict[str, list[Path]] | None = None
        self._stim_files: dict[str, list[str]] | None = None  # stimulus file name -> BIDS entities naming it
        self._found: dict[str, Path] = {}

    def _files(self) -> dict[str, list[Path]]:
        if self._by_lower is None:
            self._by_lower = {}
            for p in sorted(self.folder.iterdir()):
                if p.is_file():
                    self._by_lower.setdefault(p.name.lower(), []).append(p)
        return self._by_lower

    def _named(self, name: str) -> list[Path]:
        """Files named ``name``: exactly, or with another case of the suffix (``.textgrid``)."""
        stem, dot, suffix = name.rpartition(".")
        return [p for p in self._files().get(name.lower(), [])
                if p.name == name or (dot and p.name.rpartition(".")[0] == stem)]

    def bids_runs(self) -> dict[str, list[str]]:
        """Stimulus file name (and stem) -> the BIDS entities (``sub-01_task-listen_run-1``) of every
        ``*_events.tsv`` here whose ``stim_file`` column names it (its base name)."""
        if self._stim_files is None:
            self._stim_files = {}
            for lower, paths in self._files().items():
                if not lower.endswith("_events.tsv"):
                    continue
                for p in paths:
                    entities = p.name[: -len("_events.tsv")]
                    for stim in sorted(_stim_file_values(p)):
                        base = stim.replace("\\", "/").rsplit("/", 1)[-1]
                        for k in {base, Path(base).stem}:
                            if entities not in self._stim_files.setdefault(k, []):
                                self._stim_files[k].append(entities)
        return self._stim_files

    def looked_for(self, key: str) -> str:
        name, stem = stimulus_names(key)
        tried = ", ".join(n.format(stem=stem) for n in self.names)
        return f"{tried}, or a *_events.tsv whose stim_file is {name}"

    def find(self, key: str) -> Path:
        """The file of this folder for input ``key`` (cached).

        Raises
        ------
        EventsError
            None, or several, match; one line naming what was looked for.
        """
        if key in self._found:
            return self._found[key]
        name, stem = stimulus_names(key)
        hits = [p for pattern in self.names for p in self._named(pattern.format(stem=stem))]
        if not hits:
            runs = self.bids_runs().get(name) or self.bids_runs().get(stem) or []
            hits = [p for entities in runs for p in self._named(self.bids_name(entities))]
            if len(runs) > 1:
                raise EventsError(f"{key}: several runs of {self.folder} name it in their stim_file "
                                  f"({', '.join(runs)}); give one file instead of the folder")
        if not hits:
            raise EventsError(f"{key}: no {self.what} for it in {self.folder} (looked for {self.looked_for(key)})")
        if len(hits) > 1:
            raise EventsError(f"{key}: several {self.what}s match it in {self.folder} "
                              f"({', '.join(p.name for p in hits)}); keep one")
        self._found[key] = hits[0]
        return hits[0]

    def bids_name(self, entities: str) -> str:
        raise NotImplementedError


def _stim_file_values(path: Path) -> set[str]:
    """The ``stim_file`` values of a BIDS events table (empty without that column)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError):
        return set()
    if not rows:
        return set()
    header = [c.strip().lower() for c in rows[0]]
    if "stim_file" not in header:
        return set()
    i = header.index("stim_file")
    return {r[i].strip() for r in rows[1:] if i < len(r) and r[i].strip() and r[i].strip().lower() != "n/a"}


class EventsFolder(_Folder):
    """The events of each stimulus (run) from a folder of events files, e.g. a BIDS ``func/`` folder.

    For the input ``<dir>/<stem>.<ext>`` (its key), the folder's file is, in this order:

    1. ``<stem>_events.tsv``, ``<stem>.tsv``, ``<stem>.csv`` or ``<stem>.TextGrid`` (any case of
       the suffix; a stimulus named by its BIDS entities, ``sub-01_task-listen_run-1.wav``, finds
       ``sub-01_task-listen_run-1_events.tsv``);
    2. else the BIDS ``<entities>_events.tsv`` whose ``stim_file`` column names the stimulus (its
       base name ``<stem>.<ext>``, or its stem; ``stimuli/story1.wav`` names ``story1.wav``).

    Every row of that file is an event (:func:`read_events`). Two matches (``<stem>.tsv`` and
    ``<stem>.TextGrid``; two runs naming the same stimulus) are an error, as is none; the message
    names what was looked for. The folder itself is searched, not its subfolders.

    Parameters
    ----------
    folder : str or Path
    tier : str, optional
        TextGrid tier (:func:`read_events`).
    """

    names = EVENTS_NAMES
    what = "events file"

    def __init__(self, folder: str | Path, *, tier: str | None = None):
        super().__init__(folder)
        self.tier = tier
        self._events: dict[str, tuple[Events, str]] = {}

    def bids_name(self, entities: str) -> str:
        return f"{entities}_events.tsv"

    def events_for(self, key: str) -> tuple[Events, str]:
        """(events, sha256 of the file's bytes) of input ``key`` (cached).

        Raises
        ------
        EventsError
            No (or several) events file for it, or an unreadable one.
        """
        if key not in self._events:
            path = self.find(key)
            digest = _digest(path)
            tier = self.tier if path.suffix.lower() == ".textgrid" else None
            self._events[key] = (read_events(path, tier=tier), digest)
        return self._events[key]

    def describe(self) -> dict[str, Any]:
        """JSON-able (the folder and the tier)."""
        return {"folder": str(self.folder), "tier": self.tier}


class BoldFolder(_Folder):
    """The BIDS bold sidecar of each stimulus (run) from a folder, e.g. a BIDS ``func/`` folder.

    For the input ``<stem>.<ext>``: ``<stem>_bold.json`` or ``<stem>.json``; else
    ``<entities>_bold.json`` of the BIDS ``<entities>_events.tsv`` here whose ``stim_file`` names
    the stimulus (as :class:`EventsFolder`).

    Parameters
    ----------
    folder : str or Path
    slice_time_ref : float
        fMRIPrep's ``--slice-time-ref`` for sidecars with ``SliceTiming``.
    """

    names = BOLD_NAMES
    what = "bold sidecar"

    def __init__(self, folder: str | Path, *, slice_time_ref: float = 0.5):
        super().__init__(folder)
        self.slice_time_ref = float(slice_time_ref)
        self._sidecars: dict[str, tuple[BoldSidecar, str]] = {}

    def bids_name(self, entities: str) -> str:
        return f"{entities}_bold.json"

    def looked_for(self, key: str) -> str:
        return super().looked_for(key).replace("*_events.tsv whose", "*_bold.json whose *_events.tsv's")

    def sidecar_for(self, key: str) -> tuple[BoldSidecar, str]:
        """(sidecar, sha256 of its bytes) of input ``key`` (cached)."""
        if key not in self._sidecars:
            path = self.find(key)
            self._sidecars[key] = (read_bold_json(path), _digest(path))
        return self._sidecars[key]

    def describe(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "slice_time_ref": self.slice_time_ref}
