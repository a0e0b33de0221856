"""Ensemble quality of shipped or trained models on real fields none of them trained on.

Each truth field is coarsened by 4 (block mean) and refined with MEMBERS members (seed 0);
scores against the truth: member 0's RMSE, the ensemble mean's RMSE, the spread (members'
standard deviation), spread / skill (1 for a calibrated ensemble) and the fair CRPS. Prints
a markdown table; ``--json`` saves the rows.

    python benchmarks/ensemble_scores.py [--shared ../shared] [--members 8]
        [--models default amsgm-ensemble CHECKPOINT ...] [--json out.json]

Fields (from shared/data/ncl): the eastern halves (rlon >= 18) of the regional surface height
and land fraction, and the first 3 months of CMIP5 near-surface temperature.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import xarray as xr
from methods_comparison import ensemble_members, truth_and_coarse  # beside this script

import climgen  # noqa: F401
from climgen import metrics

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    ("HSURF_regional_model_0.44deg.nc", "HSURF", "terrain (m)", {"rlon": slice(18, None)}),
    ("FR-LAND_regional_model_0.44deg.nc", "FR_LAND", "land fraction", {"rlon": slice(18, None)}),
    ("tas_rectilinear_grid_2D.nc", "tas", "temperature (K)", {"time": slice(0, 3)}),
]


def scores(truth_ds: xr.Dataset, variable: str, model: str, member_count: int) -> dict:
    """Ensemble scores of ``model`` on one truth field (cropped to whole coarse cells)."""
    truth, coarse = truth_and_coarse(truth_ds, variable)
    members = ensemble_members(coarse, variable, model, member_count)
    spread_skill = metrics.spread_skill(members, truth)
    return {
        "model": model,
        "member_rmse": metrics.rmse(members[0], truth),
        "mean_rmse": spread_skill["rmse_of_mean"],
        "spread": spread_skill["spread"],
        "spread_skill": spread_skill["ratio"],
        "crps": metrics.crps(members, truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["default", "amsgm-ensemble"])
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    print("| field | model | member RMSE | ensemble-mean RMSE | spread | spread / skill | CRPS |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for filename, variable, label, selection in FIELDS:
        with xr.open_dataset(arguments.shared / "data" / "ncl" / filename) as ds:
            truth = ds.isel(time=selection["time"]) if "time" in selection else ds.sel(selection)
            truth = truth.load()
        for model in arguments.models:
            row = {"field": variable, **scores(truth, variable, model, arguments.members)}
            rows.append(row)
            print(
                f"| {label} | {model} | {row['member_rmse']:.4g} | {row['mean_rmse']:.4g} | {row['spread']:.3g} | "
                f"{row['spread_skill']:.3f} | {row['crps']:.4g} |",
                flush=True,
            )
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
