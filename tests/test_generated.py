"""Declared once in Python, generated everywhere else.

The MATLAB options table and the README's model table are written by ``audio_embeddings.docs_tables``
from the Python declarations: each must equal what the declarations give now, a hand-edited copy
must be caught, and the wrappers and presets must not keep a second copy of what is declared
elsewhere (a wrapper default, a backend class's rate, stride or width).
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import sys
from dataclasses import MISSING
from pathlib import Path

import pytest

from audio_embeddings import docs_tables, registry
from audio_embeddings.device import DEVICES, DTYPES
from audio_embeddings.scripts import SCRIPTS
from conftest import PYTHON_DIR, REPO

MATLAB = REPO / "matlab"
WRAPPERS = sorted(MATLAB.glob("*.m"))


def _rows() -> dict[str, dict]:
    return {r["name"]: r for r in docs_tables.option_rows()}


@pytest.mark.parametrize("relative", [docs_tables.MATLAB_TABLE, docs_tables.README], ids=str)
def test_each_generated_file_is_what_the_declarations_give(relative):
    path = REPO / relative
    expected = docs_tables.expected_files(REPO)[path]
    actual = path.read_text(encoding="utf-8") if path.is_file() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True), str(relative),
                                                 "generated"))[:40])
        pytest.fail(f"{relative} is stale; regenerate it with\n    {docs_tables.REGENERATE}\n{diff}", pytrace=False)


def test_a_hand_edited_copy_is_caught_and_rewritten(tmp_path, capsys):
    for relative in (docs_tables.MATLAB_TABLE, docs_tables.README):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, tmp_path / relative)
    table = tmp_path / docs_tables.MATLAB_TABLE
    text = table.read_text()
    edited = re.sub(r"('--device',\s+'choice',\s+)'auto\|cpu\|cuda\|mps'", r"\1'auto|cpu|cuda'", text)
    assert edited != text
    table.write_text(edited)
    readme = tmp_path / docs_tables.README
    readme.write_text(readme.read_text().replace("| 1536 |", "| 1024 |", 1))

    assert sorted(docs_tables.stale_files(tmp_path)) == sorted([table, readme])
    assert docs_tables.main(["--root", str(tmp_path)]) == 1
    assert docs_tables.REGENERATE in capsys.readouterr().err
    assert docs_tables.main(["--root", str(tmp_path), "--write"]) == 0
    assert docs_tables.stale_files(tmp_path) == []
    assert "'auto|cpu|cuda|mps'" in table.read_text()


def test_the_readme_needs_its_markers(tmp_path):
    with pytest.raises(ValueError, match="models:begin"):
        docs_tables.readme_with_models_table("# no table here\n")


def test_the_matlab_table_holds_python_s_names_kinds_choices_and_defaults():
    rows = _rows()
    assert rows["Device"]["choices"] == DEVICES and rows["Device"]["default"] == "auto"
    assert rows["Dtype"]["choices"] == DTYPES and rows["Dtype"]["default"] == "float32"
    assert rows["MatVersion"]["choices"] == ("5", "7.3", "auto")
    assert (rows["ChunkSeconds"]["kind"], rows["ContextSeconds"]["kind"], rows["Channel"]["kind"]) == \
        ("number>0", "number>=0", "integer>=0")  # the last two: matlab.WRAPPER_KINDS (the parser takes any)
    assert (rows["Overwrite"]["kind"], rows["Overwrite"]["default"]) == ("switch", False)
    assert (rows["OutputDir"]["kind"], rows["Model"]["kind"], rows["Basename"]["kind"]) == ("folder", "path", "name")
    assert rows["Model"]["default"] is None  # each script has its own: not restated in MATLAB
    from audio_embeddings.options import declared_options

    for _, option in declared_options():  # every model and stage option, sent as --matlab-option
        row = rows[option.matlab_name]
        assert (row["flag"], row["wrapper"]) == (option.flag, False)
        assert row["choices"] == tuple(map(str, option.choices or ()))
    assert rows["HRF"]["kind"] == "choice" and rows["Codes"]["kind"] == "switch" and rows["Codec"]["kind"] == "path"


@pytest.mark.parametrize("text,kind", [(str, "text"), (float, "number"), (int, "integer"), (None, "text")])
def test_a_flag_s_kind_is_read_off_its_type(text, kind):
    assert docs_tables.value_kind(text) == kind


def test_value_kinds_of_bounded_types():
    from audio_embeddings.backends.base import layers_spec, nonnegative_int, positive_float

    assert docs_tables.value_kind(positive_float) == "number>0"
    assert docs_tables.value_kind(nonnegative_int) == "integer>=0"
    assert docs_tables.value_kind(layers_spec) != "text"


def _wrapper_script(path: Path) -> str:
    return re.search(r"'(\w+\.py)'", path.read_text()).group(1)


@pytest.mark.parametrize("path", WRAPPERS, ids=lambda p: p.name)
def test_a_wrapper_holds_no_default_of_python_s(path):
    """Shared options come from ae_add_options (default [], not sent); no other addParameter but 'Python'."""
    code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("%"))
    assert re.findall(r"addParameter\('(\w+)'", code) == ["Python"]
    listed = re.search(r"ae_add_options\(p, \{(.*?)\}\)", code, re.S)
    assert listed, f"{path.name} takes no shared options through ae_add_options"
    names = re.findall(r"'(\w+)'", listed.group(1))
    rows = _rows()
    assert names and all(rows[n]["wrapper"] for n in names)


def _help_options(path: Path) -> dict[str, tuple[str, str | None]]:
    """{name: (text, default in parentheses at the end or None)} of the option lines of a wrapper's help."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"%\s{3,}'(\w+)'\s+(.*)$", line)
        if match and match.group(1) not in found:
            text = match.group(2).rstrip()
            default = re.search(r"\(([^()]*)\)$", text)
            found[match.group(1)] = (text[:default.start()] if default else text, default.group(1) if default else None)
    return found


@pytest.mark.parametrize("path", WRAPPERS, ids=lambda p: p.name)
def test_a_wrapper_s_help_states_python_s_defaults_and_choices(path):
    """The defaults and choices a wrapper's help names are those of the Python script it runs."""
    script = next(s for s in SCRIPTS.values() if s.prog == _wrapper_script(path))
    from audio_embeddings.cli import build_parser

    actions = {s: a for a in build_parser(script)._actions for s in a.option_strings}
    python_default = {
        "Model": {script.model, f"'{script.model}'"},
        "OutputDir": {f"<repo>/Models/{script.output_subdir}"},
        "Basename": {"the audio file's name"} if script.basename is None else {f"'{script.basename}'"},
        "ChunkSeconds": {f"{script.chunk_s:g}"},
        "ContextSeconds": {f"{script.context_s:g}"},
        "Device": {f"'{actions['--device'].default}'"},
        "Dtype": {f"'{actions['--dtype'].default}'"},
        "MatVersion": {f"'{actions['--mat-version'].default}'"},
    }
    rows = _rows()
    checked = 0
    for name, (text, default) in _help_options(path).items():
        if default is not None and name in python_default:
            assert default in python_default[name], f"{path.name}: '{name}' default ({default}) is not Python's"
            checked += 1
        if name in rows and rows[name]["kind"] == "choice" and "|" in text:
            said = {t.strip().strip("'") for t in text.split("|")}
            assert said == set(rows[name]["choices"]), f"{path.name}: '{name}' choices {said}"
    assert checked, f"{path.name}: no default of a shared option in its help"


def test_every_preset_takes_the_geometry_its_class_states():
    for name, preset in registry.PRESETS.items():
        cls = registry.backend_class(preset)
        for attr in registry.GEOMETRY:
            stated = registry.class_geometry(cls, attr)
            if stated is MISSING:
                continue
            assert getattr(preset, attr) == stated, f"preset {name}: {attr} differs from {cls.__name__}'s"
            given = preset.__dict__.get(attr, registry.FROM_CLASS)
            assert given is registry.FROM_CLASS, (f"preset {name} repeats {attr}={given!r}, which {cls.__name__} "
                                                  "states: leave it out of the preset")
        assert isinstance(preset.sample_rate_hz, int) and preset.sample_rate_hz > 0
        assert (preset.frame_stride_s is None) == (cls.framing == "utterance"), name


def test_a_preset_whose_class_knows_the_rate_only_once_loaded_must_give_it():
    preset = registry.Preset(name="x", module="hf_wav2vec2", cls="HFWav2Vec2Backend", checkpoint="a/b",
                             output_subdir="x", description="x")
    with pytest.raises(ValueError, match="sample_rate_hz"):
        _ = preset.sample_rate_hz
    assert preset.embedding_dim is None  # unknown width: "depends on the checkpoint"
    ge2e = registry.Preset(name="g", module="ge2e", cls="GE2EBackend", checkpoint=None, output_subdir="g",
                           description="g")
    assert (ge2e.sample_rate_hz, ge2e.frame_stride_s, ge2e.embedding_dim) == (16000, 0.77, 256)


def test_list_models_shows_each_preset_s_geometry():
    lines = registry.model_table(registry.PRESETS).splitlines()
    assert lines[0].split()[:5] == ["model", "dim", "rate_hz", "stride_s", "offline"]
    by_name = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(by_name) == set(registry.PRESETS)
    for name, preset in registry.PRESETS.items():
        stride = "utterance" if preset.frame_stride_s is None else f"{preset.frame_stride_s:g}"
        assert by_name[name][1:5] == [str(preset.embedding_dim or "?"), str(preset.sample_rate_hz), stride,
                                      "yes" if preset.offline else "no"]


def test_generating_imports_no_framework():
    code = ("import sys; from audio_embeddings import docs_tables as d; d.matlab_options_table(); "
            "d.readme_models_table(); print([m for m in ('torch', 'tensorflow', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(PYTHON_DIR)})
    assert out.stdout.strip() == "[]"
