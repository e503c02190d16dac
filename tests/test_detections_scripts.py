"""``--detections`` of the scripts (B1, embed.py): the same rows and files as ``perch_runner.py detect``.

``detect`` is checked against BirdNET-Analyzer 2.4 itself (tests/test_detections.py); here the scripts'
hook, which reads each file's logits and window times back from its outputs, must give byte-equal
result files for the same settings. The recording is generated at 48 kHz (BirdNET's rate: no
resampler is involved), 7.5 s long so the last window is padded.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.detections import OPTIONS, RESULT_SUFFIXES
from audio_embeddings.options import declared_stage_options
from audio_embeddings.runner.cli import main as runner_main
from audio_embeddings.scripts import EMBED, PERCH, main
from helpers import require_birdnet_model
from test_perch_runner import RATE, make_clip

require_birdnet_model()

SETTINGS = ["--min-conf", "0.01", "--sensitivity", "1.25", "--overlap", "1.5"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    x = np.concatenate([make_clip("high_tone", 7), make_clip("noise_burst", 8),
                        make_clip("low_tone", 9)[:RATE * 3 // 2]])
    path = root / "audio" / "rec.wav"
    path.parent.mkdir()
    sf.write(str(path), x, RATE, subtype="FLOAT")
    assert runner_main(["detect", *SETTINGS, "--rtype", "table,csv,kaleidoscope", "--quiet", str(path),
                        str(root / "detect")]) == 0
    return path, root / "detect"


@pytest.mark.parametrize("script", [PERCH, EMBED], ids=["B1", "embed"])
def test_script_detections_equal_detect(script, recording, tmp_path):
    path, reference = recording
    out = tmp_path / "out"
    argv = ["--model", "birdnet", "--quiet", "--detections", *SETTINGS, "--rtype", "table,csv,kaleidoscope"]
    assert main(script, [*argv, "--output-dir", str(out), str(path)]) == 0
    for rtype in ("table", "csv", "kaleidoscope"):
        ours = (out / ("rec" + RESULT_SUFFIXES[rtype])).read_text()
        assert ours == (reference / ("rec" + RESULT_SUFFIXES[rtype])).read_text(), rtype
    rows = (out / "rec.BirdNET.results.csv").read_text().splitlines()
    starts = {r.split(",")[0] for r in rows[1:]}
    assert len(rows) > 3 and len(starts) >= 3 and starts <= {"0.0", "1.5", "3.0", "4.5"}  # --overlap 1.5: 2 s apart
    assert np.load(out / "rec_label.npy").shape == (4, 6522)  # --logits turned on; 4 windows, as detect gives


def test_location_filter_gives_the_species_list_of_detect(recording, tmp_path):
    path, _ = recording
    where = ["--lat", "42.5", "--lon", "-76.45", "--week", "20", "--min-conf", "0.0001"]
    assert runner_main(["detect", *where, "--rtype", "csv", "--quiet", str(path), str(tmp_path / "ref")]) == 0
    assert main(PERCH, ["--model", "birdnet", "--quiet", "--detections", *where, "--rtype", "csv",
                        "--output-dir", str(tmp_path / "out"), str(path)]) == 0
    listed = (tmp_path / "out" / "species_list.txt").read_text()
    assert listed == (tmp_path / "ref" / "species_list.txt").read_text() and 50 < len(listed.splitlines()) < 1000
    ours = (tmp_path / "out" / "rec.BirdNET.results.csv").read_text()
    assert ours == (tmp_path / "ref" / "rec.BirdNET.results.csv").read_text()
    names = {line.split(",")[2] + "_" + line.split(",")[3] for line in ours.splitlines()[1:]}
    assert names and names <= set(listed.splitlines())


@pytest.mark.parametrize("argv, message", [
    (["--model", "perch_v2", "--detections"], "--detections: BirdNET models only"),
    (["--model", "birdnet", "--min-conf", "0.5"], "--min-conf: detection options go with --detections"),
    (["--model", "birdnet", "--detections", "--overlap", "1", "--hop-seconds", "3"],
     "--overlap 1 and --hop-seconds 3 disagree"),
])
def test_refusals_are_one_line_before_the_model_loads(argv, message, recording, tmp_path, capsys):
    path, _ = recording
    assert main(PERCH, [*argv, "--quiet", "--output-dir", str(tmp_path / "o"), str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "rec.npy").exists()


def test_declared_once_as_a_shared_stage_without_defaults():
    flags = [o.flag for o in declared_stage_options()]
    for option in OPTIONS:
        assert flags.count(option.flag) == 1 and option.default is None  # no fingerprint entry unless given
    assert [o.matlab_name for o in OPTIONS][:2] == ["Detections", "MinConf"]
