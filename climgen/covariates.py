"""Covariates on the fine grid: a user's elevation or land fraction, read only around the
domain, averaged where it is finer and interpolated where it is not, missing where it does not
reach, and refused on another projection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import InputError, InputWarning, warn_user
from climgen.grid import SpatialAxes, cell_bounds, find_spatial_axes, is_global_longitude
from climgen.io import cf
from climgen.regrid import area_mean


def align_covariate(
    covariate: xr.DataArray, name: str, axes: SpatialAxes, fine_axes: dict, fine_latlon: Callable | None = None
) -> np.ndarray:
    """Resample a covariate to the fine grid on shared axis names: the area-weighted mean of its
    cells over each fine cell where it is finer (:mod:`climgen.regrid`; the block mean where the
    grids nest), linear interpolation where it is not.

    Longitudes in 0..360 and -180..180 are matched to the input's convention. Cells outside the
    covariate's coverage are missing (the model then ignores the covariate there). A covariate
    on a lat/lon grid for an input on another grid kind is interpolated at the fine cells'
    latitudes and longitudes, ``fine_latlon()`` (2-D arrays, or None where the input's grid
    does not say them).
    """
    if isinstance(covariate, xr.Dataset):
        if len(covariate.data_vars) != 1:
            raise InputError(f"covariate {name!r}: pass a DataArray or a Dataset with one variable")
        covariate = next(iter(covariate.data_vars.values()))
    if not isinstance(covariate, xr.DataArray):
        raise InputError(
            f"covariate {name!r} must be an xarray DataArray (or a Dataset with one variable) with its coordinates, "
            f"got {type(covariate).__name__}"
        )
    try:
        cov_axes = find_spatial_axes(covariate)
    except InputError as err:
        raise InputError(f"covariate {name!r}: {err}") from err
    if cov_axes.kind == "latlon" and axes.kind != "latlon" and fine_latlon is not None:
        points = fine_latlon()
        if points is not None:
            return _at_points(_static(covariate, cov_axes, name), cov_axes, name, *points)
    if cov_axes.kind != axes.kind:
        raise InputError(
            f"covariate {name!r} is on a {cov_axes.kind} grid ({cov_axes.y}, {cov_axes.x}) but the input is on a "
            f"{axes.kind} grid ({axes.y}, {axes.x}); regrid the covariate to the input's grid first"
        )
    covariate = _static(covariate, cov_axes, name).rename({cov_axes.y: axes.y, cov_axes.x: axes.x})
    target_y = fine_axes[axes.y][0].values
    target_x = fine_axes[axes.x][0].values
    if axes.kind == "projected":  # the covariate's axes in the input's length unit (km against m...)
        wanted = cf.metres_per_unit(fine_axes[axes.x][0].attrs.get("units", "m"), f"projected axis {axes.x!r}")
        for axis in (axes.y, axes.x):
            given = covariate[axis].attrs.get("units")  # none given: the input's, as the numbers are compared
            scale = 1.0 if given is None else cf.metres_per_unit(given, f"covariate {name!r} axis {axis!r}") / wanted
            if scale != 1.0:
                covariate = covariate.assign_coords({axis: covariate[axis] * scale})
    if axes.kind == "curvilinear":  # no coordinates to interpolate by: the fine grid itself
        fine_shape = (target_y.size, target_x.size)
        if (covariate.sizes[axes.y], covariate.sizes[axes.x]) != fine_shape:
            raise InputError(
                f"covariate {name!r} on a curvilinear grid must be on the output's fine grid ({fine_shape[0]}x{fine_shape[1]} "
                f"cells), got {covariate.sizes[axes.y]}x{covariate.sizes[axes.x]}"
            )
        values = covariate.transpose(axes.y, axes.x).values.astype(np.float64)
        _warn_partial_cover(float(np.isfinite(values).mean()), name)
        return values
    if axes.kind == "latlon" and is_global_longitude(covariate, axes):
        covariate = _cover_longitudes(covariate, axes.x, target_x)  # any convention, any margin
    elif axes.kind == "latlon":
        source_x = covariate[axes.x].values
        converted = None
        if (target_x > 180).any() and (source_x < 0).any():
            converted = source_x % 360
        elif (target_x < 0).any() and (source_x > 180).any():
            converted = (source_x + 180) % 360 - 180
        if converted is not None:
            covariate = covariate.assign_coords({axes.x: converted}).sortby(axes.x)
            if np.ptp(converted) > np.ptp(source_x) + 1e-9:  # the covariate crosses the new seam:
                covariate = _wrap_longitudes(covariate, axes.x)  # keep its neighbours across it
    covariate = covariate.sortby(axes.x).sortby(axes.y)
    covered = [
        _covered(np.asarray(covariate[axis].values, np.float64), target)
        for axis, target in ((axes.y, target_y), (axes.x, target_x))
    ]
    outside = ~np.outer(*covered)
    # only the cells around the domain are read: a 1 km global elevation is gigabytes
    for axis in (axes.y, axes.x):
        covariate = _around(covariate, axis, np.asarray(fine_axes[axis][1].values))  # the fine cells' edges
        if covariate.sizes[axis] == 0:
            raise InputError(f"covariate {name!r} does not overlap the input domain (or has no values there)")
    covariate = covariate.astype(np.float64)
    if _finer_than(covariate, axes, target_y, target_x):
        # averaged over each fine cell, not sampled at its centre (which aliases the finer detail)
        values = area_mean(
            covariate.transpose(axes.y, axes.x).values,
            tuple(cell_bounds(covariate[axis]) for axis in (axes.y, axes.x)),
            tuple(np.asarray(fine_axes[axis][1].values, dtype=np.float64) for axis in (axes.y, axes.x)),
            latitude_rows=axes.kind == "latlon",
        )
        return _checked(values, outside, name)
    covariate = _averaged_where_finer(covariate, axes, fine_axes, target_y, target_x)
    _warn_if_coarser(max(_spacing_ratios(covariate, axes, target_y, target_x), default=1.0), name)
    if (
        covariate.sizes[axes.y] == target_y.size
        and covariate.sizes[axes.x] == target_x.size
        and np.allclose(np.sort(covariate[axes.y].values), np.sort(target_y))
        and np.allclose(np.sort(covariate[axes.x].values), np.sort(target_x))
    ):
        values = covariate.reindex({axes.y: target_y, axes.x: target_x}, method="nearest")
    else:
        values = covariate.interp({axes.y: target_y, axes.x: target_x}, method="linear")
    return _checked(values.transpose(axes.y, axes.x).values.copy(), outside, name)


def _static(covariate: xr.DataArray, cov_axes: SpatialAxes, name: str) -> xr.DataArray:
    """The covariate as a 2-D field: other dimensions of length 1 dropped, others refused."""
    extra = [dim for dim in covariate.dims if dim not in (cov_axes.y, cov_axes.x)]
    for dim in extra:
        if covariate.sizes[dim] != 1:
            raise InputError(f"covariate {name!r} must be static (2-D); it has dimension {dim!r} of size {covariate.sizes[dim]}")
    return covariate.squeeze(extra, drop=True).reset_coords(drop=True)


def _at_points(covariate: xr.DataArray, cov_axes: SpatialAxes, name: str, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A lat/lon covariate at the fine cells' 2-D ``lat``/``lon`` (a rotated, projected or
    curvilinear input): averaged first over blocks of about a fine cell where it is finer (a
    point sample of a 90 m elevation would alias its detail), then interpolated linearly."""
    y, x = cov_axes.y, cov_axes.x
    if not np.isfinite(lat).any():
        raise InputError(f"covariate {name!r}: the input's grid gives no latitudes and longitudes to place it by")
    if np.nanmax(lon % 360) - np.nanmin(lon % 360) < np.nanmax(lon) - np.nanmin(lon):
        lon = lon % 360  # a domain across the antimeridian stored on -180..180: made contiguous
    fine_step = _fine_step(lat, lon)
    blocks, spacings = {}, {}
    for axis, scale in ((y, 1.0), (x, float(np.cos(np.radians(np.nanmedian(lat)))))):
        values = covariate[axis].values
        spacings[axis] = float(np.median(np.abs(np.diff(values)))) * scale if values.size > 1 else 0.0
        blocks[axis] = max(1, int(fine_step // spacings[axis])) if spacings[axis] > 0 else 1
    _warn_if_coarser(max(spacings.values()) / fine_step if fine_step > 0 else 1.0, name)
    margin = {axis: 2 + blocks[axis] for axis in blocks}  # a block's width to spare beyond the points
    if is_global_longitude(covariate, cov_axes):
        covariate = _cover_longitudes(covariate, x, lon[np.isfinite(lon)], margin[x])
    else:  # on the fine grid's convention: within half a turn of the domain's middle
        source = covariate[x].values
        west = 0.5 * (np.nanmin(lon) + np.nanmax(lon)) - 180
        wrapped = (source - west) % 360 + west
        if not np.array_equal(wrapped, source):
            covariate = covariate.assign_coords({x: wrapped})
    covariate = covariate.sortby(y).sortby(x)
    for axis, target in ((y, lat), (x, lon)):
        covariate = _around(covariate, axis, target[np.isfinite(target)], margin_steps=margin[axis])
        if covariate.sizes[axis] == 0:
            raise InputError(f"covariate {name!r} does not overlap the input domain (or has no values there)")
    covariate = covariate.astype(np.float64)
    if max(blocks.values()) > 1:
        covariate = covariate.coarsen(blocks, boundary="trim").mean()
    points = {axis: xr.DataArray(values, dims=("fine_y", "fine_x")) for axis, values in ((y, lat), (x, lon))}
    values = covariate.interp(points, method="linear").transpose("fine_y", "fine_x").values.copy()
    return _checked(values, np.zeros(values.shape, dtype=bool), name)


def _fine_step(lat: np.ndarray, lon: np.ndarray) -> float:
    """The fine cells' typical size in degrees of latitude: steps along both grid axes, the
    east-west part shortened by the cosine of the latitude (0 for a single cell)."""
    shrink = np.cos(np.radians(lat))
    steps = []
    for axis in (0, 1):
        if lat.shape[axis] > 1:
            east = np.diff(lon, axis=axis) * shrink.take(range(1, lat.shape[axis]), axis=axis)
            steps.append(np.hypot(np.diff(lat, axis=axis), east).ravel())
    finite = np.concatenate(steps)[np.isfinite(np.concatenate(steps))] if steps else np.empty(0)
    return float(np.median(finite)) if finite.size else 0.0


def _warn_if_coarser(ratio: float, name: str) -> None:
    """Say when a covariate's cells are :data:`COARSER_COVARIATE` times as wide as the output's
    or more: interpolated, it adds no detail finer than its own cells, and can do harm."""
    if ratio >= COARSER_COVARIATE:
        warn_user(
            f"covariate {name!r} is coarser than the output grid (cells about {ratio:.1f} times as wide): interpolated "
            "to it, it adds no detail finer than its own cells and can make the result worse than no covariate; pass "
            "the finest version you have",
            InputWarning,
        )


def _checked(values: np.ndarray, outside: np.ndarray, name: str) -> np.ndarray:
    """The covariate on the fine grid, missing ``outside`` its coverage; refused without any
    value, and a warning where values are missing on a tenth of the domain or more (beyond its
    edges or inside its grid)."""
    values[outside] = np.nan
    if not np.isfinite(values).any():
        raise InputError(f"covariate {name!r} does not overlap the input domain (or has no values there)")
    _warn_partial_cover(float(np.isfinite(values).mean()), name)
    return values


def _covered(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Which ``target`` centres lie within the cells of the (sorted) ``source`` centres along one
    axis: inside the outer cells' edges (half a step beyond the outer centres), and not in a
    gap, an interval more than twice as wide as both its neighbours (a tile left out of a
    mosaic), except within half a neighbouring step of its edges. Interpolation, or cell edges
    halfway across, would fill a gap; a grid whose spacing changes gradually has none."""
    if source.size < 2:
        return np.ones(target.shape, dtype=bool)
    steps = np.diff(source)
    before = np.concatenate([steps[:1], steps[:-1]])
    after = np.concatenate([steps[1:], steps[-1:]])
    gap = steps > 2 * np.maximum(before, after)
    interval = np.clip(np.searchsorted(source, target) - 1, 0, steps.size - 1)
    tolerance = 1 + 1e-9
    inside = (target >= source[0] - 0.5 * steps[0] * tolerance) & (target <= source[-1] + 0.5 * steps[-1] * tolerance)
    near_edge = (target - source[interval] <= 0.5 * before[interval] * tolerance) | (
        source[interval + 1] - target <= 0.5 * after[interval] * tolerance
    )
    return inside & (~gap[interval] | near_edge)


def _warn_partial_cover(share: float, name: str) -> None:
    """Warn when a covariate has values on under 90% of the fine grid: elsewhere the model
    refines without it, which a user who passed it would not expect silently."""
    if 0 < share < 0.9:  # not for a sliver along the edges (none at all is an error)
        warn_user(
            f"covariate {name!r} has values on {100 * share:.0f}% of the domain; elsewhere the model refines without it",
            InputWarning,
        )


# a covariate whose cells are more than this many times as wide as the output's is said to be
# coarse: a wrong file (the coarse input's own elevation, say) more often than a choice
COARSER_COVARIATE = 1.5


def _spacing_ratios(covariate: xr.DataArray, axes: SpatialAxes, target_y: np.ndarray, target_x: np.ndarray) -> list:
    """The covariate's median spacing over the fine grid's, along (y, x); empty where an axis
    has a single cell."""
    ratios = []
    for axis, target in ((axes.y, target_y), (axes.x, target_x)):
        source = np.asarray(covariate[axis].values, dtype=np.float64)
        if source.size < 2 or target.size < 2:
            return []
        ratios.append(float(np.median(np.abs(np.diff(source))) / np.median(np.abs(np.diff(target)))))
    return ratios


def _averaged_where_finer(
    covariate: xr.DataArray, axes: SpatialAxes, fine_axes: dict, target_y: np.ndarray, target_x: np.ndarray
) -> xr.DataArray:
    """A covariate finer than the fine grid along one axis only (30" by 1' cells): averaged
    over the fine cells along that axis, left as it is along the other (interpolated after),
    so its finer detail is not point-sampled there; any other covariate as it is."""
    ratios = _spacing_ratios(covariate, axes, target_y, target_x)
    if not ratios or min(ratios) >= 0.8 or max(ratios) <= 1 + 1e-6:
        return covariate
    finer = [ratio < 0.8 for ratio in ratios]
    source_edges = tuple(cell_bounds(covariate[axis]) for axis in (axes.y, axes.x))
    target_edges = tuple(
        np.asarray(fine_axes[axis][1].values, dtype=np.float64) if averaged else edges
        for axis, averaged, edges in zip((axes.y, axes.x), finer, source_edges, strict=True)
    )
    values = area_mean(
        covariate.transpose(axes.y, axes.x).values, source_edges, target_edges, latitude_rows=axes.kind == "latlon"
    )
    coords = {
        axis: (target if averaged else np.asarray(covariate[axis].values))
        for axis, averaged, target in zip((axes.y, axes.x), finer, (target_y, target_x), strict=True)
    }
    return xr.DataArray(values, dims=(axes.y, axes.x), coords=coords)


def _finer_than(covariate: xr.DataArray, axes: SpatialAxes, target_y: np.ndarray, target_x: np.ndarray) -> bool:
    """Whether the covariate's cells are no larger than the fine grid's along both axes and
    clearly smaller (by a quarter) along one: then it is averaged, else interpolated."""
    ratios = _spacing_ratios(covariate, axes, target_y, target_x)
    return bool(ratios) and max(ratios) <= 1 + 1e-6 and min(ratios) < 0.8


def _around(covariate: xr.DataArray, name: str, target: np.ndarray, margin_steps: int = 2) -> xr.DataArray:
    """The covariate (sorted along ``name``) cut to the cells within ``margin_steps`` of its
    largest steps of the ``target`` coordinates (the fine cells' edges): all that interpolation
    onto their centres, or averaging over them, reads."""
    values = covariate[name].values
    step = float(np.abs(np.diff(values)).max()) if values.size > 1 else 0.0
    margin = margin_steps * step
    inside = np.flatnonzero((values >= target.min() - margin) & (values <= target.max() + margin))
    return covariate.isel({name: slice(inside[0], inside[-1] + 1) if inside.size else slice(0, 0)})


def _cover_longitudes(covariate: xr.DataArray, name: str, target: np.ndarray, spare: float = 1.5) -> xr.DataArray:
    """A global covariate's columns, shifted by multiples of 360 degrees, that cover the
    ``target`` longitudes (any convention, wrapped margins included) with ``spare`` columns to
    spare on either side."""
    longitudes = np.asarray(covariate[name].values, dtype=np.float64)
    spacing = abs(float(np.diff(longitudes).mean()))
    low, high = float(np.min(target)) - spare * spacing, float(np.max(target)) + spare * spacing
    parts = []
    for turns in range(int(np.floor((low - longitudes.max()) / 360)), int(np.ceil((high - longitudes.min()) / 360)) + 1):
        shifted = longitudes + 360.0 * turns
        inside = np.flatnonzero((shifted >= low) & (shifted <= high))
        if inside.size:
            parts.append(covariate.isel({name: inside}).assign_coords({name: shifted[inside]}))
    return xr.concat(parts, dim=name).sortby(name)


def _wrap_longitudes(covariate: xr.DataArray, name: str) -> xr.DataArray:
    """Add copies of the cells within one spacing of the longitude seam on its other side, so
    interpolation near the seam sees the neighbours a contiguous covariate has there."""
    lon = covariate[name].values
    spacing = float(np.median(np.diff(lon))) if lon.size > 1 else 0.0
    seam = 360.0 if lon.max() > 180 else 180.0
    low = covariate.isel({name: np.flatnonzero(lon < seam - 360 + spacing + 1e-9)})  # just after the seam
    high = covariate.isel({name: np.flatnonzero(lon > seam - spacing - 1e-9)})  # just before it
    return xr.concat(
        [high.assign_coords({name: high[name] - 360}), covariate, low.assign_coords({name: low[name] + 360})], dim=name
    )


MAPPING_KEYS = (
    "grid_mapping_name",
    "grid_north_pole_latitude",
    "grid_north_pole_longitude",
    "north_pole_grid_longitude",
    "latitude_of_projection_origin",
    "longitude_of_projection_origin",
    "longitude_of_central_meridian",
    "standard_parallel",
    "straight_vertical_longitude_from_pole",
)
"""Grid mapping attributes that place a grid on the globe: a covariate whose values differ is
on another grid, whatever its coordinates' numbers (false easting and northing are in the
axes' units, which the covariate's may not share, so they are not compared)."""


def check_same_projection(ds: xr.Dataset, variables: list[str], covariate: object, name: str) -> None:
    """A covariate that carries its grid mapping (as ``open_covariate`` gives it) must be on the
    input's: a rotated pole elsewhere puts the same rlat/rlon numbers on other places."""
    if not isinstance(covariate, xr.DataArray):
        return
    mapping = covariate.attrs.get("grid_mapping")
    source = cf.grid_mapping_name(ds, variables)
    if not mapping or source is None:
        return
    theirs = _mapping_attrs(covariate, mapping)
    if theirs is None:
        return
    ours = ds[source].attrs
    if theirs.get("grid_mapping_name") == "latitude_longitude":
        return  # a plain lat/lon covariate: placed by latitude and longitude on any grid
    differ = [key for key in MAPPING_KEYS if key in theirs and key in ours and not _same_value(theirs[key], ours[key])]
    if differ:
        raise InputError(
            f"covariate {name!r} is on another projection than the input: its grid mapping's {differ[0]} is "
            f"{theirs[differ[0]]}, the input's {ours[differ[0]]}; regrid the covariate to the input's grid first"
        )


def _mapping_attrs(covariate: xr.DataArray, mapping: str) -> dict | None:
    """The attributes of the grid mapping ``covariate`` names: carried as a coordinate, or read
    from the file it came from (``ds["orog"]`` of an opened file leaves the mapping behind);
    None where neither has it."""
    if mapping in covariate.coords:
        return dict(covariate[mapping].attrs)
    path = covariate.encoding.get("source")
    if not path or not Path(path).is_file():
        return None
    try:
        with xr.open_dataset(path, decode_times=False) as source:
            return dict(source[mapping].attrs) if mapping in source.variables else None
    except (OSError, ValueError):
        return None


def _same_value(first, second) -> bool:
    """Attribute values alike: numbers to 1e-9, anything else as text."""
    try:
        return bool(np.allclose(np.asarray(first, dtype=float), np.asarray(second, dtype=float), rtol=1e-9, atol=1e-9))
    except (TypeError, ValueError):
        return str(first) == str(second)
