"""Which files a run embeds: files, a directory tree, or a manifest, each with a stable key.

Keys are paths relative to the input root with ``/`` separators
(``part_003/e8/7b/e87b....wav``), sorted, so every rank of a sharded run sees the same list.
"""

from __future__ import annotations

import csv
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

#: Audio extensions a directory search picks up when no ``--pattern`` is given.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".aifc",
                    ".wma", ".caf", ".w64", ".wv")
#: An input with one of these extensions is a list of paths, not audio.
MANIFEST_EXTENSIONS = (".txt", ".csv", ".tsv", ".lst", ".scp")
#: CSV/TSV manifest columns that hold the path (else the first column).
PATH_COLUMNS = ("path", "audio_path", "filepath", "file_path", "file", "filename", "wav")


class CorpusError(ValueError):
    """The input selects no files, or cannot be read as a corpus."""


@dataclass(frozen=True)
class CorpusItem:
    """One file: ``key`` (relative, ``/``-separated) and ``path`` (as given or found)."""

    key: str
    path: str


@dataclass(frozen=True)
class Corpus:
    """The selected files.

    Attributes
    ----------
    items : tuple of CorpusItem
        Sorted by key.
    root : Path
        Directory the keys are relative to.
    kind : {"files", "directory", "manifest"}
        ``directory`` and ``manifest`` runs resume and mirror the tree in their outputs.
    """

    items: tuple[CorpusItem, ...]
    root: Path
    kind: str

    @property
    def is_tree(self) -> bool:
        return self.kind in ("directory", "manifest")


def _key(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:  # outside the root (absolute manifest entry elsewhere): keep the full path
        rel = Path(*path.parts[1:]) if path.is_absolute() else path
    return PurePosixPath(*rel.parts).as_posix()


def _matches(rel: str, patterns: Sequence[str] | None) -> bool:
    if not patterns:
        return rel.lower().endswith(AUDIO_EXTENSIONS)
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk_directory(root: Path, *, patterns: Sequence[str] | None = None,
                   exclude: Iterable[Path] = ()) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted; hidden entries and ``exclude`` dirs skipped)."""
    skip = {Path(os.path.abspath(p)) for p in exclude}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and Path(os.path.abspath(here / d)) not in skip)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            if _matches(_key(path, root), patterns):
                found.append(path)
    return found


def read_manifest(path: Path, *, base: Path | None = None) -> list[Path]:
    """Paths listed in a text manifest (one per line, ``#`` comments) or a CSV/TSV (``path`` column).

    Relative entries are taken relative to ``base`` (default: the manifest's folder).
    """
    base = path.parent if base is None else base
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.reader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
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
) -> Corpus:
    """Select the files of a run.

    Parameters
    ----------
    inputs : sequence of str
        Audio files, or one directory, or one manifest (``.txt``/``.csv``/``.tsv``/``.lst``/``.scp``).
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

    Raises
    ------
    CorpusError
        No files selected (the message says where it looked), or a mix of inputs that has no root.
    """
    inputs = list(inputs) or ([audio_dir] if audio_dir else [])
    if not inputs:
        raise CorpusError("no input: give an audio file, a directory or a manifest (or --audio-dir)")
    first = Path(inputs[0])
    if len(inputs) == 1 and first.is_dir():
        root = Path(audio_dir) if audio_dir and Path(audio_dir).resolve() != first.resolve() else first
        search = root / part if part else first
        if not search.is_dir():
            raise CorpusError(f"no such folder: {search}")
        paths, kind = walk_directory(search, patterns=patterns, exclude=exclude), "directory"
        where = f"{search} (recursive, {', '.join(patterns) if patterns else 'audio extensions'})"
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
    items = sorted({_key(p, root): CorpusItem(_key(p, root), str(p)) for p in paths}.values(), key=lambda i: i.key)
    if max_files is not None:
        items = items[:max(0, int(max_files))]
    if not items:
        raise CorpusError(f"no audio files found in {where}")
    return Corpus(tuple(items), root, kind)
