"""Area-weighted means of a fine rectilinear field over the cells of a coarser grid.

A covariate finer than climgen's fine grid (a 90 m elevation under a 10 km output) must be
averaged over each output cell, not sampled at its centre: a point sample aliases the detail
below the output's resolution into noise. On rectilinear grids the overlap of two cells is the
product of their overlaps along each axis, so the mean is two sparse matrix products; along a
latitude axis the overlap is measured in sin(latitude), so each cell weighs its true area. Where
the grids nest (each output cell holds whole source cells), this is the block mean.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def block_mean(values: np.ndarray, factor: int = 2) -> np.ndarray:
    """Mean of each factor x factor block over its finite cells (NaN where it has none); a
    trailing row or column that fills no block is dropped."""
    ny, nx = values.shape[-2] // factor, values.shape[-1] // factor
    blocks = values[..., : ny * factor, : nx * factor].reshape(*values.shape[:-2], ny, factor, nx, factor)
    valid = np.isfinite(blocks)
    count = valid.sum(axis=(-3, -1))
    total = np.where(valid, blocks, 0.0).sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def overlap_matrix(source_edges: np.ndarray, target_edges: np.ndarray, latitude: bool = False) -> sparse.csr_matrix:
    """(targets, sources): the length (in sin(latitude) with ``latitude``) that each target cell
    shares with each source cell; edges are (n, 2) in either order within a cell."""
    source = np.sort(np.asarray(source_edges, dtype=np.float64), axis=1)
    target = np.sort(np.asarray(target_edges, dtype=np.float64), axis=1)
    if latitude:
        source, target = (np.sin(np.radians(np.clip(edges, -90.0, 90.0))) for edges in (source, target))
    order = np.argsort(source[:, 0])
    starts = source[order, 0]
    rows, columns, lengths = [], [], []
    for index, (low, high) in enumerate(target):
        # sources starting before this target's end; of those, the ones ending after its start
        candidates = order[: np.searchsorted(starts, high, side="left")]
        overlap = np.minimum(source[candidates, 1], high) - np.maximum(source[candidates, 0], low)
        keep = overlap > 0
        rows.append(np.full(int(keep.sum()), index))
        columns.append(candidates[keep])
        lengths.append(overlap[keep])
    shape = (len(target), len(source))
    return sparse.csr_matrix((np.concatenate(lengths), (np.concatenate(rows), np.concatenate(columns))), shape=shape)


def area_mean(
    values: np.ndarray,
    source_edges: tuple[np.ndarray, np.ndarray],
    target_edges: tuple[np.ndarray, np.ndarray],
    latitude_rows: bool = False,
) -> np.ndarray:
    """Mean of a (rows, columns) field over each target cell, weighted by overlap area and
    over its finite cells only (NaN where a target cell covers none). Edges: (rows, columns),
    each (n, 2); ``latitude_rows`` weighs rows by sin(latitude)."""
    rows = overlap_matrix(source_edges[0], target_edges[0], latitude=latitude_rows)
    columns = overlap_matrix(source_edges[1], target_edges[1])
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values)
    total = rows @ (columns @ np.where(valid, values, 0.0).T).T
    weight = rows @ (columns @ valid.T.astype(np.float64)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
