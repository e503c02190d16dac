"""What each script of the toolkit is: its :class:`~audio_embeddings.cli.ScriptDefaults`, in the package.

The thin scripts in ``python/`` (``B1_model_perch.py`` ... ``embed.py``) and the installed
command ``audio-embeddings <command>`` (:mod:`audio_embeddings.commands`) run the same
definitions, so an installed package behaves like the repository's scripts:

======================  ===========================  =========================
script                  ``audio-embeddings`` command  definition
======================  ===========================  =========================
``B1_model_perch.py``   ``perch``                    :data:`PERCH`
``B2_model_wav2vec2.py`` ``wav2vec2``                :data:`WAV2VEC2`
``B3_model_metis.py``   ``metis``                    :data:`METIS`
``B4_model_speaker.py`` ``speaker``                  :data:`SPEAKER`
``embed.py``            ``embed``                    :data:`EMBED`
======================  ===========================  =========================

Importing this module imports no deep-learning framework.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cli import ScriptDefaults, main
from .hooks import BirdnetDetections, CorpusJson, FeatureSpaceHooks, SeedSpellings, SpeakerHooks

#: Every script's ``--bundle``/``--pca``/``--pca-from``/``--zscore``/``--bids-out`` (after its own hooks).
FEATURES = FeatureSpaceHooks()
#: Every script's ``--detections`` (BirdNET models; refused with others, so the shared flag is never ignored).
DETECTIONS = BirdnetDetections()

PERCH = ScriptDefaults(
    prog="B1_model_perch.py",
    description="Perch 2.0 / BirdNET embeddings per window (5 s at 32 kHz; --force_10sec: 10 s at 16 kHz).",
    model="perch_v2",
    output_subdir="perch",
    basename=None,
    formats="npy,mat,json,txt",
    hooks=(SeedSpellings(), DETECTIONS, FEATURES),
    help_models=("perch_v2", "birdnet"),
)

WAV2VEC2 = ScriptDefaults(
    prog="B2_model_wav2vec2.py",
    description="wav2vec2 / HuBERT / WavLM / data2vec-audio frame embeddings (20 ms grid at 16 kHz).",
    model="facebook/wav2vec2-large-xlsr-53",
    output_subdir="wav2vec2",
    basename="wav2vec2_embeddings",
    hooks=(DETECTIONS, FEATURES),
)

METIS = ScriptDefaults(
    prog="B3_model_metis.py",
    description="Metis / MaskGCT continuous 8-D semantic latents (w2v-bert-2.0 layer 17 + RepCodec), 20 ms grid.",
    model="facebook/w2v-bert-2.0",
    output_subdir="metis",
    basename=None,
    backend="metis",
    chunk_s=30.0,
    context_s=5.0,
    hooks=(CorpusJson("semantic_audio_embeddings.json"), DETECTIONS, FEATURES),
)

SPEAKER = ScriptDefaults(
    prog="B4_model_speaker.py",
    description="Speaker embeddings per utterance and per speaker (ERes2NetV2, CAM++, GE2E).",
    model="eres2netv2",
    output_subdir="speaker",
    basename=None,
    hooks=(SpeakerHooks(), DETECTIONS, FEATURES),
    help_models=("eres2netv2", "campplus", "ge2e"),
)

EMBED = ScriptDefaults(
    prog="embed.py",
    description="Embeddings from any registered model (preset name, hub id or local model directory).",
    model="ge2e",
    output_subdir="ge2e",
    basename=None,
    hooks=(DETECTIONS, FEATURES),
    help_models=(),  # any model: --help shows the shared options; --model NAME --help adds that model's
)

#: ``audio-embeddings <command>`` -> the script it runs.
SCRIPTS: dict[str, ScriptDefaults] = {"embed": EMBED, "perch": PERCH, "wav2vec2": WAV2VEC2, "metis": METIS,
                                      "speaker": SPEAKER}


def chunking_for(preset: str | None) -> tuple[float, float]:
    """``(chunk_s, context_s)`` of the script that owns ``preset``'s backend (Metis: 30 s and 5 s), else the default.

    Parameters
    ----------
    preset : str or None
        Registry name of a loaded backend (``backend.preset``).
    """
    owner = next((s for s in SCRIPTS.values() if s.backend is not None and s.backend == preset), EMBED)
    return owner.chunk_s, owner.context_s


class PerchFragments(list):
    """What :func:`extract_perch` returns: the seed's ``[(fragment .txt path, shape), ...]`` of this run,
    plus the arrays: ``embeddings`` float32 [T, D], ``time_axis_s`` float64 [T] (window onsets),
    and the paths ``npy_file``, ``mat_file``, ``json_file``."""

    embeddings: np.ndarray
    time_axis_s: np.ndarray
    npy_file: str
    mat_file: str
    json_file: str


def extract_perch(audio_path, output_dir, force_10sec=False, verbose=False, *, model="perch_v2", options=()):
    """Embed one file (None: a synthetic tone) and return this run's fragments and arrays (:class:`PerchFragments`).

    ``model`` and extra command-line ``options`` (e.g. ``["--hop-seconds", "2.5"]``) are ours;
    the first four parameters are the extraction script's. Only the fragments this run wrote are
    returned (an earlier, longer run's ``_frag<i>.txt`` in the same folder are not), read from
    the run's ``.npy`` and ``.mat``, not from the text files. Raises RuntimeError when it fails.
    """
    from scipy.io import loadmat  # deferred: scipy.io is heavy, and only extract_perch reads a .mat back

    if audio_path is None:
        duration = next((float(v) for k, v in zip(options, list(options)[1:]) if k == "--duration_sec"), 10.0)
        stem = f"synthetic_perch_32khz_{duration}s"
    else:
        stem = Path(audio_path).stem
    argv = ["--output", str(output_dir), "--model", str(model), "--basename", stem, *map(str, options)]
    argv += ["--input", str(audio_path)] if audio_path is not None else []
    argv += ["--force_10sec"] if force_10sec else []
    argv += ["--verbose"] if verbose else ["--quiet"]
    status = main(PERCH, argv)
    if status != 0:
        raise RuntimeError(f"extract_perch failed (exit status {status}); see the error above")
    base = Path(output_dir) / stem
    embeddings = np.load(base.with_name(stem + ".npy"))
    result = PerchFragments((str(base.with_name(f"{stem}_frag{i}.txt")), row.shape) for i, row in enumerate(embeddings))
    result.embeddings = embeddings
    result.time_axis_s = loadmat(str(base.with_name(stem + ".mat")))["time_axis"].reshape(-1)
    result.npy_file, result.mat_file, result.json_file = (str(base.with_name(stem + ext))
                                                          for ext in (".npy", ".mat", ".json"))
    return result


__all__ = ["PERCH", "WAV2VEC2", "METIS", "SPEAKER", "EMBED", "SCRIPTS", "chunking_for", "extract_perch", "PerchFragments", "main"]
