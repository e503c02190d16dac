"""3D-Speaker models (ERes2NetV2, CAM++) and the B4 backend: names, numbers, features, loading.

The parameter names and shapes below are written out from 3D-Speaker's source
(``speakerlab/models/eres2net/ERes2NetV2.py``, ``fusion.py``, ``pooling_layers.py``,
``speakerlab/models/campplus/DTDNN.py``, ``layers.py``), independently of our modules, and the
forward passes are re-stated functionally (``torch.nn.functional`` on the state-dict tensors).
"""

from __future__ import annotations

import hashlib
import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audio_embeddings import audio
from audio_embeddings.backends import campplus, eres2netv2, speaker3d
from audio_embeddings.backends.speaker3d import PRESETS, Speaker3DBackend
from audio_embeddings.fbank import KaldiFbank
from conftest import DEMO_CLIPS

BN_EPS = 1e-5


# ---------------------------------------------------------------------------------------------
# Parameter names and shapes, written out from 3D-Speaker's source.


def _bn(prefix: str, c: int, *, affine: bool = True) -> dict[str, tuple]:
    out = {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)} if affine else {}
    out.update({f"{prefix}.running_mean": (c,), f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})
    return out


def _aff(prefix: str, c: int) -> dict[str, tuple]:
    inter = c // 4
    return {f"{prefix}.local_att.0.weight": (inter, 2 * c, 1, 1), f"{prefix}.local_att.0.bias": (inter,),
            **_bn(f"{prefix}.local_att.1", inter),
            f"{prefix}.local_att.3.weight": (c, inter, 1, 1), f"{prefix}.local_att.3.bias": (c,),
            **_bn(f"{prefix}.local_att.4", c)}


def eres2netv2_shapes(*, feat_dim, embedding_size, m_channels, base_width, scale, expansion, num_blocks,
                      two_emb_layer=False) -> dict[str, tuple]:
    """Every state-dict entry of 3D-Speaker's ERes2NetV2 with its shape."""
    assert not two_emb_layer
    out = {"conv1.weight": (m_channels, 1, 3, 3), **_bn("bn1", m_channels)}
    in_planes = m_channels
    for k in range(4):
        planes = m_channels * 2 ** k
        width = int(math.floor(planes * base_width / 64.0))
        for j in range(num_blocks[k]):
            p = f"layer{k + 1}.{j}"
            stride = 2 if k > 0 and j == 0 else 1
            out[f"{p}.conv1.weight"] = (width * scale, in_planes, 1, 1)
            out.update(_bn(f"{p}.bn1", width * scale))
            for i in range(scale):
                out[f"{p}.convs.{i}.weight"] = (width, width, 3, 3)
            for i in range(scale):
                out.update(_bn(f"{p}.bns.{i}", width))
            if k >= 2:  # layer3 and layer4 use the AFF block
                for i in range(scale - 1):
                    out.update(_aff(f"{p}.fuse_models.{i}", width))
            out[f"{p}.conv3.weight"] = (planes * expansion, width * scale, 1, 1)
            out.update(_bn(f"{p}.bn3", planes * expansion))
            if stride != 1 or in_planes != planes * expansion:
                out[f"{p}.shortcut.0.weight"] = (planes * expansion, in_planes, 1, 1)
                out.update(_bn(f"{p}.shortcut.1", planes * expansion))
            in_planes = planes * expansion
    top = m_channels * 8 * expansion
    out["layer3_ds.weight"] = (top, m_channels * 4 * expansion, 3, 3)
    out.update(_aff("fuse34", top))
    stats_dim = int(feat_dim / 8) * m_channels * 8 * expansion
    out["seg_1.weight"] = (embedding_size, 2 * stats_dim)
    out["seg_1.bias"] = (embedding_size,)
    return out


def campplus_shapes(*, feat_dim, embedding_size, growth_rate, bn_size, init_channels, head_channels, head_blocks,
                    block_layers, block_kernels=(3, 3, 3), block_dilations=(1, 2, 2)) -> dict[str, tuple]:
    """Every state-dict entry of 3D-Speaker's CAMPPlus with its shape."""
    hc = head_channels
    out = {"head.conv1.weight": (hc, 1, 3, 3), **_bn("head.bn1", hc)}
    for k, n in enumerate(head_blocks, start=1):
        for j in range(n):
            p = f"head.layer{k}.{j}"
            out.update({f"{p}.conv1.weight": (hc, hc, 3, 3), **_bn(f"{p}.bn1", hc),
                        f"{p}.conv2.weight": (hc, hc, 3, 3), **_bn(f"{p}.bn2", hc)})
            if j == 0:  # stride 2 in frequency
                out.update({f"{p}.shortcut.0.weight": (hc, hc, 1, 1), **_bn(f"{p}.shortcut.1", hc)})
    out.update({"head.conv2.weight": (hc, hc, 3, 3), **_bn("head.bn2", hc)})
    out["xvector.tdnn.linear.weight"] = (init_channels, hc * (feat_dim // 8), 5)
    out.update(_bn("xvector.tdnn.nonlinear.batchnorm", init_channels))
    channels, bottleneck = init_channels, bn_size * growth_rate
    for b, (n_layers, kernel) in enumerate(zip(block_layers, block_kernels), start=1):
        for i in range(n_layers):
            p = f"xvector.block{b}.tdnnd{i + 1}"
            cin = channels + i * growth_rate
            out.update(_bn(f"{p}.nonlinear1.batchnorm", cin))
            out[f"{p}.linear1.weight"] = (bottleneck, cin, 1)
            out.update(_bn(f"{p}.nonlinear2.batchnorm", bottleneck))
            out[f"{p}.cam_layer.linear_local.weight"] = (growth_rate, bottleneck, kernel)
            out[f"{p}.cam_layer.linear1.weight"] = (bottleneck // 2, bottleneck, 1)
            out[f"{p}.cam_layer.linear1.bias"] = (bottleneck // 2,)
            out[f"{p}.cam_layer.linear2.weight"] = (growth_rate, bottleneck // 2, 1)
            out[f"{p}.cam_layer.linear2.bias"] = (growth_rate,)
        channels += n_layers * growth_rate
        out.update(_bn(f"xvector.transit{b}.nonlinear.batchnorm", channels))
        out[f"xvector.transit{b}.linear.weight"] = (channels // 2, channels, 1)
        channels //= 2
    out.update(_bn("xvector.out_nonlinear.batchnorm", channels))
    out["xvector.dense.linear.weight"] = (embedding_size, 2 * channels, 1)
    out.update(_bn("xvector.dense.nonlinear.batchnorm", embedding_size, affine=False))
    return out


FAMILY = {"eres2netv2": (eres2netv2.ERes2NetV2, eres2netv2_shapes), "campplus": (campplus.CAMPPlus, campplus_shapes)}


def random_state(shapes: dict[str, tuple], *, seed: int, std: float = 0.2) -> dict[str, torch.Tensor]:
    """Random tensors for ``shapes``: positive running variances, weights around 0 (BN scales around 1)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            out[name] = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            out[name] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and name.endswith("weight"):  # BatchNorm scale
            out[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            out[name] = torch.randn(shape, generator=g) * (std if len(shape) == 1 else 1.5 / math.sqrt(fan_in))
    return out


def n_params(shapes: dict[str, tuple]) -> int:
    """Trainable parameters (BatchNorm buffers excluded)."""
    return sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(("running_mean", "running_var",
                                                                              "num_batches_tracked")))


# ---------------------------------------------------------------------------------------------
# (1) names and shapes of the published configurations


@pytest.mark.parametrize("preset", list(PRESETS))
def test_published_configuration_has_3dspeaker_names_and_shapes(preset):
    p = PRESETS[preset]
    cls, shapes_of = FAMILY[p.module]
    expected = shapes_of(**p.kwargs)
    with torch.device("meta"):
        model = cls(**p.kwargs)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(expected)  # same names, in 3D-Speaker's registration order
    assert ours == expected
    # the configuration is recovered from the shapes alone (how the backend tells the variants apart)
    meta = {k: torch.empty(s, device="meta") for k, s in expected.items()}
    assert sys.modules[cls.__module__].infer_config(meta) == p.kwargs


def test_published_sizes():
    counts = {name: n_params(FAMILY[p.module][1](**p.kwargs)) for name, p in PRESETS.items()}
    # ERes2NetV2.py's __main__: "Params: 17.86 M" for feat 80, emb 192, m 64, 26/2/2
    assert counts["eres2netv2"] == 17_859_632
    assert round(counts["eres2netv2"] / 1e6, 2) == 17.86
    assert counts["eres2netv2_w24s4ep4"] == 53_513_632
    assert counts["campplus"] == 6_848_544
    # the README's "CAM++ 7.18M" is the 512-d VoxCeleb/3D-Speaker recipe (embedding_size: 512)
    cam512 = dict(PRESETS["campplus"].kwargs, embedding_size=512)
    assert round(n_params(campplus_shapes(**cam512)) / 1e6, 2) == 7.18
    with torch.device("meta"):
        assert sum(p.numel() for p in campplus.CAMPPlus(**cam512).parameters()) == 7_176_224
    entries = {name: len(FAMILY[p.module][1](**p.kwargs)) for name, p in PRESETS.items()}
    assert entries == {"eres2netv2": 557, "eres2netv2_w24s4ep4": 1001, "campplus": 937}


def test_published_keys_samples():
    e = eres2netv2_shapes(**PRESETS["eres2netv2"].kwargs)
    assert e["layer4.2.fuse_models.0.local_att.0.weight"] == (52, 416, 1, 1)  # width 208 at layer4
    assert e["layer1.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert "layer1.1.shortcut.0.weight" not in e
    assert e["fuse34.local_att.3.weight"] == (1024, 256, 1, 1)
    assert e["seg_1.weight"] == (192, 20480)
    w = eres2netv2_shapes(**PRESETS["eres2netv2_w24s4ep4"].kwargs)
    assert w["layer1.0.convs.3.weight"] == (24, 24, 3, 3) and w["seg_1.weight"] == (192, 40960)
    c = campplus_shapes(**PRESETS["campplus"].kwargs)
    assert c["xvector.tdnn.linear.weight"] == (128, 320, 5)
    assert c["xvector.block3.tdnnd16.cam_layer.linear_local.weight"] == (32, 128, 3)
    assert c["xvector.dense.linear.weight"] == (192, 1024, 1)
    assert "xvector.dense.nonlinear.batchnorm.weight" not in c  # batchnorm_ : affine=False


@pytest.mark.parametrize("preset", ["eres2netv2", "campplus"])
def test_random_state_dict_with_real_names_loads_strictly(preset):
    p = PRESETS[preset]
    cls, shapes_of = FAMILY[p.module]
    state = random_state(shapes_of(**p.kwargs), seed=1)
    with torch.device("meta"):  # no initialisation: the loaded tensors are assigned
        model, bare = cls(**p.kwargs), cls(**p.kwargs)
    model.load_state_dict(state, strict=True, assign=True)
    # without num_batches_tracked (older checkpoints) a strict load still works, as in 3D-Speaker
    bare.load_state_dict({k: v for k, v in state.items() if "num_batches_tracked" not in k}, strict=True, assign=True)
    feats = torch.randn(1, 40, 80)
    with torch.inference_mode():
        assert model.eval()(feats).shape == (1, 192)


# ---------------------------------------------------------------------------------------------
# (2) functional re-statements of the forward passes


def _bn_eval(sd, x, prefix):
    view = (1, -1) + (1,) * (x.dim() - 2)
    y = (x - sd[f"{prefix}.running_mean"].view(view)) / torch.sqrt(sd[f"{prefix}.running_var"].view(view) + BN_EPS)
    if f"{prefix}.weight" in sd:
        y = y * sd[f"{prefix}.weight"].view(view) + sd[f"{prefix}.bias"].view(view)
    return y


def reference_eres2netv2(sd, feats, *, scale, num_blocks):
    """ERes2NetV2 eval forward from the state dict: [B, T, F] -> [B, E]."""
    def clip(x):  # 3D-Speaker's ReLU is Hardtanh(0, 20)
        return torch.clamp(x, 0.0, 20.0)

    def aff(prefix, x, y):
        a = F.conv2d(torch.cat([x, y], dim=1), sd[f"{prefix}.local_att.0.weight"], sd[f"{prefix}.local_att.0.bias"])
        a = F.silu(_bn_eval(sd, a, f"{prefix}.local_att.1"))
        a = F.conv2d(a, sd[f"{prefix}.local_att.3.weight"], sd[f"{prefix}.local_att.3.bias"])
        a = 1.0 + torch.tanh(_bn_eval(sd, a, f"{prefix}.local_att.4"))
        return x * a + y * (2.0 - a)

    x = feats.permute(0, 2, 1).unsqueeze(1)
    x = F.relu(_bn_eval(sd, F.conv2d(x, sd["conv1.weight"], padding=1), "bn1"))
    stage_out = []
    for k in range(4):
        for j in range(num_blocks[k]):
            p = f"layer{k + 1}.{j}"
            stride = 2 if k > 0 and j == 0 else 1
            h = clip(_bn_eval(sd, F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride), f"{p}.bn1"))
            w = sd[f"{p}.convs.0.weight"].shape[0]
            branches = []
            for i in range(scale):
                piece = h[:, i * w:(i + 1) * w]
                if i > 0:
                    piece = aff(f"{p}.fuse_models.{i - 1}", branches[-1], piece) if k >= 2 else branches[-1] + piece
                branches.append(clip(_bn_eval(sd, F.conv2d(piece, sd[f"{p}.convs.{i}.weight"], padding=1),
                                              f"{p}.bns.{i}")))
            h = _bn_eval(sd, F.conv2d(torch.cat(branches, dim=1), sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            if f"{p}.shortcut.0.weight" in sd:
                x = _bn_eval(sd, F.conv2d(x, sd[f"{p}.shortcut.0.weight"], stride=stride), f"{p}.shortcut.1")
            x = clip(h + x)
        stage_out.append(x)
    down = F.conv2d(stage_out[2], sd["layer3_ds.weight"], stride=2, padding=1)
    z = aff("fuse34", stage_out[3], down)
    z = z.reshape(z.shape[0], -1, z.shape[-1])  # [B, C*F, T]
    n = z.shape[-1]
    mean = z.sum(dim=-1) / n
    var = ((z - mean[..., None]) ** 2).sum(dim=-1) / (n - 1)
    stats = torch.cat([mean, torch.sqrt(var + 1e-8)], dim=1)
    return stats @ sd["seg_1.weight"].T + sd["seg_1.bias"]


def reference_campplus(sd, feats, *, dilations=(1, 2, 2)):
    """CAM++ eval forward from the state dict: [B, T, F] -> [B, E]."""
    x = feats.transpose(1, 2).unsqueeze(1)
    x = F.relu(_bn_eval(sd, F.conv2d(x, sd["head.conv1.weight"], padding=1), "head.bn1"))
    for k in (1, 2):
        j = 0
        while f"head.layer{k}.{j}.conv1.weight" in sd:
            p = f"head.layer{k}.{j}"
            stride = (2, 1) if j == 0 else 1
            h = F.relu(_bn_eval(sd, F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            h = _bn_eval(sd, F.conv2d(h, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.shortcut.0.weight" in sd:
                x = _bn_eval(sd, F.conv2d(x, sd[f"{p}.shortcut.0.weight"], stride=stride), f"{p}.shortcut.1")
            x = F.relu(h + x)
            j += 1
    x = F.relu(_bn_eval(sd, F.conv2d(x, sd["head.conv2.weight"], stride=(2, 1), padding=1), "head.bn2"))
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    x = F.relu(_bn_eval(sd, F.conv1d(x, sd["xvector.tdnn.linear.weight"], stride=2, padding=2),
                        "xvector.tdnn.nonlinear.batchnorm"))
    for b, d in enumerate(dilations, start=1):
        i = 1
        while f"xvector.block{b}.tdnnd{i}.linear1.weight" in sd:
            p = f"xvector.block{b}.tdnnd{i}"
            h = F.conv1d(F.relu(_bn_eval(sd, x, f"{p}.nonlinear1.batchnorm")), sd[f"{p}.linear1.weight"])
            h = F.relu(_bn_eval(sd, h, f"{p}.nonlinear2.batchnorm"))
            local = F.conv1d(h, sd[f"{p}.cam_layer.linear_local.weight"], padding=d, dilation=d)
            seg = torch.empty_like(h)
            for s in range(0, h.shape[-1], 100):  # 100-frame segment means, the last segment shorter
                seg[..., s:s + 100] = h[..., s:s + 100].mean(dim=-1, keepdim=True)
            context = h.mean(dim=-1, keepdim=True) + seg
            g = F.relu(F.conv1d(context, sd[f"{p}.cam_layer.linear1.weight"], sd[f"{p}.cam_layer.linear1.bias"]))
            g = torch.sigmoid(F.conv1d(g, sd[f"{p}.cam_layer.linear2.weight"], sd[f"{p}.cam_layer.linear2.bias"]))
            x = torch.cat([x, local * g], dim=1)
            i += 1
        x = F.relu(_bn_eval(sd, x, f"xvector.transit{b}.nonlinear.batchnorm"))
        x = F.conv1d(x, sd[f"xvector.transit{b}.linear.weight"])
    x = F.relu(_bn_eval(sd, x, "xvector.out_nonlinear.batchnorm"))
    n = x.shape[-1]
    mean = x.mean(dim=-1)
    std = torch.sqrt(((x - mean[..., None]) ** 2).sum(dim=-1) / (n - 1))
    emb = torch.cat([mean, std], dim=-1) @ sd["xvector.dense.linear.weight"][:, :, 0].T
    return _bn_eval(sd, emb, "xvector.dense.nonlinear.batchnorm")


TINY_ERES = {
    "26-2-2": dict(feat_dim=80, embedding_size=24, m_channels=8, base_width=26, scale=2, expansion=2,
                   num_blocks=(2, 1, 2, 2)),
    "24-4-4": dict(feat_dim=32, embedding_size=16, m_channels=8, base_width=24, scale=4, expansion=4,
                   num_blocks=(1, 2, 2, 1)),
}
TINY_CAMPPLUS = dict(feat_dim=80, embedding_size=24, growth_rate=8, bn_size=2, init_channels=16, head_channels=4,
                     head_blocks=(2, 1), block_layers=(2, 3, 2))


@pytest.fixture(scope="module")
def speech_feats():
    """Mean-normalised fbank [1, T, 80] of 2.6 s of a demo clip (T = 258)."""
    x = audio.load(DEMO_CLIPS[0], sample_rate_hz=16000).samples[8000:8000 + 41600]
    feats = KaldiFbank()(torch.from_numpy(x))
    return (feats - feats.mean(dim=1, keepdim=True)).double()


@pytest.mark.parametrize("tiny", list(TINY_ERES))
def test_eres2netv2_matches_functional_restatement(tiny, speech_feats):
    cfg = TINY_ERES[tiny]
    state = {k: v.double() if v.is_floating_point() else v
             for k, v in random_state(eres2netv2_shapes(**cfg), seed=2).items()}
    model = eres2netv2.ERes2NetV2(**cfg).double().eval()
    model.load_state_dict(state, strict=True)
    feats = speech_feats[..., :cfg["feat_dim"]]
    feats = torch.cat([feats, 0.5 * feats.flip(1)], dim=0)
    with torch.inference_mode():
        ours = model(feats)
        ref = reference_eres2netv2(state, feats, scale=cfg["scale"], num_blocks=cfg["num_blocks"])
    assert ours.shape == (2, cfg["embedding_size"])
    assert ref.abs().max() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_campplus_matches_functional_restatement(speech_feats):
    state = {k: v.double() if v.is_floating_point() else v
             for k, v in random_state(campplus_shapes(**TINY_CAMPPLUS), seed=3).items()}
    model = campplus.CAMPPlus(**TINY_CAMPPLUS).double().eval()
    model.load_state_dict(state, strict=True)
    feats = torch.cat([speech_feats, 0.5 * speech_feats.flip(1)], dim=0)  # 258 frames -> 129: a short last segment
    with torch.inference_mode():
        ours = model(feats)
        ref = reference_campplus(state, feats)
    assert ours.shape == (2, TINY_CAMPPLUS["embedding_size"])
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["eres2netv2", "campplus"])
def test_fewest_frames_is_where_nan_stops(family):
    cls, shapes_of = FAMILY[family]
    cfg = TINY_ERES["26-2-2"] if family == "eres2netv2" else TINY_CAMPPLUS
    model = cls(**cfg).eval()
    model.load_state_dict(random_state(shapes_of(**cfg), seed=4))
    frames = sys.modules[cls.__module__].min_fbank_frames()
    with torch.inference_mode(), pytest.warns(UserWarning):  # torch warns about the 1-frame variance
        assert torch.isnan(model(torch.randn(1, frames - 1, 80))).all()
    with torch.inference_mode():
        assert torch.isfinite(model(torch.randn(1, frames, 80))).all()
    assert speaker3d.min_samples_for(family) == 400 + (frames - 1) * 160


# ---------------------------------------------------------------------------------------------
# (3) our fbank against kaldi-native-fbank


def knf_fbank(x: np.ndarray) -> np.ndarray:
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, x.astype(np.float32).tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def _signals():
    t = np.arange(48000) / 16000
    out = {clip.name: (lambda c=clip: audio.load(c, sample_rate_hz=16000).samples) for clip in DEMO_CLIPS}
    out["tone"] = lambda: (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    out["noise"] = lambda: (0.05 * np.random.default_rng(5).standard_normal(12345)).astype(np.float32)
    return out


@pytest.mark.parametrize("signal", list(_signals()))
def test_fbank_equals_kaldi_native_fbank(signal):
    """Tolerance: 1e-4 (log units) on every bin within 10 nats of its frame's loudest bin; 1e-3 everywhere.

    Bins far below the frame's peak (about 18 nats down, next to the float32 floor of the
    FFT) carry float32 rounding noise: there kaldi-native-fbank itself is up to 5e-4 from a
    float64 computation on these clips.
    """
    x = _signals()[signal]()
    ref = knf_fbank(x)
    ours = KaldiFbank()(torch.from_numpy(x))[0].numpy()
    assert ours.shape == ref.shape == ((x.size - 400) // 160 + 1, 80)
    err = np.abs(ours - ref)
    loud = ref > ref.max(axis=1, keepdims=True) - 10.0
    assert err[loud].max() < 1e-4
    assert err.max() < 1e-3


# ---------------------------------------------------------------------------------------------
# (4) the backend, from tiny checkpoints saved with torch.save

TINY_CKPT = {"eres2netv2": dict(TINY_ERES["26-2-2"], m_channels=4, num_blocks=(1, 1, 2, 1)),
             "campplus": TINY_CAMPPLUS}


@pytest.fixture(scope="module")
def tiny_checkpoints(tiny_speaker_checkpoints):
    """TINY_CKPT saved with torch.save (built by conftest's ``tiny_speaker_checkpoints``)."""
    return tiny_speaker_checkpoints


@pytest.fixture(scope="module")
def utterances():
    """Three 1.2 s utterances float32 [3, 19200] from the demo clips."""
    return np.stack([audio.load(c, sample_rate_hz=16000).samples[4000:4000 + 19200] for c in DEMO_CLIPS])


@pytest.mark.parametrize("family", ["eres2netv2", "campplus"])
def test_backend_embeds_utterances(family, tiny_checkpoints, utterances, monkeypatch):
    path = tiny_checkpoints[family]
    backend = Speaker3DBackend.load(str(path), name=family, device="cpu")
    assert backend.framing == "utterance" and backend.sample_rate_hz == 16000
    assert backend.hop_samples is None and backend.frame_stride_s is None  # one row per utterance: no hop
    assert backend.embedding_dim == TINY_CKPT[family]["embedding_size"]  # from the checkpoint
    assert backend.variant == f"{family}_custom"
    emb = backend.embed_batch(utterances).embeddings
    assert emb.shape == (3, backend.embedding_dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
    scale = np.abs(emb).max()  # random weights: entries up to about 50
    one_by_one = np.concatenate([backend.embed_batch(u[None]).embeddings for u in utterances])
    np.testing.assert_allclose(emb, one_by_one, rtol=0, atol=1e-5 * scale)
    for frames in (1, 10_000):  # CPU forwards of one utterance each, and of the whole batch
        monkeypatch.setitem(speaker3d.CPU_FORWARD_FRAMES, family, frames)
        np.testing.assert_allclose(backend.embed_batch(utterances).embeddings, emb, rtol=0, atol=1e-5 * scale)
    first = utterances[0]
    assert backend.prepare(first).samples is first
    assert backend.summarize(emb[:1]) == {}
    info = backend.describe()
    assert info["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["checkpoint"] == str(path.resolve()) and info["features"]["num_mel_bins"] == 80
    assert backend.mat_fields() == {"model_variant": f"{family}_custom"}


@pytest.mark.parametrize("family", ["eres2netv2", "campplus"])
def test_backend_follows_3dspeaker_inference(family, tiny_checkpoints, utterances):
    """Same numbers as 3D-Speaker's recipe written out: Kaldi fbank per utterance, minus its mean, model.eval()."""
    backend = Speaker3DBackend.load(str(tiny_checkpoints[family]), name=family, device="cpu")
    model = FAMILY[family][0](**TINY_CKPT[family]).eval()
    model.load_state_dict(torch.load(tiny_checkpoints[family], weights_only=True))
    expected = []
    for u in utterances:
        feat = torch.from_numpy(knf_fbank(u))
        with torch.no_grad():
            expected.append(model((feat - feat.mean(dim=0, keepdim=True))[None])[0].numpy())
    expected = np.stack(expected)
    # the two fbanks differ by float32 rounding (see the fbank test); random weights amplify it a little
    assert np.abs(backend.embed_batch(utterances).embeddings - expected).max() < 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("family,ms", [("eres2netv2", 105), ("campplus", 45)])
def test_too_short_is_a_clear_error_and_min_samples_is_finite(family, ms, tiny_checkpoints, utterances):
    backend = Speaker3DBackend.load(str(tiny_checkpoints[family]), name=family, device="cpu")
    assert backend.min_samples == ms * 16
    assert np.isfinite(backend.embed_batch(utterances[:, :backend.min_samples]).embeddings).all()
    with pytest.raises(ValueError, match=rf"too short.*at least {backend.min_samples} samples \({ms} ms\)"):
        backend.embed_batch(utterances[:, :backend.min_samples - 1]).embeddings


def test_missing_and_unexpected_keys_are_named(tiny_checkpoints, tmp_path):
    state = torch.load(tiny_checkpoints["eres2netv2"], weights_only=True)
    del state["layer3.1.fuse_models.0.local_att.3.bias"]
    state["seg_9.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.ckpt"
    torch.save(state, bad)
    with pytest.raises(ValueError) as info:
        Speaker3DBackend.load(str(bad), name="eres2netv2", device="cpu")
    message = str(info.value)
    assert str(bad) in message and "layer3.1.fuse_models.0.local_att.3.bias" in message and "seg_9.weight" in message


def test_key_the_configuration_needs_missing_is_named(tiny_checkpoints, tmp_path):
    state = torch.load(tiny_checkpoints["campplus"], weights_only=True)
    del state["xvector.tdnn.linear.weight"]
    bad = tmp_path / "bad.bin"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"xvector\.tdnn\.linear\.weight"):
        Speaker3DBackend.load(str(bad), name="campplus", device="cpu")


def test_other_family_and_non_checkpoints_are_refused(tiny_checkpoints, tmp_path):
    with pytest.raises(ValueError, match="CAMPPlus state dict.*'eres2netv2'"):
        Speaker3DBackend.load(str(tiny_checkpoints["campplus"]), name="eres2netv2", device="cpu")
    # an unknown name lets the keys decide
    assert Speaker3DBackend.load(str(tiny_checkpoints["campplus"]), name="my-cam", device="cpu").family == "campplus"
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only"):
        Speaker3DBackend.load(str(junk), name="eres2netv2", device="cpu")
    with pytest.raises(FileNotFoundError):
        Speaker3DBackend.load(str(tmp_path / "absent.ckpt"), name="eres2netv2", device="cpu")


def test_modelscope_id_without_modelscope_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "modelscope", None)
    with pytest.raises(ImportError, match="pip install modelscope.*pretrained_eres2netv2.ckpt"):
        Speaker3DBackend.load("iic/speech_eres2netv2_sv_zh-cn_16k-common", name="eres2netv2", device="cpu")


def test_modelscope_id_downloads_the_preset_file(monkeypatch, tiny_checkpoints, tmp_path):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "campplus_cn_common.bin").write_bytes(tiny_checkpoints["campplus"].read_bytes())
    calls = []

    def snapshot_download(model_id, revision=None, **kwargs):
        calls.append((model_id, revision, kwargs))
        return str(snapshot)

    fake = types.ModuleType("modelscope.hub.snapshot_download")
    fake.snapshot_download = snapshot_download
    for mod in ("modelscope", "modelscope.hub"):
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    monkeypatch.setitem(sys.modules, "modelscope.hub.snapshot_download", fake)
    backend = Speaker3DBackend.load(None, name="campplus", device="cpu")
    assert calls == [("iic/speech_campplus_sv_zh-cn_16k-common", "v1.0.0",
                      {"allow_file_pattern": ["campplus_cn_common.bin"]})]
    assert backend.source == "iic/speech_campplus_sv_zh-cn_16k-common"
    assert backend.describe()["checkpoint"] == backend.source
    # a local snapshot directory works the same way
    assert Speaker3DBackend.load(str(snapshot), name="campplus", device="cpu").family == "campplus"
