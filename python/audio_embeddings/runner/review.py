"""``review``: a static page to listen to hits, label them, and export labels that ``train`` reads.

``perch_runner.py review RESULTS OUT_DIR`` reads what ``search``, ``classify`` or ``detect`` wrote
(``search_results.csv``; ``<stem>.classifications.csv|parquet``; ``<stem>.BirdNET.results.csv`` or
``<stem>.BirdNET.selection.table.txt``; or a folder of them) and writes, in ``OUT_DIR``:

- ``review.html``: one card per hit (best first): its spectrogram, an audio player of the clip (the
  window plus ``context_s`` on each side), score, source and time, a label field and buttons
  *positive* / *negative* / *unsure*; a projection of the hits' embeddings (PCA, or UMAP when
  ``umap-learn`` is installed) coloured by score or by the labels given so far; and two exports:
  ``labels.csv`` (``path,label`` rows naming the exact window clips: ``train`` reads it as it is,
  negatives under the page's negative label, ``unsure`` left out) and ``hoplite_annotations.csv``
  (perch-hoplite's agile columns ``recording,label,start_offset_s,end_offset_s,label_type`` with
  ``positive``/``negative``/``uncertain``). The page opens from disk (``file://``, no server, no
  network, plain HTML and JavaScript); labels are kept in the browser's ``localStorage`` between
  visits, and each export is also shown as text (``<textarea id="labels-csv">``) to copy.
- ``clips/hit_0001.wav`` (the clip with context, 16-bit PCM, the file's own rate, mono) and
  ``clips/hit_0001.window.wav`` (the window alone, float32: what the labels point at);
- ``images/hit_0001.png`` (matplotlib spectrogram of the clip, the window between two lines);
- ``hits.csv``: the hits as read (rank, source, audio path, start, end, score, label, clip files).

The loop: ``search``/``classify``/``detect`` -> ``review`` -> label -> export ``labels.csv`` ->
``train -c CONFIG labels.csv MODEL_DIR`` -> ``classify`` with the model.
"""

from __future__ import annotations

import csv
import html
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PROJECTIONS = ("auto", "pca", "umap", "none")
DEFAULT_TOP = 100
DEFAULT_CONTEXT_S = 1.0
DEFAULT_NEGATIVE_LABEL = "negative"
PAGE = "review.html"
DETECTION_SUFFIXES = (".BirdNET.results.csv", ".BirdNET.selection.table.txt")
CLASSIFY_SUFFIXES = (".classifications.csv", ".classifications.parquet")
SEARCH_RESULTS = "search_results.csv"


class ReviewError(ValueError):
    """The results cannot be read, or their audio cannot be found."""


@dataclass
class Hit:
    """One row to review.

    ``score`` is the results' own number (``score_name``: distance, lower is better; score or
    confidence, higher is better); ``label`` the suggested label of a positive.
    """

    rank: int
    source: str
    path: str
    start_s: float
    end_s: float
    score: float
    score_name: str
    label: str
    clip: str = ""
    window: str = ""
    image: str = ""
    clip_start_s: float = 0.0


# -- reading results ---------------------------------------------------------------------------


def _kind(path: Path) -> str:
    name = path.name
    if name.endswith(CLASSIFY_SUFFIXES):
        return "classify"
    if name.endswith(DETECTION_SUFFIXES):
        return "detections"
    if name.endswith(".csv"):
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
        if {"rank", "query", "source", "start", "end", "distance"} <= set(header):
            return "search"
    raise ReviewError(f"{path}: not search results ({SEARCH_RESULTS}), a classify table "
                      f"(<stem>{CLASSIFY_SUFFIXES[0]}) or BirdNET detections (<stem>{DETECTION_SUFFIXES[0]})")


def result_files(results: str | Path) -> tuple[str, list[Path]]:
    """The kind (``search``, ``classify``, ``detections``) and the files of RESULTS.

    A folder gives its ``search_results.csv``, else its classify tables, else its detection files
    (``.BirdNET.results.csv``, or the selection tables when there are none), searched recursively.
    """
    p = Path(results)
    if p.is_file():
        return _kind(p), [p]
    if not p.is_dir():
        raise ReviewError(f"{p}: no such file or folder")
    if (p / SEARCH_RESULTS).is_file():
        return "search", [p / SEARCH_RESULTS]
    for kind, suffixes in (("classify", CLASSIFY_SUFFIXES), ("detections", DETECTION_SUFFIXES[:1]),
                           ("detections", DETECTION_SUFFIXES[1:])):
        found = sorted(f for s in suffixes for f in p.rglob(f"*{s}"))
        if found:
            return kind, found
    raise ReviewError(f"{p}: no {SEARCH_RESULTS}, classify tables or BirdNET detection files in it")


class _Resolver:
    """Audio paths of result sources: tried in order, the first existing wins."""

    def __init__(self, audio_root: str | Path | None, bases: Sequence[Path]):
        self.bases = ([Path(audio_root)] if audio_root else []) + list(bases) + [Path.cwd()]

    def __call__(self, source: str, *given: str | None) -> str:
        tried = []
        for candidate in [*(g for g in given if g), source]:
            c = Path(candidate)
            if c.is_absolute():
                tried.append(c)
                if c.is_file():
                    return str(c.resolve())
            else:
                for base in self.bases:
                    tried.append(base / c)
                    if (base / c).is_file():
                        return str((base / c).resolve())
        raise ReviewError(f"{source}: audio not found (tried {', '.join(map(str, tried[:4]))}"
                          f"{' ...' if len(tried) > 4 else ''}); give --audio-root DIR")


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name + ".json")
    try:
        return json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    except (OSError, ValueError):
        return {}


def _read_search(path: Path, resolve_root: str | Path | None, label: str | None) -> tuple[list[Hit], dict]:
    prov = _sidecar(path)
    bases = [path.parent]
    corpus = prov.get("corpus")
    if corpus:
        bases += [Path(corpus), path.parent / corpus, path.parent.parent / corpus]
    resolve = _Resolver(resolve_root, bases)
    hits = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            query = row["query"].split("#", 1)[0]
            hits.append(Hit(int(row["rank"]), row["source"], resolve(row["source"]), float(row["start"]),
                            float(row["end"]), float(row["distance"]), "distance",
                            label or Path(query).stem or "target"))
    hits.sort(key=lambda h: (h.score, h.rank))
    return hits, {"model": prov.get("model"), "metric": prov.get("metric")}


def _read_classify(paths: Sequence[Path], resolve_root: str | Path | None, label: str | None
                   ) -> tuple[list[Hit], dict]:
    from .tables import read_table

    hits, model = [], None
    for path in paths:
        columns, prov = read_table(path)
        model = model or prov.get("model_spec") or prov.get("model")
        given = (prov.get("input") or {}).get("path") if isinstance(prov.get("input"), dict) else None
        resolve = _Resolver(resolve_root, [path.parent])
        keep = np.ones(len(columns["score"]), dtype=bool) if label is None else columns["label"] == label
        cache: dict[str, str] = {}
        for i in np.flatnonzero(keep):
            source = str(columns["source"][i])
            if source not in cache:
                cache[source] = resolve(source, given)
            hits.append(Hit(0, source, cache[source], float(columns["start"][i]), float(columns["end"][i]),
                            float(columns["score"][i]), "score", str(columns["label"][i])))
    if label is not None and not hits:
        raise ReviewError(f"no rows with label {label!r} in {', '.join(map(str, paths[:3]))}")
    hits.sort(key=lambda h: -h.score)
    return hits, {"model": model}


def _read_detections(paths: Sequence[Path], resolve_root: str | Path | None, label: str | None
                     ) -> tuple[list[Hit], dict]:
    hits = []
    for path in paths:
        resolve = _Resolver(resolve_root, [path.parent])
        table = path.name.endswith(DETECTION_SUFFIXES[1])
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if table else ","))
        cache: dict[str, str] = {}
        for row in rows:
            if table:
                if row.get("View", "Spectrogram 1") != "Spectrogram 1" or row.get("Species Code") == "nocall":
                    continue  # Raven's waveform rows; BirdNET-Analyzer's row of a file without detections
                name, start, end, file = (row["Common Name"], row["Begin Time (s)"], row["End Time (s)"],
                                          row["Begin Path"])
                start_s = float(row.get("File Offset (s)") or start)
                end_s = start_s + float(end) - float(start)
            else:
                name = f"{row['Scientific name']}_{row['Common name']}"
                start_s, end_s, file = float(row["Start (s)"]), float(row["End (s)"]), row["File"]
            if label is not None and label not in (name, name.split("_", 1)[-1], name.split("_", 1)[0]):
                continue
            if file not in cache:
                cache[file] = resolve(file)
            hits.append(Hit(0, file, cache[file], start_s, end_s, float(row["Confidence"]), "confidence", name))
    hits.sort(key=lambda h: -h.score)
    return hits, {"model": "birdnet"}


def read_hits(results: str | Path, *, audio_root: str | Path | None = None, label: str | None = None,
              top: int | None = DEFAULT_TOP) -> tuple[str, list[Hit], dict[str, Any]]:
    """The hits of RESULTS, best first, ``top`` at most.

    Parameters
    ----------
    results : path-like
        A results file or a folder of them (:func:`result_files`).
    audio_root : path-like, optional
        Where relative sources are looked for first.
    label : str, optional
        Classify tables and detections: keep this label only (search: the label of positives).
    top : int, optional
        At most this many hits (all when None).

    Returns
    -------
    kind : str
    hits : list of Hit
        Ranked 1..N.
    facts : dict
        ``model`` (the embedding model the results name), ...

    Raises
    ------
    ReviewError
    """
    kind, files = result_files(results)
    reader = {"search": lambda: _read_search(files[0], audio_root, label),
              "classify": lambda: _read_classify(files, audio_root, label),
              "detections": lambda: _read_detections(files, audio_root, label)}[kind]
    hits, facts = reader()
    if not hits:
        raise ReviewError(f"{results}: no rows to review")
    hits = hits[:top] if top else hits
    for n, hit in enumerate(hits, start=1):
        hit.rank = n
    return kind, hits, {**facts, "files": [str(f) for f in files]}


# -- clips, spectrograms, projection -----------------------------------------------------------


def read_region(path: str, start_s: float, end_s: float) -> tuple[np.ndarray, int, float]:
    """Mono float32 samples of ``[start_s, end_s)`` at the file's own rate, the rate, and the true start.

    The region is clipped to the file; libsndfile reads only the region, other formats are decoded whole.
    """
    import soundfile as sf

    try:
        info = sf.info(path)
        rate = int(info.samplerate)
        first = max(0, int(round(start_s * rate)))
        last = min(int(info.frames), max(first, int(round(end_s * rate))))
        x, _ = sf.read(path, start=first, stop=last, dtype="float32", always_2d=True)
        return x.mean(axis=1).astype(np.float32), rate, first / rate
    except (RuntimeError, sf.LibsndfileError):  # formats libsndfile does not read: decode it all
        from .. import audio

        a = audio.load(path, sample_rate_hz=48000)
        rate = 48000
        first = max(0, int(round(start_s * rate)))
        last = min(a.samples.shape[-1], max(first, int(round(end_s * rate))))
        return np.asarray(a.samples[..., first:last], dtype=np.float32).reshape(-1), rate, first / rate


def spectrogram_png(samples: np.ndarray, rate_hz: int, path: Path, *, window_s: tuple[float, float],
                    title: str) -> Path:
    """A small spectrogram PNG of a clip, the window between two white lines (times from the clip start)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib only when pages are drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 1.9), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, 0.2, 0.86, 0.68))
    nfft = 512 if rate_hz > 24000 else 256
    if samples.size >= nfft:
        spec, _, _, image = ax.specgram(samples.astype(np.float64) + 1e-9, NFFT=nfft, Fs=rate_hz,
                                        noverlap=nfft // 2, cmap="magma", scale="dB")
        top_db = 10 * np.log10(max(float(spec.max()), 1e-20))
        image.set_clim(top_db - 80, top_db)  # 80 dB of range below the loudest bin
    ax.set_xlim(0, max(samples.size / rate_hz, 1e-3))
    ax.set_ylim(0, min(rate_hz / 2, 16000))
    for t in window_s:
        ax.axvline(t, color="white", lw=1.0, ls="--")
    ax.set_yticks([0, min(rate_hz / 2, 16000) // 2, min(rate_hz / 2, 16000)])
    ax.set_yticklabels([f"{v / 1000:g}k" for v in ax.get_yticks()], fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("s (clip)", fontsize=7, labelpad=1)
    ax.set_title(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
    return path


def write_clips(hits: Sequence[Hit], out: Path, *, context_s: float = DEFAULT_CONTEXT_S,
                images: bool = True) -> None:
    """Write each hit's clip (with context), window and spectrogram; fill ``clip``, ``window``, ``image``."""
    import soundfile as sf

    (out / "clips").mkdir(parents=True, exist_ok=True)
    for hit in hits:
        name = f"hit_{hit.rank:04d}"
        samples, rate, first_s = read_region(hit.path, hit.start_s - context_s, hit.end_s + context_s)
        clip = out / "clips" / f"{name}.wav"
        sf.write(str(clip), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
        a = int(round((hit.start_s - first_s) * rate))
        b = int(round((hit.end_s - first_s) * rate))
        window = out / "clips" / f"{name}.window.wav"
        sf.write(str(window), samples[max(a, 0):max(b, a + 1)], rate, subtype="FLOAT")
        hit.clip, hit.window, hit.clip_start_s = f"clips/{name}.wav", str(window.resolve()), first_s
        if images:
            png = spectrogram_png(samples, rate, out / "images" / f"{name}.png",
                                  window_s=(hit.start_s - first_s, hit.end_s - first_s),
                                  title=f"#{hit.rank} {Path(hit.source).name} {hit.start_s:.1f}-{hit.end_s:.1f} s")
            hit.image = png.relative_to(out).as_posix()


def hit_embeddings(hits: Sequence[Hit], model: str, *, device: str = "cpu", batch_size: int = 8) -> np.ndarray:
    """float32 [N, D]: each hit's window clip embedded by ``model`` (the mean over its windows)."""
    from .. import audio
    from ..pipeline import embed_audio
    from ..registry import load_backend

    backend = load_backend(model, device=device)
    rows = []
    for hit in hits:
        a = audio.load(hit.window, sample_rate_hz=backend.sample_rate_hz, min_samples=backend.min_samples,
                       resampler=getattr(backend, "resampler", "soxr-hq"))
        e = np.asarray(embed_audio(backend, a, batch_size=batch_size).embeddings, dtype=np.float32)
        rows.append(e.reshape(-1, e.shape[-1]).mean(axis=0))
    return np.stack(rows)


def project(x: np.ndarray, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates [N, 2] of rows ``x`` [N, D] and the method used (``pca`` or ``umap``).

    ``auto`` is UMAP when ``umap-learn`` is installed and there are at least 10 rows, else PCA
    (numpy's SVD of the centred rows: the first two principal components).
    """
    x = np.asarray(x, dtype=np.float64)
    if method in ("auto", "umap") and x.shape[0] >= 10:
        try:
            import umap  # optional: pip install umap-learn
        except ImportError:
            if method == "umap":
                raise ReviewError("--projection umap needs umap-learn (pip install umap-learn)") from None
        else:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, x.shape[0] - 1), random_state=seed)
            return np.asarray(reducer.fit_transform(x), dtype=np.float64), "umap"
    centred = x - x.mean(axis=0)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2)), "pca"
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    xy = u[:, :2] * s[:2]
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy, "pca"


def _colour(value: float) -> str:
    from matplotlib import colormaps

    r, g, b, _ = colormaps["viridis"](float(min(max(value, 0.0), 1.0)))
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def projection_svg(xy: np.ndarray, hits: Sequence[Hit], *, method: str, size_px: int = 360) -> str:
    """An inline SVG scatter of the hits, coloured by score (best = yellow); circles link to the cards."""
    scores = np.array([h.score for h in hits], dtype=np.float64)
    good = -scores if hits and hits[0].score_name == "distance" else scores
    lo, hi = float(good.min()), float(good.max())
    unit = (good - lo) / (hi - lo) if hi > lo else np.ones_like(good)
    pad = 14.0
    span = np.ptp(xy, axis=0)
    span[span == 0] = 1.0
    pts = pad + (xy - xy.min(axis=0)) / span * (size_px - 2 * pad)
    circles = []
    for hit, (px, py), u in zip(hits, pts, unit):
        tip = html.escape(f"#{hit.rank} {hit.source} {hit.start_s:g}-{hit.end_s:g} s, {hit.score_name} "
                          f"{hit.score:.4g}")
        circles.append(f'<a href="#hit-{hit.rank}"><circle class="dot" id="dot-{hit.rank}" data-hit="{hit.rank}" '
                       f'data-score-colour="{_colour(u)}" cx="{px:.1f}" cy="{size_px - py:.1f}" r="6" '
                       f'fill="{_colour(u)}" stroke="#333" stroke-width="0.8"><title>{tip}</title></circle></a>')
    return (f'<svg id="projection-svg" xmlns="http://www.w3.org/2000/svg" width="{size_px}" height="{size_px}" '
            f'viewBox="0 0 {size_px} {size_px}" data-method="{method}">'
            f'<rect width="100%" height="100%" fill="#fafafa" stroke="#ccc"/>{"".join(circles)}</svg>')


# -- the page ----------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;background:#f4f4f4;color:#222}
header{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}
#hits{display:flex;flex-wrap:wrap;gap:10px;margin-top:1em}
.hit{background:#fff;border:3px solid #ddd;border-radius:6px;padding:6px;width:350px}
.hit.positive{border-color:#2a9d3a}.hit.negative{border-color:#c0392b}.hit.unsure{border-color:#e0a800}
.hit img{width:336px;display:block}.hit audio{width:336px;margin:4px 0}
.meta{font-size:12px;color:#444}.meta b{color:#000}
.mark{margin-right:4px;padding:3px 8px;border:1px solid #999;border-radius:4px;background:#eee;cursor:pointer}
.mark.on[data-value=positive]{background:#2a9d3a;color:#fff}.mark.on[data-value=negative]{background:#c0392b;color:#fff}
.mark.on[data-value=unsure]{background:#e0a800}
textarea{width:30em;height:7em;font-size:11px}
.hit-label{width:12em}
"""

_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('review-data').textContent);
  const key = 'audio_embeddings_review:' + data.page_id;
  let state = {};
  try { state = JSON.parse(localStorage.getItem(key) || '{}'); } catch (e) { state = {}; }
  const colours = {positive: '#2a9d3a', negative: '#c0392b', unsure: '#e0a800'};
  function save() { try { localStorage.setItem(key, JSON.stringify(state)); } catch (e) {} }
  function labelOf(rank) {
    const input = document.querySelector('.hit-label[data-hit="' + rank + '"]');
    return (input && input.value.trim()) || data.hits[rank - 1].label;
  }
  function show(rank) {
    const card = document.getElementById('hit-' + rank);
    const value = (state[rank] || {}).status || '';
    card.classList.remove('positive', 'negative', 'unsure');
    if (value) card.classList.add(value);
    card.querySelectorAll('.mark').forEach(b => b.classList.toggle('on', b.dataset.value === value));
    const dot = document.getElementById('dot-' + rank);
    if (dot) {
      const byLabel = document.getElementById('colour-by').value === 'label';
      dot.setAttribute('fill', byLabel ? (colours[value] || '#bbb') : dot.dataset.scoreColour);
    }
    document.getElementById('count').textContent = Object.values(state).filter(s => s.status).length;
  }
  function cell(v) {
    const s = String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function rows(header, list) { return [header].concat(list).map(r => r.map(cell).join(',')).join('\n') + '\n'; }
  function labelsCsv() {
    const negative = document.getElementById('negative-label').value.trim() || 'negative';
    const out = [];
    data.hits.forEach(h => {
      const s = (state[h.rank] || {}).status;
      if (s === 'positive') out.push([h.window, labelOf(h.rank), h.source, h.start_s, h.end_s, h.score]);
      if (s === 'negative') out.push([h.window, negative, h.source, h.start_s, h.end_s, h.score]);
    });
    return rows(['path', 'label', 'source', 'start_s', 'end_s', data.score_name], out);
  }
  function hopliteCsv() {
    const types = {positive: 'positive', negative: 'negative', unsure: 'uncertain'};
    const out = [];
    data.hits.forEach(h => {
      const s = (state[h.rank] || {}).status;
      if (s) out.push([h.source, labelOf(h.rank), h.start_s, h.end_s, types[s]]);
    });
    return rows(['recording', 'label', 'start_offset_s', 'end_offset_s', 'label_type'], out);
  }
  function download(name, text) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], {type: 'text/csv'}));
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  document.querySelectorAll('.mark').forEach(b => b.addEventListener('click', () => {
    const rank = Number(b.dataset.hit);
    const current = (state[rank] || {}).status;
    if (current === b.dataset.value) delete state[rank]; else state[rank] = {status: b.dataset.value};
    save(); show(rank);
  }));
  document.getElementById('colour-by').addEventListener('change', () => data.hits.forEach(h => show(h.rank)));
  document.getElementById('export-labels').addEventListener('click', () => {
    const text = labelsCsv();
    document.getElementById('labels-csv').value = text;
    download('labels.csv', text);
  });
  document.getElementById('export-hoplite').addEventListener('click', () => {
    const text = hopliteCsv();
    document.getElementById('hoplite-csv').value = text;
    download('hoplite_annotations.csv', text);
  });
  document.getElementById('clear-labels').addEventListener('click', () => {
    state = {}; save(); data.hits.forEach(h => show(h.rank));
  });
  data.hits.forEach(h => show(h.rank));
  document.body.dataset.ready = 'true';
})();
"""


def _card(hit: Hit) -> str:
    e = html.escape
    buttons = "".join(f'<button type="button" class="mark" data-hit="{hit.rank}" data-value="{v}">{v}</button>'
                      for v in ("positive", "negative", "unsure"))
    image = f'<img src="{e(hit.image)}" alt="spectrogram of hit {hit.rank}" loading="lazy">' if hit.image else ""
    return (f'<div class="hit" id="hit-{hit.rank}">{image}'
            f'<audio controls preload="none" src="{e(hit.clip)}"></audio>'
            f'<div class="meta"><b>#{hit.rank}</b> {e(hit.score_name)} <b>{hit.score:.4g}</b> &middot; '
            f'{e(hit.source)} &middot; {hit.start_s:g}&ndash;{hit.end_s:g} s</div>'
            f'<div>label <input class="hit-label" data-hit="{hit.rank}" value="{e(hit.label)}"></div>'
            f'<div>{buttons}</div></div>')


def render_page(hits: Sequence[Hit], *, kind: str, results: str, projection: str = "", note: str = "",
                page_id: str = "") -> str:
    """The page's HTML (one file; the clips and images it names are beside it)."""
    e = html.escape
    data = {"page_id": page_id, "kind": kind, "score_name": hits[0].score_name if hits else "score",
            "hits": [{"rank": h.rank, "source": h.source, "start_s": h.start_s, "end_s": h.end_s, "score": h.score,
                      "label": h.label, "window": h.window} for h in hits]}
    payload = json.dumps(data).replace("</", "<\\/")
    order = "lower is better" if data["score_name"] == "distance" else "higher is better"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>review: {e(Path(results).name)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>Review {len(hits)} hits of {e(kind)} results</h1>
<p class="meta">{e(str(results))} &middot; {e(data['score_name'])} ({order}) &middot;
labelled: <span id="count">0</span>
{(' &middot; ' + e(note)) if note else ''}</p>
<header>
<section id="projection"><h3>Projection</h3>{projection or '<p class="meta">no projection</p>'}
<div>colour by <select id="colour-by"><option value="score">score</option><option value="label">label</option>
</select></div></section>
<section id="export"><h3>Labels</h3>
<div>negative label <input id="negative-label" value="{DEFAULT_NEGATIVE_LABEL}"></div>
<p><button type="button" id="export-labels">export labels.csv (for train)</button>
<button type="button" id="export-hoplite">export hoplite_annotations.csv</button>
<button type="button" id="clear-labels">clear</button></p>
<textarea id="labels-csv" readonly placeholder="labels.csv appears here"></textarea>
<textarea id="hoplite-csv" readonly placeholder="hoplite_annotations.csv appears here"></textarea>
</section>
</header>
<main id="hits">{''.join(_card(h) for h in hits)}</main>
<script type="application/json" id="review-data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_hits_csv(path: Path, hits: Sequence[Hit]) -> Path:
    """``hits.csv``: every field of every hit."""
    fields = list(asdict(hits[0]))
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for h in hits:
            w.writerow(asdict(h))
    return path


def run_review(results: str | Path, output_dir: str | Path, *, top: int | None = DEFAULT_TOP,
               label: str | None = None, audio_root: str | Path | None = None,
               context_s: float = DEFAULT_CONTEXT_S, model: str | None = None, projection: str = "auto",
               device: str = "cpu", quiet: bool = False) -> Path:
    """Write the review page of RESULTS into ``output_dir``; return the page's path.

    Parameters
    ----------
    results : path-like
        Search results, classify tables or BirdNET detections (a file or a folder).
    output_dir : path-like
        Where ``review.html``, ``clips/``, ``images/`` and ``hits.csv`` go.
    top : int, optional
        Hits on the page, best first (default 100; None: all).
    label : str, optional
        Classify/detections: only this label; search: the label of positives (default: the query's stem).
    audio_root : path-like, optional
        Where relative sources are looked for first.
    context_s : float
        Seconds of audio on each side of the window in the player's clip.
    model : str, optional
        The embedding model of the projection (default: the one the results name; BirdNET for detections).
    projection : {"auto", "pca", "umap", "none"}
        ``auto``: UMAP when umap-learn is installed (10 hits or more), else PCA.
    device : str
        Where the projection's model runs.

    Raises
    ------
    ReviewError
    """
    if projection not in PROJECTIONS:
        raise ReviewError(f"--projection {projection!r}: choose from {', '.join(PROJECTIONS)}")
    if not (context_s >= 0 and math.isfinite(context_s)):
        raise ReviewError(f"--context-s {context_s!r}: a number of seconds >= 0 is needed")
    out = Path(output_dir)
    kind, hits, facts = read_hits(results, audio_root=audio_root, label=label, top=top)
    write_clips(hits, out, context_s=context_s)
    svg, note = "", ""
    model = model or facts.get("model")
    if projection != "none" and len(hits) >= 3:
        if not model:
            note = "no projection: the results do not name their model (give --model)"
        else:
            try:
                xy, method = project(hit_embeddings(hits, model, device=device), method=projection)
                svg = projection_svg(xy, hits, method=method)
                note = f"projection: {method.upper()} of {model} embeddings of the {len(hits)} windows"
            except ReviewError:
                raise
            except Exception as exc:  # noqa: BLE001 - the page is still useful without it; say why
                note = f"no projection: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    import hashlib

    page_id = hashlib.sha256(f"{out.resolve()}|{Path(results).resolve()}".encode()).hexdigest()[:16]
    page = out / PAGE
    page.write_text(render_page(hits, kind=kind, results=str(results), projection=svg, note=note,
                                page_id=page_id), encoding="utf-8")
    write_hits_csv(out / "hits.csv", hits)
    if not quiet:
        print(f"review: {len(hits)} {kind} hits -> {page}" + (f" ({note})" if note else ""), file=sys.stderr)
    return page


__all__ = ["ReviewError", "Hit", "read_hits", "result_files", "write_clips", "project", "projection_svg",
           "render_page", "run_review", "PROJECTIONS"]
