"""The scripts' --bundle/--pca/--pca-from/--zscore/--bids-out, end to end in-process with a tiny wav2vec2."""

from __future__ import annotations

import gzip
import json
import math
import re

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings.align import AlignSettings
from audio_embeddings.cli import main
from audio_embeddings.features import FeatureBundle, build_bundle
from audio_embeddings.scripts import EMBED, WAV2VEC2

SR = 16000
TR_S = 0.5


def stimuli(folder, durations_s, *, seed=0, names=None):
    """Short noise-and-tone stimuli (each a run), written as 16 kHz wavs; returns their paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, d in enumerate(durations_s):
        t = np.arange(int(d * SR)) / SR
        x = 0.1 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) * (t % 1.0 < 0.5)
        path = folder / f"{(names or [f'stim{k}' for k in range(len(durations_s))])[i]}.wav"
        sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
        paths.append(path)
    return paths


def run(defaults, *argv):
    return main(defaults, [*map(str, argv), "--device", "cpu", "--quiet"])


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_model):
    """One run over 3 stimuli with every feature-space option; the API's results of the same files."""
    import audio_embeddings as ae

    tmp = tmp_path_factory.mktemp("bundle")
    model_dir = tiny_model("wav2vec2")
    paths = stimuli(tmp / "clips", (3.0, 2.2, 4.1), names=["sub-01_task-listen_run-1", "b story", "c"])
    status = run(WAV2VEC2, tmp / "clips", "--model", model_dir, "--output-dir", tmp / "out", "--layers", "all",
                 "--tr", TR_S, "--delays", "0,1", "--bundle", tmp / "features.mat", "--pca", 3, "--zscore", "run",
                 "--bids-out", tmp / "bids")
    assert status == 0
    model = ae.load_model(str(model_dir), device="cpu", layers="all")
    corpus = model.embed_files(tmp / "clips")  # the API's way: build_bundle on these (api.embed_files' Notes)
    results = [corpus[key] for key in corpus]
    assert list(corpus) == sorted(p.name for p in paths)
    return {"tmp": tmp, "model_dir": model_dir, "paths": sorted(paths), "results": results,
            "bundle": FeatureBundle.load(tmp / "features.mat")}


@pytest.mark.slow  # the tiny model over 3 stimuli (about 8 s for the module)
def test_bundle_has_a_band_per_layer_and_each_file_is_a_run(first):
    bundle, results = first["bundle"], first["results"]
    n_layers = results[0].embeddings.shape[0]
    assert list(bundle.bands) == [f"layer{i}" for i in range(n_layers)]
    assert bundle.run_names == tuple(p.name for p in first["paths"])
    volumes = [math.ceil(r.duration_s / TR_S) for r in results]  # ceil(D_run / TR) per run
    np.testing.assert_array_equal(np.bincount(bundle.run_ids), volumes)
    np.testing.assert_allclose(bundle.time_axis_s, np.concatenate([np.arange(n) * TR_S for n in volumes]))
    assert bundle.delays == (0, 1)
    for name, band in bundle.bands.items():
        assert band.shape == (sum(volumes), 3 * 2), name  # 3 components, 2 delays side by side
        assert set(bundle.pca[name].components.shape) == {3, results[0].embeddings.shape[-1]}
        first_run = band[bundle.run_ids == 0][:, :3]  # delay 0: z-scored per run
        np.testing.assert_allclose(first_run.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(first_run.std(axis=0), 1, atol=1e-4)


@pytest.mark.slow  # the tiny model over 3 stimuli (about 8 s for the module)
def test_bundle_equals_build_bundle_on_the_api_results(first):
    """The hook read every file's rows, time axis and duration, in corpus order."""
    settings = AlignSettings(target_rate_hz=1 / TR_S, delays=(0, 1))
    expected = build_bundle(first["results"], settings=settings, run_names=[p.name for p in first["paths"]], pca=3,
                            zscore="run")
    assert expected.run_names == first["bundle"].run_names
    bundle = first["bundle"]
    for i, name in enumerate(bundle.bands):
        a, b = bundle.bands[name], expected.bands[f"layer{i}"]
        signs = np.sign(np.sum(a[:, :3] * b[:, :3], axis=0))  # batched there, whole here: tiny differences
        np.testing.assert_allclose(a[:, :3] * signs, b[:, :3], atol=2e-2)
        np.testing.assert_allclose(np.abs(bundle.pca[name].explained_variance_ratio),
                                   expected.pca[f"layer{i}"].explained_variance_ratio, rtol=1e-2)


@pytest.mark.slow  # the tiny model over 3 stimuli (about 8 s for the module)
def test_bids_out_writes_a_series_per_stimulus_and_band(first):
    bundle, bids = first["bundle"], first["tmp"] / "bids"
    assert json.loads((bids / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    stims = ["stim-bstory", "stim-c", "sub-01_task-listen_run-1"]  # sorted keys: "b story.wav", "c.wav", "sub-..."
    for r, stim in enumerate(stims):
        folder = bids / "sub-01" / "func" if stim.startswith("sub-") else bids
        for name, band in bundle.bands.items():
            label = re.sub(r"[^A-Za-z0-9]", "", first["model_dir"].name)  # the model folder's own name
            tsv = list(folder.glob(f"{stim}_desc-{label}{name}_timeseries.tsv.gz"))
            assert len(tsv) == 1, (stim, name)
            rows = np.loadtxt(gzip.open(tsv[0], "rt"), delimiter="\t", ndmin=2)
            np.testing.assert_allclose(rows, band[bundle.run_ids == r], rtol=1e-5, atol=1e-5)
            sidecar = json.loads(tsv[0].with_name(tsv[0].name.replace(".tsv.gz", ".json")).read_text())
            assert sidecar["SamplingFrequency"] == 1 / TR_S and len(sidecar["Columns"]) == band.shape[1]
            assert sidecar["AudioEmbeddings"]["pca"] == 3 and sidecar["AudioEmbeddings"]["zscore"] == "run"


@pytest.mark.slow  # the tiny model over 3 stimuli (about 8 s for the module)
def test_pca_from_applies_the_saved_projection_to_new_stimuli(first, tmp_path):
    """Two new stimuli get the first set's components (not a new fit), through embed.py and an .npz."""
    import audio_embeddings as ae

    new = stimuli(tmp_path / "new", (2.6, 3.3), seed=5)
    status = run(EMBED, *new, "--model", first["model_dir"], "--output-dir", tmp_path / "out", "--layers", "all",
                 "--tr", TR_S, "--bundle", tmp_path / "new.npz", "--pca-from", first["tmp"] / "features.mat")
    assert status == 0
    bundle, old = FeatureBundle.load(tmp_path / "new.npz"), first["bundle"]
    assert list(bundle.bands) == list(old.bands)
    model = ae.load_model(str(first["model_dir"]), device="cpu", layers="all")
    aligned = [AlignSettings(target_rate_hz=1 / TR_S).apply(model.embed_file(p)) for p in new]
    for i, name in enumerate(bundle.bands):
        np.testing.assert_array_equal(bundle.pca[name].components, old.pca[name].components)
        x = np.concatenate([a.embeddings[i] for a in aligned])
        np.testing.assert_allclose(bundle.bands[name], old.pca[name].transform(x), rtol=1e-3, atol=2e-3)


@pytest.mark.slow  # the tiny model over 3 stimuli (about 8 s for the module)
def test_another_pca_is_refused_like_every_other_option(first, tmp_path, caplog):
    out, clips = first["tmp"] / "out", first["tmp"] / "clips"
    before = (first["tmp"] / "features.mat").read_bytes()
    status = run(WAV2VEC2, clips, "--model", first["model_dir"], "--output-dir", out, "--layers", "all",
                 "--tr", TR_S, "--delays", "0,1", "--bundle", first["tmp"] / "features.mat", "--pca", 2,
                 "--zscore", "run", "--bids-out", first["tmp"] / "bids")
    assert status != 0
    assert "--overwrite" in caplog.text
    assert (first["tmp"] / "features.mat").read_bytes() == before  # the refused run wrote no bundle
    status = run(WAV2VEC2, clips, "--model", first["model_dir"], "--output-dir", out, "--layers", "all",
                 "--tr", TR_S, "--bundle", tmp_path / "redone.npz", "--pca", 2, "--overwrite")
    assert status == 0
    assert {b.shape[1] for b in FeatureBundle.load(tmp_path / "redone.npz").bands.values()} == {2}


@pytest.mark.parametrize("argv, message", [
    (["--pca", "2"], "--pca (PCA) need(s) --bundle (Bundle) or --bids-out (BidsOut)"),
    (["--bundle", "x.npz"], "need(s) a grid"),
    (["--bundle", "x.csv", "--tr", "1"], "--bundle"),
    (["--bundle", "x.npz", "--tr", "1", "--pca", "2", "--pca-from", "y.npz"], "not both"),
])
def test_bad_feature_options_fail_before_the_model_loads(argv, message, tmp_path, capsys, caplog):
    clip = stimuli(tmp_path / "c", (1.0,))[0]
    with pytest.raises(SystemExit) if argv[1] == "x.csv" else _nothing():
        status = run(EMBED, clip, "--model", "no-such-model-anywhere", "--output-dir", tmp_path, *argv)
        assert status == 2
    assert message in caplog.text + capsys.readouterr().err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.slow  # the tiny model over 3 stimuli (about 8 s for the module)
def test_a_store_gives_the_same_bundle(first, tmp_path):
    """With --store the rows, time axes and durations come from the HDF5 store instead of the per-file .mat."""
    status = run(WAV2VEC2, first["tmp"] / "clips", "--model", first["model_dir"], "--output-dir", tmp_path / "out",
                 "--store", tmp_path / "store.h5", "--layers", "all", "--tr", TR_S, "--delays", "0,1",
                 "--bundle", tmp_path / "stored.h5", "--pca", 3, "--zscore", "run")
    assert status == 0
    stored, tree = FeatureBundle.load(tmp_path / "stored.h5"), first["bundle"]
    assert stored.run_names == tree.run_names and list(stored.bands) == list(tree.bands)
    np.testing.assert_array_equal(stored.run_ids, tree.run_ids)
    for name in tree.bands:
        np.testing.assert_allclose(stored.bands[name], tree.bands[name], atol=1e-4)
