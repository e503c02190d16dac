"""The MATLAB wrappers (matlab/*.m) run under GNU Octave, checked against what Python itself writes.

One module-scoped fixture starts every Octave test function (tests/matlab/*.m) and the Python
reference runs at once (model loading dominates, so they overlap), then each test checks one of
them. Octave's half of each check is in the .m file (shapes, classes, time axes); this side
compares the values Octave saved with the .npy files and error lines Python produced.

Without ``octave-cli`` on PATH the module is skipped, unless ``REQUIRE_OCTAVE=1``, which makes
it fail instead. The MATLAB-only path (pyenv + pyrunfile) cannot run here; its Python half,
matlab/private/ae_bridge.py, is exercised directly at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:  # tiny_models lives next to this file
    sys.path.insert(0, str(REPO / "tests"))

from helpers import noise  # noqa: E402
import tiny_metis  # noqa: E402
from tiny_models import build_tiny_model  # noqa: E402

OCTAVE = shutil.which("octave-cli")
CLIP = REPO / "data" / "speech_en_us.wav"
DEMO_CLIPS = sorted((REPO / "data").glob("*.wav"))
BRIDGE = REPO / "matlab" / "private" / "ae_bridge.py"
TIMEOUT_S = 600  # nine Octave and Python runs share the cores
BAD_MODEL = "no-such-model-preset"  # must match tests/matlab/test_matlab_errors.m


def _octave() -> str:
    if OCTAVE:
        return OCTAVE
    if os.environ.get("REQUIRE_OCTAVE") == "1":
        pytest.fail("REQUIRE_OCTAVE=1 but octave-cli is not on PATH", pytrace=False)
    pytest.skip("octave-cli not installed")


def _mstr(value) -> str:
    """A MATLAB/Octave single-quoted char literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _octave_call(function: str, *args) -> list[str]:
    code = (f"addpath({_mstr(REPO / 'matlab')}); addpath({_mstr(REPO / 'tests' / 'matlab')}); "
            f"{function}({', '.join(_mstr(a) for a in args)})")
    return [_octave(), "--no-history", "--eval", code]


def _error_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random wav2vec2 model folder (hidden size 32, 3 layers), with a space in its path."""
    return build_tiny_model("wav2vec2", tmp_path_factory.mktemp("model") / "tiny model")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """Start all Octave tests and Python reference runs together; return their outcomes and paths."""
    _octave()
    base = tmp_path_factory.mktemp("matlab")  # paths with spaces below, on purpose
    model = tiny_model
    p = {
        "model": model,
        "b2_out": base / "b2 out",
        "err_dir": base / "errors",
        "ref": base / "ref",
        "tmp_ae": base / "tmp ae",
        "tmp_err": base / "tmp err",
    }
    for key in ("b2_out", "err_dir", "tmp_ae", "tmp_err"):
        p[key].mkdir()
    p["b2_result"] = p["b2_out"] / "octave_b2_results.mat"
    p["b1_out"] = base / "b1 out"
    p["b1_result"] = base / "octave_b1_results.mat"
    p["b1_clip"] = base / "clip 12.5s.wav"
    sf.write(p["b1_clip"], noise(12.5, 44100, seed=7), 44100)
    p["ae_result"] = base / "octave_ae_results.mat"
    p["err_result"] = p["err_dir"] / "octave_error_results.mat"
    p["missing"] = p["err_dir"] / "no such clip.wav"  # as test_matlab_errors.m builds it

    env = {**os.environ, "AUDIO_EMBEDDINGS_PYTHON": sys.executable}
    env.setdefault("OMP_NUM_THREADS", "1")  # several runs share the cores
    py, embed, b2 = sys.executable, str(REPO / "python" / "embed.py"), str(REPO / "python" / "B2_model_wav2vec2.py")
    jobs = {
        "octave_b2": (_octave_call("test_B2_model_wav2vec2", model, p["b2_out"], p["b2_result"], CLIP), {}),
        "octave_ae": (_octave_call("test_audioEmbeddings", model, p["ae_result"], CLIP), {"TMPDIR": str(p["tmp_ae"])}),
        "octave_err": (_octave_call("test_matlab_errors", model, p["err_result"]), {"TMPDIR": str(p["tmp_err"])}),
        "ref_ge2e": ([py, embed, str(CLIP), "--model", "ge2e", "--output-dir", str(p["ref"]),
                      "--basename", "ref_ge2e"], {}),
        "ref_w2v": ([py, embed, str(CLIP), "--model", str(model), "--output-dir", str(p["ref"]),
                     "--basename", "ref_w2v", "--device", "cpu"], {}),
        "ref_missing": ([py, b2, str(p["missing"]), "--model", str(model), "--output-dir", str(p["err_dir"]),
                         "--basename", "never"], {}),
        "ref_bad_model": ([py, embed, str(CLIP), "--model", BAD_MODEL, "--output-dir", str(p["err_dir"])], {}),
    }
    p["metis"] = base / "metis model"
    tiny_metis.build(p["metis"])
    p["b3_out"] = base / "b3 out"
    p["b3_result"] = base / "octave_b3_results.mat"
    jobs["octave_b3"] = (_octave_call("test_B3_model_metis", p["metis"], p["b3_out"], p["b3_result"], CLIP), {})
    p["b4_root"] = base / "speaker root"
    for clip in DEMO_CLIPS[:2]:
        x, rate = sf.read(clip, dtype="float32")
        for i, part in enumerate((x[:len(x) // 2], x[len(x) // 2:]), 1):
            (p["b4_root"] / "demo" / clip.stem).mkdir(parents=True, exist_ok=True)
            sf.write(p["b4_root"] / "demo" / clip.stem / f"utt{i}.wav", part, rate)
    p["b4_out"] = base / "b4 out"
    p["b4_result"] = base / "octave_b4_results.mat"
    jobs["octave_b4"] = (_octave_call("test_B4_model_speaker", p["b4_root"], p["b4_out"], p["b4_result"]), {})
    import tiny_hf

    p["many"] = base / "many files"
    x, rate = sf.read(CLIP, dtype="float32")
    for rel, part in (("clips/a.wav", x[:len(x) // 2]), ("clips/b.wav", x[len(x) // 2:]), ("corpus/c1.wav", x),
                      ("corpus/sub/c2.wav", x[:len(x) // 3]), ("corpus/c3.wav", x[len(x) // 3:]),
                      ("speakers/demo/s1/u1.wav", x[:len(x) // 2]), ("speakers/demo/s1/u2.wav", x[len(x) // 2:]),
                      ("speakers/demo/s2/u1.wav", x[::-1].copy())):
        (p["many"] / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(p["many"] / rel, part, rate)
    (p["many"] / "corpus" / "empty.wav").write_bytes(b"")
    (p["many"] / "speakers" / "demo" / "s2" / "bad.wav").write_bytes(b"")
    counting = p["many"] / "counting python.sh"  # logs each Python start of the wrappers, then runs Python
    counting.write_text(f'#!/bin/sh\necho start >> "$AE_TEST_CALL_LOG"\nexec "{sys.executable}" "$@"\n')
    counting.chmod(0o755)
    p["many_result"] = base / "octave_many_results.mat"
    jobs["octave_many"] = (_octave_call("test_many_files", model, p["many"], p["many_result"]),
                           {"AUDIO_EMBEDDINGS_PYTHON": str(counting), "AE_TEST_CALL_LOG": str(p["many"] / "other.log")})

    p["bundle_in"], p["bundle_out"] = base / "bundle in", base / "bundle out"
    p["bundle_in"].mkdir()
    for i, part in enumerate((x[:len(x) // 2], x[len(x) // 2:], x[:len(x) // 3])):
        sf.write(p["bundle_in"] / f"run{i + 1}.wav", part, rate)
    p["bundle_result"] = base / "octave_bundle_results.mat"
    jobs["octave_bundle"] = (_octave_call("test_bundle", model, p["bundle_in"], p["bundle_out"], p["bundle_result"],
                                          CLIP), {})
    p["whisper"] = tiny_hf.build("whisper", base / "whisper model")
    p["options_result"] = base / "octave_options_results.mat"
    jobs["octave_options"] = (_octave_call("test_model_options", p["whisper"], model, p["options_result"], CLIP),
                              {"AUDIO_EMBEDDINGS_PLUGINS": "stub_plugin",
                               "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])})
    if importlib.util.find_spec("tensorflow") is not None:  # B1 needs a (tiny) Perch SavedModel
        import tiny_perch

        p["perch"] = tiny_perch.build_savedmodel(base / "perch model")
        jobs["octave_b1"] = (_octave_call("test_B1_model_perch", p["perch"], p["b1_out"], p["b1_result"],
                                          p["b1_clip"]), {})
    procs = {name: subprocess.Popen(cmd, cwd=base, env={**env, **extra}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, (cmd, extra) in jobs.items()}
    done = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            done[name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return {"paths": p, **done}


def _assert_ok(runs, name):
    code, out, err = runs[name]
    assert code == 0, f"{name} exited with {code}\n--- stdout\n{out}\n--- stderr\n{err}"


def test_options_declared_only_in_python_reach_the_wrappers(runs):
    """A plugin's option, the alignment options and a Whisper folder, from Octave, with no .m file naming them."""
    _assert_ok(runs, "octave_options")
    got = scipy.io.loadmat(runs["paths"]["options_result"])
    np.testing.assert_allclose(got["stub_3"], 3 * got["stub_1"], rtol=1e-6)
    out = runs["paths"]["options_result"].parent / "b2 aligned"
    np.testing.assert_array_equal(got["emb_aligned"], np.load(out / "aligned_aligned.npy"))
    assert got["emb_whisper"].shape[1] == 32  # the tiny Whisper's d_model


def test_bundle_comes_back_as_a_struct_of_bands(runs):
    """'Bundle', 'PCA', 'ZScore' on B2 over a folder and on audioEmbeddings: INFO.bundle is the bundle file."""
    from audio_embeddings.features import FeatureBundle

    _assert_ok(runs, "octave_bundle")
    got = scipy.io.loadmat(runs["paths"]["bundle_result"], squeeze_me=True)
    bundle = FeatureBundle.load(runs["paths"]["bundle_out"] / "features.mat")
    assert [str(n) for n in got["band_names"]] == list(bundle.bands)
    np.testing.assert_array_equal(got["run_ids"], bundle.run_ids + 1)
    np.testing.assert_array_equal(got["band0"], bundle.bands["layer0"])
    assert bundle.run_names == ("run1.wav", "run2.wav", "run3.wav") and bundle.info["pca"] == 2
    assert str(got["one_name"]) == "tiny_model"  # one band named after the model folder ("tiny model")


def test_many_files_come_from_one_python_call_and_bad_files_are_reported(runs):
    """B2 over a list and a folder: one Python start each; B4 and the folder return the good files and warn."""
    _assert_ok(runs, "octave_many")
    many = runs["paths"]["many"]
    assert (many / "calls_list.log").read_text().splitlines() == ["start"]
    assert (many / "calls_folder.log").read_text().splitlines() == ["start"]
    got = scipy.io.loadmat(runs["paths"]["many_result"])
    assert int(got["n_list"].item()) == 2 and int(got["n_folder"].item()) == 4
    assert "empty" in str(got["folder_failure"][0])
    np.testing.assert_array_equal(np.load(many / "out list" / "a.npy").shape[1], 32)


def test_b1_wrapper_writes_fragments_equal_to_its_rows(runs):
    if "octave_b1" not in runs:
        pytest.skip("tensorflow is not installed")
    _assert_ok(runs, "octave_b1")
    got = scipy.io.loadmat(runs["paths"]["b1_result"])
    out = runs["paths"]["b1_out"]
    np.testing.assert_array_equal(got["emb"], np.load(out / "clip 12.5s.npy"))
    assert got["emb10"].shape == (2, 1536)


def test_b3_wrapper_returns_the_latents_codes_and_corpus_json(runs):
    _assert_ok(runs, "octave_b3")
    got = scipy.io.loadmat(runs["paths"]["b3_result"])
    out = runs["paths"]["b3_out"]
    np.testing.assert_array_equal(got["emb"], np.load(out / "metis_latents.npy"))
    np.testing.assert_array_equal(got["codes"][:, 0], np.load(out / "metis_latents_codes.npy"))
    assert got["emb5"].shape == got["emb"].shape


def test_b4_wrapper_returns_utterance_and_speaker_matrices(runs):
    _assert_ok(runs, "octave_b4")
    got = scipy.io.loadmat(runs["paths"]["b4_result"])
    final = runs["paths"]["b4_out"] / "final_embeddings"
    np.testing.assert_array_equal(got["emb"], np.load(final / "utterance_embeddings.npy"))
    np.testing.assert_array_equal(got["speaker_embeddings"], np.load(final / "speaker_embeddings.npy"))
    ids = [u["id"] for u in json.loads((final / "utterance_list.json").read_text())]
    assert [c[0] for c in got["utterance_ids"].ravel()] == ids


def test_b2_wrapper_matches_python_outputs(runs):
    _assert_ok(runs, "octave_b2")
    p = runs["paths"]
    got = scipy.io.loadmat(p["b2_result"])
    out = p["b2_out"]
    meta = json.loads((out / "b2_last.json").read_text())
    n16k = meta["num_samples"]
    T = (n16k - 400) // 320 + 1
    assert int(got["n16k_json"].item()) == n16k

    emb = got["emb"]
    assert emb.dtype == np.float32 and emb.shape == (T, 32)
    np.testing.assert_array_equal(emb, np.load(out / "b2_last.npy"))
    np.testing.assert_array_equal(got["time_axis"], scipy.io.loadmat(out / "b2_last.mat")["time_axis"])
    np.testing.assert_allclose(got["time_axis"].ravel(), meta["time_axis_seconds"]["seconds"], rtol=0, atol=1e-9)
    assert got["time_axis"].shape == (T, 1)
    assert got["frame_stride"].item() == pytest.approx(0.02)
    assert got["sample_rate"].item() == 16000
    assert str(got["model_name"][0]) == meta["model_name"]
    assert Path(str(got["npy_file"][0])) == out / "b2_last.npy"

    emb_all = got["emb_all"]
    assert emb_all.dtype == np.float32 and emb_all.shape == (4, T, 32)
    np.testing.assert_array_equal(emb_all, np.load(out / "b2_all.npy"))
    np.testing.assert_array_equal(got["layers_all"].ravel(), [0, 1, 2, 3])

    assert got["emb_sel"].shape == (2, T, 32)
    np.testing.assert_array_equal(got["emb_sel"], np.load(out / "b2_sel.npy"))
    np.testing.assert_array_equal(got["layers_sel"].ravel(), [1, 3])
    sel_meta = json.loads((out / "b2_sel.json").read_text())
    assert sel_meta["chunking"]["chunk_seconds"] == 3 and sel_meta["chunking"]["context_seconds"] == 1
    cmd = sel_meta["command_line"]  # model options go to Python as MATLAB name-value pairs, checked there
    assert cmd[cmd.index("Layers") - 1:cmd.index("Layers") + 2] == ["--matlab-option", "Layers", "1,3"]


def test_audio_embeddings_in_memory_matches_python_on_the_file(runs):
    _assert_ok(runs, "octave_ae")
    _assert_ok(runs, "ref_ge2e")
    _assert_ok(runs, "ref_w2v")
    p = runs["paths"]
    got = scipy.io.loadmat(p["ae_result"])
    ref = p["ref"]

    ref_ge2e = np.load(ref / "ref_ge2e.npy")
    assert got["emb_ge2e"].dtype == np.float32 and got["emb_ge2e"].shape == ref_ge2e.shape
    np.testing.assert_allclose(got["emb_ge2e"], ref_ge2e, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["utt_ge2e"].ravel(), np.load(ref / "ref_ge2e_utterance_embedding.npy").ravel(),
                               rtol=0, atol=1e-5)
    ref_ge2e_t = scipy.io.loadmat(ref / "ref_ge2e.mat")["time_axis"]
    np.testing.assert_allclose(got["t_ge2e"], ref_ge2e_t, rtol=0, atol=1e-12)

    ref_w2v = np.load(ref / "ref_w2v.npy")
    assert got["emb_w2v"].dtype == np.float32 and got["emb_w2v"].shape == ref_w2v.shape
    # Octave passed the samples as single, Python read the file as double: float32 rounding only
    np.testing.assert_allclose(got["emb_w2v"], ref_w2v, rtol=0, atol=1e-5 * np.abs(ref_w2v).max())
    np.testing.assert_allclose(got["t_w2v"].ravel(), np.arange(ref_w2v.shape[0]) * 0.02, rtol=0, atol=1e-9)

    assert list(p["tmp_ae"].iterdir()) == [], "audioEmbeddings left temporaries behind"


def test_python_failures_raise_with_pythons_message(runs):
    _assert_ok(runs, "octave_err")
    p = runs["paths"]
    got = scipy.io.loadmat(p["err_result"])
    for ref_name, var in (("ref_missing", "msg_missing_file"), ("ref_bad_model", "msg_bad_model")):
        code, _, err = runs[ref_name]
        assert code != 0
        lines = _error_lines(err)
        assert lines, f"{ref_name}: Python printed no error line:\n{err}"
        message = str(got[var][0])
        for line in lines:
            assert line in message, f"{line!r} not in the Octave error {message!r}"
    assert list(p["tmp_err"].iterdir()) == [], "a failed audioEmbeddings call left temporaries behind"


# ---------------------------------------------------------------------------
# matlab/private/ae_bridge.py: the Python half of the MATLAB pyrunfile path, run the way
# pyrunfile runs it (a fresh namespace holding `script` and `argv`, outputs read back).
# ---------------------------------------------------------------------------


def _bridge(script: str, argv) -> tuple[int, str, str]:
    saved = list(sys.argv), list(sys.path)
    ns = runpy.run_path(str(BRIDGE), init_globals={"script": str(REPO / "python" / script), "argv": argv})
    assert (list(sys.argv), list(sys.path)) == saved, "the bridge must restore sys.argv and sys.path"
    return ns["status"], ns["out_text"], ns["err_text"]


def test_bridge_reports_exit_status_and_error_lines(tmp_path):
    missing = tmp_path / "missing clip.wav"
    status, out, err = _bridge("B2_model_wav2vec2.py", json.dumps([str(missing), "--output-dir", str(tmp_path)]))
    assert status == 1 and out == ""
    assert _error_lines(err) == [f"error: {missing}: file not found"]

    status, _, err = _bridge("embed.py", (str(CLIP), "--device", "tpu"))  # argparse: SystemExit(2)
    assert status == 2 and "error: argument --device" in err

    status, _, err = _bridge("no_such_script.py", "[]")
    assert status == 1 and "error: " in err


def test_bridge_runs_a_script_to_completion(tiny_model, tmp_path):
    argv = json.dumps([str(CLIP), "--model", str(tiny_model), "--output-dir", str(tmp_path), "--basename", "bridged",
                       "--device", "cpu", "--layers", "1,3"])
    status, out, err = _bridge("B2_model_wav2vec2.py", argv)
    assert status == 0, err
    assert str(tmp_path / "bridged.npy") in out
    emb = np.load(tmp_path / "bridged.npy")
    assert emb.dtype == np.float32 and emb.shape[0] == 2 and emb.shape[2] == 32


@pytest.fixture(scope="module")
def scoring_run(tmp_path_factory):
    """B4 through MATLAB on a Kaldi data dir (three voices cut into three short segments each) with 'Vad', then
    B4_score_trials on a labelled trial list over its ids; beside it, Python's --compare of the same two clips.

    A fixture of its own (not ``runs``): selecting this test starts only these two processes."""
    _octave()
    base = tmp_path_factory.mktemp("scoring")
    p = {"data": base / "kaldi data", "out": base / "b4 out", "scores": base / "scores", "ref": base / "ref",
         "trials": base / "trials list.txt", "result": base / "octave_scoring_results.mat"}
    p["data"].mkdir()
    clips = p["data"] / "wav"
    clips.mkdir()
    scp, utt2spk, segments, ids = [], [], [], []
    for clip in DEMO_CLIPS:  # speech_de, speech_en_gb, speech_en_us: 5.4 to 7.2 s each
        spk = clip.stem.replace("speech_", "").replace("_", "")
        shutil.copy(clip, clips / clip.name)
        scp.append(f"{spk}-rec {clips / clip.name}\n")
        for i, (start, end) in enumerate(((0.0, 1.6), (1.7, 3.3), (3.4, 5.0)), 1):
            ids.append(f"{spk}-u{i}")
            utt2spk.append(f"{spk}-u{i} {spk}\n")
            segments.append(f"{spk}-u{i} {spk}-rec {start:.2f} {end:.2f}\n")
    for name, lines in (("wav.scp", scp), ("utt2spk", utt2spk), ("segments", segments)):
        (p["data"] / name).write_text("".join(lines))
    p["trials"].write_text("".join(f"{a} {b} {'target' if a.split('-')[0] == b.split('-')[0] else 'nontarget'}\n"
                                   for i, a in enumerate(ids) for b in ids[i + 1:]))
    p["ids"] = ids
    a, b = DEMO_CLIPS[0], DEMO_CLIPS[1]
    env = {**os.environ, "AUDIO_EMBEDDINGS_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    script = str(REPO / "python" / "B4_model_speaker.py")
    jobs = {"octave": _octave_call("test_B4_scoring", p["data"], p["out"], p["trials"], p["scores"], a, b,
                                   p["result"]),
            "ref_compare": [sys.executable, script, "--compare", str(a), str(b), "--model", "ge2e", "--device", "cpu"]}
    procs = {name: subprocess.Popen(cmd, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, cmd in jobs.items()}
    done = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            done[name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return {"paths": p, **done}


def _octave_struct(value) -> dict:
    """A scalar struct loaded by ``scipy.io.loadmat`` as {field: value}."""
    return {name: np.squeeze(value[name].item()) for name in value.dtype.names}


def test_b4_scoring_wrapper_returns_pythons_scores_and_metrics(scoring_run):
    """'Vad'/'MinSpeechS' on a Kaldi data dir reach B4; B4_score_trials returns the scores and metrics that
    B4_model_speaker.py --score writes on the same embeddings (plain and AS-norm with 'CohortTopN'), and
    'Compare' returns Python's cosine and the decision at 'Threshold'."""
    _assert_ok(scoring_run, "octave")
    _assert_ok(scoring_run, "ref_compare")
    p = scoring_run["paths"]
    got = scipy.io.loadmat(p["result"])
    # one row per segment, keyed dataset_speaker_utterance with the Kaldi ids (the trials use the Kaldi ids)
    keys = [f"kaldi data_{u.split('-')[0]}_{u}" for u in p["ids"]]
    assert [str(c[0]) for c in got["utterance_ids"].ravel()] == keys
    summary = json.loads((p["out"] / "final_embeddings" / "summary.json").read_text())
    assert summary["vad"]["method"] == "silero" and summary["vad"]["min_speech_s"] == 0.2
    # 'Formats', 'ark': Kaldi's ark/scp by Kaldi id beside the final files, holding the same vectors
    kaldiio = pytest.importorskip("kaldiio")
    final = p["out"] / "final_embeddings"
    ark = kaldiio.load_scp(str(final / "embeddings.scp"))
    rows = np.load(final / "utterance_embeddings.npy")
    listed = [u["id"] for u in json.loads((final / "utterance_list.json").read_text())]
    assert sorted(ark.keys()) == sorted(p["ids"])
    for kaldi_id in p["ids"]:
        row = rows[[i for i, key in enumerate(listed) if key.endswith(f"_{kaldi_id}")][0]]
        np.testing.assert_array_equal(np.asarray(ark[kaldi_id]), row)
    assert (final / "spk_embeddings.scp").is_file()

    script = str(REPO / "python" / "B4_model_speaker.py")
    asnorm = ["--score-norm", "asnorm", "--cohort", str(p["out"]), "--top-n", "2"]
    for name, extra in (("plain", []), ("asnorm", asnorm)):
        ref = p["ref"] / name
        done = subprocess.run([sys.executable, script, str(p["out"]), "--score", str(p["trials"]), "--output-dir",
                               str(ref), *extra], capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        want = json.loads((ref / f"{p['trials'].name}.metrics.json").read_text())
        octave = _octave_struct(got["metrics" if name == "plain" else "normMetrics"])
        numbers = {k: v for k, v in want.items() if isinstance(v, (int, float))}
        assert {"eer", "eer_threshold", "min_dcf_p0.01", "min_dcf_p0.05"} <= set(numbers)
        for key, value in numbers.items():
            assert float(octave[key.replace(".", "_")]) == pytest.approx(value, rel=1e-12, abs=1e-15), key
        rows = [line.split() for line in (ref / f"{p['trials'].name}.scores").read_text().splitlines()]
        column = got["score_col" if name == "plain" else "normed_score"].ravel()
        np.testing.assert_allclose(column, [float(r[2]) for r in rows], atol=1e-9)
        if name == "plain":
            assert [c[0] for c in got["id1"].ravel()] == [r[0] for r in rows]
            assert [c[0] for c in got["id2"].ravel()] == [r[1] for r in rows]
            assert got["label"].ravel().astype(bool).tolist() == [r[3] == "target" for r in rows]
            assert len(rows) == 36 and sum(r[3] == "target" for r in rows) == 9
    printed = float(scoring_run["ref_compare"][1].split("cosine similarity:")[1].split()[0])
    score, threshold = float(got["score"].item()), float(got["threshold"].item())
    assert score == pytest.approx(printed, abs=1e-12)
    assert bool(got["same"].item()) == (score >= threshold)
