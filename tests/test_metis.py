"""B3 Metis latents: equal to a plain re-computation of the published steps, batches exact, the seed's JSON."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

import tiny_metis
from audio_embeddings.backends.metis import MetisBackend, metis_frame_count
from audio_embeddings.backends.repcodec import RepCodecEncoder, codec_config, load_codec
from audio_embeddings.cli import main
from audio_embeddings.corpus.batching import BatchScheduler, prepare_job
from audio_embeddings.registry import PRESETS, load_backend, resolve
from helpers import noise

#: Our torch fbank vs transformers' float64 numpy extractor, carried through the tiny model.
REF_ATOL = 1e-3
#: Normalised features (unit variance per mel bin) vs SeamlessM4TFeatureExtractor.
FEATURE_ATOL = 1e-3
#: Batched kernels (fbank FFTs, 17 conformer layers) round differently from single calls: about 2e-5
#: on latents of magnitude 1-3 here. A padding or mask error would show as differences of order 1.
BATCH_ATOL = 1e-4

# 560 samples: the shortest input (2 fbank frames); 720: 3 frames, odd, so the last row is half padding.
LENGTHS = (560, 720, 16000, 12345, 16000 * 2 + 37)


@pytest.fixture(scope="module")
def metis(tiny_metis_model):
    return MetisBackend.load(str(tiny_metis_model["model"]), codec=str(tiny_metis_model["codec"]),
                             stats=str(tiny_metis_model["stats"]), device="cpu", local_only=True, codes=True)


def speechlike(n: int, seed: int) -> np.ndarray:
    return noise(n / 16000, 16000, seed=seed)[:n]


@pytest.mark.parametrize("n", LENGTHS)
def test_latents_equal_a_plain_recomputation_of_the_published_steps(metis, tiny_metis_model, n):
    x = speechlike(n, seed=n)
    ref = tiny_metis.reference_latents(tiny_metis_model, x)
    out = metis.embed_batch(x[None]).embeddings[0]
    assert out.shape == ref.shape == (metis_frame_count(n), 8)
    np.testing.assert_allclose(out, ref, rtol=0, atol=REF_ATOL)


def test_another_layer_is_that_hidden_state(tiny_metis_model):
    backend = MetisBackend.load(str(tiny_metis_model["model"]), codec=str(tiny_metis_model["codec"]),
                                stats=str(tiny_metis_model["stats"]), device="cpu", local_only=True, layer=5)
    assert len(backend.model.encoder.layers) == 5  # only the layers needed are kept
    x = speechlike(9000, seed=3)
    np.testing.assert_allclose(backend.embed_batch(x[None]).embeddings[0],
                               tiny_metis.reference_latents(tiny_metis_model, x, layer=5), rtol=0, atol=REF_ATOL)


def test_torch_features_equal_the_feature_extractor_with_its_masks(metis):
    from transformers import SeamlessM4TFeatureExtractor

    xs = [speechlike(n, seed=i) for i, n in enumerate((16000, 12345, 560, 30000))]
    ref = SeamlessM4TFeatureExtractor()(xs, sampling_rate=16000, return_tensors="np", padding=True)
    padded = np.zeros((len(xs), max(map(len, xs))), np.float32)
    for row, x in zip(padded, xs):
        row[:len(x)] = x
    feats, mask, rows = metis.features(torch.from_numpy(padded), torch.tensor([len(x) for x in xs]))
    assert feats.shape == ref["input_features"].shape
    np.testing.assert_array_equal(mask.numpy(), ref["attention_mask"])
    np.testing.assert_allclose(feats.numpy(), ref["input_features"], rtol=0, atol=FEATURE_ATOL)
    assert rows.tolist() == [metis_frame_count(len(x)) for x in xs]


def test_a_padded_batch_of_different_lengths_equals_one_by_one(metis):
    xs = [speechlike(n, seed=i) for i, n in enumerate(LENGTHS)]
    padded = np.zeros((len(xs), max(LENGTHS)), np.float32)
    for row, x in zip(padded, xs):
        row[:len(x)] = x
    batch = metis.embed_batch(padded, lengths=np.array(LENGTHS))
    for i, x in enumerate(xs):
        alone = metis.embed_batch(x[None])
        t = alone.embeddings.shape[1]
        np.testing.assert_allclose(batch.embeddings[i, :t], alone.embeddings[0], rtol=0, atol=BATCH_ATOL)
        np.testing.assert_array_equal(batch.extras["codes"][i, :t], alone.extras["codes"][0])


def test_the_scheduler_batches_different_lengths_together_and_changes_nothing(metis):
    xs = [speechlike(n, seed=i) for i, n in enumerate((15000, 17000, 18000, 16000, 16500))]
    assert len({BatchScheduler(metis, batch_size=1).bucket(len(x)) for x in xs}) == 1  # within 25 %
    results = {}
    for batch_size in (1, 8):
        scheduler = BatchScheduler(metis, batch_size=batch_size)
        jobs = [prepare_job(metis, str(i), x, chunk_s=30.0, context_s=5.0) for i, x in enumerate(xs)]
        for job in jobs:
            scheduler.add(job)
        while batch := scheduler.next_batch(flush=True):
            scheduler.run(batch, catch=False)
        results[batch_size] = [job.result(metis) for job in jobs]
        assert scheduler.n_batches == (len(xs) if batch_size == 1 else 1)
    for one, many in zip(results[1], results[8]):
        np.testing.assert_allclose(many.embeddings, one.embeddings, rtol=0, atol=BATCH_ATOL)
        np.testing.assert_array_equal(many.extras["codes"], one.extras["codes"])
        assert many.extras["codes"].dtype == np.int64


def test_codes_are_the_most_cosine_similar_codebook_entries(metis, tiny_metis_model):
    from safetensors.torch import load_file

    out = metis.embed_batch(speechlike(8000, seed=9)[None])
    book = load_file(str(tiny_metis_model["codec"]))["quantizer.quantizers.0.codebook.weight"].numpy()
    z = out.embeddings[0]
    cos = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (book / np.linalg.norm(book, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(out.extras["codes"][0], cos.argmax(axis=1))


def test_codec_widths_and_depth_come_from_the_checkpoint_and_the_decoder_is_ignored(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(tiny_metis.codec_state(layers=3), str(path))
    codec = load_codec(path)
    assert (codec.num_layers, codec.hidden_size, codec.codebook_dim, codec.receptive_half_width) == (3, 32, 8, 12)
    assert not any(k.startswith("decoder") for k in codec.state_dict())


def test_codec_masks_padding_so_a_padded_item_equals_itself_alone():
    torch.manual_seed(0)
    codec = RepCodecEncoder(**codec_config(tiny_metis.codec_state())).eval()
    codec.load_state_dict({k: v for k, v in tiny_metis.codec_state().items() if not k.startswith(
        ("decoder", "quantizer.quantizers.0.out"))})
    x = torch.randn(1, 50, 32)
    padded = torch.cat([x, 100 * torch.randn(1, 70, 32)], dim=1)  # loud padding would bleed 39 frames in
    with torch.no_grad():
        alone = codec(x)
        masked = codec(padded, torch.tensor([50]))[:, :50]
        unmasked = codec(padded)[:, :50]
    np.testing.assert_allclose(masked.numpy(), alone.numpy(), rtol=0, atol=1e-5)
    assert not np.allclose(unmasked[0, -39:].numpy(), alone[0, -39:].numpy(), atol=1e-3)
    np.testing.assert_allclose(unmasked[0, :50 - 39].numpy(), alone[0, :50 - 39].numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("missing", ["encoder.0.convnext.1.gamma", "quantizer.quantizers.0.in_project.weight_g",
                                     "encoder.1.bias"])
def test_a_codec_missing_a_key_fails_naming_it(tmp_path, missing):
    state = tiny_metis.codec_state()
    del state[missing]
    path = tmp_path / "codec.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=missing.replace(".", r"\.")) as err:
        load_codec(path)
    assert str(path) in str(err.value)


def test_bad_statistics_and_models_get_clear_errors(tiny_metis_model, tiny_model, tmp_path):
    common = dict(codec=str(tiny_metis_model["codec"]), device="cpu", local_only=True)
    bad = tmp_path / "stats.pt"
    torch.save({"mean": torch.zeros(32)}, bad)
    with pytest.raises(ValueError, match="'mean' and 'var'"):
        MetisBackend.load(str(tiny_metis_model["model"]), stats=str(bad), **common)
    torch.save({"mean": torch.zeros(16), "var": torch.ones(16)}, bad)
    with pytest.raises(ValueError, match="16/16 values.*32"):
        MetisBackend.load(str(tiny_metis_model["model"]), stats=str(bad), **common)
    with pytest.raises(ValueError, match="out of range.*0..18"):
        MetisBackend.load(str(tiny_metis_model["model"]), stats=str(tiny_metis_model["stats"]), layer=19, **common)
    with pytest.raises(ValueError, match="not wav2vec2-bert"):
        MetisBackend.load(str(tiny_model("wav2vec2")), stats=str(tiny_metis_model["stats"]), **common)


def test_registry_sends_a_w2v_bert_directory_to_metis(tiny_metis_model):
    assert resolve(str(tiny_metis_model["model"]))[0] is PRESETS["metis"]
    backend = load_backend(str(tiny_metis_model["model"]), device="cpu", codec=str(tiny_metis_model["codec"]),
                           stats=str(tiny_metis_model["stats"]))
    assert backend.name == "metis" and backend.embedding_dim == 8


def b3(*argv) -> int:
    sys.path.insert(0, str(__import__("conftest").PYTHON_DIR))
    from B3_model_metis import DEFAULTS

    return main(DEFAULTS, [str(a) for a in argv])


def model_flags(paths) -> list[str]:
    return ["--model", paths["model"], "--codec", paths["codec"], "--stats", paths["stats"], "--device", "cpu"]


def test_b3_writes_the_seeds_corpus_json_with_part_max_files_and_bad_files(tmp_path, tiny_metis_model, capsys):
    root = tmp_path / "audios"
    keys = []
    for i, seconds in enumerate([1.0, 1.3, 0.7, 2.0, 1.1]):
        key = f"part_00{3 + i % 2}/e{i}/{i:02x}{i:02x}/hash{i}.wav"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / key, noise(seconds, 22050, seed=i), 22050)
        keys.append(key)
    (root / "part_003" / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "jsons"
    rc = b3("--audio-dir", root, "--part", "part_003", "--max-files", 10, "--batch-size", 2, "--output-dir", out,
            "--output-file", "emb.json", *model_flags(tiny_metis_model))
    assert rc == 1  # the broken file failed; the others are written
    text = (out / "emb.json").read_text()
    wanted = sorted(k for k in keys if k.startswith("part_003/"))
    arrays = {k: np.load(out / k.replace(".wav", ".npy")) for k in wanted}
    assert text == json.dumps({k: arrays[k].tolist() for k in wanted})  # the seed's json.dump of .tolist()
    loaded = json.loads(text)
    assert list(loaded) == wanted
    for k in wanted:
        assert np.asarray(loaded[k], dtype=np.float32).shape == (arrays[k].shape[0], 8)
        np.testing.assert_array_equal(np.asarray(loaded[k], dtype=np.float32), arrays[k])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files_done"] == len(wanted) and summary["files_failed"] == 1
    assert "broken.wav" in (out / "failures.csv").read_text()
    assert b3("--audio-dir", root, "--part", "part_004", "--max-files", 1, "--output-dir", tmp_path / "one",
              *model_flags(tiny_metis_model)) == 0
    assert list(json.loads((tmp_path / "one" / "semantic_audio_embeddings.json").read_text())) == [
        sorted(k for k in keys if k.startswith("part_004/"))[0]]


def test_b3_single_file_writes_mat_json_and_codes(tmp_path, tiny_metis_model):
    from scipy.io import loadmat

    wav = tmp_path / "clip.wav"
    sf.write(wav, noise(1.5, 16000, seed=1), 16000)
    out = tmp_path / "out"
    assert b3(wav, "--output-dir", out, "--codes", *model_flags(tiny_metis_model)) == 0
    emb = np.load(out / "clip.npy")
    assert emb.shape == (metis_frame_count(24000), 8) and emb.dtype == np.float32
    mat = loadmat(out / "clip.mat")
    np.testing.assert_array_equal(mat["embeddings"], emb)
    np.testing.assert_allclose(mat["time_axis"][:, 0], np.arange(emb.shape[0]) * 0.02)
    assert mat["layer"][0, 0] == 17 and mat["frame_stride"][0, 0] == pytest.approx(0.02)
    assert np.load(out / "clip_codes.npy").shape == (emb.shape[0],)
    meta = json.loads((out / "clip.json").read_text())
    assert meta["backend"]["codec_context_frames"] == 39 and meta["backend"]["layer"] == 17
    assert list(json.loads((out / "semantic_audio_embeddings.json").read_text())) == ["clip.wav"]


def test_a_file_longer_than_the_chunk_keeps_the_whole_file_grid(tmp_path, tiny_metis_model, metis):
    wav = tmp_path / "long.wav"
    x = noise(7.0, 16000, seed=5)
    sf.write(wav, x, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    assert b3(wav, "--output-dir", out, "--chunk-seconds", 3, "--context-seconds", 0.5, "--formats", "npy,json",
              *model_flags(tiny_metis_model)) == 0
    chunked = np.load(out / "long.npy")
    whole = metis.embed_batch(x[None]).embeddings[0]
    assert chunked.shape == whole.shape
    assert json.loads((out / "long.json").read_text())["chunking"]["n_chunks"] > 1
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(chunked, whole)]
    assert np.median(corr) > 0.9
