"""Best estimate and ensemble members of one model, on every held-out real field.

Each held-out truth (:func:`climgen.training.corpus.held_out_fields`) is coarsened by
``--factor`` (block mean) and refined twice: once for the best estimate (``members=1``, at
default depth) and once with ``--members`` members (seed 0; members are drawn at full depth,
as climgen draws them unless a budget, tolerance or quality is given). Scores against the truth: the
best estimate's RMSE (and over bicubic's) and MAE; of the members, the RMSE of their mean
(against the best estimate's), the spread over the RMSE of their mean (spread / skill: about
sqrt(m / (m + 1)), 0.94 for 8 members, when calibrated), the fair CRPS (against the best
estimate's MAE, the CRPS of a one-member ensemble) and the rank histogram of the truth among
the members, pooled by group; and how steep the members are against the truth (the 99.9th
percentile of the jumps between neighbouring cells, members' over the truth's: above 1, the
members hold steeper single-cell jumps than the real field). Prints markdown tables; ``--json`` saves the rows and
``--figure`` draws the rank histograms.

    python benchmarks/ensemble_scores.py [--shared ../shared] [--factors 4 8] [--members 8]
        [--model default|CHECKPOINT] [--quick] [--json out.json] [--figure docs/images/rank-histograms.png]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from methods_comparison import truth_and_coarse  # beside this script

import climgen  # noqa: F401
from climgen import metrics
from climgen.benchmark import fine_values
from climgen.evaluation import bicubic_reference
from climgen.pipeline import synthesize
from climgen.training.corpus import held_out_fields

ROOT = Path(__file__).resolve().parents[1]


def steepest_jumps(values: np.ndarray) -> float:
    """The 99.9th percentile of the absolute differences between neighbouring cells (both
    axes, every leading field), over the pairs where both cells have data."""
    jumps = [np.abs(np.diff(values, axis=axis)) for axis in (-1, -2)]
    return float(np.percentile(np.concatenate([part[np.isfinite(part)] for part in jumps]), 99.9))


def scores(field, factor: int, model: str, member_count: int, adaptive: bool = True) -> dict:
    """Best-estimate and ensemble scores of ``model`` on one held-out field."""
    truth, coarse = truth_and_coarse(field.truth, field.variable, factor)
    options = {"factor": factor, "variables": [field.variable], "seed": 0, "model": model, "adaptive": adaptive}
    best = fine_values(synthesize(coarse, **options), field.variable)
    ensemble = synthesize(coarse, members=member_count, **options)
    members = np.stack([fine_values(ensemble.isel(realization=m), field.variable) for m in range(member_count)])
    bicubic = np.stack([bicubic_reference(values, factor) for values in truth])
    # every score on the cells where the truth, bicubic and the model all have data
    truth = np.where(np.isfinite(bicubic) & np.isfinite(best), truth, np.nan)
    spread_skill = metrics.spread_skill(members, truth)
    best_rmse, best_mae = metrics.rmse(best, truth), metrics.mae(best, truth)
    return {
        "field": field.name,
        "group": field.group,
        "factor": factor,
        "best_rmse": best_rmse,
        "best_over_bicubic": best_rmse / metrics.rmse(bicubic, truth),
        "best_mae": best_mae,
        "mean_rmse": spread_skill["rmse_of_mean"],
        "mean_vs_best": spread_skill["rmse_of_mean"] / best_rmse - 1,
        "spread_skill": spread_skill["ratio"],
        "crps": metrics.crps(members, truth),
        "crps_over_best_mae": metrics.crps(members, truth) / best_mae,
        "rank_histogram": metrics.rank_histogram(members, truth).tolist(),
        "steepness": steepest_jumps(np.where(np.isfinite(truth), members, np.nan)) / steepest_jumps(truth),
    }


def draw_histograms(rows: list[dict], members: int, path: Path) -> None:
    """The truth's rank among the members, pooled by group (flat: calibrated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({row["group"] for row in rows})
    columns = min(4, len(groups))
    figure, axes = plt.subplots(
        -(-len(groups) // columns), columns, figsize=(3.6 * columns, 2.6 * -(-len(groups) // columns)), squeeze=False
    )
    for axis, group in zip(axes.ravel(), groups, strict=False):
        histogram = np.mean([row["rank_histogram"] for row in rows if row["group"] == group], axis=0)
        axis.bar(np.arange(members + 1), histogram, color="tab:blue")
        axis.axhline(1 / (members + 1), color="k", lw=0.8, ls="--")
        axis.set_title(group, fontsize=10)
        axis.set_xticks([0, members])
        axis.set_xticklabels(["below all", "above all"], fontsize=8)
    for axis in axes.ravel()[len(groups) :]:
        axis.set_visible(False)
    figure.suptitle(f"Rank of the held-out truth among {members} members (dashed: calibrated)", fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def print_tables(rows: list[dict]) -> None:
    print(
        "\n| held-out field | factor | best / bicubic RMSE | members' mean vs best | spread / skill | CRPS / best MAE "
        "| members' steepest jumps / truth's |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['field']} | x{row['factor']} | {row['best_over_bicubic']:.3f} | {100 * row['mean_vs_best']:+.2f}% | "
            f"{row['spread_skill']:.2f} | {row['crps_over_best_mae']:.3f} | {row['steepness']:.2f} |"
        )
    print(
        "\n| factor | fields | spread / skill (min .. max) | fields with CRPS below the best MAE | members' mean vs best (worst) "
        "| steepest jumps / truth's (median, max) |"
    )
    print("|---|---|---|---|---|---|")
    for factor in sorted({row["factor"] for row in rows}):
        chosen = [row for row in rows if row["factor"] == factor]
        ratios = [row["spread_skill"] for row in chosen]
        below = sum(row["crps_over_best_mae"] < 1 for row in chosen)
        worst = max(row["mean_vs_best"] for row in chosen)
        steep = [row["steepness"] for row in chosen]
        print(
            f"| x{factor} | {len(chosen)} | {min(ratios):.2f} .. {max(ratios):.2f} | {below} | {100 * worst:+.2f}% "
            f"| {np.median(steep):.2f}, {max(steep):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--factors", type=int, nargs="+", default=[4])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--quick", action="store_true", help="only two of the eight held-out ETOPO5 tiles (every other field still)"
    )
    parser.add_argument(
        "--uniform", action="store_true", help="the best estimate at full depth too (members are always at full depth)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    rows = [
        scores(field, factor, arguments.model, arguments.members, not arguments.uniform)
        for field in held_out_fields(arguments.shared / "data", 2 if arguments.quick else None)
        for factor in arguments.factors
    ]
    print_tables(rows)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if arguments.figure:
        draw_histograms(rows, arguments.members, arguments.figure)
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
