"""What a fine covariate is worth, against truth: climgen with and without it, and the self-test's share.

Each truth field is coarsened by block mean and refined by ``climgen.pipeline.synthesize``
(uniform depth, seed 0) four ways: without the covariate, and with it keeping all of the
model's learned detail (``residual_gain=1``), the share the self-test picks (``auto``) and none
of it (``0``: the covariate then plays no part, since gain 0 skips the network). RMSEs are over
bicubic's; the last column is the share ``auto`` kept.

    python benchmarks/covariate_value.py [--shared ../shared] [--factors 4 8] [--model default|CHECKPOINT]
        [--lapse-scales 0.75 1.5 3 6]

Fields (shared/data/ncl, held out: eastern halves, rlon >= 18):

- land fraction with the same model's orography as covariate, and the reverse, for two models
  (the default model trained on the western halves of one of them, with the same pairing);
- ``tas_lapse``: a temperature made from the real GCM temperature over Africa (the demo's
  field) and the real 0.44 degree orography of the demo: the GCM field, smoothly interpolated,
  with a standard lapse rate (6.5 K/km) applied to the orography's departure from its own
  smooth version (a Gaussian of ``--lapse-scales`` degrees: the terrain scales temperature
  follows; several, so no one construction is tuned to). Not an observation: it tests what
  the demo relies on, temperature following the terrain below the coarse grid's scale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from scipy import ndimage

import climgen  # noqa: F401
from climgen.grid import coarsen_dataset, find_spatial_axes
from climgen.models.generator import bicubic_upsample
from climgen.pipeline import synthesize

ROOT = Path(__file__).resolve().parents[1]
LAPSE_RATE = 6.5e-3  # K per m
EAST = {"rlon": slice(18, None)}
PAIRS = [  # label, (file, variable) of the field, (file, variable) of the covariate
    (
        "land fraction given orography, model A",
        ("FR-LAND_regional_model_0.44deg.nc", "FR_LAND"),
        ("HSURF_regional_model_0.44deg.nc", "HSURF"),
    ),
    (
        "orography given land fraction, model A",
        ("HSURF_regional_model_0.44deg.nc", "HSURF"),
        ("FR-LAND_regional_model_0.44deg.nc", "FR_LAND"),
    ),
    (
        "land fraction given orography, model B",
        ("sftlf_mod3_rectilinear_grid_2D.nc", "sftlf"),
        ("orog_mod3_rectilinear_grid_2D.nc", "orog"),
    ),
    (
        "orography given land fraction, model B",
        ("orog_mod3_rectilinear_grid_2D.nc", "orog"),
        ("sftlf_mod3_rectilinear_grid_2D.nc", "sftlf"),
    ),
]


def lapse_rate_temperature(scale_degrees: float) -> tuple[xr.Dataset, xr.DataArray]:
    """12 months of fine temperature over Africa with terrain detail below ``scale_degrees``
    (the Gaussian's standard deviation), and its orography."""
    orography = xr.open_dataset(ROOT / "climgen" / "data" / "africa_orography_0.44deg.nc")["orog"].load()
    orography = orography.fillna(0.0)
    gcm = xr.open_dataset(ROOT / "climgen" / "data" / "africa_tas_monthly_2005.nc")["tas"].load()
    inside = {name: slice(float(gcm[name].min()), float(gcm[name].max())) for name in ("lat", "lon")}
    orography = orography.sel(inside)
    smooth_gcm = gcm.interp(lat=orography.lat, lon=orography.lon, method="cubic")
    spacing = float(abs(orography.lat[1] - orography.lat[0]))
    smooth_orography = ndimage.gaussian_filter(orography.values.astype(np.float64), scale_degrees / spacing, mode="nearest")
    detail = -LAPSE_RATE * (orography.values - smooth_orography)
    tas = (smooth_gcm + detail).astype(np.float32)
    tas.attrs = {"standard_name": "air_temperature", "units": "K", "long_name": "lapse-rate temperature (constructed)"}
    return tas.to_dataset(name="tas"), orography


def evaluate(truth_ds: xr.Dataset, variable: str, covariate: xr.DataArray, factor: int, model: str) -> dict:
    axes = find_spatial_axes(truth_ds)
    keep = {
        axes.y: slice(0, truth_ds.sizes[axes.y] // factor * factor),
        axes.x: slice(0, truth_ds.sizes[axes.x] // factor * factor),
    }
    truth_ds = truth_ds.isel(keep)
    covariate = covariate.isel(keep)
    coarse_ds = coarsen_dataset(truth_ds[[variable]].assign_coords(truth_ds.coords), factor)
    truth = truth_ds[variable].transpose(..., axes.y, axes.x).values.astype(np.float64)

    def rmse(field) -> float:
        return float(np.sqrt(np.mean((np.asarray(field, np.float64).reshape(truth.shape) - truth) ** 2)))

    coarse = coarse_ds[variable].transpose(..., axes.y, axes.x).values.astype(np.float64)
    bicubic = bicubic_upsample(torch.tensor(coarse.reshape(-1, 1, *coarse.shape[-2:])), factor).numpy()
    row = {"rmse_bicubic": rmse(bicubic)}
    options = {"factor": factor, "variables": [variable], "seed": 0, "model": model, "adaptive": False}
    runs = {
        "none": ({}, "auto"),
        "gain1": ({"cov": covariate}, 1.0),
        "auto": ({"cov": covariate}, "auto"),
        "gain0": ({"cov": covariate}, 0.0),
    }
    for key, (covariates, gain) in runs.items():
        out = synthesize(coarse_ds, covariates=covariates or None, residual_gain=gain, **options)
        row[f"rmse_{key}"] = rmse(out[variable].transpose(..., axes.y, axes.x).values)
        row[f"gain_{key}"] = json.loads(out.attrs["climgen_provenance"])["residual_gains"][variable]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--model", default="default", help="'default' or a checkpoint path")
    parser.add_argument("--lapse-scales", type=float, nargs="+", default=[0.75, 1.5, 3.0, 6.0], help="degrees")
    arguments = parser.parse_args()
    cases = []
    for label, (field_file, variable), (covariate_file, covariate_variable) in PAIRS:
        with xr.open_dataset(arguments.shared / "data" / "ncl" / field_file) as ds:
            truth = ds.sel(EAST).load()
        with xr.open_dataset(arguments.shared / "data" / "ncl" / covariate_file) as ds:
            covariate = ds[covariate_variable].sel(EAST).load()
        cases.append((label, truth, variable, covariate))
    for scale in arguments.lapse_scales:
        tas, orography = lapse_rate_temperature(scale)
        cases.append((f"temperature (lapse rate below {scale:g} deg) given orography", tas, "tas", orography))
    print(
        "| field given covariate | factor | RMSE bicubic | no covariate | covariate, gain 1 | covariate, auto | covariate, gain 0 | gain auto (without covariate) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, truth, variable, covariate in cases:
        for factor in arguments.factors:
            row = evaluate(truth, variable, covariate, factor, arguments.model)
            base = row["rmse_bicubic"]
            print(
                f"| {label} | x{factor} | {base:.4g} | {row['rmse_none'] / base:.3f} | {row['rmse_gain1'] / base:.3f} | "
                f"{row['rmse_auto'] / base:.3f} | {row['rmse_gain0'] / base:.3f} | {row['gain_auto']['gain']:g} ({row['gain_none']['gain']:g}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
