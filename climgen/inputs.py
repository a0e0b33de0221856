"""Inputs made ready for refinement: variables chosen and checked, covariates on the fine grid,
longitudes made contiguous and a global grid wrapped, physical bounds and ordered variables.
No model runs here; :mod:`climgen.planning` builds on this."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from climgen.config import MAX_STAGE_INPUT, SynthesisConfig, parse_limits  # noqa: F401 (public here since 0.1)
from climgen.conservation import Bounds, format_bounds
from climgen.covariates import align_covariate, check_same_projection  # noqa: F401 (align_covariate: public here)
from climgen.errors import ClimgenWarning, ConfigError, InputError, InputWarning, warn_user
from climgen.grid import (
    SpatialAxes,
    cell_bounds,
    contiguous_longitude,
    find_spatial_axes,
    is_global_longitude,
    make_axis,
    refine_bounds,
    wrap_longitude,
)
from climgen.io import cf, physical
from climgen.io.units import check_units
from climgen.tiling import TileLayout


class PhysicalBoundsWarning(ClimgenWarning):
    """Coarse input values lie outside the physical bounds of their variable."""


class LongitudeWarning(ClimgenWarning):
    """An input's longitudes were put on the other convention (-180..180 or 0..360) to make
    its domain contiguous."""


class OrderWarning(ClimgenWarning):
    """Coarse input values of variables that come in order (tasmin <= tasmax) are out of order."""


@dataclass
class _Prepared:
    axes: SpatialAxes
    variables: list[str]
    layout: TileLayout
    covariates: np.ndarray | None
    covariate_names: list[str] = field(default_factory=list)
    bounds: dict = field(default_factory=dict)  # variable -> ((lower, upper), where they come from)
    order: list[tuple[str, ...]] = field(default_factory=list)  # chains of variables kept in order, lowest first
    flip: tuple[bool, bool] = (False, False)  # (y, x) stored descending: the model sees them ascending
    covariate_sources: list[dict] = field(default_factory=list)  # each covariate's variable, file, units and hash

    @property
    def limits(self) -> dict[str, Bounds]:
        """Each variable's physical (lower, upper) bounds."""
        return {name: limits for name, (limits, _) in self.bounds.items()}


def _as_dataset(data: xr.Dataset | xr.DataArray) -> xr.Dataset:
    if isinstance(data, xr.DataArray):
        return data.to_dataset(name=data.name or "data")
    if not isinstance(data, xr.Dataset):
        raise InputError(f"expected an xarray Dataset or DataArray, got {type(data).__name__}")
    return data


def _categorical(variable: xr.DataArray) -> bool:
    """A CF flag variable (land cover type, quality flags): categories, not quantities."""
    return "flag_values" in variable.attrs or "flag_masks" in variable.attrs


def select_variables(ds: xr.Dataset, axes: SpatialAxes, variables) -> list[str]:
    """The variables to refine: those named, else every numeric variable on the (y, x) grid
    that is not categorical (CF flags) nor one of climgen's own maps."""
    if isinstance(variables, str):
        variables = [v for v in variables.split(",") if v]
    # 2-D latitude/longitude, and the maps climgen writes with every output (a climgen output
    # refined again gets new ones): not fields to refine
    skipped = set(cf.find_latlon_auxiliaries(ds, axes) or ()) | set(cf.ANCILLARY_ATTRS)
    gridded = [name for name, var in ds.data_vars.items() if axes.y in var.dims and axes.x in var.dims and name not in skipped]
    if variables:
        maps = [name for name in variables if name in cf.ANCILLARY_ATTRS]
        if maps:
            raise InputError(f"{maps[0]!r} is a map climgen writes with every output; it is made anew, not refined")
        missing = [name for name in variables if name not in ds.data_vars]
        if missing:
            refinable = sorted(str(name) for name in gridded if ds[name].dtype.kind in "fiu")
            raise InputError(f"variables not found: {missing}; the input's fields on the grid are {refinable}")
        categorical = [name for name in variables if _categorical(ds[name])]
        if categorical:
            raise InputError(
                f"variable {categorical[0]!r} holds categories (flag_values): refining would average them into "
                "values that mean nothing; refine a fraction of each category instead"
            )
        chosen = list(variables)
        chosen += _formula_terms_of(ds, axes, chosen)
    else:
        # numeric: a boolean mask or a string field beside the data is no field to refine
        chosen = [name for name in gridded if not _categorical(ds[name]) and ds[name].dtype.kind in "fiu"]
        aside = [name for name in gridded if name not in chosen]
        if aside and chosen:
            warn_user(
                f"variables {aside} hold categories (flag_values) or no numbers (masks, text): they are not refined "
                "and are left out of the output",
                InputWarning,
            )
        if aside and not chosen:
            raise InputError(
                f"no variable on the ({axes.y}, {axes.x}) grid to refine: {aside} hold categories (flag_values) or no "
                "numbers; refine a fraction of each category instead"
            )
    if not chosen:
        raise InputError(f"no variable on the ({axes.y}, {axes.x}) grid to refine")
    for name in chosen:
        var = ds[name]
        if axes.y not in var.dims or axes.x not in var.dims:
            raise InputError(f"variable {name!r} does not span the spatial dimensions ({axes.y}, {axes.x})")
        if var.dtype.kind not in "fiu":
            raise InputError(f"variable {name!r} is not numeric ({var.dtype})")
        if cf.MEMBER_DIM in var.dims:
            raise InputError(
                f"variable {name!r} has a dimension {cf.MEMBER_DIM!r}, the name climgen gives its own ensemble members; "
                f"rename the input's first, e.g. ds.rename({cf.MEMBER_DIM}='member') (each member is then refined as a field)"
            )
        empty = [dim for dim in var.dims if var.sizes[dim] == 0]
        if empty:
            raise InputError(
                f"variable {name!r} has no values: dimension {empty[0]!r} has length 0 (a selection that matched nothing?)"
            )
    return chosen


def _formula_terms_of(ds: xr.Dataset, axes: SpatialAxes, chosen: list[str]) -> list[str]:
    """Gridded variables that the ``formula_terms`` of the chosen variables' vertical
    coordinates name (CMIP's surface pressure ``ps`` of hybrid levels) and that are not chosen:
    refined too, with a warning, so the output's levels can still be turned into heights or
    pressures (CF 4.3.3) and name no variable it lacks."""
    import re

    needed = []
    for name in chosen:
        for coordinate in ds[name].coords.values():
            for term in re.findall(r"\w+:\s*(\S+)", str(coordinate.attrs.get("formula_terms", ""))):
                gridded = term in ds.data_vars and {axes.y, axes.x} <= set(ds[term].dims)
                if gridded and term not in chosen and term not in needed:
                    needed.append(term)
    if needed:
        warn_user(
            f"refining {', '.join(map(repr, needed))} too: the formula_terms of the vertical coordinate name "
            f"{'them' if len(needed) > 1 else 'it'}, and the output's levels need {'them' if len(needed) > 1 else 'it'}",
            InputWarning,
        )
    return needed


def _fine_axes(ds: xr.Dataset, axes: SpatialAxes, factor: int) -> dict[str, tuple[xr.DataArray, xr.DataArray]]:
    result = {}
    for name in (axes.y, axes.x):
        centres, bounds = refine_bounds(cell_bounds(ds[name], ds), factor)
        result[name] = make_axis(name, centres, bounds, ds[name])
    return result


def contiguous_input(ds: xr.Dataset) -> tuple[xr.Dataset, str | None]:
    """``ds`` on contiguous longitudes (:func:`climgen.grid.contiguous_longitude`), with a
    warning when its longitudes had to change convention: the output follows the new one."""
    axes = find_spatial_axes(ds)
    converted, convention = contiguous_longitude(ds, axes)
    if convention:
        warn_user(
            f"longitude {axes.x!r} crosses the longitude seam: refined on {convention} longitudes "
            f"({float(converted[axes.x].min()):g} to {float(converted[axes.x].max()):g}), sorted; the output is on them too",
            LongitudeWarning,
        )
    return converted, convention


def wrap_global(ds: xr.Dataset, config: SynthesisConfig) -> tuple[xr.Dataset, int]:
    """A global lat/lon input with one tile halo of columns wrapped beyond each edge, and that
    number (0, and ``ds`` itself, for any other grid): tiles at either edge then see their true
    neighbours across the seam, and the output has no seam there. The output is cropped back."""
    axes = find_spatial_axes(ds)
    if not is_global_longitude(ds, axes):
        return ds, 0
    cells = config.layout((ds.sizes[axes.y], ds.sizes[axes.x])).halo
    return (wrap_longitude(ds, axes, cells), min(cells, ds.sizes[axes.x])) if cells else (ds, 0)


def _prepare(ds: xr.Dataset, config: SynthesisConfig, covariates: Mapping | None) -> _Prepared:
    axes = find_spatial_axes(ds)
    if axes.kind == "curvilinear" and config.conservation == "area":
        raise ConfigError(
            "conservation='area' needs cell areas, which climgen does not derive on a curvilinear grid; use 'cells'"
        )
    variables = select_variables(ds, axes, config.variables)
    if config.members > 1 and cf.MEMBER_DIM in ds.variables:
        raise InputError(
            f"the input has a {cf.MEMBER_DIM!r} "
            f"{'coordinate (CMIP files label their member so)' if cf.MEMBER_DIM in ds.coords else 'variable'}, and "
            f"members={config.members} adds a {cf.MEMBER_DIM!r} dimension of its own: "
            f"drop or rename the input's first, e.g. ds.drop_vars({cf.MEMBER_DIM!r})"
        )
    warn_left_out(ds, axes)
    warn_unordered_steps(ds, variables, axes)
    warn_float32_rounding(ds, variables, axes)
    check_units(ds, variables)
    for name in (axes.y, axes.x):
        cell_bounds(ds[name], ds)  # validates monotonic, finite coordinates
    cf.projected_axis_scale(ds, axes)  # projected axes in a length unit pint can read
    layout = config.layout((ds.sizes[axes.y], ds.sizes[axes.x]))
    stacked = None
    names: list[str] = []
    if covariates is not None and not isinstance(covariates, Mapping):
        raise ConfigError(
            "covariates must be a mapping of names to DataArrays, such as {'elevation': orog}, "
            f"not a {type(covariates).__name__}"
        )
    if covariates:
        fine_axes = _fine_axes(ds, axes, config.factor)
        for key, value in covariates.items():
            check_same_projection(ds, variables, value, key)

        @functools.cache
        def fine_latlon():  # the fine cells' latitudes and longitudes, for a covariate on lat/lon
            mapping = cf.grid_mapping_name(ds, variables)
            return cf.auxiliary_latlon(ds, axes, mapping, fine_axes[axes.y][0].values, fine_axes[axes.x][0].values)

        stacked = np.stack([align_covariate(value, key, axes, fine_axes, fine_latlon) for key, value in covariates.items()])
        names = list(covariates)
    sources = [
        _covariate_source(key, value, aligned)
        for (key, value), aligned in zip((covariates or {}).items(), stacked if stacked is not None else [], strict=True)
    ]
    bounds = variable_bounds(ds, variables, config.bounds)
    order = variable_order(ds, variables, config.order)
    return _Prepared(axes, variables, layout, stacked, names, bounds, order, descending_axes(ds, axes), sources)


def _covariate_source(name: str, covariate: xr.DataArray, aligned: np.ndarray) -> dict:
    """What a provenance says of one covariate: its variable, file and units as given, and the
    SHA-256 of the fine field it became (the values the model saw)."""
    import hashlib

    return {
        "name": name,
        "variable": None if covariate.name is None else str(covariate.name),
        "file": covariate.encoding.get("source"),
        "units": covariate.attrs.get("units"),
        "sha256": hashlib.sha256(np.ascontiguousarray(aligned, dtype=np.float64).tobytes()).hexdigest(),
    }


def descending_axes(ds: xr.Dataset, axes: SpatialAxes) -> tuple[bool, bool]:
    """Whether the (y, x) coordinates are stored in descending order (north to south, east to
    west). The model refines every field south to north and west to east, so that a field's
    refinement depends on the order its grid is stored in only where the tiles fall
    differently; bare index dimensions (curvilinear grids) are taken as stored."""
    result = []
    for name in (axes.y, axes.x):
        values = ds[name].values if name in ds.coords else np.arange(2)
        result.append(bool(values.size > 1 and values[-1] < values[0]))
    return result[0], result[1]


def warn_left_out(ds: xr.Dataset, axes: SpatialAxes) -> None:
    """Warn of data variables along one spatial axis only (zonal or meridional means, profiles):
    they have no place on the fine grid, so the output leaves them out."""
    bounds = {ds[axes.y].attrs.get("bounds"), ds[axes.x].attrs.get("bounds")}
    partial = [
        name for name, variable in ds.data_vars.items() if len({axes.y, axes.x} & set(variable.dims)) == 1 and name not in bounds
    ]
    if partial:
        warn_user(
            f"variables {partial} lie along only one of ({axes.y}, {axes.x}): they are not on the fine grid "
            "and are left out of the output",
            InputWarning,
        )


def warn_float32_rounding(ds: xr.Dataset, variables: list[str], axes: SpatialAxes) -> None:
    """Warn where a float64 variable's detail is lost to the float32 output: its values sit on
    an offset so large (geopotential anomalies stored as totals) that float32's rounding there
    is 1% of the field's spread or more. Judged on its first field with values (an
    accumulation's first step is often missing), read alone."""
    for name in variables:
        if ds[name].dtype != np.float64:
            continue
        ordered = ds[name].transpose(..., axes.y, axes.x)
        finite = np.empty(0)
        for index in np.ndindex(*ordered.shape[:-2]):
            values = np.asarray(ordered[index].values)
            finite = values[np.isfinite(values)]
            if finite.size >= 2:
                break
        if finite.size < 2:
            continue
        spread = float(finite.std())
        rounding = float(np.spacing(np.float32(np.abs(finite).max())))
        if spread > 0 and rounding >= 0.01 * spread:
            warn_user(
                f"{name!r} is refined and written in float32, whose rounding at its magnitude ({rounding:.3g}) is "
                f"{rounding / spread:.0%} of its spread ({spread:.3g}): refine the anomaly from an offset instead "
                f"(e.g. ds[{name!r}] - {float(np.round(finite.mean(), 0)):g})",
                InputWarning,
            )


def warn_unordered_steps(ds: xr.Dataset, variables: list[str], axes: SpatialAxes) -> None:
    """Warn of a step coordinate (time, a level) of the refined variables that is not strictly
    monotonic (repeated, unsorted or missing steps): each step is refined as it is, but the
    output, keeping the order, fails CF's rule for coordinates (section 1.2) as the input does."""
    for dim in dict.fromkeys(dim for name in variables for dim in ds[name].dims):
        if dim in (axes.y, axes.x) or dim not in ds.coords or ds[dim].ndim != 1 or ds.sizes[dim] < 2:
            continue
        values = ds[dim].values
        if values.dtype.kind not in "iufmMO":
            continue
        try:  # numbers, numpy dates and cftime dates compare; other objects are no steps to order
            increasing = all(later > earlier for earlier, later in zip(values[:-1], values[1:], strict=True))
            decreasing = all(later < earlier for earlier, later in zip(values[:-1], values[1:], strict=True))
        except TypeError:
            continue
        if not (increasing or decreasing):
            warn_user(
                f"{dim!r} is not strictly monotonic (steps repeated, unsorted or missing): each step is refined, but the "
                f"output keeps the order and fails CF's check as the input does; sort first, e.g. "
                f"ds.sortby({dim!r}).drop_duplicates({dim!r})",
                InputWarning,
            )


# netCDF's default fill value for floats is 9.96921e36: a file that leaves it unmarked (no
# _FillValue) hands it over as data. No climate variable comes near it, and block sums of
# values near it overflow float32, so magnitudes from this one on are refused.
UNMARKED_FILL_MAGNITUDE = 1e36


def check_magnitudes(values: np.ndarray, name: str) -> None:
    """Refuse finite values of magnitude :data:`UNMARKED_FILL_MAGNITUDE` and above (most
    likely missing values the file does not mark) before they are refined as data, and warn of
    infinite ones, which are refined as missing cells."""
    infinite = np.isinf(values)
    if infinite.any():
        warn_user(
            f"variable {name!r} holds {np.count_nonzero(infinite)} infinite value(s): they are taken as missing, "
            "and so are their fine cells",
            InputWarning,
        )
    with np.errstate(invalid="ignore"):
        huge = np.isfinite(values) & (np.abs(values) >= UNMARKED_FILL_MAGNITUDE)
    if huge.any():
        raise InputError(
            f"variable {name!r} holds {np.count_nonzero(huge)} values of magnitude {UNMARKED_FILL_MAGNITUDE:.0e} or more "
            f"(the largest {np.abs(values[huge]).max():.6g}), far beyond any climate variable: netCDF's default fill "
            "value is 9.96921e+36, so they are probably missing values the file does not mark. Mark them with a "
            f"_FillValue or missing_value attribute, or mask them: ds[{name!r}].where(abs(ds[{name!r}]) < 1e36)"
        )


def infinite_as_missing(values: np.ndarray) -> np.ndarray:
    """``values`` with infinities as NaN (a copy only where there are any): infinite cells are
    missing cells everywhere, in the refinement and in the self-tests that choose the depth."""
    infinite = np.isinf(values)
    return np.where(infinite, np.nan, values) if infinite.any() else values


def _fields(ds: xr.Dataset, name: str, axes: SpatialAxes) -> tuple[xr.DataArray, np.ndarray]:
    variable = ds[name]
    leading = [dim for dim in variable.dims if dim not in (axes.y, axes.x)]
    ordered = variable.transpose(*leading, axes.y, axes.x)
    try:
        values = np.asarray(ordered.values, dtype=np.float64)
    except (OSError, RuntimeError, ValueError) as err:  # truncated or corrupt files fail on read
        raise InputError(
            f"cannot read variable {name!r}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    return ordered, values.reshape(-1, ds.sizes[axes.y], ds.sizes[axes.x])


def variable_bounds(ds: xr.Dataset, variables: list[str], given: Mapping | None = None) -> dict:
    """Each variable's physical (lower, upper) limits and their source: ``given`` ones (the
    user's), else those its metadata implies (:func:`climgen.io.physical.physical_bounds`)."""
    given = dict(given or {})
    unknown = set(given) - set(variables)
    if unknown:
        raise ConfigError(f"bounds given for {sorted(unknown)}, which are not refined here (variables: {variables})")
    bounds = {
        name: (parse_limits(name, given[name]), "given") if name in given else physical.physical_bounds(ds[name], name)
        for name in variables
    }
    for name, (_, source) in bounds.items():
        if source and "no upper limit: its units" in source:
            warn_user(
                f"{name!r} is a fraction ({source}): it is kept non-negative only; give its units ('1' or '%') or its "
                f"bounds (--bounds {name}=0:1, or {name}=0:100 for a percentage)",
                PhysicalBoundsWarning,
            )
    return bounds


def variable_order(ds: xr.Dataset, variables: list[str], given=None) -> list[tuple[str, ...]]:
    """The chains of variables kept in order in every cell, lowest first: ``given`` ones (an
    empty list for none), else those the names and cell methods imply
    (:func:`climgen.io.physical.ordered_chains`)."""
    if given is None:
        chains = []
        for chain in physical.candidate_chains(ds, variables):
            mismatch = physical.chain_mismatch(ds, chain)
            if mismatch is None:
                chains.append(chain)
                continue
            warn_user(
                f"{' <= '.join(chain)} are not kept in order: they differ in {mismatch} (convert them to the same "
                "units, or pass order=[] to say so)",
                OrderWarning,
            )
        return chains
    chains = [tuple(chain) for chain in given]
    for chain in chains:
        unknown = [name for name in chain if name not in variables]
        if unknown:
            raise ConfigError(f"order names {unknown}, which are not refined here (variables: {variables})")
        mismatch = physical.chain_mismatch(ds, chain)
        if mismatch == "dimensions and shape":
            raise ConfigError(f"variables kept in order need the same dimensions and shape: {', '.join(chain)} differ")
        if mismatch is not None:
            raise ConfigError(f"variables kept in order need the same units: {', '.join(chain)} have {mismatch[6:]}")
    return chains


def warn_disordered(chain: tuple[str, ...], disordered: int, compared: int | None = None) -> None:
    """Warn when ``disordered`` coarse cells of ``chain`` (of ``compared`` with values to
    compare) are out of order: their fine blocks are left as refined, no ordered block can
    average to them. Most of them out of order is a chain given the wrong way round."""
    if not disordered:
        return
    text = f"{disordered} coarse cell(s) of {' <= '.join(chain)} are out of order; their fine blocks are left as refined"
    if compared and disordered > compared // 2:
        text = (
            f"{disordered} of {compared} coarse cells of {' <= '.join(chain)} are out of order, so the chain is "
            "probably not given lowest first (as LOW,MID,HIGH: tasmin,tas,tasmax); their fine blocks are left as refined"
        )
    warn_user(text, OrderWarning)


def warn_outside_bounds(name: str, outside: int, bounds: Bounds) -> None:
    """Warn when ``outside`` coarse values lie outside the variable's bounds (their fine blocks
    then keep the coarse value: no refined block can average to it inside the bounds)."""
    if outside:
        warn_user(
            f"{outside} coarse value(s) of {name!r} lie outside its physical bounds {format_bounds(bounds)}; "
            "each of their fine blocks keeps the coarse value (give other bounds to change this)",
            PhysicalBoundsWarning,
        )
