"""Stimulus feature spaces for encoding models: runs, PCA, per-run z-scoring, banded-ridge bundles, BIDS derivatives.

An encoding model of fMRI (or EEG/MEG) data takes, per feature space, a matrix
``[n_samples, n_features]`` whose rows are the volumes of all runs one after the other, a run
index per row for leave-one-run-out cross-validation, and FIR delays that never reach across
a run boundary. :func:`build_bundle` makes exactly that from the embeddings of the runs'
stimuli, in this order:

1. **align** each run on its own grid (:func:`~audio_embeddings.align.align_embeddings` with
   the given :class:`~audio_embeddings.align.AlignSettings` and each run's own duration; the
   HRF is convolved inside the run, so no tail crosses into the next run);
2. **PCA** per band (``pca=K``): fitted on the aligned rows of all runs together (centred by
   their mean), or taken from an earlier bundle (``pca_from``) so new stimuli get the same
   projection; components, mean and explained-variance ratios are stored in the bundle;
3. **z-score** per run (``zscore="run"``): each column of each run to mean 0, standard
   deviation 1 (population, ``ddof=0``; a constant column becomes 0);
4. **delays** per run (the settings' ``delays``): delayed copies side by side, zero-filled at
   the start of every run;
5. concatenate the runs: ``run_ids`` [n_samples] (0-based), ``time_axis_s`` (each run's own
   volume times).

The bundle (:class:`FeatureBundle`) is written as ``.npz``, ``.mat`` (a struct ``bands`` of
``[n_samples x n_features]`` single matrices) or HDF5 (``.h5``/``.hdf5``, group ``/bands``);
each band is one feature space of himalaya's ``BandedRidgeCV(groups="input")`` /
``MultipleKernelRidgeCV`` (``bundle.band_list()``), or of MATLAB ridge code.

:func:`write_bids_timeseries` writes a band as a BIDS derivative
``<stim>_desc-<model><layer>_timeseries.tsv.gz`` (no header, BIDS' continuous-recording
layout) with its JSON sidecar (``SamplingFrequency``, ``StartTime``, ``Columns`` and the
model and settings), plus the derivative folder's ``dataset_description.json``.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .align import AlignSettings, Aligned, delay_stack
from .declarations import Option
from .outputs.atomic import atomic_path, write_bytes_atomic, write_text_atomic

__all__ = ["FeaturesError", "PCAProjection", "FeatureBundle", "align_runs", "build_bundle", "zscore_runs",
           "write_bids_timeseries", "write_feature_spaces", "check_feature_options", "band_label",
           "bids_stim_label", "ZSCORE_MODES", "BUNDLE_SUFFIXES", "OPTIONS"]

#: The file types a bundle is written as.
BUNDLE_SUFFIXES = (".npz", ".mat", ".h5", ".hdf5")

ZSCORE_MODES = ("run", "none")


class FeaturesError(ValueError):
    """Runs, bands or a bundle that cannot be used; the message says which."""


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def _run_arrays(run: Any) -> tuple[np.ndarray, np.ndarray, float, float | None]:
    """(rows [T, D] or [L, T, D], onsets [T], window_s, duration_s) of a result or a tuple."""
    if hasattr(run, "embeddings") and hasattr(run, "time_axis_s"):
        n_samples = getattr(run, "n_samples", None)
        duration = None if n_samples is None else float(n_samples) / float(run.sample_rate_hz)
        return (np.asarray(run.embeddings, dtype=np.float32), np.asarray(run.time_axis_s, dtype=np.float64),
                float(run.window_s), duration)
    if isinstance(run, Mapping):
        return (np.asarray(run["embeddings"]), np.asarray(run["time_axis_s"], dtype=np.float64),
                float(run["window_s"]), run.get("duration_s"))
    try:
        rows, onsets, window, *rest = run
    except (TypeError, ValueError):
        raise FeaturesError("a run is a result (embeddings, time_axis_s, window_s, n_samples, sample_rate_hz), a "
                            "mapping with those keys, or a tuple (embeddings, time_axis_s, window_s[, duration_s])"
                            ) from None
    return np.asarray(rows), np.asarray(onsets, dtype=np.float64), float(window), (rest[0] if rest else None)


def align_runs(runs: Sequence[Any], settings: AlignSettings, *,
               run_names: Sequence[str] | None = None) -> list[Aligned]:
    """Each run aligned on its own grid (its own duration, HRF and delays inside the run).

    Parameters
    ----------
    runs : sequence
        One entry per run: a result (``EmbeddingResult``/``FileEmbedding``), a mapping with
        ``embeddings``, ``time_axis_s``, ``window_s`` (and ``duration_s``), or a tuple
        ``(embeddings, time_axis_s, window_s[, duration_s])``; rows [T, D] or [L, T, D].
    settings : AlignSettings
        The grid (``duration_s`` None: each run's own duration, ``ceil(D_run / TR)`` volumes).
    run_names : sequence of str, keyword-only
        Each run's stimulus (its corpus key or path): needed when ``settings`` name a folder of events
        files or bold sidecars, from which each run takes its own (:meth:`AlignSettings.for_input`).

    Returns
    -------
    list of Aligned
        One per run, ``[T_run, D']`` (or ``[L, T_run, D']``).
    """
    if not runs:
        raise FeaturesError("no runs")
    if settings.per_input and (run_names is None or len(run_names) != len(runs)):
        raise FeaturesError("the events or bold sidecars are a folder: each run's stimulus name is needed")
    own = [settings.for_input(name) for name in run_names] if settings.per_input else [settings] * len(runs)
    return [each.apply(rows, onsets, window_s=window, duration_s=duration)
            for each, (rows, onsets, window, duration) in zip(own, map(_run_arrays, runs))]


def zscore_runs(x: np.ndarray, run_ids: np.ndarray) -> np.ndarray:
    """Each column of each run to mean 0 and standard deviation 1 (``ddof=0``; constant columns become 0).

    Parameters
    ----------
    x : numpy.ndarray
        [n_samples, n_features].
    run_ids : numpy.ndarray
        int [n_samples].

    Returns
    -------
    numpy.ndarray
        Same shape and dtype.
    """
    out = np.empty_like(x)
    for r in np.unique(run_ids):
        sel = run_ids == r
        block = x[sel].astype(np.float64)
        sd = block.std(axis=0)
        out[sel] = ((block - block.mean(axis=0)) / np.where(sd > 0, sd, np.inf)).astype(x.dtype)
    return out


# ---------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PCAProjection:
    """A fitted PCA of one band: ``(x - mean) @ components.T``.

    Attributes
    ----------
    components : numpy.ndarray
        float64 [K, D], rows the principal axes (scikit-learn's ``components_``).
    mean : numpy.ndarray
        float64 [D].
    explained_variance_ratio : numpy.ndarray
        float64 [K].
    """

    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, n_components: int) -> "PCAProjection":
        """Fit on rows x [n, D] with scikit-learn's PCA (full SVD, deterministic signs)."""
        from sklearn.decomposition import PCA  # deferred: scikit-learn is only needed for --pca

        k = int(n_components)
        if k < 1 or k > min(x.shape):
            raise FeaturesError(f"PCA to {k} components needs at least {k} rows and {k} features, got {x.shape}")
        pca = PCA(n_components=k, svd_solver="full").fit(np.asarray(x, dtype=np.float64))
        return cls(pca.components_.copy(), pca.mean_.copy(), pca.explained_variance_ratio_.copy())

    def transform(self, x: np.ndarray) -> np.ndarray:
        """[n, D] -> [n, K] (float32 for float32 input)."""
        if x.shape[-1] != self.components.shape[1]:
            raise FeaturesError(f"the PCA was fitted on {self.components.shape[1]} features, these rows have "
                                f"{x.shape[-1]}")
        dtype = np.float64 if x.dtype == np.float64 else np.float32
        return ((np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T).astype(dtype)


# ---------------------------------------------------------------------------------------------
# The bundle
# ---------------------------------------------------------------------------------------------


_BAND_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


@dataclass
class FeatureBundle:
    """Feature spaces of one stimulus set, ready for banded ridge.

    Attributes
    ----------
    bands : dict of str to numpy.ndarray
        Band name -> float32 [n_samples, n_features] (delays side by side, as ``delay_stack``).
    run_ids : numpy.ndarray
        int64 [n_samples], 0-based run index of every row.
    run_names : tuple of str
        [n_runs].
    time_axis_s : numpy.ndarray
        float64 [n_samples], each row's time within its run.
    delays : tuple of int
        Delays in rows (applied per run).
    pca : dict of str to PCAProjection
        The projection of each band reduced by PCA.
    info : dict
        JSON-able provenance (model, settings).
    """

    bands: dict[str, np.ndarray]
    run_ids: np.ndarray
    run_names: tuple[str, ...]
    time_axis_s: np.ndarray
    delays: tuple[int, ...] = (0,)
    pca: dict[str, PCAProjection] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def band_list(self) -> list[np.ndarray]:
        """The bands in order, for himalaya's ``groups="input"`` / ``MultipleKernelRidgeCV`` kernelizers."""
        return list(self.bands.values())

    @property
    def groups(self) -> np.ndarray:
        """int [sum of n_features]: the band index of every column of :meth:`concatenated`."""
        return np.concatenate([np.full(b.shape[1], i, dtype=np.int64) for i, b in enumerate(self.bands.values())])

    def concatenated(self) -> np.ndarray:
        """All bands side by side, [n_samples, sum of n_features]."""
        return np.concatenate(self.band_list(), axis=1)

    @classmethod
    def merge(cls, *bundles: "FeatureBundle") -> "FeatureBundle":
        """The bands of several bundles of the same runs (e.g. one per model) in one bundle.

        Raises
        ------
        FeaturesError
            Bundles whose runs, rows or delays differ, or a band name given twice.
        """
        if not bundles:
            raise FeaturesError("no bundles to merge")
        first = bundles[0]
        bands: dict[str, np.ndarray] = {}
        pca: dict[str, PCAProjection] = {}
        for b in bundles:
            if (not np.array_equal(b.run_ids, first.run_ids) or b.run_names != first.run_names
                    or not np.allclose(b.time_axis_s, first.time_axis_s) or b.delays != first.delays):
                raise FeaturesError("bundles to merge must hold the same runs, rows and delays")
            twice = set(bands) & set(b.bands)
            if twice:
                raise FeaturesError(f"band name(s) in more than one bundle: {sorted(twice)}")
            bands.update(b.bands)
            pca.update(b.pca)
        return cls(bands=bands, run_ids=first.run_ids, run_names=first.run_names, time_axis_s=first.time_axis_s,
                   delays=first.delays, pca=pca, info={"merged": [b.info for b in bundles]})

    def save(self, path: str | Path) -> Path:
        """Write ``.npz``, ``.mat`` (v5; struct ``bands``) or ``.h5``/``.hdf5`` (group ``/bands``), atomically.

        Every format holds ``band_names``, each band, ``run_ids`` (0-based), ``run_names``,
        ``time_axis_s``, ``delays``, ``pca_<band>_{components,mean,explained_variance_ratio}``
        and ``info`` (JSON text).
        """
        path = Path(path)
        suffix = path.suffix.lower()
        names = list(self.bands)
        common = {"run_ids": np.asarray(self.run_ids, dtype=np.int64),
                  "time_axis_s": np.asarray(self.time_axis_s, dtype=np.float64),
                  "delays": np.asarray(self.delays, dtype=np.int64), "info": json.dumps(self.info)}
        pca = {}
        for name, p in self.pca.items():
            pca.update({f"pca_{name}_components": p.components, f"pca_{name}_mean": p.mean,
                        f"pca_{name}_explained_variance_ratio": p.explained_variance_ratio})
        if suffix == ".npz":
            buf = io.BytesIO()
            np.savez(buf, band_names=np.asarray(names), run_names=np.asarray(self.run_names),
                     **{f"band_{n}": b for n, b in self.bands.items()}, **common, **pca)
            write_bytes_atomic(path, buf.getvalue())
        elif suffix == ".mat":
            import scipy.io

            variables = {"bands": {n: np.asarray(b, dtype=np.float32) for n, b in self.bands.items()},
                         "band_names": np.asarray(names, dtype=object).reshape(-1, 1),
                         "run_names": np.asarray(self.run_names, dtype=object).reshape(-1, 1),
                         **{k: (v.reshape(-1, 1).astype(np.float64) if k in ("run_ids", "time_axis_s") else v)
                            for k, v in common.items()},
                         **pca}
            variables["run_ids"] = variables["run_ids"] + 1.0  # MATLAB's 1-based run numbers
            variables["delays"] = np.asarray(self.delays, dtype=np.float64).reshape(1, -1)
            with atomic_path(path, suffix=".mat") as tmp:
                scipy.io.savemat(tmp, variables, do_compression=True, oned_as="column")
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with atomic_path(path, suffix=suffix) as tmp, h5py.File(tmp, "w") as f:
                for n, b in self.bands.items():
                    f.create_dataset(f"bands/{n}", data=np.asarray(b, dtype=np.float32))
                f.create_dataset("band_names", data=np.asarray(names, dtype=object), dtype=h5py.string_dtype())
                f.create_dataset("run_names", data=np.asarray(self.run_names, dtype=object),
                                 dtype=h5py.string_dtype())
                for k, v in {**common, **pca}.items():
                    if isinstance(v, str):
                        f.attrs[k] = v
                    else:
                        f.create_dataset(k, data=v)
        else:
            raise FeaturesError(f"{path}: a bundle is .npz, .mat, .h5 or .hdf5")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureBundle":
        """Read a bundle written by :meth:`save` (any of its formats)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = [str(n) for n in z["band_names"]]
                data = {k: z[k] for k in z.files}
            bands = {n: data[f"band_{n}"] for n in names}
            run_names = tuple(str(n) for n in data["run_names"])
            info = json.loads(str(data["info"]))
        elif suffix == ".mat":
            import scipy.io

            m = scipy.io.loadmat(path, squeeze_me=True, chars_as_strings=True)
            names = [str(n) for n in np.atleast_1d(m["band_names"])]
            bands = {n: np.atleast_2d(m["bands"][n].item()) for n in names}
            data = {k: m[k] for k in m if not k.startswith("__")}
            data["run_ids"] = np.atleast_1d(data["run_ids"]).astype(np.int64) - 1
            run_names = tuple(str(n) for n in np.atleast_1d(m["run_names"]))
            info = json.loads(str(m["info"]))
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["band_names"][()]]
                bands = {n: f[f"bands/{n}"][()] for n in names}
                data = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
                run_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in f["run_names"][()])
                info = json.loads(f.attrs["info"])
        else:
            raise FeaturesError(f"{path}: a bundle is .npz, .mat, .h5 or .hdf5")
        pca = {}
        for n in names:
            if f"pca_{n}_components" in data:
                pca[n] = PCAProjection(np.atleast_2d(np.asarray(data[f"pca_{n}_components"], dtype=np.float64)),
                                       np.atleast_1d(np.asarray(data[f"pca_{n}_mean"], dtype=np.float64)),
                                       np.atleast_1d(np.asarray(data[f"pca_{n}_explained_variance_ratio"],
                                                                dtype=np.float64)))
        return cls(bands=bands, run_ids=np.atleast_1d(np.asarray(data["run_ids"], dtype=np.int64)),
                   run_names=run_names, time_axis_s=np.atleast_1d(np.asarray(data["time_axis_s"], dtype=np.float64)),
                   delays=tuple(int(d) for d in np.atleast_1d(data["delays"])), pca=pca, info=info)


def build_bundle(runs: Sequence[Any], *, settings: AlignSettings, band_names: Sequence[str] | None = None,
                 run_names: Sequence[str] | None = None, pca: int | None = None,
                 pca_from: "FeatureBundle | str | Path | None" = None, zscore: str = "none",
                 info: Mapping[str, Any] | None = None) -> FeatureBundle:
    """Align every run, then PCA, z-score per run, delay per run, and concatenate (see the module docstring).

    Parameters
    ----------
    runs : sequence
        As :func:`align_runs`; all runs hold the same layers and dimensions.
    settings : AlignSettings, keyword-only
        The grid; its ``delays`` are applied last, per run (not before PCA).
    band_names : sequence of str, keyword-only
        One name per layer ([L, T, D] rows) or one name ([T, D]); default ``layer0``,
        ``layer1``... (or ``features``). Letters, digits and ``_``, starting with a letter.
    run_names : sequence of str, keyword-only
        Default ``run-1``, ``run-2``...
    pca : int, keyword-only
        Reduce every band to this many components, fitted on all runs' aligned rows.
    pca_from : FeatureBundle or path, keyword-only
        Apply that bundle's projections instead of fitting (same band names).
    zscore : {"run", "none"}, keyword-only
    info : mapping, keyword-only
        Provenance stored with the bundle (the settings are added).

    Returns
    -------
    FeatureBundle

    Raises
    ------
    FeaturesError
        Runs whose layers or dimensions differ, bad band names, ``pca`` with ``pca_from``,
        or a ``pca_from`` bundle without a projection of a band.
    """
    if zscore not in ZSCORE_MODES:
        raise FeaturesError(f"zscore must be one of {', '.join(ZSCORE_MODES)}, got {zscore!r}")
    if pca is not None and pca_from is not None:
        raise FeaturesError("give pca (fit) or pca_from (reuse), not both")
    delays = settings.delays
    aligned = align_runs(runs, dataclasses.replace(settings, delays=(0,)), run_names=run_names)
    shapes = {a.embeddings.shape[:-2] + a.embeddings.shape[-1:] for a in aligned}
    if len(shapes) != 1:
        raise FeaturesError(f"the runs' rows differ in layers/dimensions: {sorted(shapes)}")
    layered = aligned[0].embeddings.ndim == 3
    n_layers = aligned[0].embeddings.shape[0] if layered else 1
    names = list(band_names) if band_names is not None else (
        [f"layer{i}" for i in range(n_layers)] if layered else ["features"])
    if len(names) != n_layers or len(set(names)) != len(names):
        raise FeaturesError(f"give {n_layers} distinct band name(s), got {names}")
    bad = [n for n in names if not _BAND_NAME.match(n)]
    if bad:
        raise FeaturesError(f"band names are letters, digits and _, starting with a letter: {bad}")
    run_names = tuple(run_names) if run_names is not None else tuple(f"run-{i + 1}" for i in range(len(aligned)))
    if len(run_names) != len(aligned):
        raise FeaturesError(f"{len(aligned)} runs but {len(run_names)} run names")
    lengths = [a.time_axis_s.shape[0] for a in aligned]
    run_ids = np.repeat(np.arange(len(aligned), dtype=np.int64), lengths)
    time_axis = np.concatenate([a.time_axis_s for a in aligned])
    if pca_from is not None and not isinstance(pca_from, FeatureBundle):
        pca_from = FeatureBundle.load(pca_from)
    projections: dict[str, PCAProjection] = {}
    bands: dict[str, np.ndarray] = {}
    bounds = np.cumsum([0] + lengths)
    for i, name in enumerate(names):
        x = np.concatenate([a.embeddings[i] if layered else a.embeddings for a in aligned]).astype(np.float32)
        if pca is not None:
            projections[name] = PCAProjection.fit(x, pca)
        elif pca_from is not None:
            if name not in pca_from.pca:
                raise FeaturesError(f"the pca_from bundle has no projection of band {name!r} "
                                    f"(it has {', '.join(pca_from.pca) or 'none'})")
            projections[name] = pca_from.pca[name]
        if name in projections:
            x = projections[name].transform(x)
        if zscore == "run":
            x = zscore_runs(x, run_ids)
        if delays != (0,):
            x = np.concatenate([delay_stack(x[bounds[r]:bounds[r + 1]], delays) for r in range(len(aligned))])
        bands[name] = np.ascontiguousarray(x, dtype=np.float32)
    meta = {**dict(info or {}), "alignment": aligned[0].settings.describe() | {"duration_s": None},
            "zscore": zscore, "pca": pca, "n_runs": len(aligned)}
    return FeatureBundle(bands=bands, run_ids=run_ids, run_names=run_names, time_axis_s=time_axis, delays=delays,
                         pca=projections, info=meta)


# ---------------------------------------------------------------------------------------------
# BIDS derivatives
# ---------------------------------------------------------------------------------------------


_ENTITY = re.compile(r"^[A-Za-z0-9]+-[A-Za-z0-9]+(_[A-Za-z0-9]+-[A-Za-z0-9]+)*$")


def write_bids_timeseries(out_dir: str | Path, *, stim: str, model: str, layer: str | int | None, rows: np.ndarray,
                          sampling_frequency_hz: float, start_time_s: float = 0.0,
                          settings: Mapping[str, Any] | None = None,
                          column_prefix: str = "f") -> tuple[Path, Path]:
    """Write one band as ``<stim>_desc-<model><layer>_timeseries.tsv.gz`` plus its ``.json`` sidecar.

    The file goes to ``out_dir/sub-<label>/[ses-<label>/]func/`` when ``stim`` names a subject
    (``sub-01_task-listen_run-1``), else to ``out_dir`` (a stimulus-level derivative, e.g.
    ``task-listen_run-1``). ``out_dir/dataset_description.json`` is written once
    (``DatasetType: derivative``), so pybids (``BIDSLayout(..., derivatives=out_dir)``) indexes it.

    Parameters
    ----------
    out_dir : str or Path
    stim : str, keyword-only
        BIDS entities ``key-value`` joined by ``_`` (letters and digits).
    model : str, keyword-only
        Model name; non-alphanumerics are dropped for the ``desc`` label (``wav2vec2-base`` ->
        ``wav2vec2base``).
    layer : str or int or None, keyword-only
        Appended to the label (``layer3``); None: none.
    rows : numpy.ndarray
        [T, D] the features (rows are samples).
    sampling_frequency_hz : float, keyword-only
        ``SamplingFrequency`` (1 / TR).
    start_time_s : float, keyword-only
        ``StartTime``: the first row's time relative to the run's first volume (fMRIPrep writes
        its slice-timing reference here).
    settings : mapping, keyword-only
        Stored as ``AudioEmbeddings`` in the sidecar with the model.
    column_prefix : str, keyword-only
        ``Columns`` are ``<prefix>0000``, ``<prefix>0001``...

    Returns
    -------
    (Path, Path)
        The ``.tsv.gz`` and the ``.json``.
    """
    if not _ENTITY.match(stim):
        raise FeaturesError(f"stim must be BIDS entities like task-listen_run-1, got {stim!r}")
    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise FeaturesError(f"rows must be [T, D], got shape {rows.shape}")
    layer_label = "" if layer is None else (f"layer{layer}" if isinstance(layer, int) else str(layer))
    label = re.sub(r"[^A-Za-z0-9]", "", f"{model}{layer_label}")
    if not label:
        raise FeaturesError(f"model {model!r} gives an empty desc label")
    out_dir = Path(out_dir)
    entities = dict(part.split("-", 1) for part in stim.split("_"))
    folder = out_dir
    if "sub" in entities:
        folder = out_dir / f"sub-{entities['sub']}"
        if "ses" in entities:
            folder = folder / f"ses-{entities['ses']}"
        folder = folder / "func"
    folder.mkdir(parents=True, exist_ok=True)
    description = out_dir / "dataset_description.json"
    if not description.exists():
        from . import __version__ as version

        write_text_atomic(description, json.dumps({
            "Name": "audio-embeddings stimulus features", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "audio-embeddings", "Version": str(version)}]}, indent=2) + "\n")
    base = folder / f"{stim}_desc-{label}_timeseries"
    text = io.StringIO()
    np.savetxt(text, rows, delimiter="\t", fmt="%.7g")
    tsv = base.with_name(base.name + ".tsv.gz")
    write_bytes_atomic(tsv, gzip.compress(text.getvalue().encode("ascii"), mtime=0))
    sidecar = base.with_name(base.name + ".json")
    write_text_atomic(sidecar, json.dumps({
        "SamplingFrequency": float(sampling_frequency_hz), "StartTime": float(start_time_s),
        "Columns": [f"{column_prefix}{j:04d}" for j in range(rows.shape[1])],
        "Model": model, "Layer": layer, "AudioEmbeddings": dict(settings or {})}, indent=2) + "\n")
    return tsv, sidecar


# ---------------------------------------------------------------------------------------------
# The scripts' options (command line, MATLAB name-value pairs) and what a run writes with them
# ---------------------------------------------------------------------------------------------


def _components(text: str) -> int:
    """Option type for ``--pca``: a whole number >= 1."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"a whole number >= 1, not {text!r}") from None
    if value < 1:
        raise ValueError(f"a whole number >= 1, not {text!r}")
    return value


def _bundle_path(text: str) -> str:
    """Option type for ``--bundle``: a path ending in one of :data:`BUNDLE_SUFFIXES`."""
    if Path(str(text)).suffix.lower() not in BUNDLE_SUFFIXES:
        raise ValueError(f"a file ending in {', '.join(BUNDLE_SUFFIXES)}, not {text!r}")
    return str(text)


BUNDLE = Option("--bundle", "bundle_file",
                "after the run, write the feature-space bundle of all input files (each file one run, in corpus "
                "order; each layer of --layers, or the model's rows, one named band): .npz, .mat or .h5; needs a "
                "grid (--tr, --target-rate-hz, --bold-json or --events)",
                type=_bundle_path, metavar="FILE", affects="outputs", matlab="Bundle")
PCA = Option("--pca", "pca_components", "with --bundle/--bids-out: reduce every band to K principal components, "
             "fitted on the aligned rows of all runs (stored in the bundle for --pca-from)", type=_components,
             metavar="K", affects="outputs", matlab="PCA")
PCA_FROM = Option("--pca-from", "pca_from", "with --bundle/--bids-out: apply the PCA stored in this earlier bundle "
                  "(same band names) instead of fitting one", metavar="FILE", affects="outputs", matlab="PCAFrom",
                  reads_file=True)
ZSCORE = Option("--zscore", "zscore", "with --bundle/--bids-out: run (each column of each run to mean 0, sd 1) | "
                "none (default)", choices=ZSCORE_MODES, metavar="MODE", affects="outputs", matlab="ZScore")
BIDS_OUT = Option("--bids-out", "bids_out", "after the run, write every stimulus and band as a BIDS derivative "
                  "<stim>_desc-<model><band>_timeseries.tsv.gz with its JSON sidecar in DIR (needs --tr, "
                  "--target-rate-hz or --bold-json)", metavar="DIR", affects="outputs", matlab="BidsOut")

#: The feature-space options, each declared once (flags, MATLAB names, parsed-argument names).
OPTIONS: tuple[Option, ...] = (BUNDLE, PCA, PCA_FROM, ZSCORE, BIDS_OUT)


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    return {o.dest: values.get(o.dest) for o in OPTIONS if values.get(o.dest) is not None}


def check_feature_options(values: Mapping[str, Any], settings: AlignSettings | None) -> bool:
    """Check the feature-space options of a run before anything is embedded.

    Parameters
    ----------
    values : mapping
        Parsed option values keyed by ``Option.dest``.
    settings : AlignSettings or None
        The run's alignment (:func:`~audio_embeddings.align.settings_from`).

    Returns
    -------
    bool
        Whether the run writes a bundle or BIDS derivatives.

    Raises
    ------
    FeaturesError
        ``--pca``/``--pca-from``/``--zscore`` without ``--bundle`` or ``--bids-out``, both
        ``--pca`` and ``--pca-from``, a ``--pca-from`` that is not a bundle file, no grid, or
        ``--bids-out`` with ``--events`` (no sampling frequency).
    """
    given = _given(values)
    if BUNDLE.dest not in given and BIDS_OUT.dest not in given:
        extra = [f"{o.flag} ({o.matlab_name})" for o in (PCA, PCA_FROM, ZSCORE) if o.dest in given]
        if extra:
            raise FeaturesError(f"{', '.join(extra)} need(s) {BUNDLE.flag} ({BUNDLE.matlab_name}) or "
                                f"{BIDS_OUT.flag} ({BIDS_OUT.matlab_name})")
        return False
    if PCA.dest in given and PCA_FROM.dest in given:
        raise FeaturesError(f"give {PCA.flag} ({PCA.matlab_name}) or {PCA_FROM.flag} ({PCA_FROM.matlab_name}), "
                            "not both")
    if PCA_FROM.dest in given:
        source = Path(given[PCA_FROM.dest])
        if source.suffix.lower() not in BUNDLE_SUFFIXES or not source.is_file():
            raise FeaturesError(f"{PCA_FROM.flag} {source}: not a bundle file ({', '.join(BUNDLE_SUFFIXES)})")
    if settings is None:
        raise FeaturesError(f"{BUNDLE.flag}/{BIDS_OUT.flag} need(s) a grid: --tr, --target-rate-hz, --bold-json "
                            "or --events")
    if BIDS_OUT.dest in given and settings.target_rate_hz is None:
        raise FeaturesError(f"{BIDS_OUT.flag} ({BIDS_OUT.matlab_name}) writes regularly sampled time series: "
                            "give --tr, --target-rate-hz or --bold-json, not --events")
    return True


def band_label(model: str) -> str:
    """A band name from a model name or folder: ``facebook/wav2vec2-base`` -> ``wav2vec2_base``."""
    label = re.sub(r"[^A-Za-z0-9]+", "_", Path(str(model).rstrip("/\\")).name).strip("_")[:62]
    if not label:
        return "features"
    return label if label[0].isalpha() else f"m{label}"[:62]


def bids_stim_label(key: str) -> str:
    """The BIDS entities of a stimulus: its file stem when it is entities (``sub-01_task-x_run-1``),
    else ``stim-<letters and digits of the stem>``."""
    stem = Path(str(key)).stem
    if _ENTITY.match(stem):
        return stem
    label = re.sub(r"[^A-Za-z0-9]", "", stem)
    if not label:
        raise FeaturesError(f"{key}: no letters or digits in its name for a BIDS stim label")
    return f"stim-{label}"


def write_feature_spaces(runs: Sequence[Any], *, values: Mapping[str, Any], settings: AlignSettings,
                         run_names: Sequence[str], band_names: Sequence[str] | None, model: str,
                         info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a run's ``--bundle``/``--bids-out`` write: :func:`build_bundle`, then the bundle and the BIDS files.

    Parameters
    ----------
    runs : sequence
        One per input file, in corpus order, as :func:`align_runs` takes them.
    values : mapping, keyword-only
        Parsed option values keyed by ``Option.dest`` (:data:`OPTIONS`).
    settings : AlignSettings, keyword-only
    run_names : sequence of str, keyword-only
        The corpus keys of the runs.
    band_names : sequence of str or None, keyword-only
        One per layer (or one name for [T, D] rows).
    model : str, keyword-only
        The model name (the BIDS ``desc`` label and the bundle's ``info``).
    info : mapping, keyword-only
        More provenance for the bundle and the sidecars.

    Returns
    -------
    dict
        ``bundle`` (the :class:`FeatureBundle`), ``bundle_file`` (Path or None), ``bids_files``
        (list of the ``.tsv.gz`` paths).
    """
    given = _given(values)
    bundle = build_bundle(runs, settings=settings, band_names=band_names, run_names=run_names,
                          pca=given.get(PCA.dest), pca_from=given.get(PCA_FROM.dest),
                          zscore=given.get(ZSCORE.dest, "none"), info={"model": model, **dict(info or {})})
    out: dict[str, Any] = {"bundle": bundle, "bundle_file": None, "bids_files": []}
    if BUNDLE.dest in given:
        out["bundle_file"] = bundle.save(given[BUNDLE.dest])
    if BIDS_OUT.dest in given:
        stims = [bids_stim_label(name) for name in run_names]
        if len(set(stims)) != len(stims):
            raise FeaturesError(f"two inputs give the same BIDS stimulus name: {sorted(stims)}")
        model_label = Path(str(model).rstrip("/\\")).name or str(model)  # a hub id's or a folder's own name
        single = len(bundle.bands) == 1 and band_names is not None and band_names[0] == band_label(model)
        described = {"alignment": bundle.info["alignment"], "zscore": bundle.info["zscore"],
                     "pca": bundle.info["pca"], "pca_from": given.get(PCA_FROM.dest), "delays": list(bundle.delays)}
        for r, stim in enumerate(stims):
            sel = bundle.run_ids == r
            for name, band in bundle.bands.items():
                tsv, _ = write_bids_timeseries(given[BIDS_OUT.dest], stim=stim, model=model_label,
                                               layer=None if single else name, rows=band[sel],
                                               sampling_frequency_hz=float(settings.target_rate_hz),
                                               start_time_s=float(settings.slice_time_s),
                                               settings={**described, "model": model, "band": name,
                                                         "run": run_names[r]})
                out["bids_files"].append(tsv)
    return out
