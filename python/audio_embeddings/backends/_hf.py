"""One loader for the Hugging Face transformers families (wav2vec2 family, Whisper, CLAP, Metis' w2v-bert, AST).

:func:`load_hf` is the only place where these families call ``from_pretrained``:

* the checkpoint is a hub id or a local folder; a local folder is never sent to the hub, and
  a hub id goes through :func:`audio_embeddings.hub.hf_download`, so a machine without network
  gets one line naming the model and ``--model PATH`` (exit status 2 in the scripts) instead of
  transformers' retries and multi-line text, whichever family it is;
* config, feature extractor and weights are read in that order, and the family's checks
  (``check``: model type, layer indices, feature-extractor geometry) run before any weights
  are read, so a wrong ``--layers`` fails in a fraction of a second;
* a checkpoint without ``preprocessor_config.json`` gets the family's feature-extractor
  defaults (recorded as ``"<Class> defaults"``);
* weights load with PyTorch's fused attention where the architecture offers it
  (:func:`audio_embeddings.device.from_pretrained_sdpa`), then ``trim`` (keep the encoder,
  drop layers), ``eval()`` and the device and dtype;
* provenance has one shape for every family (:func:`hf_provenance`).

:func:`parse_layers` is the one layer selection (``--layers last|all|I,J``) and
:func:`layer_index` the single-index variant (Metis' ``--layer``); their messages name the flag.

Importing this module imports no framework; transformers is imported when a model loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .base import HF_WEIGHT_PATTERNS, feature_extractor_or_default, file_sha256, layers_spec

#: Where the config lives in a Hugging Face folder or snapshot.
CONFIG_FILE = "config.json"
#: At most this many file names go into the provenance (a folder may hold other things).
MAX_LISTED_FILES = 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")


@dataclass
class HFCheckpoint:
    """A loaded Hugging Face checkpoint (what :func:`load_hf` returns).

    Attributes
    ----------
    source : str
        Hub id, or the local folder (``~`` expanded).
    local : bool
        ``source`` is a local folder.
    config : transformers.PretrainedConfig
    model : torch.nn.Module
        In eval mode on ``device`` in ``dtype`` (after the family's ``trim``).
    feature_extractor : object or None
        The checkpoint's feature extractor, or the family's defaults; None when not asked for.
    feature_extractor_found : bool
        False when the defaults were used (no ``preprocessor_config.json``).
    device, dtype : torch.device, torch.dtype
    provenance : dict
        :func:`hf_provenance`, the same keys for every family.
    """

    source: str
    local: bool
    config: Any
    model: Any
    feature_extractor: Any = None
    feature_extractor_found: bool = False
    device: Any = "cpu"
    dtype: Any = "float32"
    provenance: dict[str, Any] = field(default_factory=dict)


def resolve_source(source: str | Path | None, default: str | None = None) -> tuple[str, bool]:
    """``(source, local)``: the checkpoint to load (``default`` when None; ``~`` expanded for folders).

    Raises
    ------
    ValueError
        No source and no default.
    """
    text = default if source is None else str(source)
    if text is None:
        raise ValueError("no checkpoint given: pass --model (a hub id or a local folder)")
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path), True
    return text, False


def _transformers_class(name: str | type) -> type:
    if not isinstance(name, str):
        return name
    import transformers

    return getattr(transformers, name)


def load_hf(source: str | Path | None, *, default: str | None = None, model_types: Iterable[str], what: str,
            loader: str | type, feature_extractor: str | type | None = None, any_feature_extractor: bool = False,
            fe_defaults: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] | None = None,
            check: Callable[[Any, Any], None] | None = None, trim: Callable[[Any], Any] | None = None,
            device: str = "auto", dtype: str = "float32", local_only: bool = False) -> HFCheckpoint:
    """Load config, feature extractor and model of a transformers checkpoint, the same way for every family.

    Parameters
    ----------
    source : str, path-like or None
        Hub id or local folder; None loads ``default``.
    default : str, optional
        The family's default hub id.
    model_types : iterable of str
        ``config.model_type`` values the family takes.
    what : str
        The family in the refusal ``"<source>: model_type 'x' is not <what>"``
        (``"a Whisper checkpoint"``).
    loader : str or type
        transformers class (or its name) whose ``from_pretrained`` reads the weights
        (``"AutoModel"``, ``"WhisperModel"``).
    feature_extractor : str or type, optional
        Feature-extractor class (or name): read from the checkpoint, or built with
        ``fe_defaults`` when the checkpoint has none. None: no feature extractor.
    any_feature_extractor : bool
        Read whatever feature extractor the checkpoint names (``AutoFeatureExtractor``);
        ``feature_extractor`` is then only the class of the defaults.
    fe_defaults : mapping or callable, optional
        Keyword arguments of the defaults, or ``config -> keyword arguments``.
    check : callable, optional
        ``check(config, feature_extractor)`` runs before the weights are read; it raises
        ValueError for a checkpoint or option the family cannot use (``--layers`` out of range).
    trim : callable, optional
        ``model -> model`` before the move to the device (keep the encoder, drop layers).
    device : {"auto", "cpu", "cuda", "mps"}
    dtype : {"float32", "float16", "bfloat16"}
    local_only : bool
        Never download (the local cache only).

    Returns
    -------
    HFCheckpoint

    Raises
    ------
    audio_embeddings.hub.ModelUnavailable
        A hub id that is not cached and cannot be downloaded now (one line naming it and
        ``--model PATH``), or that could not be loaded.
    FileNotFoundError
        A value that can only be a local path and is not there.
    ValueError
        Another model type, or what ``check`` refuses.
    """
    from ..device import from_pretrained_sdpa, resolve_device, resolve_dtype
    from ..hub import hf_download

    source, local = resolve_source(source, default)
    types = tuple(model_types)
    with hf_download(source, local_only=local_only) as cache_only:  # offline: the cache only, one line if absent
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, local_files_only=cache_only)
        if config.model_type not in types:
            raise ValueError(f"{source}: model_type {config.model_type!r} is not {what}")
        fe, fe_found = None, False
        if feature_extractor is not None:
            defaults = fe_defaults(config) if callable(fe_defaults) else dict(fe_defaults or {})
            fe_cls = _transformers_class(feature_extractor)
            if any_feature_extractor:
                from transformers import AutoFeatureExtractor

                try:
                    fe, fe_found = AutoFeatureExtractor.from_pretrained(source, local_files_only=cache_only), True
                except OSError:  # no preprocessor_config.json: the family's defaults
                    fe, fe_found = fe_cls(**defaults), False
            else:
                fe, fe_found = feature_extractor_or_default(fe_cls, source, local_only=cache_only, **defaults)
        if check is not None:
            check(config, fe)
        torch_device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
        try:
            model = from_pretrained_sdpa(_transformers_class(loader), source, config=config,
                                         local_files_only=cache_only)
        except (ImportError, OSError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001 - unloadable weights (pickle, weights_only, truncated) are one line
            raise ValueError(unloadable_weights_line(source, exc)) from None
    if trim is not None:
        model = trim(model)
    model.eval().to(device=torch_device, dtype=torch_dtype)
    fe_label = None
    if feature_extractor is not None:
        fe_label = "checkpoint" if fe_found else f"{_transformers_class(feature_extractor).__name__} defaults"
    provenance = hf_provenance(source, config, model, local=local, feature_extractor=fe_label)
    return HFCheckpoint(source=source, local=local, config=config, model=model, feature_extractor=fe,
                        feature_extractor_found=fe_found, device=torch_device, dtype=torch_dtype,
                        provenance=provenance)


def snapshot_folder(source: str, config: Any, *, local: bool) -> Path | None:
    """The folder the checkpoint was read from: the local folder, or the hub cache's snapshot (None if unknown)."""
    if local:
        return Path(source)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, CONFIG_FILE, revision=getattr(config, "_commit_hash", None))
    except Exception:  # noqa: BLE001 - provenance never fails a load
        return None
    return Path(found).parent if isinstance(found, (str, Path)) else None


def hub_revision(config: Any, folder: Path | None) -> str | None:
    """The hub commit a checkpoint was read at: ``config._commit_hash`` (transformers 4), else the name of
    the cache snapshot folder (``.../snapshots/<commit>``); None for a local folder."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return str(commit)
    if folder is not None and folder.parent.name == "snapshots" and _HEX40.fullmatch(folder.name):
        return folder.name
    return None


def weight_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of each weight file (``*.safetensors``, ``pytorch_model*.bin``) in ``folder``.

    In the hub cache a weight file links to a blob named by its SHA-256, which is used as is;
    other files are hashed.
    """
    digests = {}
    files = sorted({p for pattern in HF_WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    for path in files:
        blob = path.resolve().name
        digests[path.name] = blob if path.is_symlink() and _HEX64.fullmatch(blob) else file_sha256(path)
    return digests


def hf_provenance(source: str, config: Any, model: Any, *, local: bool,
                  feature_extractor: str | None = None) -> dict[str, Any]:
    """Provenance of a transformers checkpoint, one shape for every family.

    Returns
    -------
    dict
        ``checkpoint`` (hub id, or the folder's absolute path), ``revision`` (the hub commit;
        None for a local folder), ``files`` (file names of the folder or cached snapshot),
        ``weights_sha256`` ({file name: hex digest}), ``model_type``, ``checkpoint_class``
        (first of ``config.architectures``), ``model_class`` (what runs), ``feature_extractor``
        (``"checkpoint"``, ``"<Class> defaults"``, or None when the family computes its own features).
    """
    folder = snapshot_folder(source, config, local=local)
    try:
        files = sorted(p.name for p in folder.iterdir() if p.is_file())[:MAX_LISTED_FILES] if folder else []
        digests = weight_digests(folder) if folder else {}
    except OSError:
        files, digests = [], {}
    architectures = list(getattr(config, "architectures", None) or [])
    return {
        "checkpoint": str(Path(source).resolve()) if local else source,
        "revision": None if local else hub_revision(config, folder),
        "files": files,
        "weights_sha256": digests,
        "model_type": config.model_type,
        "checkpoint_class": architectures[0] if architectures else None,
        "model_class": type(model).__name__,
        "feature_extractor": feature_extractor,
    }


# -- layer selection ---------------------------------------------------------------------------------


def _out_of_range(flag: str, bad: list[int], n_layers: int) -> ValueError:
    shown = ",".join(str(i) for i in bad)
    return ValueError(f"{flag} {shown} out of range: this model has hidden states 0..{n_layers} "
                      f"(0 = the input to the first layer, {n_layers} = the last layer's output)")


def parse_layers(spec: str | int | Iterable[int] | None, n_layers: int, *, flag: str = "--layers") -> list[int] | None:
    """Turn ``last|all|I,J,...`` into hidden-state indices (None means ``last_hidden_state``).

    Index 0 is the input to the first layer, ``n_layers`` the last layer's output, as in
    transformers' ``hidden_states``. Every family that selects layers uses this, so the same
    mistake gets the same message.

    Parameters
    ----------
    spec : str, int, iterable of int or None
        ``"last"`` (or None), ``"all"``, ``"0,3"``, ``2`` or ``[0, 3]``.
    n_layers : int
        Layers of the model.
    flag : str
        The option named in messages.

    Returns
    -------
    list of int or None

    Raises
    ------
    ValueError
        Bad syntax (``--layers must be 'last', 'all' or ...``) or an index outside
        ``0..n_layers`` (``--layers 9 out of range: this model has hidden states 0..3 ...``).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            text = layers_spec(spec)
        except ValueError as exc:
            raise ValueError(f"{flag} must be {exc}") from None
        if text == "last":
            return None
        if text == "all":
            return list(range(n_layers + 1))
        items = [int(tok) for tok in text.split(",")]
    elif isinstance(spec, (int, np.integer)):
        items = [int(spec)]
    else:
        try:
            items = [int(x) for x in spec]
        except (TypeError, ValueError):
            raise ValueError(f"{flag} must be 'last', 'all' or layer indices, not {spec!r}") from None
        if not items:
            raise ValueError(f"{flag} must be 'last', 'all' or layer indices, not {spec!r}")
    bad = [i for i in items if not 0 <= i <= n_layers]
    if bad:
        raise _out_of_range(flag, bad, n_layers)
    return items


def layer_index(value: int | str, n_layers: int, *, flag: str = "--layer") -> int:
    """One hidden-state index in ``0..n_layers`` (Metis' ``--layer``), with :func:`parse_layers`' message.

    Raises
    ------
    ValueError
        Not an integer, or out of range.
    """
    try:
        index = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{flag} must be an integer >= 0, not {value!r}") from None
    if not 0 <= index <= n_layers:
        raise _out_of_range(flag, [index], n_layers)
    return index


def select_hidden(output: Any, layers: list[int] | None, rows: int | None = None) -> Any:
    """The chosen hidden states of a transformers output: ``last_hidden_state`` [B, T, D] (``layers`` None),
    one layer [B, T, D], or several stacked [B, L, T, D]; only the first ``rows`` time steps when given."""
    cut = slice(None) if rows is None else slice(0, int(rows))
    if layers is None:
        return output.last_hidden_state[:, cut]
    if len(layers) == 1:
        return output.hidden_states[layers[0]][:, cut]
    import torch

    return torch.stack([output.hidden_states[i][:, cut] for i in layers], dim=1)


def layers_field(layers: list[int] | None, n_layers: int) -> np.ndarray:
    """``layers`` for the ``.mat``: a double row vector [1, L] (the last layer's index for ``last``)."""
    return np.asarray([n_layers] if layers is None else layers, dtype=np.float64)[None, :]


__all__ = ["HFCheckpoint", "load_hf", "resolve_source", "hf_provenance", "snapshot_folder", "hub_revision",
           "weight_digests",
           "parse_layers", "layer_index", "select_hidden", "layers_field"]


def unloadable_weights_line(source: Any, exc: BaseException) -> str:
    """One line for weights that cannot be read (a ``pytorch_model.bin`` that ``torch.load(weights_only=True)``
    refuses, a truncated or foreign file): what failed, its first line of reason, and what to do."""
    reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return (f"{source}: its weights cannot be loaded ({type(exc).__name__}: {reason[:200]}); only plain tensors "
            "are read (weights_only): re-save them with save_pretrained(safe_serialization=True) as "
            "model.safetensors")
