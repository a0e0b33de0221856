"""Depth thresholds calibrated from measured per-stage changes (quality target)."""

import json

import numpy as np
import pytest

from climgen.errors import ConfigError


@pytest.fixture(scope="module")
def calibrated(hsurf_coarse):
    return {quality: hsurf_coarse.climgen.synthesize(factor=4, quality=quality) for quality in (0.5, 0.995, 0.99999)}


def test_quality_target_orders_the_depth(calibrated):
    means = [float(calibrated[q]["refinement_depth"].mean()) for q in (0.5, 0.995, 0.99999)]
    assert means[0] == 0.0  # a lax target skips every learned stage
    assert means[0] <= means[1] <= means[2]
    assert means[2] == 2.0  # an exacting target needs every stage wherever anything changes


def test_calibration_is_recorded_and_consistent(calibrated):
    provenance = json.loads(calibrated[0.995].attrs["climgen_provenance"])
    record = provenance["calibration"]
    assert record["quality"] == 0.995 and len(record["thresholds"]) == 2
    assert provenance["depth_policy"] == {"policy": "quality", "thresholds": record["thresholds"]}
    assert record["thresholds"] == sorted(record["thresholds"])
    assert 0 < len(record["samples"]) <= 16
    for sample in record["samples"]:
        assert len(sample["change"]) == 2 and all(0 <= change <= 1 for change in sample["change"])
        if sample["change"][0] > 1 - 0.995:  # the first stage mattered: the tile must get it
            assert sample["score"] >= record["thresholds"][0]
    assert "quality=0.995" in calibrated[0.995].attrs["history"].splitlines()[0]


def test_quality_is_coarse_consistent(calibrated, hsurf_coarse):
    from climgen.testing import assert_coarse_consistent

    assert_coarse_consistent(calibrated[0.995]["HSURF"], hsurf_coarse["HSURF"], 4)


def test_quality_option_errors(hsurf_coarse):
    with pytest.raises(ConfigError, match="quality must be in"):
        hsurf_coarse.climgen.synthesize(factor=4, quality=1.0)
    with pytest.raises(ConfigError, match="without budget"):
        hsurf_coarse.climgen.synthesize(factor=4, quality=0.99, budget=0.5)
    with pytest.raises(ConfigError, match="without budget and without uniform"):
        hsurf_coarse.climgen.synthesize(factor=4, quality=0.99, adaptive=False)
    assert np.isfinite(hsurf_coarse.climgen.synthesize(factor=2, quality=0.99)["HSURF"]).all()
