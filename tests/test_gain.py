"""Predicted gain per stage and tile, and the depth policies on it (climgen.depth.gain)."""

import numpy as np
import pytest

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
