"""First run without network: one line within seconds naming the missing model or file and the flag for a local copy."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import hub
from audio_embeddings.cli import main
from audio_embeddings.scripts import EMBED, METIS, PERCH
from conftest import PYTHON_DIR

DEFAULT_W2V = "facebook/wav2vec2-large-xlsr-53"


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("first-run") / "tone.wav"
    t = np.arange(16000 * 2) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Every TCP connection fails (as on a machine without network)."""
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def fresh_log_handler():
    """The CLI's log handler writes to the sys.stderr of the call that made it: drop it after each test,
    so the next test's captured stderr gets the messages."""
    yield
    logger = logging.getLogger("audio_embeddings")
    for handler in [h for h in logger.handlers if getattr(h, "_audio_embeddings", False)]:
        logger.removeHandler(handler)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_default_wav2vec2_id_fails_fast_with_one_line_when_the_hub_is_unreachable(wav, tmp_path):
    """HF_HUB_OFFLINE unset, the endpoint refuses connections, an empty cache: the B2 default model."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(PYTHON_DIR))
    driver = (
        "import sys, time\n"
        "import torch, transformers  # imported before the clock starts: the load itself is timed\n"
        "from audio_embeddings.cli import main\n"
        "from audio_embeddings.scripts import WAV2VEC2\n"
        "t0 = time.perf_counter()\n"
        f"status = main(WAV2VEC2, [{str(wav)!r}, '--output-dir', {str(tmp_path / 'out')!r}])\n"
        "print(f'ELAPSED {time.perf_counter() - t0:.3f}')\n"
        "sys.exit(status)\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, env=env, timeout=120)
    wall = time.perf_counter() - t0
    elapsed = float(proc.stdout.split("ELAPSED")[1])
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert elapsed < 10.0, f"took {elapsed:.1f} s to fail"
    assert wall < 60.0
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and DEFAULT_W2V in lines[0] and "--model PATH" in lines[0]
    assert "not in the local cache" in lines[0] and "127.0.0.1:9 is unreachable" in lines[0]
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_hub_id_with_downloads_off_names_the_switch(wav, tmp_path, capsys):
    """conftest sets HF_HUB_OFFLINE=1: the message says so instead of blaming the network."""
    status = main(EMBED, [str(wav), "--model", "facebook/wav2vec2-base", "--output-dir", str(tmp_path)])
    lines = error_lines(capsys.readouterr().err)
    assert status == 2 and len(lines) == 1
    assert "facebook/wav2vec2-base: not in the local cache and downloads are off (HF_HUB_OFFLINE" in lines[0]
    assert "--model PATH" in lines[0] and "--model ge2e" in lines[0]


def test_metis_without_stats_names_the_stats_flag(wav, tiny_metis_model, tmp_path, monkeypatch, no_network, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    t0 = time.perf_counter()
    status = main(METIS, [str(wav), "--model", str(tiny_metis_model["model"]), "--codec",
                          str(tiny_metis_model["codec"]), "--output-dir", str(tmp_path / "out")])
    lines = error_lines(capsys.readouterr().err)
    assert status == 2 and len(lines) == 1, lines
    assert time.perf_counter() - t0 < 10.0
    assert "wav2vec2bert_stats.pt: not in the local cache and github.com is unreachable" in lines[0]
    assert "--stats FILE" in lines[0] and "Amphion" in lines[0]  # the URL to fetch it from


def test_metis_without_codec_names_the_codec_flag_and_file(wav, tiny_metis_model, tmp_path, capsys):
    status = main(METIS, [str(wav), "--model", str(tiny_metis_model["model"]), "--stats",
                          str(tiny_metis_model["stats"]), "--output-dir", str(tmp_path / "out")])
    lines = error_lines(capsys.readouterr().err)
    assert status == 2 and len(lines) == 1, lines
    assert "amphion/MaskGCT: not in the local cache" in lines[0]
    assert "semantic_codec/model.safetensors" in lines[0] and "--codec FILE" in lines[0]


def test_a_kaggle_handle_without_network_gives_one_line(wav, tmp_path, monkeypatch, no_network, capsys):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    t0 = time.perf_counter()
    status = main(PERCH, ["--input", str(wav), "--output", str(tmp_path / "out"), "--model", "perch_v2_cpu"])
    lines = error_lines(capsys.readouterr().err)
    assert status == 2 and len(lines) == 1, lines
    assert time.perf_counter() - t0 < 10.0
    assert "google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu: not in the local cache" in lines[0]
    assert "is unreachable" in lines[0] and "--model PATH" in lines[0] and "--model birdnet" in lines[0]


def test_a_cached_kaggle_model_is_used_without_network(tmp_path, monkeypatch, no_network):
    handle = "google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu"
    root = tmp_path / "kagglehub" / "models" / handle
    for version in (1, 2, 3):
        (root / str(version)).mkdir(parents=True)
    (root / "1.complete").touch()
    (root / "2.complete").touch()  # version 3 is an interrupted download: no marker
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    assert hub.kaggle_model(handle) == root / "2"
    assert hub.kaggle_cached(handle + "/1") == root / "1"
    assert hub.kaggle_cached("not/a/handle") is None


def test_device_cuda_without_a_gpu_gives_one_line(wav, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("resemblyzer")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    status = main(EMBED, [str(wav), "--model", "ge2e", "--device", "cuda", "--output-dir", str(tmp_path)])
    lines = error_lines(capsys.readouterr().err)
    assert status == 2 and len(lines) == 1, lines
    assert "--device cuda" in lines[0] and "GPU" in lines[0]


def test_no_gpu_message_says_why_and_what_to_do(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    message = hub.no_gpu_message("cuda")
    assert message.startswith("--device cuda requested but torch sees no CUDA GPU")
    assert "CUDA_VISIBLE_DEVICES" in message and message.endswith("use --device cpu or --device auto")
    assert "\n" not in message


def test_the_probe_never_waits_longer_than_its_timeout(monkeypatch):
    """A lookup or connect that hangs (a black-holed network) is cut off at timeout_s."""
    def hang(*args, **kwargs):
        time.sleep(5.0)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    assert hub.host_reachable("https://huggingface.co", timeout_s=0.3) is False
    assert time.perf_counter() - t0 < 1.5


def test_the_probe_goes_to_the_proxy_the_environment_names(monkeypatch):
    seen = []

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def connect(address, timeout=None):
        seen.append(address)
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert hub.host_reachable("https://huggingface.co") is True
    assert seen == [("proxy.example", 3128)]


def test_hf_download_leaves_local_paths_and_other_errors_alone(tmp_path):
    with hub.hf_download(str(tmp_path), local_only=False) as local_only:
        assert local_only is False
    with pytest.raises(ValueError, match="not a download problem"):
        with hub.hf_download("owner/model"):
            raise ValueError("not a download problem")
    with pytest.raises(hub.ModelUnavailable, match=r"^owner/model: not in the local cache and downloads are off"):
        with hub.hf_download("owner/model") as local_only:
            assert local_only is True  # conftest: HF_HUB_OFFLINE=1
            raise FileNotFoundError("no such file in the cache\nsecond line")


def test_offline_error_is_one_line_with_the_flag():
    err = hub.offline_error("owner/name", reason="example.org is unreachable")
    assert isinstance(err, OSError) and "\n" not in str(err)
    assert str(err) == ("owner/name: not in the local cache and example.org is unreachable; download it on a machine "
                        "with network (hf download owner/name --local-dir <folder>) and pass the folder with "
                        "--model PATH, or use an offline model (--model birdnet, --model ge2e)")
    assert str(hub.offline_error("x.pt", flag="--stats", local_hint="https://e.org/x.pt")).endswith(
        "and pass the file with --stats FILE")


def test_a_missing_optional_package_names_its_extra():
    hint = hub.install_hint(ModuleNotFoundError("No module named 'transformers'", name="transformers"))
    assert hint == "No module named 'transformers' (pip install 'audio-embeddings[torch]')"
    assert hub.install_hint(ImportError("No module named 'x.y'", name="x.y")) == "No module named 'x.y'"
    assert "[tf]" in hub.install_hint(ModuleNotFoundError("no", name="tensorflow.python"))


def test_a_broken_cached_file_is_not_called_missing():
    with pytest.raises(hub.ModelUnavailable, match=r"^owner/model: could not be loaded from the local cache "
                                                     r"\(Unable to load weights: header too large\)"):
        with hub.hf_download("owner/model"):
            raise OSError("Unable to load weights: header too large")


# -- a local path that is not there: "X does not exist", never "pass the local file instead" ------------


def _script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(PYTHON_DIR / script), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120, check=False)


def _assert_does_not_exist(proc: subprocess.CompletedProcess, shown: str, full: Path) -> str:
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: ") and f"{shown} does not exist" in line and str(full) in line, line
    assert "instead" not in line and "Traceback" not in proc.stderr
    assert "not in the local cache" not in line and "hf download" not in line  # never sent to a hub
    return line


@pytest.mark.slow
def test_a_missing_checkpoint_file_says_it_does_not_exist(wav, tmp_path):
    """B4 --compare --model campplus --checkpoint missing.bin: once told the user to pass missing.bin."""
    pytest.importorskip("torch")
    proc = _script("B4_model_speaker.py", "--compare", str(wav), str(wav), "--model", "campplus",
                   "--checkpoint", "missing.bin", cwd=tmp_path)
    line = _assert_does_not_exist(proc, "--checkpoint missing.bin", tmp_path / "missing.bin")
    assert line == f"error: campplus: --checkpoint missing.bin does not exist (no such file or folder: " \
                   f"{tmp_path / 'missing.bin'})"


@pytest.mark.slow
def test_a_missing_model_folder_says_it_does_not_exist(wav, tmp_path):
    """embed.py / B2 --model ./missing_dir: a path, not a hub id nor an 'unknown model'."""
    for script in ("embed.py", "B2_model_wav2vec2.py"):
        proc = _script(script, str(wav), "--model", "./missing_dir", "--output-dir", str(tmp_path / "out"),
                       cwd=tmp_path)
        _assert_does_not_exist(proc, "./missing_dir", tmp_path / "missing_dir")
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("value, is_path", [
    ("./w2v", True), ("../models/x", True), ("~/models/x", True), ("/abs/model", True), ("missing.bin", True),
    ("model.ONNX", True), ("perch.tflite", True), ("w.safetensors", True), ("ckpt/epoch=3.ckpt", True),
    ("owner/name.pt", True), ("models/w2v/checkpoint-1000", True), ("folder/", True), ("C:\\models\\x", True),
    ("C:/models/x", True),
    ("facebook/wav2vec2-base", False), ("iic/speech_campplus_sv_zh-cn_16k-common", False), ("gpt2", False),
    ("campplus", False), ("distil-whisper/distil-large-v3.5", False), ("laion/larger_clap_general", False),
    ("google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu", False),
    ("google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu/2", False),
])
def test_what_looks_like_a_local_path(value, is_path):
    assert hub.looks_like_local_path(value) is is_path


@pytest.mark.parametrize("preset", ["wav2vec2", "hubert-base", "perch_v2", "birdnet", "metis", "eres2netv2",
                                    "campplus", "whisper-base", "clap-htsat-unfused", "ge2e"])
def test_every_family_says_a_missing_model_path_does_not_exist(preset, tmp_path, monkeypatch):
    """Checked before the backend loads: no framework import, no download, for each family."""
    from audio_embeddings import registry

    monkeypatch.chdir(tmp_path)
    for spec in ("./nope", "nope.onnx", "sub/dir/nope"):
        with pytest.raises(FileNotFoundError) as info:
            registry.load_backend(spec, preset=preset, device="cpu")
        assert str(info.value) == f"{spec} does not exist (no such file or folder: {tmp_path / spec})"
    with pytest.raises(FileNotFoundError, match=r"^/no/such/model does not exist$"):
        registry.load_backend("/no/such/model", preset=preset, device="cpu")
    with pytest.raises(FileNotFoundError, match=r"^\./nope does not exist"):  # no preset: resolve() decides
        registry.resolve("./nope")


def test_file_options_that_are_missing_paths_do_not_exist(tmp_path, monkeypatch):
    from audio_embeddings import registry

    monkeypatch.chdir(tmp_path)
    cases = [("metis", dict(codec="codec.safetensors"), "--codec codec.safetensors"),
             ("metis", dict(codec="./semantic_codec"), "--codec ./semantic_codec"),
             ("metis", dict(stats="stats"), "--stats stats"),
             ("eres2netv2", dict(checkpoint="weights/pretrained.ckpt"), "--checkpoint weights/pretrained.ckpt"),
             ("campplus", dict(checkpoint="missing.bin"), "--checkpoint missing.bin")]
    for preset, options, shown in cases:
        with pytest.raises(FileNotFoundError, match=rf"^{shown} does not exist \(no such file or folder: "):
            registry.load_backend(preset, device="cpu", **options)


def test_a_checkpoint_name_inside_the_model_folder_or_repository_is_left_to_the_backend(tmp_path, monkeypatch):
    """--checkpoint NAME names a file in --model's folder, or in a ModelScope repository that is not a preset's."""
    pytest.importorskip("torch")
    from audio_embeddings import registry

    monkeypatch.chdir(tmp_path)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    with pytest.raises(FileNotFoundError, match=r"^directory \(.*snapshot\) has no other\.bin$"):
        registry.load_backend(str(snapshot), preset="campplus", device="cpu", checkpoint="other.bin")
    monkeypatch.setitem(sys.modules, "modelscope", None)  # not installed: the backend says what it needs
    with pytest.raises(ImportError, match=r"iic/speech_eres2net_sv_en_voxceleb_16k is a ModelScope model id.*"
                                          r"pip install modelscope"):
        registry.load_backend("iic/speech_eres2net_sv_en_voxceleb_16k", preset="eres2netv2", device="cpu",
                              checkpoint="pretrained_eres2net.ckpt")


@pytest.mark.slow
def test_hub_ids_still_go_to_the_download_path(wav, tmp_path, capsys):
    """A ModelScope id without modelscope, a Hugging Face id with downloads off: the one-line ways out."""
    pytest.importorskip("torch")
    proc = _script("B4_model_speaker.py", "--compare", str(wav), str(wav), "--model",
                   "iic/speech_campplus_sv_zh-cn_16k-common", cwd=tmp_path)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "does not exist" not in lines[0] and "ModelScope model id" in lines[0]
    status = main(EMBED, [str(wav), "--model", "facebook/wav2vec2-base", "--output-dir", str(tmp_path / "o")])
    lines = error_lines(capsys.readouterr().err)
    assert status == 2 and len(lines) == 1 and "does not exist" not in lines[0]
    assert "facebook/wav2vec2-base: not in the local cache and downloads are off" in lines[0]


def test_hf_download_refuses_a_missing_path_before_any_probe(monkeypatch):
    probed = []
    monkeypatch.setattr(hub, "host_reachable", lambda *a, **k: probed.append(a) or False)
    with pytest.raises(FileNotFoundError, match=r"^--codec ./gone\.safetensors does not exist \(no such file"):
        with hub.hf_download("./gone.safetensors", flag="--codec"):
            pass
    with pytest.raises(FileNotFoundError, match=r"^/gone/model does not exist$"):
        with hub.hf_download("/gone/model"):
            pass
    assert probed == []
