"""Predicted gain of each refinement stage per tile, and the depth policies built on it.

Depth should go where a further stage removes error, so climgen predicts that gain from the
coarse field itself, with a self-test one scale coarser where the truth is known. Each tested
field F (the coarse input) is block-averaged by 2 to F' and refined back to F's grid twice,
through the same tiling, blending and projection as a real run: at depth 0 (bicubic with exact
consistency) and at depth 1 (the model's first stage). Per tile of the run's layout,

- ``base_error`` = mean (depth 0 - F)^2, the detail bicubic misses one octave up;
- ``model_error`` = mean (depth 1 - F)^2, what the model still misses there.

Stage s of the real run adds detail s octaves finer. How detail variance falls from one octave
to the next is the *octave ratio* r: bicubic's error refining F' over its error refining
F'' = F' averaged by 2, over the field, and per tile (each tile's own, taken geometrically
halfway to the field's, :data:`TILE_RATIO_WEIGHT`; clipped to 0.05..1): a coastline or an ice
edge keeps its detail from octave to octave, a smooth slope loses it. The model's *skill*, the
share of the missing detail it recovers, is measured over the domain one octave up
(1 - model_error / base_error, at least :data:`SKILL_FLOOR`) and taken to fall by
:data:`STAGE_DECAY` a stage off edges (below). So stage s is predicted to remove
``skill * STAGE_DECAY**(s - 1) * r_tile**s * base_error`` per cell of a tile off edges, and full depth to
leave ``mean(model_error) * (r + ... + r**K)`` per cell of the domain. The
*predicted gain* of a stage is the first over the second: a share of the error that full depth
leaves. It is dimensionless, and does not depend on the field's variance or units, so one
tolerance means the same on terrain, temperature, winds and sea-surface temperature; and it
grows with the tile's own missing detail, so rough tiles go deep wherever they are.

Detail at an *edge* does not lose the model's skill from stage to stage: a coastline beside
missing values, or the margin of a region held at a physical bound (land fraction 0 or 1, sea
ice, dry cells of rain), is an edge at every scale, and the model sharpens it at every stage.
So on the share of a tile's cells that lie on such edges (:func:`edge_cells`: cells beside
missing values, and every cell held at a bound, which at the coarse scale stands for the
region's margin) the measured skill holds at every stage (the floor still falls by the decay).
A tile mostly held at a bound (a dry area with a few showers) is so taken as mostly edge: more
depth, not less quality. On the 26 held-out real
fields, the second stage at x4 removed 0.15-0.26 of what the first removed on land fraction,
ocean temperature and COADS air temperature and humidity, against 0.03-0.11 on relief. A
fine covariate is an edge of the same kind where it has detail (:func:`covariate_detail`): a
stage guided by elevation carries the terrain's detail at every scale.

Policies (:func:`depth_by_tolerance`, :func:`depth_by_budget`): with a tolerance, a tile stops
at the first depth whose remaining stages together are predicted to remove less than
``tolerance`` of that error, so the run's mean squared error stays within about ``tolerance``
of full depth's (RMSE within half of it); under a budget, (tile, stage) steps are taken in order
of predicted gain per multiply-accumulate until the budget is spent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from climgen.errors import ConfigError
from climgen.regrid import block_mean
from climgen.tiling import TileLayout

DEFAULT_TOLERANCE = 0.015
"""Share of full depth's mean squared error that the stages a tile skips may remove, by
default. With SKILL_FLOOR and STAGE_DECAY: the lowest mean cost that kept the default model's
RMSE within 1% of full depth's on each of the 26 held-out real fields at x4 and x8
(``benchmarks/depth_policy.py``, which also fits them leaving each field out)."""
OCTAVE_RATIO_RANGE = (0.05, 1.0)
"""Clip of the octave ratio: detail never grows to finer scales, and is never taken to vanish."""
SKILL_FLOOR = 0.1
"""Least share of the missing detail the model is taken to recover: a self-test one octave up
can miss skill the model has at the target scale (monthly 2.5-degree winds at x4: no skill in
the test, 5% of the error removed at the target). Fitted with the other constants."""
STAGE_DECAY = 0.05
"""How the model's skill falls from one stage to the next off edges, beyond what the octave
ratio accounts for: on relief the second stage removes 0.03-0.11 of what the first removes
(on edges it keeps the skill, :func:`edge_cells`)."""
TILE_RATIO_WEIGHT = 0.5
"""Weight of a tile's own octave ratio against the field's (geometric). When it was chosen
(an earlier default model, before the edge rule), against the field's ratio alone it cut the
held-out mean cost from 0.62 to 0.56 of uniform at x4 and from 0.20 to 0.13 at x8, every field
still within 1% of full depth's RMSE (``benchmarks/depth_policy.py``)."""
COVARIATE_DETAIL = 0.05
"""Least spread of a fine covariate inside a coarse cell, as a share of its spread over the
domain, for the cell to count as an edge (:func:`covariate_detail`). On the covariate
benchmark's lapse-rate temperature (``benchmarks/covariate_value.py``, terrain scales 0.75-6
degrees, x4 and x8) the default depth then stays at uniform depth's RMSE; without the rule it
was 1.1-5.0% worse, and at 0.2 up to 0.6% worse."""
TEST_FIELDS = 4  # fields (time steps) of a variable self-tested, evenly spread
MIN_CELLS = 4  # the once-coarsened grid needs this many cells a side for a test


@dataclass(frozen=True)
class GainPrediction:
    """Predicted gain per stage and tile, and the self-test figures behind it.

    ``stage_gain`` is (full_depth, rows, cols): the share of full depth's predicted mean squared
    error that stage s + 1 removes in each tile, per cell. ``constant`` marks tiles with nothing
    to refine (depth 0 whatever the policy).
    """

    stage_gain: np.ndarray
    constant: np.ndarray
    octave_ratio: float = 0.0
    skill: float = 0.0  # share of the detail bicubic misses one octave up that the model recovers
    fields: int = 0
    full_depth_error: float = 0.0  # predicted mean squared error left at full depth (field units squared)
    untested: np.ndarray | None = None
    """Tiles the self-test could not see (a domain or an edge strip too small to average by 2):
    nothing predicts their gain, so every policy gives them full depth and the map NaN."""
    edge_share: float = 0.0  # share of the tested cells on an edge (:func:`edge_cells`)

    def unknown(self) -> np.ndarray:
        """Tiles with detail whose gain was not predicted (:attr:`untested`, less constant ones)."""
        if self.untested is None:
            return np.zeros(self.constant.shape, dtype=bool)
        return self.untested & ~self.constant

    @property
    def full_depth(self) -> int:
        return self.stage_gain.shape[0]

    def remaining(self) -> np.ndarray:
        """(full_depth + 1, rows, cols): the predicted gain of the stages past each depth."""
        after = np.cumsum(self.stage_gain[::-1], axis=0)[::-1]
        return np.concatenate([after, np.zeros((1, *self.stage_gain.shape[1:]))])

    @property
    def total(self) -> np.ndarray:
        """The predicted gain of all stages together per tile (the ``predicted_gain`` map; NaN
        where it was not predicted)."""
        return np.where(self.unknown(), np.nan, np.where(self.constant, 0.0, self.stage_gain.sum(axis=0)))

    def as_dict(self) -> dict:
        """Figures for the provenance."""
        return {
            "octave_ratio": round(self.octave_ratio, 4),
            "skill": round(self.skill, 4),
            "edge_share": round(self.edge_share, 4),
            "fields_tested": self.fields,
        }


def tile_means(values: np.ndarray, layout: TileLayout) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the finite cells of a coarse-grid map (cells past its extent count as
    missing) in each tile's core."""
    full = np.full(layout.shape, np.nan)
    full[: values.shape[0], : values.shape[1]] = values[: layout.shape[0], : layout.shape[1]]
    sums, counts = np.zeros(layout.grid_shape), np.zeros(layout.grid_shape)
    for tile in layout:
        part = full[tile.core]
        valid = np.isfinite(part)
        sums[tile.row, tile.col] = part[valid].sum()
        counts[tile.row, tile.col] = valid.sum()
    return sums, counts


@dataclass
class _Sums:
    """Self-test sums over the tested fields: per tile (base and model squared error, cells)
    and over the domain (bicubic's squared error one and two octaves up, and their cells)."""

    base: np.ndarray
    model: np.ndarray
    cells: np.ndarray
    octave: np.ndarray  # (error one octave up, cells, error two octaves up, cells)
    fields: int = 0
    upper: np.ndarray | None = None  # per tile: bicubic's squared error two octaves up, summed
    upper_cells: np.ndarray | None = None
    edge: np.ndarray | None = None  # per tile: cells on an edge (:func:`edge_cells`), summed
    edge_cells: np.ndarray | None = None  # per tile: cells with data, summed
    edge_domain: np.ndarray | None = None  # over the domain less wrapped columns: (edge cells, cells)

    def edge_share(self) -> np.ndarray:
        """Per tile: the share of its cells with data that lie on an edge (0 where unknown)."""
        if self.edge is None or self.edge_cells is None:
            return np.zeros(self.base.shape)
        return np.where(self.edge_cells > 0, self.edge / np.maximum(self.edge_cells, 1), 0.0)


def edge_cells(field: np.ndarray, bounds: tuple[float | None, float | None] | None = None) -> np.ndarray:
    """Cells of a coarse 2-D field that lie on an edge, whose detail keeps its sharpness at every
    scale: within one cell of a missing value (a coastline of a masked field), or at a physical
    bound of ``bounds`` = (lower, upper) (land fraction 0 or 1, ice-free or dry cells). Missing
    cells are NaN in the result, so that tile means count only cells with data."""
    from scipy.ndimage import maximum_filter

    field = np.asarray(field, dtype=np.float64)
    missing = ~np.isfinite(field)
    edge = maximum_filter(missing.astype(np.uint8), size=3, mode="nearest") > 0
    finite = field[~missing]
    spread = float(np.std(finite)) if finite.size else 0.0
    for bound in bounds or (None, None):
        if bound is not None:
            with np.errstate(invalid="ignore"):
                edge |= np.abs(field - bound) <= 1e-6 * max(spread, abs(bound), 1e-300)
    return np.where(missing, np.nan, edge.astype(np.float64))


def covariate_detail(covariates: np.ndarray | None, factor: int) -> np.ndarray | None:
    """Coarse cells inside which a fine covariate (K, Y * factor, X * factor) has detail: its
    spread within the cell is at least :data:`COVARIATE_DETAIL` of its spread over the domain
    (1.0 there, else 0.0; None without covariates). A stage guided by the covariate can carry
    that detail at every scale, so these cells keep the skill like edges."""
    if covariates is None:
        return None
    covariates = np.asarray(covariates, dtype=np.float64)
    count, ny, nx = covariates.shape
    ny, nx = ny // factor, nx // factor
    blocks = covariates[:, : ny * factor, : nx * factor].reshape(count, ny, factor, nx, factor)
    detail = np.zeros((ny, nx), dtype=bool)
    for covariate, block in zip(covariates, blocks, strict=True):
        valid = covariate[np.isfinite(covariate)]
        domain = float(valid.std()) if valid.size else 0.0
        if domain <= 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # cells with no valid value: NaN, no detail
            within = np.nanstd(block, axis=(1, 3))
        detail |= np.nan_to_num(within, nan=0.0) >= COVARIATE_DETAIL * domain
    return detail.astype(np.float64)


def self_test_sums(
    refine: Callable[[np.ndarray, int], np.ndarray],
    fields: list[np.ndarray],
    layout: TileLayout,
    bounds: tuple[float | None, float | None] | None = None,
    guided: np.ndarray | None = None,
    wrap_cells: int = 0,
) -> _Sums:
    """Squared errors of the self-test on coarse 2-D ``fields``: ``refine(coarser, depth)``
    refines an (N, y, x) field averaged by 2 back to twice its resolution at ``depth`` 0 or 1
    (the run's tiling, noise and bounds); and each tile's cells on an edge (:func:`edge_cells`,
    with the variable's physical ``bounds``, and the coarse cells of ``guided`` > 0 where a fine
    covariate has detail, :func:`covariate_detail`). ``wrap_cells`` columns at each side repeat
    the other side's (a global grid): the domain's edge share leaves them out."""
    shape = layout.grid_shape
    sums = _Sums(np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(4), 0, np.zeros(shape), np.zeros(shape))
    sums.edge, sums.edge_cells, sums.edge_domain = np.zeros(shape), np.zeros(shape), np.zeros(2)
    for field in fields:
        field = np.asarray(field, dtype=np.float64)
        coarser = block_mean(field)
        if min(coarser.shape) < MIN_CELLS or not np.isfinite(coarser).any():
            continue
        edges = edge_cells(field, bounds)
        if guided is not None:  # where a fine covariate has detail, it brings it to every stage
            rows, cols = min(edges.shape[0], guided.shape[0]), min(edges.shape[1], guided.shape[1])
            edges[:rows, :cols] = np.where(guided[:rows, :cols] > 0, 1.0, edges[:rows, :cols])
            edges[~np.isfinite(field)] = np.nan
        total, count = tile_means(edges, layout)
        sums.edge += total
        sums.edge_cells += count
        own = edges[:, wrap_cells : edges.shape[1] - wrap_cells]
        sums.edge_domain += [np.nansum(own), np.isfinite(own).sum()]
        truth = field[: 2 * coarser.shape[0], : 2 * coarser.shape[1]]
        base, model = (refine(coarser[None], depth)[0] for depth in (0, 1))
        for target, refined in ((sums.base, base), (sums.model, model)):
            total, count = tile_means((refined - truth) ** 2, layout)
            target += total
        sums.cells += count
        base_error = (base - truth) ** 2
        sums.octave[:2] += [np.nansum(base_error), np.isfinite(base_error).sum()]
        coarsest = block_mean(coarser)
        if min(coarsest.shape) >= 2 and np.isfinite(coarsest).any():
            upper = coarser[: 2 * coarsest.shape[0], : 2 * coarsest.shape[1]]
            upper_error = (refine(coarsest[None], 0)[0] - upper) ** 2
            sums.octave[2:] += [np.nansum(upper_error), np.isfinite(upper_error).sum()]
            # per tile of the run's layout: each cell of the once-coarsened grid covers 2 x 2
            total, count = tile_means(np.kron(upper_error, np.ones((2, 2))), layout)
            sums.upper += total
            sums.upper_cells += count
        sums.fields += 1
    return sums


def predict(
    sums: _Sums,
    full_depth: int,
    constant: np.ndarray,
    skill_floor: float = SKILL_FLOOR,
    stage_decay: float = STAGE_DECAY,
) -> GainPrediction:
    """The :class:`GainPrediction` from a variable's self-test sums (see the module text;
    ``skill_floor`` and ``stage_decay`` are :data:`SKILL_FLOOR` and :data:`STAGE_DECAY`)."""
    tested = sums.cells > 0
    empty = GainPrediction(np.zeros((full_depth, *constant.shape)), constant, fields=sums.fields, untested=~tested)
    if not tested.any():
        return empty
    base = np.where(tested, sums.base / np.maximum(sums.cells, 1), 0.0)
    mean_base_error = float(sums.base[tested].sum() / sums.cells[tested].sum())
    mean_model_error = float(sums.model[tested].sum() / sums.cells[tested].sum())
    one_up, cells_one, two_up, cells_two = sums.octave
    if cells_two > 0 and two_up > 0:
        ratio = float(np.clip((one_up / cells_one) / (two_up / cells_two), *OCTAVE_RATIO_RANGE))
    else:
        ratio = 0.5  # too small to see two octaves: the slope of a rough field
    if mean_base_error <= 0:
        return GainPrediction(empty.stage_gain, constant, ratio, 0.0, sums.fields, untested=~tested)
    skill = 1 - mean_model_error / mean_base_error
    # the share of each tile's missing detail the model recovers at stage s + 1: the field's
    # skill one octave up (at least SKILL_FLOOR), falling by STAGE_DECAY a stage; on a tile's
    # edge cells the measured skill holds at every stage (the floor still falls)
    decays = stage_decay ** np.arange(full_depth)
    plain = max(skill, skill_floor) * decays
    edged = np.maximum(skill, skill_floor * decays)
    edge = sums.edge_share()[None]
    recovered = (1 - edge) * plain[:, None, None] + edge * edged[:, None, None]
    # how fast each tile's detail fades: its own octave ratio, geometrically halfway to the
    # field's (one tile's two octaves are few cells); steps and coastlines fade slowly
    tile_ratio = np.full(constant.shape, ratio)
    if sums.upper is not None:
        upper = np.where(sums.upper_cells > 0, sums.upper / np.maximum(sums.upper_cells, 1), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            own = np.where((upper > 0) & tested, base / np.where(upper > 0, upper, 1.0), ratio)
        tile_ratio = np.clip(own, *OCTAVE_RATIO_RANGE) ** TILE_RATIO_WEIGHT * ratio ** (1 - TILE_RATIO_WEIGHT)
    octaves = tile_ratio[None] ** np.arange(1, full_depth + 1)[:, None, None]  # each stage's missing detail
    full_depth_error = max(mean_model_error, 1e-12 * mean_base_error) * (ratio ** np.arange(1, full_depth + 1)).sum()
    stage_gain = recovered * octaves * base[None] / full_depth_error
    stage_gain = np.where(constant | ~tested, 0.0, stage_gain)
    known = sums.edge_domain is not None and sums.edge_domain[1] > 0
    edges = float(sums.edge_domain[0] / sums.edge_domain[1]) if known else 0.0
    return GainPrediction(stage_gain, constant, ratio, float(skill), sums.fields, full_depth_error, ~tested, edges)


def combine(predictions: list[GainPrediction]) -> GainPrediction:
    """Several variables' predictions: a tile gains what its neediest variable gains."""
    if len(predictions) == 1:
        return predictions[0]
    stage_gain = np.max([p.stage_gain for p in predictions], axis=0)
    constant = np.all([p.constant for p in predictions], axis=0)
    untested = np.any([p.unknown() for p in predictions], axis=0)  # one variable's unknown gain is the tile's
    first = predictions[0]
    return GainPrediction(
        stage_gain,
        constant,
        first.octave_ratio,
        first.skill,
        sum(p.fields for p in predictions),
        untested=untested,
        edge_share=max(p.edge_share for p in predictions),
    )


def check_tolerance(tolerance: float) -> float:
    """A tolerance in (0, 1), as a float."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.number)) or not 0 < tolerance < 1:
        raise ConfigError(f"tolerance must be a share in (0, 1), e.g. {DEFAULT_TOLERANCE}, got {tolerance!r}")
    return float(tolerance)


def tolerance_for_quality(quality: float) -> float:
    """The tolerance that keeps RMSE within ``quality`` of full depth's (RMSE over full
    depth's at most 1 / quality): the mean squared error may grow by 1 / quality**2 - 1."""
    return 1 / quality**2 - 1


def depth_by_tolerance(prediction: GainPrediction, tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """Per tile, the first depth past which the remaining stages are predicted to remove less
    than ``tolerance`` of full depth's error (constant tiles get 0)."""
    tolerance = check_tolerance(tolerance)
    remaining = prediction.remaining()
    depth = (remaining[:-1] >= tolerance).sum(axis=0)
    # remaining gain only falls with depth, so the count is the first depth that suffices
    depth = np.where(prediction.unknown(), prediction.full_depth, depth)  # not predicted: every stage
    return np.where(prediction.constant, 0, depth).astype(np.int8)


def depth_by_budget(prediction: GainPrediction, budget: float, cost: Callable[[np.ndarray], float]) -> np.ndarray:
    """The depth map that takes (tile, stage) steps by predicted gain per unit of work, best
    first, while ``cost(depth)`` stays within ``budget`` of full depth's. Steps are taken in one
    fixed order, so a larger budget only ever adds stages."""
    if not 0 < budget <= 1:
        raise ConfigError(f"budget must be in (0, 1], got {budget}")
    full_depth, rows, cols = prediction.stage_gain.shape
    # per step: gain per cell over the stage's work per cell (stage s + 1 works on 4**s cells
    # per coarse cell); a tile's later stage never ranks above its earlier one
    rates = np.stack([prediction.stage_gain[s] / 4**s for s in range(full_depth)])
    unknown = prediction.unknown()
    known = ~unknown & ~prediction.constant
    if unknown.any():  # not predicted: ranked as a typical tile of the field (first, where none was predicted)
        typical = [float(np.median(rates[s][known])) if known.any() else np.inf for s in range(full_depth)]
        rates = np.where(unknown[None], np.array(typical)[:, None, None], rates)
    rates = np.minimum.accumulate(rates, axis=0)
    live = ~prediction.constant
    steps = [(rates[s, r, c], -s, r, c) for s in range(full_depth) for r in range(rows) for c in range(cols) if live[r, c]]
    steps.sort(key=lambda step: (-step[0], -step[1], step[2], step[3]))
    allowed = budget * cost(np.where(live, full_depth, 0))

    def depth_after(count: int) -> np.ndarray:
        depth = np.zeros((rows, cols), dtype=np.int8)
        for _, minus_stage, r, c in steps[:count]:
            depth[r, c] = max(depth[r, c], 1 - minus_stage)
        return depth

    low, high = 0, len(steps)  # bisection: the most steps whose cost is within the budget
    while low < high:
        middle = (low + high + 1) // 2
        if cost(depth_after(middle)) <= allowed * (1 + 1e-12):
            low = middle
        else:
            high = middle - 1
    return depth_after(low)


def self_test_refine(refiner, covariates: np.ndarray | None, bounds, seed_key: tuple) -> Callable[[np.ndarray, int], np.ndarray]:
    """The ``refine(coarser, depth)`` of :func:`self_test_sums` for a run's
    :class:`~climgen.refine.TileRefiner`: x2 on the once-coarsened grid, with tiles of half the
    run's (the same ground each), its halo, model, device and share of learned detail, the run's
    fine covariates averaged onto the coarse grid, and noise keyed on ``seed_key``."""
    from climgen.refine import TileRefiner, refine_domain

    run_layout = refiner.layout
    coarse_covariates = None if covariates is None else block_mean(np.asarray(covariates, np.float64), refiner.factor)

    def refine(coarser: np.ndarray, depth: int) -> np.ndarray:
        shape = coarser.shape[-2:]
        tile = max(4, run_layout.tile // 2)
        layout = TileLayout(
            shape, tile, run_layout.halo, max(1, min(4, 2 * run_layout.merge)), run_layout.later_halo, run_layout.call_margin
        )
        test = TileRefiner(
            refiner.model,
            2,
            layout,
            device=str(refiner.device),
            precision=refiner.precision,
            residual_gain=refiner.residual_gain,
            flip=refiner.flip,
        )
        guide = None if coarse_covariates is None else coarse_covariates[:, : 2 * shape[0], : 2 * shape[1]]
        keys = [(*seed_key, "gain-test", shape, index) for index in range(len(coarser))]
        depths = np.full(layout.grid_shape, depth, dtype=np.int8)
        return refine_domain(test, coarser, depths, guide, keys, bounds=bounds)

    return refine
