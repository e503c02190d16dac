"""Help that fits the command: ``--help`` shows the shared options and the script's model family's only;
``--help-all`` and ``--model NAME --help`` show the others; an unknown flag names the chosen model's options;
the Python API names its keywords, never the scripts' flags; ``example_usage.py --help`` works."""

from __future__ import annotations

import subprocess
import sys

import pytest

import audio_embeddings as ae
from audio_embeddings import cli, scripts
from audio_embeddings.api import api_wording
from conftest import PYTHON_DIR


@pytest.fixture(autouse=True)
def terminal_80_columns(monkeypatch):
    """argparse wraps at $COLUMNS: line counts are measured at the usual 80."""
    monkeypatch.setenv("COLUMNS", "80")


def help_text(defaults, *argv: str, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        cli.build_parser(defaults).parse_args(list(argv))
    assert done.value.code == 0
    return capsys.readouterr().out


def test_b2_help_is_short_and_shows_only_its_family(capsys):
    text = help_text(scripts.WAV2VEC2, "--help", capsys=capsys)
    assert len(text.splitlines()) < 80
    assert "--layers" in text and "--model" in text and "--output-dir" in text  # its family's and the shared
    for other in ("--hop-seconds", "--codec", "--checkpoint", "--no-trim-silence", "--force_10sec", "--tr"):
        assert other not in text, other
    assert "--help-all" in text and "--model NAME --help" in text


def test_help_all_lists_every_family(capsys):
    text = help_text(scripts.WAV2VEC2, "--help-all", capsys=capsys)
    for flag in ("--layers", "--hop-seconds", "--codec", "--checkpoint", "--no-trim-silence", "--tr", "--workers"):
        assert flag in text, flag


def test_model_help_shows_that_models_options(capsys):
    plain = help_text(scripts.EMBED, "--help", capsys=capsys)
    assert "--layers" not in plain and "--hop-seconds" not in plain  # embed.py: any model, shared options only
    assert "--help-all" in plain and "--model NAME --help" in plain
    whisper = help_text(scripts.EMBED, "--model", "whisper-base", "--help", capsys=capsys)
    assert "--layers" in whisper and "--hop-seconds" not in whisper
    clap = help_text(scripts.EMBED, "--help", "--model=clap-htsat-unfused", capsys=capsys)  # order does not matter
    assert "--hop-seconds" in clap and "--layers" not in clap


def test_every_script_keeps_its_own_flags_in_help(capsys):
    assert "--force_10sec" in help_text(scripts.PERCH, "--help", capsys=capsys)
    assert "--duration_sec" in help_text(scripts.PERCH, "--help", capsys=capsys)  # B1's own spelling (hook)
    metis = help_text(scripts.METIS, "--help", capsys=capsys)
    assert "--codec" in metis and "--stats" in metis and "--output-file" in metis
    speaker = help_text(scripts.SPEAKER, "--help", capsys=capsys)
    assert "--checkpoint" in speaker and "--no-trim-silence" in speaker and "--layers" not in speaker


def test_hidden_flags_are_still_accepted():
    args = cli.build_parser(scripts.WAV2VEC2).parse_args(["x.wav", "--hop-seconds", "2", "--workers", "0",
                                                          "--mat-version", "7.3", "--tr", "2"])
    assert args.hop_s == 2.0 and args.workers == 0 and args.mat_version == "7.3"


def test_an_unknown_flag_names_the_models_options(capsys):
    with pytest.raises(SystemExit) as done:
        cli.build_parser(scripts.WAV2VEC2).parse_args(["x.wav", "--layerz", "all"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --layerz all" in err
    assert "options of model facebook/wav2vec2-large-xlsr-53 (wav2vec2): --layers;" in err
    assert "--hop-seconds" not in err and "--codec" not in err
    with pytest.raises(SystemExit):
        cli.build_parser(scripts.EMBED).parse_args(["x.wav", "--model", "birdnet", "--bogus"])
    err = capsys.readouterr().err
    assert "options of model birdnet: --hop-seconds, --logits, --top-k" in err and "--layers" not in err


@pytest.mark.slow
def test_b2_script_help_is_under_80_lines():
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "B2_model_wav2vec2.py"), "--help"], capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(PYTHON_DIR), "COLUMNS": "80",
                                                       "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) < 80


@pytest.mark.slow
def test_example_usage_help_exits_0():
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "example_usage.py"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: example_usage.py") and "FINAL_DIR" in proc.stdout


# -- the Python API speaks in keywords ------------------------------------------------------------------------


def test_api_errors_name_keywords_not_flags():
    with pytest.raises(ValueError) as refused:
        ae.load_model("ge2e", device="cpu", hop_s=2.0)
    assert "does not take hop_s" in str(refused.value) and "--" not in str(refused.value)
    with pytest.raises(FileNotFoundError) as missing:
        ae.load_model("./no/such/model-folder", device="cpu")
    assert "--model" not in str(missing.value)


def test_api_wording_translates_the_shared_messages():
    assert api_wording("pass the folder with --model PATH, or use an offline model (--model birdnet, --model ge2e)") \
        == "pass the folder with name='PATH', or use an offline model (name='birdnet', name='ge2e')"
    assert api_wording("x is not cached and downloads are off; pass --stats FILE") == \
        "x is not cached and downloads are off; pass stats='FILE'"
    assert api_wording("use --device cpu or --device auto") == "use device='cpu' or device='auto'"
    assert api_wording("not replaced: pass --overwrite to replace them") == "not replaced: pass overwrite=True to replace them"
    assert api_wording("--hop-seconds must be > 0, got -1") == "hop_s must be > 0, got -1"
    assert api_wording("(try --no-trim-silence)") == "(try trim_silence=False)"
    # commands to run in a shell keep their flags
    assert api_wording("hf download a/b --local-dir <folder>; pip install --no-deps x") == \
        "hf download a/b --local-dir <folder>; pip install --no-deps x"


def test_api_model_loading_shows_no_progress_bars_unless_asked(tiny_model, capfd):
    folder = str(tiny_model("wav2vec2"))
    capfd.readouterr()  # the fixture's own writing
    ae.load_model(folder, device="cpu")
    quiet = capfd.readouterr().err
    assert "Loading weights" not in quiet and "it/s" not in quiet
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # transformers' switch and huggingface_hub's, as in a fresh session
    try:
        ae.load_model(folder, device="cpu")
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()  # restored after the load
        ae.load_model(folder, device="cpu", progress=True)
        assert "Loading weights" in capfd.readouterr().err  # transformers' bar
    finally:
        if not was_enabled:
            hf_logging.disable_progress_bar()
