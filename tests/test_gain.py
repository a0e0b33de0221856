"""Predicted gain per stage and tile, and the depth policies on it (climgen.depth.gain)."""

import numpy as np
import pytest
import xarray as xr

from climgen import pipeline
from climgen.depth import gain
from climgen.depth.compute import window_cells
from climgen.errors import ConfigError
from climgen.testing import make_dataset, rough_field
from climgen.tiling import TileLayout


def _prediction(seed: int = 0, shape=(6, 7), full_depth: int = 3) -> gain.GainPrediction:
    rng = np.random.default_rng(seed)
    stage_gain = rng.gamma(0.5, 0.05, (full_depth, *shape)) * 0.3 ** np.arange(full_depth)[:, None, None]
    constant = rng.random(shape) < 0.1
    return gain.GainPrediction(np.where(constant, 0, stage_gain), constant)


def test_tolerance_stops_where_the_remaining_gain_is_small():
    prediction = _prediction()
    depths = [gain.depth_by_tolerance(prediction, tolerance) for tolerance in (0.001, 0.01, 0.05, 0.2)]
    remaining = prediction.remaining()
    for tolerance, depth in zip((0.001, 0.01, 0.05, 0.2), depths, strict=True):
        left = np.take_along_axis(remaining, depth[None].astype(int), 0)[0]
        assert (left < tolerance).all(), "a tile stops only where what it skips is below the tolerance"
        shallower = np.maximum(depth.astype(int) - 1, 0)
        before = np.take_along_axis(remaining, shallower[None], 0)[0]
        assert (before[depth > 0] >= tolerance).all(), "and not before"
    for looser, tighter in zip(depths[1:], depths[:-1], strict=True):
        assert (looser <= tighter).all()
    assert (depths[0][prediction.constant] == 0).all()


def test_budget_maps_are_nested_and_keep_the_budget():
    prediction = _prediction(1)
    layout = TileLayout((6 * 8, 7 * 8), tile=8, halo=4, merge=2, later_halo=2)

    def cost(depth):
        return window_cells(layout, depth)

    full = cost(np.where(prediction.constant, 0, 3))
    previous = None
    for budget in [0.05, 0.1, 0.2, 0.4, 0.7, 1.0]:
        depth = gain.depth_by_budget(prediction, budget, cost)
        assert cost(depth) <= budget * full * (1 + 1e-9)
        if previous is not None:
            assert (depth >= previous).all(), "a larger budget only adds stages"
        previous = depth
    np.testing.assert_array_equal(previous, np.where(prediction.constant, 0, 3))
    with pytest.raises(ConfigError, match="budget"):
        gain.depth_by_budget(prediction, 0, cost)


@pytest.mark.parametrize("tolerance", [0, 1, -0.1, "0.01", True])
def test_bad_tolerance(tolerance):
    with pytest.raises(ConfigError, match="tolerance"):
        gain.check_tolerance(tolerance)


def test_quality_maps_to_a_tolerance():
    assert gain.tolerance_for_quality(0.995) == pytest.approx(1 / 0.995**2 - 1)


def _rough_and_smooth(seed: int = 0):
    """A field rough in its east half and smooth in its west half."""
    rough = rough_field((64, 128), seed=seed, smoothness=1.5)
    smooth = rough_field((64, 128), seed=seed + 1, smoothness=5.0)
    values = np.concatenate([smooth[:, :64], 30 * rough[:, 64:]], axis=1) + 280
    ds = make_dataset("latlon", shape=(64, 128), seed=seed)
    return ds.assign(tas=(ds["tas"].dims, values.astype(np.float64), ds["tas"].attrs))


def test_rough_tiles_are_predicted_to_gain_more_and_go_deeper():
    ds = _rough_and_smooth()
    job = pipeline.plan(ds, pipeline.make_config(factor=4, tile_size=8))
    total = job.gain.total
    west, east = total[:, : total.shape[1] // 2], total[:, total.shape[1] // 2 :]
    assert np.median(east) > 5 * np.median(west)
    assert job.depth[:, job.depth.shape[1] // 2 :].mean() > job.depth[:, : job.depth.shape[1] // 2].mean()


def test_the_prediction_does_not_depend_on_units():
    """Temperature in K or in degC and mK: the same predicted gain and depth."""
    ds = _rough_and_smooth(2)
    other = ds.copy()
    other["tas"] = (ds["tas"] - 273.15) * 1000
    other["tas"].attrs["units"] = "mK"
    first, second = (pipeline.plan(d, pipeline.make_config(factor=4, tile_size=8)) for d in (ds, other))
    np.testing.assert_allclose(first.gain.stage_gain, second.gain.stage_gain, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(first.depth, second.depth)


def test_same_seed_same_prediction_and_budgets_monotone_in_cost():
    ds = _rough_and_smooth(3)
    config = pipeline.make_config(factor=4, tile_size=8, seed=7)
    first, second = pipeline.plan(ds, config), pipeline.plan(ds, config)
    np.testing.assert_array_equal(first.gain.stage_gain, second.gain.stage_gain)
    costs = [
        window_cells(first.prepared.layout, pipeline.plan(ds, pipeline.make_config(factor=4, tile_size=8, budget=b)).depth)
        for b in (0.2, 0.5, 1.0)
    ]
    assert costs == sorted(costs)


def test_tiles_the_self_test_cannot_see_take_full_depth_and_say_so():
    """A domain too small to average by 2 (or an edge strip one coarse row high) has no
    predicted gain: its tiles take every stage, the map is NaN there, and a domain with no
    tested tile warns, where it used to get bicubic interpolation alone."""
    import warnings

    from climgen.errors import ClimgenWarning

    small = make_dataset("latlon", shape=(7, 7))
    with pytest.warns(ClimgenWarning, match="too small for the gain self-test"):
        refined = small.climgen.synthesize(factor=4)
    assert (refined["refinement_depth"] == 2).all() and refined["predicted_gain"].isnull().all()
    # a global band names its own size, not the columns wrapped round the seam for the tiles
    band = make_dataset("latlon", shape=(2, 64), times=1).isel(lat=[0]).assign_coords(lon=np.arange(64) * 5.625)
    band["lat"].attrs["bounds"] = "lat_bnds"
    band["lat_bnds"] = (("lat", "nv"), [[-2.8125, 2.8125]])
    with pytest.warns(ClimgenWarning, match=r"the domain \(1 x 64 coarse cells\)"):
        band.climgen.synthesize(factor=4)
    strip = make_dataset("latlon", shape=(33, 32))  # tiles of 8: the last row of tiles is one coarse row
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClimgenWarning)
        refined = strip.climgen.synthesize(factor=4)
    last = refined.isel(lat=slice(-4, None))
    assert (last["refinement_depth"] == 2).all() and last["predicted_gain"].isnull().all()
    assert refined["predicted_gain"].isel(lat=slice(0, 32)).notnull().all()


def test_a_run_spends_at_most_its_budget_of_the_work_it_states():
    """The budget counts the work as the run does it (shared windows, the network's margins):
    the provenance's share of uniform's multiply-accumulates never exceeds it, where counting
    windows without margins let a small domain spend twice its budget."""
    import json

    ds = make_dataset("latlon", shape=(32, 48), times=1)
    for budget in (0.05, 0.1, 0.3, 0.7):
        refined = ds.climgen.synthesize(factor=4, budget=budget)
        spent = json.loads(refined.attrs["climgen_provenance"])["compute"]["fraction_of_uniform"]
        assert spent <= budget * (1 + 1e-9), (budget, spent)


def test_edge_cells_are_beside_missing_values_or_at_a_bound():
    field = np.full((6, 6), 0.5)
    field[0, 0] = np.nan  # a corner of land in an ocean field
    field[5, 5] = 1.0  # held at the upper bound (land fraction 1)
    field[5, 0] = 0.0
    plain = gain.edge_cells(field)
    assert np.isnan(plain[0, 0]), "missing cells are not counted"
    assert plain[0, 1] == plain[1, 0] == plain[1, 1] == 1, "the cells around a missing one are its coastline"
    assert plain[2, 2] == plain[5, 5] == 0, "no bounds: nothing else is an edge"
    bounded = gain.edge_cells(field, (0.0, 1.0))
    assert bounded[5, 5] == bounded[5, 0] == 1 and bounded[3, 3] == 0
    assert gain.edge_cells(field * 100, (0.0, 100.0))[5, 5] == 1, "the same in percent"


def test_edge_tiles_keep_the_models_skill_at_later_stages():
    """Two tiles alike but for their edge share: the second stage of the one on a coastline is
    predicted to keep the first stage's skill, the other's to lose STAGE_DECAY of it."""
    ones = np.ones((1, 2))
    sums = gain._Sums(base=ones * 4.0, model=ones * 3.0, cells=ones * 4, octave=np.array([4.0, 4.0, 8.0, 4.0]), fields=1)
    sums.edge, sums.edge_cells, sums.edge_domain = np.array([[0.0, 4.0]]), ones * 4, np.array([4.0, 8.0])
    prediction = gain.predict(sums, 2, np.zeros((1, 2), dtype=bool))
    (first,), (second,) = prediction.stage_gain
    assert first[0] == pytest.approx(first[1])
    assert second[0] / first[0] == pytest.approx(gain.STAGE_DECAY * prediction.octave_ratio)
    assert second[1] / first[1] == pytest.approx(prediction.octave_ratio)
    assert prediction.edge_share == pytest.approx(0.5)


def test_a_run_counts_the_edges_of_a_masked_or_bounded_field():
    ds = _rough_and_smooth(4)
    values = ds["tas"].values.copy()
    values[:, -8:] = np.nan  # land along the east edge of a masked field
    masked = ds.assign(tas=(ds["tas"].dims, values, ds["tas"].attrs))
    config = pipeline.make_config(factor=4, tile_size=8)
    open_water, coast = (pipeline.plan(d, config).depth_policy["edge_share"] for d in (ds, masked))
    assert open_water == 0 and 0 < coast < 0.1
    fraction = ds.assign(sftlf=(ds["tas"].dims, np.clip(ds["tas"].values - 280, 0, 1), {"units": "1"}))[["sftlf"]]
    fraction["sftlf"].attrs["standard_name"] = "land_area_fraction"
    assert pipeline.plan(fraction, config).depth_policy["edge_share"] > 0.5, "land fraction held at 0 or 1"


def test_cells_where_a_fine_covariate_has_detail_count_as_edges():
    fine = np.zeros((1, 16, 32))
    fine[0, :, 16:] = np.random.default_rng(0).normal(0, 100, (16, 16))  # relief in the east only
    detail = gain.covariate_detail(fine, 4)
    assert detail.shape == (4, 8)
    assert (detail[:, :4] == 0).all() and (detail[:, 4:] == 1).all()
    assert gain.covariate_detail(None, 4) is None
    assert (gain.covariate_detail(np.full((1, 8, 8), 5.0), 4) == 0).all(), "a flat covariate has no detail"


def test_a_run_with_a_covariate_keeps_the_skill_where_the_covariate_has_detail():
    ds = _rough_and_smooth(5)
    lat, lon = ds["lat"].values, ds["lon"].values
    fine_lat = np.linspace(lat[0], lat[-1], 4 * lat.size)
    fine_lon = np.linspace(lon[0], lon[-1], 4 * lon.size)
    relief = np.random.default_rng(1).normal(500, 200, (fine_lat.size, fine_lon.size))
    relief[:, : fine_lon.size // 2] = 0.0  # flat sea in the west
    elevation = xr.DataArray(relief, coords={"lat": fine_lat, "lon": fine_lon}, dims=("lat", "lon"), attrs={"units": "m"})
    config = pipeline.make_config(factor=4, tile_size=8)
    plain = pipeline.plan(ds, config)
    guided = pipeline.plan(ds, config, covariates={"elevation": elevation})
    assert plain.depth_policy["edge_share"] == 0
    assert 0.4 < guided.depth_policy["edge_share"] < 0.6, "the half with relief"
