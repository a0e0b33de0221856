"""Complexity scores per tile, and the policy that turns them into refinement depth.

Each component is dimensionless, so scores compare across variables and units:

- ``gradient``: mean squared gradient in the tile over the domain variance (per cell squared);
- ``spectral``: fraction of the tile's (detrended) spectral energy in the upper half of its
  wavenumbers;
- ``variance``: tile variance over domain variance;
- ``covariate``: spread of the fine covariates inside the tile over their domain spread.

Each is squashed to [0, 1) by ``c / (c + reference)`` and the score is their weighted mean.
Tiles that are all missing or constant score 0 and get depth 0.

Apart from the score, a tile is marked a *front* when some of its coarse cells sit at a physical
bound of the variable and others do not (coastlines of land fraction, sea-ice edges, the edge
of a rain area): there the finer stages sharpen a step, which a smooth field's tile of the same
score does not need (``benchmarks/quality_vs_bicubic.py --depths --tiles``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from climgen.errors import ConfigError
from climgen.tiling import TileLayout, fine_slices

REFERENCES = {"gradient": 0.05, "spectral": 0.15, "variance": 0.25, "covariate": 0.5}
WEIGHTS = {"gradient": 0.35, "spectral": 0.25, "variance": 0.2, "covariate": 0.2}
SECOND_STAGE_SCORE = 0.8
"""Score from which a tile gets the second stage (detail finer than half an input cell) by
default when neither fine covariates nor a front call for it: from the coarse field alone that
stage changed the RMSE of terrain, temperature and winds at x4 by 0.6% at most, for 4 of the 5
parts of the cost, and what it gained sat in the roughest tiles; land fraction gained 1.5-2.7%,
at its coastlines, which are fronts (``benchmarks/quality_vs_bicubic.py --depths --tiles``)."""
BOUND_TOLERANCE = 1e-6
"""How near a physical bound a coarse cell counts as at it, as a share of the field's range."""
FINE_STAGES_SCORE = 0.85
"""The same for the third stage and finer (detail finer than a quarter of an input cell): from
the coarse field alone the third stage changed the RMSE of six held-out fields at x8 by 0.1% at
most, for 16 of the 21 parts of the cost. Guided by a covariate a stage can carry the
covariate's finest detail, so there the evenly spaced thresholds stay."""


@dataclass(frozen=True)
class ComplexityScores:
    """Per-tile components and combined score (arrays shaped like the tile grid)."""

    components: dict[str, np.ndarray]
    score: np.ndarray
    constant: np.ndarray  # True where the tile is all-missing or constant
    front: np.ndarray | None = None  # True where cells at a physical bound meet cells off it

    @property
    def fronts(self) -> np.ndarray:
        """The front mask (all False when none was computed)."""
        return np.zeros(self.score.shape, dtype=bool) if self.front is None else self.front


def _spectral_fraction(tile: np.ndarray) -> float:
    ny, nx = tile.shape
    if ny < 4 or nx < 4:
        return 0.0
    yy, xx = np.mgrid[0:ny, 0:nx]
    design = np.stack([np.ones(tile.size), yy.ravel(), xx.ravel()], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, tile.ravel(), rcond=None)
    residual = tile - (design @ coefficients).reshape(tile.shape)
    if (residual**2).sum() <= 1e-10 * ((tile - tile.mean()) ** 2).sum():
        return 0.0  # a plane: whatever is left is rounding noise
    power = np.abs(np.fft.fft2(residual)) ** 2
    ky = np.abs(np.fft.fftfreq(ny))[:, None] * 2
    kx = np.abs(np.fft.fftfreq(nx))[None, :] * 2
    high = np.maximum(ky, kx) > 0.5
    total = power.sum()
    return float(power[high].sum() / total) if total > 0 else 0.0


def _fill_missing(field: np.ndarray) -> np.ndarray:
    valid = np.isfinite(field)
    return field if valid.all() else np.where(valid, field, np.nanmean(field))


def at_bound(field: np.ndarray, bounds: tuple[float | None, float | None] | None) -> np.ndarray:
    """Cells of a 2-D field within :data:`BOUND_TOLERANCE` of the field's range of a physical
    bound (lower, upper; None for none): open sea in land fraction, dry cells in precipitation."""
    lower, upper = bounds if bounds is not None else (None, None)
    touching = np.zeros(field.shape, dtype=bool)
    if (lower is None and upper is None) or not np.isfinite(field).any():
        return touching
    tolerance = BOUND_TOLERANCE * float(np.nanmax(field) - np.nanmin(field))
    with np.errstate(invalid="ignore"):
        for bound in (lower, upper):
            if bound is not None:
                touching |= np.abs(field - bound) <= tolerance
    return touching


def tile_components(
    field: np.ndarray,
    layout: TileLayout,
    covariates: np.ndarray | None = None,
    factor: int = 1,
    bounds: tuple[float | None, float | None] | None = None,
) -> ComplexityScores:
    """Scores for one 2-D coarse field (NaN = missing) and optional fine covariates (K, Y, X);
    with the variable's physical ``bounds`` (lower, upper) also its fronts."""
    field = np.where(np.isfinite(field), field, np.nan)  # +-inf counts as missing
    rows, cols = layout.grid_shape
    names = ["gradient", "spectral", "variance"] + (["covariate"] if covariates is not None else [])
    raw = {name: np.zeros((rows, cols)) for name in names}
    constant = np.ones((rows, cols), dtype=bool)
    front = np.zeros((rows, cols), dtype=bool)
    if not np.isfinite(field).any():
        return _combine(raw, constant, front)
    touching = at_bound(field, bounds)
    domain_variance = float(np.nanvar(field))
    filled = _fill_missing(field)
    gy, gx = np.gradient(filled) if min(filled.shape) > 1 else (np.zeros_like(filled), np.zeros_like(filled))
    gradient_energy = gy**2 + gx**2
    if covariates is not None:
        covariate_spread = np.array([np.nanstd(c) for c in covariates])
    for tile in layout:
        values = field[tile.core]
        valid = np.isfinite(values)
        if not valid.any() or np.nanmax(values) == np.nanmin(values):
            continue
        constant[tile.row, tile.col] = False
        front[tile.row, tile.col] = touching[tile.core][valid].any() and not touching[tile.core][valid].all()
        if domain_variance > 0:
            raw["gradient"][tile.row, tile.col] = gradient_energy[tile.core][valid].mean() / domain_variance
            raw["variance"][tile.row, tile.col] = np.nanvar(values) / domain_variance
        raw["spectral"][tile.row, tile.col] = _spectral_fraction(filled[tile.core])
        if covariates is not None:
            window = covariates[(slice(None), *fine_slices(tile.core, factor))]
            with np.errstate(invalid="ignore", divide="ignore"):
                spread = np.array([np.nanstd(c) if np.isfinite(c).any() else 0.0 for c in window]) / covariate_spread
            raw["covariate"][tile.row, tile.col] = np.nanmax(np.nan_to_num(spread, nan=0.0, posinf=0.0))
    return _combine(raw, constant, front)


def _combine(raw: dict[str, np.ndarray], constant: np.ndarray, front: np.ndarray) -> ComplexityScores:
    components = {name: values / (values + REFERENCES[name]) for name, values in raw.items()}
    total_weight = sum(WEIGHTS[name] for name in components)
    score = sum(WEIGHTS[name] * values for name, values in components.items()) / total_weight
    score = np.where(constant, 0.0, score)
    return ComplexityScores(components, score, constant, front)


def combine_scores(scores: list[ComplexityScores]) -> ComplexityScores:
    """Element-wise maximum over several fields (time steps, variables): a tile is as complex
    as its most complex field."""
    components = {}
    for name in scores[0].components:
        components[name] = np.max([s.components[name] for s in scores if name in s.components], axis=0)
    score = np.max([s.score for s in scores], axis=0)
    constant = np.all([s.constant for s in scores], axis=0)
    front = np.any([s.fronts for s in scores], axis=0)
    return ComplexityScores(components, score, constant, front)


def stage_cost(depth: np.ndarray | int) -> np.ndarray:
    """Relative cost of refining a tile to ``depth`` stages (stage s works on 4**(s-1) times
    the coarse cells)."""
    return (4 ** np.asarray(depth) - 1) / 3


def depth_thresholds(
    full_depth: int, guided: bool, front: bool = False, second_stage_score: float = SECOND_STAGE_SCORE
) -> list[float]:
    """The score from which a tile gets each of ``full_depth`` stages by default: evenly spaced,
    ``k / (full_depth + 1)`` for stage k, where covariates ``guided`` the scores. Otherwise a
    ``front`` gets the first two stages whatever its score; elsewhere the second stage needs at
    least ``second_stage_score`` (:data:`SECOND_STAGE_SCORE`; 0 for a model that samples
    detail, whose later stages add spread). Later stages need :data:`FINE_STAGES_SCORE`."""
    evenly_spaced = [stage / (full_depth + 1) for stage in range(1, full_depth + 1)]
    if guided:
        return evenly_spaced
    if front:
        thresholds = [0.0] * min(full_depth, 2)
    else:
        thresholds = evenly_spaced[:1] + [max(t, second_stage_score) for t in evenly_spaced[1:2]]
    return thresholds + [max(t, FINE_STAGES_SCORE) for t in evenly_spaced[2:]]


def choose_depth(
    scores: ComplexityScores,
    full_depth: int,
    adaptive: bool = True,
    budget: float | None = None,
    tile_weights: np.ndarray | None = None,
    cost: Callable[[np.ndarray], float] | None = None,
    second_stage_score: float = SECOND_STAGE_SCORE,
) -> np.ndarray:
    """Refinement depth per tile.

    ``adaptive=False``: full depth everywhere (the non-adaptive reference). ``budget`` in (0, 1]:
    the deepest assignment, monotone in score, whose cost is at most that fraction of full-depth
    cost. The cost of a depth map is ``cost(depth)`` if given (e.g. the work of the windows the
    tiles share, :func:`climgen.depth.compute.window_cells`), else the sum of each tile's
    :func:`stage_cost` times its ``tile_weights`` (e.g. padded area; default 1).
    Otherwise fixed thresholds (:func:`depth_thresholds` with ``second_stage_score``, guided
    when ``scores`` has a ``covariate`` component, and at the tiles ``scores`` marks as fronts):
    depth = the number of thresholds the score reaches (without covariates, away from fronts:
    0.5 at x4 gives depth 1, 0.8 depth 2; at x8, 0.8 gives 2 and 0.85 gives 3; a front gets
    depth 2, or 1 at x2, and 3 from 0.85 at x8). Constant tiles get 0.
    """
    if budget is not None and not (0 < budget <= 1):
        raise ConfigError(f"budget must be in (0, 1], got {budget}")
    score = scores.score
    if not adaptive:
        depth = np.full(score.shape, full_depth)
    elif budget is None:
        guided = "covariate" in scores.components
        depth = _depth_by_thresholds(score, depth_thresholds(full_depth, guided, second_stage_score=second_stage_score))
        if not guided:
            at_fronts = _depth_by_thresholds(score, depth_thresholds(full_depth, False, front=True))
            depth = np.where(scores.fronts, at_fronts, depth)
    else:
        if cost is None:
            weights = np.ones(score.shape) if tile_weights is None else np.asarray(tile_weights, dtype=np.float64)

            def cost(depth: np.ndarray) -> float:
                return float((weights * stage_cost(depth)).sum())

        depth = _budgeted_depth(score, full_depth, budget, cost)
    return np.where(scores.constant, 0, depth).astype(np.int8)


def _depth_by_thresholds(score: np.ndarray, thresholds: list[float]) -> np.ndarray:
    return sum((score >= threshold).astype(np.int8) for threshold in thresholds)


def _budgeted_depth(score: np.ndarray, full_depth: int, budget: float, cost: Callable[[np.ndarray], float]) -> np.ndarray:
    # bisection on a score scale: the cost of shared windows is not strictly monotone in it,
    # but every accepted scale keeps within the budget
    allowed = budget * cost(np.full(score.shape, full_depth))

    def depth_for(scale: float) -> np.ndarray:
        return np.minimum(np.floor(score * scale), full_depth)

    low, high = 0.0, (full_depth + 1) / max(float(score[score > 0].min(initial=1.0)), 1e-6)
    for _ in range(60):
        middle = (low + high) / 2
        if cost(depth_for(middle)) <= allowed:
            low = middle
        else:
            high = middle
    return depth_for(low)
