"""Variables that come in order (daily minimum <= mean <= maximum) stay in order in every fine
cell, found from names and cell methods, by every path (memory, streaming, CLI), while blocks
still average exactly to the coarse values."""

from __future__ import annotations

import json
import subprocess
import warnings
from itertools import pairwise

import numpy as np
import pytest
import xarray as xr
import yaml

from climgen import pipeline, streaming
from climgen.conservation import order_fields, project_blocks
from climgen.errors import ConfigError
from climgen.io.physical import ordered_chains
from climgen.testing import assert_coarse_consistent

FACTOR = 4


def _block_means(values: np.ndarray) -> np.ndarray:
    ny, nx = values.shape[0] // FACTOR, values.shape[1] // FACTOR
    return values.reshape(ny, FACTOR, nx, FACTOR).mean(axis=(1, 3))


def _noisy_chain(seed: int, variables: int, spread: float = 0.3):
    """An ordered truth chain, its block means, and block-consistent estimates with
    independent errors (so they cross where the true gaps are small)."""
    rng = np.random.default_rng(seed)
    truth = [rng.normal(size=(32, 48))]
    for _ in range(variables - 1):
        truth.append(truth[-1] + np.abs(rng.normal(size=truth[0].shape)) * rng.uniform(0.0, 0.3))
    coarse = [_block_means(values) for values in truth]
    estimates = [project_blocks(t + rng.normal(size=t.shape) * spread, c, FACTOR) for t, c in zip(truth, coarse, strict=True)]
    return truth, coarse, estimates


@pytest.mark.parametrize("variables", [2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_ordering_keeps_block_means_and_moves_only_crossed_blocks_towards_the_truth(seed, variables):
    truth, coarse, estimates = _noisy_chain(seed, variables)
    before = [values.copy() for values in estimates]
    assert any((low > high).any() for low, high in pairwise(before)), "the estimates cross"
    changed = order_fields(estimates, coarse, FACTOR)
    for low, high in pairwise(estimates):
        assert (low <= high).all()
    for values, target in zip(estimates, coarse, strict=True):
        np.testing.assert_allclose(_block_means(values), target, rtol=0, atol=1e-12)
    # blocks in order before keep their bits; the others moved, never away from the (ordered) truth
    crossed = np.zeros(coarse[0].shape, dtype=bool)
    for low, high in pairwise(before):
        crossed |= _block_means((low > high).astype(float)) > 0
    assert changed == crossed.sum()
    untouched = ~crossed.repeat(FACTOR, 0).repeat(FACTOR, 1)
    for old, new in zip(before, estimates, strict=True):
        np.testing.assert_array_equal(old[untouched], new[untouched])

    def squared_error(fields):
        return sum(_block_means((f - t) ** 2) for f, t in zip(fields, truth, strict=True))

    assert (squared_error(estimates) <= squared_error(before) + 1e-12).all()


def test_out_of_order_or_missing_coarse_blocks_are_left_as_refined_and_bounds_come_first():
    _, coarse, estimates = _noisy_chain(7, 2)
    coarse[0][1, 2] = coarse[1][1, 2] + 1.0  # the coarse input itself out of order
    estimates[0][4:8, 8:12] += 1.0
    estimates[1][0, 0] = np.nan
    before = [values.copy() for values in estimates]
    order_fields(estimates, coarse, FACTOR)
    for old, new in zip(before, estimates, strict=True):
        np.testing.assert_array_equal(old[4:8, 8:12], new[4:8, 8:12])
        np.testing.assert_array_equal(old[:4, :4], new[:4, :4])
    elsewhere = np.ones(estimates[0].shape, dtype=bool)
    elsewhere[4:8, 8:12] = elsewhere[:4, :4] = False
    assert (estimates[0][elsewhere] <= estimates[1][elsewhere]).all()
    # the upper variable bounded: its cells stay within them, its means stay exact
    _, coarse, estimates = _noisy_chain(8, 2)
    upper = float(np.max(coarse[1])) + 0.05
    estimates[1] = project_blocks(estimates[1], coarse[1], FACTOR, bounds=(None, upper))
    order_fields(estimates, coarse, FACTOR, [None, (None, upper)])
    assert estimates[1].max() <= upper
    np.testing.assert_allclose(_block_means(estimates[1]), coarse[1], atol=1e-12)


def test_a_variable_missing_from_a_chain_leaves_the_others_in_order():
    """A day of tasmax lost: tasmin and tas are still ordered where they both have values."""
    truth, coarse, estimates = _noisy_chain(9, 3)
    coarse[2][:] = np.nan
    estimates[2][:] = np.nan
    coarse[0][0, 0] = np.nan  # and one block of tasmin: tas alone there
    estimates[0][:4, :4] = np.nan
    assert (estimates[0] > estimates[1]).any()
    changed = order_fields(estimates, coarse, FACTOR)
    assert changed > 0
    assert not (estimates[0] > estimates[1]).any()
    for values, means in zip(estimates[:2], coarse[:2], strict=True):
        np.testing.assert_allclose(_block_means(values), means, atol=1e-12)


def _variable(shape=(2, 2), **attrs) -> xr.DataArray:
    return xr.DataArray(np.zeros(shape), dims=("time", "y", "x")[-len(shape) :], attrs=attrs)


def test_chains_come_from_names_and_cell_methods():
    temperature = {"standard_name": "air_temperature", "units": "K"}
    ds = xr.Dataset({name: _variable(**temperature) for name in ("tasmax", "tas", "tasmin", "pr")})
    assert ordered_chains(ds, ["tasmax", "tas", "tasmin", "pr"]) == [("tasmin", "tas", "tasmax")]
    assert ordered_chains(ds, ["tas", "tasmax"]) == [("tas", "tasmax")]
    assert ordered_chains(xr.Dataset({"tn": _variable(), "tx": _variable()}), ["tx", "tn"]) == [("tn", "tx")]
    by_method = xr.Dataset(
        {
            "t_high": _variable(**temperature, cell_methods="time: maximum"),
            "t_low": _variable(**temperature, cell_methods="area: mean time: minimum"),
            "wind_gust": _variable(standard_name="wind_speed_of_gust", units="m s-1", cell_methods="time: maximum"),
        }
    )
    assert ordered_chains(by_method, list(by_method)) == [("t_low", "t_high")]
    # different shapes, or only a single statistic: no chain
    assert ordered_chains(xr.Dataset({"tasmin": _variable(), "tasmax": _variable((3, 2, 2))}), ["tasmin", "tasmax"]) == []
    assert ordered_chains(by_method, ["t_high", "wind_gust"]) == []
    celsius = ds.assign(tasmin=ds["tasmin"].assign_attrs(units="degC"))
    assert ordered_chains(celsius, ["tasmin", "tas", "tasmax"]) == [], "different units: not comparable"
    # one unit in two UDUNITS spellings (pint's registry lacks degrees_C): still in order
    spelt = ds.assign(
        {
            name: ds[name].assign_attrs(units=units)
            for name, units in (("tasmin", "degC"), ("tas", "degrees_C"), ("tasmax", "degree_C"))
        }
    )
    assert ordered_chains(spelt, ["tasmin", "tas", "tasmax"]) == [("tasmin", "tas", "tasmax")]


def _temperatures(hsurf_truth) -> xr.Dataset:
    """Daily minimum, mean and maximum temperature over real east-African terrain: a lapse
    rate on the real heights, and a diurnal range of 0.3 K over the sea and 10 K over land,
    which jumps at the coastline (where independent refinements cross)."""
    height = hsurf_truth["HSURF"]
    mean = 300.0 - 0.0065 * height
    half_range = xr.where(height > 1.0, 5.0, 0.15)
    attrs = {"standard_name": "air_temperature", "units": "K"}
    ds = xr.Dataset({"tasmin": mean - half_range, "tas": mean, "tasmax": mean + half_range})
    for name in ds:
        ds[name].attrs = dict(attrs)
    return ds.assign_coords(hsurf_truth.coords)


@pytest.fixture(scope="module")
def temperatures_coarse(hsurf_truth):
    from climgen.grid import coarsen_dataset

    return coarsen_dataset(_temperatures(hsurf_truth), FACTOR)


def _crossings(ds: xr.Dataset) -> int:
    return int((ds["tasmin"] > ds["tas"]).sum() + (ds["tas"] > ds["tasmax"]).sum())


def test_refined_temperatures_stay_in_order_and_no_further_from_the_truth(temperatures_coarse, hsurf_truth):
    truth = _temperatures(hsurf_truth)
    ordered = pipeline.synthesize(temperatures_coarse, factor=FACTOR, seed=2, members=2)
    free = pipeline.synthesize(temperatures_coarse, factor=FACTOR, seed=2, members=2, order=[])
    assert _crossings(free) > 0, "independent refinements cross at the coastline"
    assert _crossings(ordered) == 0
    for name in truth:
        assert_coarse_consistent(ordered[name].isel(realization=1), temperatures_coarse[name], FACTOR)
    errors = [sum(float(((out[name] - truth[name]) ** 2).sum()) for name in truth) for out in (ordered, free)]
    assert errors[0] <= errors[1]
    provenance = json.loads(ordered.attrs["climgen_provenance"])
    assert provenance["ordered_variables"] == [["tasmin", "tas", "tasmax"]]
    assert json.loads(free.attrs["climgen_provenance"])["ordered_variables"] == []
    pair = pipeline.synthesize(temperatures_coarse, factor=FACTOR, seed=2, order=[["tasmin", "tasmax"]])
    assert int((pair["tasmin"] > pair["tasmax"]).sum()) == 0


def test_out_of_order_coarse_cells_warn_and_bad_orders_are_config_errors(temperatures_coarse):
    coarse = temperatures_coarse.copy(deep=True)
    coarse["tasmin"][0, 0, 0] = coarse["tasmax"][0, 0, 0] + 1.0
    with pytest.warns(pipeline.OrderWarning, match="1 coarse cell"):
        pipeline.synthesize(coarse, factor=FACTOR)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pipeline.OrderWarning)
        pipeline.synthesize(coarse, factor=FACTOR, order=[])
    with pytest.raises(ConfigError, match="two or more distinct"):
        pipeline.synthesize(coarse, order=[["tasmin"]])
    with pytest.raises(ConfigError, match="two or more distinct"):
        pipeline.synthesize(coarse, order=[["tasmin", "tas"], ["tas", "tasmax"]])
    with pytest.raises(ConfigError, match="not refined here"):
        pipeline.synthesize(coarse, order=[["tasmin", "tmax"]])
    with pytest.raises(ConfigError, match="same units"):
        pipeline.synthesize(coarse.assign(tasmin=coarse["tasmin"].assign_attrs(units="degC")), order=[["tasmin", "tasmax"]])
    # found from their names, in other units: said, not dropped in silence; units spelt otherwise are the same
    with pytest.warns(pipeline.OrderWarning, match=r"tasmin <= tas <= tasmax are not kept in order: they differ in units"):
        pipeline.synthesize(coarse.assign(tasmin=coarse["tasmin"].assign_attrs(units="degC")), factor=FACTOR)
    spelt = coarse.assign(tasmin=coarse["tasmin"].assign_attrs(units="kelvin"))
    provenance = json.loads(pipeline.synthesize(spelt, factor=FACTOR, order=None).attrs["climgen_provenance"])
    assert provenance["ordered_variables"] == [["tasmin", "tas", "tasmax"]]
    # given the wrong way round: most cells out of order, and the warning says what is likely wrong
    with pytest.warns(pipeline.OrderWarning, match="probably not given lowest first"):
        pipeline.synthesize(temperatures_coarse, factor=FACTOR, order=[["tasmax", "tasmin"]])
    with pytest.raises(ConfigError, match="same dimensions"):
        pipeline.synthesize(coarse.assign(flat=coarse["tas"].isel(time=0)), order=[["flat", "tas"]])


def _climgen(climgen_cli, *arguments) -> subprocess.CompletedProcess:
    """Run the CLI quietly; it must succeed."""
    result = climgen_cli(*arguments, "--quiet")
    assert result.returncode == 0, result.stderr
    return result


def test_streamed_and_cli_outputs_keep_the_order_with_the_same_bits(temperatures_coarse, tmp_path, climgen_cli):
    source = tmp_path / "temperatures.nc"
    temperatures_coarse.to_netcdf(source)
    in_memory = pipeline.synthesize(temperatures_coarse, factor=FACTOR, seed=3, tile_size=8)
    config = pipeline.make_config(factor=FACTOR, seed=3, tile_size=8)
    with xr.open_dataset(source) as ds:
        job = streaming.run(ds, tmp_path / "out.zarr", config, options=streaming.StreamOptions(region_tiles=1, progress=False))
    assert "order       tasmin <= tas <= tasmax" in job.describe()
    with xr.open_zarr(tmp_path / "out.zarr") as got:
        for name in ("tasmin", "tas", "tasmax"):
            np.testing.assert_array_equal(got[name].values, in_memory[name].values)
        assert _crossings(got) == 0
    output = tmp_path / "pair.nc"
    assert (
        "kept in order tasmin <= tasmax;"
        in _climgen(climgen_cli, "synthesize", source, output, "--order", "tasmin,tasmax").stdout
    )
    with xr.open_dataset(output) as pair:
        assert int((pair["tasmin"] > pair["tasmax"]).sum()) == 0
    _climgen(climgen_cli, "synthesize", source, tmp_path / "none.nc", "--order", "none")
    with xr.open_dataset(tmp_path / "none.nc") as free:
        assert _crossings(free) > 0
    refused = climgen_cli("synthesize", source, tmp_path / "bad.nc", "--order", "tasmin")
    assert refused.returncode == 2 and "--order takes LOW,HIGH" in refused.stderr
    assert not (tmp_path / "bad.nc").exists()
    recipe = tmp_path / "job.yaml"
    recipe.write_text(yaml.safe_dump({"input": "temperatures.nc", "output": "free.zarr", "tile_size": 8, "order": []}))
    _climgen(climgen_cli, "run", recipe)
    with xr.open_zarr(tmp_path / "free.zarr") as free:
        assert _crossings(free) > 0
        assert json.loads(free.attrs["climgen_provenance"])["ordered_variables"] == []


def test_area_weighted_bounds_keep_the_order_to_the_last_bit():
    """With area conservation the projection into a field's bounds, which runs after ordering,
    moved cells by rounding: precipitation pairs crossed by an ulp in hundreds of cells."""
    from climgen.conservation import count_disordered
    from climgen.grid import area_weights
    from climgen.testing import make_dataset

    ds = make_dataset("latlon", shape=(40, 40), times=2, name="u")
    high = np.maximum(ds["u"].values - 280, 0) * 1e-5
    low = np.maximum(high - np.random.default_rng(1).uniform(0, 2e-5, high.shape), 0)
    attrs = {"units": "kg m-2 s-1", "standard_name": "precipitation_flux"}
    flux = xr.Dataset(
        {"prlo": (ds["u"].dims, low.astype("f4"), attrs), "prhi": (ds["u"].dims, high.astype("f4"), attrs)}, coords=ds.coords
    )
    out = flux.climgen.synthesize(factor=4, seed=1, order=[["prlo", "prhi"]], conservation="area")
    assert count_disordered(out["prlo"].values, out["prhi"].values) == 0
    assert (out["prlo"] >= 0).all()
    for name in ("prlo", "prhi"):
        assert_coarse_consistent(out[name], flux[name], 4, weights=area_weights(out))


def test_a_real_crossing_left_by_a_bound_is_not_clipped_away_from_the_block_mean():
    """Only crossings of a few float32 ulps (rounding of the weighted projection) are mended
    after bounds; a real one keeps the field's block mean."""
    low = np.array([[1.2, -0.2], [0.5, 0.5]])
    high = np.array([[1.3, -0.1], [0.6, 0.6]])
    order_fields([low, high], [np.array([[0.5]]), np.array([[0.6]])], 2, bounds=[None, (0.0, 1.0)])
    assert low.mean() == pytest.approx(0.5, abs=1e-12) and high.mean() == pytest.approx(0.6, abs=1e-12)
