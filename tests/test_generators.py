"""Reference generators: parameter counts (independent formulas + published figures), shapes for scales
2/3/4 and 1..16 frames, forward/backward, checkpoints (ours + the authors' BasicSR format), tiling."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from clipscore_sr.baselines import (
    CheckpointError,
    RRDBNet,
    build_discriminator,
    build_generator,
    count_parameters,
    list_generators,
    load_checkpoint,
    load_esrgan_authors,
    parameter_count,
    save_checkpoint,
    tiled_forward,
)
from clipscore_sr.baselines.tiling import tile_starts
from clipscore_sr.errors import ConfigError, InputMismatchError

TINY = {
    "srcnn": {"hidden_channels": 16},  # the authors' WorldStrat SRCNN (x3: see _tiny)
    "highresnet": {"hidden_channels": 16},
    "srcnn-915": {"n1": 8, "n2": 4},
    "srcnn-mf": {"n1": 8, "n2": 4, "fuse_channels": 8},
    "highresnet-compact": {"features": 8, "decoder_features": 8, "encoder_blocks": 1},
    "esrgan": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    "sr3": {"inner_channel": 8, "channel_mults": (1, 2), "norm_groups": 4, "n_timestep": 10, "image_size": 16,
            "attn_res": (8,)},
}


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def esrgan_formula(c: int, t: int, scale: int, nf: int, nb: int, gc: int, out: int = 3) -> int:
    u = 4 if scale == 2 else 1
    rdb = sum(conv(nf + i * gc, gc, 3) for i in range(4)) + conv(nf + 4 * gc, nf, 3)
    return conv(c * t * u, nf, 3) + nb * 3 * rdb + 4 * conv(nf, nf, 3) + conv(nf, out, 3)


def sr3_formula(cin: int, out: int, inner: int, mults, attn_res, res_blocks: int, image_size: int) -> int:
    emb = inner

    def gn(ch):
        return 2 * ch

    def resblock(d, o, attn):
        n = emb * o + o + gn(d) + conv(d, o, 3) + gn(o) + conv(o, o, 3) + (conv(d, o, 1) if d != o else 0)
        if attn:
            n += gn(o) + conv(o, 3 * o, 1, bias=False) + conv(o, o, 1)
        return n

    total = (inner * 4 * inner + inner * 4) + (inner * 4 * inner + inner)  # noise MLP: Linear(i,4i), Linear(4i,i)
    total += conv(cin + out, inner, 3)
    skips, pre, res = [inner], inner, image_size
    for i, m in enumerate(mults):
        for _ in range(res_blocks):
            total += resblock(pre, inner * m, res in attn_res)
            pre = inner * m
            skips.append(pre)
        if i < len(mults) - 1:
            total += conv(pre, pre, 3)
            skips.append(pre)
            res //= 2
    total += resblock(pre, pre, True) + resblock(pre, pre, False)
    for i in reversed(range(len(mults))):
        for _ in range(res_blocks + 1):
            total += resblock(pre + skips.pop(), inner * mults[i], res in attn_res)
            pre = inner * mults[i]
        if i > 0:
            total += conv(pre, pre, 3)
            res *= 2
    return total + gn(pre) + conv(pre, out, 3)


# --------------------------------------------------------------------------------------------------
# parameter counts of the production sizes (meta device: no memory, no forward pass)

@pytest.mark.parametrize("size,nf,gc", [("small", 64, 32), ("medium", 128, 64), ("large", 256, 128)])
@pytest.mark.parametrize("frames", [1, 8, 16])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_esrgan_parameter_counts(size, nf, gc, frames, scale):
    assert parameter_count("esrgan", size, frames, scale) == esrgan_formula(3, frames, scale, nf, 23, gc)


def test_esrgan_small_matches_published_count():
    # BasicSR / ESRGAN RRDBNet(3, 3, 64, 23, 32) at x4: 16,697,987 parameters (the "16.7M" of the paper).
    assert parameter_count("esrgan", "small", 1, 4) == 16_697_987


def test_srcnn_matches_published_weight_count():
    # Dong et al.: the 9-1-5 network with 64/32 filters on one channel has 8,032 weights (+ 97 biases).
    model = build_generator("srcnn-915", "small", 1, 4, in_channels=1, out_channels=1, device="meta")
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    assert weights == 8032 and count_parameters(model) == 8032 + 64 + 32 + 1


@pytest.mark.parametrize("frames", [1, 5, 16])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_small_model_parameter_counts(frames, scale):
    c = 3
    assert parameter_count("srcnn-915", "small", frames, scale) == conv(c * frames, 64, 9) + conv(64, 32, 1) + conv(32, c, 5)
    assert parameter_count("srcnn-mf", "small", frames, scale) == (
        conv(c, 64, 9) + conv(64, 32, 1) + conv(32 * frames, 64, 5) + conv(64, c * scale * scale, 3))
    f = 64
    prelu = 1
    hrn = (conv(2 * c, f, 3) + prelu + 2 * (2 * conv(f, f, 3) + 2 * prelu) + conv(f, f, 3)
           + 2 * conv(2 * f, 2 * f, 3) + 2 * prelu + conv(2 * f, f, 3) + prelu
           + (f * f * scale * scale + f) + prelu + conv(f, c, 1))
    assert parameter_count("highresnet-compact", "small", frames, scale) == hrn


@pytest.mark.parametrize("frames", [1, 8])
def test_sr3_parameter_count(frames):
    expected = sr3_formula(3 * frames, 3, 64, (1, 2, 4, 8, 8), (16,), 2, 128)
    assert parameter_count("sr3", "small", frames, 4) == expected
    assert 90e6 < expected < 110e6  # the ~100M-parameter SR3 U-Net


def test_discriminator_parameter_counts():
    def disc(cin, nf=64):
        return (conv(cin, nf, 3) + nf * 2 * nf * 16 + nf * 4 * nf * 2 * 16 + nf * 8 * nf * 4 * 16
                + conv(nf * 8, nf * 4, 3, False) + conv(nf * 4, nf * 2, 3, False) + conv(nf * 2, nf, 3, False)
                + 2 * conv(nf, nf, 3, False) + conv(nf, 1, 3))
    assert count_parameters(build_discriminator(8, False, device="meta")) == disc(3) == 4_376_897
    assert count_parameters(build_discriminator(8, True, device="meta")) == disc(3 + 24)


def test_registry_errors():
    with pytest.raises(ConfigError, match="did you mean 'esrgan'"):
        build_generator("esrgn")
    with pytest.raises(ConfigError, match="sizes small, medium, large"):
        build_generator("esrgan", "huge")
    with pytest.raises(ConfigError, match="scale 5"):
        build_generator("esrgan", "small", 8, 5, **TINY["esrgan"])
    with pytest.raises(ConfigError, match="n_frames"):
        build_generator("srcnn", "small", 17, 4)
    assert set(list_generators()) == {"srcnn", "highresnet", "srcnn-915", "srcnn-mf", "highresnet-compact", "esrgan",
                                      "sr3"}


# --------------------------------------------------------------------------------------------------
# shapes and forward/backward

def _tiny(name, frames, scale, **kw):
    torch.manual_seed(0)
    tiny = dict(TINY[name])
    if name in ("srcnn", "highresnet") and scale == 3:
        tiny["hidden_channels"] = 18  # the pixel-shuffle upsampler needs hidden % scale**2 == 0
    return build_generator(name, "small", frames, scale, **{**tiny, **kw})


@pytest.mark.parametrize("name", ["srcnn", "highresnet", "srcnn-915", "srcnn-mf", "highresnet-compact", "esrgan"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("frames", [1, 3, 8, 16])
def test_shapes_forward_backward(name, scale, frames):
    model = _tiny(name, frames, scale)
    lr = torch.rand(2, frames, 3, 9, 7)
    out = model(lr)
    assert out.shape == (2, 3, 9 * scale, 7 * scale)
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # the authors' registered-but-unused layers (mask encoder, HighResNet's SRCNN fusion)
            assert name in ("srcnn", "highresnet", "esrgan") and p.grad is None
            continue
        if name == "highresnet-compact" and frames == 1 and pname.startswith("fusion."):
            assert p.grad is None  # one frame: nothing to fuse
            continue
        if name == "esrgan" and scale == 3 and pname.startswith("conv_up1."):
            assert p.grad is None and not p.requires_grad  # the authors' x3 path does not use conv_up1
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("frames", [1, 16])
def test_sr3_shapes_forward_backward(scale, frames):
    model = _tiny("sr3", frames, scale)
    lr = torch.rand(2, frames, 3, 5, 6)
    hr = torch.rand(2, 3, 5 * scale, 6 * scale)
    assert model.condition(lr).shape == (2, 3 * frames, 5 * scale, 6 * scale)
    eps = model.unet(torch.randn_like(hr), model.condition(lr), torch.rand(2))
    assert eps.shape == hr.shape
    loss = model.loss(hr, lr, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    out = model.sample(lr, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == hr.shape


@pytest.mark.parametrize("name,kw", [("srcnn", {}), ("highresnet", {}), ("srcnn-915", {}), ("srcnn-mf", {}),
                                     ("highresnet-compact", {}), ("esrgan", {}), ("sr3", {})])
def test_production_configs_run(name, kw):
    """The real (small) presets forward on a tiny input (medium/large ESRGAN: parameter counts above)."""
    torch.manual_seed(0)
    model = build_generator(name, "small", 2, 4, **kw).eval()
    lr = torch.rand(1, 2, 3, 4, 4)
    with torch.no_grad():
        out = model.unet(torch.randn(1, 3, 16, 16), model.condition(lr), torch.tensor([0.5])) if name == "sr3" \
            else model(lr)
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()


def test_input_validation():
    model = _tiny("esrgan", 4, 4)
    with pytest.raises(InputMismatchError, match="3 frames, the model was built for 4"):
        model(torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(InputMismatchError, match="1 channels"):
        model(torch.rand(1, 4, 1, 8, 8))
    # a 4-D input is one frame
    assert _tiny("srcnn-915", 1, 2)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_esrgan_frames_concatenated_frame_major():
    """Zeroing conv_first's weights for frame 1 (channels 3..5) makes the output ignore frame 1."""
    model = _tiny("esrgan", 2, 4)
    with torch.no_grad():
        model.conv_first.weight[:, 3:6] = 0
    lr = torch.rand(1, 2, 3, 6, 6)
    lr2 = lr.clone()
    lr2[:, 1] = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(model(lr), model(lr2))
    lr3 = lr.clone()
    lr3[:, 0, 0] += 0.5
    assert not torch.allclose(model(lr), model(lr3))


def _rrdbnet_reference(model, lr, stages):
    """RRDBNet written from the authors' code path: conv_first, RRDBs with 0.2 residual scaling, conv_body skip,
    then each (conv name, nearest factor) upsampling stage, conv_hr, conv_last."""
    b, t, c, h, w = lr.shape
    x = lr.reshape(b, t * c, h, w)
    lrelu = lambda v: F.leaky_relu(v, 0.2)  # noqa: E731

    def rdb(m, v):
        f1 = lrelu(m.conv1(v))
        f2 = lrelu(m.conv2(torch.cat([v, f1], 1)))
        f3 = lrelu(m.conv3(torch.cat([v, f1, f2], 1)))
        f4 = lrelu(m.conv4(torch.cat([v, f1, f2, f3], 1)))
        return v + 0.2 * m.conv5(torch.cat([v, f1, f2, f3, f4], 1))

    feat = model.conv_first(x)
    body = feat
    for block in model.body:
        body = body + 0.2 * rdb(block.rdb3, rdb(block.rdb2, rdb(block.rdb1, body)))
    feat = feat + model.conv_body(body)
    for name, k in stages:
        feat = lrelu(getattr(model, name)(feat.repeat_interleave(k, -1).repeat_interleave(k, -2)))
    return model.conv_last(lrelu(model.conv_hr(feat)))


def test_esrgan_x4_matches_hand_written_forward():
    """RRDBNet x4 = conv_first, RRDBs with 0.2 residual scaling, conv_body skip, 2x nearest stages."""
    model = _tiny("esrgan", 2, 4).double()
    lr = torch.rand(1, 2, 3, 5, 5, dtype=torch.float64)
    expected = _rrdbnet_reference(model, lr, [("conv_up1", 2), ("conv_up2", 2)])
    torch.testing.assert_close(model(lr), expected, rtol=1e-10, atol=1e-12)


def test_esrgan_x3_follows_the_authors_path():
    """The authors' x3 RRDBNet: nearest x3 -> conv_up2 -> lrelu -> conv_hr -> lrelu -> conv_last; conv_up1 unused
    (its weights still load, so a wrong path would compute a different function silently)."""
    model = _tiny("esrgan", 2, 3).double()
    lr = torch.rand(1, 2, 3, 5, 5, dtype=torch.float64)
    expected = _rrdbnet_reference(model, lr, [("conv_up2", 3)])
    torch.testing.assert_close(model(lr), expected, rtol=1e-10, atol=1e-12)
    assert "conv_up1.weight" in model.state_dict()
    with torch.no_grad():
        model.conv_up1.weight.normal_()
    torch.testing.assert_close(model(lr), expected, rtol=1e-10, atol=1e-12)


def test_highresnet_fusion_hand_computed_for_three_frames():
    """T=3 pads to 4: step 1 pairs (f0, pad) and (f1, f2); step 2 pairs the two results."""
    model = _tiny("highresnet-compact", 3, 2).double()
    feats = torch.rand(1, 3, 8, 4, 4, dtype=torch.float64)

    def g(a, b):
        return model.fusion(torch.cat([a, b], 1))

    f0, f1, f2 = feats[:, 0], feats[:, 1], feats[:, 2]
    s0 = f0  # paired with the zero padding frame (alpha 0)
    s1 = f1 + g(f1, f2)
    expected = s0 + g(s0, s1)
    torch.testing.assert_close(model.fuse(feats), expected)
    # one network handles any frame count; the reference frame is the median of the frames
    lr = torch.rand(1, 5, 3, 4, 4, dtype=torch.float64)
    assert model(lr).shape == (1, 3, 8, 8)
    same = lr[:, :1].expand(1, 3, 3, 4, 4)
    enc = model.encode(same)
    torch.testing.assert_close(enc[:, 0], enc[:, 2])


def test_discriminator_forward_backward_and_conditioning():
    torch.manual_seed(0)
    d = build_discriminator(n_frames=4, lr_conditioned=True, num_feat=8)
    assert "conv1.weight_orig" in d.state_dict() and "conv1.weight_u" in d.state_dict()  # spectral norm
    hr, lr = torch.rand(2, 3, 32, 32), torch.rand(2, 4, 3, 8, 8)
    out = d(hr, lr)
    assert out.shape == (2, 1, 32, 32)
    out.mean().backward()
    assert d.conv0.weight.grad is not None and d.conv0.weight.shape[1] == 3 + 12
    lr2 = lr.clone()
    lr2[:, 3] = 0
    assert not torch.allclose(d.eval()(hr, lr), d(hr, lr2))
    with pytest.raises(ValueError, match="no LR stack"):
        d(hr)
    plain = build_discriminator(n_frames=4, lr_conditioned=False, num_feat=8)
    assert plain(hr).shape == (2, 1, 32, 32)


# --------------------------------------------------------------------------------------------------
# checkpoints

@pytest.mark.parametrize("name", ["srcnn", "highresnet", "srcnn-915", "srcnn-mf", "highresnet-compact", "esrgan", "sr3"])
def test_checkpoint_round_trip(tmp_path, name):
    model = _tiny(name, 3, 3).eval()
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors", extra={"tile": 24})
    meta = json.loads((tmp_path / f"{name}.json").read_text())
    assert meta["name"] == name and meta["config"]["n_frames"] == 3 and meta["extra"] == {"tile": 24}
    (tmp_path / f"{name}.json").unlink()  # the embedded copy is enough
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    lr = torch.rand(1, 3, 3, 6, 6)
    with torch.no_grad():
        if name == "sr3":
            a = model.sample(lr, steps=3, generator=torch.Generator().manual_seed(1))
            b = loaded.sample(lr, steps=3, generator=torch.Generator().manual_seed(1))
        else:
            a, b = model(lr), loaded(lr)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_discriminator_and_mismatch_messages(tmp_path):
    d = build_discriminator(n_frames=2, lr_conditioned=True, num_feat=8)
    loaded = load_checkpoint(save_checkpoint(d, tmp_path / "d.safetensors"))
    assert loaded.config == d.config
    path = save_checkpoint(_tiny("esrgan", 2, 4), tmp_path / "e.safetensors")
    with pytest.raises(CheckpointError, match="--frames 3 does not match"):
        load_checkpoint(path, n_frames=3)
    with pytest.raises(CheckpointError, match="--model srcnn does not match"):
        load_checkpoint(path, name="srcnn")
    # a plain state dict of other shapes: the message names the layer and both sizes
    from safetensors.torch import save_file

    save_file(_tiny("esrgan", 2, 4).state_dict(), str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match=r"conv_first\.weight.*\(8, 6, 3, 3\).*\(8, 24, 3, 3\)|--frames 8"):
        load_checkpoint(tmp_path / "plain.safetensors", n_frames=8)
    from clipscore_sr.baselines import load_state_dict_checked

    with pytest.raises(CheckpointError, match=r"layer 'conv_first\.weight' has shape \(8, 6, 3, 3\) in the "
                                              r"checkpoint but \(8, 24, 3, 3\)"):
        load_state_dict_checked(_tiny("esrgan", 8, 4), _tiny("esrgan", 2, 4).state_dict(), "ckpt")
    sd = _tiny("esrgan", 2, 4).state_dict()
    sd.pop("conv_hr.bias")
    with pytest.raises(CheckpointError, match="1 missing key"):
        load_state_dict_checked(_tiny("esrgan", 2, 4), sd, "ckpt")


def _old_esrgan_name(key: str) -> str:
    """Original ESRGAN (xinntao/ESRGAN) parameter names, written out by hand for the test."""
    parts = key.split(".")
    if parts[0] == "body":
        return f"RRDB_trunk.{parts[1]}.RDB{parts[2][3]}.{parts[3]}.{parts[4]}"
    return {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
            "conv_hr": "HRconv"}.get(parts[0], parts[0]) + "." + parts[-1]


@pytest.mark.parametrize("frames", [1, 8])
def test_authors_basicsr_checkpoint(tmp_path, frames):
    torch.manual_seed(0)
    ema = RRDBNet(n_frames=frames, num_feat=8, num_block=2, num_grow_ch=4).eval()
    plain = RRDBNet(n_frames=frames, num_feat=8, num_block=2, num_grow_ch=4).eval()
    keys = list(ema.state_dict())
    assert {"conv_first.weight", "body.0.rdb1.conv1.weight", "body.1.rdb3.conv5.bias", "conv_body.weight",
            "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight"} <= set(keys)
    path = tmp_path / "net_g.pth"
    torch.save({"params": plain.state_dict(), "params_ema": ema.state_dict()}, path)
    lr = torch.rand(1, frames, 3, 6, 6)
    with torch.no_grad():
        model = load_esrgan_authors(path)
        assert model.config["n_frames"] == frames and model.config["num_block"] == 2
        torch.testing.assert_close(model(lr), ema(lr), rtol=0, atol=0)  # params_ema preferred
        torch.testing.assert_close(load_esrgan_authors(path, key="params")(lr), plain(lr), rtol=0, atol=0)
        # load_checkpoint dispatches .pth to the same loader
        torch.testing.assert_close(load_checkpoint(path)(lr), ema(lr), rtol=0, atol=0)
        # original ESRGAN names with a DataParallel prefix
        old = {"module." + _old_esrgan_name(k): v for k, v in ema.state_dict().items()}
        torch.save(old, tmp_path / "old.pth")
        torch.testing.assert_close(load_esrgan_authors(tmp_path / "old.pth")(lr), ema(lr), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"conv_first\.weight.*--frames 4 needs 12"):
        load_esrgan_authors(path, n_frames=4) if frames != 4 else None
    torch.save({"params": {"conv_first.weight": torch.zeros(3)}}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="not an RRDBNet state dict"):
        load_esrgan_authors(tmp_path / "bad.pth")


def test_authors_production_size_checkpoint_infers_architecture(tmp_path):
    """A full-size small ESRGAN (8 frames) state dict in BasicSR format loads as the 'small' preset."""
    torch.manual_seed(0)
    ema = RRDBNet(n_frames=8)
    torch.save({"params_ema": ema.state_dict()}, tmp_path / "esrgan_8S2.pth")
    model = load_esrgan_authors(tmp_path / "esrgan_8S2.pth")
    assert model.size == "small" and count_parameters(model) == esrgan_formula(3, 8, 4, 64, 23, 32)
    assert torch.equal(model.conv_last.weight, ema.conv_last.weight)


# --------------------------------------------------------------------------------------------------
# tiling

def test_tile_starts_cover_with_overlap():
    for size, tile, ov in [(100, 32, 8), (33, 32, 8), (64, 32, 0), (57, 24, 16)]:
        starts = tile_starts(size, tile, ov)
        assert starts[0] == 0 and starts[-1] + tile == size
        assert all(b - a <= tile - ov for a, b in zip(starts, starts[1:]))


def test_tiling_constant_image_stays_constant():
    def fn(x):  # a "model" that maps a constant to the same constant
        return F.interpolate(x.mean(1), scale_factor=3, mode="nearest")

    lr = torch.full((2, 4, 3, 50, 37), 0.3)
    out = tiled_forward(fn, lr, 3, tile=16, overlap=8, batch_size=5)
    assert out.shape == (2, 3, 150, 111)
    torch.testing.assert_close(out, torch.full_like(out, 0.3), rtol=0, atol=1e-7)


def test_tiling_matches_untiled_for_finite_receptive_field():
    """SRCNN (bicubic + 9-1-5 convs) reaches ~3.5 LR px at x4; with overlap 16 (dead zone 4 px) the
    blended tiles equal the whole-image result (the model is zero-padded at the image border both ways)."""
    model = _tiny("srcnn-915", 2, 4).double().eval()
    lr = torch.rand(1, 2, 3, 56, 41, dtype=torch.float64)
    with torch.no_grad():
        whole = model(lr)
        tiled = tiled_forward(model, lr, 4, tile=24, overlap=16, batch_size=3)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-10)
    # a model whose receptive field is larger than the dead zone differs only near tile seams
    big = _tiny("srcnn-mf", 2, 4).double().eval()
    with torch.no_grad():
        diff = (tiled_forward(big, lr, 4, tile=24, overlap=16) - big(lr)).abs()
    assert diff.max() > 0
    assert diff[..., :44, :44].max() < 1e-10  # LR px 0..10: only the first tile has weight there
