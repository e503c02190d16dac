"""B4's speech-team commands, called by :class:`audio_embeddings.hooks.SpeakerHooks`.

* a Kaldi data directory as INPUT, or ``--vad silero`` on any input: the utterance-list run of
  :mod:`audio_embeddings.speaker_lists` (``--allow-pipes`` for ``wav.scp`` commands);
* ``--score TRIALS``: cosine scores of a trial list, EER and minDCF (:mod:`audio_embeddings.scoring`),
  optional ``--score-norm asnorm --cohort SOURCE --top-n N``;
* ``--compare A B --threshold T`` (or ``--metrics FILE``, its ``eer_threshold``): the decision.

Its arguments are added by :func:`add_arguments`; their values are read with ``run.config.option``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import kaldi, scoring
from .app.run import EXIT_INPUT_FAILED, LOG, RunError, load_model
from .corpus.shard import Shard, resolve_shard
from .outputs.atomic import write_text_atomic
from .outputs.contract import package_versions
from .speaker_lists import PARTS_DIR, embed_utterances, finalize_lists, utterances_from
from .vad import METHODS, VadError, VadSettings

#: How long the last shard's process waits for the others' part files before leaving the merge to a rerun.
MERGE_WAIT_S = 0.0


def _nonneg(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """B4's Kaldi, VAD and scoring flags."""
    k = parser.add_argument_group("speaker lists, VAD and trial scoring (B4)")
    k.add_argument("--allow-pipes", action="store_true",
                   help="run wav.scp entries that are commands ('... |'); they run programs on this machine "
                        "(without a shell when they hold no shell syntax, else with /bin/sh -c); refused otherwise")
    k.add_argument("--vad", choices=METHODS, default="none",
                   help="voice-activity detection before embedding: utterances up to --max-segment-s are trimmed "
                        "to their speech, longer recordings are cut into speech segments, one embedding each "
                        "(segments and segments.csv in the final folder) (default: %(default)s)")
    k.add_argument("--min-speech-s", type=_nonneg, default=0.25, metavar="S",
                   help="with --vad: shorter speech regions are dropped (default: %(default)g)")
    k.add_argument("--merge-gap-s", type=_nonneg, default=0.3, metavar="S",
                   help="with --vad: shorter silences do not split a region (default: %(default)g)")
    k.add_argument("--max-segment-s", type=_nonneg, default=30.0, metavar="S",
                   help="with --vad: longest segment; longer recordings are segmented (default: %(default)g)")
    k.add_argument("--score", default=None, metavar="TRIALS",
                   help="score a trial list ('1 id1 id2', 'id1 id2 target|nontarget' or 'id1 id2') with the "
                        "embeddings of INPUT (an .scp/.ark, B4's output or final folder, a .npy with a .json of "
                        "ids; default: --output-dir): TRIALS.scores and TRIALS.metrics.json (EER, minDCF) in "
                        "--output-dir")
    k.add_argument("--score-norm", choices=("none", "asnorm"), default="none",
                   help="score normalisation: adaptive s-norm against --cohort (default: %(default)s)")
    k.add_argument("--cohort", default=None, metavar="SOURCE",
                   help="cohort embeddings for --score-norm asnorm (the speaker means of a B4 folder, or an "
                        ".scp/.ark/.npy)")
    k.add_argument("--top-n", type=int, default=300, metavar="N",
                   help="cohort scores kept per side for AS-norm (default: %(default)s)")
    k.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="with --compare: say 'same speaker' when the cosine is >= T")
    k.add_argument("--metrics", default=None, metavar="FILE",
                   help="with --compare: take the threshold from a --score metrics .json (its eer_threshold)")


def vad_settings(run: Any) -> VadSettings | None:
    """The run's :class:`VadSettings`, or None without ``--vad``."""
    opt = run.config.option
    if opt("vad", "none") == "none":
        return None
    try:
        return VadSettings(method=opt("vad"), min_speech_s=float(opt("min_speech_s", 0.25)),
                           merge_gap_s=float(opt("merge_gap_s", 0.3)), max_segment_s=float(opt("max_segment_s", 30.0)))
    except VadError as exc:
        raise RunError(exc) from None


def wants_list_run(run: Any) -> bool:
    """INPUT is a Kaldi data directory, or ``--vad`` is on."""
    inputs = list(run.config.inputs) or ([run.config.audio_dir] if run.config.audio_dir else [])
    return (len(inputs) == 1 and kaldi.is_data_dir(inputs[0])) or run.config.option("vad", "none") != "none"


def list_run(run: Any, final_dir: Path) -> int:
    """The utterance-list run (Kaldi data dir or ``--vad``); the process whose shard ends last merges."""
    cfg = run.config
    vad = vad_settings(run)
    inputs = list(cfg.inputs) or ([cfg.audio_dir] if cfg.audio_dir else [])
    try:
        shard = resolve_shard(cfg.shard)
        dataset, utterances = utterances_from(
            inputs, allow_pipes=bool(cfg.option("allow_pipes")), audio_dir=cfg.audio_dir, part=cfg.part,
            patterns=cfg.pattern, max_files=cfg.max_files, exclude=[cfg.output_dir])
    except (kaldi.KaldiError, ValueError, OSError) as exc:
        raise RunError(exc) from None
    mine = shard.select(utterances)
    label = "whole" if shard.is_whole else shard.label
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    from .app.run import device_for_rank, model_name_of  # the run's own choices of device and name
    from .corpus.shard import distributed_env

    backend = run.backend or load_model(cfg, run.defaults, device=device_for_rank(cfg.device, distributed_env(os.environ)))
    name = model_name_of(cfg, backend)
    run.say(f"{len(mine)} of {len(utterances)} utterance(s) ({label}) -> {cfg.output_dir}"
            + (f", VAD {vad.method}" if vad else ""))
    started = time.time()
    result = embed_utterances(backend, mine, output_dir=cfg.output_dir, dataset=dataset, model_name=name,
                              shard_label=label, vad=vad, channel=cfg.channel, resume=not cfg.overwrite,
                              batch_size=cfg.batch_size or 4)
    for _, reason in result.failed:
        LOG.error(f"error: {reason}")
    run.say(f"{len(result.done)} embedded, {len(result.skipped)} already done, {len(result.failed)} failed "
            f"in {time.time() - started:.1f} s")
    labels = ["whole"] if shard.is_whole else [Shard(i, shard.count).label for i in range(shard.count)]
    parts = Path(cfg.output_dir) / PARTS_DIR
    deadline = time.time() + MERGE_WAIT_S
    while not all((parts / f"embeddings.{x}.scp").is_file() for x in labels):
        if time.time() >= deadline:
            run.say("other shards are still running: the last one to finish writes the final files")
            return EXIT_INPUT_FAILED if result.failed else 0
        time.sleep(1.0)
    try:
        summary = finalize_lists(cfg.output_dir, final_dir, shard_labels=labels, ark="ark" in (cfg.formats or ()),
                                 provenance={"model": name, "backend": backend.describe(), "versions": package_versions(),
                                             "vad": vad.describe() if vad else None, "input": inputs})
    except (FileNotFoundError, kaldi.KaldiError, ValueError) as exc:
        raise RunError(exc) from None
    run.say(f"{summary['total_utterances']} vectors, {summary['total_speakers']} speakers -> {final_dir}")
    return EXIT_INPUT_FAILED if result.failed else 0


def score_run(run: Any) -> int:
    """``--score TRIALS``: scores file and metrics .json in ``--output-dir``; prints EER and minDCF."""
    cfg = run.config
    trials_path = Path(cfg.option("score"))
    source = cfg.inputs[0] if cfg.inputs else cfg.output_dir
    try:
        trials = scoring.read_trials(trials_path)
        vectors = scoring.load_embeddings(source)
        scores = scoring.cosine_scores(trials, vectors)
        out: dict[str, Any] = {"trials": str(trials_path.resolve()), "embeddings": str(Path(source).resolve()),
                               "score": "cosine", "score_norm": cfg.option("score_norm", "none")}
        if cfg.option("score_norm", "none") == "asnorm":
            if not cfg.option("cohort"):
                raise scoring.ScoringError("--score-norm asnorm needs --cohort SOURCE")
            cohort = scoring.load_embeddings(cfg.option("cohort"), speakers=True)
            scores = scoring.as_norm(scores, trials, vectors, np.stack(list(cohort.values())),
                                     top_n=int(cfg.option("top_n", 300)))
            out.update(cohort=str(Path(cfg.option("cohort")).resolve()), cohort_size=len(cohort),
                       top_n=int(cfg.option("top_n", 300)))
        if trials.labels is not None:
            out.update(scoring.metrics(scores, trials.labels))
    except scoring.ScoringError as exc:
        raise RunError(exc) from None
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    base = Path(cfg.output_dir) / trials_path.name
    scoring.write_scores(f"{base}.scores", trials, scores)
    write_text_atomic(f"{base}.metrics.json", json.dumps(out, indent=2) + "\n")
    if "eer" in out:
        print(f"EER {out['eer_percent']:.3f}% (threshold {out['eer_threshold']:.4f}), minDCF(0.01) "
              f"{out['min_dcf_p0.01']:.4f}, minDCF(0.05) {out['min_dcf_p0.05']:.4f} over {out['n_trials']} trials "
              f"-> {base}.metrics.json")
    run.say(f"{len(scores)} scores -> {base}.scores")
    return 0


def decision_threshold(run: Any) -> float | None:
    """``--threshold``, else the ``eer_threshold`` of ``--metrics``, else None."""
    if run.config.option("threshold") is not None:
        return float(run.config.option("threshold"))
    if run.config.option("metrics"):
        try:
            return float(json.loads(Path(run.config.option("metrics")).read_text())["eer_threshold"])
        except (OSError, ValueError, KeyError) as exc:
            raise RunError(f"{run.config.option('metrics')}: no eer_threshold to decide with ({exc})") from None
    return None


def write_final_ark(final_dir: Path) -> None:
    """``embeddings.ark/.scp`` (keys: the utterance ids of ``utterance_list.json``) and ``spk_embeddings.ark/.scp``
    from a final folder of a folder or manifest run (``--formats ark``)."""
    for kind, prefix in (("utterance", ""), ("speaker", "spk_")):
        rows = np.load(final_dir / f"{kind}_embeddings.npy", allow_pickle=False)
        ids = [entry["id"] for entry in json.loads((final_dir / f"{kind}_list.json").read_text(encoding="utf-8"))]
        kaldi.write_vectors(final_dir / f"{prefix}embeddings.ark", final_dir / f"{prefix}embeddings.scp",
                            sorted(zip(ids, rows), key=lambda kv: kv[0]))


__all__ = ["add_arguments", "decision_threshold", "list_run", "score_run", "vad_settings", "wants_list_run",
           "write_final_ark"]
