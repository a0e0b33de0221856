"""Granule files into one cube: each subset to the requested variables and box, all
assembled lazily along time, written to zarr in chunks of whole fields with CF metadata."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from climgen.errors import InputError
from climgen.io.cf import CONVENTIONS, FILL_VALUE, history_line
from climgen.io.encoding import encoding_for_plain

if TYPE_CHECKING:
    from climgen.io.earthdata import Request


def subset(ds: xr.Dataset, variables: tuple[str, ...], bbox: tuple[float, float, float, float]) -> xr.Dataset:
    """The variables over the bounding box, on ascending lat and -180..180 lon (0..360 for a box
    across the antimeridian, W > E, which keeps it contiguous)."""
    from climgen.grid import find_spatial_axes

    missing = [name for name in variables if name not in ds.data_vars]
    if missing:
        raise InputError(f"variables {missing} not in the granule; it has {sorted(ds.data_vars)}")
    # the time's bounds (IMERG's daily intervals) stay with it; other bounds name variables the
    # subset leaves out (the longitudes are converted), so those attributes go
    time_bounds = ds["time"].attrs.get("bounds") if "time" in ds.coords else None
    kept = [*variables, *([time_bounds] if time_bounds in ds.variables and time_bounds not in variables else [])]
    ds = ds[kept]
    for name in ds.coords:
        if ds[name].attrs.get("bounds") not in (None, *ds.variables):
            ds[name].attrs = {key: value for key, value in ds[name].attrs.items() if key != "bounds"}
    axes = find_spatial_axes(ds)
    if axes.kind != "latlon":
        raise InputError(f"subsetting by bbox needs a lat/lon grid; this collection is on {axes.kind} ({axes.y}, {axes.x})")
    west, south, east, north = bbox
    lon = ds[axes.x]
    if west > east:
        ds = ds.assign_coords({axes.x: (lon % 360).assign_attrs(lon.attrs)})
        west, east = west % 360, east % 360
    elif float(lon.max()) > 180:
        ds = ds.assign_coords({axes.x: ((lon + 180) % 360 - 180).assign_attrs(lon.attrs)})
    ds = ds.sortby([axes.y, axes.x])
    selected = ds.sel({axes.y: slice(south, north), axes.x: slice(west, east)})
    if selected.sizes[axes.y] == 0 or selected.sizes[axes.x] == 0:
        spacing = [
            float(np.abs(np.diff(ds[name].values[:2])).max()) if ds.sizes[name] > 1 else float("nan") for name in (axes.y, axes.x)
        ]
        swapped = " (west > east makes a box across the antimeridian: are west and east swapped?)" if bbox[0] > bbox[2] else ""
        raise InputError(
            f"the box {tuple(bbox)} holds no grid centre of this collection (spacing {spacing[0]:g} x {spacing[1]:g} "
            f"degrees): widen it{swapped}"
        )
    return selected


def assemble_cube(paths: list[Path], request: Request) -> xr.Dataset:
    """One lazy dataset from the granule files: each opened as dask arrays and subset, then
    concatenated and sorted along time. Nothing is read until the cube is written, chunk by
    chunk, so memory follows a chunk, not the request; close the result when done with it
    (it holds the files open)."""
    if not paths:
        raise InputError("no granule to assemble")

    grid: dict = {}  # the first granule's subset coordinates: every other must match them

    def subset_granule(granule: xr.Dataset) -> xr.Dataset:
        try:
            part = subset(granule, request.variables, request.bbox)
        except InputError as error:  # which of the granules it is
            raise InputError(f"{Path(granule.encoding.get('source', 'a granule')).name}: {error}") from None
        coords = {name: part[name].values for name in ("lat", "lon") if name in part.coords}
        if not grid:
            grid.update(coords, source=granule.encoding.get("source", "the first granule"))
        elif any(not np.array_equal(values, grid.get(name)) for name, values in coords.items()):
            source = Path(granule.encoding.get("source", "a granule")).name
            raise InputError(
                f"{source} is on another grid than {Path(grid['source']).name} over the box: a collection's granules "
                "must share their grid to make one cube (fetch the periods apart)"
            )
        return part

    with xr.open_dataset(paths[0], engine="netcdf4") as first:
        has_time = "time" in first.dims
    if has_time:
        cube = xr.open_mfdataset(
            [str(path) for path in paths],
            engine="netcdf4",
            preprocess=subset_granule,
            combine="nested",
            concat_dim="time",
            data_vars="all",
            coords="different",
            compat="no_conflicts",
            join="outer",
            chunks={},
            parallel=False,
        )
        order = np.argsort(cube["time"].values, kind="stable")
        unique = np.unique(cube["time"].values[order], return_index=True)[1]
        cube = cube.isel(time=order[unique])
    else:
        cube = subset_granule(xr.open_dataset(paths[0], engine="netcdf4", chunks={}))
    # CF's recommended order (time, then other axes, then latitude and longitude): IMERG
    # stores (time, lon, lat), and a cube in that order is read column-wise by every tool
    cube = cube.transpose("time", ..., "lat", "lon", missing_dims="ignore")
    for name in request.variables:
        units, standard_name = request.collection.variables.get(name, (None, None))
        if not cube[name].attrs.get("units"):
            if units is None:
                raise InputError(f"variable {name!r} has no units in the files or the catalog")
            cube[name].attrs["units"] = units
        if standard_name and "standard_name" not in cube[name].attrs:
            cube[name].attrs["standard_name"] = standard_name
    for axis, standard_name in (("lat", "latitude"), ("lon", "longitude"), ("time", "time")):
        if axis in cube.coords:
            cube[axis].attrs.setdefault("standard_name", standard_name)
    if "time" in cube.coords:
        cube["time"].attrs.setdefault("axis", "T")
    return cube


def write_cube(result: xr.Dataset, cube: Path, request: Request, identity: str) -> None:
    """Write an assembled (lazy) cube with its CF metadata, in chunks of whole fields."""
    from climgen.io.write import write_dataset

    previous = str(result.attrs.get("history", "")).strip()
    result.attrs |= {
        "Conventions": CONVENTIONS,
        "source": f"NASA Earthdata {request.collection.short_name} v{request.collection.version}: {request.collection.title}",
        "history": history_line(
            f"climgen fetch --collection {request.collection.short_name} --variables {','.join(request.variables)} "
            f"--bbox={','.join(map(str, request.bbox))} --start {request.start} --end {request.end}"
        )
        + ("\n" + previous if previous else ""),
        "climgen_fetch": identity,
    }
    encoding = encoding_for_plain(result)
    for name in request.variables:
        encoding[name] = {"dtype": "float32", "_FillValue": FILL_VALUE, "chunks": cube_chunks(result[name])}
    for variable in result.variables.values():
        variable.encoding = {}
    chunks = {
        dim: size for name in request.variables for dim, size in zip(result[name].dims, encoding[name]["chunks"], strict=True)
    }
    write_dataset(result.chunk(chunks), cube, encoding, overwrite=True, every_chunk=True)


def cube_chunks(variable: xr.DataArray) -> tuple[int, ...]:
    """Chunks of a cube variable: whole spatial fields, up to 24 time steps (a day of hours)."""
    return tuple(min(24, size) if dim == "time" else size for dim, size in zip(variable.dims, variable.shape, strict=True))
