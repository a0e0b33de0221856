"""Exact coarse consistency of a refined field, inside the variable's physical bounds.

Every factor x factor block of a refined field must average to its coarse value. Shifting the
block by its mean error does that, but it can push cells past what the variable allows:
negative rain next to dry cells, land fraction above 1 on coastlines. With bounds, each block
that leaves them is instead projected onto the set of blocks with the right mean and every
cell inside the bounds: ``clip(block + shift, lower, upper)`` with the one shift that gives
the mean (the nearest such block in the Euclidean sense). That set is convex and holds the
true fine field whenever the truth respects the bounds, so the projection never moves a block
away from the truth: RMSE can only fall. Blocks already inside the bounds are shifted as
without bounds, to the same bits.

Variables that come in order (daily minimum, mean and maximum temperature) are refined each on
its own, so near a sharp change of the diurnal range the minimum can end up above the maximum.
:func:`order_fields` restores the order the same way: for a pair, the difference is projected
onto the non-negative blocks with its coarse mean while the sum stays as refined (the nearest
ordered pair with the same block means); blocks already in order keep their bits.

By default a block's mean counts every cell the same. On lat/lon grids, whose cells shrink
towards the poles, coarse values from conservative (area-weighted) regridding are area-weighted
means; with cell ``weights`` every block's area-weighted mean equals its coarse value instead,
and "nearest" is measured in the area-weighted norm.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

Bounds = tuple[float | None, float | None]  # a variable's (lower, upper) limits; None: no limit
# relative areas of a field's fine cells as (row factors, column factors): area = row x column;
# None: every cell counts the same (see climgen.grid.cell_weights)
Weights = tuple[np.ndarray, np.ndarray] | None

# sweeps over the pairs of a chain of three or more variables (each sweep orders one pair
# exactly and may disturb its neighbour by less each time); what is left is ordered one-sidedly
_MAX_SWEEPS = 20
# at most this many steps per block (a Newton step or a halving of the bracket; halving alone
# takes the bracket from a block's range to float64 rounding in about 60)
_MAX_STEPS = 100


def project_blocks(
    fine: np.ndarray,
    coarse: np.ndarray,
    factor: int,
    in_place: bool = False,
    bounds: Bounds | None = None,
    weights: Weights = None,
) -> np.ndarray:
    """Make each factor x factor block of ``fine`` average exactly to ``coarse`` (float64).

    ``bounds`` (lower, upper; None for no limit) keeps every cell of a block inside them,
    where its coarse value lies inside them too; a block whose coarse value is outside gets
    that value everywhere (the least excursion its mean allows). ``weights`` makes the mean
    weighted by cell area (the blocks' area-weighted means then equal ``coarse``). ``in_place``
    works on ``fine`` itself (a contiguous array) and returns it.
    """
    ny, nx = coarse.shape
    fine = fine if in_place else np.array(fine, dtype=np.float64)
    blocks = fine.reshape(ny, factor, nx, factor)
    block_weights = _block_weights(weights, ny, nx, factor)
    if block_weights is None:
        error = blocks.mean(axis=(1, 3)) - coarse
    else:
        error = (blocks * block_weights).sum(axis=(1, 3)) - coarse
    blocks -= error[:, None, :, None]
    lower, upper = _limits(bounds)
    if lower == -np.inf and upper == np.inf:
        return fine
    with np.errstate(invalid="ignore"):  # missing blocks (NaN) compare False: left as they are
        outside = (blocks.min(axis=(1, 3)) < lower) | (blocks.max(axis=(1, 3)) > upper)
    rows, cols = np.nonzero(outside)
    if rows.size:
        chosen = None if block_weights is None else block_weights[rows, :, cols, :]
        blocks[rows, :, cols, :] = clip_to_mean(blocks[rows, :, cols, :], coarse[rows, cols], lower, upper, chosen)
    for bound in (lower, upper):  # a block whose mean is at a bound is at it everywhere (dry stays exactly dry)
        if np.isfinite(bound):
            rows, cols = np.nonzero(coarse == bound)
            blocks[rows, :, cols, :] = bound
    return fine


def block_means(values: np.ndarray, factor: int, weights: Weights = None) -> np.ndarray:
    """Mean of each factor x factor block of (..., ny * factor, nx * factor) values: over its
    cells alike, or weighted by the cells' area factors ``weights`` (rows, columns)."""
    ny, nx = values.shape[-2] // factor, values.shape[-1] // factor
    blocks = values.reshape(*values.shape[:-2], ny, factor, nx, factor)
    if weights is None:
        return blocks.mean(axis=(-3, -1))
    return (blocks * _block_weights(weights, ny, nx, factor)).sum(axis=(-3, -1))


def _block_weights(weights: Weights, ny: int, nx: int, factor: int) -> np.ndarray | None:
    """Cell weights shaped like the blocks (ny, factor, nx, factor), summing to 1 in each."""
    if weights is None:
        return None
    rows = weights[0].reshape(ny, factor)
    cols = weights[1].reshape(nx, factor)
    rows = rows / rows.sum(axis=1, keepdims=True)
    cols = cols / cols.sum(axis=1, keepdims=True)
    return rows[:, :, None, None] * cols[None, None, :, :]


def _mean(flat: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Each row's mean of (K, n) values, weighted by ``weights`` (K, n; rows summing to 1)."""
    return flat.mean(axis=1, keepdims=True) if weights is None else (flat * weights).sum(axis=1, keepdims=True)


def clip_to_mean(
    blocks: np.ndarray, means: np.ndarray, lower: float, upper: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """``clip(block + shift, lower, upper)`` for blocks (K, a, b), with each block's shift chosen
    so that it averages to ``means`` (K,); blocks whose mean lies outside the bounds become
    constant at that mean. ``weights`` (K, a, b; each block's summing to 1) weight the mean."""
    flat = blocks.reshape(len(blocks), -1)
    cell_weights = None if weights is None else weights.reshape(len(blocks), -1)
    target = means[:, None]
    # the clipped mean is piecewise linear and rises with the shift; these two shifts bracket
    # the answer (every cell at most, then at least, the target)
    low = target - flat.max(axis=1, keepdims=True)
    high = target - flat.min(axis=1, keepdims=True)
    shift = target - _mean(flat, cell_weights)
    tolerance = 1e-13 * (np.abs(target) + high - low)
    active = np.flatnonzero((means >= lower) & (means <= upper))
    for _ in range(_MAX_STEPS):
        if active.size == 0:
            break
        moved = flat[active] + shift[active]
        active_weights = None if cell_weights is None else cell_weights[active]
        excess = _mean(np.clip(moved, lower, upper), active_weights) - target[active]
        high[active] = np.where(excess > 0, shift[active], high[active])
        low[active] = np.where(excess < 0, shift[active], low[active])
        # Newton steps on the free cells' share (exact once the clipped cells are the right
        # ones, usually in a few steps), halving the bracket where a step would leave it
        slope = _mean((moved > lower) & (moved < upper), active_weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = shift[active] - excess / slope
        inside = (slope > 0) & (newton > low[active]) & (newton < high[active])
        unsettled = (np.abs(excess) > tolerance[active]) & (high[active] - low[active] > tolerance[active])
        shift[active] = np.where(unsettled, np.where(inside, newton, 0.5 * (low[active] + high[active])), shift[active])
        active = active[unsettled[:, 0]]
    clipped = np.clip(flat + shift, lower, upper)
    # the last rounding error goes to the cells strictly inside the bounds (the clip after it
    # only undoes excursions of a few ulps)
    free = (clipped > lower) & (clipped < upper)
    residual = _mean(clipped, cell_weights) - target
    if cell_weights is None:
        share = flat.shape[1] / np.maximum(free.sum(axis=1, keepdims=True), 1)
    else:
        free_weight = _mean(free, cell_weights)
        share = np.where(free_weight > 0, 1.0 / np.where(free_weight > 0, free_weight, 1.0), 0.0)
    clipped = np.clip(np.where(free, clipped - residual * share, clipped), lower, upper)
    infeasible = (means < lower) | (means > upper)
    clipped[infeasible] = target[infeasible]
    return clipped.reshape(blocks.shape)


def order_fields(
    fields: list[np.ndarray],
    coarse: list[np.ndarray],
    factor: int,
    bounds: list[Bounds | None] | None = None,
    weights: Weights = None,
) -> int:
    """Make fine fields ``fields`` (2-D, float64, changed in place) non-decreasing along the
    list in every cell (``[tasmin, tas, tasmax]``), each factor x factor block still averaging
    (weighted by ``weights``, as in :func:`project_blocks`) to its value in ``coarse``; returns
    how many blocks changed.

    Blocks whose coarse values are out of order themselves, or missing, are left as refined.
    A field with ``bounds`` is then kept inside them (:func:`project_blocks`): bounds come first.
    """
    ny, nx = coarse[0].shape
    blocks = [values.reshape(ny, factor, nx, factor) for values in fields]
    block_weights = _block_weights(weights, ny, nx, factor)
    # where a variable is missing (a day of tasmax lost), the others of the chain are still
    # ordered among themselves: blocks go by which variables have a coarse value there
    present = np.stack([np.isfinite(values) for values in coarse])
    patterns = np.zeros((ny, nx), dtype=np.int64)
    for index, valid in enumerate(present):
        patterns |= valid.astype(np.int64) << index
    feasible = np.zeros((ny, nx), dtype=bool)
    changed = 0
    for pattern in np.unique(patterns):
        members = [index for index in range(len(fields)) if pattern >> index & 1]
        if len(members) < 2:
            continue
        here = patterns == pattern
        with np.errstate(invalid="ignore"):  # blocks with a missing fine cell compare False: left as they are
            crossed = np.zeros((ny, nx), dtype=bool)
            ordered = here.copy()
            for low, high in pairwise(members):
                crossed |= (blocks[high] - blocks[low]).min(axis=(1, 3)) < 0
                ordered &= coarse[low] <= coarse[high]
        feasible |= ordered
        rows, cols = np.nonzero(crossed & ordered)
        if rows.size:
            chain = [blocks[index][rows, :, cols, :] for index in members]
            chosen = None if block_weights is None else block_weights[rows, :, cols, :]
            _order_chain(chain, [coarse[index][rows, cols] for index in members], chosen)
            for index, values in zip(members, chain, strict=True):
                blocks[index][rows, :, cols, :] = values
            changed += int(rows.size)
    projected = False
    for values, target, limits in zip(fields, coarse, bounds or [None] * len(fields), strict=True):
        if limits is not None and count_outside(values, limits):
            project_blocks(values, target, factor, in_place=True, bounds=limits, weights=weights)
            projected = True
    if projected:  # a weighted projection rounds: an order it crosses by a few float32 ulps is kept
        ordered = np.repeat(np.repeat(feasible, factor, 0), factor, 1)
        for low, high in reversed(list(pairwise(fields))):
            with np.errstate(invalid="ignore"):
                scale = max(float(np.nanmax(np.abs(low), initial=0.0)), float(np.nanmax(np.abs(high), initial=0.0)))
                crossed_by_rounding = ordered & (low > high) & (low - high <= 4 * np.finfo(np.float32).eps * scale)
            np.minimum(low, high, out=low, where=crossed_by_rounding)
    return changed


def order_stacks(
    fine: list[np.ndarray], coarse: list[np.ndarray], factor: int, bounds: list[Bounds | None], weights: Weights = None
) -> int:
    """:func:`order_fields` on each of the N fields of (N, ny, nx) arrays: ``fine`` (any float
    type, changed in place) over ``coarse``; returns how many blocks changed."""
    changed = 0
    for index in range(len(fine[0])):
        fields = [np.asarray(values[index], dtype=np.float64) for values in fine]
        changed += order_fields(fields, [values[index] for values in coarse], factor, bounds, weights)
        for values, ordered in zip(fine, fields, strict=True):
            values[index] = ordered
    return changed


def _order_chain(chain: list[np.ndarray], means: list[np.ndarray], weights: np.ndarray | None) -> None:
    """Order blocks (K, a, b) of a chain of variables in place, lowest first: for a pair, the
    nearest ordered pair with the same means; a longer chain orders its pairs in turn (which
    converges to the nearest ordered chain), then each variable above the one below it."""
    pairs = list(pairwise(range(len(chain))))
    for _ in range(_MAX_SWEEPS):
        moved = [_order_pair(chain[low], chain[high], means[low], means[high], weights) for low, high in pairs]
        if len(pairs) == 1 or not any(moved):
            return
    for low, high in pairs:
        _order_pair(chain[low], chain[high], means[low], means[high], weights, move_low=False)


def _order_pair(
    low: np.ndarray,
    high: np.ndarray,
    mean_low: np.ndarray,
    mean_high: np.ndarray,
    weights: np.ndarray | None,
    move_low: bool = True,
) -> bool:
    """Blocks (K, a, b) where ``low`` exceeds ``high`` somewhere get the nearest ordered pair
    with the same means (or, without ``move_low``, the nearest ``high`` above ``low``); whether
    any did."""
    difference = high - low
    crossed = np.flatnonzero(difference.min(axis=(1, 2)) < 0)
    if crossed.size == 0:
        return False
    chosen = None if weights is None else weights[crossed]
    ordered = clip_to_mean(difference[crossed], mean_high[crossed] - mean_low[crossed], 0.0, np.inf, chosen)
    if move_low:
        total = low[crossed] + high[crossed]
        low[crossed] = 0.5 * (total - ordered)
        high[crossed] = 0.5 * (total + ordered)
    else:
        high[crossed] = low[crossed] + ordered
    return True


def count_disordered(*chain: np.ndarray) -> int:
    """How many cells of the fields ``chain`` (lowest first) are out of order (missing values
    do not count)."""
    return order_counts(*chain)[0]


def order_counts(*chain: np.ndarray) -> tuple[int, int]:
    """How many cells of the fields ``chain`` (lowest first) are out of order, and in how many
    at least two neighbours of the chain have values to compare."""
    disordered = np.zeros(np.shape(chain[0]), dtype=bool)
    compared = np.zeros(np.shape(chain[0]), dtype=bool)
    with np.errstate(invalid="ignore"):
        for low, high in pairwise(chain):
            low, high = np.asarray(low), np.asarray(high)
            disordered |= low > high
            compared |= np.isfinite(low) & np.isfinite(high)
    return int(np.count_nonzero(disordered)), int(np.count_nonzero(compared))


def count_outside(values: np.ndarray, bounds: Bounds) -> int:
    """How many of ``values`` lie outside ``bounds`` (missing values do not count)."""
    lower, upper = _limits(bounds)
    with np.errstate(invalid="ignore"):  # missing values compare False
        return int(np.count_nonzero((values < lower) | (values > upper)))


def format_bounds(bounds: Bounds) -> str:
    """``0..1``, ``0..`` (no upper limit) or ``..`` (none) for messages and plans."""
    return "..".join("" if limit is None else f"{limit:g}" for limit in bounds)


def _limits(bounds: Bounds | None) -> tuple[float, float]:
    lower, upper = bounds if bounds is not None else (None, None)
    return (-np.inf if lower is None else float(lower)), (np.inf if upper is None else float(upper))
