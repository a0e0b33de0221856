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
"""

from __future__ import annotations

import numpy as np

Bounds = tuple[float | None, float | None]  # a variable's (lower, upper) limits; None: no limit

# at most this many steps per block (a Newton step or a halving of the bracket; halving alone
# takes the bracket from a block's range to float64 rounding in about 60)
_MAX_STEPS = 100


def project_blocks(
    fine: np.ndarray,
    coarse: np.ndarray,
    factor: int,
    in_place: bool = False,
    bounds: Bounds | None = None,
) -> np.ndarray:
    """Make each factor x factor block of ``fine`` average exactly to ``coarse`` (float64).

    ``bounds`` (lower, upper; None for no limit) keeps every cell of a block inside them,
    where its coarse value lies inside them too; a block whose coarse value is outside gets
    that value everywhere (the least excursion its mean allows). ``in_place`` works on
    ``fine`` itself (a contiguous array) and returns it.
    """
    ny, nx = coarse.shape
    fine = fine if in_place else np.array(fine, dtype=np.float64)
    blocks = fine.reshape(ny, factor, nx, factor)
    error = blocks.mean(axis=(1, 3)) - coarse
    blocks -= error[:, None, :, None]
    lower, upper = _limits(bounds)
    if lower == -np.inf and upper == np.inf:
        return fine
    with np.errstate(invalid="ignore"):  # missing blocks (NaN) compare False: left as they are
        outside = (blocks.min(axis=(1, 3)) < lower) | (blocks.max(axis=(1, 3)) > upper)
    rows, cols = np.nonzero(outside)
    if rows.size:
        blocks[rows, :, cols, :] = clip_to_mean(blocks[rows, :, cols, :], coarse[rows, cols], lower, upper)
    return fine


def clip_to_mean(blocks: np.ndarray, means: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """``clip(block + shift, lower, upper)`` for blocks (K, a, b), with each block's shift chosen
    so that it averages to ``means`` (K,); blocks whose mean lies outside the bounds become
    constant at that mean."""
    flat = blocks.reshape(len(blocks), -1)
    target = means[:, None]
    # the clipped mean is piecewise linear and rises with the shift; these two shifts bracket
    # the answer (every cell at most, then at least, the target)
    low = target - flat.max(axis=1, keepdims=True)
    high = target - flat.min(axis=1, keepdims=True)
    shift = target - flat.mean(axis=1, keepdims=True)
    tolerance = 1e-13 * (np.abs(target) + high - low)
    active = np.flatnonzero((means >= lower) & (means <= upper))
    for _ in range(_MAX_STEPS):
        if active.size == 0:
            break
        moved = flat[active] + shift[active]
        excess = np.clip(moved, lower, upper).mean(axis=1, keepdims=True) - target[active]
        high[active] = np.where(excess > 0, shift[active], high[active])
        low[active] = np.where(excess < 0, shift[active], low[active])
        # Newton steps on the free cells' share (exact once the clipped cells are the right
        # ones, usually in a few steps), halving the bracket where a step would leave it
        slope = ((moved > lower) & (moved < upper)).mean(axis=1, keepdims=True)
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
    residual = clipped.mean(axis=1, keepdims=True) - target
    share = flat.shape[1] / np.maximum(free.sum(axis=1, keepdims=True), 1)
    clipped = np.clip(np.where(free, clipped - residual * share, clipped), lower, upper)
    infeasible = (means < lower) | (means > upper)
    clipped[infeasible] = target[infeasible]
    return clipped.reshape(blocks.shape)


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
