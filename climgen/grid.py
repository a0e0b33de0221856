"""The grid convention: how a coarse grid is split into a fine one, and back.

Every coarse cell is split into ``factor`` x ``factor`` equal cells. Cell edges come from the
coordinate's ``bounds`` variable when it has one, else from midpoints between centres (the
outer edges extrapolated by half a cell). Fine 1-D coordinates are the centres of the sub-cells,
with their own bounds. This works on regular and irregular spacing, ascending or descending
axes, and for ``lat``/``lon``, ``rlat``/``rlon`` (rotated pole) and projected ``y``/``x``.
Curvilinear grids (dimensions without coordinate values, located by 2-D latitude and
longitude, as ocean models write them) are refined in index space.
:func:`coarsen_dataset` is the exact inverse on the grid (block means of the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from climgen.errors import ConfigError, GridError

AXIS_STANDARD_NAMES = {
    "latlon": ("latitude", "longitude"),
    "rotated": ("grid_latitude", "grid_longitude"),
    "projected": ("projection_y_coordinate", "projection_x_coordinate"),
}
AXIS_NAME_GUESSES = {
    "latlon": (("lat", "latitude", "nav_lat"), ("lon", "longitude", "nav_lon")),
    "rotated": (("rlat",), ("rlon",)),
    "projected": (("y", "yc"), ("x", "xc")),
}
# the units CF says identify latitude and longitude coordinates (CF 1.11, sections 4.1 and 4.2)
LATLON_UNITS = (
    {"degrees_north", "degree_north", "degree_N", "degrees_N", "degreeN", "degreesN"},
    {"degrees_east", "degree_east", "degree_E", "degrees_E", "degreeE", "degreesE"},
)
SUPPORTED_FACTORS = (2, 4, 8, 16)
# how a block's mean is taken for coarse consistency: every cell alike, or weighted by cell area
CONSERVATION = ("cells", "area")


@dataclass(frozen=True)
class SpatialAxes:
    """Names of the spatial dimensions of a grid and what kind of grid it is."""

    y: str
    x: str
    kind: str  # "latlon", "rotated", "projected" or "curvilinear" (index space, 2-D lat/lon)


def check_factor(factor: int) -> int:
    """Return ``factor`` if it is a supported refinement factor, else raise :class:`ConfigError`."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or int(factor) not in SUPPORTED_FACTORS:
        raise ConfigError(f"factor must be one of {', '.join(map(str, SUPPORTED_FACTORS))} (x2 stages), got {factor!r}")
    return int(factor)


def check_conservation(conservation: str) -> str:
    """Return ``conservation`` if it is one of :data:`CONSERVATION`, else raise :class:`ConfigError`."""
    if conservation not in CONSERVATION:
        raise ConfigError(f"conservation must be one of {', '.join(CONSERVATION)}, got {conservation!r}")
    return conservation


def refinement_stages(factor: int) -> int:
    """Number of x2 stages for a factor (4 -> 2)."""
    return int(check_factor(factor)).bit_length() - 1


def find_spatial_axes(obj: xr.Dataset | xr.DataArray) -> SpatialAxes:
    """Find the y/x dimension coordinates by standard_name, then by units in degrees north and
    east (:data:`LATLON_UNITS`), then ``axis``, then 2-D latitude and longitude, then by name."""
    coords = {name: obj.coords[name] for name in obj.dims if name in obj.coords}
    for kind, (y_name, x_name) in AXIS_STANDARD_NAMES.items():
        ys = [n for n, c in coords.items() if c.attrs.get("standard_name") == y_name]
        xs = [n for n, c in coords.items() if c.attrs.get("standard_name") == x_name]
        if ys and xs:
            return SpatialAxes(ys[0], xs[0], kind)
    # units in degrees north and east make latitude and longitude whatever the names (y/x with
    # degrees_north/east); rlat/rlon keep their rotated-pole reading
    rotated = AXIS_NAME_GUESSES["rotated"][0] + AXIS_NAME_GUESSES["rotated"][1]
    ys, xs = ([n for n, c in coords.items() if units_role(c) == role and n not in rotated] for role in ("latitude", "longitude"))
    if ys and xs:
        return SpatialAxes(ys[0], xs[0], "latlon")
    ys = [n for n, c in coords.items() if str(c.attrs.get("axis", "")).upper() == "Y"]
    xs = [n for n, c in coords.items() if str(c.attrs.get("axis", "")).upper() == "X"]
    if ys and xs:
        return SpatialAxes(ys[0], xs[0], _guess_kind(ys[0]))
    # before the names: y/x that only number their cells beside 2-D latitude and longitude
    # are a curvilinear grid, not a projected one with a spacing of 1
    curvilinear = _curvilinear_axes(obj)
    if curvilinear is not None:
        return curvilinear
    for kind, (y_names, x_names) in AXIS_NAME_GUESSES.items():
        y = next((n for n in y_names if n in coords), None)
        x = next((n for n in x_names if n in coords), None)
        if y and x:
            return SpatialAxes(y, x, kind)
    raise GridError(
        "no spatial axes found: expected 1-D coordinates lat/lon, rlat/rlon or y/x "
        f"(by standard_name, axis or name), or 2-D latitude and longitude; dimensions are {list(obj.dims)}"
    )


def is_index_coordinate(coordinate: xr.DataArray) -> bool:
    """Whether a 1-D coordinate only numbers its cells (0, 1, 2, ... or from 1, with no units
    but "1"): CMIP6 ocean grids' ``i``/``j``, NEMO's ``x``/``y`` written by xarray. It locates
    nothing, so a grid with 2-D latitude and longitude on such dimensions is curvilinear."""
    if coordinate.ndim != 1 or coordinate.size == 0 or str(coordinate.attrs.get("units", "1")) not in ("1", ""):
        return False
    if any(key in coordinate.attrs for key in ("standard_name", "axis")):
        return False
    values = np.asarray(coordinate.values)
    if not np.issubdtype(values.dtype, np.number):
        return False
    return bool(np.array_equal(values, np.arange(values.size)) or np.array_equal(values, np.arange(1, values.size + 1)))


def _curvilinear_axes(obj: xr.Dataset | xr.DataArray) -> SpatialAxes | None:
    """The dimensions of 2-D latitude and longitude coordinates, when those dimensions have no
    coordinate values of their own, or only cell numbers (:func:`is_index_coordinate`): ocean
    models' ``nav_lat``/``nav_lon`` on (y, x), CMIP6's ``latitude``/``longitude`` on (j, i),
    WRF's ``XLAT``/``XLONG`` on (Time, south_north, west_east)."""
    found: dict[str, tuple] = {}
    for name, variable in obj.coords.items():
        role = latlon_role(str(name), variable)
        # WRF repeats XLAT/XLONG along Time: the grid is their last two dimensions
        bare = all(dim not in obj.coords or is_index_coordinate(obj.coords[dim]) for dim in variable.dims[-2:])
        if role and variable.ndim >= 2 and bare:
            found.setdefault(role, variable.dims[-2:])
    if len(found) == 2 and found["latitude"] == found["longitude"]:
        return SpatialAxes(*found["latitude"], "curvilinear")
    return None


def latlon_role(name: str, variable: xr.DataArray | xr.Variable) -> str | None:
    """``"latitude"`` or ``"longitude"`` for a variable that gives true latitudes or
    longitudes (by standard_name, or by a usual name with units in degrees), else None."""
    standard = variable.attrs.get("standard_name")
    degrees = str(variable.attrs.get("units", "")).startswith("degree")
    for role, names in (
        ("latitude", ("lat", "latitude", "nav_lat", "XLAT", "XLAT_M")),
        ("longitude", ("lon", "longitude", "nav_lon", "XLONG", "XLONG_M")),
    ):
        if standard == role or (name in names and degrees):
            return role
    return None


def _guess_kind(y_name: str) -> str:
    for kind, (y_names, _) in AXIS_NAME_GUESSES.items():
        if y_name in y_names:
            return kind
    return "projected"


def cell_bounds(coordinate: xr.DataArray, dataset: xr.Dataset | None = None) -> np.ndarray:
    """Edges of each cell as an (n, 2) array, from the ``bounds`` variable or from midpoints."""
    values = np.asarray(coordinate.values, dtype=np.float64)
    name = coordinate.name
    if values.ndim != 1:
        raise GridError(f"coordinate {name!r} must be 1-D")
    if not np.isfinite(values).all():
        raise GridError(f"coordinate {name!r} has missing values")
    steps = np.diff(values)
    if values.size > 1 and not ((steps > 0).all() or (steps < 0).all()):
        raise GridError(f"coordinate {name!r} is not strictly monotonic; sort it first")
    bounds_name = coordinate.attrs.get("bounds")
    if dataset is not None and bounds_name in dataset.variables:
        variable = dataset[bounds_name]
        if variable.ndim == 2 and variable.dims[1] == coordinate.dims[0]:  # stored (bnds, lat): cells first
            variable = variable.transpose()
        bounds = np.asarray(variable.values, dtype=np.float64)
        if bounds.shape == (values.size, 2) and np.isfinite(bounds).all():
            role = _degrees_role(coordinate)
            if role == "longitude":  # edges within half a turn of their centre (357.5, 2.5 -> -2.5, 2.5)
                bounds = values[:, None] + (bounds - values[:, None] + 180.0) % 360.0 - 180.0
            elif role == "latitude":
                bounds = np.clip(bounds, -90.0, 90.0)
            # each pair in the coordinate's direction (some files write the upper edge first):
            # refined cells are laid out from the first edge to the second
            ordered = np.sort(bounds, axis=1)
            return ordered[:, ::-1] if values.size > 1 and values[-1] < values[0] else ordered
    if values.size == 1:
        raise GridError(f"coordinate {name!r} has a single value and no bounds: cell size unknown")
    middles = (values[1:] + values[:-1]) / 2
    edges = np.concatenate([[values[0] - (middles[0] - values[0])], middles, [values[-1] + (values[-1] - middles[-1])]])
    if _degrees_role(coordinate) == "latitude":
        edges = np.clip(edges, -90.0, 90.0)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def units_role(variable: xr.DataArray | xr.Variable) -> str | None:
    """``"latitude"`` or ``"longitude"`` when the variable's units are those CF reserves for
    them (:data:`LATLON_UNITS`), else None."""
    units = variable.attrs.get("units")
    return next((role for role, cf_units in zip(("latitude", "longitude"), LATLON_UNITS, strict=True) if units in cf_units), None)


def _degrees_role(coordinate: xr.DataArray) -> str | None:
    """``"latitude"`` or ``"longitude"`` for a 1-D coordinate of true latitudes or longitudes
    in degrees (by standard_name, CF units, or a usual name with units in degrees), else None."""
    role = units_role(coordinate) or latlon_role(str(coordinate.name), coordinate)
    if role is None and coordinate.name in ("lat", "latitude") and "units" not in coordinate.attrs:
        return "latitude"  # a bare lat axis: its computed edges stay inside the poles, as before
    return role


def refine_bounds(bounds: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Split each cell into ``factor`` equal parts: returns (fine centres, fine bounds (n*f, 2))."""
    fractions = np.arange(factor + 1) / factor
    edges = bounds[:, :1] + (bounds[:, 1:] - bounds[:, :1]) * fractions[None, :]
    fine_bounds = np.stack([edges[:, :-1].ravel(), edges[:, 1:].ravel()], axis=1)
    return fine_bounds.mean(axis=1), fine_bounds


def coarse_bounds(bounds: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge each run of ``factor`` cells: returns (coarse centres, coarse bounds)."""
    n = bounds.shape[0] // factor * factor
    merged = np.stack([bounds[:n:factor, 0], bounds[factor - 1 : n : factor, 1]], axis=1)
    return merged.mean(axis=1), merged


def cell_weights(y_bounds: np.ndarray, x_bounds: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Relative cell areas of a grid as row and column factors (area = row x column), from the
    cells' edges: on lat/lon and rotated-pole grids sin(north) - sin(south) times the width in
    degrees (the area on a sphere), on projected grids height times width."""
    if kind not in ("latlon", "rotated", "projected", "curvilinear"):
        raise ValueError(f"unknown grid kind {kind!r}: one of 'latlon', 'rotated', 'projected', 'curvilinear'")
    heights = np.abs(y_bounds[:, 1] - y_bounds[:, 0])
    if kind in ("latlon", "rotated"):
        heights = np.abs(np.sin(np.radians(y_bounds[:, 1])) - np.sin(np.radians(y_bounds[:, 0])))
    return heights, np.abs(x_bounds[:, 1] - x_bounds[:, 0])


def area_weights(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cell_weights` of a dataset's grid, from its axes and their bounds variables."""
    axes = find_spatial_axes(ds)
    return cell_weights(cell_bounds(ds[axes.y], ds), cell_bounds(ds[axes.x], ds), axes.kind)


def bounds_name(coordinate_name: str) -> str:
    """Name of the bounds variable climgen writes for a coordinate."""
    return f"{coordinate_name}_bnds"


def make_axis(name: str, centres: np.ndarray, bounds: np.ndarray, template: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """A 1-D coordinate with the template's attributes and dtype, and its bounds variable."""
    dtype = template.dtype if np.issubdtype(template.dtype, np.floating) else np.float64
    attrs = {k: v for k, v in template.attrs.items() if k != "bounds"} | {"bounds": bounds_name(name)}
    coordinate = xr.DataArray(centres.astype(np.float64).astype(dtype), dims=(name,), attrs=attrs, name=name)
    bounds_array = xr.DataArray(bounds.astype(np.float64).astype(dtype), dims=(name, "bnds"), name=bounds_name(name))
    return coordinate, bounds_array


def coarsen_dataset(ds: xr.Dataset, factor: int, conservation: str = "cells") -> xr.Dataset:
    """Block-mean every spatial variable by ``factor`` (the inverse of refinement on the grid).

    Used to build coarse/fine pairs from a real fine field for evaluation: coarsen the truth,
    refine it, compare. Trailing rows/columns that do not fill a block are dropped. 2-D
    auxiliary coordinates are block-averaged. ``conservation="area"`` weights the data's block
    means by cell area (:func:`cell_weights`), as conservative regridding does. A domain
    stored across the longitude seam is coarsened on the longitudes that make it one band
    (:func:`contiguous_longitude`), as climgen refines it.
    """
    factor = check_factor(factor)
    check_conservation(conservation)
    axes = find_spatial_axes(ds)
    ds, _ = contiguous_longitude(ds, axes)
    ny = ds.sizes[axes.y] // factor * factor
    nx = ds.sizes[axes.x] // factor * factor
    if ny == 0 or nx == 0:
        raise GridError(f"domain {ds.sizes[axes.y]}x{ds.sizes[axes.x]} is smaller than one {factor}x{factor} block")
    trimmed = ds.isel({axes.y: slice(0, ny), axes.x: slice(0, nx)})
    # the trimmed dataset's own bounds variables (trimmed with it): the untrimmed ones would not fit
    y_centres, y_bounds = coarse_bounds(cell_bounds(trimmed[axes.y], trimmed), factor)
    x_centres, x_bounds = coarse_bounds(cell_bounds(trimmed[axes.x], trimmed), factor)
    spatial = [name for name, var in trimmed.variables.items() if axes.y in var.dims and axes.x in var.dims]
    drop = [
        bounds_name_
        for bounds_name_ in (trimmed[axes.y].attrs.get("bounds"), trimmed[axes.x].attrs.get("bounds"))
        if bounds_name_ in trimmed.variables
    ]
    window = {axes.y: factor, axes.x: factor}
    blocks = trimmed.drop_vars(drop).coarsen(window).mean(keep_attrs=True)
    if conservation == "area":
        rows, cols = cell_weights(cell_bounds(trimmed[axes.y], trimmed), cell_bounds(trimmed[axes.x], trimmed), axes.kind)
        area = xr.DataArray(
            rows[:, None] * cols[None, :], dims=(axes.y, axes.x), coords={n: trimmed[n] for n in (axes.y, axes.x)}
        )
        for name in spatial:
            variable = trimmed[name]
            if name in trimmed.data_vars and variable.dtype.kind == "f":
                weighted = (variable * area).coarsen(window).sum() / area.where(variable.notnull()).coarsen(window).sum()
                blocks[name] = weighted.transpose(*variable.dims).astype(variable.dtype)
    for name, centres in _spherical_block_means(trimmed, axes, window).items():
        blocks[name] = centres.transpose(*trimmed[name].dims)
    for name in spatial:
        if name in blocks.variables:
            blocks[name].attrs = dict(trimmed[name].attrs)
            blocks[name].encoding = {}
    y, y_b = make_axis(axes.y, y_centres, y_bounds, trimmed[axes.y])
    x, x_b = make_axis(axes.x, x_centres, x_bounds, trimmed[axes.x])
    blocks.attrs = dict(ds.attrs)
    if axes.kind == "curvilinear":  # index positions are no coordinates: bare dimensions, as in the input
        return blocks
    blocks = blocks.assign_coords({axes.y: y, axes.x: x})
    blocks[bounds_name(axes.y)] = y_b
    blocks[bounds_name(axes.x)] = x_b
    return blocks


def _spherical_block_means(ds: xr.Dataset, axes: SpatialAxes, window: dict[str, int]) -> dict[str, xr.DataArray]:
    """2-D latitude and longitude auxiliaries of ``ds`` block-averaged as points on the unit
    sphere: each block gets the centre of its cells on the sphere, so a block across the 0/360
    seam (359 and 1 average to 0, not 180) or around a pole is right, and elsewhere the centre
    lies a little poleward of the plain mean of latitudes (cells at 60 and 61 N, 0 and 10 E:
    60.59 N). Each centre's longitude is given in whole turns nearest its block's first cell,
    so longitudes that run on past 360 or below -180 stay as continuous as the input's."""
    found = {}
    for name, variable in ds.variables.items():
        if variable.ndim >= 2 and {axes.y, axes.x} <= set(variable.dims) and (role := latlon_role(str(name), variable)):
            found[role] = name
    if len(found) != 2:
        return {}
    lat_name, lon_name = found["latitude"], found["longitude"]
    lat, lon = np.deg2rad(ds[lat_name].astype(np.float64)), np.deg2rad(ds[lon_name].astype(np.float64))
    x, y, z = (part.coarsen(window).mean() for part in (np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)))
    centre_lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    centre_lon = np.rad2deg(np.arctan2(y, x))
    first = ds[lon_name].astype(np.float64)[
        {axes.y: slice(None, None, window[axes.y]), axes.x: slice(None, None, window[axes.x])}
    ]
    first = first.isel({axes.y: slice(0, centre_lon.sizes[axes.y]), axes.x: slice(0, centre_lon.sizes[axes.x])})
    centre_lon = first.values + (centre_lon - first.values + 180) % 360 - 180
    return {
        lat_name: centre_lat.astype(ds[lat_name].dtype).drop_vars([lat_name, lon_name], errors="ignore"),
        lon_name: centre_lon.astype(ds[lon_name].dtype).drop_vars([lat_name, lon_name], errors="ignore"),
    }


def _longitude_gap_allowed(longitudes: np.ndarray) -> float:
    """The largest step between neighbouring longitudes of one contiguous domain (degrees)."""
    return max(90.0, 5.0 * float(np.median(np.abs(np.diff(longitudes)))))


def _one_band(longitudes: np.ndarray) -> bool:
    """Whether longitudes, sorted, are distinct and without a gap wider than one domain has."""
    steps = np.diff(np.sort(longitudes))
    return bool(steps.min() > 0 and steps.max() <= _longitude_gap_allowed(np.sort(longitudes)))


def contiguous_longitude(ds: xr.Dataset, axes: SpatialAxes) -> tuple[xr.Dataset, str | None]:
    """A lat/lon domain stored across the longitude seam (354, 356, 358, 0, 2 in 0..360, or
    its columns out of order, as ``where(..., drop=True)`` leaves them), on the other
    convention and sorted, so that neighbouring columns are neighbours on the globe; and the
    convention it was put on (``None``, and ``ds`` itself, when it needed nothing). Bounds
    move with their cells. A domain in separate pieces, which no convention makes one band,
    is a :class:`GridError`."""
    if axes.kind != "latlon" or ds.sizes[axes.x] < 3:
        return ds, None
    x = axes.x
    longitudes = np.asarray(ds[x].values, dtype=np.float64)
    if not np.isfinite(longitudes).all() or np.abs(np.diff(longitudes)).max() <= _longitude_gap_allowed(longitudes):
        return ds, None
    conventions = {"-180..180": (longitudes + 180.0) % 360.0 - 180.0, "0..360": longitudes % 360.0}
    contiguous = [name for name, values in conventions.items() if _one_band(values)]
    if not contiguous:
        raise GridError(
            f"longitude {x!r} jumps by {np.abs(np.diff(longitudes)).max():.0f} degrees and is not one contiguous band "
            "in -180..180 or in 0..360: the domain is in separate pieces; refine each piece on its own"
        )
    convention = contiguous[0]
    return with_longitudes(ds, x, conventions[convention]), convention


def with_longitudes(ds: xr.Dataset, x: str, converted: np.ndarray) -> xr.Dataset:
    """``ds`` with longitude ``x`` set to ``converted`` (the same places, whole turns apart),
    its bounds moved with their cells, and the columns sorted by the new longitudes."""
    shift = converted - np.asarray(ds[x].values, dtype=np.float64)  # whole turns, per column
    result = ds.assign_coords({x: ds[x].copy(data=converted.astype(ds[x].dtype))})
    bounds = ds[x].attrs.get("bounds")
    if bounds in ds.variables and ds[bounds].dims[:1] == (x,):
        values = np.asarray(ds[bounds].values, dtype=np.float64) + shift[:, None]
        # as a bare variable: one carrying the old longitudes would be aligned to the new ones (NaN)
        result[bounds] = xr.Variable(ds[bounds].dims, values.astype(ds[bounds].dtype), ds[bounds].attrs)
    return result.isel({x: np.argsort(converted, kind="stable")})


def is_global_longitude(ds: xr.Dataset | xr.DataArray, axes: SpatialAxes) -> bool:
    """Whether a lat/lon grid's longitudes go once round the globe at a constant spacing,
    so that its first and last columns are neighbours."""
    if axes.kind != "latlon" or ds.sizes[axes.x] < 3:
        return False
    longitudes = np.asarray(ds[axes.x].values, dtype=np.float64)
    steps = np.diff(longitudes)
    spacing = abs(float(steps.mean()))
    # steps may differ by the rounding of the stored values (GRIB1's millidegrees: 0.703 and
    # 0.704 for 360/512); a grid not spaced evenly differs by far more than 2%
    uniform = np.allclose(np.abs(steps), spacing, rtol=0.02, atol=0.0)
    return bool(spacing > 0 and uniform and abs(spacing * longitudes.size - 360.0) < 0.01 * spacing)


def wrap_longitude(ds: xr.Dataset, axes: SpatialAxes, cells: int) -> xr.Dataset:
    """A global lat/lon dataset with ``cells`` columns from each side copied beyond the other,
    at longitudes shifted by 360 degrees (and their bounds), lazily: the columns at either
    edge then have their true neighbours as context. Crop ``cells`` from each side to undo."""
    x = axes.x
    count = ds.sizes[x]
    cells = min(int(cells), count)
    if cells <= 0:
        return ds
    direction = 1.0 if float(ds[x].values[-1]) > float(ds[x].values[0]) else -1.0
    bounds = ds[x].attrs.get("bounds")
    # the gridded variables as dask arrays (lazy concatenation); the rest stays as it is
    lazy = ds.assign({name: v.chunk() for name, v in ds.data_vars.items() if x in v.dims and v.chunks is None})

    def shifted(part: xr.Dataset, degrees: float) -> xr.Dataset:
        part = part.assign_coords({x: part[x].copy(data=part[x].values + degrees)})
        if bounds in part.variables:
            part[bounds] = part[bounds].copy(data=np.asarray(part[bounds].values) + degrees)
        return part

    before = shifted(lazy.isel({x: slice(count - cells, count)}), -360.0 * direction)
    after = shifted(lazy.isel({x: slice(0, cells)}), 360.0 * direction)
    wrapped = xr.concat(
        [before, lazy, after],
        dim=x,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
    )
    for name, variable in wrapped.variables.items():
        if name in ds.variables:
            variable.encoding = dict(ds[name].encoding)
    return wrapped


def spatial_last(ds: xr.Dataset, axes: SpatialAxes) -> xr.Dataset:
    """``ds`` with every variable on the grid ordered (..., y, x), lazily (IMERG stores
    (time, lon, lat)); other variables, bounds among them, as they are."""
    reordered = {
        name: variable.transpose(..., axes.y, axes.x)
        for name, variable in ds.data_vars.items()
        if axes.y in variable.dims and axes.x in variable.dims and variable.dims[-2:] != (axes.y, axes.x)
    }
    return ds.assign(reordered) if reordered else ds
