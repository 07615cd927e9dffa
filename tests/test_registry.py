"""The metric registry: one way to build any metric by id, directions, close-match errors."""

from __future__ import annotations

import pytest

from clipscore_sr import get_metric, list_metrics
from clipscore_sr.errors import UnknownMetricError
from clipscore_sr.metrics.base import parse_metric_list, split_metric_id

EXPECTED_DIRECTIONS = {
    "psnr": True, "ssim": True, "ssim-gray": True, "cpsnr": True, "cpsnr-satlas": True, "clipscore": True,
    "clipscore-satlas": True, "samscore": True, "lpips": False, "lpips-alex": False, "lpips-vgg": False,
    "lpips-squeeze": False,
}


def test_every_metric_is_registered_with_its_direction_and_docs() -> None:
    infos = {i.name: i for i in list_metrics()}
    assert set(EXPECTED_DIRECTIONS) <= set(infos)
    for name, higher in EXPECTED_DIRECTIONS.items():
        info = infos[name]
        assert info.higher_is_better is higher, name
        assert info.description and info.units and info.value_range, name
    assert infos["clipscore"].needs_weights and infos["clipscore"].is_differentiable
    assert not infos["psnr"].needs_weights


def test_ids_options_and_specs() -> None:
    m = get_metric("PSNR", crop_border=4)
    assert m.id == "psnr" and m.provenance()["options"]["crop_border"] == 4
    assert split_metric_id("clipscore:local-dir:/a/b") == ("clipscore", "local-dir:/a/b")
    assert get_metric("clipscore:clip-rn50").id == "clipscore:clip-rn50"  # no weights are loaded to build it
    with pytest.raises(UnknownMetricError, match="takes no ':SPEC' part"):
        get_metric("psnr:foo")
    with pytest.raises(UnknownMetricError, match="did you mean 'lpips-alex'"):
        get_metric("lpips-alx")
    with pytest.raises(UnknownMetricError, match="unknown metric 'zzz'"):
        get_metric("zzz")


def test_metric_list_parsing() -> None:
    assert parse_metric_list(" psnr, ssim,,psnr ") == ["psnr", "ssim"]
    with pytest.raises(UnknownMetricError, match="no metric ids"):
        parse_metric_list(" , ")
