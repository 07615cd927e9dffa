"""LPIPS metrics against the ``lpips`` package called directly, with random trunks saved in torchvision's cache.

The trunk files are real torchvision state dicts (same keys, shapes and file names torchvision expects under
``$TORCH_HOME/hub/checkpoints``) with randomly initialised convolution weights. To keep the VGG16/AlexNet files
small, the fully connected classifier tensors (never used by LPIPS) are stored as zero-stride views of a single
zero, which ``torch.save`` writes as one element and ``load_state_dict`` broadcasts back to full size.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error

import lpips as lpips_pkg
import pytest
import torch
import torchvision

from clipscore_sr.errors import InputMismatchError, WeightsNotFoundError
from clipscore_sr.metrics import get_metric, list_metrics
from clipscore_sr.metrics import lpips as lpips_mod
from clipscore_sr.metrics.lpips import backbone_checkpoint, build_lpips, lpips_distance

ARCH = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16, "squeeze": torchvision.models.squeezenet1_1}
IDS = {"lpips": "vgg", "lpips-vgg": "vgg", "lpips-alex": "alex", "lpips-squeeze": "squeeze"}
TOL = 1e-6


REAL_URLS = {net: lpips_mod.backbone_url(net) for net in ARCH}


def _save_trunk(make, home, net: str, mp: pytest.MonkeyPatch) -> None:
    """Save a random trunk twice: under torchvision's real file name (what ``lpips`` called directly loads) and
    under the same stem with the file's true SHA-256 prefix, which our loader is pointed at (its real name's
    hash belongs to the ImageNet file, which the random file cannot match)."""
    state = make().state_dict()
    state = {k: (v if k.startswith("features") else torch.zeros((), dtype=v.dtype).expand(v.shape)) for k, v in state.items()}
    real = home / "hub" / "checkpoints" / REAL_URLS[net].rsplit("/", 1)[1]
    real.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, real)
    digest = hashlib.sha256(real.read_bytes()).hexdigest()[:8]
    ours = real.with_name(real.name.rsplit("-", 1)[0] + f"-{digest}.pth")
    shutil.copyfile(real, ours)
    urls = {**getattr(_save_trunk, "urls", {}), net: REAL_URLS[net].rsplit("/", 1)[0] + "/" + ours.name}
    _save_trunk.urls = urls
    mp.setattr(lpips_mod, "backbone_url", lambda n: urls.get(n, REAL_URLS.get(n)))


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("torch_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(home))
    mp.delenv("CLIPSCORE_SR_OFFLINE", raising=False)
    torch.manual_seed(0)
    for net, make in ARCH.items():
        _save_trunk(make, home, net, mp)
        assert backbone_checkpoint(net).parent == home / "hub" / "checkpoints"
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(3, 3, 40, 36, generator=g)
    sr = (gt + 0.15 * torch.randn(3, 3, 40, 36, generator=g)).clamp(0, 1)
    return sr, gt


pytestmark = pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")


@pytest.mark.parametrize("metric_id", list(IDS))
def test_matches_lpips_package_on_minus_one_one_inputs(torch_home, images, metric_id: str) -> None:
    sr, gt = images
    metric = get_metric(metric_id)
    got = metric(sr, gt)
    direct = lpips_pkg.LPIPS(net=IDS[metric_id], version="0.1", verbose=False).eval()
    with torch.no_grad():
        want = direct(sr * 2 - 1, gt * 2 - 1).flatten().double()
        raw = direct(sr, gt).flatten().double()  # [0,1] passed straight in, as the paper's code did
    assert got.dtype == torch.float64 and got.shape == (3,)
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)
    assert (got > 0).all()
    assert (got - raw).abs().max() > 1e-3  # the rescaling really happens


def test_identical_images_give_zero_and_batch_size_does_not_matter(torch_home, images) -> None:
    sr, gt = images
    metric = get_metric("lpips-squeeze")
    assert metric(gt, gt).abs().max().item() < 1e-7
    batched = metric(sr, gt)
    single = torch.cat([metric(sr[i : i + 1], gt[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)


def test_single_band_is_repeated_and_other_band_counts_fail(torch_home, images) -> None:
    sr, gt = images
    metric = get_metric("lpips-squeeze")
    torch.testing.assert_close(metric(sr[:, :1], gt[:, :1]), metric(sr[:, :1].repeat(1, 3, 1, 1), gt[:, :1].repeat(1, 3, 1, 1)))
    with pytest.raises(InputMismatchError, match="4 channels.*--bands"):
        metric(torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32))
    with pytest.raises(InputMismatchError, match="too small"):
        metric(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(InputMismatchError, match="differs"):
        metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 34))


def test_model_loaded_once_frozen_in_eval(torch_home) -> None:
    metric = get_metric("lpips-squeeze")
    model = metric.load()
    assert metric.load() is model
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    prov = metric.provenance()
    assert prov["backbone_weights"] == backbone_checkpoint("squeeze").name and prov["input_scaling"] == "[0,1] -> [-1,1]"


def test_functional_core_is_differentiable_wrt_input_only(torch_home, images) -> None:
    sr, gt = images
    model = build_lpips("squeeze")
    x = sr.clone().requires_grad_(True)
    lpips_distance(x, gt, model).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_missing_weights_offline_fail_before_building(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(lpips_mod, "backbone_url", REAL_URLS.__getitem__)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CLIPSCORE_SR_OFFLINE", "1")

    def no_build(*args, **kwargs):
        raise AssertionError("lpips.LPIPS must not be constructed when weights are missing")

    monkeypatch.setattr(lpips_pkg, "LPIPS", no_build)
    metric = get_metric("lpips")  # construction is lazy: no error yet
    expected = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(WeightsNotFoundError) as err:
        metric.check_weights()
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("weights for LPIPS-vgg backbone (vgg16) not found")
    assert str(expected) in msg and "TORCH_HOME" in msg
    with pytest.raises(WeightsNotFoundError):
        metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_missing_weights_online_download_failure_is_reported(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(lpips_mod, "backbone_url", REAL_URLS.__getitem__)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("CLIPSCORE_SR_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def fail(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(WeightsNotFoundError, match="download failed: URLError"):
        get_metric("lpips-alex").load()
    assert calls and calls[0][0].endswith("alexnet-owt-7be5be79.pth") and calls[0][2] == "7be5be79"


def test_registry_entries() -> None:
    infos = {i.name: i for i in list_metrics()}
    for name in IDS:
        info = infos[name]
        assert not info.higher_is_better and info.needs_weights
        assert "[-1,1]" in info.description and info.units and info.value_range


def test_pipeline_passes_precision_and_bf16_is_close(torch_home, images) -> None:
    from clipscore_sr.pipeline import build_metrics

    sr, gt = images
    (metric,) = build_metrics(["lpips-squeeze"], device=torch.device("cpu"), precision="bf16",
                              metric_options={"crop_border": 4, "sam_checkpoint": "x.pth"})
    assert metric.precision == "bf16" and metric.provenance()["precision"] == "bf16"
    fp32 = get_metric("lpips-squeeze")(sr, gt)
    torch.testing.assert_close(metric(sr, gt), fp32, rtol=0.05, atol=0.01)


# --- security: nothing runs code from a weights file (issue 10, item 1) -------------------------------------


class _Payload:
    """Unpickling this object writes a marker file (what a crafted "weights" file would do)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_file(path, marker) -> None:
    """A torch.save file whose pickle holds a payload next to plausible tensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": torch.zeros(1), "evil": _Payload(marker)}, path)


@pytest.mark.parametrize("net", ["squeeze", "alex", "vgg"])
def test_crafted_backbone_under_official_name_is_refused_and_never_runs(tmp_path, monkeypatch, net) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(lpips_mod, "backbone_url", REAL_URLS.__getitem__)
    marker = tmp_path / "pwned"
    path = backbone_checkpoint(net)
    assert path.name == REAL_URLS[net].rsplit("/", 1)[1]  # the official name, e.g. vgg16-397923af.pth
    _malicious_file(path, marker)
    with pytest.raises(WeightsNotFoundError, match="fail the integrity check") as err:
        build_lpips(net)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    metric = get_metric({"vgg": "lpips", "alex": "lpips-alex", "squeeze": "lpips-squeeze"}[net])
    with pytest.raises(WeightsNotFoundError, match="fail the integrity check"):
        metric.check_weights()  # what srmetrics demo asks before turning LPIPS on: it skips the file
    assert not marker.exists()


def test_crafted_backbone_with_matching_hash_is_refused_by_weights_only(tmp_path, monkeypatch) -> None:
    """Even a file whose name carries its own hash (so the integrity check passes) is never unpickled freely."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "pwned"
    tmp = tmp_path / "evil.pth"
    _malicious_file(tmp, marker)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = tmp_path / "hub" / "checkpoints" / f"squeezenet1_1-{digest}.pth"
    path.parent.mkdir(parents=True)
    shutil.move(tmp, path)
    monkeypatch.setattr(lpips_mod, "backbone_url", lambda n: f"https://example.invalid/{path.name}")
    with pytest.raises(WeightsNotFoundError, match="could not be loaded safely"):
        get_metric("lpips-squeeze")(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert not marker.exists()
    # the attack is real: a plain torch.load of the same file runs the payload
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_lpips_package_is_never_asked_to_load_weights(torch_home, monkeypatch, images) -> None:
    """The trunk is built empty (pnet_rand=True) and the package's own loader (pretrained=True) is not used."""
    calls = []
    real = lpips_pkg.LPIPS

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(lpips_pkg, "LPIPS", spy)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("torchvision loader used"))
    sr, gt = images
    build_lpips("squeeze")(sr * 2 - 1, gt * 2 - 1)
    assert calls and all(c["pretrained"] is False and c["pnet_rand"] is True for c in calls)
