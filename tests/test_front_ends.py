"""Every front end gives the run's guarantees (issue 22: one run under the scripts, the API and perch-runner).

The same corpus (a folder of 16 kHz recordings, a tiny wav2vec2 model) through ``embed.py`` (its
``main`` in this process), :meth:`audio_embeddings.api.Model.embed_files` and ``perch-runner
generate``:

- an input edited after its outputs were made is refused, naming ``--overwrite`` (the API:
  ``overwrite=True``), and the outputs are left as they were; the overwrite redoes it;
- a second run on a folder another run holds is refused, naming the holder;
- a rerun with nothing changed does nothing and succeeds.

The MATLAB wrappers and the staged shell script run ``embed.py`` and the B-scripts (their own
tests: tests/test_matlab.py, tests/test_staged_script.py, tests/test_single_file_reruns.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import noise

FRONT_ENDS = ["embed.py", "api", "perch-runner"]


class FrontEnd:
    """One front end on one corpus: ``run(overwrite=False)`` -> (status, message)."""

    def __init__(self, kind: str, model: Path, corpus: Path, out: Path, capsys):
        self.kind, self.model, self.corpus, self.out, self.capsys = kind, model, corpus, out, capsys

    def run(self, *, overwrite: bool = False) -> tuple[int, str]:
        self.capsys.readouterr()
        if self.kind == "api":
            import audio_embeddings as ae

            try:
                ae.load_model(str(self.model), device="cpu").embed_files(self.corpus, output_dir=self.out,
                                                                         overwrite=overwrite)
            except ValueError as exc:
                return 2, str(exc)
            return 0, ""
        flags = ["--overwrite"] if overwrite else []
        if self.kind == "embed.py":
            from audio_embeddings.scripts import EMBED, main

            argv = [str(self.corpus), "--model", str(self.model), "--device", "cpu", "--output-dir", str(self.out),
                    "--workers", "0", "--quiet", *flags]
            status = main(EMBED, argv)
        else:
            from audio_embeddings.runner.cli import main

            status = main(["generate", "--model", str(self.model), "--device", "cpu", "--workers", "0", "--quiet",
                           *flags, str(self.corpus), str(self.out)])
        return status, self.capsys.readouterr().err

    def embeddings(self, stem: str) -> np.ndarray:
        """The rows written for ``<stem>.wav``."""
        if self.kind == "perch-runner":
            from audio_embeddings.runner import read_embeddings

            return read_embeddings(self.out / f"{stem}.embeddings.csv")[1]
        return np.load(self.out / f"{stem}.npy")


@pytest.fixture
def front_end(request, tiny_model, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        sf.write(corpus / f"rec{i}.wav", noise(2.0, 16000, seed=i), 16000)
    return FrontEnd(request.param, tiny_model("wav2vec2"), corpus, tmp_path / "out", capsys)


@pytest.mark.parametrize("front_end", FRONT_ENDS, indirect=True)
def test_an_edited_input_is_refused_then_redone_with_overwrite(front_end):
    assert front_end.run() == (0, "")
    before = front_end.embeddings("rec1")
    path = front_end.corpus / "rec1.wav"
    stat = path.stat()
    sf.write(path, noise(2.0, 16000, seed=99), 16000)  # same length, same size: another recording
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old time (cp -p, touch -r)

    status, message = front_end.run()
    assert status == 2, message
    assert "rec1" in message and ("--overwrite" in message or "overwrite=True" in message), message
    np.testing.assert_array_equal(front_end.embeddings("rec1"), before)

    assert front_end.run(overwrite=True)[0] == 0
    assert not np.allclose(front_end.embeddings("rec1"), before)
    assert front_end.run() == (0, "")  # nothing changed since: nothing to do


@pytest.mark.parametrize("front_end", FRONT_ENDS, indirect=True)
def test_a_folder_another_run_holds_is_refused(front_end):
    from audio_embeddings.corpus.lock import acquire_run_lock
    from audio_embeddings.corpus.shard import Shard

    front_end.out.mkdir()
    with acquire_run_lock(front_end.out, shard_label=Shard().label):
        status, message = front_end.run()
    assert status == 2 and "in use by another run" in message and f"pid {os.getpid()}" in message, message
    assert not list(front_end.out.glob("rec*")), "a refused run wrote outputs"
    assert front_end.run()[0] == 0  # once the other run has ended


def _signal_self(sig):
    import signal as _signal
    import time

    os.kill(os.getpid(), sig)
    time.sleep(5)  # the handler raises before this ends
    raise AssertionError(f"{_signal.Signals(sig).name} did not stop the run")


@pytest.mark.parametrize("phase", ["loading the model", "after the summary"])
@pytest.mark.parametrize("front_end", ["embed.py", "perch-runner"], indirect=True)
def test_a_signal_in_any_phase_exits_143_with_one_line(front_end, monkeypatch, phase):
    """Issue 27: SIGTERM outside the engine's loop (while the model loads, or once the summary is written)
    exits 143 with one line, leaving no lock behind, and the rerun finishes."""
    import signal

    from audio_embeddings.app import run as app_run
    from audio_embeddings.runner import commands

    if phase == "loading the model":
        target, name = (app_run, "load_backend") if front_end.kind == "embed.py" else (commands, "load_backend")
        monkeypatch.setattr(target, name, lambda *a, **k: _signal_self(signal.SIGTERM))
    else:
        def after_summary(original):
            def wrapped(*args, **kwargs):
                value = original(*args, **kwargs)
                _signal_self(signal.SIGTERM)
                return value
            return wrapped

        if front_end.kind == "embed.py":
            monkeypatch.setattr(app_run, "report_step", after_summary(app_run.report_step))
        else:
            monkeypatch.setattr(commands, "run_engine_session", after_summary(commands.run_engine_session))
    status, message = front_end.run()
    lines = [line for line in message.splitlines() if line.startswith("error:")]
    assert status == 143 and len(lines) == 1 and "SIGTERM" in lines[0], message
    assert not list(front_end.out.rglob("*.lock")), "a stopped run left its lock"
    monkeypatch.undo()
    assert front_end.run()[0] == 0


def test_the_matlab_results_index_names_b3s_corpus_json_and_b4s_final_folder(tiny_metis_model, tmp_path):
    """What the MATLAB wrappers read back (``--matlab-results``): B3's corpus JSON and B4's final folder, from the
    run's config (caught first by the Octave test of B3; checked here without Octave)."""
    from scipy.io import loadmat

    from audio_embeddings.scripts import METIS, SPEAKER, main

    index = tmp_path / "index.mat"
    argv = ["--model", str(tiny_metis_model["model"]), "--codec", str(tiny_metis_model["codec"]), "--stats",
            str(tiny_metis_model["stats"]), "--device", "cpu", "--quiet", "--matlab-results", str(index)]
    sf.write(tmp_path / "a.wav", noise(1.0, 16000, seed=1), 16000)
    assert main(METIS, [str(tmp_path / "a.wav"), "--output-dir", str(tmp_path / "b3"), *argv]) == 0
    written = loadmat(index)
    corpus_json = Path(str(written["corpus_json_file"][0]))
    assert corpus_json.is_file() and corpus_json.parent == tmp_path / "b3", corpus_json

    root = tmp_path / "speakers" / "dataset" / "spk1"
    root.mkdir(parents=True)
    sf.write(root / "u1.wav", noise(1.5, 16000, seed=2), 16000)
    assert main(SPEAKER, [str(tmp_path / "speakers"), "--model", "ge2e", "--device", "cpu", "--quiet",
                          "--output-dir", str(tmp_path / "b4"), "--matlab-results", str(index)]) == 0
    final = Path(str(loadmat(index)["final_dir"][0]))
    assert (final / "embeddings.mat").is_file(), final
