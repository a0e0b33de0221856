"""Curvilinear grids (ocean models: dimensions without coordinate values, 2-D nav_lat/nav_lon):
refined in index space, 2-D latitude and longitude interpolated, bare dimensions kept."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

from climgen import pipeline, streaming
from climgen.errors import ConfigError, GridError, InputError
from climgen.evaluation import check_same_grid
from climgen.grid import coarsen_dataset, find_spatial_axes
from climgen.testing import assert_coarse_consistent, make_dataset, rough_field


def _ocean(ny: int = 24, nx: int = 30) -> xr.Dataset:
    """Sea surface temperature on a sheared grid whose latitude and longitude are linear in
    the cell indices (so their interpolation to the fine cells is exact)."""
    rows, cols = np.mgrid[0:ny, 0:nx].astype(float)
    field = 290 + 0.3 * rows + 2 * rough_field((ny, nx), 2, 2.0)
    return xr.Dataset(
        {"tos": (("y", "x"), field.astype(np.float32), {"standard_name": "sea_surface_temperature", "units": "K"})},
        coords={
            "nav_lat": (("y", "x"), -20 + 1.5 * rows + 0.1 * cols, {"standard_name": "latitude", "units": "degrees_north"}),
            "nav_lon": (("y", "x"), 40 + 2.0 * cols + 0.05 * rows, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )


def test_two_dimensional_latitude_and_longitude_on_bare_dimensions_are_a_curvilinear_grid():
    axes = find_spatial_axes(_ocean())
    assert (axes.y, axes.x, axes.kind) == ("y", "x", "curvilinear")


@pytest.mark.parametrize(
    ("names", "attrs"),
    [(("j", "i"), {"units": "1", "long_name": "cell index"}), (("y", "x"), {})],  # CMIP6 ocean; NEMO through xarray
)
def test_dimensions_that_only_number_their_cells_are_a_curvilinear_grid_too(names, attrs):
    """CMIP6 ocean files give j/i the values 0..n-1 (units "1"), and xarray writes NEMO's y/x
    as 0..n-1: beside 2-D latitude and longitude they locate nothing. They were refused
    (j/i) or read as a projected grid in metres with a spacing of 1 (y/x)."""
    bare = _ocean().rename(y=names[0], x=names[1])
    numbered = bare.assign_coords({name: (name, np.arange(bare.sizes[name], dtype=np.int32), attrs) for name in names})
    assert find_spatial_axes(numbered) == find_spatial_axes(bare)
    assert find_spatial_axes(numbered).kind == "curvilinear"
    result = numbered.climgen.synthesize(factor=2, seed=3)
    expected = bare.climgen.synthesize(factor=2, seed=3)
    assert np.array_equal(result["tos"].values, expected["tos"].values)
    assert names[0] not in result.coords and names[1] not in result.coords  # numbers of the coarse cells: not carried
    with pytest.raises(ConfigError, match="curvilinear"):  # no cell areas: refused as on bare dimensions
        numbered.climgen.synthesize(factor=2, conservation="area")
    # values that locate the cells (here in metres) make y/x a projected grid, as before
    located = numbered.assign_coords({names[1]: (names[1], np.arange(bare.sizes[names[1]]) * 1000.0, {"units": "m"})})
    if names == ("y", "x"):
        assert find_spatial_axes(located).kind == "projected"


def test_curvilinear_field_is_refined_with_interpolated_latitude_and_longitude():
    ds = _ocean()
    result = ds.climgen.synthesize(factor=2, seed=3)
    assert result["tos"].dims == ("y", "x") and result["tos"].shape == (48, 60)
    assert "y" not in result.coords and "x" not in result.coords  # bare, as in the input
    assert_coarse_consistent(result["tos"].astype(np.float64), ds["tos"].astype(np.float64), 2, rtol=1e-6)
    # fine cell centres sit a quarter of a coarse cell either side of the coarse centre
    # (interpolated on the sphere: within 0.01 degrees of linear in the indices on 1.5-degree cells)
    rows, cols = np.meshgrid(np.arange(48) / 2 - 0.25, np.arange(60) / 2 - 0.25, indexing="ij")
    # under the input's names (tools that read NEMO output look for nav_lat/nav_lon)
    np.testing.assert_allclose(result["nav_lat"].values, -20 + 1.5 * rows + 0.1 * cols, atol=0.01)
    np.testing.assert_allclose(result["nav_lon"].values, 40 + 2.0 * cols + 0.05 * rows, atol=0.01)
    assert "lat" not in result.coords and result["nav_lat"].attrs["standard_name"] == "latitude"
    assert result["tos"].attrs["coordinates"].split()[:2] == ["nav_lat", "nav_lon"]  # then the maps, auxiliary coordinates too


def _on_grid(lat: np.ndarray, lon: np.ndarray) -> xr.Dataset:
    field = 280 + rough_field(lat.shape, 5, 2.0)
    return xr.Dataset(
        {"tos": (("y", "x"), field.astype(np.float32), {"standard_name": "sea_surface_temperature", "units": "K"})},
        coords={
            "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )


def _polar(cells: int, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of an azimuthal equidistant grid centred on the North Pole."""
    centres = (np.arange(cells) - cells / 2 + 0.5) * spacing  # degrees of arc from the pole
    x, y = np.meshgrid(centres, centres)
    return 90 - np.hypot(x, y), np.rad2deg(np.arctan2(y, x))


def test_curvilinear_latitude_and_longitude_are_interpolated_across_the_dateline_and_around_a_pole():
    # longitude growing along rows, across the dateline: no jump between 180 and -180
    rows, cols = np.mgrid[0:20, 0:24].astype(float)
    crossing = _on_grid(40 + cols, (170 + rows + 180) % 360 - 180).climgen.synthesize(factor=4, seed=0)
    steps = np.diff(crossing["lon"].values[:, 0])
    assert np.allclose((steps + 180) % 360 - 180, 0.25, atol=1e-3)
    # a grid around the pole (longitude turns through every value): each fine centre where
    # the same grid at four times the resolution has it
    around = _on_grid(*_polar(20, 1.0)).climgen.synthesize(factor=4, seed=0)
    lat, lon = _polar(80, 0.25)
    arc = np.arccos(
        np.clip(
            np.sin(np.deg2rad(lat)) * np.sin(np.deg2rad(around["lat"].values))
            + np.cos(np.deg2rad(lat)) * np.cos(np.deg2rad(around["lat"].values)) * np.cos(np.deg2rad(lon - around["lon"].values)),
            -1,
            1,
        )
    )
    assert np.rad2deg(arc).max() < 0.25 * 0.25  # within a quarter of a fine cell
    assert around["lat"].values.max() > 89.8  # the fine cells next to the pole are nearer it than the coarse


def test_coarsening_averages_latitude_and_longitude_on_the_sphere():
    """Block means of 2-D latitude and longitude across the dateline and around the pole are
    the blocks' centres (a plain mean of 178, 179, -180 and -179 would be -40.5)."""
    rows, cols = np.mgrid[0:20, 0:24].astype(float)
    crossing = coarsen_dataset(_on_grid(40 + cols, (170 + rows + 180) % 360 - 180), 4)
    np.testing.assert_allclose(crossing["lon"].values[:, 0], [171.5, 175.5, 179.5, -176.5, -172.5], atol=1e-9)
    around = coarsen_dataset(_on_grid(*_polar(80, 0.25)), 4)
    lat, lon = _polar(20, 1.0)
    np.testing.assert_allclose(around["lat"].values, lat, atol=1e-3)
    np.testing.assert_allclose((around["lon"].values - lon + 180) % 360 - 180, 0, atol=2e-3)


def test_curvilinear_output_streams_equal_and_round_trips_through_coarsen_and_evaluate(tmp_path):
    ds = _ocean()
    in_memory = ds.climgen.synthesize(factor=2, seed=3)
    ds.to_netcdf(tmp_path / "ocean.nc")
    config = pipeline.make_config(factor=2, seed=3)
    with xr.open_dataset(tmp_path / "ocean.nc") as opened:
        streaming.run(opened, tmp_path / "out.zarr", config, options=streaming.StreamOptions(region_tiles=1, progress=False))
    with xr.open_zarr(tmp_path / "out.zarr") as streamed:
        assert np.array_equal(streamed["tos"].values, in_memory["tos"].values)
    coarse = coarsen_dataset(in_memory[["tos"]], 2)
    assert "y" not in coarse.coords and coarse["tos"].shape == ds["tos"].shape
    check_same_grid(in_memory, coarse.climgen.synthesize(factor=2))


def test_curvilinear_covariate_must_be_on_the_fine_grid_and_area_conservation_is_refused():
    ds = _ocean()
    fine = ds.climgen.synthesize(factor=2)["tos"].rename("depth")
    result = ds.climgen.synthesize(factor=2, covariates={"depth": fine}, residual_gain=1.0)
    assert np.isfinite(result["tos"]).all()
    with pytest.raises(InputError, match="must be on the output's fine grid"):
        ds.climgen.synthesize(factor=2, covariates={"depth": ds["tos"]})
    with pytest.raises(ConfigError, match="curvilinear"):
        ds.climgen.synthesize(factor=2, conservation="area")


def _wrf(times: int = 2, ny: int = 20, nx: int = 26) -> xr.Dataset:
    """WRF's layout: (Time, south_north, west_east) without coordinate values, XLAT/XLONG
    repeated along Time, a variable on the staggered grid, minutes in XTIME."""
    rows, cols = np.mgrid[0:ny, 0:nx].astype(float)
    field = 285 - 0.2 * rows + 2 * rough_field((ny, nx), 4, 2.0)
    grid = ("Time", "south_north", "west_east")
    ds = xr.Dataset(
        {
            "T2": (
                grid,
                np.stack([field + t for t in range(times)]).astype(np.float32),
                {"units": "K", "description": "TEMP at 2 M"},
            ),
            "U10": (("Time", "south_north", "west_east_stag"), np.zeros((times, ny, nx + 1), np.float32), {"units": "m s-1"}),
        },
        coords={
            "XLAT": (grid, np.broadcast_to(35 + 0.1 * rows + 0.002 * cols, (times, ny, nx)), {"units": "degree_north"}),
            "XLONG": (grid, np.broadcast_to(-105 + 0.12 * cols + 0.003 * rows, (times, ny, nx)), {"units": "degree_east"}),
            "XTIME": ("Time", np.arange(times) * 60.0, {"units": "minutes since 2020-01-01 00:00:00"}),
        },
    )
    return xr.decode_cf(ds)


def test_wrf_output_is_a_curvilinear_grid_and_streams_equal(tmp_path):
    ds = _wrf()
    axes = find_spatial_axes(ds)
    assert (axes.y, axes.x, axes.kind) == ("south_north", "west_east", "curvilinear")
    in_memory = ds.climgen.synthesize(factor=2, seed=1)
    assert set(in_memory.data_vars) >= {"T2"} and "U10" not in in_memory  # the staggered grid is another grid
    assert in_memory["T2"].dims == ("Time", "south_north", "west_east")
    rows, cols = np.meshgrid(np.arange(40) / 2 - 0.25, np.arange(52) / 2 - 0.25, indexing="ij")
    np.testing.assert_allclose(in_memory["XLAT"].values, 35 + 0.1 * rows + 0.002 * cols, atol=1e-4)  # WRF's name kept
    assert_coarse_consistent(in_memory["T2"].astype(np.float64), ds["T2"].astype(np.float64), 2, rtol=1e-6)
    ds.to_netcdf(tmp_path / "wrfout.nc")
    with xr.open_dataset(tmp_path / "wrfout.nc") as opened:
        streaming.run(
            opened, tmp_path / "out.zarr", pipeline.make_config(factor=2, seed=1), options=streaming.StreamOptions(progress=False)
        )
    with xr.open_zarr(tmp_path / "out.zarr") as streamed:
        assert np.array_equal(streamed["T2"].values, in_memory["T2"].values)


@pytest.mark.parametrize(("units", "per_metre"), [("km", 1e-3), ("ft", 1 / 0.3048), ("100 km", 1e-5), ("dam", 0.1)])
def test_projected_axes_in_any_length_unit_give_the_same_latitudes_and_longitudes(units, per_metre):
    """A Lambert conformal grid written in m and in another length unit: the same output
    lat/lon (they used to scale by 1 for any unit but m and km, 31.8 degrees off in ft)."""
    metres = make_dataset("projected", shape=(12, 16))
    other = metres.copy()
    for name in ("y", "x"):
        other[name] = other[name] * per_metre
        other[name].attrs = dict(metres[name].attrs, units=units)
    first, second = (pipeline.synthesize(ds, factor=2, tile_size=8) for ds in (metres, other))
    np.testing.assert_allclose(second["lat"].values, first["lat"].values, atol=1e-6)
    np.testing.assert_allclose(second["lon"].values, first["lon"].values, atol=1e-6)


@pytest.mark.parametrize("units", ["K", "degrees_east", "parsecs of nothing"])
def test_projected_axes_that_are_not_a_length_are_a_clear_error(units):
    ds = make_dataset("projected", shape=(12, 16))
    ds["x"].attrs["units"] = units
    with pytest.raises(GridError, match="length"):
        pipeline.synthesize(ds, factor=2)


def test_files_on_other_curvilinear_grids_are_refused_and_left_closed(tmp_path):
    from climgen.io.open import open_inputs

    ds = _ocean()
    ds.to_netcdf(tmp_path / "a.nc")
    ds.assign_coords(nav_lat=ds["nav_lat"] + 5).to_netcdf(tmp_path / "b.nc")  # another region, same shape
    with pytest.raises(InputError, match="b.nc is on another grid than a.nc: its 'nav_lat' differs"):
        open_inputs([tmp_path / "a.nc", tmp_path / "b.nc"])
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [path for path in held if path.startswith(str(tmp_path))]  # the error does not hold the files open


def test_input_attributes_of_the_coarse_coordinates_are_left_out_of_the_fine_ones():
    ds = _ocean()
    ds["nav_lat"].attrs |= {"valid_min": -20.0, "valid_max": 14.0, "coordinates": "gone", "description": "kept"}
    fine = ds.climgen.synthesize(factor=2)["nav_lat"]
    assert not {"valid_min", "valid_max", "coordinates"} & set(fine.attrs)
    assert fine.attrs["description"] == "kept" and fine.attrs["standard_name"] == "latitude"
