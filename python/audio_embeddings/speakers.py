"""B4: speaker embeddings of ``data_root/dataset/speaker/utterance.wav`` trees, per utterance and per speaker.

Stage 1 (the corpus engine, any number of shards or torchrun ranks) writes one
``<output_dir>/utterances/<relative path>.npz`` per utterance (``embedding`` float32 [D],
``key``, ``path``), atomically, so runs resume. Stage 2 (:func:`finalize`) reads them back and
writes the original pipeline's files into the final folder:

* ``utterance_embeddings.pkl``: ``{"dataset_speaker_utterance": {"embedding", "dataset",
  "speaker_id", "utterance_id", "path"}}``; ``speaker_embeddings.pkl``: ``{"dataset_speaker":
  {"embedding" (mean of the utterances), "dataset", "speaker_id", "num_utterances"}}``;
* ``utterance_list.json``, ``speaker_list.json`` (the same without embeddings), ``summary.json``
  (``total_utterances``, ``total_speakers``, ``embedding_dimension``, per-dataset counts, provenance);
* ``utterance_embeddings.npy`` [U, D], ``speaker_embeddings.npy`` [S, D] (rows in list order) and
  ``embeddings.mat`` (both matrices, their ids, for MATLAB).

Pickles are written for compatibility with the original pipeline; nothing here reads a pickle.
B4's run hook (``--final-output-dir``, ``--compare``, stage 2 after the run) is
:class:`audio_embeddings.hooks.SpeakerHooks`; this module does not import the run.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .corpus.stamps import stamp_difference
from .atomic import atomic_path, write_bytes_atomic, write_text_atomic
from .outputs.matfile import write_mat

UTTERANCE_DIR = "utterances"
FINAL_DIR = "final_embeddings"


@dataclass(frozen=True)
class Utterance:
    """Who said what: parsed from a corpus key ``dataset/speaker/utterance.ext``.

    Keys with fewer levels get empty fields from the left (``speaker/utt.wav``: no dataset);
    deeper keys keep the extra folders in ``utterance_id`` (``a/b`` -> ``a_b``).
    """

    key: str
    dataset: str
    speaker_id: str
    utterance_id: str

    @classmethod
    def from_key(cls, key: str) -> "Utterance":
        parts = PurePosixPath(key).with_suffix("").parts
        padded = ("",) * max(0, 3 - len(parts)) + tuple(parts)
        return cls(key, padded[0], padded[1], "_".join(padded[2:]))

    @property
    def id(self) -> str:
        """``dataset_speaker_utterance`` (the original pipeline's key)."""
        return f"{self.dataset}_{self.speaker_id}_{self.utterance_id}"

    @property
    def speaker_key(self) -> str:
        """``dataset_speaker``."""
        return f"{self.dataset}_{self.speaker_id}"


def utterance_vector(result: Any) -> np.ndarray:
    """One float32 [D] vector per recording: the backend's ``utterance_embedding`` (GE2E) or its single row."""
    if "utterance_embedding" in result.extras:
        return np.asarray(result.extras["utterance_embedding"], dtype=np.float32).reshape(-1)
    rows = np.asarray(result.embeddings, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] != 1:
        raise ValueError(f"not a speaker model: {rows.shape} rows per file, expected one utterance embedding")
    return rows[0]


class SpeakerWriter:
    """Stage-1 writer for the corpus engine: ``<output_dir>/utterances/<key without ext>.npz``.

    With a stamp (:mod:`~audio_embeddings.corpus.stamps`) the ``.npz`` also holds ``stamp`` (JSON text),
    and a file is done only when that stamp matches; a ``.npz`` that cannot be read (empty, truncated)
    is never done.
    """

    supports_stamps = True

    def __init__(self, output_dir: str | Path):
        self.root = Path(output_dir) / UTTERANCE_DIR

    def _path(self, key: str) -> Path:
        return self.root / (PurePosixPath(key).with_suffix("").as_posix() + ".npz")

    def _read(self, key: str) -> tuple[bool, dict[str, Any] | None]:
        """(the ``.npz`` is whole, its stamp or None)."""
        try:
            with np.load(self._path(key), allow_pickle=False) as data:
                if "embedding" not in data.files or str(data["key"]) != key:
                    return False, None
                np.asarray(data["embedding"])  # reads (and checks) the member
                text = str(data["stamp"]) if "stamp" in data.files else ""
        except Exception:  # noqa: BLE001 - missing, empty, truncated or not a zip: not done
            return False, None
        try:
            stamp = json.loads(text) if text else None
        except ValueError:
            stamp = None
        return True, stamp if isinstance(stamp, dict) else None

    def stored_stamp(self, key: str) -> dict[str, Any] | None:
        """The stamp in ``key``'s ``.npz`` when it is whole; None otherwise."""
        return self._read(key)[1]

    def is_complete(self, key: str, stamp: dict[str, Any] | None = None) -> bool:
        """The ``.npz`` of ``key`` is whole and, given ``stamp``, was made by the same settings from the same input."""
        whole, stored = self._read(key)
        if stamp is None:
            return whole
        return whole and stamp_difference(stored, stamp) is None

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any],
              stamp: dict[str, Any] | None = None) -> dict[str, Any]:
        path = self._path(key)
        buf = io.BytesIO()
        extra = {"stamp": np.array(json.dumps(stamp, sort_keys=True))} if stamp is not None else {}
        np.savez(buf, embedding=utterance_vector(result), key=np.array(key), path=np.array(str(input_path)),
                 duration_s=np.float64(audio_info.get("duration_s", 0.0)), **extra)
        write_bytes_atomic(path, buf.getvalue())
        return {"store": str(path)}

    def close(self) -> None:
        """Nothing is buffered."""


def read_utterances(output_dir: str | Path) -> list[tuple[Utterance, str, np.ndarray]]:
    """Every finished utterance of stage 1, sorted by key: (utterance, audio path, float32 [D])."""
    found = []
    for npz in (Path(output_dir) / UTTERANCE_DIR).rglob("*.npz"):
        if npz.name.startswith("."):
            continue  # a temporary file of a killed run
        with np.load(npz, allow_pickle=False) as data:
            found.append((Utterance.from_key(str(data["key"])), str(data["path"]),
                          np.asarray(data["embedding"], dtype=np.float32)))
    found.sort(key=lambda item: item[0].key)
    dims = {vec.shape for _, _, vec in found}
    if len(dims) > 1:
        raise ValueError(f"{output_dir}: utterance embeddings of different sizes {sorted(dims)}: "
                         "mixed models in one output folder")
    return found


def _write_pickle(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def finalize(output_dir: str | Path, final_dir: str | Path, *, provenance: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """Stage 2: per-utterance and per-speaker files of the original pipeline, plus ``.npy``/``.mat``.

    Returns the summary (also written to ``summary.json``).

    Raises
    ------
    FileNotFoundError
        Stage 1 left no utterance embeddings in ``output_dir``.
    """
    items = read_utterances(output_dir)
    if not items:
        raise FileNotFoundError(f"no utterance embeddings under {Path(output_dir) / UTTERANCE_DIR} (run stage 1)")
    final = Path(final_dir)
    utterances, speakers = {}, {}
    for utt, path, vec in items:
        utterances[utt.id] = {"embedding": vec, "dataset": utt.dataset, "speaker_id": utt.speaker_id,
                              "utterance_id": utt.utterance_id, "path": path}
        speakers.setdefault(utt.speaker_key, {"dataset": utt.dataset, "speaker_id": utt.speaker_id, "rows": []})
        speakers[utt.speaker_key]["rows"].append(vec)
    speaker_out = {}
    for key, s in sorted(speakers.items()):
        speaker_out[key] = {"embedding": np.mean(np.stack(s["rows"]), axis=0, dtype=np.float64).astype(np.float32),
                            "dataset": s["dataset"], "speaker_id": s["speaker_id"], "num_utterances": len(s["rows"])}
    utt_list = [{"id": k, **{f: v[f] for f in ("dataset", "speaker_id", "utterance_id", "path")}}
                for k, v in utterances.items()]
    spk_list = [{"id": k, **{f: v[f] for f in ("dataset", "speaker_id", "num_utterances")}}
                for k, v in speaker_out.items()]
    datasets: dict[str, dict[str, int]] = {}
    for u in utt_list:
        datasets.setdefault(u["dataset"], {"utterances": 0, "speakers": 0})["utterances"] += 1
    for s in spk_list:
        datasets[s["dataset"]]["speakers"] += 1
    dim = int(items[0][2].shape[0])
    summary = {"total_utterances": len(utt_list), "total_speakers": len(spk_list), "embedding_dimension": dim,
               "datasets": datasets, **(provenance or {})}
    utt_matrix = np.stack([v["embedding"] for v in utterances.values()])
    spk_matrix = np.stack([v["embedding"] for v in speaker_out.values()])
    _write_pickle(final / "utterance_embeddings.pkl", utterances)
    _write_pickle(final / "speaker_embeddings.pkl", speaker_out)
    write_text_atomic(final / "utterance_list.json", json.dumps(utt_list, indent=2) + "\n")
    write_text_atomic(final / "speaker_list.json", json.dumps(spk_list, indent=2) + "\n")
    for name, matrix in (("utterance_embeddings.npy", utt_matrix), ("speaker_embeddings.npy", spk_matrix)):
        with atomic_path(final / name, suffix=".npy") as tmp:
            np.save(tmp, matrix)
    write_mat(final / "embeddings.mat", {
        "utterance_embeddings": utt_matrix, "utterance_ids": [u["id"] for u in utt_list],
        "utterance_speakers": [f"{u['dataset']}_{u['speaker_id']}" for u in utt_list],
        "utterance_paths": [u["path"] for u in utt_list],
        "speaker_embeddings": spk_matrix, "speaker_ids": [s["id"] for s in spk_list],
        "num_utterances": np.array([[s["num_utterances"] for s in spk_list]], dtype=np.float64).T,
        "embedding_dimension": float(dim), "model_name": str((provenance or {}).get("model", "")),
    })
    write_text_atomic(final / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
