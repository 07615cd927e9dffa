"""No third-party loader runs code from a weights file (issue 10, item 1): crafted pickles whose ``__reduce__``
writes a marker file are refused before anything is unpickled freely. LPIPS and VGG19 are covered in
tests/test_lpips.py and tests/test_train.py; this file covers open_clip checkpoints and the shared helpers."""

from __future__ import annotations

import hashlib

import pytest
import torch

from clipscore_sr.errors import SRMetricsError, WeightsNotFoundError
from clipscore_sr.metrics import get_metric
from clipscore_sr.weights import load_state_dict_file, name_hash_prefix

from .test_clip_support import PREP, TINY_VIT, make_model, register_tiny_arch, write_local_dir


class Payload:
    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_state(marker) -> dict:
    state = {k: v.contiguous() for k, v in make_model(TINY_VIT, 0).state_dict().items()}
    state["logit_scale"] = Payload(marker)  # a payload among real tensors
    return state


@pytest.mark.parametrize("suffix", [".pt", ".bin"])
def test_open_clip_checkpoint_file_with_payload_never_runs(tmp_path, suffix) -> None:
    name = register_tiny_arch(tmp_path)
    marker = tmp_path / "pwned"
    f = tmp_path / f"weights{suffix}"
    torch.save(_evil_state(marker), f)
    with pytest.raises(SRMetricsError, match="could not be loaded safely") as err:
        get_metric(f"clipscore:{name}@{f}", preprocess=PREP).load()
    assert "\n" not in str(err.value) and not marker.exists()


def test_open_clip_folder_with_payload_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    d, _ = write_local_dir(tmp_path / "clipdir", TINY_VIT, PREP, seed=1, weights="open_clip_pytorch_model.bin")
    torch.save(_evil_state(marker), d / "open_clip_pytorch_model.bin")
    with pytest.raises(SRMetricsError, match="could not be loaded safely"):
        get_metric(f"clipscore:local-dir:{d}").load()
    assert not marker.exists()


def test_name_hash_prefix_and_integrity_check(tmp_path) -> None:
    assert name_hash_prefix("vgg16-397923af.pth") == "397923af"
    assert name_hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert name_hash_prefix("model.pth") == "" and name_hash_prefix("vgg-12ab.pth") == ""  # < 8 hex digits
    f = tmp_path / "w.pth"
    torch.save({"a": torch.arange(3)}, f)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    assert torch.equal(load_state_dict_file(f, what="x", sha256_prefix=digest[:10])["a"], torch.arange(3))
    with pytest.raises(WeightsNotFoundError, match="integrity check"):
        load_state_dict_file(f, what="x", sha256_prefix="0" * 8 if not digest.startswith("0" * 8) else "f" * 8)
    torch.save({"a": torch.zeros(1), "b": [1, 2]}, f)
    with pytest.raises(WeightsNotFoundError, match="not a state dict of tensors"):
        load_state_dict_file(f, what="x")


def test_sam_checkpoint_with_payload_never_runs(tmp_path) -> None:
    """segment-anything's own builder calls torch.load without weights_only in some versions; we never use it:
    the checkpoint is read by us with weights_only=True."""
    marker = tmp_path / "pwned"
    f = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1), "x": Payload(marker)}, f)
    with pytest.raises(SRMetricsError) as err:
        get_metric("samscore", sam_checkpoint=str(f)).load()
    assert "\n" not in str(err.value) and not marker.exists()
