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
        if run.config.option("compare"):
            return self.compare(run)
        if run.config.option("score"):
            return speaker_commands.score_run(run)
        if speaker_commands.wants_list_run(run):  # a Kaldi data directory, or --vad
            return speaker_commands.list_run(run, self.final_dir(run))
        return None

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
            summary = finalize(run.config.output_dir, self.final_dir(run), provenance={
                "model": run.model_name, "backend": backend_info, "versions": package_versions()})
        except FileNotFoundError as exc:  # every file failed, or nothing was run
            if merged is not None:
                raise RunError(exc) from None
            LOG.error(f"error: {' '.join(str(exc).split())}")
            return
        run.say(f"{summary['total_utterances']} utterances, {summary['total_speakers']} speakers, "
                f"{summary['embedding_dimension']}-d -> {self.final_dir(run)}")
        if "ark" in (run.config.formats or ()):
            speaker_commands.write_final_ark(self.final_dir(run))
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


__all__ = ["CorpusJson", "SpeakerHooks"]


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
