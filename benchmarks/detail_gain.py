"""Does the self-test see what the truth sees? RMSE against the share of learned detail kept.

For each held-out real field and factor: the default model refines the coarsened field whole
(no tiles) keeping a share ``gain`` of its learned detail (``residual_gain``), and its RMSE
against the truth is divided by the RMSE with all the detail (truth row); the self-test of
:mod:`climgen.depth.skill` does the same one scale coarser, against the coarse field itself
(self-test row). The last column is the gain ``synthesize`` picks (``residual_gain="auto"``).

    python benchmarks/detail_gain.py [--shared ../shared] [--factors 4 8] [--gains 0 0.25 0.5 0.75 1 1.25]
        [--model default|CHECKPOINT] [--only HSURF uas tas_east ...]

Default fields: all but ``tas_east`` (the held-out half of the fine-tuning example:
``--model finetuned/amsgm-tas-west.safetensors --only tas_east``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from climgen.depth.skill import self_test
from climgen.models.checkpoint import load_checkpoint
from climgen.models.generator import coarsen
from climgen.refine import TileRefiner
from climgen.tiling import TileLayout

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {  # name: file in shared/data/ncl, variable, label, held-out selection
    "HSURF": ("HSURF_regional_model_0.44deg.nc", "HSURF", "terrain, east Africa", {"rlon": slice(18, None)}),
    "FR_LAND": ("FR-LAND_regional_model_0.44deg.nc", "FR_LAND", "land fraction, east Africa", {"rlon": slice(18, None)}),
    "sftlf": ("sftlf_mod3_rectilinear_grid_2D.nc", "sftlf", "land fraction, other model", {"rlon": slice(18, None)}),
    "orog": ("orog_mod2_rectilinear_grid_2D.nc", "orog", "terrain, orog_mod2", {}),
    "tas": ("tas_rectilinear_grid_2D.nc", "tas", "temperature, global", {}),
    "uas": ("uas_rectilinear_grid_2D.nc", "uas", "eastward wind, global", {}),
    "vas": ("vas_rectilinear_grid_2D.nc", "vas", "northward wind, global", {}),
    # held out by recipes/finetune-tas-west.yaml, whose model trains on the western hemisphere
    "tas_east": ("tas_rectilinear_grid_2D.nc", "tas", "temperature, eastern hemisphere", {"lon": slice(180, None)}),
}


def rmse_by_gain(model, coarse: torch.Tensor, truth: torch.Tensor, stages: int, gains: list[float]) -> list[float]:
    """RMSE of the refined ``coarse`` against ``truth`` for each gain (same noise for all)."""
    noise_source = torch.Generator().manual_seed(0)
    noise = [
        torch.randn((coarse.shape[0], 1, coarse.shape[-2] * 2**s, coarse.shape[-1] * 2**s), generator=noise_source)
        for s in range(1, stages + 1)
    ]
    errors = []
    with torch.inference_mode():
        for gain in gains:
            refined = model(coarse.float(), stages=stages, noise=noise, residual_gain=gain)[-1].double()
            errors.append(float(((refined - truth) ** 2).mean().sqrt()))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--gains", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1, 1.25])
    parser.add_argument("--model", default="default", help="'default' or a checkpoint path")
    parser.add_argument("--only", nargs="+", choices=sorted(FIELDS), help="fields to test (default: all but tas_east)")
    arguments = parser.parse_args()
    gains = sorted(set(arguments.gains) | {1.0})
    model = load_checkpoint(arguments.model).module.eval()
    refiner = TileRefiner(model, 2, TileLayout((8, 8), 8, 0, 1))  # the self-test reads the model and device only
    header = " / ".join(f"{g:g}" for g in gains)
    print(f"| field | factor | truth: RMSE at gains {header} over RMSE at 1 | self-test, same gains | gain chosen |")
    print("|---|---|---|---|---|")
    for key in arguments.only or [key for key in FIELDS if key != "tas_east"]:
        filename, variable, label, selection = FIELDS[key]
        with xr.open_dataset(arguments.shared / "data" / "ncl" / filename) as ds:
            values = ds[variable].sel(selection).values.astype(np.float64)
        values = values.reshape(-1, *values.shape[-2:])
        for factor in arguments.factors:
            stages = factor.bit_length() - 1
            ny, nx = values.shape[-2] // factor * factor, values.shape[-1] // factor * factor
            truth = torch.tensor(values[:, :ny, :nx])[:, None]
            coarse = coarsen(truth, factor)
            truth_errors = rmse_by_gain(model, coarse, truth, stages, gains)
            coarse_even = coarse[..., : coarse.shape[-2] // 2 * 2, : coarse.shape[-1] // 2 * 2]
            self_errors = rmse_by_gain(model, coarsen(coarse_even, 2), coarse_even, 1, gains)
            picks = np.unique(np.linspace(0, len(values) - 1, min(4, len(values))).round().astype(int))
            chosen = self_test(refiner, [coarse[i, 0].numpy() for i in picks], seed_key=(0, variable))
            one = gains.index(1.0)
            print(
                f"| {label} | x{factor} | {' '.join(f'{e / truth_errors[one]:.3f}' for e in truth_errors)} | "
                f"{' '.join(f'{e / self_errors[one]:.3f}' for e in self_errors)} | {chosen.gain:g} (best {chosen.optimum}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
