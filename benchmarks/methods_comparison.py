"""The seed paper's comparison, measured: adaptive multi-scale generator vs single-scale GAN vs
conditional VAE vs bicubic, on real fields none of them trained on.

Each truth field is coarsened by 4 (block mean) and refined by every method with the same
seed and ``--members`` ensemble members. Scores (member 0 unless said): RMSE, SSIM, MS-SSIM
(fields over 160 cells a side), Frechet distance of patch features (``climgen.metrics.
frechet_distance``), top-octave spectral error (mean |log10| power ratio), ensemble diversity
(mean pairwise RMS distance), CRPS of the ensemble, floating-point operations per output
cell (2 x counted multiply-accumulates), and output megapixels per second of one member
(including model loading: small fields understate the speed). Prints a markdown table; ``--json`` saves the rows.

    python benchmarks/methods_comparison.py [--shared ../shared] [--members 4]
        [--srgan srgan-x4|CHECKPOINT] [--cvae cvae-x4|CHECKPOINT] [--ensemble amsgm-ensemble|CHECKPOINT]

The shipped baselines come from ``climgen train recipes/train-baseline-srgan.yaml`` and
``recipes/train-baseline-cvae.yaml`` (same data, crops and steps as the default model);
``amsgm-ensemble`` is the default model after stage 2 with the ensemble loss
(``recipes/train-ensemble.yaml``).
``climgen benchmark`` runs the same comparison on your own field, with fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

import climgen  # noqa: F401
from climgen.benchmark import COLUMNS, fine_values, score
from climgen.evaluation import bicubic_reference
from climgen.grid import coarsen_dataset, find_spatial_axes
from climgen.pipeline import synthesize

ROOT = Path(__file__).resolve().parents[1]
FACTOR = 4
FIELDS = [
    ("HSURF_regional_model_0.44deg.nc", "HSURF", "terrain, east Africa", {"rlon": slice(18, None)}),
    ("FR-LAND_regional_model_0.44deg.nc", "FR_LAND", "land fraction, east Africa", {"rlon": slice(18, None)}),
    ("tas_rectilinear_grid_2D.nc", "tas", "CMIP5 temperature, 12 months", {}),
]


def truth_and_coarse(truth_ds: xr.Dataset, variable: str) -> tuple[np.ndarray, xr.Dataset]:
    """The truth cropped to whole coarse cells, as (fields, y, x) values, and its block-mean
    coarsening by FACTOR (what every method refines)."""
    axes = find_spatial_axes(truth_ds)
    truth_ds = truth_ds.isel(
        {axes.y: slice(0, truth_ds.sizes[axes.y] // FACTOR * FACTOR), axes.x: slice(0, truth_ds.sizes[axes.x] // FACTOR * FACTOR)}
    )
    coarse_ds = coarsen_dataset(truth_ds[[variable]].assign_coords(truth_ds.coords), FACTOR)
    return fine_values(truth_ds, variable), coarse_ds


def ensemble_members(coarse_ds: xr.Dataset, variable: str, model: str, member_count: int) -> np.ndarray:
    """``member_count`` members (seed 0) of ``model`` refining ``coarse_ds``: (members, fields, y, x)."""
    ensemble = synthesize(coarse_ds, factor=FACTOR, variables=[variable], seed=0, model=model, members=member_count)
    return np.stack([fine_values(ensemble.isel(realization=m), variable) for m in range(member_count)])


def compare(truth_ds: xr.Dataset, variable: str, models: dict[str, str], member_count: int) -> list[dict]:
    truth, coarse_ds = truth_and_coarse(truth_ds, variable)
    axes = find_spatial_axes(coarse_ds)
    bicubic_reference(truth[:1], FACTOR)  # warm up (imports), so the timing is the work
    started = time.perf_counter()
    bicubic = np.stack([bicubic_reference(field, FACTOR) for field in truth])
    rows = [score("bicubic", bicubic[None], truth, time.perf_counter() - started, 0.0)]
    for method, model in models.items():
        synthesize(coarse_ds.isel({axes.y: slice(0, 8), axes.x: slice(0, 8)}), factor=FACTOR, variables=[variable], model=model)
        started = time.perf_counter()
        single = synthesize(coarse_ds, factor=FACTOR, variables=[variable], seed=0, model=model)
        seconds = time.perf_counter() - started
        members = ensemble_members(coarse_ds, variable, model, member_count)
        compute = json.loads(single.attrs["climgen_provenance"])["compute"]
        rows.append(score(method, members, truth, seconds, compute["macs"]))
    return rows


def _format(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--srgan", default="srgan-x4", help="the shipped single-scale GAN, or a checkpoint")
    parser.add_argument("--cvae", default="cvae-x4", help="the shipped conditional VAE, or a checkpoint")
    parser.add_argument("--ensemble", default="amsgm-ensemble", help="the generator trained for spread, or a checkpoint")
    parser.add_argument("--only", nargs="+", help="variables to evaluate (default: all)")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    models = {"amsgm": "default", "amsgm-ensemble": arguments.ensemble, "gan": arguments.srgan, "vae": arguments.cvae}
    columns = [column for column in COLUMNS if column != "variant"]
    rows = []
    for filename, variable, label, selection in FIELDS:
        if arguments.only and variable not in arguments.only:
            continue
        with xr.open_dataset(arguments.shared / "data" / "ncl" / filename) as ds:
            truth = ds.sel(selection).load()
        field_rows = compare(truth, variable, models, arguments.members)
        print(f"\n{variable} ({label}), x{FACTOR}, {arguments.members} members\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in field_rows:
            row["field"] = variable
            print("| " + " | ".join(_format(row[column]) for column in columns) + " |", flush=True)
        rows += field_rows
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
