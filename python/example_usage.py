#!/usr/bin/env python3
"""How to use the B4 outputs: load them, compare utterances and speakers, find a speaker's nearest utterances.

    python python/example_usage.py [FINAL_DIR]      # default: Models/speaker/final_embeddings

Reads ``utterance_embeddings.npy`` + ``utterance_list.json`` and ``speaker_embeddings.npy`` +
``speaker_list.json`` (the same numbers as the pickles, without unpickling anything).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load(final_dir: Path):
    """(utterance matrix [U, D], utterance list, speaker matrix [S, D], speaker list, summary)."""
    read = lambda name: json.loads((final_dir / name).read_text())  # noqa: E731
    return (np.load(final_dir / "utterance_embeddings.npy"), read("utterance_list.json"),
            np.load(final_dir / "speaker_embeddings.npy"), read("speaker_list.json"), read("summary.json"))


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main(final_dir: Path) -> None:
    utt, utt_list, spk, spk_list, summary = load(final_dir)
    print(f"{summary['total_utterances']} utterances, {summary['total_speakers']} speakers, "
          f"{summary['embedding_dimension']}-d embeddings ({summary.get('model')})")
    for name, counts in summary["datasets"].items():
        print(f"  dataset {name or '(none)'}: {counts['utterances']} utterances, {counts['speakers']} speakers")

    u = unit_rows(utt.astype(np.float64))
    sim = u @ u.T  # cosine similarity between every pair of utterances
    speaker_of = [f"{x['dataset']}_{x['speaker_id']}" for x in utt_list]
    same = np.equal.outer(speaker_of, speaker_of) & ~np.eye(len(utt_list), dtype=bool)
    diff = ~np.equal.outer(speaker_of, speaker_of)
    if same.any() and diff.any():
        print(f"mean cosine: same speaker {sim[same].mean():.3f}, different speakers {sim[diff].mean():.3f}")

    first = 0
    order = [j for j in np.argsort(-sim[first]) if j != first and speaker_of[j] == speaker_of[first]]
    print(f"nearest utterances of the same speaker as {utt_list[first]['id']}:")
    for j in order[:5]:
        print(f"  {utt_list[j]['id']}  cosine {sim[first, j]:.3f}")

    s = unit_rows(spk.astype(np.float64))
    speaker_sim = s @ s.T
    print("speaker-to-speaker cosine similarity:")
    for i, row in enumerate(speaker_sim):
        others = ", ".join(f"{spk_list[j]['id']} {row[j]:.3f}" for j in range(len(row)) if j != i)
        print(f"  {spk_list[i]['id']} ({spk_list[i]['num_utterances']} utt.): {others}")

    in_first = [x["id"] for x in utt_list if x["dataset"] == utt_list[first]["dataset"]]
    print(f"dataset {utt_list[first]['dataset']!r} has {len(in_first)} utterances")


def cli(argv=None) -> int:
    """Parse ``[FINAL_DIR]`` and run :func:`main`; returns the exit status (2: no such folder)."""
    default = Path(__file__).resolve().parents[1] / "Models" / "speaker" / "final_embeddings"
    parser = argparse.ArgumentParser(
        prog="example_usage.py", description=__doc__.splitlines()[0],
        epilog="Run B4_model_speaker.py first: it writes FINAL_DIR (utterance_* and speaker_* .npy/.json, summary.json).")
    parser.add_argument("final_dir", nargs="?", type=Path, default=default, metavar="FINAL_DIR",
                        help="B4's final_embeddings folder (default: Models/speaker/final_embeddings)")
    args = parser.parse_args(argv)
    if not (args.final_dir / "utterance_embeddings.npy").is_file():
        print(f"error: {args.final_dir}: no utterance_embeddings.npy (run B4_model_speaker.py first, or pass its "
              "final_embeddings folder)", file=sys.stderr)
        return 2
    main(args.final_dir)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
