"""Compute accounting equals the convolution work actually done during refinement."""

import numpy as np
import pytest

from climgen.depth.compute import compute_report, counting_macs, tile_macs, window_macs
from climgen.models.checkpoint import load_checkpoint
from climgen.refine import TileRefiner
from climgen.testing import rough_field
from climgen.tiling import TileLayout


@pytest.mark.parametrize("merge", [1, 2])
@pytest.mark.parametrize("with_covariate", [False, True])
def test_reported_macs_match_the_convolutions_that_ran(merge, with_covariate):
    model = load_checkpoint("default").module
    layout = TileLayout((20, 28), 8, 4, merge)
    depth = np.array([[0, 1, 2, 2], [1, 0, 2, 1], [2, 2, 0, 0]])
    covariates = rough_field((80, 112), seed=9)[None] if with_covariate else None
    with counting_macs(model) as counted:
        fields = np.stack([rough_field((20, 28), seed=s) for s in range(2)])
        TileRefiner(model, 4, layout).refine(fields, depth, covariates, [(0, s) for s in range(2)])
    report = compute_report(model, layout, depth, full_depth=2, fields=2, covariates=with_covariate)
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
    assert budgeted["depth_policy"]["policy"] == "budget" and budgeted["depth_policy"]["budget"] == 0.3


@pytest.mark.parametrize("merge, later_halo", [(1, None), (2, None), (2, 2)])
def test_macs_per_tile_add_up_to_what_ran_and_follow_the_depth(merge, later_halo):
    model = load_checkpoint("default").module
    layout = TileLayout((20, 28), 8, 4, merge, later_halo=later_halo)
    depth = np.array([[0, 1, 2, 2], [1, 0, 2, 1], [2, 2, 0, 0]])
    spent = tile_macs(model, layout, depth)
    assert spent.sum() == pytest.approx(window_macs(model, layout, depth))
    assert (spent[depth == 0] == 0).all() and (spent[depth > 0] > 0).all()
    if merge == 1:  # separate windows: a deeper tile of the same size costs more
        assert spent[0, 2] > spent[0, 1]


def test_every_output_maps_the_compute_it_spent(hsurf_coarse):
    import json

    out = hsurf_coarse.climgen.synthesize(factor=4, budget=0.3)
    compute = json.loads(out.attrs["climgen_provenance"])["compute"]
    macs = out["refinement_macs"].values.astype(np.float64)
    assert macs.sum() == pytest.approx(compute["macs"], rel=1e-5)  # one field
    assert (macs[out["refinement_depth"].values == 0] == 0).all()
    assert "refinement_macs" in out["HSURF"].attrs["ancillary_variables"].split()
