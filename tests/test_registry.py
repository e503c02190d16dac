"""The registry is data: every preset resolves and loads (with a tiny local model), and import is light."""

import subprocess
import sys

import pytest

from audio_embeddings import registry
from audio_embeddings.device import sanitize_mkl_threads
from conftest import PYTHON_DIR, STAND_INS

def test_every_downloaded_preset_has_a_tiny_stand_in():
    assert set(registry.PRESETS) == set(STAND_INS)
    assert all(STAND_INS[n][0] is not None for n, p in registry.PRESETS.items() if p.checkpoint)


def test_perch_by_kaggle_handle_downloads_the_cpu_build_without_a_gpu(monkeypatch, tiny_perch_model):
    """The real download path (kagglehub, stubbed here: no network in tests); no GPU -> perch_v2_cpu."""
    kagglehub = pytest.importorskip("kagglehub")
    import tensorflow as tf

    from audio_embeddings import hub

    asked = []
    monkeypatch.setattr(hub, "host_reachable", lambda *a, **k: True)  # as if Kaggle answered
    monkeypatch.setattr(kagglehub, "model_download", lambda handle: asked.append(handle) or str(tiny_perch_model))
    backend = registry.load_backend("perch_v2", device="auto")
    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert asked == [registry.PRESETS["perch_v2" if gpu else "perch_v2_cpu"].checkpoint]
    assert backend.describe()["checkpoint"] == asked[0]


def test_resolve_recognises_names_ids_and_directories(tiny_model, tmp_path):
    assert registry.resolve("wav2vec2")[1] == "facebook/wav2vec2-large-xlsr-53"
    # a preset's own checkpoint id is that preset; another owner/name id is a wav2vec2-family model
    assert registry.resolve("microsoft/wavlm-large") == (registry.PRESETS["wavlm-large"], "microsoft/wavlm-large")
    assert registry.resolve("someone/wav2vec2-finetuned") == (registry.PRESETS["wav2vec2"], "someone/wav2vec2-finetuned")
    assert registry.resolve("openai/whisper-tiny")[0] is registry.PRESETS["whisper-base"]
    assert registry.resolve(str(tiny_model("hubert")))[1] == str(tiny_model("hubert"))
    with pytest.raises(ValueError, match="not a model file or folder.*Accepted:.*config.json.*saved_model.pb"):
        registry.resolve(str(tmp_path))
    with pytest.raises(ValueError, match="unknown model"):
        registry.resolve("no-such-model")


def test_hub_id_goes_to_the_hub_loader(monkeypatch):
    """An id that is not a local path is handed to transformers' downloader (stubbed: no network in tests)."""
    import transformers

    from audio_embeddings import hub

    monkeypatch.setattr(hub, "hf_offline_reason", lambda *a, **k: None)  # as if downloads were on
    monkeypatch.setattr(hub, "host_reachable", lambda *a, **k: True)  # and the hub answered

    asked = []

    def fake_from_pretrained(source, **kwargs):
        asked.append(source)
        raise OSError("offline test")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake_from_pretrained)
    with pytest.raises(OSError, match="offline test"):
        registry.load_backend("facebook/wav2vec2-large-xlsr-53", device="cpu")
    assert asked == ["facebook/wav2vec2-large-xlsr-53"]


def test_option_a_backend_does_not_take_is_refused():
    with pytest.raises(ValueError, match="--layers"):
        registry.load_backend("ge2e", device="cpu", layers="all")


def test_importing_the_package_imports_no_framework():
    code = ("import sys; import audio_embeddings, audio_embeddings.registry, audio_embeddings.cli, "
            "audio_embeddings.pipeline, audio_embeddings.outputs.contract; "
            "from audio_embeddings.cli import ScriptDefaults, build_parser; "
            "build_parser(ScriptDefaults('x', 'x', 'ge2e', 'ge2e', None)); "  # imports every backend module
            "audio_embeddings.registry.option_table(); "
            "print([m for m in ('torch', 'tensorflow', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(PYTHON_DIR)})
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("value,kept", [("4", True), ("", False), ("auto", False), ("0", False), ("-2", False)])
def test_mkl_num_threads_sanitising(value, kept):
    env = {"MKL_NUM_THREADS": value}
    removed = sanitize_mkl_threads(env)
    assert ("MKL_NUM_THREADS" in env) is kept
    assert removed == (None if kept else value)
