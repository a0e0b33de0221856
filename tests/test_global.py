"""Global lat/lon grids: the first and last columns are neighbours, so the output has no seam
there, in memory and streamed alike, with covariates in either longitude convention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from climgen import pipeline, streaming
from climgen.grid import find_spatial_axes, is_global_longitude, wrap_longitude
from climgen.testing import rough_field


def _global(nlat: int = 24, nlon: int = 48, first_lon: float = 0.0, seed: int = 0) -> xr.Dataset:
    """Temperature on a global grid: a zonal wave that is steepest at longitude 0, plus detail."""
    spacing = 360.0 / nlon
    lat = np.linspace(-90 + 90 / nlat, 90 - 90 / nlat, nlat)
    lon = first_lon + spacing * np.arange(nlon)
    wave = 8 * np.sin(np.deg2rad(lon))[None, :] + 20 * np.cos(np.deg2rad(lat))[:, None]
    field = 260 + wave + 1.5 * rough_field((nlat, nlon), seed, 2.0)
    return xr.Dataset(
        {"tas": (("lat", "lon"), field.astype(np.float32), {"standard_name": "air_temperature", "units": "K"})},
        coords={
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )


@pytest.mark.parametrize(
    ("longitudes", "expected"),
    [
        (np.arange(0, 360, 7.5), True),
        (np.arange(-180, 180, 7.5), True),
        (np.arange(0, 360, 7.5)[::-1], True),
        (np.arange(0, 360 + 7.5, 7.5), False),  # the seam column twice: not one turn
        (np.arange(0, 300, 7.5), False),
        (np.concatenate([np.arange(0, 180, 7.5), np.arange(180, 360, 5.0)]), False),
        # stored rounded (GRIB1's millidegrees, text): steps 0.703 and 0.704, 1.12 and 1.13
        (np.round(np.arange(512) * 360 / 512, 3), True),
        (np.round(np.arange(320) * 1.125, 2), True),
    ],
)
def test_global_longitudes_are_recognised(longitudes, expected):
    ds = xr.Dataset(coords={"lat": ("lat", [0.0, 10.0]), "lon": ("lon", longitudes)})
    assert is_global_longitude(ds, find_spatial_axes(ds)) is expected


def test_wrapped_columns_are_copies_shifted_by_a_turn_and_stay_lazy(tmp_path):
    ds = _global()
    ds["lon"].attrs["bounds"] = "lon_bnds"
    ds["lon_bnds"] = (("lon", "bnds"), np.stack([ds.lon.values - 3.75, ds.lon.values + 3.75], axis=1))
    ds.to_netcdf(tmp_path / "global.nc")
    with xr.open_dataset(tmp_path / "global.nc") as opened:
        wrapped = wrap_longitude(opened, find_spatial_axes(opened), 3)
        assert wrapped["tas"].chunks is not None  # nothing read yet
        assert np.allclose(wrapped.lon.values[:4], [-22.5, -15, -7.5, 0])
        assert np.allclose(wrapped.lon.values[-4:], [352.5, 360, 367.5, 375])
        assert np.allclose(wrapped.lon_bnds.values[0], [-26.25, -18.75])
        assert np.array_equal(wrapped.tas.values[:, :3], opened.tas.values[:, -3:])
        assert np.array_equal(wrapped.tas.values[:, -3:], opened.tas.values[:, :3])
        assert np.array_equal(wrapped.tas.values[:, 3:-3], opened.tas.values)


def _seam_and_neighbours(fine: np.ndarray) -> tuple[float, float]:
    """Mean jump across the seam, and between neighbouring columns on either side of it."""
    seam = np.abs(fine[:, 0] - fine[:, -1]).mean()
    near = np.concatenate([np.abs(np.diff(fine[:, :6], axis=1)), np.abs(np.diff(fine[:, -6:], axis=1))], axis=1)
    return float(seam), float(near.mean())


def test_global_output_has_no_seam_and_keeps_the_grid():
    ds = _global()
    result = ds.climgen.synthesize(factor=4, seed=1)
    assert result.sizes["lon"] == 4 * ds.sizes["lon"]
    assert np.isclose(result.lon.values[0], -3.75 + 7.5 / 8) and np.isclose(result.lon.values[-1], 356.25 - 7.5 / 8)
    assert np.allclose(result.lon_bnds.values[0, 0], -3.75) and np.allclose(result.lon_bnds.values[-1, 1], 356.25)
    coarse = result.tas.coarsen(lat=4, lon=4).mean()
    assert np.allclose(coarse.values, ds.tas.values, atol=1e-3)
    seam, neighbours = _seam_and_neighbours(result.tas.values)
    assert seam < 1.5 * neighbours, (seam, neighbours)
    provenance = json.loads(result.attrs["climgen_provenance"])
    assert provenance["longitude_wrap_cells"] == 4  # the halo of 8-cell tiles
    # the score map that ds.climgen.complexity gives for plotting is the output's
    scores = ds.climgen.complexity(factor=4)
    assert np.array_equal(scores.values, result.complexity_score.values[::4, ::4])


def test_regional_grid_is_not_wrapped():
    ds = _global().isel(lon=slice(0, 40))
    result = ds.climgen.synthesize(factor=2)
    assert "longitude_wrap_cells" not in json.loads(result.attrs["climgen_provenance"])
    assert result.sizes["lon"] == 80


def test_streamed_global_output_equals_the_one_in_memory(tmp_path):
    ds = _global(first_lon=-180.0, seed=3)
    in_memory = ds.climgen.synthesize(factor=2, seed=2)
    ds.to_netcdf(tmp_path / "global.nc")
    config = pipeline.make_config(factor=2, seed=2)
    with xr.open_dataset(tmp_path / "global.nc") as opened:
        job = streaming.run(
            opened, tmp_path / "out.zarr", config, options=streaming.StreamOptions(region_tiles=1, progress=False)
        )
    assert len({task.region[1].start for task in job.tasks}) > 1  # several column regions, offset by the wrap
    with xr.open_zarr(tmp_path / "out.zarr") as streamed:
        assert np.array_equal(streamed.lon.values, in_memory.lon.values)
        assert np.array_equal(streamed.tas.values, in_memory.tas.values)
        assert np.array_equal(streamed.refinement_depth.values, in_memory.refinement_depth.values)


def test_covariate_in_the_other_convention_covers_the_wrapped_columns():
    ds = _global()
    fine = _global(nlat=96, nlon=192, first_lon=-180.0 + 360 / 192 / 2, seed=5)["tas"]  # -180..180
    elevation = (fine - fine.mean()).rename("orog")
    elevation.attrs = {"standard_name": "surface_altitude", "units": "m"}
    result = ds.climgen.synthesize(factor=4, covariates={"orog": elevation}, residual_gain=1.0)
    assert np.isfinite(result.tas.values).all()
    without = ds.climgen.synthesize(factor=4, residual_gain=1.0)
    # the covariate changes the detail on both sides of the seam alike (it was not masked there)
    changed = np.abs(result.tas.values - without.tas.values)
    assert changed[:, :4].mean() > 0.2 * changed.mean() and changed[:, -4:].mean() > 0.2 * changed.mean()


# --- regional domains stored across the longitude seam ----------------------------------------


def _regional(longitudes, seed: int = 4) -> xr.Dataset:
    """A 2-degree regional temperature field on the given longitudes, with their bounds."""
    longitudes = np.asarray(longitudes, dtype=np.float64)
    lat = np.arange(30.0, 30.0 + 2 * 12, 2.0)
    field = 280 + 3 * rough_field((lat.size, longitudes.size), seed, 2.0)
    ds = xr.Dataset(
        {"tas": (("lat", "lon"), field.astype(np.float32), {"standard_name": "air_temperature", "units": "K"})},
        coords={
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", longitudes, {"standard_name": "longitude", "units": "degrees_east", "bounds": "lon_bnds"}),
        },
    )
    ds["lon_bnds"] = (("lon", "bnds"), np.stack([longitudes - 1, longitudes + 1], axis=1))
    return ds


def _same_columns_elsewhere(ds: xr.Dataset, longitudes) -> xr.Dataset:
    """``ds``'s columns on other longitude values: column i goes to longitudes[i]."""
    longitudes = np.asarray(longitudes, dtype=np.float64)
    moved = ds.assign_coords(lon=ds["lon"].copy(data=longitudes))
    moved["lon_bnds"] = (("lon", "bnds"), np.stack([longitudes - 1, longitudes + 1], axis=1))
    return moved


@pytest.mark.parametrize(
    "layout",
    ["0..360 across Greenwich", "0..360 as where(drop=True) leaves it"],
)
def test_domain_across_greenwich_is_refined_as_its_sorted_copy_on_minus_180_180(layout):
    reference = _regional(np.arange(-14.0, 18.0, 2.0))  # -14..16, contiguous
    if layout.startswith("0..360 across"):
        stored = _same_columns_elsewhere(reference, reference.lon.values % 360)  # 346 .. 358, 0 .. 16
    else:
        order = np.argsort(reference.lon.values % 360)  # 0 .. 16, 346 .. 358
        stored = _same_columns_elsewhere(reference.isel(lon=order), reference.lon.values[order] % 360)
    expected = reference.climgen.synthesize(factor=4, seed=3)
    with pytest.warns(pipeline.LongitudeWarning, match=r"-180\.\.180 longitudes \(-14 to 16\)"):
        result = stored.climgen.synthesize(factor=4, seed=3)
    assert np.array_equal(result.lon.values, expected.lon.values)
    assert np.array_equal(result.lon_bnds.values, expected.lon_bnds.values)
    assert np.array_equal(result.tas.values, expected.tas.values)
    assert json.loads(result.attrs["climgen_provenance"])["longitudes_converted_to"] == "-180..180"
    with pytest.warns(pipeline.LongitudeWarning):
        scores = stored.climgen.complexity(factor=4)
    assert np.array_equal(scores.lon.values, reference.lon.values)


def test_domain_across_the_antimeridian_goes_on_0_360(tmp_path):
    reference = _regional(np.arange(166.0, 198.0, 2.0))  # 166..196, contiguous in 0..360
    stored = _same_columns_elsewhere(reference, (reference.lon.values + 180) % 360 - 180)  # 166 .. 178, -180 .. -164
    expected = reference.climgen.synthesize(factor=2, seed=1)
    stored.to_netcdf(tmp_path / "pacific.nc")
    with xr.open_dataset(tmp_path / "pacific.nc") as opened, pytest.warns(pipeline.LongitudeWarning, match="0..360"):
        streaming.run(
            opened, tmp_path / "out.nc", pipeline.make_config(factor=2, seed=1), options=streaming.StreamOptions(progress=False)
        )
    with xr.open_dataset(tmp_path / "out.nc") as streamed:
        assert np.array_equal(streamed.lon.values, expected.lon.values)
        assert np.array_equal(streamed.tas.values, expected.tas.values)


def test_global_grid_stored_from_180_is_sorted_and_wrapped():
    ds = _global()
    stored = ds.roll(lon=24, roll_coords=True)  # 180 .. 352.5, 0 .. 172.5
    with pytest.warns(pipeline.LongitudeWarning):
        result = stored.climgen.synthesize(factor=2)
    provenance = json.loads(result.attrs["climgen_provenance"])
    assert provenance["longitudes_converted_to"] == "-180..180" and provenance["longitude_wrap_cells"] == 4
    assert (np.diff(result.lon.values) > 0).all() and result.sizes["lon"] == 96
    seam, neighbours = _seam_and_neighbours(result.tas.values)
    assert seam < 1.5 * neighbours, (seam, neighbours)


def test_truth_across_greenwich_is_coarsened_and_scored_as_its_sorted_copy():
    from climgen.evaluation import evaluate
    from climgen.grid import coarsen_dataset

    reference = _regional(np.arange(-30.0, 34.0, 2.0))  # -30..32, one band
    stored = _same_columns_elsewhere(reference, reference.lon.values % 360)  # 330 .. 358, 0 .. 32
    coarse = coarsen_dataset(stored, 4)
    xr.testing.assert_allclose(coarse, coarsen_dataset(reference, 4), rtol=1e-6)  # float32 sums in another order
    assert pipeline.contiguous_input(coarse)[1] is None  # one band already: refined as it is
    prediction = coarse.climgen.synthesize(factor=4)
    scores, expected = evaluate(stored, prediction, factor=4), evaluate(reference, prediction, factor=4)
    assert [row["rmse"] for row in scores] == [row["rmse"] for row in expected]


def test_the_edge_share_counts_each_column_of_a_global_grid_once():
    """Land at 0-22.5 E on a global ocean field: the provenance's share of cells on its coasts
    counts each longitude once (the coast across the seam too), not the wrapped copies."""
    from climgen.depth import gain

    ds = _global()
    values = ds["tas"].values.copy()
    values[:, :3] = np.nan  # land at the first three longitudes
    ds["tas"].values = values
    job = pipeline.plan(ds, pipeline.make_config(factor=2, tile_size=8))
    assert job.wrap_cells > 0
    around = np.concatenate([values[:, -1:], values, values[:, :1]], axis=1)  # the seam's neighbours
    expected = np.nanmean(gain.edge_cells(around)[:, 1:-1])  # the last column is a coast too
    assert job.depth_policy["edge_share"] == pytest.approx(expected, abs=1e-4)


def _with_poles(descending: bool = False) -> xr.Dataset:
    """A global grid whose first and last rows are centred on the poles (ERA5, MERRA-2), each
    pole row one value, as such files store it."""
    lat = np.linspace(-90, 90, 25)
    field = 260 + 6 * rough_field((25, 48), 4, 2.0)
    field[0], field[-1] = field[0].mean(), field[-1].mean()
    ds = _global().isel(lat=slice(0, 1)).drop_vars("tas")
    ds = ds.assign_coords(lat=("lat", lat, ds["lat"].attrs)).assign(
        tas=(("lat", "lon"), field.astype(np.float32), {"standard_name": "air_temperature", "units": "K"})
    )
    return ds.isel(lat=slice(None, None, -1)) if descending else ds


@pytest.mark.parametrize("descending", [False, True])
def test_a_row_centred_on_a_pole_is_one_value_round_the_pole(tmp_path, descending):
    """Every cell of a pole row is the same place's cap: refined as a line along the row, its
    fine cells differed by several kelvin round the pole. They now take the cap's value
    (exact block means), in memory and streamed alike; the next row keeps its detail."""
    ds = _with_poles(descending)
    result = ds.climgen.synthesize(factor=2, seed=1)
    fine = result.tas.values.astype(np.float64)
    for cap, coarse_row in ((slice(0, 2), 0), (slice(-2, None), -1)):
        np.testing.assert_allclose(fine[cap], float(ds.tas.values[coarse_row, 0]), rtol=0, atol=1e-4)
    assert np.ptp(fine[2]) > 1.0  # the rows beside the caps are refined as before
    blocks = fine.reshape(25, 2, 48, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(blocks, ds.tas.values, rtol=0, atol=1e-4)
    ds.to_netcdf(tmp_path / "poles.nc")
    with xr.open_dataset(tmp_path / "poles.nc") as opened:
        streaming.run(
            opened,
            tmp_path / "out.zarr",
            pipeline.make_config(factor=2, seed=1),
            options=streaming.StreamOptions(region_tiles=1, progress=False),
        )
    with xr.open_zarr(tmp_path / "out.zarr") as streamed:
        assert np.array_equal(streamed.tas.values, result.tas.values)
