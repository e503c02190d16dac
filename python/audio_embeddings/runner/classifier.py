"""Linear classifiers on window embeddings: plain-JSON model files, training, held-out metrics.

The model file is perch-hoplite's ``LinearClassifier`` JSON (``beta``, ``beta_bias``,
``classes``, ``model_config``), so either tool reads the other's files:

- ``beta``: base64 of float32 little-endian weights [D, C] in C order;
- ``beta_bias``: base64 of float32 little-endian biases [C];
- ``classes``: the C label names (one is fine: hoplite's one-class classifiers);
- ``model_config``: the database's ``model_config`` the classifier was trained on, hoplite's
  ``ModelConfig``: ``{"model_key", "embedding_dim", "model_config": {...}, ...}`` (``model_key``
  ``taxonomy_model_tf`` for Perch 2.0, ``birdnet`` for BirdNET); hoplite writes ``null`` when its
  database had none.

We add ``embedding_model``, ``embedding_dim``, ``score``, ``format`` and training notes at
the top level (hoplite ignores unknown keys). Nothing is pickled, so a model file can sit,
base64-encoded, in the YAML config.

Which model made the embeddings is read from ``embedding_model`` (ours), ``embedding_model_name``
or ``model_name`` (perch-runner's recognizers), else from ``model_config`` (hoplite's
``model_key`` and preset: ``taxonomy_model_tf`` with a ``perch_v2`` hub path, or 1536-d, is Perch
2.0). A file that names no model is accepted when its dimension matches the run's, with a
warning that the model could not be confirmed (:meth:`LinearClassifier.check_fits`).

perch-runner's recognizer files, ``{"recognizers": [{hoplite's keys..., "name", "notes"}, ...]}``
(or one such object, or a list), hold several classifiers: :func:`load_classifiers`.

Scores are **logits**, as hoplite's ``LinearClassifier.__call__`` returns them:
``score = embedding @ beta + beta_bias`` per label; ``sigmoid(score)`` is the probability
of the label under the one-vs-rest logistic model that made the weights. They are computed
in float64 from the float32 embeddings and weights and rounded to float32 once, which
makes a row's score independent of how many rows are scored together (float32 BLAS can
change the last bit with the matrix shape); training-time metrics use the same function on
the weights as saved, so ``classify`` gives the held-out scores bit for bit.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..safe_load import DocumentError, load_json_file, parse_json

FORMAT = "perch-hoplite LinearClassifier"
SCORE = "logit: embedding @ beta + beta_bias (sigmoid(score) is the label's probability)"
#: Different names of one embedding function (builds or spellings of the same model).
MODEL_ALIASES = {"perch_v2_cpu": "perch_v2", "perch_v2_gpu": "perch_v2", "perch_v2_onnx": "perch_v2",
                 "birdnet_v2.4": "birdnet", "birdnet_v2_4": "birdnet", "birdnet_global_6k_v2.4": "birdnet"}
#: Embedding size of the model families we know, for files that name no model.
FAMILY_DIMS = {"perch_v2": 1536, "birdnet": 1024, "perch_8": 1280, "surfperch": 1280}
#: Largest classifier or recognizers JSON file read (256 MiB: one over Perch's ~15k classes is ~125 MB),
#: refused from its size before parsing.
CLASSIFIER_MAX_BYTES = 256 << 20
#: Most levels of nested objects and arrays in a classifier JSON (hoplite's layout needs 4).
CLASSIFIER_MAX_DEPTH = 50


class ClassifierError(ValueError):
    """A model file that is not a usable linear classifier, or one that does not fit the run."""


def model_family(name: str) -> str:
    """Canonical embedding-model name (``perch_v2_cpu`` -> ``perch_v2``) for compatibility checks."""
    key = str(name).strip().lower()
    return MODEL_ALIASES.get(key, key)


def model_from_config(config: Any, dim: int | None = None) -> str | None:
    """Our model name from hoplite's ``model_config`` (``ModelConfig``), or None when it does not say.

    ``taxonomy_model_tf`` covers Perch 2.0, Perch 8 and SurfPerch: the preset's hub path (or
    model path) decides, else the dimension (1536: Perch 2.0).
    """
    if not isinstance(config, dict):
        return None
    key = config.get("model_key")
    if not isinstance(key, str) or not key:
        return None
    key = key.strip().lower()
    inner = config.get("model_config") if isinstance(config.get("model_config"), dict) else {}
    where = " ".join(str(inner.get(k) or "") for k in ("tfhub_path", "model_path", "model_url")).lower()
    dim = dim if dim is not None else config.get("embedding_dim")
    if key in ("taxonomy_model_tf", "perch_v2", "perch_v2_cpu", "perch_v2_gpu", "perch_v2_onnx", "perch_8",
               "surfperch"):
        if "perch_v2" in where or key.startswith("perch_v2"):
            return "perch_v2"
        if "surfperch" in where or key == "surfperch":
            return "surfperch"
        if key == "perch_8" or ("bird-vocalization-classifier" in where and inner.get("tfhub_version") == 8):
            return "perch_8"
        return "perch_v2" if dim == 1536 else None
    return model_family(key)


def b64_float32(array: np.ndarray) -> str:
    """Base64 of an array as float32 little-endian bytes, C order."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def float32_from_b64(text: Any, *, field_name: str) -> np.ndarray:
    """Decode :func:`b64_float32` text to a 1-D float32 array; errors name ``field_name``."""
    if not isinstance(text, str):
        raise ClassifierError(f"{field_name}: expected a base64 string, got {type(text).__name__}")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ClassifierError(f"{field_name}: not valid base64 ({exc})") from None
    if len(raw) % 4:
        raise ClassifierError(f"{field_name}: {len(raw)} bytes is not a whole number of float32 values")
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ClassifierError(f"{field_name}: contains NaN or Inf")
    return values


@dataclass(frozen=True)
class LinearClassifier:
    """A linear classifier over D-dimensional embeddings with C labels.

    Attributes
    ----------
    beta : numpy.ndarray
        float32 [D, C] weights.
    beta_bias : numpy.ndarray
        float32 [C] biases.
    classes : tuple of str
        Label names, one per column of ``beta``.
    embedding_model : str or None
        Model whose embeddings it takes (``birdnet``, ``perch_v2``, ...); None when the file does
        not say (checked by dimension only, with a warning).
    model_config : dict
        hoplite's ``model_config``: ``model_key``, ``embedding_dim`` and the embedding model's own
        settings (``window_s``, ``sample_rate_hz``, checkpoint, ...).
    info : dict
        Other top-level fields of the file (``created_at``, training notes); kept on save.
    """

    beta: np.ndarray
    beta_bias: np.ndarray
    classes: tuple[str, ...]
    embedding_model: str | None
    model_config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        beta = np.ascontiguousarray(self.beta, dtype=np.float32)
        bias = np.ascontiguousarray(self.beta_bias, dtype=np.float32).reshape(-1)
        if beta.ndim != 2 or beta.shape[1] != len(self.classes) or bias.shape != (len(self.classes),):
            raise ClassifierError(f"beta {list(beta.shape)} and beta_bias {list(bias.shape)} do not fit "
                                  f"{len(self.classes)} classes ([D, C] and [C] expected)")
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "beta_bias", bias)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @property
    def embedding_dim(self) -> int:
        return int(self.beta.shape[0])

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        return self.scores(embeddings)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Logits float32 [T, C] of embeddings [T, D] (see the module notes on precision)."""
        x = np.asarray(embeddings)
        if x.ndim != 2 or x.shape[1] != self.embedding_dim:
            raise ClassifierError(f"embeddings {list(x.shape)} do not match the classifier's dimension "
                                  f"{self.embedding_dim}")
        out = x.astype(np.float64) @ self.beta.astype(np.float64) + self.beta_bias.astype(np.float64)
        return out.astype(np.float32)

    def window_geometry(self) -> dict[str, Any]:
        """``window_s`` and ``sample_rate_hz`` of the embeddings it was trained on, where recorded.

        Read from ``model_config.model_config`` under our names or perch-hoplite's
        (``window_size_s``, ``sample_rate``).
        """
        inner = self.model_config.get("model_config") or {}
        if not isinstance(inner, dict):
            return {}
        found = {}
        for name, aliases in (("window_s", ("window_s", "window_size_s")),
                              ("sample_rate_hz", ("sample_rate_hz", "sample_rate"))):
            value = next((inner[a] for a in aliases if isinstance(inner.get(a), (int, float))
                          and not isinstance(inner.get(a), bool)), None)
            if value is not None:
                found[name] = value
        return found

    def check_fits(self, *, model: str | None, embedding_dim: int, window_s: float | None = None,
                   sample_rate_hz: int | None = None, name: str = "classifier") -> list[str]:
        """Raise :class:`ClassifierError` unless the classifier takes this run's embeddings.

        ``model`` None: the embeddings' model is not known (a table that does not record it).

        Returns
        -------
        list of str
            Warnings: the classifier's model (or the run's) could not be confirmed, only its dimension.
        """
        geometry = self.window_geometry()
        problems, warnings = [], []
        if self.embedding_model is not None and model is not None and \
                model_family(self.embedding_model) != model_family(model):
            problems.append(f"embedding model {self.embedding_model!r}, not {model!r}")
        if self.embedding_dim != int(embedding_dim):
            problems.append(f"{self.embedding_dim}-d embeddings, not {int(embedding_dim)}-d")
        if window_s is not None and "window_s" in geometry and abs(float(geometry["window_s"]) - window_s) > 1e-9:
            problems.append(f"{geometry['window_s']:g} s windows, not {window_s:g} s")
        if sample_rate_hz is not None and "sample_rate_hz" in geometry and \
                int(geometry["sample_rate_hz"]) != int(sample_rate_hz):
            problems.append(f"audio at {geometry['sample_rate_hz']} Hz, not {sample_rate_hz} Hz")
        if problems:
            fix = (f" Train it on {model} embeddings, or run with --model {self.embedding_model} (or set model: in "
                   "the config)") if self.embedding_model and model else ""
            raise ClassifierError(f"{name} does not fit this run: it was trained on {'; '.join(problems)}.{fix}")
        if self.embedding_model is None:
            warnings.append(f"{name} does not record which model made its training embeddings (no embedding_model, "
                            f"model_name or model_config.model_key); it is used because its {self.embedding_dim}-d "
                            f"weights match {model or 'the'} {int(embedding_dim)}-d embeddings, but the model "
                            "could not be confirmed")
        elif model is None:
            warnings.append(f"the embeddings do not record their model; {name} ({self.embedding_model}, "
                            f"{self.embedding_dim}-d) is used because the dimensions match, but the model could "
                            "not be confirmed")
        return warnings

    # -- the file format ---------------------------------------------------------------------

    def to_json_dict(self) -> dict[str, Any]:
        """The model file's JSON object (hoplite's keys first).

        ``model_config`` keeps hoplite's ``model_key`` when it has one (``taxonomy_model_tf`` for Perch
        2.0); otherwise ``model_key`` is the embedding model's name.
        """
        key = self.model_config.get("model_key") or self.embedding_model
        config = {"model_key": key, "embedding_dim": self.embedding_dim,
                  **{k: v for k, v in self.model_config.items() if k not in ("model_key", "embedding_dim")}}
        return {
            "model_config": config,
            "classes": list(self.classes),
            "beta": b64_float32(self.beta),
            "beta_bias": b64_float32(self.beta_bias),
            "format": FORMAT,
            "embedding_model": self.embedding_model,
            "embedding_dim": self.embedding_dim,
            "weights": {"beta": {"dtype": "float32 little-endian", "shape": list(self.beta.shape), "order": "C"},
                        "beta_bias": {"dtype": "float32 little-endian", "shape": list(self.beta_bias.shape)}},
            "score": SCORE,
            **{k: v for k, v in self.info.items() if k not in _RESERVED},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2) + "\n"

    def to_base64(self) -> str:
        """Base64 of the JSON file: what a config's ``classifiers[].model`` may hold."""
        return base64.b64encode(json.dumps(self.to_json_dict(), separators=(",", ":")).encode("utf-8")).decode("ascii")

    def save(self, path: str | Path) -> Path:
        """Write the JSON model file atomically."""
        from ..atomic import write_text_atomic

        return write_text_atomic(path, self.to_json())

    @classmethod
    def from_json_dict(cls, data: Any) -> "LinearClassifier":
        """Read a model file's JSON object (ours or perch-hoplite's); errors name the field."""
        if not isinstance(data, dict):
            raise ClassifierError(f"a linear classifier is a JSON object, got {type(data).__name__}")
        missing = [k for k in ("beta", "beta_bias", "classes") if k not in data]
        if missing:
            raise ClassifierError(f"not a linear classifier: missing {', '.join(repr(m) for m in missing)}")
        classes = data["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise ClassifierError("classes: expected a non-empty list of label names")
        if len(set(classes)) != len(classes):
            raise ClassifierError("classes: label names repeat")
        config = data.get("model_config") or {}
        if not isinstance(config, dict):
            raise ClassifierError(f"model_config: expected an object, got {type(config).__name__}")
        beta = float32_from_b64(data["beta"], field_name="beta")
        bias = float32_from_b64(data["beta_bias"], field_name="beta_bias")
        n = len(classes)
        if bias.size != n:
            raise ClassifierError(f"beta_bias: {bias.size} values for {n} classes")
        if beta.size % n or beta.size == 0:
            raise ClassifierError(f"beta: {beta.size} values is not D x {n} (one column per class)")
        dim = beta.size // n
        for where, value in (("embedding_dim", data.get("embedding_dim")),
                             ("model_config.embedding_dim", config.get("embedding_dim"))):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value != dim):
                raise ClassifierError(f"{where}: {value!r}, but beta holds {dim} x {n} weights")
        model = None
        for key in ("embedding_model", "embedding_model_name", "model_name"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                model = value.strip()
                break
        if model is None:
            model = model_from_config(config, dim)
        info = {k: v for k, v in data.items() if k not in _RESERVED}
        return cls(beta.reshape(dim, n), bias, tuple(classes), model, dict(config), info)

    @classmethod
    def from_json(cls, text: str | bytes) -> "LinearClassifier":
        """Parse model JSON (nesting bounded by :data:`CLASSIFIER_MAX_DEPTH`)."""
        try:
            data = parse_json(text, max_depth=CLASSIFIER_MAX_DEPTH)
        except DocumentError as exc:
            raise ClassifierError(str(exc)) from None
        return cls.from_json_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "LinearClassifier":
        """Read a JSON model file (at most :data:`CLASSIFIER_MAX_BYTES`, :data:`CLASSIFIER_MAX_DEPTH` levels deep)."""
        p = Path(path)
        try:
            data = load_json_file(p, max_bytes=CLASSIFIER_MAX_BYTES, max_depth=CLASSIFIER_MAX_DEPTH,
                                  what="classifier file")
        except DocumentError as exc:
            raise ClassifierError(str(exc)) from None
        try:
            return cls.from_json_dict(data)
        except ClassifierError as exc:
            raise ClassifierError(f"{p}: {exc}") from None

    @classmethod
    def from_base64(cls, text: str) -> "LinearClassifier":
        """Decode :meth:`to_base64` text (whitespace and line breaks are ignored)."""
        try:
            raw = base64.b64decode("".join(str(text).split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ClassifierError(f"not valid base64 ({exc})") from None
        try:
            return cls.from_json(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ClassifierError("base64 decodes to bytes that are not UTF-8 JSON") from None
        except ClassifierError as exc:
            raise ClassifierError(f"decoded base64: {exc}") from None


_RESERVED = ("model_config", "classes", "beta", "beta_bias", "format", "embedding_model", "embedding_dim",
             "weights", "score")


def _recognizer_entries(payload: Any) -> list[Any]:
    if isinstance(payload, dict) and "recognizers" in payload:
        payload = payload["recognizers"]
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list):
        return payload
    raise ClassifierError(f"expected a classifier object, a list of them or {{\"recognizers\": [...]}}, "
                          f"got {type(payload).__name__}")


def load_classifiers(source: Any, *, default_name: str = "classifier") -> list[tuple[str, LinearClassifier]]:
    """``(name, classifier)`` pairs from a model file, a perch-runner recognizers file, or parsed JSON.

    Accepts hoplite's ``LinearClassifier`` JSON, a list of them, or perch-runner's
    ``{"recognizers": [...]}``; each entry's name is its ``name`` (``classifier_name``), else
    ``default_name`` (numbered when there are several).

    Raises
    ------
    ClassifierError
        Unreadable JSON, a file over :data:`CLASSIFIER_MAX_BYTES` or nested deeper than
        :data:`CLASSIFIER_MAX_DEPTH` levels, or an entry that is not a linear classifier (the
        message names it).
    """
    origin = ""
    if isinstance(source, (str, Path)) and not str(source).lstrip().startswith(("{", "[")):
        p = Path(source)
        try:
            payload = load_json_file(p, max_bytes=CLASSIFIER_MAX_BYTES, max_depth=CLASSIFIER_MAX_DEPTH,
                                     what="classifier file")
        except DocumentError as exc:
            raise ClassifierError(str(exc)) from None
        origin = f"{p}: "
    elif isinstance(source, (str, bytes)):
        try:
            payload = parse_json(source, max_depth=CLASSIFIER_MAX_DEPTH)
        except DocumentError as exc:
            raise ClassifierError(str(exc)) from None
    else:
        payload = source
    try:
        entries = _recognizer_entries(payload)
    except ClassifierError as exc:
        raise ClassifierError(f"{origin}{exc}") from None
    if not entries:
        raise ClassifierError(f"{origin}no classifiers in the file")
    out = []
    for i, entry in enumerate(entries):
        where = f"recognizers[{i}]" if len(entries) > 1 or (isinstance(payload, dict) and "recognizers" in payload) \
            else ""
        try:
            clf = LinearClassifier.from_json_dict(entry)
        except ClassifierError as exc:
            raise ClassifierError(f"{origin}{where + ': ' if where else ''}{exc}") from None
        name = next((str(entry[k]) for k in ("name", "classifier_name") if isinstance(entry, dict)
                     and isinstance(entry.get(k), str) and entry[k].strip()), None)
        out.append((name or (default_name if len(entries) == 1 else f"{default_name}{i}"), clf))
    names = [n for n, _ in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ClassifierError(f"{origin}two classifiers are named {dup!r}")
    return out


# -- training --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train_linear_classifier` fits and evaluates.

    Attributes
    ----------
    holdout_fraction : float
        Share of each label's clips held out for the metrics, in [0, 1); whole clips are held
        out (their windows never train), at least one per label that has two clips or more.
    seed : int
        Seed of the held-out draw.
    regularization : float
        scikit-learn's ``C`` (inverse L2 strength) on standardised embeddings.
    max_iter : int
        L-BFGS iterations per label.
    negative_label : str, optional
        Clips under this label are negatives for every other label and not a class of their own
        (with one other label: a one-class classifier, as hoplite trains them).
    """

    holdout_fraction: float = 0.25
    seed: int = 0
    regularization: float = 1.0
    max_iter: int = 1000
    negative_label: str | None = None


@dataclass
class TrainResult:
    """A trained classifier, its held-out metrics, and which rows were held out.

    Attributes
    ----------
    classifier : LinearClassifier
    metrics : dict
        JSON-able: per-class average precision and ROC AUC on held-out windows, macro means,
        top-1 accuracy, counts.
    heldout_rows : numpy.ndarray
        bool [N] over the embedding rows.
    heldout_scores : numpy.ndarray
        float32 [N_heldout, C]: ``classifier.scores`` of the held-out rows.
    """

    classifier: LinearClassifier
    metrics: dict[str, Any]
    heldout_rows: np.ndarray
    heldout_scores: np.ndarray


def split_clips(clip_labels: Sequence[tuple[str, ...]], *, fraction: float, seed: int) -> np.ndarray:
    """Stratified held-out draw of clips: bool [n_clips], True for held out.

    Clips are grouped by their label set; each group gives ``round(fraction * n)`` clips
    (at least one when the group has two or more and ``fraction > 0``; a group of one trains).
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(len(clip_labels), dtype=bool)
    if fraction <= 0:
        return held
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, labels in enumerate(clip_labels):
        groups.setdefault(tuple(sorted(labels)), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        n = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        held[rng.permutation(np.asarray(members))[:n]] = True
    return held


def evaluate(scores: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class average precision and ROC AUC (scikit-learn) of scores [N, C] against 0/1 targets [N, C]."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    per_class: dict[str, Any] = {}
    aps, aucs = [], []
    for c, name in enumerate(classes):
        y, s = targets[:, c].astype(int), scores[:, c].astype(np.float64)
        pos = int(y.sum())
        entry: dict[str, Any] = {"positives": pos, "negatives": int(y.size - pos),
                                 "chance_average_precision": round(pos / y.size, 6) if y.size else None}
        if 0 < pos < y.size:
            entry["average_precision"] = round(float(average_precision_score(y, s)), 6)
            entry["roc_auc"] = round(float(roc_auc_score(y, s)), 6)
            aps.append(entry["average_precision"])
            aucs.append(entry["roc_auc"])
        else:
            entry["average_precision"] = entry["roc_auc"] = None
            entry["note"] = "needs held-out windows with and without the label"
        per_class[name] = entry
    labelled = targets.sum(axis=1) > 0
    top1 = targets[np.arange(len(targets)), np.argmax(scores, axis=1)][labelled] if len(targets) else np.zeros(0)
    return {
        "windows": int(len(targets)),
        "macro_average_precision": round(float(np.mean(aps)), 6) if aps else None,
        "macro_roc_auc": round(float(np.mean(aucs)), 6) if aucs else None,
        "top1_accuracy": round(float(top1.mean()), 6) if top1.size else None,
        "per_class": per_class,
    }


def train_linear_classifier(embeddings: np.ndarray, targets: np.ndarray, clip_of_row: np.ndarray,
                            classes: Sequence[str], *, embedding_model: str, model_config: dict[str, Any],
                            options: TrainOptions = TrainOptions(),
                            info: dict[str, Any] | None = None) -> TrainResult:
    """Fit one logistic regression per label (one-vs-rest) on the training clips; score the held-out ones.

    Parameters
    ----------
    embeddings : numpy.ndarray
        float32 [N, D], one row per window.
    targets : numpy.ndarray
        0/1 [N, C]: the labels of each window (its clip's).
    clip_of_row : numpy.ndarray
        int [N]: which clip each row comes from (held out together).
    classes : sequence of str
        The C label names (one label needs rows without it: negatives).
    embedding_model : str
        Name of the model that made the embeddings.
    model_config : dict
        hoplite's ``ModelConfig`` of the embeddings (a dict with ``model_key``), recorded as the file's
        ``model_config``; or just the model's settings (``window_s``, ``sample_rate_hz``, ...), recorded
        as ``model_config.model_config``.
    options : TrainOptions
    info : dict, optional
        Extra top-level fields for the model file.

    Returns
    -------
    TrainResult

    Raises
    ------
    ClassifierError
        No label, or a label with no positive or no negative training window.

    Notes
    -----
    scikit-learn's ``LogisticRegression`` (L-BFGS, ``class_weight="balanced"``) per label is the
    same model as perch-hoplite's sigmoid cross-entropy head, fitted to convergence instead of a
    fixed number of Adam steps. Embeddings are standardised for the fit and the scaling is folded
    into ``beta``/``beta_bias``, so applying the classifier is one affine map on raw embeddings.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(targets).astype(bool)
    classes = tuple(classes)
    if len(classes) < 1:
        raise ClassifierError("training needs at least one label")
    if len(classes) == 1 and y.all():
        raise ClassifierError(f"training one label ({classes[0]!r}) needs negative clips (clips without it): "
                              "a label is learnt against other clips")
    clips = np.asarray(clip_of_row, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0], len(classes)) or clips.shape != (x.shape[0],) or not len(x):
        raise ClassifierError(f"embeddings {list(x.shape)}, targets {list(y.shape)} and clip indices "
                              f"{list(clips.shape)} do not match ({len(classes)} classes)")
    clip_ids, first_row, clip_of = np.unique(clips, return_index=True, return_inverse=True)
    clip_labels = [tuple(c for c, on in zip(classes, y[r]) if on) for r in first_row]
    held_clip = split_clips(clip_labels, fraction=options.holdout_fraction, seed=options.seed)
    held = held_clip[clip_of]
    train_x, train_y = x[~held].astype(np.float64), y[~held]
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    z = (train_x - mean) / std
    beta = np.zeros((x.shape[1], len(classes)), dtype=np.float64)
    bias = np.zeros(len(classes), dtype=np.float64)
    for c, name in enumerate(classes):
        yc = train_y[:, c]
        if yc.all() or not yc.any():
            raise ClassifierError(f"label {name!r} has {'no negative' if yc.all() else 'no positive'} training "
                                  "windows; add clips (or lower training.holdout_fraction)")
        model = LogisticRegression(C=options.regularization, class_weight="balanced", max_iter=options.max_iter)
        model.fit(z, yc)
        w = model.coef_[0] / std
        beta[:, c] = w
        bias[c] = model.intercept_[0] - float(np.dot(w, mean))
    notes = {
        "training": {
            "method": "one-vs-rest logistic regression (scikit-learn LogisticRegression, lbfgs, "
                      "class_weight=balanced) on standardised embeddings, scaling folded into beta",
            "regularization_C": options.regularization, "max_iter": options.max_iter,
            "holdout_fraction": options.holdout_fraction, "seed": options.seed,
            "train_windows": int((~held).sum()), "heldout_windows": int(held.sum()),
            "train_clips": int((~held_clip).sum()), "heldout_clips": int(held_clip.sum()),
        },
        **(info or {}),
    }
    if "model_key" in model_config:  # hoplite's ModelConfig of the embeddings (what its databases hold)
        config = {**dict(model_config), "embedding_dim": int(x.shape[1])}
    else:
        config = {"model_key": embedding_model, "embedding_dim": int(x.shape[1]), "model_config": dict(model_config)}
    classifier = LinearClassifier(beta.astype(np.float32), bias.astype(np.float32), classes, embedding_model,
                                  config, notes)
    heldout_scores = classifier.scores(x[held])
    metrics = {"heldout": evaluate(heldout_scores, y[held], classes) if held.any() else None,
               "train": evaluate(classifier.scores(x[~held]), y[~held], classes),
               "score": SCORE}
    return TrainResult(classifier, metrics, held, heldout_scores)
