"""Shared fixtures: the package on sys.path, tiny saved models, and audio files written on the fly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# No test reaches a network: the Hugging Face libraries read these when first imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
PYTHON_DIR = REPO / "python"
for p in (str(PYTHON_DIR), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from tiny_models import build_tiny_model  # noqa: E402

DEMO_CLIPS = sorted((REPO / "data").glob("*.wav"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Factory: ``tiny_model(kind)`` -> directory of a saved tiny model (built once per kind)."""
    cache: dict[str, Path] = {}

    def make(kind: str = "wav2vec2") -> Path:
        if kind not in cache:
            cache[kind] = build_tiny_model(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return cache[kind]

    return make


@pytest.fixture(scope="session")
def tiny_perch_model(tmp_path_factory):
    """A tiny SavedModel with Perch 2.0's signature (tests/tiny_perch.py); skips without TensorFlow."""
    pytest.importorskip("tensorflow")
    import tiny_perch

    return tiny_perch.build_savedmodel(tmp_path_factory.mktemp("tiny-perch") / "perch_v2")


@pytest.fixture(scope="session")
def tiny_metis_model(tmp_path_factory):
    """Paths of a tiny Metis stack (tests/tiny_metis.py): ``model`` (w2v-bert dir), ``codec``, ``stats``."""
    import tiny_metis

    return tiny_metis.build(tmp_path_factory.mktemp("tiny-metis"))


@pytest.fixture(scope="session")
def tiny_speaker_checkpoints(tmp_path_factory):
    """Tiny ERes2NetV2 and CAM++ checkpoints with 3D-Speaker's key names: {"eres2netv2": path, "campplus": path}."""
    import torch
    from test_speaker_models import FAMILY, TINY_CKPT, random_state

    root = tmp_path_factory.mktemp("tiny-speaker")
    paths = {}
    for family, cfg in TINY_CKPT.items():
        paths[family] = root / f"tiny_{family}.ckpt"
        torch.save(random_state(FAMILY[family][1](**cfg), seed=6), paths[family])
    return paths


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory):
    """Factory: ``tiny_hf_model("whisper" | "clap")`` -> folder of a tiny saved model (tests/tiny_hf.py)."""
    import tiny_hf

    cache: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = tiny_hf.build(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return cache[kind]

    return make


#: What every preset loads in the tests instead of its published checkpoint: (fixture, argument).
#: ``None`` as the fixture: the weights ship in a package (GE2E, BirdNET).
STAND_INS = {
    "wav2vec2": ("tiny_model", "wav2vec2-stable"), "wav2vec2-base": ("tiny_model", "wav2vec2"),
    "hubert-base": ("tiny_model", "hubert"), "hubert-large": ("tiny_model", "hubert"),
    "wavlm-base-plus": ("tiny_model", "wavlm"), "wavlm-large": ("tiny_model", "wavlm"),
    "data2vec-audio-base": ("tiny_model", "data2vec-audio"),
    "perch_v2": ("tiny_perch_model", None), "perch_v2_cpu": ("tiny_perch_model", None),
    "metis": ("tiny_metis_model", None),
    "eres2netv2": ("tiny_speaker_checkpoints", "eres2netv2"),
    "eres2netv2_w24s4ep4": ("tiny_speaker_checkpoints", "eres2netv2"),
    "campplus": ("tiny_speaker_checkpoints", "campplus"),
    "whisper-base": ("tiny_hf_model", "whisper"), "whisper-small": ("tiny_hf_model", "whisper"),
    "whisper-medium": ("tiny_hf_model", "whisper"), "whisper-large-v3": ("tiny_hf_model", "whisper"),
    "clap-htsat-unfused": ("tiny_hf_model", "clap"), "larger-clap-general": ("tiny_hf_model", "clap"),
    "birdnet": (None, None), "ge2e": (None, None),
    "ast-audioset": ("tiny_hf_model", "ast"),
}


@pytest.fixture
def stand_in(request):
    """Factory: ``stand_in(preset)`` -> (source, loader options) of the preset's tiny local stand-in."""

    def make(name: str) -> tuple[str | None, dict]:
        fixture, arg = STAND_INS[name]
        if fixture is None:
            if name == "birdnet":
                from helpers import require_birdnet_model

                require_birdnet_model()
            return None, {}
        value = request.getfixturevalue(fixture)
        if fixture == "tiny_metis_model":
            return str(value["model"]), {k: str(v) for k, v in value.items() if k != "model"}
        if fixture == "tiny_speaker_checkpoints":
            return str(value[arg]), {}
        return str(value(arg) if callable(value) else value), {}

    return make


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts the scripts, Octave, torchrun or pip as subprocesses, or takes "
                                       "more than a few seconds; ./test.sh -m 'not slow' leaves these out")


#: Slow tests in modules whose own decorators do not (yet) say so, by module and test function name:
#: marked slow at collection, exactly as ``@pytest.mark.slow`` would. ``"*"``: every test of the module.
SLOW_ELSEWHERE = {
    "test_matlab.py": {"*"},  # GNU Octave drives the wrappers
    "test_align.py": {"test_align_script_on_a_mat_written_earlier", "test_align_script_on_a_npy_and_its_errors",
                      "test_b2_with_tr_hrf_and_delays_writes_the_aligned_outputs"},  # the scripts
    "test_contract.py": {"test_a_plugin_backend_option_reaches_help_loader_fingerprint_and_matlab_names",
                         "test_an_option_the_chosen_backend_does_not_take_is_refused"},  # embed.py
    "test_hf_loader.py": {"test_every_transformers_family_gives_the_same_one_line_without_network",
                          "test_layer_selection_errors_are_identical_for_wav2vec2_and_whisper",
                          "test_a_cached_hub_id_loads_offline_and_records_its_revision"},  # embed.py
    "test_ast.py": {"test_embed_py_writes_the_reference_rows"},  # embed.py
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = SLOW_ELSEWHERE.get(item.path.name)
        function = getattr(item, "originalname", item.name)
        if names and ("*" in names or function in names) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


# --- a hung test names its hung subprocesses ----------------------------------------------------
# pytest-timeout (``timeout`` in pyproject.toml's [tool.pytest.ini_options]) fails a test that runs
# past its limit. Its SIGALRM handler is replaced here by one that also names every process the test
# started that is still running (pid and command line, from /proc), kills them, and says so in the
# failure line, so a hung ``embed.py``, Octave or torchrun child is named in the summary and leaves
# nothing behind to slow the tests after it.


def _descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (Linux /proc; [] elsewhere), parents before their children."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop(0)
        kids: list[int] = []
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids += [int(p) for p in children.read_text().split()]
            except (OSError, ValueError):
                pass
        found += kids
        todo += kids
    return found


def _command_line(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    return text if len(text) <= 300 else text[:297] + "..."


def _kill_new_children(before: set[int]) -> list[str]:
    """SIGKILL the descendants of this process that are not in ``before``; their descriptions."""
    import signal

    described = []
    for pid in [p for p in _descendants(os.getpid()) if p not in before]:
        described.append(f"pid {pid}: {_command_line(pid)}")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return described


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout's signal method, naming (and killing) the subprocesses still running at the timeout."""
    import signal
    import threading

    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own handling (the thread method dumps the stacks and exits)
    before = set(_descendants(os.getpid()))

    def handler(signum, frame):
        __tracebackhide__ = True
        hung = _kill_new_children(before)
        test_frame = frame  # the innermost frame in the test's file (the line it waits on)
        while test_frame is not None and Path(test_frame.f_code.co_filename) != Path(item.path):
            test_frame = test_frame.f_back
        shown = test_frame or frame
        where = f"{Path(shown.f_code.co_filename).name}:{shown.f_lineno}" if shown is not None else "?"
        running = ("still running, killed: " + " | ".join(hung)) if hung else "no subprocess of the test running"
        pytest.fail(f"Timeout (>{settings.timeout:g}s, pytest-timeout): {running}; the test was at {where}",
                    pytrace=True)

    def cancel():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True
