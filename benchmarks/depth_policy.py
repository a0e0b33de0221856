"""The predicted-gain depth policy, judged leave-one-field-out on every held-out real field.

For each real field that no shipped model trained on (:func:`climgen.training.corpus.held_out_fields`:
eight ETOPO5 tiles, the held-out halves and years of COADS, Levitus and FNOC, the east halves
of the NCL regional fields and the CMIP5 fields) and each factor, the truth is coarsened by
block means and refined:

- every tile at each depth 0..full (the rest of the factor bicubic), which gives each tile's
  realised gain per stage: the drop of its squared error, over full depth's mean squared error;
- with the depth map of the policy whose parameters (:data:`climgen.depth.gain.DEFAULT_TOLERANCE`,
  :data:`~climgen.depth.gain.SKILL_FLOOR`, :data:`~climgen.depth.gain.STAGE_DECAY`) were fitted on all the
  *other* fields: the lowest mean cost whose RMSE stays within ``--limit`` of full depth's on
  every one of them (from the per-tile errors), then run for real on the field left out;
- with the oracle map: stages taken by their realised gain per multiply-accumulate, at the
  adaptive map's cost;
- under budgets 0.1 .. 1.0 (stages by predicted gain per multiply-accumulate).

Prints the table per field, the pooled Spearman correlation between predicted and realised
per-tile stage gains, and precision and recall of "needs the next stage" against the oracle.

    python benchmarks/depth_policy.py [--shared ../shared] [--factors 4 8] [--quick] [--json out.json]
        [--figure docs/images/gain-and-depth.png]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

import climgen  # noqa: F401
from climgen.depth import gain
from climgen.evaluation import bicubic_reference
from climgen.grid import coarsen_dataset, find_spatial_axes
from climgen.pipeline import make_config, plan
from climgen.refine import refine_domain
from climgen.training.corpus import held_out_fields

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = [round(0.1 * k, 1) for k in range(1, 11)]
GRID = list(itertools.product([0.05, 0.1], [0.05, 0.1, 0.15, 0.25], [0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02]))
"""(skill floor, stage decay, tolerance) tried by the fit."""


@dataclass
class FieldRun:
    """One field at one factor: its plan, self-test sums, per-tile errors at each depth."""

    name: str
    factor: int
    job: object
    sums: object
    tile_error: np.ndarray  # (depths, rows, cols): summed squared error per tile
    cells: np.ndarray  # fine cells with data per tile (0: not scored)
    refine: object  # depth map -> fine fields, as the pipeline refines them
    truth: np.ndarray
    scored: np.ndarray  # fine cells where the truth and bicubic have data
    change: np.ndarray  # (stages, rows, cols): summed squared change each stage makes per tile
    bicubic_rmse: float = 0.0

    @property
    def live(self) -> np.ndarray:
        return (self.cells > 0) & ~self.job.scores.constant

    def rmse(self, fine: np.ndarray) -> float:
        """RMSE over the cells where the truth and bicubic interpolation both have data."""
        return float(np.sqrt(np.mean(((fine - self.truth)[self.scored]) ** 2)))

    def composite_error(self, depth: np.ndarray) -> float:
        """Mean squared error with ``depth`` per tile, from each tile's error at its depth."""
        live = self.live
        picked = np.take_along_axis(self.tile_error, depth[None].astype(int), 0)[0]
        return float(picked[live].sum() / self.cells[live].sum())

    def cost(self, depth: np.ndarray) -> float:
        """Share of uniform full depth's multiply-accumulates of a map as the run refines it
        (deepened within shared windows; :meth:`climgen.planning.Plan.work`)."""
        full = np.full(self.job.policy_layout.grid_shape, self.job.full_depth)
        return self.job.work(depth, deepen=False) / self.job.work(full, deepen=False)

    def realised_gain(self) -> np.ndarray:
        """(stages, rows, cols): each stage's drop of the tile's squared error per cell over full
        depth's mean squared error."""
        full = self.composite_error(np.full(self.cells.shape, self.job.full_depth))
        drops = self.tile_error[:-1] - self.tile_error[1:]
        return drops / np.maximum(self.cells, 1) / full

    def stage_change(self) -> np.ndarray:
        """(stages, rows, cols): the mean squared change each stage makes to a tile, over the
        self-test's predicted full-depth error: what a probe that runs the stage (an early
        exit's regressor) sees, without the truth."""
        full = self.prediction(gain.SKILL_FLOOR, gain.STAGE_DECAY).full_depth_error
        return self.change / np.maximum(self.cells, 1) / max(full, 1e-300)

    def prediction(self, floor: float, decay: float) -> gain.GainPrediction:
        return gain.predict(self.sums, self.job.full_depth, self.job.scores.constant, floor, decay)

    def policy_depth(self, floor: float, decay: float, tolerance: float) -> np.ndarray:
        depth = gain.depth_by_tolerance(self.prediction(floor, decay), tolerance)
        return self.job.deepened(depth)


def prepare(truth_ds: xr.Dataset, variable: str, factor: int, name: str) -> FieldRun:
    axes = find_spatial_axes(truth_ds)
    ny, nx = (truth_ds.sizes[axes.y] // factor * factor, truth_ds.sizes[axes.x] // factor * factor)
    truth_ds = truth_ds.isel({axes.y: slice(0, ny), axes.x: slice(0, nx)})
    coarse_ds = coarsen_dataset(truth_ds[[variable]].assign_coords(truth_ds.coords), factor)
    truth = truth_ds[variable].transpose(..., axes.y, axes.x).values.reshape(-1, ny, nx)
    job = plan(coarse_ds, make_config(factor=factor, variables=[variable]))
    source = job.source[variable].transpose(..., axes.y, axes.x).values.astype(np.float64)
    source = source.reshape(-1, *source.shape[-2:])
    refiner = job.refiner("cpu").with_gain(job.residual_gain(variable))
    limits = job.prepared.limits[variable]
    keys = job.seed_keys(variable, range(len(source)), 0)
    cut = job.wrap_cells * factor

    def refine(depth: np.ndarray) -> np.ndarray:
        fine = refine_domain(refiner, source, depth, job.prepared.covariates, keys, bounds=limits)
        return fine[..., cut : fine.shape[-1] - cut]

    test = gain.self_test_refine(refiner, job.prepared.covariates, limits, (0, variable))
    sums = gain.self_test_sums(test, [field for field in source], job.prepared.layout, limits)
    layout, offset = job.prepared.layout, job.wrap_cells
    cells = np.zeros(layout.grid_shape)

    def tile_sums(squared: np.ndarray, count: bool) -> np.ndarray:
        """Per tile: the sum of a fine map's finite cells in the tile's core (their number into
        ``cells`` if ``count``)."""
        per_tile = np.zeros(layout.grid_shape)
        for tile in layout:
            columns = slice(tile.core[1].start - offset, tile.core[1].stop - offset)
            if columns.start < 0 or columns.stop > nx // factor:
                continue  # columns a global grid wraps beyond its edges
            part = squared[
                tile.core[0].start * factor : tile.core[0].stop * factor, columns.start * factor : columns.stop * factor
            ]
            valid = np.isfinite(part)
            per_tile[tile.row, tile.col] = part[valid].sum()
            if count:
                cells[tile.row, tile.col] = valid.sum()
        return per_tile

    errors, changes, previous = [], [], None
    for depth in range(job.full_depth + 1):
        fine = refine(np.where(job.scores.constant, 0, depth).astype(np.int8))
        errors.append(tile_sums(np.nanmean((fine - truth) ** 2, axis=0), count=True))
        if previous is not None:  # what this stage changed, which needs no truth
            changes.append(tile_sums(np.nanmean((fine - previous) ** 2, axis=0), count=False))
        previous = fine
    bicubic = bicubic_reference(truth, factor)  # the baseline `climgen evaluate` scores against
    scored = np.isfinite(truth) & np.isfinite(bicubic)
    run = FieldRun(name, factor, job, sums, np.stack(errors), cells, refine, truth, scored, np.stack(changes))
    run.bicubic_rmse = run.rmse(bicubic)
    return run


def outcomes(run: FieldRun) -> dict:
    """For each parameter set of GRID: the composite RMSE excess over full depth and the cost."""
    full = run.composite_error(np.full(run.cells.shape, run.job.full_depth))
    table = {}
    for parameters in GRID:
        depth = run.policy_depth(*parameters)
        excess = np.sqrt(run.composite_error(depth) / full) - 1 if full > 0 else 0.0
        table[parameters] = (float(excess), run.cost(depth))
    return table


def fit(tables: list[dict], limit: float) -> tuple[float, float, float]:
    """The parameters of lowest mean cost whose composite RMSE stays within ``limit`` of full
    depth's on every run (of least worst excess if none does)."""
    best, fallback = None, None
    for parameters in GRID:
        worst = max(table[parameters][0] for table in tables)
        key = (float(np.mean([table[parameters][1] for table in tables])), parameters)
        if worst <= limit and (best is None or key < best):
            best = key
        if fallback is None or worst < fallback[0]:
            fallback = (worst, parameters)
    return best[1] if best else fallback[1]


def oracle_depth(run: FieldRun, cost: float) -> np.ndarray:
    """Stages by realised gain per unit of work, best first, up to ``cost`` of full depth's."""
    realised = run.realised_gain()
    prediction = gain.GainPrediction(np.where(run.live, realised, 0.0), ~run.live)
    return gain.depth_by_budget(prediction, min(max(cost, 1e-6), 1.0), run.job.work)


def oracle_least_cost(run: FieldRun, limit: float = 0.01) -> float:
    """The least cost (in steps of 0.05 of full depth's) at which the oracle's RMSE stays within
    ``limit`` of full depth's: what any per-tile policy on this model and tiling needs at least."""
    full = run.composite_error(np.full(run.cells.shape, run.job.full_depth))
    for budget in np.arange(0.05, 1.0001, 0.05):
        depth = oracle_depth(run, float(budget))
        if full <= 0 or np.sqrt(run.composite_error(depth) / full) - 1 <= limit:
            return run.cost(depth)
    return 1.0


def field_row(run: FieldRun, parameters: tuple[float, float, float]) -> dict:
    """The held-out field under the parameters fitted without it."""
    depth = run.policy_depth(*parameters)
    uniform = run.rmse(run.refine(np.where(run.job.scores.constant, 0, run.job.full_depth).astype(np.int8)))
    adaptive = run.rmse(run.refine(depth))
    cost = run.cost(depth)
    oracle = oracle_depth(run, cost)
    full = run.composite_error(np.full(depth.shape, run.job.full_depth))
    budgets = {}
    for budget in BUDGETS:
        chosen = gain.depth_by_budget(run.prediction(*parameters[:2]), budget, run.job.work)
        chosen = run.job.deepened(chosen)
        budgets[budget] = run.rmse(run.refine(chosen)) / uniform - 1
    live = run.live
    return {
        "field": run.name,
        "factor": run.factor,
        "parameters": parameters,
        "uniform_over_bicubic": uniform / run.bicubic_rmse,
        "adaptive_vs_uniform": adaptive / uniform - 1,
        "adaptive_cost": cost,
        "oracle_vs_uniform": float(np.sqrt(run.composite_error(oracle) / full) - 1) if full > 0 else 0.0,
        "oracle_least_cost": oracle_least_cost(run),
        "budgets": budgets,
        "predicted": run.prediction(*parameters[:2]).stage_gain[:, live].tolist(),
        "realised": run.realised_gain()[:, live].tolist(),
        "probe": run.stage_change()[:, live].tolist(),
        "adaptive_depth": depth[live].tolist(),
        "oracle_depth": oracle[live].tolist(),
    }


def draw_figure(run: FieldRun, parameters: tuple[float, float, float], path: Path) -> None:
    """Predicted gain, the policy's depth and the oracle's depth at the same cost, side by side,
    for one held-out field."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = run.job.prepared.layout
    depth = run.policy_depth(*parameters)
    oracle = oracle_depth(run, run.cost(depth))
    gain_map = np.where(run.live, run.prediction(*parameters[:2]).total, np.nan)
    realised = np.where(run.live, run.realised_gain().sum(axis=0), np.nan)
    panels = [
        ("predicted gain (share of full depth's error)", gain_map, "viridis"),
        ("realised gain (from the truth)", realised, "viridis"),
        (f"chosen depth ({run.cost(depth):.2f} of uniform's MACs)", depth, "magma"),
        ("oracle depth at the same MACs", oracle, "magma"),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(17, 4.2), constrained_layout=True)
    vmax = float(np.nanpercentile(np.concatenate([gain_map.ravel(), realised.ravel()]), 98))
    for axis, (title, values, colours) in zip(axes, panels, strict=True):
        is_depth = "depth" in title
        image = axis.imshow(
            layout.tile_map(np.asarray(values, dtype=float)),
            origin="lower",
            cmap=colours,
            vmin=0,
            vmax=run.job.full_depth if is_depth else vmax,
            interpolation="nearest",
        )
        axis.set_title(title, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        figure.colorbar(image, ax=axis, shrink=0.8, ticks=range(run.job.full_depth + 1) if is_depth else None)
    figure.suptitle(f"{run.name} at x{run.factor}, held out (policy fitted on the other fields)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def print_quality_table(rows: list[dict]) -> None:
    """The README's table, a row per field: RMSE over bicubic's at uniform and default depth and
    the default's share of uniform's multiply-accumulates, per factor; the ETOPO5 tiles as their
    median."""
    groups: dict[str, dict[int, list[dict]]] = {}
    for row in rows:
        name = "ETOPO5 relief, held-out tiles (median)" if row["field"].startswith("ETOPO5") else row["field"]
        groups.setdefault(name, {}).setdefault(row["factor"], []).append(row)
    factors = sorted({row["factor"] for row in rows})
    header = " | ".join(f"x{f} uniform / bicubic | x{f} default / bicubic | x{f} default MACs / uniform" for f in factors)
    print(f"\n| held-out field | {header} |")
    print("|---|" + "---|" * 3 * len(factors))
    for name, by_factor in sorted(groups.items(), key=lambda item: (not item[0].startswith("ETOPO5"), item[0])):
        cells = []
        for factor in factors:
            chosen = by_factor.get(factor)
            if not chosen:
                cells += ["", "", ""]
                continue
            uniform = np.median([row["uniform_over_bicubic"] for row in chosen])
            default = np.median([row["uniform_over_bicubic"] * (1 + row["adaptive_vs_uniform"]) for row in chosen])
            cost = np.median([row["adaptive_cost"] for row in chosen])
            cells += [f"{uniform:.3f}", f"{default:.3f}", f"{cost:.2f}"]
        print(f"| {name} | {' | '.join(cells)} |")


def print_tables(rows: list[dict]) -> None:
    print(
        "\n| field | factor | uniform / bicubic | adaptive vs uniform | adaptive MACs / uniform | oracle at the same MACs "
        "| oracle's least MACs within 1% |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['field']} | x{row['factor']} | {row['uniform_over_bicubic']:.3f} | {100 * row['adaptive_vs_uniform']:+.2f}% | "
            f"{row['adaptive_cost']:.2f} | {100 * row['oracle_vs_uniform']:+.2f}% | {row['oracle_least_cost']:.2f} |"
        )
    print(
        "\n| factor | fields | worst adaptive vs uniform | fields over +1% | mean MACs / uniform | median oracle vs uniform "
        "| oracle's least mean MACs within 1% |"
    )
    print("|---|---|---|---|---|---|---|")
    for factor in sorted({row["factor"] for row in rows}):
        chosen = [row for row in rows if row["factor"] == factor]
        excess = np.array([row["adaptive_vs_uniform"] for row in chosen])
        print(
            f"| x{factor} | {len(chosen)} | {100 * excess.max():+.2f}% | {int((excess > 0.01).sum())} | "
            f"{np.mean([row['adaptive_cost'] for row in chosen]):.2f} | {100 * np.median([row['oracle_vs_uniform'] for row in chosen]):+.2f}% | "
            f"{np.mean([row['oracle_least_cost'] for row in chosen]):.2f} |"
        )
    print("\n| factor | budget | worst RMSE vs uniform | median | fields where RMSE rose from the budget below | largest rise |")
    print("|---|---|---|---|---|---|")
    for factor in sorted({row["factor"] for row in rows}):
        chosen = [row for row in rows if row["factor"] == factor]
        for index, budget in enumerate(BUDGETS):
            values = np.array([row["budgets"][budget] for row in chosen])
            steps = [0.0] if index == 0 else [row["budgets"][budget] - row["budgets"][BUDGETS[index - 1]] for row in chosen]
            rises = sum(step > 1e-9 for step in steps)
            print(
                f"| x{factor} | {budget:.1f} | {100 * values.max():+.2f}% | {100 * np.median(values):+.2f}% | {rises} | "
                f"{100 * max(steps):+.2f}% |"
            )
    predicted = np.concatenate([np.ravel(row["predicted"]) for row in rows])
    realised = np.concatenate([np.ravel(row["realised"]) for row in rows])
    probe = np.concatenate([np.ravel(row["probe"]) for row in rows])
    print(
        f"\nSpearman, predicted vs realised gain per tile and stage, pooled over {len(rows)} held-out runs: "
        f"{spearmanr(predicted, realised).correlation:.3f} ({predicted.size} tile stages); "
        f"the change each stage makes, run and measured (no truth): {spearmanr(probe, realised).correlation:.3f}"
    )
    print_ranking_ceiling(rows)
    for factor in sorted({row["factor"] for row in rows}):
        chosen = [row for row in rows if row["factor"] == factor]
        stages = [
            (
                np.concatenate([np.asarray(row["predicted"])[k] for row in chosen]),
                np.concatenate([np.asarray(row["realised"])[k] for row in chosen]),
            )
            for k in range(len(chosen[0]["realised"]))
        ]
        probes = [np.concatenate([np.asarray(row["probe"])[k] for row in chosen]) for k in range(len(stages))]
        per_stage = ", ".join(
            f"{k + 1}: {spearmanr(*pair).correlation:.2f} (probe {spearmanr(probes[k], pair[1]).correlation:.2f})"
            for k, pair in enumerate(stages)
        )
        # how well the truth's own gain of one stage ranks the next's: what a predictor that has
        # run a stage (an early exit's regressor) could hope for
        following = ", ".join(
            f"{k + 1} -> {k + 2}: {spearmanr(stages[k][1], stages[k + 1][1]).correlation:.2f}" for k in range(len(stages) - 1)
        )
        print(f"Spearman by stage at x{factor}: {per_stage}; the realised gain of a stage against the next's: {following}")
    for stage in (1, 2, 3):
        pairs = [
            (np.array(row["adaptive_depth"]) >= stage, np.array(row["oracle_depth"]) >= stage)
            for row in rows
            if row["factor"] >= 2**stage
        ]
        if not pairs:
            continue
        chosen, needed = (np.concatenate(part) for part in zip(*pairs, strict=True))
        precision = (chosen & needed).sum() / max(chosen.sum(), 1)
        recall = (chosen & needed).sum() / max(needed.sum(), 1)
        print(
            f"stage {stage}: precision {precision:.2f}, recall {recall:.2f} of 'needs this stage' against the oracle at the same MACs"
        )


def print_ranking_ceiling(rows: list[dict]) -> None:
    """How far a better level per field could lift the pooled Spearman correlation, and how
    well tiles are ranked within a field: with each run's and stage's mean predicted gain set to
    the truth's, only the ranking within it is left to the prediction."""
    levelled, realised, within = [], [], []
    for row in rows:
        for predicted, truth in zip(np.asarray(row["predicted"]), np.asarray(row["realised"]), strict=True):
            levelled.append(predicted * truth.mean() / max(predicted.mean(), 1e-300))
            realised.append(truth)
            if truth.size > 4 and np.ptp(predicted) > 0:
                within.append(spearmanr(predicted, truth).correlation)
    realised = np.concatenate(realised)
    print(
        f"Spearman with each run's and stage's mean predicted gain set to the realised mean: "
        f"{spearmanr(np.concatenate(levelled), realised).correlation:.3f}; within a run and stage "
        f"(median over {len(within)} with more than 4 tiles): {np.median(within):.2f}; "
        f"tile stages whose realised gain is negative (the stage made the tile worse): {np.mean(realised < 0):.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--limit", type=float, default=0.01, help="RMSE excess over full depth the fit allows (0.01)")
    parser.add_argument(
        "--quick", action="store_true", help="only two of the eight held-out ETOPO5 tiles (every other field still)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path, help="draw gain, depth and oracle depth of one held-out field here")
    parser.add_argument("--figure-field", default="ETOPO5 relief lat+30_lon270", help="the field drawn (x4)")
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    runs = []
    for field in held_out_fields(arguments.shared / "data", 2 if arguments.quick else None):
        for factor in arguments.factors:
            runs.append(prepare(field.truth, field.variable, factor, field.name))
    names = sorted({run.name for run in runs})
    print(f"{len(names)} fields, {len(runs)} runs prepared in {time.perf_counter() - started:.0f} s", flush=True)
    tables = [outcomes(run) for run in runs]
    everything = fit(tables, arguments.limit)
    print(f"fitted on every field (the shipped defaults should match): skill floor, stage decay, tolerance = {everything}")
    rows = []
    for name in names:
        parameters = fit([table for run, table in zip(runs, tables, strict=True) if run.name != name], arguments.limit)
        rows += [field_row(run, parameters) for run in runs if run.name == name]
        drawn = [run for run in runs if run.name == name == arguments.figure_field and run.factor == 4]
        if arguments.figure and drawn:
            draw_figure(drawn[0], parameters, arguments.figure)
    print_tables(rows)
    print_quality_table(rows)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
