"""Complexity scores of a dataset read by time chunks, as the streaming path plans a job.

A long series read from a file is scored one block of time steps at a time by dask, so it is
never in memory whole; the same pass counts the coarse values outside each variable's physical
bounds and out of order, and warns once per variable.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.conservation import count_outside, order_counts
from climgen.depth.complexity import combine_scores, tile_components
from climgen.inputs import check_magnitudes, infinite_as_missing, warn_disordered, warn_outside_bounds


def _score_block(values: np.ndarray, layout, covariates, factor: int, bounds, name: str) -> tuple:
    """One block of fields' tile scores, and how many of its values lie outside ``bounds``;
    values no variable holds (unmarked fill values) are refused here, before any task runs."""
    fields = np.asarray(values, dtype=np.float64).reshape(-1, *values.shape[-2:])
    check_magnitudes(fields, name)
    fields = infinite_as_missing(fields)
    scores = [tile_components(f, layout, covariates, factor, bounds) for f in fields]
    return combine_scores(scores), count_outside(fields, bounds)


def time_blocks(variable: xr.DataArray, time_chunk: int) -> list:
    """The variable's data (spatial dimensions last) in blocks of ``time_chunk`` leading steps,
    as dask arrays: each is read when its block is scored, so a long series read from a file is
    never in memory whole."""
    if variable.ndim == 2:
        return [variable.data]
    lazy = variable.chunk({variable.dims[0]: time_chunk})  # no read: a file's variable stays on disk
    return [lazy[start : start + time_chunk].data for start in range(0, variable.shape[0], time_chunk)]


def stream_scores(ds: xr.Dataset, prepared, factor: int, time_chunk: int):
    """Complexity scores of every field, computed by dask one time chunk at a time; the same
    pass warns about coarse values outside each variable's physical bounds and out of order."""
    import dask

    axes, layout = prepared.axes, prepared.layout
    spatial_last = {name: ds[name].transpose(..., axes.y, axes.x) for name in prepared.variables}
    parts, names = [], []
    for name in prepared.variables:
        for block in time_blocks(spatial_last[name], time_chunk):
            parts.append(dask.delayed(_score_block)(block, layout, prepared.covariates, factor, prepared.limits[name], name))
            names.append(name)
    disorder = [
        [
            dask.delayed(order_counts)(*blocks)
            for blocks in zip(*(time_blocks(spatial_last[n], time_chunk) for n in chain), strict=True)
        ]
        for chain in prepared.order
    ]
    results, disordered = dask.compute(parts, disorder)
    for name in prepared.variables:
        outside = sum(count for part, (_, count) in zip(names, results, strict=True) if part == name)
        warn_outside_bounds(name, outside, prepared.limits[name])
    for chain, counts in zip(prepared.order, disordered, strict=True):
        warn_disordered(chain, sum(count for count, _ in counts), sum(compared for _, compared in counts))
    return combine_scores([scores for scores, _ in results])
