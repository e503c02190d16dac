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
from typing import Any, Iterable

from .cli import ScriptDefaults, main
from .outputs.corpus_json import CorpusJson
from .runs import SeedSpellings
from .speakers import SpeakerHooks

PERCH = ScriptDefaults(
    prog="B1_model_perch.py",
    description="Perch 2.0 / BirdNET embeddings per window (5 s at 32 kHz; --force_10sec: 10 s at 16 kHz).",
    model="perch_v2",
    output_subdir="perch",
    basename=None,
    formats="npy,mat,json,txt",
    hooks=(SeedSpellings(),),
)

WAV2VEC2 = ScriptDefaults(
    prog="B2_model_wav2vec2.py",
    description="wav2vec2 / HuBERT / WavLM / data2vec-audio frame embeddings (20 ms grid at 16 kHz).",
    model="facebook/wav2vec2-large-xlsr-53",
    output_subdir="wav2vec2",
    basename="wav2vec2_embeddings",
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
    hooks=(CorpusJson("semantic_audio_embeddings.json"),),
)

SPEAKER = ScriptDefaults(
    prog="B4_model_speaker.py",
    description="Speaker embeddings per utterance and per speaker (ERes2NetV2, CAM++, GE2E).",
    model="eres2netv2",
    output_subdir="speaker",
    basename=None,
    hooks=(SpeakerHooks(),),
)

EMBED = ScriptDefaults(
    prog="embed.py",
    description="Embeddings from any registered model (preset name, hub id or local model directory).",
    model="ge2e",
    output_subdir="ge2e",
    basename=None,
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


def extract_perch(audio_path: Any, output_dir: Any, force_10sec: bool = False, verbose: bool = False, *,
                  model: str = "perch_v2", options: Iterable[Any] = ()) -> list[tuple[str, tuple[int, ...]]]:
    """Embed one file (None: a synthetic tone) and return ``[(fragment .txt path, shape), ...]``.

    ``model`` and extra command-line ``options`` (e.g. ``["--hop-seconds", "2.5"]``) are ours;
    the first four parameters are the extraction script's. Raises RuntimeError when it fails.
    """
    import numpy as np

    argv = ["--output", str(output_dir), "--model", str(model), *map(str, options)]
    argv += ["--input", str(audio_path)] if audio_path is not None else []
    argv += ["--force_10sec"] if force_10sec else []
    argv += ["--verbose"] if verbose else ["--quiet"]
    status = main(PERCH, argv)
    if status != 0:
        raise RuntimeError(f"extract_perch failed (exit status {status}); see the error above")
    stem = Path(audio_path).stem if audio_path is not None else None
    frags = sorted(Path(output_dir).glob(f"{stem or 'synthetic_perch_32khz_*'}_frag*.txt"),
                   key=lambda p: int(p.stem.rsplit("_frag", 1)[1]))
    return [(str(p), np.loadtxt(p, delimiter=",", ndmin=1).shape) for p in frags]


__all__ = ["PERCH", "WAV2VEC2", "METIS", "SPEAKER", "EMBED", "SCRIPTS", "chunking_for", "extract_perch", "main"]
