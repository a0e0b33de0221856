"""Compute accounting equals the convolution work actually done during refinement."""

import numpy as np
import pytest

from climgen.compute import compute_report, counting_macs
from climgen.models.checkpoint import load_checkpoint
from climgen.refine import TileRefiner
from climgen.testing import rough_field
from climgen.tiling import TileLayout


@pytest.mark.parametrize("merge", [1, 2])
def test_reported_macs_match_the_convolutions_that_ran(merge):
    model = load_checkpoint("default").module
    layout = TileLayout((20, 28), 8, 4, merge)
    depth = np.array([[0, 1, 2, 2], [1, 0, 2, 1], [2, 2, 0, 0]])
    with counting_macs(model) as counted:
        fields = np.stack([rough_field((20, 28), seed=s) for s in range(2)])
        TileRefiner(model, 4, layout).refine(fields, depth, None, [(0, s) for s in range(2)])
    report = compute_report(model, layout, depth, full_depth=2, fields=2)
    assert counted[0] > 0
    assert report["macs"] == counted[0]
    assert 0 < report["fraction_of_uniform"] < 1


def test_uniform_costs_the_full_amount(hsurf_coarse):
    import json

    uniform = json.loads(hsurf_coarse.climgen.synthesize(factor=4, adaptive=False).attrs["climgen_provenance"])
    compute = uniform["compute"]
    assert compute["fraction_of_uniform"] == 1.0 and compute["macs"] == compute["macs_uniform"]
    assert uniform["depth_policy"] == {"policy": "uniform"}
    budgeted = json.loads(hsurf_coarse.climgen.synthesize(factor=4, budget=0.3).attrs["climgen_provenance"])
    assert budgeted["compute"]["fraction_of_uniform"] <= 0.3 + 1e-9
    assert budgeted["depth_policy"] == {"policy": "budget", "budget": 0.3}
