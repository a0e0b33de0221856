"""The refinement workflow: coarse dataset in, refined CF dataset out.

:func:`synthesize` is what the CLI (``climgen synthesize``) and the accessor
(``ds.climgen.synthesize``) both call. It validates the request, scores tile complexity, picks
a refinement depth per tile, refines every variable and time step, and attaches CF metadata.
The steps live apart: :mod:`climgen.inputs` makes the input ready, :mod:`climgen.planning`
decides model, scores and depth (:func:`plan`), :mod:`climgen.refine` runs the tiles, and
:func:`assemble` here puts the output together; the names of 0.1 stay importable from here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import xarray as xr

from climgen import __version__
from climgen.config import MAX_STAGE_INPUT, SynthesisConfig, parse_limits  # noqa: F401 (public here since 0.1)
from climgen.conservation import Bounds, count_outside, order_counts, order_stacks
from climgen.depth.compute import tile_macs
from climgen.grid import (
    bounds_name,
)
from climgen.inputs import (  # noqa: F401 (the workflow's public names, here since 0.1)
    LongitudeWarning,
    OrderWarning,
    PhysicalBoundsWarning,
    _as_dataset,
    _fields,
    _fine_axes,
    _Prepared,
    align_covariate,
    contiguous_input,
    infinite_as_missing,
    select_variables,
    variable_bounds,
    variable_order,
    warn_disordered,
    warn_outside_bounds,
    wrap_global,
)
from climgen.io import cf
from climgen.io.encoding import unlimited_dims, with_file_encoding
from climgen.planning import (  # noqa: F401
    Plan,
    complexity,
    depth_policy_text,
    gain_fields,
    make_config,
    plan,
    predicted_gains,
    residual_gains,
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
        dims = ([cf.MEMBER_DIM] if config.members > 1 else []) + list(ds[name].dims)
        leading = [dim for dim in ds[name].dims if dim not in (axes.y, axes.x)]
        result[name] = xr.DataArray(refined[name], dims=dims, coords={dim: ds[dim] for dim in leading if dim in ds.coords})
    fine_scores = np.repeat(np.repeat(layout.tile_map(plan.scores.score), factor, 0), factor, 1)
    fine_depth = np.repeat(np.repeat(layout.tile_map(plan.depth), factor, 0), factor, 1)
    result["complexity_score"] = ((axes.y, axes.x), fine_scores.astype(np.float32))
    gain_map = np.full(layout.grid_shape, np.nan) if plan.gain is None else plan.gain.total
    fine_gain = np.repeat(np.repeat(layout.tile_map(gain_map), factor, 0), factor, 1)
    result["predicted_gain"] = ((axes.y, axes.x), fine_gain.astype(np.float32))
    result["refinement_depth"] = ((axes.y, axes.x), fine_depth.astype(np.int8))
    spent = tile_macs(plan.checkpoint.module, layout, plan.depth, plan.draws_members, plan.prepared.covariates is not None)
    per_cell = spent / (layout.core_areas() * factor**2)
    fine_macs = np.repeat(np.repeat(layout.tile_map(per_cell), factor, 0), factor, 1)
    result["refinement_macs"] = ((axes.y, axes.x), fine_macs.astype(np.float32))
    if config.members > 1:
        result = result.assign_coords({cf.MEMBER_DIM: np.arange(config.members, dtype=np.int32)})
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
    attributes: Mapping[str, str | float] | None = None,
    command: str | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> xr.Dataset:
    """Refine coarse fields by ``factor`` with the adaptive multi-scale generator.

    Parameters
    ----------
    data : Dataset or DataArray
        Coarse input on a lat/lon, rotated-pole (rlat/rlon), projected (y/x) or curvilinear
        grid (bare y/x dimensions located by 2-D latitude and longitude).
    factor : int
        Refinement factor, one of 2, 4, 8, 16 (that many x2 stages: 1..4).
    variables : list of str, optional
        Variables to refine (default: every numeric variable on the grid but CF flag variables and climgen's own maps).
    covariates : mapping of name to DataArray, optional
        Static fine covariates (elevation, land fraction...) on any grid covering the domain.
    model : str
        A shipped model (``"default"``, ``"amsgm-fast"``, ``"amsgm-multibranch"``, the x4
        baselines ``"cvae-x4"`` and ``"srgan-x4"``) or a path to a safetensors + JSON checkpoint.
    seed, members : int
        Seed of every noise map, and number of ensemble members (``realization`` dimension).
    adaptive, budget : bool, float
        ``adaptive=False`` refines every tile to full depth; ``budget`` caps the cost at that
        fraction of full depth, taking stages by predicted gain per multiply-accumulate.
    tolerance : float, optional
        A tile stops where its remaining stages are predicted to remove less than this share of
        the error full depth leaves (default :data:`climgen.depth.gain.DEFAULT_TOLERANCE`, 0.015:
        RMSE within about 0.75% of full depth's); the gain comes from a self-test one scale
        coarser (:mod:`climgen.depth.gain`; the ``predicted_gain`` map of the output).
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
        %); see :func:`climgen.io.physical.physical_bounds`. Blocks still average exactly to the
        coarse values (:mod:`climgen.conservation`).
    order : list of lists of variable names, optional
        Variables whose values come in order in every cell, lowest first
        (``[["tasmin", "tas", "tasmax"]]``; ``[]`` for none). By default they follow the names
        (tasmin/tas/tasmax, tn/tg/tx, mn2t/mx2t...) and cell methods (minimum, mean, maximum of
        one standard_name); see :func:`climgen.io.physical.ordered_chains`. Out-of-order blocks get
        the nearest ordered ones with the same coarse means (:func:`climgen.conservation.order_fields`).
    conservation : {"cells", "area"}
        How each block's mean matches its coarse value: over its cells alike (the default,
        the inverse of :func:`climgen.grid.coarsen_dataset`), or weighted by cell area, for
        coarse values from conservative regridding (on lat/lon and rotated-pole grids cells
        shrink towards the poles; see :func:`climgen.grid.cell_weights`).
    residual_gain : "auto" or float
        Share of the model's learned detail kept (0: bicubic with exact block means; 1: the
        detail as trained). ``"auto"`` keeps the default model's detail whole; for other
        multi-scale models it tests the model on each variable's coarse field, coarsened once
        more and refined back, and damps the detail only where that cuts the error
        (:mod:`climgen.depth.skill`). The gains, or why none was tested, are in the provenance.
    attributes : mapping of str to str or number, optional
        Global attributes of the output that only the user can state (``creator_name``,
        ``creator_email``, ``institution``, ``license``, ``id``...); they have the last word
        over climgen's ACDD-1.3 discovery attributes, except those that record the run.
    command : str, optional
        The command line recorded in the output's ``history`` (default: a Python call).
    device : str
        ``"auto"`` (a GPU when torch sees one, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
        (GPU N). The depth's self-tests run there too. On a GPU, tiles run in large batches,
        halved if the GPU runs out of memory.
    precision : str
        ``"auto"`` (bf16 convolutions where the device computes them natively: GPUs from
        compute capability 8.0, CPUs with AVX512-BF16 or AMX; else float32), ``"float32"`` or
        ``"bfloat16"``. bf16 refines 1.4-1.6 times as fast and differs from float32 by under
        1% of the fine detail; the coarse means hold exactly either way. The precision used is
        in the provenance.

    Returns
    -------
    Dataset
        The refined variables on the fine grid (names, attributes and other dimensions kept),
        with CF metadata; the maps ``complexity_score``, ``predicted_gain``, ``refinement_depth``
        and ``refinement_macs`` are auxiliary coordinates, so they travel with each variable. The whole result is
        computed in memory; for domains or time series that do not fit, write to a store with
        :func:`climgen.streaming.run` (``climgen synthesize``/``climgen run``), which gives
        the same numbers.
    """
    from climgen.refine import refine_domain, resolve_device

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
        order=_chains(order),
        conservation=conservation,
        residual_gain=residual_gain,
        attributes=attributes,
        precision=precision,
    )
    device = resolve_device(device)  # checked before any work
    job = plan(ds, config, covariates, device=device)
    ds = job.source  # with wrapped columns on a global grid
    refiner = job.refiner()
    coarse, members = {}, {}
    for name in job.prepared.variables:
        # as planning read them (each value read once), else read here
        read = job.coarse_values.pop(name, None)
        coarse[name] = read if read is not None else infinite_as_missing(_fields(ds, name, job.prepared.axes)[1])
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
        warn_disordered(chain, *order_counts(*(coarse[name] for name in chain)))
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
    provenance = job.provenance(fields_refined, time.perf_counter() - started) | refiner.hardware()
    result = assemble(ds, job, refined, provenance, command)
    # variables carried over from a lazy input (time bounds, series beside the grid) are read
    # now: the result is in memory whole and outlives the input's files
    lazy = [name for name, variable in result.variables.items() if variable.chunks is not None]
    if lazy:
        result = result.compute()
    result.encoding["unlimited_dims"] = unlimited_dims(ds, result)
    return with_file_encoding(result, job.prepared.variables)


COARSE_ONLY = frozenset(
    """bounds _FillValue missing_value valid_min valid_max valid_range actual_range scale_factor add_offset
    _Unsigned coordinates grid_mapping ancillary_variables cell_methods cell_measures axis""".split()
)
"""Attributes of an input's 2-D latitude and longitude that describe its coarse values or
storage, or name variables the output does not carry: left out of the fine ones."""


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
        # under the input's names (NEMO's nav_lat, WRF's XLAT) where it had them, so tools that
        # read them by name find them; else lat/lon
        names = auxiliaries or ("lat", "lon")
        coords = {}
        for name, values, role in zip(names, latlon, ("lat", "lon"), strict=True):
            kept = {key: value for key, value in ds[name].attrs.items() if key not in COARSE_ONLY} if name in ds.variables else {}
            coords[name] = ((axes.y, axes.x), values.astype(np.float32), kept | cf.LATLON_ATTRS[role])
        result = result.assign_coords(coords)
    return result


def _chains(order):
    """``order`` as a tuple of name tuples; anything else (a string, a flat list of names) is
    passed on as given, for the config to refuse with what the user wrote."""
    if order is None or isinstance(order, str):
        return order
    chains = list(order)  # a generator is read once
    if all(isinstance(chain, (list, tuple, np.ndarray)) for chain in chains):
        return tuple(tuple(chain.tolist() if isinstance(chain, np.ndarray) else chain) for chain in chains)
    return tuple(chains)


def _call_text(config: SynthesisConfig, covariate_names: list[str], entry: str = "ds.climgen.synthesize") -> str:
    """The call as a user would type it (to ``entry``): the factor, seed, members, depth and
    model always, and every other option that differs from its default (the provenance has
    them all)."""
    always = ("factor", "seed", "members", "adaptive")
    arguments = [f"{name}={getattr(config, name)}" for name in always]
    if covariate_names:
        arguments.append(f"covariates={covariate_names}")
    for name, field in type(config).model_fields.items():
        value = getattr(config, name)
        if name in (*always, "model") or value == field.default:
            continue
        if isinstance(value, tuple):
            value = [list(item) if isinstance(item, tuple) else item for item in value]
        elif isinstance(value, Mapping):
            value = dict(value)
        arguments.append(f"{name}={value!r}")
    arguments.append(f"model={config.model!r}")
    return f"climgen {__version__}: {entry}({', '.join(arguments)})"
