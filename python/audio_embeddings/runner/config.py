"""The runner's YAML config, validated strictly: every error names the field.

.. code-block:: yaml

    model: perch_v2              # what B1's --model takes: preset, SavedModel dir, .onnx, .tflite
    hop_length_seconds: 5.0      # seconds between window starts (default: the window length)
    classifiers:                 # classify: one or more linear classifiers
      - name: "classifier1"
        tags: ["tag1", "tag2"]   # labels to report (default: all of the classifier's labels)
        model: "eyJtb2RlbF9j..." # base64 of the model JSON, or a path to it (relative to this file)
    recognizers: koala.json      # perch-runner's key: a {"recognizers": [...]} file (or a list of files /
                                 # objects); each recognizer is a classifier named by its "name"
    training:                    # train: all optional
      holdout_fraction: 0.25
      seed: 0
      regularization: 1.0        # scikit-learn's C on standardised embeddings
      max_iter: 1000
      negative_label: noise      # clips under this label are negatives only: with one other label the
                                 # classifier is one-class (hoplite's kind)

An unknown key, a value of the wrong type, undecodable base64 or a model that is not a
linear classifier is a :class:`ConfigError` such as
``config.yml: classifiers[0].model: not valid base64 (Incorrect padding) and not an existing file``.

The file itself is read within bounds, and refused in one line before anything is built from it:
more than 16 MiB (:data:`CONFIG_MAX_BYTES`), a YAML alias (``*name``; configs never need one, and
nine levels of them stand for billions of values), more than 50 levels of nesting
(:data:`CONFIG_MAX_DEPTH`) or more than 100 000 values (:data:`CONFIG_MAX_NODES`), e.g.
``bomb.yml: line 5: an alias (*a): YAML aliases are not accepted ...``.
"""

from __future__ import annotations

import difflib
import hashlib
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .classifier import ClassifierError, LinearClassifier, TrainOptions, load_classifiers

DEFAULT_MODEL = "perch_v2"
TOP_KEYS = ("model", "hop_length_seconds", "classifiers", "recognizers", "training")
CLASSIFIER_KEYS = ("name", "tags", "model")
TRAINING_KEYS = ("holdout_fraction", "seed", "regularization", "max_iter", "negative_label")
#: Largest config file accepted (16 MiB): room for base64 classifiers written inline, refused before parsing.
CONFIG_MAX_BYTES = 16 << 20
#: Most levels of nested mappings and lists in a config (its own layout needs 3).
CONFIG_MAX_DEPTH = 50
#: Most values in a config (PyYAML reads some 50 000 a second; a tags list of all ~15k Perch labels fits).
CONFIG_MAX_NODES = 100_000


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ClassifierSpec:
    """One entry of ``classifiers``.

    Attributes
    ----------
    name : str
    tags : tuple of str
        Labels to report; empty: all of the classifier's labels.
    classifier : LinearClassifier
    source : str
        ``file <path>``, ``base64`` or ``inline``.
    sha256 : str
        Of the classifier's canonical JSON (identifies it in provenance and resume checks).
    """

    name: str
    tags: tuple[str, ...]
    classifier: LinearClassifier
    source: str
    sha256: str

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels this entry reports (``tags``, or all classes)."""
        return self.tags or self.classifier.classes

    def describe(self) -> dict[str, Any]:
        c = self.classifier
        return {"name": self.name, "tags": list(self.tags), "labels": list(self.labels), "source": self.source,
                "sha256": self.sha256, "embedding_model": c.embedding_model, "embedding_dim": c.embedding_dim,
                "classes": list(c.classes)}


@dataclass(frozen=True)
class RunnerConfig:
    """A validated config (all fields optional in the file).

    Attributes
    ----------
    model : str or None
        Backend spec; None: the command line's ``--model`` or ``perch_v2``.
    hop_length_seconds : float or None
        None: the model's window length.
    classifiers : tuple of ClassifierSpec
    training : TrainOptions
    path : str or None
        The file it came from.
    """

    model: str | None = None
    hop_length_seconds: float | None = None
    classifiers: tuple[ClassifierSpec, ...] = ()
    training: TrainOptions = field(default_factory=TrainOptions)
    path: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for provenance (classifiers by name and hash, not their weights)."""
        return {"path": self.path, "model": self.model, "hop_length_seconds": self.hop_length_seconds,
                "classifiers": [c.describe() for c in self.classifiers],
                "training": {k: getattr(self.training, k) for k in TRAINING_KEYS}}


def load_config(path: str | Path | None) -> RunnerConfig:
    """Read and validate a YAML config; None gives the defaults.

    The file is read within bounds before anything is built from it (:mod:`audio_embeddings.safe_load`):
    at most :data:`CONFIG_MAX_BYTES`, no YAML aliases (``*name``), at most :data:`CONFIG_MAX_DEPTH`
    levels of nesting and :data:`CONFIG_MAX_NODES` values, no key given twice in one mapping.

    Raises
    ------
    ConfigError
        Missing, unreadable or oversized file, a YAML alias, nesting too deep, YAML syntax, or any
        invalid field (named in the message; the message starts with the file).
    """
    if path is None:
        return RunnerConfig()
    from ..safe_load import DocumentError, load_yaml_file

    p = Path(path)
    try:
        data = load_yaml_file(p, max_bytes=CONFIG_MAX_BYTES, max_depth=CONFIG_MAX_DEPTH, max_nodes=CONFIG_MAX_NODES,
                              what="config")
    except DocumentError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(data, source=str(p), base_dir=p.parent)


def parse_config(data: Any, *, source: str = "<config>", base_dir: str | Path | None = None) -> RunnerConfig:
    """Validate a config already parsed from YAML (a mapping, or None for an empty file)."""
    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail("", f"expected a mapping of settings at the top level, got {_kind(data)}")
    _check_keys(data, TOP_KEYS, "", fail)
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise fail("model", f"expected a model name or path (string), got {_kind(model)}")
    hop = data.get("hop_length_seconds")
    if hop is not None:
        hop = _positive_number(hop, "hop_length_seconds", fail)
    raw = data.get("classifiers")
    classifiers: list[ClassifierSpec] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise fail("classifiers", f"expected a list of {{name, tags, model}} entries, got {_kind(raw)}")
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        for i, entry in enumerate(raw):
            classifiers.append(_classifier(entry, f"classifiers[{i}]", base, fail))
    if data.get("recognizers") is not None:
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        classifiers.extend(recognizer_specs(data["recognizers"], base, fail))
    names = [c.name for c in classifiers]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise fail("classifiers", f"name {dup!r} is used twice (names identify output rows)")
    training = _training(data.get("training"), fail)
    return RunnerConfig(model=model.strip() if model else None, hop_length_seconds=hop,
                        classifiers=tuple(classifiers), training=training, path=source)


def _spec(name: str, classifier: LinearClassifier, source: str, tags: tuple[str, ...] = ()) -> ClassifierSpec:
    digest = hashlib.sha256(classifier.to_json().encode("utf-8")).hexdigest()
    return ClassifierSpec(name, tags, classifier, source, digest)


def recognizer_specs(value: Any, base: Path, fail=None) -> list[ClassifierSpec]:
    """Classifier specs of perch-runner's ``recognizers``: a file path (or comma-separated paths), a
    ``{"recognizers": [...]}`` object, or a list of paths and objects; names from each recognizer's ``name``."""
    def error(where: str, problem: str) -> Exception:
        return fail(where, problem) if fail is not None else ConfigError(f"{where}: {problem}")

    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else \
        [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise error("recognizers", f"expected a file, a list of files or recognizer objects, got {_kind(value)}")
    specs: list[ClassifierSpec] = []
    for i, item in enumerate(items):
        where = f"recognizers[{i}]" if len(items) > 1 else "recognizers"
        if isinstance(item, str):
            path = Path(item).expanduser()
            path = path if path.is_absolute() else base / path
            if not _is_file(path):
                raise error(where, f"{path}: file not found")
            source, payload = f"file {path}", path
        elif isinstance(item, dict):
            source, payload = "inline", item
        else:
            raise error(where, f"expected a file path or a recognizer object, got {_kind(item)}")
        try:
            pairs = load_classifiers(payload, default_name=f"recognizer{i}")
        except ClassifierError as exc:
            raise error(where, str(exc)) from None
        specs.extend(_spec(name, clf, source) for name, clf in pairs)
    return specs


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 72
_SHORT.maxlevel = 3


def _kind(value: Any) -> str:
    """``str 'x'``, ``list [1, 2]``: the type and a repr cut short (never the whole of a large value)."""
    return "nothing" if value is None else f"{type(value).__name__} {_SHORT.repr(value)}"[:80]


def _check_keys(mapping: dict, known: tuple[str, ...], prefix: str, fail) -> None:
    for key in mapping:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise fail(where, f"unknown key {key!r} (known: {', '.join(known)}){hint}")


def _positive_number(value: Any, where: str, fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(where, f"expected a number > 0, got {_kind(value)}")
    if not value > 0 or value != value or value == float("inf"):
        raise fail(where, f"must be > 0 and finite, got {value!r}")
    return float(value)


def _classifier(entry: Any, where: str, base: Path, fail) -> ClassifierSpec:
    if not isinstance(entry, dict):
        raise fail(where, f"expected a mapping with name, tags and model, got {_kind(entry)}")
    _check_keys(entry, CLASSIFIER_KEYS, where, fail)
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail(f"{where}.name", f"expected a non-empty string, got {_kind(name)}")
    tags = entry.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise fail(f"{where}.tags", f"expected a list of label names (strings), got {_kind(tags)}")
    if "model" not in entry:
        raise fail(f"{where}.model", "missing: the base64 of a classifier's JSON file, or a path to it")
    classifier, source = _classifier_model(entry["model"], f"{where}.model", base, fail)
    unknown = [t for t in tags if t not in classifier.classes]
    if unknown:
        raise fail(f"{where}.tags", f"{unknown[0]!r} is not a label of this classifier "
                                    f"(labels: {', '.join(classifier.classes)})")
    digest = hashlib.sha256(classifier.to_json().encode("utf-8")).hexdigest()
    return ClassifierSpec(name.strip(), tuple(dict.fromkeys(tags)), classifier, source, digest)


def _classifier_model(value: Any, where: str, base: Path, fail) -> tuple[LinearClassifier, str]:
    if isinstance(value, dict):
        try:
            return LinearClassifier.from_json_dict(value), "inline"
        except ClassifierError as exc:
            raise fail(where, str(exc)) from None
    if not isinstance(value, str) or not value.strip():
        raise fail(where, f"expected the base64 of a classifier JSON file or a path to one, got {_kind(value)}")
    text = value.strip()
    looks_like_path = "\n" not in text and len(text) < 4096
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if looks_like_path and (_is_file(path) or text.lower().endswith(".json")):
        if not _is_file(path):
            raise fail(where, f"{path}: file not found")
        try:
            pairs = load_classifiers(path)
        except ClassifierError as exc:
            raise fail(where, str(exc)) from None
        if len(pairs) != 1:
            raise fail(where, f"{path} holds {len(pairs)} classifiers ({', '.join(n for n, _ in pairs)}); give it "
                              "as recognizers: (each becomes a classifier under its own name)")
        return pairs[0][1], f"file {path}"
    try:
        return LinearClassifier.from_base64(text), "base64"
    except ClassifierError as exc:
        message = str(exc)
        if message.startswith("not valid base64"):
            message += " and not an existing file"
        raise fail(where, message) from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a long base64 string is no file name (ENAMETOOLONG)
        return False


def _training(raw: Any, fail) -> TrainOptions:
    if raw is None:
        return TrainOptions()
    if not isinstance(raw, dict):
        raise fail("training", f"expected a mapping ({', '.join(TRAINING_KEYS)}), got {_kind(raw)}")
    _check_keys(raw, TRAINING_KEYS, "training", fail)
    values: dict[str, Any] = {}
    if "holdout_fraction" in raw:
        v = raw["holdout_fraction"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise fail("training.holdout_fraction", f"expected a number in [0, 1), got {_kind(v)}")
        values["holdout_fraction"] = float(v)
    for key in ("seed", "max_iter"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
                raise fail(f"training.{key}", f"expected an integer >= {0 if key == 'seed' else 1}, got {_kind(v)}")
            values[key] = int(v)
    if "regularization" in raw:
        values["regularization"] = _positive_number(raw["regularization"], "training.regularization", fail)
    if raw.get("negative_label") is not None:
        v = raw["negative_label"]
        if not isinstance(v, str) or not v.strip():
            raise fail("training.negative_label", f"expected a label name (string), got {_kind(v)}")
        values["negative_label"] = v.strip()
    return TrainOptions(**values)
