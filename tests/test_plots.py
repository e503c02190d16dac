"""Quick-look pictures (audio_embeddings.plots): PNG size, panels on the file's time axis, layers, labels."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from audio_embeddings.api import EmbeddingResult

pytest.importorskip("matplotlib")

from audio_embeddings.plots import (  # noqa: E402
    EMBEDDINGS_HEIGHT_IN, FIGURE_WIDTH_IN, LABEL_ROW_HEIGHT_IN, TITLE_HEIGHT_IN, WAVEFORM_HEIGHT_IN, plot_result,
    plot_search, plot_similarity, png_path,
)

DPI = 100


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def panels(fig) -> dict[str, object]:
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label() != "colorbar"}


def frames_result(*, n_rows: int, dim: int, stride_s: float, window_s: float, n_samples: int, rate: int = 16000,
                  layers: int | None = None, extras: dict | None = None, seed: int = 0) -> EmbeddingResult:
    rng = np.random.default_rng(seed)
    shape = (n_rows, dim) if layers is None else (layers, n_rows, dim)
    return EmbeddingResult(embeddings=rng.standard_normal(shape).astype(np.float32),
                           time_axis_s=np.arange(n_rows) * stride_s, frame_stride_s=stride_s, window_s=window_s,
                           sample_rate_hz=rate, extras=extras or {}, model_name="tiny", source="clip.wav",
                           n_samples=n_samples)


def test_waveform_over_embeddings_spans_the_recording(tmp_path):
    rate, seconds = 16000, 3.7
    audio = (0.1 * np.random.default_rng(1).standard_normal(int(rate * seconds))).astype(np.float32)
    n_rows = (audio.size - 400) // 320 + 1
    result = frames_result(n_rows=n_rows, dim=24, stride_s=0.02, window_s=0.025, n_samples=audio.size)
    fig = plot_result(result, (audio, rate), path=tmp_path / "clip", dpi=DPI)
    axes = panels(fig)
    assert set(axes) == {"waveform", "embeddings"}
    for ax in axes.values():
        assert ax.get_xlim() == pytest.approx((0.0, seconds))
    height = WAVEFORM_HEIGHT_IN + EMBEDDINGS_HEIGHT_IN + TITLE_HEIGHT_IN + 0.4
    assert png_size(tmp_path / "clip.png") == (round(FIGURE_WIDTH_IN * DPI), round(height * DPI))
    assert axes["embeddings"].get_ylim() == (24, 0)  # every dimension, first on top


def test_without_audio_the_axis_spans_the_result_and_layers_are_stacked(tmp_path):
    result = frames_result(n_rows=200, dim=16, stride_s=0.02, window_s=0.025, n_samples=16000 * 4, layers=5)
    result.backend_fields = {"layers": np.arange(5)[None, :] * 3}
    fig = plot_result(result, path=tmp_path / "layers.png", dpi=DPI)
    axes = panels(fig)
    assert set(axes) == {"embeddings"} and axes["embeddings"].get_xlim() == pytest.approx((0.0, 4.0))
    ticks = [t.get_text() for t in axes["embeddings"].get_yticklabels()]
    assert ticks == ["layer 0", "layer 3", "layer 6", "layer 9", "layer 12"]
    assert axes["embeddings"].get_ylim() == (5 * 16, 0)
    assert png_size(tmp_path / "layers.png")[0] == FIGURE_WIDTH_IN * DPI


def test_window_logits_add_the_top_labels_over_time(tmp_path):
    logits = np.full((4, 30), -5.0, np.float32)
    logits[0, 7] = logits[1, 7] = 3.0  # class 7 wins the first two windows,
    logits[2, 12] = logits[3, 21] = 2.0  # then 12 and 21
    logits[:, 1] = 1.0  # second everywhere
    classes = [f"species_{i}" for i in range(30)]
    result = frames_result(n_rows=4, dim=8, stride_s=5.0, window_s=5.0, n_samples=32000 * 18, rate=32000,
                           extras={"label": logits})
    rate = 32000
    audio = np.zeros(rate * 18, np.float32)
    fig = plot_result(result, (audio, rate), path=tmp_path / "birds", classes=classes, top_k=2, dpi=DPI)
    axes = panels(fig)
    assert set(axes) == {"waveform", "embeddings", "labels"}
    for ax in axes.values():
        assert ax.get_xlim() == pytest.approx((0.0, 18.0))
    shown = [t.get_text() for t in axes["labels"].get_yticklabels()]
    assert shown[0] == "species_7" and set(shown) == {"species_7", "species_1", "species_12", "species_21"}
    height = WAVEFORM_HEIGHT_IN + EMBEDDINGS_HEIGHT_IN + LABEL_ROW_HEIGHT_IN * 4 + 0.6 + TITLE_HEIGHT_IN + 0.4
    assert png_size(tmp_path / "birds.png") == (1000, round(height * DPI))


def test_long_results_are_binned_for_drawing_but_keep_the_time_axis(tmp_path):
    rate = 16000
    n = rate * 7200  # two hours on the 20 ms grid: 360000 rows
    result = frames_result(n_rows=(n - 400) // 320 + 1, dim=8, stride_s=0.02, window_s=0.025, n_samples=n)
    fig = plot_result(result, path=tmp_path / "long", dpi=50)
    assert panels(fig)["embeddings"].get_xlim() == pytest.approx((0.0, 7200.0))
    mesh = panels(fig)["embeddings"].collections[0]
    assert mesh.get_array().size <= 1600 * 8
    assert png_size(tmp_path / "long.png")[0] == FIGURE_WIDTH_IN * 50


def test_an_audio_file_path_gives_the_waveform(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "x.wav", np.zeros((22050 * 2, 2), np.float32), 22050)
    result = frames_result(n_rows=1, dim=4, stride_s=0.0, window_s=2.0, n_samples=32000)
    fig = plot_result(result, tmp_path / "x.wav", path=tmp_path / "utterance", dpi=DPI)
    assert {k: a.get_xlim() for k, a in panels(fig).items()} == {"waveform": pytest.approx((0.0, 2.0)),
                                                                 "embeddings": pytest.approx((0.0, 2.0))}


def test_similarity_matrix(tmp_path):
    rng = np.random.default_rng(2)
    u = rng.standard_normal((4, 16))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    fig = plot_similarity(u @ u.T, ["a", "b", "c", "d"], path=tmp_path / "speakers", dpi=DPI)
    ax = panels(fig)["similarity"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert len(ax.texts) == 16
    width, height = png_size(tmp_path / "speakers.png")
    assert (width, height) == (round((0.35 * 4 + 3 + 1) * DPI), round((0.35 * 4 + 3) * DPI))
    with pytest.raises(ValueError, match="N, N"):
        plot_similarity(np.eye(3), ["a", "b"], path=tmp_path / "bad")


def test_search_curve_spans_the_recording_and_marks_the_best_windows(tmp_path):
    distances = np.array([0.9, 0.2, 0.8, 0.05, 0.7])
    starts = np.arange(5) * 5.0
    fig = plot_search(distances, starts, path=tmp_path / "search", audio=(np.zeros(32000 * 27), 32000), best_k=2,
                      dpi=DPI)
    axes = panels(fig)
    assert set(axes) == {"waveform", "search"}
    for ax in axes.values():
        assert ax.get_xlim() == pytest.approx((0.0, 27.0))
    marked = axes["search"].collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(marked)[:, 0], [15.0 + 2.5, 5.0 + 2.5])
    assert png_size(tmp_path / "search.png")[0] == 1000


def test_png_path_and_a_missing_matplotlib(tmp_path, monkeypatch):
    assert png_path(tmp_path / "a") == tmp_path / "a.png" and png_path(tmp_path / "b.PNG") == tmp_path / "b.PNG"
    assert png_path("x.wav") == Path("x.wav.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_similarity(np.eye(2), ["a", "b"], path=tmp_path / "no")


@pytest.mark.slow
def test_the_plot_flag_writes_a_picture_per_file_and_b4_a_similarity_matrix(tmp_path):
    """``--plot`` on the scripts (declared once in plots.py): ``<base>.png`` beside each file's outputs."""
    import os
    import subprocess
    import sys

    import soundfile as sf

    from conftest import DEMO_CLIPS, PYTHON_DIR, REPO
    from helpers import noise

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        sf.write(clips / f"c{i}.wav", noise(2.0, 8000, seed=i), 8000)
    env = dict(os.environ, AUDIO_EMBEDDINGS_PLUGINS="stub_plugin",
               PYTHONPATH=f"{PYTHON_DIR}{os.pathsep}{REPO / 'tests'}")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "embed.py"), str(clips), "--model", "stub-gain",
                           "--output-dir", str(out), "--plot", "--workers", "0"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for i in range(2):
        png = out / f"c{i}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / f"c{i}.npy").is_file()

    root = tmp_path / "speakers"
    for spk, clip in (("s1", DEMO_CLIPS[0]), ("s2", DEMO_CLIPS[1])):
        (root / "demo" / spk).mkdir(parents=True)
        x, rate = sf.read(clip, dtype="float32")
        sf.write(root / "demo" / spk / "u1.wav", x, rate)
    b4 = subprocess.run([sys.executable, str(PYTHON_DIR / "B4_model_speaker.py"), str(root), "--model", "ge2e",
                         "--output-dir", str(tmp_path / "b4"), "--plot", "--workers", "0"], capture_output=True,
                        text=True, timeout=300)
    assert b4.returncode == 0, b4.stderr
    assert (tmp_path / "b4" / "final_embeddings" / "speaker_similarity.png").read_bytes()[:4] == b"\x89PNG"
