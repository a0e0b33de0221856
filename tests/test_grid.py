"""The grid convention: refine and coarsen are inverse on coordinates and bounds."""

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from climgen.errors import ConfigError, GridError
from climgen.grid import (
    SpatialAxes,
    cell_bounds,
    check_factor,
    coarse_bounds,
    coarsen_dataset,
    find_spatial_axes,
    refine_bounds,
    refinement_stages,
)
from climgen.testing import make_dataset


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(-170, 170),
    steps=st.lists(st.floats(0.01, 5.0), min_size=1, max_size=12),
    factor=st.sampled_from([2, 4, 8, 16]),
    descending=st.booleans(),
)
def test_refine_then_coarsen_returns_the_coarse_cells(start, steps, factor, descending):
    edges = start + np.concatenate([[0.0], np.cumsum(steps)])
    if descending:
        edges = edges[::-1]
    bounds = np.stack([edges[:-1], edges[1:]], axis=1)
    centres, fine_bounds = refine_bounds(bounds, factor)
    assert centres.shape == (bounds.shape[0] * factor,)
    # fine cells tile each coarse cell exactly, in order, with equal widths
    np.testing.assert_allclose(fine_bounds[1:, 0], fine_bounds[:-1, 1])
    widths = (fine_bounds[:, 1] - fine_bounds[:, 0]).reshape(-1, factor)
    np.testing.assert_allclose(widths, np.repeat((bounds[:, 1] - bounds[:, 0])[:, None] / factor, factor, 1), atol=1e-9)
    back_centres, back_bounds = coarse_bounds(fine_bounds, factor)
    np.testing.assert_allclose(back_bounds, bounds, atol=1e-9)
    np.testing.assert_allclose(back_centres, bounds.mean(axis=1), atol=1e-9)


def test_fine_centres_split_regular_cells():
    ds = make_dataset("latlon", shape=(4, 6))
    bounds = cell_bounds(ds["lon"])
    centres, _ = refine_bounds(bounds, 2)
    spacing = float(ds.lon[1] - ds.lon[0])
    np.testing.assert_allclose(centres[:2], [float(ds.lon[0]) - spacing / 4, float(ds.lon[0]) + spacing / 4])


def test_bounds_variable_is_used_when_present(hsurf_coarse):
    bounds = cell_bounds(hsurf_coarse["rlat"], hsurf_coarse)
    np.testing.assert_array_equal(bounds, hsurf_coarse["rlat_bnds"].values)


def test_latitude_edges_are_clipped_to_the_poles():
    ds = make_dataset("latlon", shape=(4, 4)).assign_coords(lat=[-89.0, -30.0, 30.0, 89.5])
    ds["lat"].attrs["standard_name"] = "latitude"
    bounds = cell_bounds(ds["lat"])
    assert bounds.min() >= -90 and bounds.max() <= 90


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("upper_first", [False, True])
def test_bounds_pairs_follow_the_coordinate_direction(descending, upper_first):
    values = np.array([1.0, 3.0, 5.0])[:: -1 if descending else 1]
    pairs = np.stack([values + 1, values - 1] if upper_first else [values - 1, values + 1], axis=1)
    ds = xr.Dataset(coords={"lat": ("lat", values, {"bounds": "lat_bnds"}), "lat_bnds": (("lat", "nv"), pairs)})
    bounds = cell_bounds(ds["lat"], ds)
    step = np.sign(values[1] - values[0])
    assert (np.sign(bounds[:, 1] - bounds[:, 0]) == step).all()
    centres, _ = refine_bounds(bounds, 2)
    assert (np.sign(np.diff(centres)) == step).all()


def test_bounds_stored_edges_first_are_read_by_their_dimensions():
    values = np.array([1.0, 2.5, 5.0])  # irregular: midpoints would give other edges
    edges = np.array([[0.0, 2.0], [2.0, 3.5], [3.5, 6.0]])
    ds = xr.Dataset(coords={"lat": ("lat", values, {"bounds": "lat_bnds"}), "lat_bnds": (("nv", "lat"), edges.T)})
    np.testing.assert_array_equal(cell_bounds(ds["lat"], ds), edges)


def test_non_monotonic_coordinate_is_a_grid_error():
    ds = make_dataset("latlon", shape=(4, 4)).assign_coords(lon=[10.0, 12.0, 11.0, 13.0])
    with pytest.raises(GridError, match="not strictly monotonic"):
        cell_bounds(ds["lon"])


@pytest.mark.parametrize("kind, names", [("latlon", ("lat", "lon")), ("rotated", ("rlat", "rlon")), ("projected", ("y", "x"))])
def test_spatial_axes_are_found_for_each_grid_kind(kind, names):
    axes = find_spatial_axes(make_dataset(kind))
    assert (axes.y, axes.x, axes.kind) == (*names, kind)


@pytest.mark.parametrize(
    ("names", "units", "kind"),
    [
        (("y", "x"), ("degrees_north", "degrees_east"), "latlon"),  # CF: these units make latitude and longitude
        (("row", "col"), ("degree_N", "degreeE"), "latlon"),
        (("y", "x"), ("m", "m"), "projected"),
        (("rlat", "rlon"), ("degrees_north", "degrees_east"), "rotated"),  # a rotated pole's names win over loose units
    ],
)
def test_units_in_degrees_north_and_east_make_a_latlon_grid(names, units, kind):
    coords = {name: (name, np.arange(4.0), {"units": unit}) for name, unit in zip(names, units, strict=True)}
    ds = xr.Dataset({"tas": (names, np.zeros((4, 4)))}, coords=coords)
    assert find_spatial_axes(ds) == SpatialAxes(*names, kind)


def test_missing_spatial_axes_is_a_grid_error():
    with pytest.raises(GridError, match="no spatial axes"):
        find_spatial_axes(make_dataset().rename(lat="a", lon="b").drop_vars(["a", "b"]))


@pytest.mark.parametrize("factor", [0, 1, 3, 6, 32, 2.0, True, "4"])
def test_unsupported_factors_are_rejected(factor):
    with pytest.raises(ConfigError, match="factor must be one of"):
        check_factor(factor)


def test_stages_per_factor():
    assert [refinement_stages(f) for f in (2, 4, 8, 16)] == [1, 2, 3, 4]


def test_coarsen_dataset_block_means_and_keeps_attributes(hsurf_truth):
    coarse = coarsen_dataset(hsurf_truth, 4)
    assert coarse.sizes["rlat"] == hsurf_truth.sizes["rlat"] // 4
    np.testing.assert_allclose(coarse["HSURF"].values[0, 0, 0], hsurf_truth["HSURF"].values[0, :4, :4].mean(), rtol=1e-6)
    assert coarse["HSURF"].attrs["units"] == "m"
    assert coarse["HSURF"].attrs["grid_mapping"] == "rotated_pole"


@pytest.mark.parametrize("with_bounds", [False, True])
def test_latitude_edges_stay_inside_the_poles_whatever_the_axis_name(with_bounds):
    values = np.array([-89.0, -85.0, -81.0])
    ds = xr.Dataset(coords={"y": ("y", values, {"units": "degrees_north"})})
    if with_bounds:  # a file whose polar cell reaches past the pole
        ds["y"].attrs["bounds"] = "y_bnds"
        ds["y_bnds"] = (("y", "nv"), np.stack([values - 2.5, values + 2.5], axis=1))
    assert cell_bounds(ds["y"], ds)[0, 0] == -90.0
    ds["y"].attrs["units"] = "m"  # a projected axis is not clipped
    assert cell_bounds(ds["y"], ds)[0, 0] < -90.0


@pytest.mark.parametrize("rows", [8, 7])  # 7: the last row does not fill a block and is dropped
def test_coarsening_takes_the_stored_bounds_of_the_rows_it_keeps(rows):
    edges = np.array([-90, -60, -40, -20, 0, 20, 40, 60, 90], dtype=float)  # uneven cells
    ds = xr.Dataset(
        {"tas": (("lat", "lon"), np.arange(64, dtype=float).reshape(8, 8))},
        coords={
            "lat": (
                "lat",
                (edges[:-1] + edges[1:]) / 2,
                {"standard_name": "latitude", "units": "degrees_north", "bounds": "lat_bnds"},
            ),
            "lon": ("lon", np.arange(8) * 10.0 + 5, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    ds["lat_bnds"] = (("lat", "nv"), np.stack([edges[:-1], edges[1:]], axis=1))
    coarse = coarsen_dataset(ds.isel(lat=slice(0, rows)), 2, "area")
    np.testing.assert_array_equal(coarse["lat_bnds"].values[0], [-90, -40])
    weights = np.diff(np.sin(np.deg2rad(edges[:3])))  # the two rows' areas, from their stored edges
    expected = (ds["tas"].values[:2, :2].mean(axis=1) * weights).sum() / weights.sum()
    assert coarse["tas"].values[0, 0] == pytest.approx(expected)


def test_longitudes_made_contiguous_keep_their_bounds():
    """A domain stored across the seam (350, 355, 0, 5 on 0..360): the moved columns' bounds
    move with them, unequal widths included, rather than turning missing."""
    from climgen.grid import contiguous_longitude, find_spatial_axes

    lon = np.array([0.0, 5.0, 10.0, 350.0, 355.0])
    edges = np.array([[-2.5, 2.5], [2.5, 7.5], [7.5, 12.5], [347.0, 352.5], [352.5, 357.5]])
    ds = xr.Dataset(
        {"tas": (("lat", "lon"), np.arange(10.0).reshape(2, 5)), "lon_bnds": (("lon", "nv"), edges)},
        coords={
            "lat": ("lat", [0.0, 1.0], {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east", "bounds": "lon_bnds"}),
        },
    )
    moved, _ = contiguous_longitude(ds, find_spatial_axes(ds))
    np.testing.assert_array_equal(moved["lon"], [-10.0, -5.0, 0.0, 5.0, 10.0])
    np.testing.assert_array_equal(moved["lon_bnds"], [[-13.0, -7.5], [-7.5, -2.5], [-2.5, 2.5], [2.5, 7.5], [7.5, 12.5]])
