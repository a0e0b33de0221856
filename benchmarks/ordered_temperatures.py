"""Daily minimum <= mean <= maximum temperature after refinement, with and without ordering.

Real fields give the truth: on two regional models' held-out eastern halves (rlon >= 18), the
mean temperature follows the real terrain by a lapse rate (300 K - 6.5 K/km) and the diurnal
range follows the real land fraction (1 K over the sea, 10 K over land), so it jumps at the
coastline, where refinements of the three variables, each on its own, cross. Each is coarsened
by block mean and refined by ``climgen.pipeline.synthesize``, with the order kept (the
default: found from the names tasmin/tas/tasmax) and without (``order=[]``). Prints a markdown
table: share of fine cells out of order, the largest inversion, RMSE of each variable.

    python benchmarks/ordered_temperatures.py [--shared ../shared] [--factors 4 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.conservation import count_disordered
from climgen.grid import coarsen_dataset
from climgen.pipeline import synthesize

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = {  # label: (terrain file, variable, land fraction file, variable)
    "east Africa (regional model)": ("HSURF_regional_model_0.44deg.nc", "HSURF", "FR-LAND_regional_model_0.44deg.nc", "FR_LAND"),
    "another regional model": ("orog_mod3_rectilinear_grid_2D.nc", "orog", "sftlf_mod3_rectilinear_grid_2D.nc", "sftlf"),
}
CHAIN = ("tasmin", "tas", "tasmax")


def temperatures(shared: Path, terrain: tuple[str, str], land: tuple[str, str]) -> xr.Dataset:
    """tasmin, tas and tasmax from a real terrain and land fraction (eastern half)."""
    data = shared / "data" / "ncl"
    with xr.open_dataset(data / terrain[0]) as heights, xr.open_dataset(data / land[0]) as fractions:
        height = heights[terrain[1]].sel(rlon=slice(18, None)).load()
        fraction = fractions[land[1]].sel(rlon=slice(18, None)).load()
    fraction = fraction / 100.0 if float(fraction.max()) > 1.5 else fraction  # percent in some files
    mean = 300.0 - 0.0065 * height.clip(min=0.0)
    half_range = 0.5 * (1.0 + 9.0 * fraction.clip(0.0, 1.0))
    ds = xr.Dataset({"tasmin": mean - half_range, "tas": mean, "tasmax": mean + half_range})
    for name in CHAIN:
        ds[name].attrs = {"standard_name": "air_temperature", "units": "K"}
    return ds.drop_vars([name for name in ds.coords if name not in ds.dims], errors="ignore")


def score(refined: xr.Dataset, truth: xr.Dataset) -> dict:
    values = [refined[name].values for name in CHAIN]
    inversion = max(float(np.nanmax(low - high)) for low, high in zip(values, values[1:], strict=False))
    return {
        "out_of_order": count_disordered(*values) / values[0].size,
        "largest_inversion": max(inversion, 0.0),
        **{f"rmse_{name}": float(np.sqrt(np.nanmean((refined[name].values - truth[name].values) ** 2))) for name in CHAIN},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    rows = []
    print(
        "| domain | factor | order kept | cells out of order | largest inversion (K) | RMSE tasmin | RMSE tas | RMSE tasmax | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, (terrain, height_name, land, land_name) in DOMAINS.items():
        truth = temperatures(arguments.shared, (terrain, height_name), (land, land_name))
        for factor in arguments.factors:
            ny, nx = (truth.sizes[dim] // factor * factor for dim in ("rlat", "rlon"))
            cropped = truth.isel(rlat=slice(0, ny), rlon=slice(0, nx))
            coarse = coarsen_dataset(cropped, factor)
            for kept in (False, True):
                started = time.perf_counter()
                refined = synthesize(coarse, factor=factor, seed=0, order=None if kept else [])
                row = {"domain": label, "factor": factor, "order_kept": kept, **score(refined, cropped)}
                row["seconds"] = time.perf_counter() - started
                rows.append(row)
                print(
                    f"| {label} | x{factor} | {'yes' if kept else 'no'} | {100 * row['out_of_order']:.2f}% | "
                    f"{row['largest_inversion']:.2f} | {row['rmse_tasmin']:.4f} | {row['rmse_tas']:.4f} | "
                    f"{row['rmse_tasmax']:.4f} | {row['seconds']:.1f} |",
                    flush=True,
                )
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
