"""Complexity scores per tile, and the policy that turns them into refinement depth.

Each component is dimensionless, so scores compare across variables and units:

- ``gradient``: mean squared gradient in the tile over the domain variance (per cell squared);
- ``spectral``: fraction of the tile's (detrended) spectral energy in the upper half of its
  wavenumbers;
- ``variance``: tile variance over domain variance;
- ``covariate``: spread of the fine covariates inside the tile over their domain spread.

Each is squashed to [0, 1) by ``c / (c + reference)`` and the score is their weighted mean.
Tiles that are all missing or constant score 0 and get depth 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from climgen.errors import ConfigError
from climgen.tiling import TileLayout, fine_slices

REFERENCES = {"gradient": 0.05, "spectral": 0.15, "variance": 0.25, "covariate": 0.5}
WEIGHTS = {"gradient": 0.35, "spectral": 0.25, "variance": 0.2, "covariate": 0.2}
SCORE_ONLY_STAGES = 2
"""Stages (up to x4) that the evenly spaced thresholds give a tile without covariates."""
FINE_STAGES_SCORE = 0.85
"""Score from which a tile gets the stages past :data:`SCORE_ONLY_STAGES` (detail finer than a quarter of an
input cell) by default when no fine covariates are given: from the coarse field alone the third
stage changed the RMSE of six held-out fields at x8 by 0.1% at most, for 16 of the 21 parts
of the cost (``benchmarks/quality_vs_bicubic.py --depths``); guided by a covariate it can
carry the covariate's finest detail, so the evenly spaced thresholds stay."""


@dataclass(frozen=True)
class ComplexityScores:
    """Per-tile components and combined score (arrays shaped like the tile grid)."""

    components: dict[str, np.ndarray]
    score: np.ndarray
    constant: np.ndarray  # True where the tile is all-missing or constant


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


def tile_components(
    field: np.ndarray, layout: TileLayout, covariates: np.ndarray | None = None, factor: int = 1
) -> ComplexityScores:
    """Scores for one 2-D coarse field (NaN = missing) and optional fine covariates (K, Y, X)."""
    field = np.where(np.isfinite(field), field, np.nan)  # +-inf counts as missing
    rows, cols = layout.grid_shape
    names = ["gradient", "spectral", "variance"] + (["covariate"] if covariates is not None else [])
    raw = {name: np.zeros((rows, cols)) for name in names}
    constant = np.ones((rows, cols), dtype=bool)
    if not np.isfinite(field).any():
        return _combine(raw, constant)
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
        if domain_variance > 0:
            raw["gradient"][tile.row, tile.col] = gradient_energy[tile.core][valid].mean() / domain_variance
            raw["variance"][tile.row, tile.col] = np.nanvar(values) / domain_variance
        raw["spectral"][tile.row, tile.col] = _spectral_fraction(filled[tile.core])
        if covariates is not None:
            window = covariates[(slice(None), *fine_slices(tile.core, factor))]
            with np.errstate(invalid="ignore", divide="ignore"):
                spread = np.array([np.nanstd(c) if np.isfinite(c).any() else 0.0 for c in window]) / covariate_spread
            raw["covariate"][tile.row, tile.col] = np.nanmax(np.nan_to_num(spread, nan=0.0, posinf=0.0))
    return _combine(raw, constant)


def _combine(raw: dict[str, np.ndarray], constant: np.ndarray) -> ComplexityScores:
    components = {name: values / (values + REFERENCES[name]) for name, values in raw.items()}
    total_weight = sum(WEIGHTS[name] for name in components)
    score = sum(WEIGHTS[name] * values for name, values in components.items()) / total_weight
    score = np.where(constant, 0.0, score)
    return ComplexityScores(components, score, constant)


def combine_scores(scores: list[ComplexityScores]) -> ComplexityScores:
    """Element-wise maximum over several fields (time steps, variables): a tile is as complex
    as its most complex field."""
    components = {}
    for name in scores[0].components:
        components[name] = np.max([s.components[name] for s in scores if name in s.components], axis=0)
    score = np.max([s.score for s in scores], axis=0)
    constant = np.all([s.constant for s in scores], axis=0)
    return ComplexityScores(components, score, constant)


def stage_cost(depth: np.ndarray | int) -> np.ndarray:
    """Relative cost of refining a tile to ``depth`` stages (stage s works on 4**(s-1) times
    the coarse cells)."""
    return (4 ** np.asarray(depth) - 1) / 3


def depth_thresholds(full_depth: int, guided: bool) -> list[float]:
    """The score from which a tile gets each of ``full_depth`` stages by default: evenly spaced,
    ``k / (full_depth + 1)`` for stage k, and for stages past :data:`SCORE_ONLY_STAGES` at
    least :data:`FINE_STAGES_SCORE` unless covariates ``guided`` the scores."""
    evenly_spaced = [stage / (full_depth + 1) for stage in range(1, full_depth + 1)]
    if guided:
        return evenly_spaced
    return [t if stage <= SCORE_ONLY_STAGES else max(t, FINE_STAGES_SCORE) for stage, t in enumerate(evenly_spaced, 1)]


def choose_depth(
    scores: ComplexityScores,
    full_depth: int,
    adaptive: bool = True,
    budget: float | None = None,
    tile_weights: np.ndarray | None = None,
    cost: Callable[[np.ndarray], float] | None = None,
) -> np.ndarray:
    """Refinement depth per tile.

    ``adaptive=False``: full depth everywhere (the non-adaptive reference). ``budget`` in (0, 1]:
    the deepest assignment, monotone in score, whose cost is at most that fraction of full-depth
    cost. The cost of a depth map is ``cost(depth)`` if given (e.g. the work of the windows the
    tiles share, :func:`climgen.compute.window_cells`), else the sum of each tile's
    :func:`stage_cost` times its ``tile_weights`` (e.g. padded area; default 1).
    Otherwise fixed thresholds (:func:`depth_thresholds`; guided when ``scores`` has a
    ``covariate`` component): depth = the number of thresholds the score reaches (score 0.5 at
    x4 gives depth 1, >= 2/3 depth 2; at x8 without covariates, 0.8 gives 2 and 0.85 gives 3).
    Constant tiles get 0.
    """
    if budget is not None and not (0 < budget <= 1):
        raise ConfigError(f"budget must be in (0, 1], got {budget}")
    score = scores.score
    if not adaptive:
        depth = np.full(score.shape, full_depth)
    elif budget is None:
        thresholds = depth_thresholds(full_depth, "covariate" in scores.components)
        depth = sum((score >= threshold).astype(np.int8) for threshold in thresholds)
    else:
        if cost is None:
            weights = np.ones(score.shape) if tile_weights is None else np.asarray(tile_weights, dtype=np.float64)

            def cost(depth: np.ndarray) -> float:
                return float((weights * stage_cost(depth)).sum())

        depth = _budgeted_depth(score, full_depth, budget, cost)
    return np.where(scores.constant, 0, depth).astype(np.int8)


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
