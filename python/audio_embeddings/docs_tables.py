"""Tables declared once in Python and written out where other readers need them (generated files).

* ``matlab/private/ae_options_table.m``: the MATLAB wrappers' name-value options -- MATLAB name, flag,
  kind, choices, default -- from :data:`audio_embeddings.matlab.WRAPPER_FLAGS` (read off the scripts'
  parsers), the scripts' own declared options (a hook's ``options``, :func:`hook_options`) and every
  declared :class:`~audio_embeddings.backends.base.Option` (backends and shared stages,
  :func:`audio_embeddings.options.declared_options`);
* the README's model table, between ``<!-- models:begin -->`` and ``<!-- models:end -->``: one row per
  preset, or per run of neighbouring presets of one ``family``, with the geometry their backend classes
  state (:class:`audio_embeddings.registry.Preset`) and the scripts' default models.

After changing a preset, an option, a shared flag the wrappers take or a default, run (from the
repository root)::

    PYTHONPATH=python .venv/bin/python -m audio_embeddings.docs_tables --write

Without ``--write`` it changes nothing, names the stale files and exits 1 when there are any;
``tests/test_generated.py`` fails the same way. Importing this module imports no framework.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

#: The one command that rewrites every generated file.
REGENERATE = "PYTHONPATH=python .venv/bin/python -m audio_embeddings.docs_tables --write"
REPO_ROOT = Path(__file__).resolve().parents[2]
MATLAB_TABLE = Path("matlab") / "private" / "ae_options_table.m"
README = Path("README.md")
MODELS_BEGIN = "<!-- models:begin -->"
MODELS_END = "<!-- models:end -->"

#: Text the type of a shared flag is tried on, to read off what it takes (see :func:`value_kind`).
_PROBES = ("abc", "1.5", "2", "0", "-1")


# --- what the wrappers take ----------------------------------------------------------------------


def value_kind(convert: Callable[[str], Any] | None) -> str:
    """What a flag's ``type`` takes, by trying it: ``text`` (anything), ``number``/``integer`` with a bound
    (``number>0``, ``integer>=0``, ...), or ``value`` (something else: Python checks it)."""
    if convert is None:
        return "text"

    def takes(text: str) -> bool:
        try:
            convert(text)
        except Exception:  # noqa: BLE001 - argparse types raise ValueError, TypeError or ArgumentTypeError
            return False
        return True

    ok = {text: takes(text) for text in _PROBES}
    if ok["abc"]:
        return "text"
    if ok["1.5"]:
        base = "number"
    elif ok["2"]:
        base = "integer"
    else:
        return "value"
    if ok["-1"]:
        return base
    return f"{base}>=0" if ok["0"] else f"{base}>0"


def _parser_actions() -> list[tuple[Any, dict[str, argparse.Action]]]:
    """(ScriptDefaults, {flag: argparse action}) of every script the wrappers run."""
    from .cli import build_parser
    from .scripts import SCRIPTS

    found = []
    for defaults in SCRIPTS.values():
        parser = build_parser(defaults)
        found.append((defaults, {s: a for a in parser._actions for s in a.option_strings}))
    return found


def hook_options() -> list[Any]:
    """The scripts' own declared options: every :class:`~audio_embeddings.backends.base.Option` in the
    ``options`` of a hook of a script (:data:`audio_embeddings.scripts.SCRIPTS`, e.g. B4's Kaldi, VAD and
    scoring options in ``hooks.SpeakerHooks.options``), each flag once, in declaration order."""
    from .scripts import SCRIPTS

    found: dict[str, Any] = {}
    for defaults in SCRIPTS.values():
        for hook in defaults.hooks:
            for option in getattr(hook, "options", ()):
                found.setdefault(option.flag, option)
    return list(found.values())


def _option_kind(option: Any, *, wrapper: bool) -> str:
    """The table's kind of a declared option. A script's own option (``wrapper``) is checked and sent by the
    wrapper itself, so its numbers carry their bounds (:func:`value_kind`); the others are checked by Python."""
    if option.is_switch:
        return "switch"
    if option.choices:
        return "choice"
    if option.metavar and ("FILE" in option.metavar or "DIR" in option.metavar):
        return "path"
    return value_kind(option.type) if wrapper else "value"


def option_rows() -> list[dict[str, Any]]:
    """The rows of ``ae_options_table.m``: the wrappers' own flags, then every declared option.

    Each row: ``name`` (MATLAB), ``flag``, ``kind``, ``choices`` (tuple of str), ``default`` (Python's
    when every script has the same one, else None) and ``wrapper`` (True for :data:`~audio_embeddings.
    matlab.WRAPPER_FLAGS` and the scripts' own options (:func:`hook_options`), which the wrappers that take
    them check and send as flags; False for the backends' and shared stages' declared options, sent as
    ``--matlab-option NAME VALUE`` and checked by Python).
    """
    from .matlab import WRAPPER_FLAGS, WRAPPER_KINDS, matlab_name
    from .options import declared_options

    parsers = _parser_actions()
    rows = []
    for flag in WRAPPER_FLAGS:
        actions = [found[flag] for _, found in parsers if flag in found]
        if not actions:
            raise ValueError(f"{flag} (matlab.WRAPPER_FLAGS) is not a flag of the scripts' parser")
        action = actions[0]
        if action.nargs == 0:
            kind = "switch"
        elif action.choices:
            kind = "choice"
        else:
            kind = WRAPPER_KINDS.get(flag) or value_kind(action.type)
        defaults = {repr(a.default) for a in actions}
        rows.append(dict(name=matlab_name(flag), flag=flag, kind=kind,
                         choices=tuple(map(str, action.choices or ())),
                         default=action.default if len(defaults) == 1 else None, wrapper=True))
    for option in hook_options():
        rows.append(dict(name=option.matlab_name, flag=option.flag, kind=_option_kind(option, wrapper=True),
                         choices=tuple(map(str, option.choices or ())), default=option.default, wrapper=True))
    for _, option in declared_options():
        rows.append(dict(name=option.matlab_name, flag=option.flag, kind=_option_kind(option, wrapper=False),
                         choices=tuple(map(str, option.choices or ())), default=option.default, wrapper=False))
    names = [r["name"].lower() for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"two options share a MATLAB name: {sorted({n for n in names if names.count(n) > 1})}")
    return rows


def _m_literal(value: Any) -> str:
    """A MATLAB literal of a default: char, logical, number, or [] for None."""
    if value is None:
        return "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")
        return repr(value)
    if isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return "[" + " ".join(repr(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def matlab_options_table() -> str:
    """The text of ``matlab/private/ae_options_table.m``."""
    rows = option_rows()
    cells = [[_m_literal(r["name"]), _m_literal(r["flag"]), _m_literal(r["kind"]),
              _m_literal("|".join(r["choices"])), _m_literal(r["default"]), _m_literal(r["wrapper"])] for r in rows]
    widths = [max(len(c[i]) for c in cells) + 1 for i in range(len(cells[0]) - 1)]
    body = "\n".join("        " + "".join((c + ",").ljust(w + 1) for c, w in zip(row[:-1], widths)) + row[-1]
                     for row in cells)
    return f"""function t = ae_options_table()
%AE_OPTIONS_TABLE The wrappers' name-value options as Python declares them. GENERATED: do not edit.
%   T = AE_OPTIONS_TABLE() is a struct array, one element per option:
%     name     MATLAB name ('ChunkSeconds'; inputParser matches it case-insensitively)
%     flag     the command-line flag ('--chunk-seconds')
%     kind     'switch' | 'choice' | 'text' | 'name' (a file name, no folder) | 'path' (absolute when it
%              exists, else a preset name or hub id) | 'folder' (always made absolute) | 'number',
%              'integer' (with a bound: 'number>0', 'integer>=0', ...) | 'value' (Python checks it)
%     choices  1-by-K cell of char, the values of a 'choice' (else {{}})
%     default  Python's default where every script has the same one, else [] (the script's own)
%     wrapper  true: a shared flag, or a script's own option (B4's 'Vad', 'Score', ...), that the
%              wrappers taking it add with ae_add_options (checked by ae_check_option, sent as
%              FLAG VALUE by ae_cli_args, only when given); false: a model's or a shared stage's
%              option, sent as '--matlab-option NAME VALUE' and checked by Python
%   Written by python/audio_embeddings/docs_tables.py from matlab.WRAPPER_FLAGS and WRAPPER_KINDS,
%   the scripts' parsers, the scripts' hooks' declared options and every declared Option;
%   tests/test_generated.py fails when it is stale.
%   To rewrite it, from the repository root:
%     {REGENERATE}
persistent table
if isempty(table)
    rows = {{
{body}
    }};
    table = cell2struct(rows, {{'name', 'flag', 'kind', 'choices', 'default', 'wrapper'}}, 2);
    for k = 1:numel(table)
        if isempty(table(k).choices)
            table(k).choices = {{}};
        else
            table(k).choices = strsplit(table(k).choices, '|');
        end
    end
end
t = table;
end
"""


# --- the README's model table --------------------------------------------------------------------


def _script_label(prog: str) -> str:
    """``B1_model_perch.py`` -> ``B1``; ``embed.py`` stays."""
    match = re.match(r"(B\d+)_", prog)
    return match.group(1) if match else prog


def _defaults_of(preset: Any, scripts: Iterable[Any]) -> str:
    """`` (default of B2: `facebook/...`)`` for the scripts whose default model is this preset."""
    notes = []
    for script in scripts:
        if script.backend == preset.name or script.model == preset.name:
            notes.append(f"default of {_script_label(script.prog)}")
        elif script.backend is None and script.model == preset.checkpoint:
            notes.append(f"default of {_script_label(script.prog)}: `{script.model}`")
    return f" ({'; '.join(notes)})" if notes else ""


def rows_text(preset: Any) -> str:
    """What one row of the preset's output is: ``20 ms frames``, ``5 s windows at 32 kHz``, ``one per utterance``."""
    from .backends.base import HOP_SECONDS
    from .registry import backend_class, class_geometry

    cls = backend_class(preset)
    stride = preset.frame_stride_s
    if stride is None:
        return "one per utterance"
    if cls.framing != "windows":
        return f"{stride * 1000:g} ms frames"
    window = class_geometry(cls, "window_s")
    window = stride if not isinstance(window, (int, float)) or not window else window
    every = "" if math.isclose(window, stride) else f" every {stride:g} s"
    hop = " (`--hop-seconds`)" if HOP_SECONDS in cls.options else ""
    return f"{window:g} s windows{every} at {preset.sample_rate_hz / 1000:g} kHz{hop}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def readme_models_table(entries: Mapping[str, Any] | None = None) -> str:
    """The README's model table (markdown, without the markers) from the registry's presets."""
    from .registry import PRESETS
    from .scripts import SCRIPTS

    groups: list[list[Any]] = []
    for preset in (entries or PRESETS).values():
        if groups and preset.family is not None and groups[-1][-1].family == preset.family:
            groups[-1].append(preset)
        else:
            groups.append([preset])
    lines = ["| `--model` | what | rows | dim |", "| --- | --- | --- | --- |"]
    for group in groups:
        names = ", ".join(f"`{p.name}`{_defaults_of(p, SCRIPTS.values())}" for p in group)
        what = group[0].family if group[0].family is not None else group[0].description
        rows = " / ".join(dict.fromkeys(rows_text(p) for p in group))
        dims = "/".join(dict.fromkeys(str(p.embedding_dim) for p in group if p.embedding_dim))
        lines.append(f"| {_cell(names)} | {_cell(what)} | {_cell(rows)} | {dims} |")
    return "\n".join(lines) + "\n"


def readme_with_models_table(text: str) -> str:
    """``text`` (the README) with the block between the markers replaced by :func:`readme_models_table`.

    Raises
    ------
    ValueError
        The markers are missing or out of order.
    """
    begin, end = text.find(MODELS_BEGIN), text.find(MODELS_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{README}: no {MODELS_BEGIN} ... {MODELS_END} block for the model table")
    note = f"<!-- generated from registry.PRESETS by: {REGENERATE} -->"
    block = f"{MODELS_BEGIN}\n{note}\n\n{readme_models_table()}\n"
    return text[:begin] + block + text[end:]


# --- check and write -----------------------------------------------------------------------------


def expected_files(root: Path = REPO_ROOT) -> dict[Path, str]:
    """``{path: text it must hold}`` of every generated file under ``root`` (a checkout)."""
    root = Path(root)
    readme = (root / README).read_text(encoding="utf-8")
    return {root / MATLAB_TABLE: matlab_options_table(), root / README: readme_with_models_table(readme)}


def stale_files(root: Path = REPO_ROOT) -> list[Path]:
    """The generated files under ``root`` whose text is not what the declarations give."""
    stale = []
    for path, text in expected_files(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def main(argv: Iterable[str] | None = None) -> int:
    """``--write``: rewrite the stale generated files; otherwise name them and exit 1 when there are any."""
    parser = argparse.ArgumentParser(prog="python -m audio_embeddings.docs_tables",
                                     description="Check (default) or rewrite the files generated from the "
                                                 "Python declarations.")
    parser.add_argument("--write", action="store_true", help="rewrite the stale files")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the checkout (default: %(default)s)")
    args = parser.parse_args(None if argv is None else list(argv))
    expected = expected_files(args.root)
    stale = [p for p in stale_files(args.root)]
    for path in stale:
        if args.write:
            path.write_text(expected[path], encoding="utf-8")
            print(f"wrote {path}")
        else:
            print(f"stale: {path}", file=sys.stderr)
    if stale and not args.write:
        print(f"regenerate with: {REGENERATE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
