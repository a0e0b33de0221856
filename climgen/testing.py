"""Helpers for testing code that uses climgen: small CF datasets and result assertions.

Public and stable, like ``xarray.testing``: downstream projects can build fixtures with
:func:`make_dataset` and check outputs with :func:`assert_coarse_consistent`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.conservation import block_means
from climgen.grid import find_spatial_axes
from climgen.random_fields import gaussian_random_field

__all__ = ["assert_coarse_consistent", "counted_reads", "make_dataset", "rough_field"]


def rough_field(shape: tuple[int, int], seed: int = 0, smoothness: float = 3.0) -> np.ndarray:
    """A Gaussian random field with power ~ k**-smoothness (zero mean, unit variance), the
    generator of climgen's training fields (:func:`climgen.random_fields.gaussian_random_field`)."""
    return gaussian_random_field(np.random.default_rng(seed), shape, smoothness)


def make_dataset(
    kind: str = "latlon",
    shape: tuple[int, int] = (24, 32),
    times: int = 0,
    seed: int = 0,
    name: str = "tas",
    descending_y: bool = False,
    lon_0_360: bool = False,
) -> xr.Dataset:
    """A small CF dataset on a ``latlon``, ``rotated`` (rlat/rlon), ``projected`` (y/x) or
    ``curvilinear`` grid (bare y/x dimensions with 2-D lat/lon, as ocean models write them).

    The field is a temperature-like mixture of a smooth gradient, a rough patch (mountains on
    the east half) and flat west half, so complexity and depth vary across the domain.

    ``shape`` is (rows, columns); ``times`` > 0 adds a ``time`` dimension of that many steps
    (each 0.5 K warmer); ``seed`` seeds the rough patch; ``name`` names the variable;
    ``descending_y`` stores the rows north to south; ``lon_0_360`` puts a lat/lon grid east of
    180 degrees, valid only in the 0..360 convention.
    """
    kinds = ("latlon", "rotated", "projected", "curvilinear")
    if kind not in kinds:
        raise ValueError(f"unknown grid kind {kind!r}: one of {', '.join(map(repr, kinds))}")
    ny, nx = shape
    smooth = np.linspace(-5, 5, ny)[:, None] + np.zeros((1, nx))
    rough = rough_field(shape, seed, 2.0) * np.where(np.arange(nx) >= nx // 2, 4.0, 0.05)[None, :]
    field = (280 + smooth + rough).astype(np.float32)
    if times:
        field = np.stack([field + 0.5 * t for t in range(times)])
    dims = ("time",) if times else ()
    y = np.linspace(-10, 10, ny) if kind != "projected" else np.arange(ny) * 12_000.0
    x = np.linspace(10, 40, nx) if kind != "projected" else np.arange(nx) * 12_000.0
    if lon_0_360 and kind == "latlon":
        x = np.linspace(200, 230, nx)  # east of 180: only valid in the 0..360 convention
    if descending_y:
        y = y[::-1]
        field = field[..., ::-1, :]
    names = {"latlon": ("lat", "lon"), "rotated": ("rlat", "rlon"), "projected": ("y", "x"), "curvilinear": ("y", "x")}[kind]
    if kind == "curvilinear":  # no coordinate values on the dimensions: 2-D lat/lon locate the cells
        rows, cols = np.mgrid[0:ny, 0:nx].astype(float)
        lat = -10 + 20 * rows / max(ny - 1, 1) + 0.1 * cols
        lon = 10 + 30 * cols / max(nx - 1, 1) + 0.05 * rows
        coords = {
            "lat": (names, lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": (names, lon, {"standard_name": "longitude", "units": "degrees_east"}),
        }
    else:
        standard = {
            "latlon": (("latitude", "degrees_north"), ("longitude", "degrees_east")),
            "rotated": (("grid_latitude", "degrees"), ("grid_longitude", "degrees")),
            "projected": (("projection_y_coordinate", "m"), ("projection_x_coordinate", "m")),
        }[kind]
        coords = {
            names[0]: (names[0], y, {"standard_name": standard[0][0], "units": standard[0][1], "axis": "Y"}),
            names[1]: (names[1], x, {"standard_name": standard[1][0], "units": standard[1][1], "axis": "X"}),
        }
    if times:
        coords["time"] = (
            "time",
            np.arange(times, dtype=float) * 30 + 15,
            {"standard_name": "time", "units": "days since 2000-01-01", "calendar": "noleap"},
        )
    attrs = {"standard_name": "air_temperature", "long_name": "near-surface air temperature", "units": "K"}
    ds = xr.Dataset(coords=coords)
    ds[name] = (dims + names, field, attrs)
    if kind == "rotated":
        ds["rotated_pole"] = xr.DataArray(
            np.int32(0),
            attrs={
                "grid_mapping_name": "rotated_latitude_longitude",
                "grid_north_pole_latitude": 39.25,
                "grid_north_pole_longitude": -162.0,
            },
        )
        ds[name].attrs["grid_mapping"] = "rotated_pole"
    elif kind == "projected":
        ds["crs"] = xr.DataArray(
            np.int32(0),
            attrs={
                "grid_mapping_name": "lambert_conformal_conic",
                "standard_parallel": [30.0, 60.0],
                "longitude_of_central_meridian": 10.0,
                "latitude_of_projection_origin": 45.0,
            },
        )
        ds[name].attrs["grid_mapping"] = "crs"
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": f"climgen test data ({kind})",
        "history": "made by climgen.testing.make_dataset",
    }
    return xr.decode_cf(ds)


def _one_variable(data, role: str) -> xr.DataArray:
    """``data`` as a DataArray: itself, or the only data variable of a Dataset."""
    if isinstance(data, xr.Dataset):
        if len(data.data_vars) != 1:
            raise TypeError(f"the {role} Dataset holds {sorted(data.data_vars)}: pass one variable (ds[name]) to compare")
        return next(iter(data.data_vars.values()))
    if not isinstance(data, xr.DataArray):
        raise TypeError(f"the {role} field must be an xarray DataArray (on its grid), not a {type(data).__name__}")
    return data


def assert_coarse_consistent(
    fine: xr.DataArray, coarse: xr.DataArray, factor: int, rtol: float = 2e-6, weights: tuple | None = None
) -> None:
    """Assert every factor x factor block of ``fine`` averages to the ``coarse`` value: its
    cells alike, or weighted by the fine cells' areas ``weights`` (rows, columns; for outputs
    of ``conservation="area"``: :func:`climgen.grid.area_weights` of the output).

    Missing coarse cells must be missing at exactly their fine cells and nowhere else. An
    ensemble (``fine`` with a ``realization`` dimension the coarse field lacks) is checked
    member by member. ``rtol`` is the tolerance in units of the coarse field's largest
    magnitude (float32 outputs round at about 1e-7 of it). A Dataset of one variable stands
    for that variable.
    """
    fine, coarse = (_one_variable(data, role) for data, role in ((fine, "fine"), (coarse, "coarse")))
    axes = find_spatial_axes(coarse)
    ny, nx = coarse.sizes[axes.y], coarse.sizes[axes.x]
    extra = [dim for dim in fine.dims if dim not in coarse.dims and dim not in (axes.y, axes.x)]
    order = [*extra, *(dim for dim in coarse.dims if dim not in (axes.y, axes.x)), axes.y, axes.x]
    fine_values = fine.transpose(*order).values.astype(np.float64)
    coarse_values = coarse.transpose(..., axes.y, axes.x).values.astype(np.float64)
    coarse_values = np.broadcast_to(coarse_values, (*fine_values.shape[: len(extra)], *coarse_values.shape))
    if fine_values.shape[-2:] != (ny * factor, nx * factor):
        raise AssertionError(
            f"the fine field's {fine_values.shape[-2]} x {fine_values.shape[-1]} cells are not "
            f"the coarse field's {ny} x {nx} refined x{factor}"
        )
    blocks = fine_values.reshape(*fine_values.shape[:-2], ny, factor, nx, factor)
    means = block_means(fine_values, factor, weights)
    missing = ~np.isfinite(coarse_values)
    fine_missing = ~np.isfinite(blocks)
    np.testing.assert_array_equal(
        fine_missing.all(axis=(-3, -1)), missing, err_msg="missing coarse cells not missing on the fine grid"
    )
    np.testing.assert_array_equal(fine_missing.any(axis=(-3, -1)), missing, err_msg="missing values leaked into valid cells")
    scale = np.nanmax(np.abs(coarse_values)) if np.isfinite(coarse_values).any() else 1.0
    # in units of the field's own magnitude, also for fields far below 1 (precipitation in
    # kg m-2 s-1 is 1e-5): an absolute floor of 1 would pass every block of them
    np.testing.assert_allclose(means[~missing], coarse_values[~missing], rtol=0, atol=rtol * scale if scale > 0 else 1e-30)


def counted_reads(values: np.ndarray, chunks) -> tuple:
    """``values`` as a dask array chunked by ``chunks`` whose chunks count their reads: returns
    the array and a :class:`collections.Counter` of reads by each chunk's first index. Tests
    use it to hold climgen to reading a lazy input (a file opened with dask) once, not once
    per task that needs a piece of it."""
    import collections
    import threading

    import dask.array as da

    reads: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def load(block_info=None):
        location = block_info[None]["array-location"]
        with lock:
            reads[tuple(start for start, _ in location)] += 1
        return values[tuple(slice(start, stop) for start, stop in location)].copy()

    normalised = da.core.normalize_chunks(chunks, values.shape, dtype=values.dtype)
    return da.map_blocks(load, chunks=normalised, dtype=values.dtype, meta=np.empty((0,) * values.ndim, values.dtype)), reads
