"""perch-runner ``review``: the static labelling page, its exports, and the search -> review -> train -> classify loop.

The browser test drives the page in headless Chromium (Debian's ``chromium`` + ``chromium-driver``)
through Selenium, from ``file://``: it labels three hits, exports ``labels.csv``, trains a classifier
on it with ``train`` and checks that ``classify`` ranks the labelled positives first.
Corpus: two synthetic 12 s recordings (BirdNET's 3 s windows): two windows of high tones among low
tones and noise bursts; the query is another high tone.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.runner.cli import main
from audio_embeddings.runner.review import ReviewError, project, read_hits, render_page, run_review
from helpers import require_birdnet_model
from test_perch_runner import BIRDNET, RATE, make_clip

require_birdnet_model()

#: (recording, window labels): the two high-tone windows are the targets.
CORPUS = {"site1/rec0.wav": ("low_tone", "high_tone", "noise_burst", "low_tone"),
          "site2/rec1.wav": ("noise_burst", "low_tone", "high_tone", "low_tone")}


def run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """The corpus, the query and ``search`` results (top 6) in OUT/search."""
    root = tmp_path_factory.mktemp("loop")
    for n, (name, labels) in enumerate(CORPUS.items()):
        path = root / "corpus" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.concatenate([make_clip(l, 50 * n + i) for i, l in enumerate(labels)]), RATE,
                 subtype="FLOAT")
    sf.write(str(root / "query.wav"), make_clip("high_tone", 999), RATE, subtype="FLOAT")
    assert run("search", *BIRDNET, "--top-k", 6, root / "query.wav", root / "corpus", root / "search") == 0
    return root


def truth(source: str, start_s: float) -> str:
    return CORPUS[source][int(round(start_s / 3.0))]


def test_hits_resolve_their_audio_and_clips_hold_the_window(searched, tmp_path):
    kind, hits, facts = read_hits(searched / "search", top=None)
    assert kind == "search" and facts["model"] == "birdnet" and len(hits) == 6
    assert [h.rank for h in hits] == list(range(1, 7)) and all(Path(h.path).is_file() for h in hits)
    assert sorted(truth(h.source, h.start_s) for h in hits[:2]) == ["high_tone", "high_tone"]
    assert [h.score for h in hits] == sorted(h.score for h in hits)  # distances, nearest first
    page = run_review(searched / "search" / "search_results.csv", tmp_path / "page", top=4, quiet=True,
                      projection="pca")
    text = page.read_text()
    assert text.count('class="hit"') == 4 and 'data-method="pca"' in text and text.count("<circle") == 4
    for h in read_hits(searched / "search", top=4)[1]:
        clip, rate = sf.read(tmp_path / "page" / "clips" / f"hit_{h.rank:04d}.window.wav", dtype="float32")
        source, _ = sf.read(h.path, dtype="float32", start=int(h.start_s * RATE), stop=int(h.end_s * RATE))
        np.testing.assert_array_equal(clip, source)  # the window itself, float32: what train embeds
        with sf.SoundFile(tmp_path / "page" / "clips" / f"hit_{h.rank:04d}.wav") as f:  # the window + 1 s each side
            assert f.samplerate == RATE and f.subtype == "PCM_16"
            assert f.frames / RATE == pytest.approx(min(h.end_s + 1, 12.0) - max(h.start_s - 1, 0.0))
        assert (tmp_path / "page" / "images" / f"hit_{h.rank:04d}.png").stat().st_size > 1000


def test_missing_audio_and_unknown_results_are_review_errors(searched, tmp_path, capsys):
    moved = tmp_path / "results"
    moved.mkdir()
    (moved / "search_results.csv").write_text("rank,query,source,start,end,distance\n1,q#0,gone.wav,0.0,3.0,0.1\n")
    with pytest.raises(ReviewError, match="gone.wav: audio not found"):
        read_hits(moved)
    assert run("review", tmp_path / "nothing_here", tmp_path / "out") == 2
    assert "no such file or folder" in capsys.readouterr().err
    # found under --audio-root
    (moved / "search_results.csv").write_text("rank,query,source,start,end,distance\n"
                                             "1,q#0,site1/rec0.wav,3.0,6.0,0.1\n")
    _, hits, _ = read_hits(moved, audio_root=searched / "corpus")
    assert hits[0].path == str((searched / "corpus" / "site1" / "rec0.wav").resolve())


def test_detections_as_csv_and_raven_tables_give_the_same_hits(searched, tmp_path):
    from audio_embeddings.detections import Detection, DetectionSettings, write_results

    rec = searched / "corpus" / "site1" / "rec0.wav"
    rows = [Detection("0.0", "3.0", "Turdus merula_Eurasian Blackbird", 0.41),
            Detection("3.0", "6.0", "Turdus merula_Eurasian Blackbird", 0.93),
            Detection("3.0", "6.0", "Erithacus rubecula_European Robin", 0.55)]
    for rtype in ("csv", "table"):
        folder = tmp_path / rtype
        write_results(rows, {rtype: folder / ("rec0" + {"csv": ".BirdNET.results.csv",
                                                       "table": ".BirdNET.selection.table.txt"}[rtype])},
                      audio_path=str(rec), native_rate_hz=RATE, settings=DetectionSettings())
        kind, hits, facts = read_hits(folder)
        assert kind == "detections" and facts["model"] == "birdnet"
        assert [(h.start_s, h.score) for h in hits] == [(3.0, 0.93), (3.0, 0.55), (0.0, 0.41)]
        assert hits[0].path == str(rec.resolve()) and hits[0].score_name == "confidence"
        blackbird = read_hits(folder, label="Eurasian Blackbird")[1]
        assert [h.score for h in blackbird] == [0.93, 0.41]
    assert [h.label for h in read_hits(tmp_path / "csv")[1]][:2] == ["Turdus merula_Eurasian Blackbird",
                                                                      "Erithacus rubecula_European Robin"]
    empty = tmp_path / "empty"  # BirdNET-Analyzer's nocall row of a file without detections is no hit
    write_results([], {"table": empty / "rec0.BirdNET.selection.table.txt"}, audio_path=str(rec),
                  native_rate_hz=RATE, settings=DetectionSettings())
    with pytest.raises(ReviewError, match="no rows to review"):
        read_hits(empty)


def test_pca_projection_is_the_first_two_principal_components():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)) * np.array([10.0, 3.0, 1.0, 0.5, 0.1, 0.1])
    xy, method = project(x, method="pca")
    assert method == "pca" and xy.shape == (40, 2)
    from sklearn.decomposition import PCA

    ref = PCA(n_components=2).fit_transform(x)
    np.testing.assert_allclose(np.abs(xy), np.abs(ref), atol=1e-9)  # up to each component's sign


def test_page_data_cannot_close_its_script_tag():
    from audio_embeddings.runner.review import Hit

    hit = Hit(1, "</script><b>x.wav", "/a.wav", 0.0, 3.0, 0.5, "score", "</script>", clip="c.wav", window="/w.wav")
    text = render_page([hit], kind="classify", results="r.csv")
    assert text.count("</script>") == 2  # the two script elements' own ends only


# -- the browser -------------------------------------------------------------------------------


def _browser(download_dir: Path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver (apt-get install -y "
                    "chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.mark.slow
def test_browser_labels_export_train_and_classify_ranks_the_positives_first(searched, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert run("review", "--quiet", searched / "search", tmp_path / "review") == 0
    _, hits, _ = read_hits(searched / "search", top=None)
    positives = [h for h in hits if truth(h.source, h.start_s) == "high_tone"]
    negative = next(h for h in hits if truth(h.source, h.start_s) == "low_tone")
    assert len(positives) == 2
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _browser(downloads)
    try:
        browser.get((tmp_path / "review" / "review.html").resolve().as_uri())
        WebDriverWait(browser, 20).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "div.hit")) == len(hits)
        images = browser.find_elements(By.CSS_SELECTOR, "div.hit img")
        browser.execute_script("arguments[0].scrollIntoView()", images[-1])
        WebDriverWait(browser, 10).until(lambda b: all(b.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images))
        audio = browser.find_element(By.CSS_SELECTOR, "#hit-1 audio")
        assert browser.execute_script("return arguments[0].canPlayType('audio/wav')", audio)

        def mark(hit, value):
            browser.find_element(By.CSS_SELECTOR, f'#hit-{hit.rank} .mark[data-value="{value}"]').click()

        mark(positives[0], "positive")
        mark(positives[1], "positive")
        mark(negative, "negative")
        assert browser.find_element(By.ID, "count").text == "3"
        assert "positive" in browser.find_element(By.ID, f"hit-{positives[0].rank}").get_attribute("class")
        browser.find_element(By.ID, "export-labels").click()
        text = browser.find_element(By.ID, "labels-csv").get_attribute("value")
        browser.find_element(By.ID, "export-hoplite").click()
        hoplite = browser.find_element(By.ID, "hoplite-csv").get_attribute("value")
        deadline = time.monotonic() + 15
        while not (downloads / "labels.csv").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        browser.quit()
    assert (downloads / "labels.csv").read_text() == text  # the download is the text shown
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted((r["label"], r["source"], float(r["start_s"])) for r in rows) == sorted(
        [("query", h.source, h.start_s) for h in positives] + [("negative", negative.source, negative.start_s)])
    annotations = list(csv.DictReader(io.StringIO(hoplite)))
    assert list(annotations[0]) == ["recording", "label", "start_offset_s", "end_offset_s", "label_type"]
    assert sorted(a["label_type"] for a in annotations) == ["negative", "positive", "positive"]

    # the exported CSV, as downloaded, trains a classifier; classify ranks the labelled positives first
    config = tmp_path / "train.yml"
    config.write_text("training:\n  holdout_fraction: 0\n")
    assert run("train", "-c", config, *BIRDNET, downloads / "labels.csv", tmp_path / "model") == 0
    meta = json.loads((tmp_path / "model" / "linear_classifier.metadata.json").read_text())
    assert meta["classifier"]["classes"] == ["negative", "query"] and meta["data"]["clips"] == 3
    classify = tmp_path / "classify.yml"
    model = tmp_path / "model" / "linear_classifier.json"
    classify.write_text(f"classifiers:\n  - name: reviewed\n    tags: []\n    model: {model}\n")
    assert run("classify", "-c", classify, *BIRDNET, searched / "corpus", tmp_path / "classified") == 0
    scored = []
    for table in sorted((tmp_path / "classified").rglob("*.classifications.csv")):
        for r in csv.DictReader(table.open()):
            if r["label"] == "query":
                scored.append((float(r["score"]), r["source"], float(r["start"])))
    assert len(scored) == sum(len(v) for v in CORPUS.values())
    ranked = [(src, start) for _, src, start in sorted(scored, reverse=True)]
    assert sorted(ranked[:2]) == sorted((h.source, h.start_s) for h in positives)

    # the classify tables review too: best scores first, the label's rows only, their audio found
    kind, again, _ = read_hits(tmp_path / "classified", label="query", audio_root=searched / "corpus", top=None)
    assert kind == "classify" and len(again) == len(scored)
    assert [h.score for h in again] == sorted((h.score for h in again), reverse=True)
    assert sorted((h.source, h.start_s) for h in again[:2]) == sorted((h.source, h.start_s) for h in positives)
