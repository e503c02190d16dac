"""Packaging: pyproject.toml installs the package (plain and editable) into a fresh venv; commands dispatch."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import audio_embeddings
from audio_embeddings import commands, scripts
from conftest import PYTHON_DIR, REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: Frameworks and optional packages the light core must never import.
HEAVY = ("torch", "tensorflow", "transformers", "onnxruntime", "kagglehub", "huggingface_hub", "librosa", "pandas",
         "matplotlib", "sklearn", "pyarrow", "safetensors", "onnx")


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH and no virtual environment leaking in: what a user's shell would have."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", **extra)
    return env


def build_tools(tmp: Path) -> Path:
    """A folder with this interpreter's setuptools and wheel (links), for --no-build-isolation in a fresh venv
    (Python's bundled setuptools is too old to build wheels by itself; the fresh venv gets nothing else)."""
    folder = tmp / "build-tools"
    folder.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in ("setuptools", "pkg_resources", "_distutils_hack", "wheel"):
        if (site / name).exists():
            (folder / name).symlink_to(site / name)
    if not (folder / "setuptools").exists():
        pytest.skip("setuptools is not installed here")
    return folder


def fresh_venv(path: Path) -> Path:
    """A plain virtual environment (no system site-packages) made by this Python; returns its interpreter."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
    return path / "bin" / "python"


def source_copy(tmp: Path) -> Path:
    """What a clone holds for building: pyproject.toml, README.md and python/audio_embeddings (no caches)."""
    src = tmp / "src"
    (src / "python").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(PYTHON_DIR / "audio_embeddings", src / "python" / "audio_embeddings",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_install_into_a_fresh_venv_and_import_outside_the_repo(tmp_path, editable):
    python = fresh_venv(tmp_path / "venv")
    src = source_copy(tmp_path)
    env = clean_env(PYTHONPATH=str(build_tools(tmp_path)))
    args = ["-e", str(src)] if editable else [str(src)]
    proc = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", *args],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    code = "import audio_embeddings as ae; print(ae.__version__); print(ae.__file__)"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=clean_env(), cwd=outside,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    version, location = proc.stdout.split()
    assert version == audio_embeddings.__version__
    expected = src / "python" / "audio_embeddings" if editable else tmp_path / "venv" / "lib"
    assert Path(location).is_relative_to(expected), location
    for exe in ("audio-embeddings", "perch-runner"):
        assert (tmp_path / "venv" / "bin" / exe).is_file()
    proc = subprocess.run([str(tmp_path / "venv" / "bin" / "audio-embeddings"), "--version"], capture_output=True,
                          text=True, env=clean_env(), cwd=outside, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"audio-embeddings {audio_embeddings.__version__}"
    if not editable:
        installed = Path(location).parent
        for sub in ("backends", "corpus", "outputs", "runner"):
            assert (installed / sub / "__init__.py").is_file(), sub


def test_pyproject_declares_the_package_its_version_commands_and_extras():
    project = PYPROJECT["project"]
    assert project["name"] == "audio-embeddings" and project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "audio_embeddings.__version__"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"": "python"}
    for name, target in project["scripts"].items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(__import__(module, fromlist=[attribute]), attribute)), name
    core = {req.split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in project["dependencies"]}
    assert core == {"numpy", "scipy", "h5py", "soundfile", "soxr", "tqdm", "pyyaml", "threadpoolctl"}
    extras = project["optional-dependencies"]
    assert {"torch", "tf", "birdnet", "speaker", "hoplite", "runner", "plot", "all"} <= set(extras)
    assert "perch-hoplite==1.0.2" in extras["hoplite"]


def test_the_torch_range_accepts_the_installed_cpu_build():
    torch = pytest.importorskip("torch")
    specifiers = pytest.importorskip("packaging.specifiers")
    version = pytest.importorskip("packaging.version")
    spec = next(r for r in PYPROJECT["project"]["optional-dependencies"]["torch"] if r.startswith("torch"))
    assert "+" not in spec and "cu" not in spec
    assert specifiers.SpecifierSet(spec.removeprefix("torch")).contains(version.Version(torch.__version__).public)


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audio_embeddings", *args], capture_output=True, text=True,
                          env=clean_env(PYTHONPATH=str(PYTHON_DIR)), timeout=300)


@pytest.mark.slow
def test_python_m_audio_embeddings_lists_and_dispatches_the_commands():
    proc = run_module("--help")
    assert proc.returncode == 0
    for name in commands.COMMANDS:
        assert f"\n  {name} " in proc.stdout
    proc = run_module("perch", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: audio-embeddings perch")
    assert "--force_10sec" in proc.stdout and "--duration_sec" in proc.stdout  # B1's own flags
    proc = run_module("runner", "--help")
    assert proc.returncode == 0 and "generate" in proc.stdout
    proc = run_module("nonsense")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown command 'nonsense'")
    assert run_module().returncode == 2


@pytest.mark.slow
def test_a_command_runs_its_script(tmp_path):
    pytest.importorskip("resemblyzer")
    from conftest import DEMO_CLIPS

    status = commands.main(["embed", str(DEMO_CLIPS[0]), "--model", "ge2e", "--device", "cpu", "--output-dir",
                            str(tmp_path), "--quiet"])
    assert status == 0 and (tmp_path / f"{DEMO_CLIPS[0].stem}.npy").is_file()


def test_every_script_is_defined_in_the_package():
    """python/B*.py and embed.py keep the definitions of audio_embeddings.scripts (no drift while both exist)."""
    sys.path.insert(0, str(PYTHON_DIR))
    import B1_model_perch
    import B2_model_wav2vec2
    import B3_model_metis
    import B4_model_speaker
    import embed

    def comparable(defaults):
        hooks = tuple((type(h).__name__, sorted(vars(h).items())) for h in defaults.hooks)
        return dataclasses.replace(defaults, hooks=hooks)

    pairs = {B1_model_perch: scripts.PERCH, B2_model_wav2vec2: scripts.WAV2VEC2, B3_model_metis: scripts.METIS,
             B4_model_speaker: scripts.SPEAKER, embed: scripts.EMBED}
    for module, defaults in pairs.items():
        assert comparable(module.DEFAULTS) == comparable(defaults), module.__name__
    assert scripts.chunking_for("metis") == (30.0, 5.0) and scripts.chunking_for("ge2e") == (20.0, 2.0)


def imported_after(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env=clean_env(PYTHONPATH=str(PYTHON_DIR)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_light_core_imports_no_optional_package():
    code = ("import audio_embeddings, audio_embeddings.api, audio_embeddings.commands, audio_embeddings.hub, "
            "audio_embeddings.plots, audio_embeddings.scripts, audio_embeddings.corpus.engine, "
            "audio_embeddings.outputs.contract, audio_embeddings.cli")
    assert imported_after(code) == []


def test_building_every_command_parser_imports_no_framework():
    """``pip install .`` without [torch]: ``audio-embeddings <command> --help`` must still work."""
    code = ("from audio_embeddings.cli import build_parser\nfrom audio_embeddings.scripts import SCRIPTS\n"
            "for defaults in SCRIPTS.values():\n    build_parser(defaults)")
    assert imported_after(code) == []
