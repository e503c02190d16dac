"""The repository's environment is a full install: after ``bash .ci/ensure-venv.sh`` (``.venv-setup.sh``) the
package is installed editable with its console scripts, next to torch's ``torchrun``.

These run the real ``.venv`` executables; they are skipped (with the reason) where ``.venv`` does not hold
the editable install, e.g. a checkout whose ``.venv`` was made before the set-up installed the package.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from audio_embeddings import commands
from audio_embeddings.registry import model_table
from conftest import REPO

VENV_BIN = REPO / ".venv" / "bin"


def user_env() -> dict[str, str]:
    """A user's shell: no PYTHONPATH (the package must come from the install), no other venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def venv_run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=user_env(), timeout=300,
                          cwd=str(cwd or Path("/")))


@pytest.fixture(scope="module")
def venv_install() -> Path:
    """``.venv/bin`` when ``.venv`` holds the editable install of this checkout (else skip, saying why)."""
    python = VENV_BIN / "python"
    if not python.is_file():
        pytest.skip(f"no {python}: run bash .ci/ensure-venv.sh")
    if not (VENV_BIN / "audio-embeddings").is_file():
        pytest.skip(f"{VENV_BIN} has no audio-embeddings command: .venv predates the editable install; run "
                    "bash .ci/ensure-venv.sh")
    where = venv_run(python, "-c", "import audio_embeddings, os; print(os.path.realpath(audio_embeddings.__file__))")
    if where.returncode != 0 or not where.stdout.strip().startswith(str((REPO / "python").resolve())):
        pytest.skip(f".venv's audio_embeddings is not this checkout's ({where.stdout.strip() or where.stderr[-200:]})")
    return VENV_BIN


@pytest.mark.slow
def test_the_venv_imports_the_package_from_any_folder(venv_install, tmp_path):
    proc = venv_run(venv_install / "python", "-c", "import audio_embeddings; print(audio_embeddings.__version__)",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == commands.package_version()


@pytest.mark.slow
def test_the_console_scripts_work(venv_install, tmp_path):
    listed = venv_run(venv_install / "audio-embeddings", "--list-models", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == model_table().strip()  # the same table as `embed --list-models`
    runner = venv_run(venv_install / "perch-runner", "--help", cwd=tmp_path)
    assert runner.returncode == 0, runner.stderr
    assert "generate" in runner.stdout and "classify" in runner.stdout


@pytest.mark.slow
def test_python_m_audio_embeddings_version_and_torchrun(venv_install, tmp_path):
    version = venv_run(venv_install / "python", "-m", "audio_embeddings", "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"audio-embeddings {commands.package_version()}"
    torchrun = venv_install / "torchrun"
    assert torchrun.is_file() and os.access(torchrun, os.X_OK)
    assert "torch" in torchrun.read_text(errors="replace")  # torch's entry point, not ours


def test_top_level_list_models_and_version_in_process(capsys):
    """``audio-embeddings --list-models`` prints what ``embed --list-models`` prints; ``--version`` the version."""
    assert commands.main(["--list-models"]) == 0
    top = capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        commands.main(["embed", "--list-models"])
    assert done.value.code == 0
    assert capsys.readouterr().out == top
    assert commands.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"audio-embeddings {commands.package_version()}"


def test_the_setup_script_installs_the_package_editable_with_its_scripts():
    """.venv-setup.sh installs ``-e .`` without dependencies or build isolation (offline-safe), once."""
    text = (REPO / ".venv-setup.sh").read_text()
    assert "--no-deps --no-build-isolation -e ." in text
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'audio-embeddings = "audio_embeddings.commands:main"' in pyproject
    assert 'perch-runner = "audio_embeddings.runner.cli:main"' in pyproject
