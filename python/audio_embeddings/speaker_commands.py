"""B4's speech-team commands, called by :class:`audio_embeddings.hooks.SpeakerHooks`.

* a Kaldi data directory as INPUT runs as any corpus (the shared run: the discovery makes one item
  per utterance, cut to its segment; ``--allow-pipes`` for ``wav.scp`` commands); afterwards
  :func:`write_kaldi_outputs` writes ``segments``, ``segments.csv`` and (``--formats ark``) the
  ark/scp files from the stored vectors;
* ``--vad silero`` on any input: a pre-pass writes a Kaldi data directory of speech segments
  (:func:`vad_input`, :func:`~audio_embeddings.speaker_lists.vad_prepass`) that the shared run takes
  as its input, as a user's data directory; afterwards :func:`record_vad` adds the VAD settings to
  the summaries;
* ``--score TRIALS``: cosine scores of a trial list, EER and minDCF (:mod:`audio_embeddings.scoring`),
  optional ``--score-norm asnorm --cohort SOURCE --top-n N``;
* ``--compare A B --threshold T`` (or ``--metrics FILE``, its ``eer_threshold``): the decision.

Its arguments are added by :func:`add_arguments`; their values are read with ``run.config.option``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import kaldi, scoring
from .app.run import EXIT_INPUT_FAILED, LOG, RunError
from .atomic import write_text_atomic
from .corpus.lock import acquire_run_lock, RunLocked
from .corpus.shard import resolve_shard
from .declarations import finite_float, nonnegative_float, Option, positive_int
from .speaker_lists import kaldi_final_files, utterances_from, vad_prepass
from .vad import METHODS, VadError, VadSettings


#: B4's Kaldi, VAD and scoring options, declared once: :func:`add_arguments` adds them to the parser and
#: :mod:`audio_embeddings.docs_tables` writes them into the MATLAB wrappers' table (``SpeakerHooks.options``).
#: ``affects`` is "outputs" throughout: they are the script's own, not part of the shared fingerprint.
#: ``--top-n`` keeps ``cohort_top_n`` (and the MATLAB name ``CohortTopN``): ``top_n``/``TopN`` are
#: ``--detections-top-n``'s, whose hook refuses its options without ``--detections``.
OPTIONS = (
    Option("--allow-pipes", "allow_pipes", type=None, default=False, affects="outputs",
           help="run wav.scp entries that are commands ('... |'); they run programs on this machine "
                "(without a shell when they hold no shell syntax, else with /bin/sh -c); refused otherwise"),
    Option("--vad", "vad", choices=METHODS, default="none", affects="outputs",
           help=f"voice-activity detection before embedding ({' | '.join(METHODS)}): utterances up to "
                "--max-segment-s are trimmed to their speech, longer recordings are cut into speech segments, "
                "one embedding each (segments and segments.csv in the final folder) (default: %(default)s)"),
    Option("--min-speech-s", "min_speech_s", type=nonnegative_float, default=0.25, metavar="S", affects="outputs",
           help="with --vad: shorter speech regions are dropped (default: %(default)g)"),
    Option("--merge-gap-s", "merge_gap_s", type=nonnegative_float, default=0.3, metavar="S", affects="outputs",
           help="with --vad: shorter silences do not split a region (default: %(default)g)"),
    Option("--max-segment-s", "max_segment_s", type=nonnegative_float, default=30.0, metavar="S", affects="outputs",
           help="with --vad: longest segment; longer recordings are segmented (default: %(default)g)"),
    Option("--score", "score", metavar="TRIALS_FILE", affects="outputs",
           help="score a trial list ('1 id1 id2', 'id1 id2 target|nontarget' or 'id1 id2') with the "
                "embeddings of INPUT (an .scp/.ark, B4's output or final folder, a .npy with a .json of "
                "ids; default: --output-dir): TRIALS.scores and TRIALS.metrics.json (EER, minDCF) in "
                "--output-dir"),
    Option("--score-norm", "score_norm", choices=("none", "asnorm"), default="none", affects="outputs",
           help="score normalisation: none | asnorm (adaptive s-norm against --cohort) (default: %(default)s)"),
    Option("--cohort", "cohort", metavar="DIR_OR_FILE", affects="outputs",
           help="cohort embeddings for --score-norm asnorm (the speaker means of a B4 folder, or an "
                ".scp/.ark/.npy)"),
    Option("--top-n", "cohort_top_n", type=positive_int, default=300, metavar="N", affects="outputs",
           matlab="CohortTopN",
           help="cohort scores kept per side for AS-norm (default: %(default)s)"),
    Option("--threshold", "threshold", type=finite_float, metavar="T", affects="outputs",
           help="with --compare: say 'same speaker' when the cosine is >= T"),
    Option("--metrics", "metrics", metavar="FILE", affects="outputs",
           help="with --compare: take the threshold from a --score metrics .json (its eer_threshold)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """B4's Kaldi, VAD and scoring flags, from :data:`OPTIONS`."""
    group = parser.add_argument_group("speaker lists, VAD and trial scoring (B4)")
    for option in OPTIONS:
        option.add_to(group)


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


def kaldi_input(run: Any) -> Path | None:
    """The Kaldi data directory the run takes as input (the ``--vad`` pre-pass's, or the user's), or None."""
    prepared = getattr(run, "vad_data_dir", None)
    if prepared is not None:
        return Path(prepared)
    inputs = list(run.config.inputs) or ([run.config.audio_dir] if run.config.audio_dir else [])
    return Path(inputs[0]) if len(inputs) == 1 and kaldi.is_data_dir(inputs[0]) else None


def write_kaldi_outputs(run: Any, final_dir: Path, summary: dict[str, Any]) -> None:
    """After a Kaldi data-directory run (the process that merged): ``segments``, ``segments.csv`` and, with
    ``--formats ark``, ``embeddings.ark/.scp`` and ``spk_embeddings.ark/.scp`` in ``final_dir``, from the
    stored vectors (:func:`~audio_embeddings.speaker_lists.kaldi_final_files`); the final ``summary.json``
    gains ``segments``."""
    try:
        n = kaldi_final_files(run.config.output_dir, final_dir, data_dir=kaldi_input(run),
                              allow_pipes=bool(run.config.option("allow_pipes")),
                              ark="ark" in (run.config.formats or ()))
    except (kaldi.KaldiError, ValueError, OSError) as exc:
        raise RunError(exc, EXIT_INPUT_FAILED) from None
    write_text_atomic(final_dir / "summary.json", json.dumps({**summary, "segments": n}, indent=2, default=str) + "\n")


def wants_vad_run(run: Any) -> bool:
    """``--vad`` is on."""
    return run.config.option("vad", "none") != "none"


def vad_input(run: Any, inputs: list[str]) -> list[str]:
    """``--vad``: run the pre-pass (:func:`~audio_embeddings.speaker_lists.vad_prepass`) over ``inputs`` and
    return its data directory as the run's one input (``run.vad_data_dir`` names it for the final files).

    The pre-pass runs under the output folder's run lock of this shard (another run writing the
    folder is refused before anything is written), released before the shared run takes it again.
    ``--max-files`` applies to the input's utterances here, not again to their segments.
    """
    cfg = run.config
    vad = vad_settings(run)
    try:
        shard = resolve_shard(cfg.shard)
        dataset, utterances = utterances_from(
            inputs, allow_pipes=bool(cfg.option("allow_pipes")), audio_dir=cfg.audio_dir, part=cfg.part,
            patterns=cfg.pattern, max_files=cfg.max_files, exclude=[cfg.output_dir])
    except (kaldi.KaldiError, ValueError, OSError) as exc:
        raise RunError(exc) from None
    if not utterances:
        raise RunError(f"no utterances in {', '.join(inputs)}")
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    def seen(utt_id: str, what: str) -> None:
        kind = what if what in ("trimmed", "segmented", "no speech") else "unreadable"
        counts[kind] = counts.get(kind, 0) + 1

    started = time.time()
    try:
        with acquire_run_lock(cfg.output_dir, shard_label=shard.label):
            folder = vad_prepass(utterances, output_dir=cfg.output_dir, dataset=dataset, vad=vad, channel=cfg.channel,
                                 mine=None if shard.is_whole else shard.select(utterances),
                                 shard_label="whole" if shard.is_whole else shard.label, on_utterance=seen)
    except RunLocked as exc:
        raise RunError(exc) from None
    except (VadError, OSError) as exc:
        raise RunError(exc) from None
    summary = json.loads((folder / "vad.json").read_text(encoding="utf-8"))
    run.say(f"VAD {vad.method}: {len(utterances)} utterance(s) -> {summary['segments']} segment(s) in {folder} "
            f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items())) or 'all already done'}; "
            f"{time.time() - started:.1f} s)")
    if summary["no_speech"]:
        LOG.warning(f"warning: {summary['no_speech']} utterance(s) with no speech found are left out "
                    f"(listed in {folder / 'no_speech.txt'})")
    run.vad_data_dir = folder
    cfg.max_files = None  # applied to the utterances above; the segments are all kept
    return [str(folder)]


def record_vad(run: Any, final_dir: Path) -> None:
    """After a ``--vad`` run: its settings as ``vad`` in the run's ``summary.json`` and the final one."""
    vad = vad_settings(run)
    if vad is None:
        return
    for path in (run.output_dir / "summary.json", final_dir / "summary.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        data["vad"] = {**vad.describe(), "data_dir": str(kaldi_input(run))}
        write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


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
                                     top_n=int(cfg.option("cohort_top_n", 300)))
            out.update(cohort=str(Path(cfg.option("cohort")).resolve()), cohort_size=len(cohort),
                       top_n=int(cfg.option("cohort_top_n", 300)))
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


def refuse_stray_options(run: Any) -> None:
    """Refuse, with one line, decision options without ``--compare`` and scoring options without ``--score``
    (else a run would embed the folder and silently drop them)."""
    opt = run.config.option
    declared = {o.dest: o for o in OPTIONS}
    for command, dests, what in (("compare", ("threshold", "metrics"), "decision options go with --compare A B"),
                                 ("score", ("cohort", "score_norm"), "scoring options go with --score TRIALS")):
        given = [declared[d].flag for d in dests if opt(d) not in (None, declared[d].default)]
        if given and not opt(command):
            raise RunError(f"{', '.join(given)}: {what}")


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


__all__ = ["OPTIONS", "add_arguments", "decision_threshold", "kaldi_input", "record_vad", "refuse_stray_options",
           "score_run", "vad_input", "vad_settings", "wants_vad_run", "write_final_ark", "write_kaldi_outputs"]
