"""CLIPScore: aliases, spec syntax, loading from every supported format, preprocessing, caches, satlas variant,
missing weights. Tiny random open_clip models are written to disk in the real formats; nothing touches the
network. Reference values come from open_clip called directly (its own eval transform, encode_image)."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.transform import PreprocessCfg

from clipscore_sr.embed_cache import EmbeddingCache, clear_memory_cache
from clipscore_sr.errors import ConfigError, InputMismatchError, UnknownMetricError, WeightsNotFoundError
from clipscore_sr.metrics import get_metric, list_metrics
from clipscore_sr.metrics.clip import (
    CLIP_ALIASES,
    DEFAULT_ALIAS,
    Preprocess,
    clear_model_cache,
    parse_clip_spec,
    preprocess_batch,
)

from .test_clip_support import (
    HF_REPO,
    PREP,
    TINY_RN,
    TINY_VIT,
    cos64,
    image_batch,
    isolated_offline_env,
    make_model,
    open_clip_transform,
    reference_embed,
    register_tiny_arch,
    uint8_images,
    write_hf_cache,
    write_local_dir,
)

ATOL = 1e-5


_isolated = pytest.fixture(autouse=True)(isolated_offline_env)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    return write_local_dir(tmp_path_factory.mktemp("vit") / "tiny", TINY_VIT, PREP, seed=0)


# ---------------------------------------------------------------------------------------------------------
# registry and spec syntax
# ---------------------------------------------------------------------------------------------------------

def test_aliases_record_the_preprocessing_of_their_weights():
    known = set(open_clip.list_pretrained())
    for name, a in CLIP_ALIASES.items():
        if a.pretrained is None:  # RemoteCLIP: no open_clip tag (tests/test_clip_aliases.py)
            continue
        assert (a.model, a.pretrained) in known, name
        pcfg = open_clip.get_pretrained_cfg(a.model, a.pretrained)
        assert a.mean == pytest.approx(pcfg["mean"]) and a.std == pytest.approx(pcfg["std"]), name
        assert (a.interpolation, a.resize_mode) == (pcfg["interpolation"], pcfg["resize_mode"]), name
        assert a.quick_gelu == bool(pcfg.get("quick_gelu", False)), name
        assert a.image_size == open_clip.get_model_config(a.model)["vision_cfg"]["image_size"], name
    a = CLIP_ALIASES[DEFAULT_ALIAS]
    assert (DEFAULT_ALIAS, a.model, a.pretrained) == ("clipa-v2-bigg", "ViT-bigG-14-CLIPA-336", "datacomp1b")
    assert (CLIP_ALIASES["clip-rn50"].model, CLIP_ALIASES["clip-rn50"].pretrained) == ("RN50", "openai")
    families = {x.family for x in CLIP_ALIASES.values()}
    assert {"CLIPA-v2", "OpenAI CLIP", "SigLIP", "MetaCLIP", "EVA-CLIP"} <= families
    assert CLIP_ALIASES["siglip-so400m"].model == "ViT-SO400M-14-SigLIP-384"
    assert any(x.model == "ViT-H-14-CLIPA-336" for x in CLIP_ALIASES.values())


def test_spec_syntax():
    s = parse_clip_spec(None)
    assert (s.kind, s.alias, s.model) == ("pretrained", DEFAULT_ALIAS, "ViT-bigG-14-CLIPA-336")
    assert parse_clip_spec("CLIP-RN50").alias == "clip-rn50"
    s = parse_clip_spec("ViT-B-32/laion2b_s34b_b79k")
    assert (s.kind, s.model, s.pretrained) == ("pretrained", "ViT-B-32", "laion2b_s34b_b79k")
    assert parse_clip_spec("hf-hub:org/repo").repo == "org/repo"
    assert parse_clip_spec("local-dir:/x/y").path == "/x/y"
    s = parse_clip_spec("ViT-B-32/openai@/w/file.pt")
    assert (s.kind, s.model, s.pretrained, s.path) == ("file", "ViT-B-32", "openai", "/w/file.pt")
    s = parse_clip_spec("RN50@/w/r.pt")
    assert (s.kind, s.model, s.pretrained) == ("file", "RN50", None)
    with pytest.raises(UnknownMetricError, match="did you mean.*clip-rn50"):
        parse_clip_spec("clip-rn05")
    with pytest.raises(UnknownMetricError, match="RN50/openai"):
        parse_clip_spec("RN50")
    with pytest.raises(UnknownMetricError, match="not a pretrained tag.*known: .*openai"):
        parse_clip_spec("RN50/nosuchtag")
    with pytest.raises(ConfigError, match="hf-hub:ORG/REPO"):
        parse_clip_spec("hf-hub:justone")
    with pytest.raises(UnknownMetricError, match="unknown open_clip architecture"):
        parse_clip_spec("NoSuchNet@/w/x.pt")


def test_metric_registration_is_lazy():
    infos = {i.name: i for i in list_metrics()}
    for name in ("clipscore", "clipscore-satlas"):
        assert infos[name].higher_is_better and infos[name].is_differentiable and infos[name].needs_weights
        assert infos[name].spec_help
    m = get_metric("clipscore")
    assert m.id == "clipscore" and m.clip_spec.alias == DEFAULT_ALIAS
    assert m._model is None  # constructing a metric never loads (or looks for) weights
    assert type(m).uses_image_ids


# ---------------------------------------------------------------------------------------------------------
# preprocessing
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_preprocess_matches_open_clip_transform(resize_mode, interpolation):
    mean, std = (0.3, 0.5, 0.6), (0.2, 0.25, 0.4)
    targets = [(32, 32)] + ([] if resize_mode == "shortest" else [(24, 40)])
    for size in targets:
        tf = open_clip_transform(PreprocessCfg(size=size, mean=mean, std=std, interpolation=interpolation,
                                               resize_mode=resize_mode))
        pp = Preprocess(size=size, mean=mean, std=std, interpolation=interpolation, resize_mode=resize_mode)
        for h, w in [(40, 56), (56, 40), (20, 20), (96, 64), (32, 32)]:
            x = torch.rand(3, 3, h, w, generator=torch.Generator().manual_seed(h * w))
            ref = torch.stack([tf(img) for img in x])
            got = preprocess_batch(x, pp)
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)


def test_preprocess_uses_config_values():
    x = torch.rand(2, 3, 40, 60)
    base = Preprocess(size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, interpolation="bicubic", resize_mode="squash")
    y = preprocess_batch(x, base)
    # mean/std: (x - m) / s exactly, per channel
    plain = preprocess_batch(x, Preprocess((32, 32), (0.0,) * 3, (1.0,) * 3, "bicubic", "squash"))
    torch.testing.assert_close(y, (plain - 0.5) / 0.25)
    for change in (dict(interpolation="bilinear"), dict(resize_mode="shortest"), dict(resize_mode="longest")):
        other = Preprocess(**{**base.__dict__, **change})
        assert not torch.allclose(preprocess_batch(x, other), y, atol=1e-3), change
    # longest pads with the fill value: a 40x60 image fit into 32x32 leaves top/bottom bands of fill
    longest = preprocess_batch(x, Preprocess((32, 32), (0.0,) * 3, (1.0,) * 3, "bilinear", "longest", fill=0.0))
    assert longest[:, :, :5].abs().max() == 0 and longest[:, :, -5:].abs().max() == 0


def test_channels_gray_repeated_multiband_error(vit_dir):
    d, _ = vit_dir
    m = get_metric(f"clipscore:local-dir:{d}")
    sr, gt = image_batch(3, 40, 40, seed=3, c=1)
    torch.testing.assert_close(m(sr, gt), m(sr.expand(-1, 3, -1, -1), gt.expand(-1, 3, -1, -1)), atol=1e-12, rtol=0)
    sr4, gt4 = image_batch(2, 40, 40, seed=4, c=4)
    with pytest.raises(InputMismatchError, match="4 channels.*--bands"):
        m(sr4, gt4)


# ---------------------------------------------------------------------------------------------------------
# loading from every format == open_clip called directly
# ---------------------------------------------------------------------------------------------------------

def _check_against(metric, model, prep, size, seed=0, h=44, w=60):
    sr, gt = image_batch(5, h, w, seed=seed)
    got = metric(sr, gt)
    ref = cos64(reference_embed(model, sr, prep, size), reference_embed(model, gt, prep, size))
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    emb = metric.embed(sr)
    torch.testing.assert_close(emb, reference_embed(model, sr, prep, size), atol=ATOL, rtol=1e-5)
    assert got.dtype == torch.float64 and got.shape == (5,)
    assert (got < 0.999).any()  # the test images are distinguishable: equality is not trivial
    return got


def test_local_dir_matches_open_clip(vit_dir):
    d, model = vit_dir
    m = get_metric(f"clipscore:local-dir:{d}")
    _check_against(m, model, PREP, 32)
    prov = m.provenance()["model"]
    assert prov["preprocess"]["mean"] == tuple(PREP["mean"]) and prov["kind"] == "local-dir"
    assert prov["weights_fingerprint"] and "open_clip_config.json" in prov["preprocess_source"]
    # the module kept is frozen and in eval mode
    visual = m.load().visual
    assert not visual.training and not any(p.requires_grad for p in visual.parameters())


def test_local_dir_resnet_longest_bicubic(tmp_path):
    prep = {"mean": [0.5, 0.4, 0.3], "std": [0.3, 0.3, 0.2], "interpolation": "bicubic", "resize_mode": "longest"}
    d, model = write_local_dir(tmp_path / "rn", TINY_RN, prep, seed=1, weights="open_clip_pytorch_model.bin")
    _check_against(get_metric(f"clipscore:local-dir:{d}"), model, prep, 64, h=50, w=90)


def test_local_dir_without_preprocess_cfg_is_an_error(tmp_path):
    d, model = write_local_dir(tmp_path / "noprep", TINY_VIT, None, seed=0)
    m = get_metric(f"clipscore:local-dir:{d}")
    with pytest.raises(ConfigError, match="no preprocess_cfg mean/std"):
        m.load()
    m = get_metric(f"clipscore:local-dir:{d}", preprocess=PREP)  # explicit is fine
    _check_against(m, model, PREP, 32)


def test_hf_cache_offline(tmp_path, monkeypatch):
    hf_home = tmp_path / "hf_home"
    prep = {**PREP, "resize_mode": "squash"}
    model = write_hf_cache(hf_home, TINY_VIT, prep, seed=5)
    m = get_metric(f"clipscore:hf-hub:{HF_REPO}")
    _check_against(m, model, prep, 32)
    assert "revision" in m.provenance()["model"]["preprocess_source"]


def test_checkpoint_file_with_architecture_name(tmp_path):
    name = register_tiny_arch(tmp_path)
    model = make_model(TINY_VIT, seed=7)
    f = tmp_path / "weights.pt"
    torch.save(model.state_dict(), f)
    m = get_metric(f"clipscore:{name}@{f}")
    with pytest.raises(ConfigError, match="cannot tell which preprocessing.*no pretrained tags"):
        m.load()  # never a silent OpenAI default
    m = get_metric(f"clipscore:{name}@{f}", preprocess=PREP)
    ref = open_clip.create_model(name, pretrained=str(f)).eval()
    _check_against(m, ref, PREP, 32)
    m = get_metric(f"clipscore:{name}@{f}", preprocess="clipa")  # a named preset
    assert m.load().preprocess.mean == (0.485, 0.456, 0.406) and m.load().preprocess.resize_mode == "squash"


def test_wrong_architecture_for_file_is_one_line_error(tmp_path):
    name = register_tiny_arch(tmp_path)
    f = tmp_path / "rn.pt"
    torch.save(make_model(TINY_RN, 0).state_dict(), f)
    with pytest.raises(Exception, match=r"do not fit architecture") as info:
        get_metric(f"clipscore:{name}@{f}", preprocess=PREP).load()
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_alias_from_hf_cache_uses_tag_preprocessing(tmp_path):
    """clip-rn50 end to end: a random full-size RN50 saved where the HF cache keeps timm/resnet50_clip.openai."""
    torch.manual_seed(0)
    full = open_clip.create_model("RN50", force_quick_gelu=True).eval()
    repo_dir = tmp_path / "hf_home" / "hub" / "models--timm--resnet50_clip.openai"
    snap = repo_dir / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("abc123")
    torch.save({k: v.half() for k, v in full.state_dict().items()}, snap / "open_clip_pytorch_model.bin")
    full.load_state_dict({k: v.half().float() for k, v in full.state_dict().items()})
    m = get_metric("clipscore:clip-rn50")
    assert m.check_weights() == snap / "open_clip_pytorch_model.bin"
    loaded = m.load()
    assert loaded.preprocess == CLIP_ALIASES["clip-rn50"].preprocess
    assert loaded.preprocess.mean == open_clip.get_pretrained_cfg("RN50", "openai")["mean"]
    prep = {k: list(v) if isinstance(v, tuple) else v for k, v in open_clip.get_pretrained_cfg("RN50", "openai").items()}
    sr, gt = image_batch(2, 100, 140, seed=2)
    ref = cos64(reference_embed(full, sr, prep, 224), reference_embed(full, gt, prep, 224))
    torch.testing.assert_close(m(sr, gt), ref, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# invariances and caches
# ---------------------------------------------------------------------------------------------------------

def test_identical_images_score_one(vit_dir):
    d, _ = vit_dir
    _, gt = image_batch(4, 40, 40, seed=11)
    for name in ("clipscore", "clipscore-satlas"):
        v = get_metric(f"{name}:local-dir:{d}")(gt.clone(), gt)
        torch.testing.assert_close(v, torch.ones(4, dtype=torch.float64), atol=1e-6, rtol=0)


def test_batch_size_does_not_change_results(vit_dir):
    d, _ = vit_dir
    sr, gt = image_batch(7, 36, 52, seed=12)
    whole = get_metric(f"clipscore:local-dir:{d}")(sr, gt)
    chunked = get_metric(f"clipscore:local-dir:{d}", batch_size=2)(sr, gt)
    single = torch.cat([get_metric(f"clipscore:local-dir:{d}")(sr[i:i + 1], gt[i:i + 1]) for i in range(7)])
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(single, whole, atol=1e-6, rtol=0)


def _count_forwards(metric):
    seen = []
    metric.load().visual.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    return seen


def test_memory_cache_embeds_each_image_once(vit_dir):
    d, _ = vit_dir
    sr, gt = image_batch(4, 40, 40, seed=13)
    gt = gt[[0, 0, 1, 1]]  # the same GT appears in several pairs
    sr_ids, gt_ids = [f"sr{i}" for i in range(4)], ["g0", "g0", "g1", "g1"]
    m = get_metric(f"clipscore:local-dir:{d}")
    seen = _count_forwards(m)
    plain = m(sr, gt)
    assert sum(seen) == 8
    seen.clear()
    first = m(sr, gt, sr_ids=sr_ids, gt_ids=gt_ids)
    assert sum(seen) == 6  # 4 SR + 2 distinct GT
    torch.testing.assert_close(first, plain, atol=1e-6, rtol=0)
    seen.clear()
    again = get_metric(f"clipscore:local-dir:{d}")(sr, gt, sr_ids=sr_ids, gt_ids=gt_ids)  # new instance, same process
    assert sum(seen) == 0
    assert torch.equal(again, first)


def test_disk_cache_hits_and_corruption(vit_dir, tmp_path):
    d, _ = vit_dir
    cache = tmp_path / "embcache"
    sr, gt = image_batch(3, 40, 40, seed=14)
    ids = dict(sr_ids=["a", "b", "c"], gt_ids=["x", "y", "z"])
    first = get_metric(f"clipscore:local-dir:{d}", cache_dir=cache)(sr, gt, **ids)
    files = sorted(cache.rglob("*.emb"))
    assert len(files) == 6 and not list(cache.rglob("*.tmp"))
    clear_memory_cache()
    clear_model_cache()
    m = get_metric(f"clipscore:local-dir:{d}", cache_dir=cache)
    seen = _count_forwards(m)
    second = m(sr, gt, **ids)
    assert sum(seen) == 0 and m.cache.stats.disk_hits == 6
    assert torch.equal(second, first)
    # corrupt one entry (flip a payload byte) and truncate another: both detected and recomputed
    blob = bytearray(files[0].read_bytes())
    blob[-1] ^= 0xFF
    files[0].write_bytes(bytes(blob))
    files[1].write_bytes(files[1].read_bytes()[:20])
    clear_memory_cache()
    m2 = get_metric(f"clipscore:local-dir:{d}", cache_dir=cache)
    seen = _count_forwards(m2)
    third = m2(sr, gt, **ids)
    assert sum(seen) == 2 and m2.cache.stats.corrupt == 2
    torch.testing.assert_close(third, first, atol=1e-6, rtol=0)
    # a different preprocessing or precision is a different namespace: no false hits
    clear_memory_cache()
    other = get_metric(f"clipscore-satlas:local-dir:{d}", cache_dir=cache)
    seen = _count_forwards(other)
    other(sr, gt, **ids)
    assert sum(seen) == 6


def test_disk_cache_concurrent_writers(tmp_path):
    ns = "test|namespace"
    values = {f"id{i}": torch.randn(16, generator=torch.Generator().manual_seed(i)) for i in range(40)}

    def writer():
        c = EmbeddingCache(ns, tmp_path)
        for k, v in values.items():
            c.put(k, v)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    clear_memory_cache()
    reader = EmbeddingCache(ns, tmp_path)
    for k, v in values.items():
        assert torch.equal(reader.get(k, [16]), v)
    assert reader.stats.corrupt == 0 and not list(tmp_path.rglob("*.tmp"))
    clear_memory_cache()
    assert reader.get("id0", [17]) is None and reader.stats.corrupt == 1  # wrong shape -> recompute


# ---------------------------------------------------------------------------------------------------------
# clipscore-satlas == a float64 re-implementation of the authors' steps
# ---------------------------------------------------------------------------------------------------------

def _authors_features_f64(model, rgb: np.ndarray, size: int) -> torch.Tensor:
    """The image side of satlas-super-resolution's calculate_clipscore, in float64: cv2 gives BGR uint8 HWC ->
    CHW float / 255 -> F.interpolate(x, size) (nearest: src = floor(dst * in / out)) -> encode_image."""
    bgr = rgb[..., ::-1].astype(np.float64) / 255.0
    h, w = bgr.shape[:2]
    rows = np.minimum(np.floor(np.arange(size) * (h / size)).astype(int), h - 1)
    cols = np.minimum(np.floor(np.arange(size) * (w / size)).astype(int), w - 1)
    x = torch.from_numpy(bgr[rows][:, cols].transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        return copy.deepcopy(model).double().eval().encode_image(x)[0]


def test_satlas_matches_float64_reimplementation(vit_dir):
    d, model = vit_dir
    gt_u8 = uint8_images(4, 45, 70, seed=21)
    sr_u8 = np.clip(gt_u8.astype(int) + np.random.default_rng(22).integers(-60, 60, gt_u8.shape), 0, 255
                    ).astype(np.uint8)
    sr_u8[0] = uint8_images(1, 45, 70, seed=23)[0]  # one unrelated pair

    def to_t(a):  # our input convention: [0,1] RGB float
        return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0

    metric = get_metric(f"clipscore-satlas:local-dir:{d}")
    got = metric(to_t(sr_u8), to_t(gt_u8))
    f_sr = torch.stack([_authors_features_f64(model, a, 32) for a in sr_u8])
    f_gt = torch.stack([_authors_features_f64(model, a, 32) for a in gt_u8])
    ref = torch.nn.functional.cosine_similarity(f_sr, f_gt)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(metric.embed(to_t(sr_u8)).double(), f_sr, atol=ATOL, rtol=1e-5)
    # and the standard pipeline really is different (normalised, RGB, antialiased bilinear resize)
    standard = get_metric(f"clipscore:local-dir:{d}").embed(to_t(sr_u8)).double()
    assert (standard - f_sr).abs().max() > 100 * ATOL * f_sr.abs().max()


# ---------------------------------------------------------------------------------------------------------
# missing weights: fail fast, one documented message, no network
# ---------------------------------------------------------------------------------------------------------

def test_missing_alias_weights_fail_fast(tmp_path, monkeypatch):
    import socket

    def no_network(*args, **kwargs):  # failing fast means not trying the network (no timing assertion here)
        raise AssertionError(f"a network connection was attempted: {args[1:]}")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    m = get_metric("clipscore:clip-rn50")
    with pytest.raises(WeightsNotFoundError) as info:
        m.check_weights()
    msg = str(info.value)
    assert "\n" not in msg
    # what to do comes first, where we looked after it
    assert msg.startswith("weights for clipscore:clip-rn50 (open_clip RN50/openai) not found: "
                          "run 'srmetrics models --fetch clip-rn50'")
    assert msg.index("Looked in: ") > msg.index("RN50/openai@/path/to/weights")
    assert str(tmp_path / "srcache" / "open_clip" / "RN50" / "openai") in msg
    assert str(tmp_path / "hf_home" / "hub" / "models--timm--resnet50_clip.openai") in msg
    assert "srmetrics models --fetch clip-rn50" in msg and "RN50/openai@/path/to/weights" in msg
    assert "offline mode is on" in msg
    with pytest.raises(WeightsNotFoundError):
        m.load()
    with pytest.raises(WeightsNotFoundError):
        m(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_missing_weights_other_formats(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="models--srtestorg--absent"):
        get_metric("clipscore:hf-hub:srtestorg/absent").load()
    with pytest.raises(WeightsNotFoundError, match="nowhere-dir"):
        get_metric(f"clipscore:local-dir:{tmp_path / 'nowhere-dir'}").load()
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        get_metric(f"clipscore:RN50/openai@{tmp_path / 'missing.pt'}").load()
    d, _ = write_local_dir(tmp_path / "noweights", TINY_VIT, PREP, seed=0)
    (d / "open_clip_model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="noweights"):
        get_metric(f"clipscore:local-dir:{d}").load()


def test_manual_file_in_cache_root_is_found(tmp_path):
    own = tmp_path / "srcache" / "open_clip" / "RN50" / "openai"
    own.mkdir(parents=True)
    (own / "RN50.pt").write_bytes(b"placeholder")
    assert get_metric("clipscore:clip-rn50").check_weights() == own / "RN50.pt"


def test_bf16_on_cpu_is_close(vit_dir):
    d, _ = vit_dir
    sr, gt = image_batch(3, 40, 40, seed=31)
    a = get_metric(f"clipscore:local-dir:{d}")(sr, gt)
    b = get_metric(f"clipscore:local-dir:{d}", precision="bf16")(sr, gt)
    torch.testing.assert_close(a, b, atol=0.05, rtol=0)


def test_embed_preprocesses_per_chunk(vit_dir, monkeypatch):
    """``batch_size`` bounds memory: images are preprocessed chunk by chunk (not all at the model size first),
    with the same embeddings as one pass; batch_size < 1 is a config error."""
    from clipscore_sr.metrics.clip import ClipModel

    d, _ = vit_dir
    m = get_metric(f"clipscore:local-dir:{d}")
    model = m.load()
    images = image_batch(5, 40, 40, seed=9)[0]
    whole = model.embed(images)
    seen = []
    real = ClipModel.prepare
    monkeypatch.setattr(ClipModel, "prepare", lambda self, x, v: seen.append(x.shape[0]) or real(self, x, v))
    torch.testing.assert_close(model.embed(images, batch_size=2), whole, atol=1e-5, rtol=0)
    assert seen == [2, 2, 1]
    for bad in (0, -3, "8"):
        with pytest.raises(ConfigError, match="batch_size"):
            get_metric(f"clipscore:local-dir:{d}", batch_size=bad)


def test_rn_towers_run_channels_last_on_cpu_with_the_same_embeddings(tmp_path):
    """An RN (ModifiedResNet) tower is converted to channels_last on the CPU (1.2x for RN50 in
    benchmarks/bench_clip_cpu.py); its embeddings equal the contiguous model's to float rounding."""
    from clipscore_sr.metrics.clip import clear_model_cache, load_clip

    from .test_clip_support import PREP, TINY_RN, TINY_VIT, write_local_dir

    clear_model_cache()
    d, _ = write_local_dir(tmp_path / "rn", TINY_RN, PREP, seed=1)
    clip = load_clip(f"local-dir:{d}")
    assert clip.channels_last and clip.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(3, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    fast = clip.embed(x)
    plain = clip.visual.to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        ref = plain(clip.prepare(x)).float()
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    d2, _ = write_local_dir(tmp_path / "vit", TINY_VIT, PREP, seed=1)
    assert not load_clip(f"local-dir:{d2}").channels_last
    clear_model_cache()
