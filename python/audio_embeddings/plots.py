"""Quick-look pictures of results: waveform over embeddings (and top labels), similarity matrices, query search.

Every function writes one PNG with matplotlib's Agg renderer (no display, no pyplot state;
matplotlib is imported only when a function is called: ``pip install matplotlib``) and
returns the :class:`matplotlib.figure.Figure`, whose axes can be inspected. Axes carry a
label: ``"waveform"``, ``"embeddings"``, ``"labels"``, ``"similarity"``, ``"search"`` (and
``"colorbar"``). All time axes are in seconds from the start of the recording.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .backends.base import Option

#: ``--plot`` (MATLAB ``'Plot', true``), declared once: every script writes ``<base>.png`` per file.
OPTIONS = (Option("--plot", "plot", "also write <base>.png per file: the waveform over the embeddings on one time "
                  "axis (and the top labels of window models; B4: the speaker similarity of the run)", type=None,
                  affects="outputs", matlab="Plot"),)

#: Figure width in inches (PNG width = ``FIGURE_WIDTH_IN * dpi`` pixels).
FIGURE_WIDTH_IN = 10.0
WAVEFORM_HEIGHT_IN = 1.6
EMBEDDINGS_HEIGHT_IN = 3.0
LABEL_ROW_HEIGHT_IN = 0.28
TITLE_HEIGHT_IN = 0.5
#: Most labels shown in the label panel.
MAX_LABELS = 12


def png_path(path: str | os.PathLike) -> Path:
    """``<base>.png`` for a base name, or ``path`` itself when it already ends in ``.png``."""
    p = Path(path)
    return p if p.suffix.lower() == ".png" else p.with_name(p.name + ".png")


def _figure(width_in: float, height_in: float, dpi: int) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib (or pip install 'audio-embeddings[plot]')") \
            from None
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike) -> Path:
    from .atomic import atomic_path

    target = png_path(path)
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    return target


def _waveform(audio: Any) -> tuple[np.ndarray, int] | None:
    """Mono float samples and their rate from an Audio, a ``(samples, rate)`` pair, or a file path."""
    if audio is None:
        return None
    if hasattr(audio, "samples") and hasattr(audio, "sample_rate_hz"):
        return np.asarray(audio.samples, dtype=np.float32), int(audio.sample_rate_hz)
    if isinstance(audio, (str, os.PathLike)):
        from .audio import decode, to_mono

        data, rate = decode(audio)
        return to_mono(data, name=str(audio)), int(rate)
    samples, rate = audio
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return samples, int(rate)


def _envelope(samples: np.ndarray, rate: int, *, bins: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, min, max) of the waveform in at most ``bins`` bins (a long file draws as its envelope)."""
    n = samples.shape[0]
    if n <= bins:
        t = np.arange(n) / rate
        return t, samples, samples
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(samples, edges[:-1])
    hi = np.maximum.reduceat(samples, edges[:-1])
    return edges[:-1] / rate, lo, hi


def _row_edges(time_axis_s: np.ndarray, *, stride_s: float, window_s: float, end_s: float) -> np.ndarray:
    """Cell edges [T + 1] of rows starting at ``time_axis_s``: each row fills the time up to the next onset,
    the last one its window (or the stride), within the recording."""
    t = np.asarray(time_axis_s, dtype=np.float64)
    if t.size == 0:
        return np.array([0.0, end_s])
    span = max(stride_s, window_s) if stride_s > 0 else end_s - t[-1]
    last = max(min(t[-1] + span, end_s), t[-1] + 1e-3)
    edges = np.append(t, last)
    if np.any(np.diff(edges) <= 0):  # repeated onsets (one row per utterance and similar): even cells
        edges = np.linspace(t[0], max(last, t[0] + 1e-3), t.size + 1)
    return edges


def _bin_columns(values: np.ndarray, edges: np.ndarray, max_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive rows so at most ``max_columns`` cells are drawn; ``values`` is [T, ...]."""
    n = values.shape[0]
    if n <= max_columns:
        return values, edges
    groups = np.linspace(0, n, max_columns + 1).astype(np.int64)
    sums = np.add.reduceat(values, groups[:-1], axis=0)
    counts = np.diff(groups).reshape((-1,) + (1,) * (values.ndim - 1))
    return sums / counts, edges[groups]


def _bin_rows(values: np.ndarray, max_rows: int) -> np.ndarray:
    """Average neighbouring dimensions of [T, D] so at most ``max_rows`` remain."""
    dim = values.shape[1]
    if dim <= max_rows:
        return values
    groups = np.linspace(0, dim, max_rows + 1).astype(np.int64)
    return np.add.reduceat(values, groups[:-1], axis=1) / np.diff(groups)[None, :]


def _limits(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1.0, 99.0])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def _duration_s(result: Any, wave: tuple[np.ndarray, int] | None) -> float:
    if wave is not None:
        return wave[0].shape[0] / float(wave[1])
    duration = getattr(result, "duration_s", None)
    if duration:
        return float(duration)
    t = np.asarray(result.time_axis_s, dtype=np.float64)
    return float(t[-1] + max(result.window_s, result.frame_stride_s or 0.0)) if t.size else float(result.window_s)


def plot_result(result: Any, audio: Any = None, *, path: str | os.PathLike, title: str | None = None,
                classes: Sequence[str] | None = None, top_k: int = 3, max_columns: int = 1600,
                max_rows: int = 512, dpi: int = 100) -> Any:
    """The waveform over time on top, the embeddings as a heat map below on the same time axis, then the top labels.

    Parameters
    ----------
    result : EmbeddingResult or FileEmbedding
        ``embeddings`` [T, D] or [L, T, D] (layers are stacked from top to bottom, layer by
        layer), ``time_axis_s`` [T] row onsets in seconds, ``frame_stride_s``, ``window_s``;
        a ``label`` extra [T, C] (window models' logits) adds the label panel.
    audio : Audio, (samples, sample_rate_hz) or path-like, optional
        The recording, for the waveform panel (samples [N] or [N, C], any rate). Without it
        the panel is left out and the time axis spans ``result.duration_s``.
    path : path-like
        Base name: writes ``<path>.png`` (or ``path`` itself if it ends in ``.png``).
    title : str, optional
        Default: the model name and the input file name.
    classes : sequence of str, optional
        Names of the ``label`` columns (default: ``result.classes``, else ``class <i>``).
    top_k : int
        The label panel shows the union of every row's ``top_k`` best labels (at most
        :data:`MAX_LABELS`, those with the highest logit anywhere first).
    max_columns, max_rows : int
        Longest time axis and most dimensions drawn: neighbouring rows (frames) and
        dimensions are averaged beyond these.
    dpi : int
        Pixels per inch of the PNG (its width is ``10 * dpi``).

    Returns
    -------
    matplotlib.figure.Figure
        Every panel's x-axis spans ``0 .. duration`` seconds.
    """
    wave = _waveform(audio)
    duration = _duration_s(result, wave)
    emb = np.asarray(result.embeddings, dtype=np.float32)
    stack = emb[None] if emb.ndim == 2 else emb
    n_layers = stack.shape[0]
    logits = result.extras.get("label") if getattr(result, "extras", None) else None
    logits = np.asarray(logits, dtype=np.float32) if logits is not None and np.ndim(logits) == 2 else None
    names = list(classes if classes is not None else (getattr(result, "classes", None) or []))

    shown: list[int] = []
    if logits is not None and logits.shape[0] == stack.shape[1] and logits.shape[0] > 0 and top_k > 0:
        best = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]
        candidates = np.unique(best)
        shown = [int(c) for c in candidates[np.argsort(-logits[:, candidates].max(axis=0), kind="stable")]][:MAX_LABELS]

    heights = ([WAVEFORM_HEIGHT_IN] if wave is not None else []) + [EMBEDDINGS_HEIGHT_IN]
    heights += [LABEL_ROW_HEIGHT_IN * len(shown) + 0.6] if shown else []
    fig = _figure(FIGURE_WIDTH_IN, sum(heights) + TITLE_HEIGHT_IN + 0.4, dpi)
    grid = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=[1.0, 0.015], hspace=0.12,
                            wspace=0.02, left=0.11, right=0.93, bottom=0.4 / fig.get_figheight() + 0.04,
                            top=1.0 - TITLE_HEIGHT_IN / fig.get_figheight())
    fig.suptitle(title or f"{getattr(result, 'model_name', '') or 'embeddings'}: "
                          f"{Path(str(getattr(result, 'source', '') or '<memory>')).name}", fontsize=11)
    axes = []
    row = 0
    if wave is not None:
        ax = fig.add_subplot(grid[row, 0])
        ax.set_label("waveform")
        t, lo, hi = _envelope(*wave)
        ax.fill_between(t, lo, hi, color="0.25", linewidth=0.4, step="post")
        ax.set_ylabel("amplitude")
        axes.append(ax)
        row += 1

    ax = fig.add_subplot(grid[row, 0], sharex=axes[0] if axes else None)
    ax.set_label("embeddings")
    edges = _row_edges(result.time_axis_s, stride_s=float(result.frame_stride_s or 0.0),
                       window_s=float(result.window_s or 0.0), end_s=duration)
    per_layer = max(1, min(stack.shape[2], max_rows // n_layers))
    blocks = []
    for layer in stack:
        values, x_edges = _bin_columns(layer, edges, max_columns)
        blocks.append(_bin_rows(values, per_layer).T)  # [rows, T']
    image = np.concatenate(blocks, axis=0)
    vmin, vmax = _limits(image)
    mesh = ax.pcolormesh(x_edges, np.arange(image.shape[0] + 1), image, cmap="viridis", vmin=vmin, vmax=vmax,
                         shading="flat", rasterized=True)
    ax.set_ylim(image.shape[0], 0)
    rows_per = image.shape[0] // n_layers
    if emb.ndim == 3:
        ids = getattr(result, "layers", None) or list(range(n_layers))
        for k in range(1, n_layers):
            ax.axhline(k * rows_per, color="white", linewidth=0.6)
        step = max(1, n_layers // 12)
        ax.set_yticks([(k + 0.5) * rows_per for k in range(0, n_layers, step)])
        ax.set_yticklabels([f"layer {ids[k]}" for k in range(0, n_layers, step)], fontsize=7)
    else:
        ax.set_ylabel(f"dimension (of {stack.shape[2]})" if rows_per == stack.shape[2]
                      else f"dimension ({stack.shape[2]}, averaged to {rows_per})")
    cax = fig.add_subplot(grid[row, 1])
    cax.set_label("colorbar")
    fig.colorbar(mesh, cax=cax)
    axes.append(ax)
    row += 1

    if shown:
        ax = fig.add_subplot(grid[row, 0], sharex=axes[0])
        ax.set_label("labels")
        values, x_edges = _bin_columns(logits[:, shown], edges, max_columns)
        lo, hi = _limits(values)
        mesh = ax.pcolormesh(x_edges, np.arange(len(shown) + 1), values.T, cmap="magma", vmin=lo, vmax=hi,
                             shading="flat", rasterized=True)
        ax.set_ylim(len(shown), 0)
        ax.set_yticks(np.arange(len(shown)) + 0.5)
        ax.set_yticklabels([names[c] if c < len(names) else f"class {c}" for c in shown], fontsize=7)
        cax = fig.add_subplot(grid[row, 1])
        cax.set_label("colorbar")
        fig.colorbar(mesh, cax=cax, label="logit")
        axes.append(ax)

    for ax in axes:
        ax.set_xlim(0.0, duration)
        if ax is not axes[-1]:
            ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("time (s)")
    _save(fig, path)
    return fig


def plot_similarity(matrix: Any, labels: Sequence[str], *, path: str | os.PathLike, title: str | None = None,
                    vmin: float = -1.0, vmax: float = 1.0, annotate: bool | None = None, dpi: int = 100) -> Any:
    """A similarity matrix as a heat map (B4: cosine similarity between speakers or utterances).

    Parameters
    ----------
    matrix : array-like
        [N, N] similarities (e.g. ``U @ U.T`` of L2-normalised embeddings).
    labels : sequence of str
        N names for the rows and columns.
    path : path-like
        Base name: writes ``<path>.png`` (or ``path`` itself if it ends in ``.png``).
    title : str, optional
    vmin, vmax : float
        Colour limits (cosine: -1 .. 1).
    annotate : bool, optional
        Write each value in its cell (default: when N <= 16).
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ValueError(f"matrix must be [N, N] with N = {len(labels)} labels, got shape {m.shape}")
    n = m.shape[0]
    side = float(np.clip(0.35 * n + 3.0, 4.0, 20.0))
    fig = _figure(side + 1.0, side, dpi)
    ax = fig.add_axes((0.22, 0.2, 0.62, 0.7))
    ax.set_label("similarity")
    image = ax.imshow(m, vmin=vmin, vmax=vmax, cmap="RdBu_r", interpolation="nearest")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticklabels(labels, fontsize=7)
    if annotate if annotate is not None else n <= 16:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(m[i, j]) > 0.6 * max(abs(vmin), abs(vmax)) else "black")
    cax = fig.add_axes((0.86, 0.2, 0.025, 0.7))
    cax.set_label("colorbar")
    fig.colorbar(image, cax=cax)
    ax.set_title(title or "cosine similarity", fontsize=10)
    _save(fig, path)
    return fig


def plot_search(distances: Any, time_axis_s: Any, *, path: str | os.PathLike, audio: Any = None,
                window_s: float | None = None, duration_s: float | None = None, title: str | None = None,
                best_k: int = 5, metric: str = "cosine distance", lower_is_better: bool = True,
                dpi: int = 100) -> Any:
    """A query search over one recording: the distance (or score) of every window to the query over time.

    For perch-runner's ``distance`` tables (one row per window: ``start`` and ``distance``) or
    any per-window score. The ``best_k`` best windows are marked (and shaded on the waveform).

    Parameters
    ----------
    distances : array-like
        [T] distance (or score) per window.
    time_axis_s : array-like
        [T] window starts in seconds.
    path : path-like
        Base name: writes ``<path>.png`` (or ``path`` itself if it ends in ``.png``).
    audio : Audio, (samples, sample_rate_hz) or path-like, optional
        The recording, drawn on top.
    window_s : float, optional
        Window length in seconds (default: the spacing of ``time_axis_s``).
    duration_s : float, optional
        Length of the recording (default: from ``audio``, else the last window's end).
    title : str, optional
    best_k : int
        Windows marked.
    metric : str
        The y-axis label.
    lower_is_better : bool
        True for distances, False for similarities and classifier scores.
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
        Every panel's x-axis spans ``0 .. duration`` seconds.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    t = np.asarray(time_axis_s, dtype=np.float64).ravel()
    if d.shape != t.shape:
        raise ValueError(f"distances {d.shape} and time_axis_s {t.shape} must have the same length")
    wave = _waveform(audio)
    width = float(window_s) if window_s else (float(np.median(np.diff(t))) if t.size > 1 else 1.0)
    duration = float(duration_s) if duration_s else (
        wave[0].shape[0] / float(wave[1]) if wave is not None else float(t[-1] + width) if t.size else width)
    order = np.argsort(d if lower_is_better else -d, kind="stable")[:max(0, best_k)]
    heights = ([WAVEFORM_HEIGHT_IN] if wave is not None else []) + [2.4]
    fig = _figure(FIGURE_WIDTH_IN, sum(heights) + TITLE_HEIGHT_IN + 0.4, dpi)
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.12, left=0.11, right=0.93,
                            bottom=0.4 / fig.get_figheight() + 0.04, top=1.0 - TITLE_HEIGHT_IN / fig.get_figheight())
    fig.suptitle(title or "query search", fontsize=11)
    axes = []
    if wave is not None:
        ax = fig.add_subplot(grid[0, 0])
        ax.set_label("waveform")
        tt, lo, hi = _envelope(*wave)
        ax.fill_between(tt, lo, hi, color="0.25", linewidth=0.4, step="post")
        for k in order:
            ax.axvspan(t[k], t[k] + width, color="tab:orange", alpha=0.3, linewidth=0)
        ax.set_ylabel("amplitude")
        ax.tick_params(labelbottom=False)
        axes.append(ax)
    ax = fig.add_subplot(grid[len(axes), 0], sharex=axes[0] if axes else None)
    ax.set_label("search")
    if t.size:
        ax.step(np.append(t, t[-1] + width), np.append(d, d[-1]), where="post", color="tab:blue", linewidth=1.0)
        ax.scatter(t[order] + width / 2, d[order], color="tab:orange", zorder=3, s=18,
                   label=f"best {len(order)}")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_ylabel(metric)
    ax.set_xlabel("time (s)")
    axes.append(ax)
    for a in axes:
        a.set_xlim(0.0, duration)
    _save(fig, path)
    return fig


__all__ = ["plot_result", "plot_similarity", "plot_search", "png_path"]
