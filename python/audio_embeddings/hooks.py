"""The scripts' own additions to the shared run (:class:`~audio_embeddings.app.run.RunHooks`).

A hook belongs to the script that lists it in its :class:`~audio_embeddings.cli.ScriptDefaults`
(:mod:`audio_embeddings.scripts`): it sits above the run and calls into it, while what it
writes lives below the run, in the output and feature modules (B3's corpus JSON in
:mod:`audio_embeddings.outputs.corpus_json`, B4's speaker files in :mod:`audio_embeddings.speakers`).
B1's :class:`SeedSpellings` (the seed's ``--input``/``--output`` and its synthetic tone) is here too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from . import audio
from .atomic import atomic_path
from .outputs.contract import package_versions
from .outputs.corpus_json import DEFAULT_NAME, write_corpus_json
from .app.run import EXIT_INPUT_FAILED, LOG, Run, RunError, RunHooks, load_model, stored_rows
from .align import read_mat, settings_from as align_settings_from
from .app.run import outputs_of
from .features import OPTIONS as FEATURE_OPTIONS, FeaturesError, band_label, check_feature_options, \
    write_feature_spaces
from .pipeline import embed_audio
from .plots import plot_similarity
from .speakers import FINAL_DIR, SpeakerWriter, cosine, finalize, utterance_vector
from . import speaker_commands


class CorpusJson(RunHooks):
    """B3's run hook: ``--output-file`` names the corpus JSON, assembled from the per-file arrays after the run.

    Parameters
    ----------
    default_name : str
        The default ``--output-file`` ('' for none).
    """

    def __init__(self, default_name: str = DEFAULT_NAME):
        self.default_name = default_name

    def add_arguments(self, parser, defaults) -> None:
        parser.add_argument("--output-file", default=self.default_name,
                            help="the corpus JSON {relative_path: [[...], ...]} in --output-dir "
                                 "(default: %(default)s; '' for none)")

    def formats(self, run, formats):
        if run.config.option("output_file") and not run.config.store and "npy" not in formats:
            return ("npy", *formats)  # the corpus JSON is assembled from the per-file arrays
        return formats

    def after(self, run, *, merged) -> None:
        if not run.config.option("output_file") or merged is not None:
            return
        path = run.output_dir / run.config.option("output_file")
        n = write_corpus_json(path, stored_rows(run.corpus.items, run.writer, run.config.store))
        run.say(f"{n} file(s) -> {path}")


class SpeakerHooks(RunHooks):
    """B4's run hook: ``--final-output-dir``, ``--compare A B``, per-utterance files, then the per-speaker files."""

    #: The script's own declared options (Kaldi lists, VAD, trial scoring): added to the parser below and
    #: collected by :mod:`audio_embeddings.docs_tables` for the MATLAB wrappers' table.
    options = speaker_commands.OPTIONS

    def add_arguments(self, parser, defaults) -> None:
        k = parser.add_argument_group("speaker embeddings (B4)")
        k.add_argument("--final-output-dir", default=None, metavar="DIR",
                       help="per-utterance and per-speaker files (default: OUTPUT_DIR/final_embeddings)")
        k.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                       help="only print the cosine similarity of two recordings' embeddings")
        speaker_commands.add_arguments(parser)

    def final_dir(self, run) -> Path:
        final = run.config.option("final_output_dir")
        return Path(final) if final else run.output_dir / FINAL_DIR

    def instead(self, run):
        speaker_commands.refuse_stray_options(run)
        if run.config.option("compare"):
            return self.compare(run)
        if run.config.option("score"):
            return speaker_commands.score_run(run)
        return None

    def inputs(self, run, inputs):
        if speaker_commands.wants_vad_run(run):  # --vad: the run's input is the pre-pass's data dir of speech segments
            return speaker_commands.vad_input(run, inputs)
        return inputs

    def formats(self, run, formats):
        return tuple(f for f in formats if f != "ark") or ("npy",)  # ark: written from the final files

    def writer(self, run):
        return SpeakerWriter(run.config.output_dir)

    def after(self, run, *, merged) -> None:
        """Stage 2: per-utterance and per-speaker files from the utterance vectors in ``--output-dir``."""
        if run.config.store:
            return
        backend_info = run.backend.describe() if run.backend is not None else None
        try:
            vad = speaker_commands.vad_settings(run)
            summary = finalize(run.config.output_dir, self.final_dir(run), provenance={
                "model": run.model_name, "backend": backend_info, "versions": package_versions(),
                **({"vad": vad.describe()} if vad is not None else {})})
        except FileNotFoundError as exc:  # every file failed, or nothing was run
            if merged is not None:
                raise RunError(exc) from None
            LOG.error(f"error: {' '.join(str(exc).split())}")
            return
        run.say(f"{summary['total_utterances']} utterances, {summary['total_speakers']} speakers, "
                f"{summary['embedding_dimension']}-d -> {self.final_dir(run)}")
        if speaker_commands.kaldi_input(run) is not None:  # ark/scp by Kaldi ids, segments, from the stored vectors
            speaker_commands.write_kaldi_outputs(run, self.final_dir(run), summary)
        elif "ark" in (run.config.formats or ()):
            speaker_commands.write_final_ark(self.final_dir(run))
        speaker_commands.record_vad(run, self.final_dir(run))
        if run.config.option("plot"):
            self.plot(self.final_dir(run))

    @staticmethod
    def plot(final_dir: Path) -> Path:
        """``speaker_similarity.png`` in the final folder: the cosine similarity of every pair of speakers."""
        speakers = np.load(final_dir / "speaker_embeddings.npy").astype(np.float64)
        ids = [s["id"] for s in json.loads((final_dir / "speaker_list.json").read_text())]
        unit = speakers / np.linalg.norm(speakers, axis=1, keepdims=True)
        plot_similarity(unit @ unit.T, ids, path=final_dir / "speaker_similarity", title="speaker cosine similarity")
        return final_dir / "speaker_similarity.png"

    def compare(self, run) -> int:
        """``--compare A B``: print the cosine similarity of two recordings' speaker embeddings."""
        backend = load_model(run.config, run.defaults, device=run.config.device)
        vectors = []
        for path in run.config.option("compare"):
            try:
                loaded = audio.load(path, sample_rate_hz=backend.sample_rate_hz, channel=run.config.channel,
                                    min_samples=int(backend.min_samples), resampler=backend.resampler)
                vectors.append(utterance_vector(embed_audio(backend, loaded)))
            except (audio.AudioError, ValueError) as exc:
                raise RunError(exc if str(path) in str(exc) else f"{path}: {exc}", EXIT_INPUT_FAILED) from None
        score = cosine(*vectors)
        print(f"cosine similarity: {score:.6f}")
        threshold = speaker_commands.decision_threshold(run)
        if threshold is not None:
            print(f"{'same speaker' if score >= threshold else 'different speakers'} (threshold {threshold:.6f})")
        return 0


__all__ = ["CorpusJson", "SpeakerHooks", "FeatureSpaceHooks"]


class SeedSpellings(RunHooks):
    """B1: the extraction script's ``--input``/``--output``/``--duration_sec``, and a synthetic tone without input."""

    def add_arguments(self, parser: argparse.ArgumentParser, defaults: Any) -> None:
        s = parser.add_argument_group("the extraction script's spellings")
        s.add_argument("--input", dest="seed_inputs", action="append", default=None, metavar="AUDIO",
                       help="audio file (same as INPUT); without any input a synthetic tone is embedded")
        s.add_argument("--output", dest="output_dir", default=argparse.SUPPRESS, metavar="DIR",
                       help="same as --output-dir")
        s.add_argument("--duration_sec", type=float, default=10.0,
                       help="length of the synthetic tone made when no input is given (default: %(default)g)")

    def inputs(self, run: Run, inputs: list[str]) -> list[str]:
        inputs = inputs + list(run.config.option("seed_inputs") or [])
        if not inputs and not run.config.audio_dir:
            inputs = [str(synthetic_input(run.config.output_dir, duration_s=run.config.option("duration_sec")))]
        return inputs


def synthetic_input(output_dir: str | Path, *, duration_s: float, sample_rate_hz: int = 32000) -> Path:
    """The Perch script's smoke-test input: a 440 Hz tone, ``synthetic_perch_32khz_<D>s.wav``."""
    if not duration_s > 0:
        raise RunError(f"--duration_sec must be > 0, got {duration_s}")
    path = Path(output_dir) / f"synthetic_perch_32khz_{float(duration_s)}s.wav"
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, audio.synthetic_tone(duration_s=duration_s, sample_rate_hz=sample_rate_hz), sample_rate_hz)
    return path


class FeatureSpaceHooks(RunHooks):
    """Every script's ``--bundle``, ``--pca``, ``--pca-from``, ``--zscore`` and ``--bids-out``
    (declared once in :data:`audio_embeddings.features.OPTIONS`).

    The options are checked before the model loads; once the whole corpus is done (in the process
    that merged the shards), every input file's stored rows (its ``.mat``, or the ``--store``) are
    one run, in corpus order, of :func:`~audio_embeddings.features.write_feature_spaces`. The
    per-file outputs stay as they are (the ``.mat`` and ``.json`` are added to ``--formats`` when
    missing: they hold the full time axis, the window and the file's duration).
    """

    @staticmethod
    def wanted(run: Run) -> bool:
        return any(run.config.option(o.dest) is not None for o in FEATURE_OPTIONS)

    def instead(self, run: Run) -> int | None:
        if self.wanted(run):
            try:
                check_feature_options(run.config.options, align_settings_from(run.config.options))
            except ValueError as exc:  # FeaturesError, or an alignment option's own message
                raise RunError(exc) from None
        return None

    def formats(self, run: Run, formats: tuple[str, ...]) -> tuple[str, ...]:
        if not self.wanted(run) or run.config.store:
            return formats
        return (*formats, *(f for f in ("mat", "json") if f not in formats))

    def after(self, run: Run, *, merged) -> None:
        if not self.wanted(run):
            return
        if merged is not None:  # --merge alone does not know the corpus: the shard that merges writes them
            LOG.warning("warning: --bundle/--bids-out are written by the shard that merges the run, not by --merge")
            return
        runs, missing = [], []
        layers = None
        for item in run.corpus.items:
            try:
                rows, onsets, window_s, duration_s, layers = self.read_run(run, item.key)
            except (OSError, KeyError, ValueError) as exc:
                missing.append(f"{item.path} ({' '.join(str(exc).split())[:120]})")
                continue
            runs.append((rows, onsets, window_s, duration_s))
        if missing:
            LOG.error(f"error: no feature-space bundle or BIDS files written: {len(missing)} input(s) have no "
                      f"outputs (a run per input is needed): {'; '.join(missing[:3])}")
            return
        n_layers = runs[0][0].shape[0] if runs and runs[0][0].ndim == 3 else None
        if n_layers is None:
            names = [band_label(run.model_name)]
        elif layers is not None and len(layers) == n_layers:
            names = [f"layer{int(i)}" for i in layers]
        else:
            names = [f"layer{i}" for i in range(n_layers)]
        try:
            out = write_feature_spaces(runs, values=run.config.options,
                                       settings=align_settings_from(run.config.options),
                                       run_names=[i.key for i in run.corpus.items], band_names=names,
                                       model=run.model_name)
        except (FeaturesError, ValueError, OSError) as exc:
            raise RunError(exc, EXIT_INPUT_FAILED) from None
        bundle = out["bundle"]
        shapes = ", ".join(f"{n} {b.shape[1]}" for n, b in bundle.bands.items())
        if out["bundle_file"] is not None:
            run.say(f"bundle: {len(bundle.run_names)} run(s), {bundle.run_ids.size} rows, bands {shapes} -> "
                    f"{out['bundle_file']}")
        if out["bids_files"]:
            run.say(f"{len(out['bids_files'])} BIDS time series -> {run.config.option('bids_out')}")

    @staticmethod
    def read_run(run: Run, key: str):
        """(rows [T, D] or [L, T, D], onsets [T], window_s, duration_s, layer indices or None) of one input."""
        store = run.config.store
        if store:
            import h5py  # deferred: only runs with --store read one

            with h5py.File(store, "r") as fh:
                ds = fh[f"embeddings/{key}"]
                rows, duration = ds[()], float(ds.attrs["duration_s"])
                onsets = fh[f"time_axis/{key}"][()]
            layers = getattr(run.backend, "layers", None)
            return rows, onsets, float(run.backend.window_s), duration, layers
        base = outputs_of(run, key)
        mat = read_mat(base.with_name(base.name + ".mat"))
        meta = json.loads(base.with_name(base.name + ".json").read_text(encoding="utf-8"))
        layers = np.asarray(mat["layers"]).ravel().tolist() if "layers" in mat else None
        return (np.asarray(mat["embeddings"], dtype=np.float32), np.asarray(mat["time_axis"], dtype=np.float64).ravel(),
                float(np.asarray(mat["window_s"]).ravel()[0]), float(meta["num_samples"]) / float(meta["sample_rate"]),
                layers)



class BirdnetDetections(RunHooks):
    """Every script's ``--detections`` (declared in :data:`audio_embeddings.detections.OPTIONS`): BirdNET
    detections of each input as BirdNET-Analyzer 2.4's ``analyze`` writes them, beside its outputs.

    BirdNET models only. Before the model loads, ``--detections`` turns ``--logits`` on and
    ``--overlap S`` sets ``--hop-seconds 3 - S`` (both given must agree); the per-file ``.npy`` and
    ``.json`` are added to ``--formats`` when missing. After the run (in the process that merged
    the shards), each input's logits (``<base>_label.npy``) and window times (``<base>.json``) give
    :func:`~audio_embeddings.detections.detect`'s rows, written as the ``--rtype`` files
    ``<base>.BirdNET.selection.table.txt`` ... (``species_list.txt`` in the output folder with
    ``--lat/--lon``). Files whose result files are newer than their logits are not redone.
    """

    @staticmethod
    def wanted(run: Run) -> bool:
        return bool(run.config.option("detections"))

    def instead(self, run: Run) -> int | None:
        from .detections import OPTIONS, DetectionError, settings_from

        given = [o.flag for o in OPTIONS[1:] if run.config.option(o.dest) is not None]
        if not self.wanted(run):
            if given:
                raise RunError(f"{', '.join(given)}: detection options go with --detections")
            return None
        model = str(run.config.model or run.defaults.model or "")
        if "birdnet" not in model.lower() and not model.lower().endswith(".tflite"):
            raise RunError(f"--detections: BirdNET models only (--model birdnet or a BirdNET .tflite), not {model!r}")
        if run.config.store:
            raise RunError("--detections writes result files beside each file's outputs: not with --store")
        try:
            settings = settings_from(run.config.options)
        except (DetectionError, OSError) as exc:
            raise RunError(f"--detections: {exc}") from None
        hop = run.config.option("hop_s")
        if run.config.option("overlap_s") is not None:
            if hop is not None and abs(float(hop) - (3.0 - settings.overlap_s)) > 1e-9:
                raise RunError(f"--overlap {settings.overlap_s:g} and --hop-seconds {hop:g} disagree (BirdNET's 3 s "
                               f"windows start every 3 - overlap s: give one of them)")
            run.config.options["hop_s"] = round(3.0 - settings.overlap_s, 9)
        run.config.options["logits"] = True  # the confidences are the logits' sigmoid
        return None

    def formats(self, run: Run, formats: tuple[str, ...]) -> tuple[str, ...]:
        if not self.wanted(run):
            return formats
        return (*formats, *(f for f in ("npy", "json") if f not in formats))

    def after(self, run: Run, *, merged) -> None:
        from .atomic import write_text_atomic
        from .detections import (DetectionError, allowed_species, detect, location_species, result_paths,
                                 settings_from, write_results)

        if not self.wanted(run):
            return
        if merged is not None:
            LOG.warning("warning: --detections files are written by the shard that merges the run, not by --merge")
            return
        settings = settings_from(run.config.options)
        rtypes = run.config.option("rtypes", ("table",))
        labels = run.backend.labels() if hasattr(run.backend, "labels") else None
        if not labels:
            raise RunError(f"--detections: {run.model_name} has no labels file (<stem>_Labels.txt next to the model)")
        allowed = allowed_species(settings, labels)
        if settings.located:
            write_text_atomic(run.output_dir / "species_list.txt", "".join(
                s + "\n" for s in location_species(settings.lat, settings.lon, settings.week, labels,
                                                   threshold=settings.location_filter_threshold)))
        provenance = {"model": run.model_name, "settings": settings.describe(), "command_line": run.argv}
        rows_written, done, failed = 0, 0, []
        for item in run.corpus.items:
            base = outputs_of(run, item.key)
            logits_path = base.with_name(base.name + "_label.npy")
            paths = result_paths(base, rtypes)
            try:
                if all(p.is_file() and p.stat().st_mtime_ns >= logits_path.stat().st_mtime_ns
                       for p in paths.values()) and not run.config.overwrite:
                    done += 1
                    continue
                meta = json.loads(base.with_name(base.name + ".json").read_text(encoding="utf-8"))
                starts = np.asarray(meta["time_axis_seconds"]["seconds"], dtype=np.float64)
                ends = np.minimum(starts + float(meta["window_s"]), float(meta["audio_duration_s"]))
                rows = detect(np.load(logits_path), starts, ends, labels, settings, allowed=allowed)
                write_results(rows, paths, audio_path=str(item.path), settings=settings,
                              native_rate_hz=int(meta.get("audio_source_sample_rate") or meta["sample_rate"]),
                              provenance={**provenance, "input": str(item.path)})
            except (OSError, KeyError, ValueError, DetectionError) as exc:
                failed.append(f"{item.path} ({' '.join(str(exc).split())[:120]})")
                continue
            rows_written += len(rows)
            done += 1
        run.say(f"detections: {rows_written} row(s) from {done} file(s) as {', '.join(rtypes)}")
        if failed:
            raise RunError(f"--detections: no detections for {len(failed)} input(s): {'; '.join(failed[:3])}",
                           EXIT_INPUT_FAILED)
