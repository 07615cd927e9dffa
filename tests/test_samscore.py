"""SAMScore against a direct computation built from the segment-anything package's own pieces.

A small randomly initialised ``Sam`` (64-px input, 8-px patches, 2 blocks) is saved as a full ``Sam`` state dict,
the same format as the official checkpoints, and loaded through the public ``sam_checkpoint`` option. One test
saves a randomly initialised real ``vit_b`` SAM at the official file name in the cache root and loads it through
``samscore:vit_b`` (no forward pass at 1024 px: too slow for CPU tests; the code path is the same).
"""

from __future__ import annotations

import math
import urllib.error
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide

from clipscore_sr.errors import ConfigError, InputMismatchError, UnknownMetricError, WeightsNotFoundError
from clipscore_sr.metrics import get_metric, list_metrics
from clipscore_sr.metrics.samscore import sam_preprocess

SMALL = {
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "global_attn_indexes": [1],
    "img_size": 64,
    "patch_size": 8,
    "window_size": 4,
    "out_chans": 16,
}
TOL = 1e-5


def _small_sam() -> Sam:
    torch.manual_seed(0)
    encoder = ImageEncoderViT(
        depth=2, embed_dim=32, img_size=64, mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=2, patch_size=8, qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1], window_size=4,
        out_chans=16,
    )
    # random relative-position tables (SAM initialises them to zero, which would hide a wrong load)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                p.normal_(0, 0.5)
    return Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(embed_dim=16, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=4),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer=TwoWayTransformer(depth=1, embedding_dim=16, mlp_dim=32, num_heads=2),
            transformer_dim=16, iou_head_depth=2, iou_head_hidden_dim=16,
        ),
    ).eval()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sam, str]:
    sam = _small_sam()
    path = tmp_path_factory.mktemp("sam") / "small_sam.pth"
    torch.save(sam.state_dict(), path)
    return sam, str(path)


def _metric(path: str, **options):
    return get_metric("samscore", sam_checkpoint=path, encoder_config=SMALL, **options)


def _direct(sam: Sam, sr: torch.Tensor, gt: torch.Tensor, exclude_padding: bool = False) -> torch.Tensor:
    """resize (longest side = img_size) -> x255 -> Sam.preprocess (mean/std, pad) -> encoder -> cosine/location."""
    size = sam.image_encoder.img_size
    h, w = ResizeLongestSide.get_preprocess_shape(sr.shape[-2], sr.shape[-1], size)
    embs = []
    for img in (sr, gt):
        img = img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img
        x = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=True) * 255
        with torch.no_grad():
            embs.append(sam.image_encoder(sam.preprocess(x)).double())
    a, b = embs
    if exclude_padding:
        patch = size // a.shape[-1]
        a, b = a[..., : math.ceil(h / patch), : math.ceil(w / patch)], b[..., : math.ceil(h / patch), : math.ceil(w / patch)]
    return F.cosine_similarity(a, b, dim=1, eps=1e-12).mean(dim=(1, 2))


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(*shape, generator=g)
    sr = (gt + 0.2 * torch.randn(*shape, generator=g)).clamp(0, 1)
    return sr, gt


@pytest.mark.parametrize("shape", [(3, 3, 48, 48), (2, 3, 40, 24), (2, 3, 100, 130), (2, 1, 20, 36)])
def test_matches_direct_computation(small, shape) -> None:
    sam, path = small
    sr, gt = _pair(shape)
    got = _metric(path)(sr, gt)
    assert got.dtype == torch.float64 and got.shape == (shape[0],)
    torch.testing.assert_close(got, _direct(sam, sr, gt), rtol=0, atol=TOL)
    assert (got < 1 - 1e-4).all()


def test_padding_exclude_and_bgr(small) -> None:
    sam, path = small
    sr, gt = _pair((2, 3, 40, 24), seed=3)
    include = _metric(path)(sr, gt)
    exclude = _metric(path, padding="exclude")(sr, gt)
    torch.testing.assert_close(exclude, _direct(sam, sr, gt, exclude_padding=True), rtol=0, atol=TOL)
    assert (exclude < include).all()  # padded locations are nearly identical and pull the mean up
    bgr = _metric(path, channel_order="bgr")(sr, gt)
    torch.testing.assert_close(bgr, _direct(sam, sr.flip(1), gt.flip(1)), rtol=0, atol=TOL)


def test_identical_images_and_batch_invariance(small) -> None:
    _, path = small
    metric = _metric(path)
    sr, gt = _pair((3, 3, 32, 40), seed=5)
    torch.testing.assert_close(metric(gt, gt), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6)
    single = torch.cat([metric(sr[i : i + 1], gt[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(metric(sr, gt), single, rtol=0, atol=1e-5)
    whole = _metric(path, encoder_batch=6)(sr, gt)  # one encoder pass for all 6 images instead of chunks of 2
    torch.testing.assert_close(metric(sr, gt), whole, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="encoder_batch"):
        _metric(path, encoder_batch=0)
    assert metric.load() is metric.load()
    assert not metric.load().training and not any(p.requires_grad for p in metric.load().parameters())


def test_preprocess_matches_sam_reference_resize() -> None:
    """Our float resize vs SAM's own ResizeLongestSide.apply_image (PIL on uint8): under one grey level."""
    rng = np.random.default_rng(0)
    img = (rng.random((27, 50, 3)) * 255).astype(np.uint8)
    ref = ResizeLongestSide(64).apply_image(img).astype(np.float64)
    x, (h, w) = sam_preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, 64)
    assert (h, w) == ref.shape[:2] == (35, 64)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    ours = x[0, :, :h, :w].permute(1, 2, 0).double().numpy() * std + mean
    assert np.abs(ours - ref).mean() < 1.0
    assert torch.count_nonzero(x[0, :, h:, :]) == 0 and torch.count_nonzero(x[0, :, :, w:]) == 0


def test_real_vit_b_checkpoint_from_cache_root(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLIPSCORE_SR_CACHE", str(tmp_path))
    torch.manual_seed(1)
    sam = sam_model_registry["vit_b"]()
    (tmp_path / "sam").mkdir()
    torch.save(sam.state_dict(), tmp_path / "sam" / "sam_vit_b_01ec64.pth")
    metric = get_metric("samscore:vit_b")
    encoder = metric.load()
    want = sam.image_encoder.state_dict()
    got = encoder.state_dict()
    assert got.keys() == want.keys()
    for key in ("patch_embed.proj.weight", "blocks.11.attn.rel_pos_h", "neck.3.weight"):
        assert torch.equal(got[key], want[key])
    prov = metric.provenance()
    assert prov["checkpoint"].endswith("sam_vit_b_01ec64.pth") and prov["encoder_config"]["embed_dim"] == 768
    # the same checkpoint without naming the encoder: inferred from its shapes; naming the wrong one: clear error
    auto = get_metric("samscore", sam_checkpoint=str(tmp_path / "sam" / "sam_vit_b_01ec64.pth"))
    assert auto.provenance()["model"].endswith("vit_b")
    with pytest.raises(ConfigError, match="looks like a vit_b checkpoint"):
        get_metric("samscore:vit_l", sam_checkpoint=str(tmp_path / "sam" / "sam_vit_b_01ec64.pth")).load()


def test_missing_checkpoint_fails_fast_with_clear_message(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLIPSCORE_SR_CACHE", str(tmp_path))
    monkeypatch.setenv("CLIPSCORE_SR_OFFLINE", "1")
    metric = get_metric("samscore:vit_h")
    with pytest.raises(WeightsNotFoundError) as err:
        metric.check_weights()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("weights for SAMScore encoder vit_h not found")
    assert str(tmp_path / "sam" / "sam_vit_h_4b8939.pth") in msg and "--sam-checkpoint" in msg
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        get_metric("samscore", sam_checkpoint=str(tmp_path / "nope.pth")).load()
    # online but the download fails: reported the same way, with the reason
    monkeypatch.delenv("CLIPSCORE_SR_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def fail(url, dst, hash_prefix=None, progress=True):
        assert url.endswith("sam_vit_l_0b3195.pth")
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(WeightsNotFoundError, match="download failed: URLError"):
        get_metric("samscore").check_weights()  # default encoder: vit_l, as in the reference


def test_bad_inputs_and_options(small, tmp_path) -> None:
    _, path = small
    metric = _metric(path)
    with pytest.raises(InputMismatchError, match="4 channels.*--bands"):
        metric(torch.rand(1, 4, 16, 16), torch.rand(1, 4, 16, 16))
    with pytest.raises(InputMismatchError, match="differs"):
        metric(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 18))
    with pytest.raises(UnknownMetricError, match="vit_x"):
        get_metric("samscore:vit_x")
    with pytest.raises(ConfigError, match="padding"):
        _metric(path, padding="sometimes")
    with pytest.raises(ConfigError, match="needs sam_checkpoint"):
        get_metric("samscore", encoder_config=SMALL)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="could not be read"):
        _metric(str(bad)).load()


def test_registry_entry() -> None:
    info = {i.name: i for i in list_metrics()}["samscore"]
    assert info.higher_is_better and info.needs_weights and info.spec_help and info.units and info.value_range


def test_pipeline_passes_sam_options(small) -> None:
    from clipscore_sr.pipeline import build_metrics

    sam, path = small
    (metric,) = build_metrics(["samscore"], device=torch.device("cpu"),
                              metric_options={"crop_border": 4, "sam_checkpoint": path, "encoder_config": SMALL})
    assert str(metric.checkpoint) == path and metric.provenance()["checkpoint"] == path
    sr, gt = _pair((1, 3, 24, 24), seed=7)
    torch.testing.assert_close(metric(sr, gt), _direct(sam, sr, gt), rtol=0, atol=TOL)


def test_bf16_precision_is_close_to_fp32(small) -> None:
    sam, path = small
    sr, gt = _pair((2, 3, 32, 32), seed=9)
    metric = _metric(path, precision="bf16")
    assert metric.provenance()["precision"] == "bf16"
    torch.testing.assert_close(metric(sr, gt), _direct(sam, sr, gt), rtol=0, atol=0.02)
