"""Speaker-verification scoring: trial lists, cosine scores, EER, minDCF and adaptive s-norm.

* :func:`read_trials`: VoxCeleb's ``1 id1 id2`` (1 target, 0 non-target), ``id1 id2 target|nontarget``
  (also ``1|0``, ``true|false``), or ``id1 id2`` without labels.
* :func:`load_embeddings`: vectors by id from a Kaldi ``scp``/``ark``, B4's final folder
  (``utterance_list.json`` + ``utterance_embeddings.npy``, its ``embeddings.scp`` when present),
  or a ``.npy`` [N, D] with a ``.json`` list of ids beside it.
* :func:`eer`: the equal error rate where the ROC curve (the points of every distinct threshold,
  joined by straight lines, as scikit-learn's ``roc_curve``) crosses miss rate = false-alarm rate.
* :func:`min_dcf`: Kaldi's/NIST's minimum normalised detection cost,
  ``min_t (C_miss P_miss(t) P_t + C_fa P_fa(t) (1 - P_t)) / min(C_miss P_t, C_fa (1 - P_t))``.
* :func:`as_norm`: adaptive symmetric normalisation (WeSpeaker's and 3D-Speaker's ``score_norm``):
  each side's score against a cohort, the top ``top_n`` taken, ``0.5 ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Trial labels read as target / non-target.
TARGET_WORDS = {"target", "1", "true", "tgt"}
NONTARGET_WORDS = {"nontarget", "non-target", "0", "false", "imp", "impostor"}


class ScoringError(ValueError):
    """A trial list, embedding source or cohort that cannot be scored (one line)."""


@dataclass(frozen=True)
class Trials:
    """``enroll`` and ``test`` ids (str [T]) and ``labels`` (bool [T], or None without labels)."""

    enroll: tuple[str, ...]
    test: tuple[str, ...]
    labels: np.ndarray | None


def read_trials(path: str | Path) -> Trials:
    """A trial list in one of the forms of the module docstring (the form is taken from the first line).

    Raises
    ------
    ScoringError
        A line of another form, an unknown label, or an empty list.
    """
    p = Path(path)
    try:
        lines = [ln.split() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoringError(f"{p}: cannot read the trial list ({exc})") from None
    if not lines:
        raise ScoringError(f"{p}: no trials")
    first = lines[0]
    label_first = len(first) == 3 and first[0] in ("0", "1")
    enroll, test, labels = [], [], []
    for n, fields in enumerate(lines, 1):
        if len(fields) != len(first):
            raise ScoringError(f"{p} line {n}: {len(fields)} fields where the first line has {len(first)}")
        if len(fields) == 2:
            enroll.append(fields[0]), test.append(fields[1])
            continue
        if len(fields) != 3:
            raise ScoringError(f"{p} line {n}: expected 'label id1 id2', 'id1 id2 label' or 'id1 id2'")
        label, a, b = (fields[0], fields[1], fields[2]) if label_first else (fields[2], fields[0], fields[1])
        word = label.lower()
        if word not in TARGET_WORDS | NONTARGET_WORDS:
            raise ScoringError(f"{p} line {n}: label {label!r} is neither target nor nontarget")
        enroll.append(a), test.append(b), labels.append(word in TARGET_WORDS)
    return Trials(tuple(enroll), tuple(test), np.array(labels, dtype=bool) if labels else None)


def load_embeddings(source: str | Path, *, speakers: bool = False) -> dict[str, np.ndarray]:
    """Vectors by id (float64 [D]) from an ``scp``/``ark``, B4's final folder, or ``.npy`` + ``.json`` ids.

    Parameters
    ----------
    source : path-like
        See the module docstring. A B4 output folder (holding ``final_embeddings/``) is read there.
    speakers : bool
        From a B4 folder, the per-speaker means (``speaker_embeddings``) instead of the utterances.

    Raises
    ------
    ScoringError
        Nothing readable at ``source``.
    """
    from .kaldi import KaldiError, read_vectors

    p = Path(source)
    if p.is_dir() and (p / "final_embeddings").is_dir() and not (p / "utterance_list.json").is_file():
        p = p / "final_embeddings"
    prefix = "spk_" if speakers else ""
    if p.is_dir() and (p / f"{prefix}embeddings.scp").is_file():
        p = p / f"{prefix}embeddings.scp"
    try:
        if p.suffix in (".scp", ".ark") and p.is_file():
            return {k: v.astype(np.float64) for k, v in read_vectors(p).items()}
    except KaldiError as exc:
        raise ScoringError(str(exc)) from None
    if p.is_dir():
        kind = "speaker" if speakers else "utterance"
        matrix, listing = p / f"{kind}_embeddings.npy", p / f"{kind}_list.json"
    elif p.suffix == ".npy":
        matrix, listing = p, p.with_suffix(".json")
        if not listing.is_file() and p.stem.endswith("_embeddings"):  # B4's utterance_embeddings.npy
            listing = p.with_name(p.stem[:-len("_embeddings")] + "_list.json")
    else:
        raise ScoringError(f"{p}: not an embeddings source (a .scp/.ark, B4's final folder, or a .npy with a .json "
                           "list of ids)")
    try:
        rows = np.load(matrix, allow_pickle=False)
        ids = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScoringError(f"{matrix}: cannot read the embeddings and their ids ({exc})") from None
    ids = [i["id"] if isinstance(i, dict) else str(i) for i in ids]
    if rows.ndim != 2 or rows.shape[0] != len(ids):
        raise ScoringError(f"{matrix}: {rows.shape} rows for {len(ids)} ids in {listing}")
    out = {i: r.astype(np.float64) for i, r in zip(ids, rows)}
    if not speakers and listing.name == "utterance_list.json":  # also by the bare utterance id where unique
        bare: dict[str, list[str]] = {}
        for entry in json.loads(listing.read_text(encoding="utf-8")):
            bare.setdefault(str(entry.get("utterance_id", "")), []).append(entry["id"])
        out.update({b: out[full[0]] for b, full in bare.items() if b and len(full) == 1 and b not in out})
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_scores(trials: Trials, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity of each trial's two vectors, float64 [T].

    Raises
    ------
    ScoringError
        An id of the trials has no vector (the message names it and how many are missing).
    """
    missing = sorted({i for i in (*trials.enroll, *trials.test) if i not in vectors})
    if missing:
        raise ScoringError(f"{len(missing)} trial id(s) have no embedding, e.g. {missing[0]!r}")
    e = _unit(np.stack([vectors[i] for i in trials.enroll]))
    t = _unit(np.stack([vectors[i] for i in trials.test]))
    return np.einsum("td,td->t", e, t)


def _roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-alarm rate, miss rate, threshold) at every distinct score, from accept-nothing to accept-all."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    n_tar, n_non = int(labels.sum()), int((~labels).sum())
    if n_tar == 0 or n_non == 0:
        raise ScoringError(f"EER and minDCF need target and non-target trials ({n_tar} target, {n_non} non-target)")
    order = np.argsort(-scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # the last index of each distinct score
    tp, fp = np.cumsum(lab)[last], np.cumsum(~lab)[last]
    fa = np.r_[0.0, fp / n_non]
    miss = np.r_[1.0, 1.0 - tp / n_tar]
    return fa, miss, np.r_[np.inf, s[last]]


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold.

    Parameters
    ----------
    scores : numpy.ndarray
        float [T], higher = more likely the same speaker.
    labels : numpy.ndarray
        bool [T], True for target trials.

    Returns
    -------
    (float, float)
        The EER (a fraction, 0..1) where the straight-line ROC crosses miss = false alarm, and the
        score threshold there (interpolated between the two neighbouring distinct scores).
    """
    fa, miss, thr = _roc(scores, labels)
    d = miss - fa  # falls from 1 to -1 as the threshold drops
    i = int(np.nonzero(d <= 0)[0][0])
    if d[i] == 0:
        return float(fa[i]), float(thr[i]) if np.isfinite(thr[i]) else float(thr[i + 1])
    j = i - 1
    t = d[j] / (d[j] - d[i])
    rate = fa[j] + t * (fa[i] - fa[j])
    lo = thr[j] if np.isfinite(thr[j]) else thr[i]
    return float(rate), float(lo + t * (thr[i] - lo))


def min_dcf(scores: np.ndarray, labels: np.ndarray, *, p_target: float, c_miss: float = 1.0,
            c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost and its threshold (see the module docstring).

    Returns
    -------
    (float, float)
        minDCF and the lowest score accepted at it (inf: accept nothing).
    """
    fa, miss, thr = _roc(scores, labels)
    cost = c_miss * miss * p_target + c_fa * fa * (1.0 - p_target)
    i = int(np.argmin(cost))
    return float(cost[i] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thr[i])


def as_norm(scores: np.ndarray, trials: Trials, vectors: dict[str, np.ndarray], cohort: np.ndarray, *,
            top_n: int = 300) -> np.ndarray:
    """Adaptive s-norm of cosine ``scores`` against ``cohort`` (float [C, D]); float64 [T].

    Each side's cosine scores against the cohort are sorted, the ``top_n`` highest kept (all when the
    cohort is smaller), and their mean and standard deviation normalise the trial score.
    """
    cohort = _unit(np.asarray(cohort, np.float64))
    if cohort.ndim != 2 or cohort.shape[0] < 2:
        raise ScoringError(f"the cohort needs at least 2 embeddings, got {cohort.shape}")
    n = max(1, min(int(top_n), cohort.shape[0]))
    stats: dict[str, tuple[float, float]] = {}
    ids = sorted(set(trials.enroll) | set(trials.test))
    mat = _unit(np.stack([vectors[i] for i in ids]))
    top = -np.sort(-(mat @ cohort.T), axis=1)[:, :n]
    for i, row in zip(ids, top):
        stats[i] = (float(row.mean()), float(max(row.std(), 1e-12)))
    mu_e, sd_e = np.array([stats[i] for i in trials.enroll]).T
    mu_t, sd_t = np.array([stats[i] for i in trials.test]).T
    return 0.5 * ((scores - mu_e) / sd_e + (scores - mu_t) / sd_t)


def metrics(scores: np.ndarray, labels: np.ndarray, *, p_targets: tuple[float, ...] = (0.01, 0.05)) -> dict[str, Any]:
    """EER (%), its threshold and minDCF at each ``p_target`` (C_miss = C_fa = 1), as a JSON-ready dict."""
    rate, threshold = eer(scores, labels)
    out: dict[str, Any] = {"eer": rate, "eer_percent": 100.0 * rate, "eer_threshold": threshold,
                           "n_trials": int(len(scores)), "n_target": int(np.sum(labels)),
                           "n_nontarget": int(np.sum(~np.asarray(labels, bool)))}
    for p in p_targets:
        value, thr = min_dcf(scores, labels, p_target=p)
        out[f"min_dcf_p{p:g}"] = value
        out[f"min_dcf_p{p:g}_threshold"] = thr
    out["c_miss"], out["c_fa"] = 1.0, 1.0
    return out


def write_scores(path: str | Path, trials: Trials, scores: np.ndarray) -> None:
    """``id1 id2 score [target|nontarget]`` per trial, atomically."""
    from .outputs.atomic import write_text_atomic

    lines = []
    for k, (a, b, s) in enumerate(zip(trials.enroll, trials.test, scores)):
        label = "" if trials.labels is None else (" target" if trials.labels[k] else " nontarget")
        lines.append(f"{a} {b} {s:.6f}{label}\n")
    write_text_atomic(path, "".join(lines))


__all__ = ["ScoringError", "Trials", "as_norm", "cosine_scores", "eer", "load_embeddings", "metrics", "min_dcf",
           "read_trials", "write_scores"]
