"""Which files a run embeds: files, a directory tree, or a manifest, each with a stable key.

Keys are paths relative to the input root with ``/`` separators
(``part_003/e8/7b/e87b....wav``), sorted, so every rank of a sharded run sees the same list.
Keys are normalised (``a/./b/../x.wav`` -> ``a/x.wav``) and never leave the output folder: an entry
outside the root (``../x.wav``, ``/data/x.wav``) gets the key ``_abs/<its absolute path>``
(``_abs/data/x.wav``), and two different files that would share a key are an error naming both.

Nothing is dropped silently: a folder that cannot be read, a symbolic link that loops back to a
folder above it, or one that leads to a folder already searched, becomes a :class:`CorpusFailure`
(``Corpus.failed``) with the reason, for the run's report. Each real folder is searched once.
Files that a run could read but a directory search without ``--pattern`` does not pick up
(``.mat`` files holding audio, :data:`READABLE_NOT_PICKED`) are counted, and the run says so in
one warning line naming an example and ``--pattern '*.mat'``.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

#: Audio extensions a directory search picks up when no ``--pattern`` is given.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".aifc",
                    ".wma", ".caf", ".w64", ".wv")
#: Files the decoder reads (:func:`~audio_embeddings.audio.load_audio`: a ``.mat`` with ``audio`` and ``fs``)
#: that a directory search leaves out unless ``--pattern`` names them; a search without ``--pattern``
#: that skips some says so in one warning. Only ``.mat``: other data files (``.npy``, ``.h5``,
#: ``.csv``) cannot be embedded, so naming them would be noise, and this toolkit's own ``.mat``
#: outputs (a ``.<name>.done`` stamp beside them) are not counted.
READABLE_NOT_PICKED = (".mat",)
#: An input with one of these extensions is a list of paths, not audio.
MANIFEST_EXTENSIONS = (".txt", ".csv", ".tsv", ".lst", ".scp")
#: CSV/TSV manifest columns that hold the path (else the first column).
PATH_COLUMNS = ("path", "audio_path", "filepath", "file_path", "file", "filename", "wav")
#: First component of the key of an input outside the corpus root (its absolute path follows).
OUTSIDE_ROOT = "_abs"
#: Largest manifest read (1 GiB: some ten million paths), refused from its size before it is read.
MANIFEST_MAX_BYTES = 1 << 30

LOG = logging.getLogger(__name__)


class CorpusError(ValueError):
    """The input selects no files, or cannot be read as a corpus."""


@dataclass(frozen=True)
class CorpusItem:
    """One input: ``key`` (relative, ``/``-separated) and ``path`` (as given or found).

    Attributes
    ----------
    key : str
    path : str
        The audio file, or with ``command`` the command whose standard output is the audio.
    start_s, end_s : float or None
        Only this part of the recording, in seconds (a Kaldi ``segments`` line); ``start_s`` None:
        the whole recording; ``end_s`` None: to its end.
    command : bool
        ``path`` is a command (a Kaldi ``wav.scp`` entry ``... |``, run only with ``allow_pipes``).
    """

    key: str
    path: str
    start_s: float | None = None
    end_s: float | None = None
    command: bool = False

    @property
    def stamp_fields(self) -> dict | None:
        """What, besides the file, identifies this input in its outputs' stamps (the segment and/or the
        command), or None for a whole file (:mod:`~audio_embeddings.corpus.stamps`)."""
        fields: dict = {}
        if self.start_s is not None:
            fields["segment"] = [float(self.start_s), None if self.end_s is None else float(self.end_s)]
        if self.command:
            fields["command"] = self.path
        return fields or None


@dataclass(frozen=True)
class CorpusFailure:
    """Something of the input that could not be searched: ``path`` and a one-line ``reason``."""

    path: str
    reason: str


@dataclass(frozen=True)
class Corpus:
    """The selected files.

    Attributes
    ----------
    items : tuple of CorpusItem
        Sorted by key.
    root : Path
        Directory the keys are relative to.
    kind : {"files", "directory", "manifest", "kaldi"}
        ``directory``, ``manifest`` and ``kaldi`` (a Kaldi data directory) runs resume and mirror the
        tree in their outputs.
    failed : tuple of CorpusFailure
        Folders (and links) that could not be searched, with the reason: the run reports them as
        failed inputs.
    """

    items: tuple[CorpusItem, ...]
    root: Path
    kind: str
    failed: tuple[CorpusFailure, ...] = ()

    @property
    def is_tree(self) -> bool:
        return self.kind in ("directory", "manifest", "kaldi")


# --- Kaldi data directories ---------------------------------------------------------------------


class KaldiError(CorpusError):
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


#: The suffix of the keys of Kaldi utterances (``dataset/speaker/utt.utt``), so ids keep their dots.
KALDI_KEY_SUFFIX = ".utt"


def is_data_dir(path: str | os.PathLike) -> bool:
    """``path`` is a folder holding a ``wav.scp`` (a Kaldi data directory)."""
    p = Path(path)
    return p.is_dir() and (p / "wav.scp").is_file()


def read_table(path: str | os.PathLike, *, min_fields: int = 2) -> list[tuple[int, str, str]]:
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


def read_data_dir(path: str | os.PathLike, *, allow_pipes: bool = False) -> KaldiDataDir:
    """The utterances of a Kaldi data directory.

    Utterance ids come from ``segments`` (``utt-id reco-id start end``, seconds; an end of -1 means
    the end of the recording), else from ``wav.scp``; speakers from ``utt2spk`` (else ``spk2utt``;
    an utterance of neither is its own speaker, Kaldi's identity convention).

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


def kaldi_key(dataset: str, speaker: str, utt_id: str) -> str:
    """The key of one utterance: ``dataset/speaker/utt.utt`` (B4's stage-1 layout; empty parts left out).

    Raises
    ------
    KaldiError
        An id that cannot be a path component (empty, ``.``/``..``, or holding ``/``).
    """
    for what, value in (("speaker", speaker), ("utterance", utt_id)):
        if value in ("", ".", "..") or "/" in value or "\\" in value or "\0" in value:
            raise KaldiError(f"{utt_id}: {what} id {value!r} cannot name a file (no /, \\, . or ..)")
    return PurePosixPath(*[p for p in (dataset, speaker) if p], utt_id + KALDI_KEY_SUFFIX).as_posix()


def kaldi_items(data: KaldiDataDir, *, dataset: str) -> list[CorpusItem]:
    """The corpus items of a parsed data directory: one per utterance, cut to its segment.

    Relative ``wav.scp`` paths are taken from the current folder, as Kaldi does.
    """
    items = []
    for u in data.utterances:
        path = u.source if u.is_command else os.path.abspath(u.source)
        items.append(CorpusItem(kaldi_key(dataset, u.speaker, u.utt_id), path, u.start_s, u.end_s, u.is_command))
    return items


def _normal(path: str | os.PathLike) -> Path:
    """Absolute and lexically normalised (``..`` and ``.`` resolved without following links)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def corpus_key(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """The key of ``path`` in a corpus rooted at ``root``: its normalised path relative to the root,
    or ``_abs/<absolute path>`` for a path outside it. A key never starts with ``/`` nor holds ``..``."""
    p, r = _normal(path), _normal(root)
    try:
        parts = p.relative_to(r).parts
    except ValueError:
        drive = p.drive.replace(":", "").strip("\\/")
        parts = (OUTSIDE_ROOT, *([drive] if drive else []), *p.parts[1:])
    return PurePosixPath(*parts).as_posix() if parts else ""


def _key(path: Path, root: Path) -> str:
    return corpus_key(path, root)


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def _matches(rel: str, patterns: Sequence[str] | None) -> bool:
    if not patterns:
        return rel.lower().endswith(AUDIO_EXTENSIONS)
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk_directory(root: Path, *, patterns: Sequence[str] | None = None,
                   exclude: Iterable[Path] = (), errors: list[CorpusFailure] | None = None,
                   skipped: list[Path] | None = None) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted; hidden entries and ``exclude`` dirs skipped).

    Real folders are searched first (in sorted order, files before sub-folders), then the folders that
    symbolic links lead to, each real folder once: a link back to a folder above it (a loop) or to a
    folder already searched is not followed. Those, and folders that cannot be read, are appended to
    ``errors`` (when given) as :class:`CorpusFailure` s with the reason. Without ``patterns``, files
    with an extension of :data:`READABLE_NOT_PICKED` that have no ``.<name>.done`` stamp of this
    toolkit beside them (they are not its outputs) are appended to ``skipped`` (when given).
    """
    skip = {_normal(p) for p in exclude}
    root = Path(root)
    found: list[Path] = []
    seen: dict[tuple[int, int], Path] = {}
    links: list[tuple[Path, tuple[tuple[int, int], ...]]] = []

    def failed(path: Path, reason: str) -> None:
        if errors is not None:
            errors.append(CorpusFailure(str(path), f"{path}: {reason}"))

    def search(start: Path, above: tuple[tuple[int, int], ...]) -> None:
        stack = [(start, above)]
        while stack:
            here, ancestors = stack.pop()
            try:
                st = os.stat(here)
            except OSError as exc:
                failed(here, f"cannot search this folder ({_os_reason(exc)})")
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                failed(here, f"symbolic link loop (leads back to {seen.get(ident, here)}); not followed")
                continue
            if ident in seen:
                failed(here, f"leads to a folder already searched ({seen[ident]}); not searched twice")
                continue
            seen[ident] = here
            try:
                with os.scandir(here) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                failed(here, f"cannot read this folder ({_os_reason(exc)})")
                continue
            real = []
            stamps = {e.name for e in entries if e.name.startswith(".") and e.name.endswith(".done")}
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = here / entry.name
                try:
                    is_dir, is_link = entry.is_dir(), entry.is_symlink()  # is_dir follows links
                except OSError:
                    is_dir, is_link = False, False
                if is_dir:
                    if _normal(path) in skip:
                        continue
                    if is_link:
                        links.append((path, (*ancestors, ident)))
                    else:
                        real.append(path)
                    continue
                if _matches(_key(path, root), patterns):
                    found.append(path)
                elif skipped is not None and not patterns and path.suffix.lower() in READABLE_NOT_PICKED \
                        and f".{path.stem}.done" not in stamps:
                    skipped.append(path)
            stack.extend((d, (*ancestors, ident)) for d in reversed(real))

    search(root, ())
    i = 0
    while i < len(links):  # grows while linked folders hold more links
        search(*links[i])
        i += 1
    return found


def read_manifest(path: Path, *, base: Path | None = None) -> list[Path]:
    """Paths listed in a text manifest (one per line, ``#`` comments) or a CSV/TSV (``path`` column).

    Relative entries are taken relative to ``base`` (default: the manifest's folder).

    Raises
    ------
    CorpusError
        Unreadable, not UTF-8, larger than :data:`MANIFEST_MAX_BYTES` (refused before reading), or
        a CSV/TSV the ``csv`` module cannot read (a field over its 128 KiB limit); one line
        naming the manifest.
    """
    from ..safe_load import DocumentError, read_bounded

    base = path.parent if base is None else base
    try:
        text = read_bounded(path, max_bytes=MANIFEST_MAX_BYTES, what="manifest").decode("utf-8-sig")
    except DocumentError as exc:
        raise CorpusError(str(exc)) from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the manifest ({_os_reason(exc)})") from None
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: the manifest is not UTF-8 text") from None
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.reader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            rows = list(reader)
        except csv.Error as exc:
            raise CorpusError(f"{path}: line {reader.line_num}: not a readable {path.suffix[1:].upper()} manifest "
                              f"({exc})") from None
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        column = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
        body = rows[1:] if column is not None else rows
        entries = [row[column or 0].strip() for row in body if row and row[column or 0].strip()]
    else:
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [Path(e) if Path(e).is_absolute() else base / e for e in entries]


def discover(
    inputs: Sequence[str],
    *,
    audio_dir: str | None = None,
    part: str | None = None,
    patterns: Sequence[str] | None = None,
    max_files: int | None = None,
    exclude: Iterable[str | Path] = (),
    allow_pipes: bool = False,
) -> Corpus:
    """Select the files of a run.

    Parameters
    ----------
    inputs : sequence of str
        Audio files, or one directory, or one manifest (``.txt``/``.csv``/``.tsv``/``.lst``/``.scp``),
        or one Kaldi data directory (a folder holding ``wav.scp``: one item per utterance, keys
        ``<folder name>/<speaker>/<utt>.utt``, cut to its ``segments`` line).
        Empty: ``audio_dir`` is the input.
    audio_dir : str, optional
        Root of the corpus: keys are relative to it and relative manifest entries start there.
    part : str, optional
        Only this sub-folder of the root (keys stay relative to the root).
    patterns : sequence of str, optional
        Globs matched against the relative path or the file name (default: audio extensions).
    max_files : int, optional
        Keep the first N keys (after sorting, before sharding).
    exclude : paths
        Directories never searched (the output directory when it sits inside the input).
    allow_pipes : bool
        Accept ``wav.scp`` entries that are commands (``... |``) of a Kaldi data directory; they run
        programs (refused by default).

    Raises
    ------
    CorpusError
        No files selected (the message says where it looked and what could not be searched), a mix
        of inputs that has no root, or two different files that would share a key.
    """
    inputs = list(inputs) or ([audio_dir] if audio_dir else [])
    failed: list[CorpusFailure] = []
    skipped: list[Path] = []
    if not inputs:
        raise CorpusError("no input: give an audio file, a directory or a manifest (or --audio-dir)")
    first = Path(inputs[0])
    if len(inputs) == 1 and is_data_dir(first):
        data = read_data_dir(first, allow_pipes=allow_pipes)
        items = kaldi_items(data, dataset=first.resolve().name)
        items.sort(key=lambda i: i.key)
        if max_files is not None:
            items = items[:max(0, int(max_files))]
        if not items:
            raise CorpusError(f"no utterances in the Kaldi data directory {first}")
        return Corpus(tuple(items), first, "kaldi")
    if len(inputs) == 1 and first.is_dir():
        root = Path(audio_dir) if audio_dir and Path(audio_dir).resolve() != first.resolve() else first
        search = root / part if part else first
        if not search.is_dir():
            raise CorpusError(f"no such folder: {search}")
        paths = walk_directory(search, patterns=patterns, exclude=exclude, errors=failed, skipped=skipped)
        kind, where = "directory", f"{search} (recursive, {', '.join(patterns) if patterns else 'audio extensions'})"
    elif len(inputs) == 1 and first.suffix.lower() in MANIFEST_EXTENSIONS and first.is_file():
        root = Path(audio_dir) if audio_dir else first.parent
        paths, kind, where = read_manifest(first, base=root), "manifest", f"manifest {first}"
        if part:
            paths = [p for p in paths if _key(p, root).startswith(part.rstrip("/") + "/")]
            where += f", part {part}"
    else:
        dirs = [p for p in inputs if Path(p).is_dir()]
        if dirs:
            raise CorpusError(f"give one directory or one manifest, or audio files only (got {dirs[0]} among others)")
        paths = [Path(p) for p in inputs]
        root = Path(os.path.commonpath([os.path.abspath(p.parent) for p in paths]))
        paths, kind, where = [Path(os.path.abspath(p)) for p in paths], "files", ", ".join(inputs)
    by_key: dict[str, CorpusItem] = {}
    for p in paths:
        key = _key(p, root)
        if key in ("", "."):
            failed.append(CorpusFailure(str(p), f"{p}: is the corpus folder itself, not an audio file"))
            continue
        if key in by_key:
            if _normal(by_key[key].path) != _normal(p):
                raise CorpusError(f"{by_key[key].path} and {p} would both have the key {key} (and the same "
                                  "outputs); list one of them, or give their common folder as --audio-dir")
            continue  # the same file listed twice
        by_key[key] = CorpusItem(key, str(p))
    items = sorted(by_key.values(), key=lambda i: i.key)
    if max_files is not None:
        items = items[:max(0, int(max_files))]
    if not items:
        detail = f"; {failed[0].reason}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "") \
            if failed else ""
        hint = f"; {skipped_line(skipped, root=root)}" if skipped else ""
        raise CorpusError(f"no audio files found in {where}{detail}{hint}")
    if skipped:
        LOG.warning(f"warning: {skipped_line(skipped, root=root)}")
    return Corpus(tuple(items), root, kind, tuple(failed))


def skipped_line(skipped: Sequence[Path], *, root: Path) -> str:
    """One line on the readable files a search without ``--pattern`` left out (:data:`READABLE_NOT_PICKED`).

    Parameters
    ----------
    skipped : sequence of Path
        The files left out (at least one).
    root : Path
        The corpus root (the example is named relative to it).

    Returns
    -------
    str
        ``skipped 3 .mat file(s) (e.g. sub/a.mat): ...`` with the ``--pattern`` that includes them.
    """
    kinds = sorted({p.suffix.lower() for p in skipped})
    globs = " ".join(f"--pattern '*{k}'" for k in kinds)
    return (f"skipped {len(skipped)} {'/'.join(kinds)} file(s) (e.g. {_key(skipped[0], root)}): a folder is "
            f"searched for audio extensions only; add {globs} to embed them (and --pattern '*.wav' etc. to keep "
            "the audio files: --pattern replaces the default list)")
