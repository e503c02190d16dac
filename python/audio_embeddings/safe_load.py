"""Bounded readers for files a user hands over: YAML configs, JSON classifiers, manifests.

A hostile or broken file ends in one line naming it, before anything is built from it, never in
a ``MemoryError`` or a ``RecursionError`` traceback:

* **size**: a file longer than ``max_bytes`` is refused from its size alone (and at most
  ``max_bytes + 1`` bytes are ever read, so ``/dev/zero`` or a file still growing is refused too);
* **YAML aliases**: ``*name`` is refused wherever it appears. An alias can make a few hundred bytes
  stand for billions of values (``&a [lol, lol, ...]``, ``&b [*a, *a, ...]``, nine levels), and
  the configs of this toolkit never need one (write the value out instead);
* **nesting**: a YAML document deeper than ``max_depth`` levels of mappings and lists is refused
  while it is read; a JSON document likewise once parsed, and one too deep for Python's own JSON
  parser (``RecursionError``) gets the same line;
* **count**: a YAML document of more than ``max_nodes`` values is refused while it is read
  (PyYAML spends some 20 us and a few hundred bytes on each, so 16 MiB of ``[a,a,a,...`` would
  take minutes and gigabytes); a JSON text with more separators and brackets than ``max_values``
  before it is parsed (a count at C speed; base64 holds none);
* anything else that is not valid YAML or JSON (syntax, an integer of more than 4300 digits, a
  tag SafeLoader does not know) is a :class:`DocumentError` too.

Every error is a :class:`DocumentError` whose message names the file (``config.yml: line 3: an
alias (*a) ...``); callers turn it into their own error class (``ConfigError``,
``ClassifierError``, ``CorpusError``) with the same text. This module imports nothing from the
package; PyYAML is imported on first use.

Examples
--------
>>> from audio_embeddings.safe_load import load_yaml_file, load_json_file
>>> config = load_yaml_file("config.yml", max_bytes=16 << 20, max_depth=50)     # doctest: +SKIP
>>> model = load_json_file("classifier.json", max_bytes=256 << 20, max_depth=50)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: Default bound on the nesting of mappings and lists (YAML and JSON).
DEFAULT_MAX_DEPTH = 50
#: Default bound on a YAML file's size in bytes (16 MiB: a config may hold base64 classifiers inline).
DEFAULT_YAML_MAX_BYTES = 16 << 20
#: Default bound on a JSON file's size in bytes (256 MiB: a linear classifier over Perch's ~15k
#: classes is about 125 MB of base64).
DEFAULT_JSON_MAX_BYTES = 256 << 20
#: Default bound on the values (scalars, mappings, lists) of a YAML document: about 2 s of PyYAML.
DEFAULT_YAML_MAX_NODES = 100_000
#: Default bound on the values of a JSON text (counted as its ``,``, ``[`` and ``{``, an upper bound).
DEFAULT_JSON_MAX_VALUES = 1_000_000


class DocumentError(ValueError):
    """A file that is refused (too large, too deep, a YAML alias) or is not valid YAML/JSON.

    ``str(exc)`` is one line that names the file where one was read.
    """


class _Refused(Exception):
    """Raised inside the YAML composer: (mark, problem)."""

    def __init__(self, mark: Any, problem: str):
        super().__init__(problem)
        self.mark = mark
        self.problem = problem


def size_text(n_bytes: int) -> str:
    """``16 MiB``, ``1.5 GiB``, ``512 bytes``: a byte count for messages."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n_bytes >= 1 << shift:
            value = n_bytes / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n_bytes} bytes"


def read_bounded(path: str | os.PathLike, *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a file, refused without reading it when it holds more than ``max_bytes``.

    Parameters
    ----------
    path : path-like
    max_bytes : int
        Largest accepted size. The size is checked from ``fstat`` first, and at most
        ``max_bytes + 1`` bytes are read (a device or a growing file cannot get past it).
    what : str
        What the file is, for the message (``"config"``, ``"manifest"``).

    Returns
    -------
    bytes

    Raises
    ------
    DocumentError
        Larger than ``max_bytes``: ``<path>: too large for a config (20971520 bytes; at most 16 MiB)``.
    OSError
        The file cannot be opened or read (left to the caller, which words it its own way).
    """
    with open(path, "rb") as fh:
        try:
            size = os.fstat(fh.fileno()).st_size
        except OSError:
            size = 0
        if size > max_bytes:
            raise DocumentError(f"{path}: too large for a {what} ({size} bytes; at most {size_text(max_bytes)})")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # a device, a pipe or a file that grew: its size said nothing
        raise DocumentError(f"{path}: too large for a {what} (more than {size_text(max_bytes)})")
    return data


def _read_for_parse(path: Path, *, max_bytes: int, what: str) -> bytes:
    try:
        return read_bounded(path, max_bytes=max_bytes, what=what)
    except DocumentError:
        raise
    except FileNotFoundError:
        raise DocumentError(f"{path}: file not found") from None
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror or exc})") from None


# -- YAML -------------------------------------------------------------------------------------


class _LoaderFactory:
    """PyYAML SafeLoader subclasses (made on first use, so importing this module never imports yaml)."""

    classes: dict[bool, Any] = {}

    @classmethod
    def get(cls, unique_keys: bool) -> Any:
        if unique_keys not in cls.classes:
            import yaml

            class BoundedLoader(yaml.SafeLoader):
                """SafeLoader that refuses aliases and nesting deeper than ``max_depth`` while composing."""

                max_depth = DEFAULT_MAX_DEPTH
                max_nodes = DEFAULT_YAML_MAX_NODES
                depth = 0
                nodes = 0

                def compose_node(self, parent, index):
                    if self.check_event(yaml.AliasEvent):
                        event = self.peek_event()
                        raise _Refused(event.start_mark, f"an alias (*{event.anchor}): YAML aliases are not "
                                                         "accepted (they can expand without bound); write the "
                                                         "value out")
                    self.nodes += 1
                    if self.nodes > self.max_nodes:
                        raise _Refused(self.peek_event().start_mark, f"more than {self.max_nodes} values")
                    container = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
                    if container:
                        self.depth += 1
                        if self.depth > self.max_depth:
                            raise _Refused(self.peek_event().start_mark,
                                           f"nested deeper than {self.max_depth} levels of mappings and lists")
                    try:
                        return super().compose_node(parent, index)
                    finally:
                        if container:
                            self.depth -= 1

            if unique_keys:
                def construct_mapping(loader, node, deep=False):
                    seen = set()
                    for key_node, _ in node.value:
                        key = loader.construct_object(key_node, deep=deep)
                        try:
                            repeated = key in seen
                        except TypeError:  # unhashable: SafeConstructor says so below
                            break
                        if repeated:
                            raise _Refused(key_node.start_mark, f"key {key!r} is given twice")
                        seen.add(key)
                    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

                BoundedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
            cls.classes[unique_keys] = BoundedLoader
        return cls.classes[unique_keys]


def parse_yaml(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, max_nodes: int = DEFAULT_YAML_MAX_NODES,
               unique_keys: bool = True, source: str | None = None) -> Any:
    """Parse one YAML document with :mod:`yaml`'s SafeLoader, refusing aliases and deep nesting.

    Parameters
    ----------
    text : str
    max_depth : int
        Most levels of nested mappings and lists (the top-level mapping is level 1).
    max_nodes : int
        Most values (scalars, mappings and lists, keys included) in the document.
    unique_keys : bool
        Refuse a key given twice in one mapping (PyYAML keeps the last silently).
    source : str, optional
        Named at the start of every message (the file name).

    Returns
    -------
    object
        What ``yaml.safe_load`` returns for an accepted document (None for an empty one).

    Raises
    ------
    DocumentError
        ``<source>: line N: an alias (*a): ...``, ``<source>: line N: nested deeper than 50 levels
        ...``, ``<source>: line N: more than 100000 values``, ``<source>: line N: key 'x' is given
        twice``, or ``<source>: not valid YAML: ...``.
    """
    import yaml

    prefix = f"{source}: " if source else ""
    loader = _LoaderFactory.get(bool(unique_keys))(text)
    loader.max_depth = int(max_depth)
    loader.max_nodes = int(max_nodes)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        where = f"line {exc.mark.line + 1}: " if exc.mark is not None else ""
        raise DocumentError(f"{prefix}{where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(f"{prefix}not valid YAML: {where}{' '.join(str(problem).split())}") from None
    except RecursionError:
        raise DocumentError(f"{prefix}nested deeper than {max_depth} levels of mappings and lists") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise DocumentError(f"{prefix}not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike, *, max_bytes: int = DEFAULT_YAML_MAX_BYTES,
                   max_depth: int = DEFAULT_MAX_DEPTH, max_nodes: int = DEFAULT_YAML_MAX_NODES,
                   unique_keys: bool = True, what: str = "YAML file") -> Any:
    """Read and parse a YAML file within bounds (see :func:`parse_yaml`).

    Parameters
    ----------
    path : path-like
    max_bytes : int
        Largest accepted file size (default :data:`DEFAULT_YAML_MAX_BYTES`, 16 MiB).
    max_depth : int
        Most levels of nested mappings and lists (default 50).
    max_nodes : int
        Most values in the document (default :data:`DEFAULT_YAML_MAX_NODES`, 100000).
    unique_keys : bool
        Refuse a key given twice in one mapping.
    what : str
        What the file is, for the size message (``"config"``).

    Returns
    -------
    object
        As ``yaml.safe_load`` of the file's text.

    Raises
    ------
    DocumentError
        Missing, unreadable, not UTF-8, too large, an alias, too deep, too many values, a repeated
        key, or not valid YAML; one line starting with the path.
    """
    p = Path(path)
    data = _read_for_parse(p, max_bytes=max_bytes, what=what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, max_depth=max_depth, max_nodes=max_nodes, unique_keys=unique_keys, source=str(p))


# -- JSON -------------------------------------------------------------------------------------


def json_depth(value: Any, *, limit: int | None = None) -> int:
    """Levels of nested lists and dicts in ``value`` (a scalar is 0), counted without recursion.

    Stops as soon as ``limit`` is passed (returns ``limit + 1``) when one is given.
    """
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if limit is not None and deepest > limit:
                return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return deepest


def parse_json(data: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, max_values: int = DEFAULT_JSON_MAX_VALUES,
               source: str | None = None) -> Any:
    """``json.loads`` with a bound on nesting; every failure one :class:`DocumentError` line.

    Parameters
    ----------
    data : str or bytes
        JSON text (bytes as UTF-8, -16 or -32, as :func:`json.loads` detects).
    max_depth : int
        Most levels of nested objects and arrays (the top-level object is level 1).
    max_values : int
        Most values, bounded from above before parsing by the number of ``,``, ``[`` and ``{``
        in the text (those in strings too; base64 and label names hold few or none).
    source : str, optional
        Named at the start of every message (the file name).

    Raises
    ------
    DocumentError
        ``<source>: not JSON (...)``, ``<source>: more than 1000000 values``, or ``<source>: nested
        deeper than 50 levels of objects and arrays`` (also when Python's parser itself gives up,
        a ``RecursionError``).
    """
    prefix = f"{source}: " if source else ""
    deep = DocumentError(f"{prefix}nested deeper than {max_depth} levels of objects and arrays")
    marks = (b",", b"[", b"{") if isinstance(data, (bytes, bytearray)) else (",", "[", "{")
    if len(data) > max_values and sum(data.count(m) for m in marks) > max_values:
        raise DocumentError(f"{prefix}more than {max_values} values")
    try:
        value = json.loads(data)
    except RecursionError:
        raise deep from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise DocumentError(f"{prefix}not JSON ({' '.join(str(exc).split())[:200]})") from None
    if json_depth(value, limit=max_depth) > max_depth:
        raise deep
    return value


def load_json_file(path: str | os.PathLike, *, max_bytes: int = DEFAULT_JSON_MAX_BYTES,
                   max_depth: int = DEFAULT_MAX_DEPTH, max_values: int = DEFAULT_JSON_MAX_VALUES,
                   what: str = "JSON file") -> Any:
    """Read and parse a JSON file within bounds (see :func:`parse_json`).

    Parameters
    ----------
    path : path-like
    max_bytes : int
        Largest accepted file size (default :data:`DEFAULT_JSON_MAX_BYTES`, 256 MiB).
    max_depth : int
        Most levels of nested objects and arrays (default 50).
    max_values : int
        Most values (default :data:`DEFAULT_JSON_MAX_VALUES`; see :func:`parse_json`).
    what : str
        What the file is, for the size message (``"classifier file"``).

    Raises
    ------
    DocumentError
        Missing, unreadable, too large, too deep, too many values, or not JSON; one line starting
        with the path.
    """
    p = Path(path)
    return parse_json(_read_for_parse(p, max_bytes=max_bytes, what=what), max_depth=max_depth,
                      max_values=max_values, source=str(p))


__all__ = ["DocumentError", "DEFAULT_MAX_DEPTH", "DEFAULT_YAML_MAX_BYTES", "DEFAULT_JSON_MAX_BYTES",
           "DEFAULT_YAML_MAX_NODES", "DEFAULT_JSON_MAX_VALUES", "read_bounded",
           "parse_yaml", "load_yaml_file", "parse_json", "load_json_file", "json_depth", "size_text"]
