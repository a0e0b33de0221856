"""The refinement workflow: coarse dataset in, refined CF dataset out.

:func:`synthesize` is what the CLI (``climgen synthesize``) and the accessor
(``ds.climgen.synthesize``) both call. It validates the request, scores tile complexity, picks
a refinement depth per tile, refines every variable and time step, and attaches CF metadata.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from climgen import __version__
from climgen.complexity import (
    ComplexityScores,
    choose_depth,
    combine_scores,
    depth_thresholds,
    tile_components,
)
from climgen.compute import compute_report, tile_macs, window_cells
from climgen.config import MAX_STAGE_INPUT, SynthesisConfig, parse_limits  # noqa: F401 (public here since 0.1)
from climgen.conservation import Bounds, Weights, count_disordered, count_outside, format_bounds, order_stacks
from climgen.errors import ConfigError, InputError
from climgen.gain import (
    DEFAULT_TOLERANCE,
    GainPrediction,
    depth_by_budget,
    depth_by_tolerance,
    tolerance_for_quality,
)
from climgen.grid import (
    SpatialAxes,
    bounds_name,
    cell_bounds,
    cell_weights,
    contiguous_longitude,
    find_spatial_axes,
    is_global_longitude,
    make_axis,
    refine_bounds,
    wrap_longitude,
)
from climgen.io import cf
from climgen.io.units import check_units
from climgen.regrid import area_mean
from climgen.tiling import TileLayout


class PhysicalBoundsWarning(UserWarning):
    """Coarse input values lie outside the physical bounds of their variable."""


class LongitudeWarning(UserWarning):
    """An input's longitudes were put on the other convention (-180..180 or 0..360) to make
    its domain contiguous."""


class OrderWarning(UserWarning):
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
    if variables:
        missing = [name for name in variables if name not in ds.data_vars]
        if missing:
            raise InputError(f"variables not found: {missing}; the input has {sorted(ds.data_vars)}")
        maps = [name for name in variables if name in cf.ANCILLARY_ATTRS]
        if maps:
            raise InputError(f"{maps[0]!r} is a map climgen writes with every output; it is made anew, not refined")
        categorical = [name for name in variables if _categorical(ds[name])]
        if categorical:
            raise InputError(
                f"variable {categorical[0]!r} holds categories (flag_values): refining would average them into "
                "values that mean nothing; refine a fraction of each category instead"
            )
        chosen = list(variables)
    else:
        chosen = [
            name
            for name, var in ds.data_vars.items()
            if axes.y in var.dims and axes.x in var.dims and name not in skipped and not _categorical(var)
        ]
    if not chosen:
        raise InputError(f"no variable on the ({axes.y}, {axes.x}) grid to refine")
    for name in chosen:
        var = ds[name]
        if axes.y not in var.dims or axes.x not in var.dims:
            raise InputError(f"variable {name!r} does not span the spatial dimensions ({axes.y}, {axes.x})")
        if var.dtype.kind not in "fiu":
            raise InputError(f"variable {name!r} is not numeric ({var.dtype})")
        empty = [dim for dim in var.dims if var.sizes[dim] == 0]
        if empty:
            raise InputError(
                f"variable {name!r} has no values: dimension {empty[0]!r} has length 0 (a selection that matched nothing?)"
            )
    return chosen


def _fine_axes(ds: xr.Dataset, axes: SpatialAxes, factor: int) -> dict[str, tuple[xr.DataArray, xr.DataArray]]:
    result = {}
    for name in (axes.y, axes.x):
        centres, bounds = refine_bounds(cell_bounds(ds[name], ds), factor)
        result[name] = make_axis(name, centres, bounds, ds[name])
    return result


def align_covariate(covariate: xr.DataArray, name: str, axes: SpatialAxes, fine_axes: dict) -> np.ndarray:
    """Resample a covariate to the fine grid on shared axis names: the area-weighted mean of its
    cells over each fine cell where it is finer (:mod:`climgen.regrid`; the block mean where the
    grids nest), linear interpolation where it is not.

    Longitudes in 0..360 and -180..180 are matched to the input's convention. Cells outside the
    covariate's coverage are missing (the model then ignores the covariate there).
    """
    if isinstance(covariate, xr.Dataset):
        if len(covariate.data_vars) != 1:
            raise InputError(f"covariate {name!r}: pass a DataArray or a Dataset with one variable")
        covariate = next(iter(covariate.data_vars.values()))
    try:
        cov_axes = find_spatial_axes(covariate)
    except InputError as err:
        raise InputError(f"covariate {name!r}: {err}") from err
    if cov_axes.kind != axes.kind:
        raise InputError(
            f"covariate {name!r} is on a {cov_axes.kind} grid ({cov_axes.y}, {cov_axes.x}) but the input is on a "
            f"{axes.kind} grid ({axes.y}, {axes.x}); regrid the covariate to the input's grid first"
        )
    extra = [dim for dim in covariate.dims if dim not in (cov_axes.y, cov_axes.x)]
    for dim in extra:
        if covariate.sizes[dim] != 1:
            raise InputError(f"covariate {name!r} must be static (2-D); it has dimension {dim!r} of size {covariate.sizes[dim]}")
    covariate = covariate.squeeze([d for d in extra], drop=True).rename({cov_axes.y: axes.y, cov_axes.x: axes.x})
    covariate = covariate.reset_coords(drop=True)
    target_y = fine_axes[axes.y][0].values
    target_x = fine_axes[axes.x][0].values
    if axes.kind == "curvilinear":  # no coordinates to interpolate by: the fine grid itself
        fine_shape = (target_y.size, target_x.size)
        if (covariate.sizes[axes.y], covariate.sizes[axes.x]) != fine_shape:
            raise InputError(
                f"covariate {name!r} on a curvilinear grid must be on the output's fine grid ({fine_shape[0]}x{fine_shape[1]} "
                f"cells), got {covariate.sizes[axes.y]}x{covariate.sizes[axes.x]}"
            )
        return covariate.transpose(axes.y, axes.x).values.astype(np.float64)
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
        covariate = covariate.sortby(axes.x)
    covariate = covariate.sortby(axes.y)
    # only the cells around the domain are read: a 1 km global elevation is gigabytes
    for axis in (axes.y, axes.x):
        covariate = _around(covariate, axis, np.asarray(fine_axes[axis][1].values))  # the fine cells' edges
        if covariate.sizes[axis] == 0:
            raise InputError(f"covariate {name!r} does not overlap the input domain")
    covariate = covariate.astype(np.float64)
    if _finer_than(covariate, axes, target_y, target_x):
        # averaged over each fine cell, not sampled at its centre (which aliases the finer detail)
        values = area_mean(
            covariate.transpose(axes.y, axes.x).values,
            tuple(cell_bounds(covariate[axis]) for axis in (axes.y, axes.x)),
            tuple(np.asarray(fine_axes[axis][1].values, dtype=np.float64) for axis in (axes.y, axes.x)),
            latitude_rows=axes.kind == "latlon",
        )
        if not np.isfinite(values).any():
            raise InputError(f"covariate {name!r} does not overlap the input domain")
        return values
    if (
        covariate.sizes[axes.y] == target_y.size
        and covariate.sizes[axes.x] == target_x.size
        and np.allclose(np.sort(covariate[axes.y].values), np.sort(target_y))
        and np.allclose(np.sort(covariate[axes.x].values), np.sort(target_x))
    ):
        values = covariate.reindex({axes.y: target_y, axes.x: target_x}, method="nearest")
    else:
        values = covariate.interp({axes.y: target_y, axes.x: target_x}, method="linear")
    values = values.transpose(axes.y, axes.x).values
    if not np.isfinite(values).any():
        raise InputError(f"covariate {name!r} does not overlap the input domain")
    return values


def _finer_than(covariate: xr.DataArray, axes: SpatialAxes, target_y: np.ndarray, target_x: np.ndarray) -> bool:
    """Whether the covariate's cells are no larger than the fine grid's along both axes and
    clearly smaller (by a quarter) along one: then it is averaged, else interpolated."""
    ratios = []
    for axis, target in ((axes.y, target_y), (axes.x, target_x)):
        source = np.asarray(covariate[axis].values, dtype=np.float64)
        if source.size < 2 or target.size < 2:
            return False
        ratios.append(np.median(np.abs(np.diff(source))) / np.median(np.abs(np.diff(target))))
    return max(ratios) <= 1 + 1e-6 and min(ratios) < 0.8


def _around(covariate: xr.DataArray, name: str, target: np.ndarray) -> xr.DataArray:
    """The covariate (sorted along ``name``) cut to the cells within two of its largest steps of
    the ``target`` coordinates (the fine cells' edges): all that interpolation onto their
    centres, or averaging over them, reads."""
    values = covariate[name].values
    step = float(np.abs(np.diff(values)).max()) if values.size > 1 else 0.0
    inside = np.flatnonzero((values >= target.min() - 2 * step) & (values <= target.max() + 2 * step))
    return covariate.isel({name: slice(inside[0], inside[-1] + 1) if inside.size else slice(0, 0)})


def _cover_longitudes(covariate: xr.DataArray, name: str, target: np.ndarray) -> xr.DataArray:
    """A global covariate's columns, shifted by multiples of 360 degrees, that cover the
    ``target`` longitudes (any convention, wrapped margins included) with a column to spare."""
    longitudes = np.asarray(covariate[name].values, dtype=np.float64)
    spacing = abs(float(np.diff(longitudes).mean()))
    low, high = float(np.min(target)) - 1.5 * spacing, float(np.max(target)) + 1.5 * spacing
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


def contiguous_input(ds: xr.Dataset) -> tuple[xr.Dataset, str | None]:
    """``ds`` on contiguous longitudes (:func:`climgen.grid.contiguous_longitude`), with a
    warning when its longitudes had to change convention: the output follows the new one."""
    axes = find_spatial_axes(ds)
    converted, convention = contiguous_longitude(ds, axes)
    if convention:
        warnings.warn(
            f"longitude {axes.x!r} crosses the longitude seam: refined on {convention} longitudes "
            f"({float(converted[axes.x].min()):g} to {float(converted[axes.x].max()):g}), sorted; the output is on them too",
            LongitudeWarning,
            stacklevel=3,
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
    check_units(ds, variables)
    for name in (axes.y, axes.x):
        cell_bounds(ds[name], ds)  # validates monotonic, finite coordinates
    cf.projected_axis_scale(ds, axes)  # projected axes in a length unit pint can read
    layout = config.layout((ds.sizes[axes.y], ds.sizes[axes.x]))
    stacked = None
    names: list[str] = []
    if covariates:
        fine_axes = _fine_axes(ds, axes, config.factor)
        stacked = np.stack([align_covariate(value, key, axes, fine_axes) for key, value in covariates.items()])
        names = list(covariates)
    bounds = variable_bounds(ds, variables, config.bounds)
    return _Prepared(axes, variables, layout, stacked, names, bounds, variable_order(ds, variables, config.order))


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


def _scores(ds: xr.Dataset, prepared: _Prepared, factor: int) -> ComplexityScores:
    scores = []
    for name in prepared.variables:
        _, values = _fields(ds, name, prepared.axes)
        for field_values in values:
            scores.append(tile_components(field_values, prepared.layout, prepared.covariates, factor, prepared.limits[name]))
    return combine_scores(scores)


def complexity(
    data: xr.Dataset | xr.DataArray,
    factor: int = 4,
    variables=None,
    covariates: Mapping | None = None,
    tile_size: int | None = None,
) -> xr.DataArray:
    """Complexity score of each tile, on the coarse grid (for plotting and depth decisions)."""
    original = _as_dataset(data)
    config = SynthesisConfig(factor=factor, variables=variables, tile_size=tile_size)
    original, _ = contiguous_input(original)
    ds, wrap_cells = wrap_global(original, config)
    prepared = _prepare(ds, config, covariates)
    scores = _scores(ds, prepared, config.factor)
    axes = prepared.axes
    values = prepared.layout.tile_map(scores.score).astype(np.float32)
    values = values[:, wrap_cells : values.shape[1] - wrap_cells]  # the input's columns only
    coords = {axes.y: original[axes.y], axes.x: original[axes.x]}
    return xr.DataArray(
        values, dims=(axes.y, axes.x), coords=coords, name="complexity_score", attrs=dict(cf.ANCILLARY_ATTRS["complexity_score"])
    )


@dataclass
class Plan:
    """Everything decided before any tile is refined: grid, model, scores and depth per tile."""

    config: SynthesisConfig
    prepared: _Prepared
    checkpoint: object
    scores: ComplexityScores
    depth: np.ndarray
    fine_axes: dict
    residual_gains: dict = field(default_factory=dict)  # variable -> climgen.skill.ResidualGain
    gain: GainPrediction | None = None  # predicted gain per stage and tile (best-estimate models, adaptive)
    depth_policy: dict = field(default_factory=dict)  # how the depth was chosen, for the provenance
    source: xr.Dataset | None = None  # the input as refined: with wrapped columns on a global grid
    wrap_cells: int = 0  # columns of a global grid copied beyond each edge (cropped from the output)
    longitude_convention: str | None = None  # set when the input's longitudes were made contiguous

    @property
    def full_depth(self) -> int:
        return self.config.factor.bit_length() - 1

    def refiner(self, device: str = "auto"):
        """A :class:`~climgen.refine.TileRefiner` on ``device`` (auto: a GPU when torch sees one)."""
        from climgen.refine import TileRefiner, resolve_device

        module, layout = self.checkpoint.module, self.prepared.layout
        return TileRefiner(module, self.config.factor, layout, device=resolve_device(device), cell_weights=self.cell_weights)

    def residual_gain(self, name: str) -> float:
        """The share of the model's learned detail kept for variable ``name``."""
        return self.residual_gains[name].gain if name in self.residual_gains else 1.0

    def model_fields(self, field_counts: Mapping[str, int]) -> int:
        """The 2-D fields (members included) that go through the model, from each variable's
        field count: a variable that keeps none of the learned detail skips the network."""
        return sum(count * self.config.members for name, count in field_counts.items() if self.residual_gain(name) != 0)

    @property
    def cell_weights(self) -> Weights:
        """The fine cells' area factors (rows, columns) with ``conservation="area"``, else None."""
        if self.config.conservation != "area":
            return None
        axes = self.prepared.axes
        return cell_weights(self.fine_axes[axes.y][1].values, self.fine_axes[axes.x][1].values, axes.kind)

    def seed_keys(self, name: str, indices, member: int) -> list[tuple]:
        """Noise keys of fields ``indices`` (flat indices over the leading dimensions)."""
        return [(self.config.seed, name, int(index), member) for index in indices]

    def provenance(self, fields_refined: int, seconds: float) -> dict:
        config, layout = self.config, self.prepared.layout
        return {
            "climgen_version": __version__,
            "model": self.checkpoint.name,
            "model_sha256": self.checkpoint.sha256,
            **{k: v for k, v in config.as_dict().items() if k != "model"},
            "tile_size": layout.tile,
            "halo": layout.halo,
            "later_halo": layout.later_halo,
            "merge_tiles": layout.merge,
            "model_argument": config.model,
            "covariates": self.prepared.covariate_names,
            "depth_policy": self.depth_policy,
            "depth_histogram": {str(k): int((self.depth == k).sum()) for k in range(self.full_depth + 1)},
            "compute": compute_report(self.checkpoint.module, layout, self.depth, self.full_depth, fields_refined),
            "residual_gains": {name: gain.as_dict() for name, gain in self.residual_gains.items()},
            "physical_bounds": {
                name: {"lower": limits[0], "upper": limits[1], "from": source}
                for name, (limits, source) in self.prepared.bounds.items()
                if limits != (None, None)
            },
            "ordered_variables": [list(chain) for chain in self.prepared.order],
            **({"longitude_wrap_cells": self.wrap_cells} if self.wrap_cells else {}),
            **({"longitudes_converted_to": self.longitude_convention} if self.longitude_convention else {}),
            "seconds": round(seconds, 3),
        }

    @property
    def input_shape(self) -> tuple[int, int]:
        """The input's coarse (rows, columns): the layout's without a global grid's wrapped columns."""
        rows, columns = self.prepared.layout.shape
        return rows, columns - 2 * self.wrap_cells

    def crop(self, result: xr.Dataset) -> xr.Dataset:
        """``result`` on the fine grid of the padded input, without the wrapped columns."""
        if not self.wrap_cells:
            return result
        x, cut = self.prepared.axes.x, self.wrap_cells * self.config.factor
        return result.isel({x: slice(cut, result.sizes[x] - cut)})


def make_config(variables=None, model="default", **options) -> SynthesisConfig:
    """A validated :class:`SynthesisConfig` from keyword arguments (variables as list or "a,b")."""
    if isinstance(variables, str):
        variables = tuple(v for v in variables.split(",") if v)
    return SynthesisConfig(variables=tuple(variables) if variables else None, model=str(model), **options)


def plan(ds: xr.Dataset, config: SynthesisConfig, covariates: Mapping | None = None, scorer: Callable | None = None) -> Plan:
    """Validate the request, load the model, score the tiles and choose their depth.

    ``scorer(ds, prepared, factor)`` computes the scores (default: every field read and scored
    here; the streaming path scores time chunks as dask tasks).
    """
    from climgen.models.checkpoint import load_checkpoint

    ds, convention = contiguous_input(ds)
    ds, wrap_cells = wrap_global(ds, config)
    prepared = _prepare(ds, config, covariates)
    checkpoint = load_checkpoint(config.model)
    slots = checkpoint.module.config.covariate_slots
    if prepared.covariates is not None and prepared.covariates.shape[0] > slots:
        raise ConfigError(f"model {checkpoint.name!r} takes at most {slots} covariates, got {prepared.covariates.shape[0]}")
    if checkpoint.architecture != "amsgm":
        model_factor = checkpoint.module.config.factor
        if config.factor != model_factor:
            raise ConfigError(f"model {checkpoint.name!r} is a single-scale {checkpoint.architecture} for x{model_factor} only")
        if config.budget is not None or config.quality is not None or config.tolerance is not None:
            raise ConfigError(
                f"model {checkpoint.name!r} refines every tile fully: budget, quality and tolerance need the default model"
            )
    if checkpoint.draws_samples and (config.quality is not None or config.tolerance is not None):
        raise ConfigError(
            f"model {checkpoint.name!r} samples detail, whose gain no error test can judge: "
            "quality and tolerance need a best-estimate model (its depth follows the complexity score, or budget)"
        )
    scores = (scorer or _scores)(ds, prepared, config.factor)
    full_depth = config.factor.bit_length() - 1
    result = Plan(config, prepared, checkpoint, scores, np.zeros(1), _fine_axes(ds, prepared.axes, config.factor))
    result.source, result.wrap_cells, result.longitude_convention = ds, wrap_cells, convention
    result.residual_gains = residual_gains(ds, result)
    adaptive = config.adaptive and checkpoint.architecture == "amsgm"  # baselines jump the whole factor
    layout = prepared.layout

    def cost(depth: np.ndarray) -> float:
        return window_cells(layout, depth)

    if not adaptive:
        result.depth = choose_depth(scores, full_depth, adaptive=False)
        result.depth_policy = {"policy": "uniform"}
    elif checkpoint.draws_samples:
        # a model that samples detail keeps its stages where the complexity score asks for
        # them: they add the members' spread, which no error test can value
        result.depth = choose_depth(scores, full_depth, budget=config.budget, cost=cost, second_stage_score=0.0)
        result.depth_policy = (
            {"policy": "budget", "by": "complexity score", "budget": config.budget}
            if config.budget is not None
            else {
                "policy": "thresholds",
                "thresholds": depth_thresholds(full_depth, "covariate" in scores.components, second_stage_score=0.0),
            }
        )
    else:
        result.gain = predicted_gains(ds, result)
        if config.budget is not None:
            result.depth = depth_by_budget(result.gain, config.budget, cost)
            result.depth_policy = {"policy": "budget", "by": "predicted gain", "budget": config.budget}
        else:
            tolerance = config.tolerance
            if config.quality is not None:
                tolerance = tolerance_for_quality(config.quality)
            tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
            result.depth = depth_by_tolerance(result.gain, tolerance)
            result.depth_policy = {"policy": "predicted gain", "tolerance": round(tolerance, 6)}
            if config.quality is not None:
                result.depth_policy["quality"] = config.quality
        result.depth_policy |= result.gain.as_dict()
    # a tile inside a window that its group refines deeper anyway takes that depth: the same
    # model calls, so the same cost, and the depth map says what each tile got
    result.depth = prepared.layout.deepen_within_windows(result.depth, scores.constant)
    return result


def depth_policy_text(policy: dict) -> str:
    """A plan's ``depth_policy`` in words, for command-line summaries (a stage no score
    reaches reads "never")."""

    def listed(values: list[float]) -> str:
        return ", ".join(f"{t:.2f}" if np.isfinite(t) else "never" for t in values)

    name = policy.get("policy")
    if name == "predicted gain":
        quality = f" (quality {policy['quality']:g})" if "quality" in policy else ""
        return (
            f"predicted gain, tolerance {policy['tolerance']:.3g} of full depth's squared error{quality}; "
            f"skill {policy.get('skill', 0):.2f}, octave ratio {policy.get('octave_ratio', 0):.2f}"
        )
    if name == "budget":
        return f"budget {policy.get('budget')} by {policy.get('by', 'predicted gain')}"
    texts = {"thresholds": f"score thresholds {listed(policy.get('thresholds', []))}", "uniform": "uniform full depth"}
    return texts.get(name, "")


def gain_fields(ds: xr.Dataset, name: str, axes: SpatialAxes, count: int) -> list[np.ndarray]:
    """Up to ``count`` 2-D fields of variable ``name``, evenly spread over its other
    dimensions (only those are read): what the self-tests look at."""
    variable = ds[name].transpose(..., axes.y, axes.x)
    leading = list(np.ndindex(*variable.shape[:-2]))
    picks = np.unique(np.linspace(0, len(leading) - 1, min(count, len(leading))).round().astype(int))
    return [np.asarray(variable[leading[i]].values, dtype=np.float64) for i in picks]


def predicted_gains(ds: xr.Dataset, job: Plan) -> GainPrediction:
    """Each stage's predicted gain per tile (:mod:`climgen.gain`): every variable self-tested
    one scale coarser on up to :data:`climgen.gain.TEST_FIELDS` of its fields, at its share of
    the learned detail; a tile gains what its neediest variable gains."""
    from climgen import gain

    prepared, refiner = job.prepared, job.refiner()
    predictions = []
    for name in prepared.variables:
        refine = gain.self_test_refine(
            refiner.with_gain(job.residual_gain(name)), prepared.covariates, prepared.limits[name], (job.config.seed, name)
        )
        sums = gain.self_test_sums(refine, gain_fields(ds, name, prepared.axes, gain.TEST_FIELDS), prepared.layout)
        predictions.append(gain.predict(sums, job.full_depth, job.scores.constant))
    return gain.combine(predictions)


def residual_gains(ds: xr.Dataset, job: Plan) -> dict:
    """Each variable's share of the model's learned detail: the given ``residual_gain``, or
    with ``"auto"`` the result of :func:`climgen.skill.self_test` on up to
    :data:`climgen.skill.TEST_FIELDS` of its fields, evenly spread (only those are read).
    Models trained to sample detail (:attr:`~climgen.models.checkpoint.Checkpoint.draws_samples`:
    ``amsgm-ensemble``) keep it whole."""
    from climgen.skill import TEST_FIELDS, ResidualGain, self_test

    config, prepared = job.config, job.prepared
    if config.residual_gain != "auto":
        if job.checkpoint.architecture != "amsgm" and config.residual_gain != 1:
            raise ConfigError(
                f"residual_gain applies to the multi-scale generator, not to {job.checkpoint.architecture!r} models"
            )
        return {name: ResidualGain(gain=float(config.residual_gain), note="given") for name in prepared.variables}
    if job.checkpoint.architecture != "amsgm":
        return {}
    if job.checkpoint.draws_samples:
        # a sample's detail is meant to differ from the truth's by the field's own variability:
        # a least-squares test would damp it towards the mean and take the ensemble's spread away
        note = "not tested: the model draws detail as samples (adversarial training), which an RMSE test would damp"
        return {name: ResidualGain(note=note) for name in prepared.variables}
    refiner = job.refiner()
    gains = {}
    for name in prepared.variables:
        fields = gain_fields(ds, name, prepared.axes, TEST_FIELDS)
        gains[name] = self_test(refiner, fields, prepared.covariates, (config.seed, name))
    return gains


def variable_bounds(ds: xr.Dataset, variables: list[str], given: Mapping | None = None) -> dict:
    """Each variable's physical (lower, upper) limits and their source: ``given`` ones (the
    user's), else those its metadata implies (:func:`climgen.io.cf.physical_bounds`)."""
    given = dict(given or {})
    unknown = set(given) - set(variables)
    if unknown:
        raise ConfigError(f"bounds given for {sorted(unknown)}, which are not refined here (variables: {variables})")
    return {
        name: (parse_limits(name, given[name]), "given") if name in given else cf.physical_bounds(ds[name], name)
        for name in variables
    }


def variable_order(ds: xr.Dataset, variables: list[str], given=None) -> list[tuple[str, ...]]:
    """The chains of variables kept in order in every cell, lowest first: ``given`` ones (an
    empty list for none), else those the names and cell methods imply
    (:func:`climgen.io.cf.ordered_chains`)."""
    if given is None:
        return cf.ordered_chains(ds, variables)
    chains = [tuple(chain) for chain in given]
    for chain in chains:
        unknown = [name for name in chain if name not in variables]
        if unknown:
            raise ConfigError(f"order names {unknown}, which are not refined here (variables: {variables})")
        layouts = {cf.chain_layout(ds[name]) for name in chain}
        if len({layout[:2] for layout in layouts}) > 1:
            raise ConfigError(f"variables kept in order need the same dimensions and shape: {', '.join(chain)} differ")
        if len(layouts) > 1:
            units = sorted(layout[2] for layout in layouts)
            raise ConfigError(f"variables kept in order need the same units: {', '.join(chain)} have {units}")
    return chains


def warn_disordered(chain: tuple[str, ...], disordered: int) -> None:
    """Warn when ``disordered`` coarse cells of ``chain`` are out of order (their fine blocks
    are left as refined: no ordered block can average to them)."""
    if disordered:
        warnings.warn(
            f"{disordered} coarse cell(s) of {' <= '.join(chain)} are out of order; their fine blocks are left as refined",
            OrderWarning,
            stacklevel=2,
        )


def warn_outside_bounds(name: str, outside: int, bounds: Bounds) -> None:
    """Warn when ``outside`` coarse values lie outside the variable's bounds (their fine blocks
    then keep the coarse value: no refined block can average to it inside the bounds)."""
    if outside:
        warnings.warn(
            f"{outside} coarse value(s) of {name!r} lie outside its physical bounds {format_bounds(bounds)}; "
            "each of their fine blocks keeps the coarse value (give other bounds to change this)",
            PhysicalBoundsWarning,
            stacklevel=2,
        )


def assemble(ds: xr.Dataset, plan: Plan, refined: Mapping, provenance: dict, command: str | None = None) -> xr.Dataset:
    """The output dataset: refined arrays (numpy or dask, shaped like the fine variables with
    an optional leading ``realization``), fine axes and bounds, complexity and depth maps,
    carried-over variables and CF metadata."""
    config, prepared = plan.config, plan.prepared
    axes, layout, factor = prepared.axes, prepared.layout, config.factor
    result = xr.Dataset(coords={name: axis for name, (axis, _) in plan.fine_axes.items()})
    for name, (_, bounds) in plan.fine_axes.items():
        result[bounds_name(name)] = bounds
    for name in prepared.variables:
        dims = (["realization"] if config.members > 1 else []) + list(ds[name].dims)
        leading = [dim for dim in ds[name].dims if dim not in (axes.y, axes.x)]
        result[name] = xr.DataArray(refined[name], dims=dims, coords={dim: ds[dim] for dim in leading if dim in ds.coords})
    fine_scores = np.repeat(np.repeat(layout.tile_map(plan.scores.score), factor, 0), factor, 1)
    fine_depth = np.repeat(np.repeat(layout.tile_map(plan.depth), factor, 0), factor, 1)
    result["complexity_score"] = ((axes.y, axes.x), fine_scores.astype(np.float32))
    gain_map = np.full(layout.grid_shape, np.nan) if plan.gain is None else plan.gain.total
    fine_gain = np.repeat(np.repeat(layout.tile_map(gain_map), factor, 0), factor, 1)
    result["predicted_gain"] = ((axes.y, axes.x), fine_gain.astype(np.float32))
    result["refinement_depth"] = ((axes.y, axes.x), fine_depth.astype(np.int8))
    per_cell = tile_macs(plan.checkpoint.module, layout, plan.depth) / (layout.core_areas() * factor**2)
    fine_macs = np.repeat(np.repeat(layout.tile_map(per_cell), factor, 0), factor, 1)
    result["refinement_macs"] = ((axes.y, axes.x), fine_macs.astype(np.float32))
    if config.members > 1:
        result = result.assign_coords(realization=np.arange(config.members, dtype=np.int32))
    result = _carry_over(ds, plan.crop(result), prepared)
    call = command or _call_text(config, prepared.covariate_names)
    result = cf.decorate(result, ds, prepared.variables, axes, provenance, call, plan.full_depth)
    if axes.kind == "curvilinear":  # index positions are no coordinates: bare dimensions, as in the input
        result = result.drop_vars([axes.y, axes.x, bounds_name(axes.y), bounds_name(axes.x)], errors="ignore")
    return result


def synthesize(
    data: xr.Dataset | xr.DataArray,
    factor: int = 4,
    variables=None,
    covariates: Mapping | None = None,
    model: str = "default",
    seed: int = 0,
    members: int = 1,
    adaptive: bool = True,
    budget: float | None = None,
    quality: float | None = None,
    tolerance: float | None = None,
    tile_size: int | None = None,
    halo: int | None = None,
    merge_tiles: int | None = None,
    bounds: Mapping[str, Bounds] | None = None,
    order=None,
    conservation: str = "cells",
    residual_gain: float | str = "auto",
    command: str | None = None,
    device: str = "auto",
) -> xr.Dataset:
    """Refine coarse fields by ``factor`` with the adaptive multi-scale generator.

    Parameters
    ----------
    data : Dataset or DataArray
        Coarse input on a lat/lon, rotated-pole (rlat/rlon) or projected (y/x) grid.
    factor : int
        Refinement factor, one of 2, 4, 8, 16 (that many x2 stages: 1..4).
    variables : list of str, optional
        Variables to refine (default: every numeric variable on the grid but CF flag variables and climgen's own maps).
    covariates : mapping of name to DataArray, optional
        Static fine covariates (elevation, land fraction...) on any grid covering the domain.
    model : str
        ``"default"`` (the shipped checkpoint) or a path to a safetensors + JSON checkpoint.
    seed, members : int
        Seed of every noise map, and number of ensemble members (``realization`` dimension).
    adaptive, budget : bool, float
        ``adaptive=False`` refines every tile to full depth; ``budget`` caps the cost at that
        fraction of full depth, taking stages by predicted gain per multiply-accumulate.
    tolerance : float, optional
        A tile stops where its remaining stages are predicted to remove less than this share of
        the error full depth leaves (default :data:`climgen.gain.DEFAULT_TOLERANCE`, 0.01:
        RMSE within about 0.5% of full depth's); the gain comes from a self-test one scale
        coarser (:mod:`climgen.gain`; the ``predicted_gain`` map of the output).
    quality : float, optional
        The same, set as RMSE over full depth's of at most ``1 / quality`` (0.995: a tolerance
        of 1 / 0.995**2 - 1, about 0.01).
    tile_size, halo, merge_tiles : int, optional
        Tile side and halo in coarse cells (default: 32 or less on small domains, and 8), and
        how many tiles a side form one group whose tiles share model windows (default 4, 1 at
        x16; 1: each tile its own window). Each changes the result slightly, within the
        model's tile independence; all are saved in the provenance.
    bounds : mapping of variable name to (lower, upper), optional
        Physical limits the refined values keep, None for no limit (``{"pr": (0, None)}``;
        ``(None, None)`` turns them off). By default they follow the metadata: precipitation,
        humidity, wind speed, snow... are non-negative and fractions stay in 0..1 (0..100 in
        %); see :func:`climgen.io.cf.physical_bounds`. Blocks still average exactly to the
        coarse values (:mod:`climgen.conservation`).
    order : list of lists of variable names, optional
        Variables whose values come in order in every cell, lowest first
        (``[["tasmin", "tas", "tasmax"]]``; ``[]`` for none). By default they follow the names
        (tasmin/tas/tasmax, tn/tg/tx, mn2t/mx2t...) and cell methods (minimum, mean, maximum of
        one standard_name); see :func:`climgen.io.cf.ordered_chains`. Out-of-order blocks get
        the nearest ordered ones with the same coarse means (:func:`climgen.conservation.order_fields`).
    conservation : {"cells", "area"}
        How each block's mean matches its coarse value: over its cells alike (the default,
        the inverse of :func:`climgen.grid.coarsen_dataset`), or weighted by cell area, for
        coarse values from conservative regridding (on lat/lon and rotated-pole grids cells
        shrink towards the poles; see :func:`climgen.grid.cell_weights`).
    residual_gain : "auto" or float
        Share of the model's learned detail kept (0: bicubic with exact block means; 1: the
        detail as trained). ``"auto"`` tests the model on each variable's coarse field, coarsened
        once more and refined back, and damps the detail only where that cuts the error
        (:mod:`climgen.skill`); the gains are in the provenance.

    Returns
    -------
    Dataset
        The refined variables on the fine grid (names, attributes and other dimensions kept),
        with ``complexity_score`` and ``refinement_depth`` and CF metadata. The whole result is
        computed in memory; for domains or time series that do not fit, write to a store with
        :func:`climgen.streaming.run` (``climgen synthesize``/``climgen run``), which gives
        the same numbers.
    device : str
        ``"auto"`` (a GPU when torch sees one, else CPU), ``"cpu"`` or ``"cuda"``. On a GPU,
        tiles run in large bf16 batches: faster, and equal to the CPU result to about 1% of
        the fine detail (still exactly coarse-consistent).
    """
    from climgen.refine import refine_domain

    started = time.perf_counter()
    ds = _as_dataset(data)
    config = make_config(
        variables=variables,
        model=model,
        factor=factor,
        seed=seed,
        members=members,
        adaptive=adaptive,
        budget=budget,
        quality=quality,
        tolerance=tolerance,
        tile_size=tile_size,
        halo=halo,
        merge_tiles=merge_tiles,
        bounds=bounds,
        order=None if order is None else tuple(tuple(chain) for chain in order),
        conservation=conservation,
        residual_gain=residual_gain,
    )
    job = plan(ds, config, covariates)
    ds = job.source  # with wrapped columns on a global grid
    refiner = job.refiner(device)
    coarse, members = {}, {}
    for name in job.prepared.variables:
        _, coarse[name] = _fields(ds, name, job.prepared.axes)
        limits = job.prepared.limits[name]
        warn_outside_bounds(name, count_outside(coarse[name], limits), limits)
        members[name] = [
            refine_domain(
                refiner.with_gain(job.residual_gain(name)),
                coarse[name],
                job.depth,
                job.prepared.covariates,
                job.seed_keys(name, range(len(coarse[name])), m),
                bounds=limits,
            )
            for m in range(config.members)
        ]
    for chain in job.prepared.order:
        warn_disordered(chain, count_disordered(*(coarse[name] for name in chain)))
        for member in range(config.members):
            fine = [members[name][member] for name in chain]
            limits = [job.prepared.limits[name] for name in chain]
            order_stacks(fine, [coarse[name] for name in chain], config.factor, limits, job.cell_weights)
    refined = {}
    for name in job.prepared.variables:
        ordered = ds[name].transpose(..., job.prepared.axes.y, job.prepared.axes.x)
        stacked = np.stack(members[name]) if config.members > 1 else members[name][0]
        stacked = stacked.reshape(*stacked.shape[:-3], *ordered.shape[:-2], *stacked.shape[-2:])
        offset = 1 if config.members > 1 else 0
        axes_order = [ordered.dims.index(dim) for dim in ds[name].dims]
        refined[name] = stacked.transpose(*range(offset), *(i + offset for i in axes_order))
    fields_refined = job.model_fields({name: values.shape[0] for name, values in coarse.items()})
    provenance = job.provenance(fields_refined, time.perf_counter() - started)
    return assemble(ds, job, refined, provenance, command)


def _carry_over(ds: xr.Dataset, result: xr.Dataset, prepared: _Prepared) -> xr.Dataset:
    """Non-spatial variables and coordinates, the grid mapping, and fine 2-D lat/lon."""
    axes = prepared.axes
    spatial = {axes.y, axes.x}
    auxiliaries = cf.find_latlon_auxiliaries(ds, axes) or ()
    old_bounds = {ds[axes.y].attrs.get("bounds"), ds[axes.x].attrs.get("bounds")}
    for name, variable in ds.variables.items():
        if name in result.variables or name in old_bounds or name in auxiliaries:
            continue
        if spatial & set(variable.dims):
            continue  # other gridded fields are not refined unless asked for
        if name in ds.coords:
            result = result.assign_coords({name: variable})
        elif name not in prepared.variables:
            result[name] = variable
    mapping = cf.grid_mapping_name(ds, prepared.variables)
    latlon = cf.auxiliary_latlon(ds, axes, mapping, result[axes.y].values, result[axes.x].values)
    if latlon is not None:
        lat, lon = latlon
        result = result.assign_coords(
            lat=((axes.y, axes.x), lat.astype(np.float32), cf.LATLON_ATTRS["lat"]),
            lon=((axes.y, axes.x), lon.astype(np.float32), cf.LATLON_ATTRS["lon"]),
        )
    return result


def _call_text(config: SynthesisConfig, covariate_names: list[str]) -> str:
    arguments = [f"factor={config.factor}", f"seed={config.seed}", f"members={config.members}", f"adaptive={config.adaptive}"]
    if config.variables:
        arguments.append(f"variables={list(config.variables)}")
    if covariate_names:
        arguments.append(f"covariates={covariate_names}")
    if config.budget is not None:
        arguments.append(f"budget={config.budget}")
    if config.quality is not None:
        arguments.append(f"quality={config.quality}")
    if config.tolerance is not None:
        arguments.append(f"tolerance={config.tolerance}")
    if config.bounds:
        arguments.append(f"bounds={dict(config.bounds)}")
    if config.order is not None:
        arguments.append(f"order={[list(chain) for chain in config.order]}")
    if config.conservation != "cells":
        arguments.append(f"conservation={config.conservation!r}")
    arguments.append(f"model={config.model!r}")
    return f"climgen {__version__}: ds.climgen.synthesize({', '.join(arguments)})"
