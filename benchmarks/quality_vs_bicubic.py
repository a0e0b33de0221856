"""Quality against truth on real fields the default model never trained on.

Each truth field is coarsened by block mean (``climgen.grid.coarsen_dataset``), refined with
``climgen.pipeline.synthesize`` (adaptive, by default thresholds or under ``--budget``, and
uniform) and compared with bicubic interpolation of the same coarse field, raw and followed by
climgen's exact consistency projection (inside the variable's physical bounds, as climgen's
own output: land fraction in 0..1). Prints a markdown table; ``--json`` saves the rows.
``--no-bounds`` refines and projects without physical bounds (climgen before they existed).
``--coarsen-by area`` makes the coarse fields area-weighted block means (as conservative
regridding does) and ``--conservation area`` makes climgen (and the projection after bicubic)
match them by area-weighted means; both default to ``cells`` (plain block means).
``--residual-gain 1`` keeps all of the model's learned detail on every field (climgen before the
self-test of :mod:`climgen.depth.skill`; default ``auto``); the last column gives the share kept.
``--depths`` adds a second table: every tile refined to each depth in turn (the rest of the
factor bicubic), and the default adaptive depth map, with RMSE over bicubic's, top-octave power
and share of uniform full depth's multiply-accumulates: what each learned stage is worth.
``--tiles`` adds a table of what the second stage is worth per tile: every tile at depth 1,
then at depth 2, grouped by score and by whether the tile is a front (cells at a physical bound
beside cells off it, :mod:`climgen.depth.complexity`), as the default depth map treats them.

    python benchmarks/quality_vs_bicubic.py [--shared ../shared] [--factors 4 8] [--json out.json]
        [--model default|CHECKPOINT] [--only HSURF tas ...] [--budget 0.3] [--no-bounds]
        [--coarsen-by cells|area] [--conservation cells|area] [--residual-gain auto|1] [--depths] [--tiles]

Fields (from shared/data/ncl, held out of the default model's training,
:data:`climgen.training.corpus.NCL_HELD_OUT`): the eastern halves (rlon >= 18) of the
regional-model fields (the default trains on the western halves of orog_mod3 and sftlf_mod3,
and on ETOPO5 relief tiles that cover a third of these halves' cells) and the three global
CMIP5 fields (temperature and winds; the corpus holds other sources' air temperature and
surface winds: COADS and FNOC).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import climgen  # noqa: F401
from climgen.conservation import project_blocks
from climgen.depth.compute import compute_report
from climgen.grid import cell_bounds, cell_weights, coarsen_dataset, find_spatial_axes, refine_bounds
from climgen.io.physical import physical_bounds
from climgen.metrics import top_octave_power
from climgen.models.generator import bicubic_upsample
from climgen.pipeline import make_config, plan, synthesize
from climgen.refine import refine_domain

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    ("HSURF_regional_model_0.44deg.nc", "HSURF", "terrain", {"rlon": slice(18, None)}),
    ("FR-LAND_regional_model_0.44deg.nc", "FR_LAND", "land fraction", {"rlon": slice(18, None)}),
    ("sftlf_mod3_rectilinear_grid_2D.nc", "sftlf", "land fraction, another model", {"rlon": slice(18, None)}),
    ("tas_rectilinear_grid_2D.nc", "tas", "temperature (12 months)", {}),
    ("uas_rectilinear_grid_2D.nc", "uas", "eastward wind (12 months)", {}),
    ("vas_rectilinear_grid_2D.nc", "vas", "northward wind (12 months)", {}),
]


def _fourier_top_octave(field: np.ndarray) -> float:
    """The same from a Fourier transform, as this benchmark measured it in climgen 0.1.0's
    first figures: on a domain that is not periodic, the jump between opposite edges puts
    power into every wavenumber, and that dominates the top octave (kept in the JSON)."""
    field = field - field.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(field)) ** 2
    ky = np.abs(np.fft.fftfreq(field.shape[-2]))[:, None] * 2
    kx = np.abs(np.fft.fftfreq(field.shape[-1]))[None, :] * 2
    return float(power[..., np.maximum(ky, kx) > 0.5].mean())


def _fine_weights(coarse_ds: xr.Dataset, axes, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Area factors of the fine grid climgen refines onto (each coarse cell split equally)."""
    edges = [refine_bounds(cell_bounds(coarse_ds[name], coarse_ds), factor)[1] for name in (axes.y, axes.x)]
    return cell_weights(*edges, axes.kind)


def coarsened(truth_ds: xr.Dataset, variable: str, factor: int, coarsen_by: str = "cells"):
    """The spatial axes, the truth cropped to whole blocks, its block means (a dataset) and the
    truth's values as (fields, y, x) float64."""
    axes = find_spatial_axes(truth_ds)
    truth_ds = truth_ds.isel(
        {axes.y: slice(0, truth_ds.sizes[axes.y] // factor * factor), axes.x: slice(0, truth_ds.sizes[axes.x] // factor * factor)}
    )
    coarse_ds = coarsen_dataset(truth_ds[[variable]].assign_coords(truth_ds.coords), factor, coarsen_by)
    truth = truth_ds[variable].transpose(..., axes.y, axes.x).values.astype(np.float64)
    return axes, truth_ds, coarse_ds, truth.reshape(-1, *truth.shape[-2:])


def evaluate(
    truth_ds: xr.Dataset,
    variable: str,
    factor: int,
    model: str = "default",
    budget: float | None = None,
    bounded: bool = True,
    coarsen_by: str = "cells",
    conservation: str = "cells",
    residual_gain: float | str = "auto",
) -> dict:
    axes, truth_ds, coarse_ds, truth = coarsened(truth_ds, variable, factor, coarsen_by)
    coarse = torch.tensor(
        coarse_ds[variable].transpose(..., axes.y, axes.x).values.reshape(-1, 1, *coarse_ds[variable].shape[-2:]),
        dtype=torch.float64,
    )
    bicubic = bicubic_upsample(coarse, factor)
    limits = physical_bounds(truth_ds[variable], variable)[0] if bounded else (None, None)
    weights = None if conservation == "cells" else _fine_weights(coarse_ds, axes, factor)
    consistent = np.stack(
        [
            project_blocks(b[0].numpy(), c[0].numpy(), factor, bounds=limits, weights=weights)
            for b, c in zip(bicubic, coarse, strict=True)
        ]
    )
    options = {"variables": [variable], "seed": 0, "model": model, "bounds": {variable: limits}, "conservation": conservation}
    options["residual_gain"] = residual_gain
    row = {"bounds": limits}
    started = time.perf_counter()
    adaptive = synthesize(coarse_ds, factor=factor, budget=budget, **options)
    row["seconds_adaptive"] = time.perf_counter() - started
    uniform = synthesize(coarse_ds, factor=factor, adaptive=False, **options)
    provenance = json.loads(adaptive.attrs["climgen_provenance"])
    row["adaptive_cost"] = provenance["compute"]["fraction_of_uniform"]
    row["residual_gain"] = provenance["residual_gains"][variable]

    def rmse(field: np.ndarray) -> float:
        return float(np.sqrt(np.mean((field.reshape(truth.shape) - truth) ** 2)))

    row["rmse_bicubic"] = rmse(bicubic.numpy())
    row["rmse_bicubic_consistent"] = rmse(consistent)
    row["rmse_adaptive"] = rmse(adaptive[variable].transpose(..., axes.y, axes.x).values)
    physical = physical_bounds(truth_ds[variable], variable)[0]
    values = adaptive[variable].values
    below = values < (-np.inf if physical[0] is None else physical[0])
    above = values > (np.inf if physical[1] is None else physical[1])
    row["share_outside_physical_bounds"] = float(np.mean(below | above))
    row["physical_bounds"] = physical
    row["adaptive_range"] = [float(np.nanmin(values)), float(np.nanmax(values))]
    row["rmse_uniform"] = rmse(uniform[variable].transpose(..., axes.y, axes.x).values)
    for suffix, spectrum in (("", top_octave_power), ("_fourier", _fourier_top_octave)):
        top_truth = spectrum(truth)
        row[f"top_octave_power_ratio_bicubic{suffix}"] = spectrum(bicubic.numpy()[:, 0]) / top_truth
        for name, output in (("uniform", uniform), ("adaptive", adaptive)):
            values = output[variable].transpose(..., axes.y, axes.x).values.reshape(truth.shape)
            row[f"top_octave_power_ratio_{name}{suffix}"] = spectrum(values) / top_truth
    return row


class _Stages:
    """One held-out field's coarse input planned for the default pipeline, refined with any
    depth map as the pipeline would (gap filling, noise, bounds; wrapped columns cropped)."""

    def __init__(self, truth_ds: xr.Dataset, variable: str, factor: int, model: str = "default"):
        axes, _, coarse_ds, self.truth = coarsened(truth_ds, variable, factor)
        coarse = coarse_ds[variable].transpose(..., axes.y, axes.x).values.astype(np.float64)
        coarse = coarse.reshape(-1, *coarse.shape[-2:])
        self.bicubic = bicubic_upsample(torch.tensor(coarse[:, None]), factor).numpy()[:, 0]
        self.job = job = plan(coarse_ds, make_config(factor=factor, variables=[variable], model=model))
        source = job.source[variable].transpose(..., axes.y, axes.x).values.astype(np.float64)  # a global grid: wrapped
        self.source = source.reshape(-1, *source.shape[-2:])
        self.cut = job.wrap_cells * factor
        self.refiner = job.refiner("cpu").with_gain(job.residual_gain(variable))
        self.keys = job.seed_keys(variable, range(len(coarse)), 0)
        self.limits = job.prepared.limits[variable]
        self.full = factor.bit_length() - 1

    def at_depth(self, depth: int) -> np.ndarray:
        """Every tile at ``depth`` (constant tiles stay at 0)."""
        return np.where(self.job.scores.constant, 0, depth).astype(np.int8)

    def refine(self, depth: np.ndarray) -> np.ndarray:
        """The field refined with ``depth`` per tile, cropped to the truth's columns."""
        fine = refine_domain(self.refiner, self.source, depth, self.job.prepared.covariates, self.keys, bounds=self.limits)
        return fine[..., self.cut : fine.shape[-1] - self.cut]


def stage_rows(truth_ds: xr.Dataset, variable: str, factor: int, model: str = "default") -> list[dict]:
    """RMSE over bicubic's, top-octave power over the truth's and share of uniform full depth's
    MACs (as in the output's provenance) with every tile at each depth 1..full (constant tiles
    stay at 0), and with the default depth map."""
    stages = _Stages(truth_ds, variable, factor, model)
    job, truth, bicubic = stages.job, stages.truth, stages.bicubic
    maps = {f"all at depth {depth}": stages.at_depth(depth) for depth in range(1, stages.full + 1)}
    maps["default (adaptive)"] = job.depth
    network_runs = job.residual_gain(variable) > 0  # at gain 0 the network is skipped
    top_truth, top_bicubic = top_octave_power(truth), top_octave_power(bicubic)
    rows = []
    for name, depth in maps.items():
        fine = stages.refine(depth)
        covariates = job.prepared.covariates is not None
        share = compute_report(job.checkpoint.module, job.prepared.layout, depth, stages.full, 1, covariates=covariates)[
            "fraction_of_uniform"
        ]
        rows.append(
            {
                "depths": name,
                "rmse_over_bicubic": float(np.sqrt(np.mean((fine - truth) ** 2) / np.mean((bicubic - truth) ** 2))),
                "top_octave_power_ratio": top_octave_power(fine) / top_truth,
                "top_octave_power_ratio_bicubic": top_bicubic / top_truth,
                "macs_share": share if network_runs else 0.0,
            }
        )
    return rows


SCORE_BINS = [0.0, 0.5, 0.6, 0.7, 0.8, 1.0]


def second_stage_rows(truth_ds: xr.Dataset, variable: str, factor: int, model: str = "default") -> list[dict]:
    """What the second stage is worth per tile: every tile at depth 1, then at depth 2; per
    group of tiles (front or not, by score), the tiles' median share of their squared error
    the second stage removes and the group's share of what it removes over the whole field."""
    stages = _Stages(truth_ds, variable, factor, model)
    scores, layout = stages.job.scores, stages.job.prepared.layout
    shallow, deep = (stages.refine(stages.at_depth(depth)) for depth in (1, 2))
    offset = stages.job.wrap_cells
    tiles = []
    for tile in layout:
        columns = slice(tile.core[1].start - offset, tile.core[1].stop - offset)
        if scores.constant[tile.row, tile.col] or columns.start < 0 or columns.stop > stages.truth.shape[-1] // factor:
            continue  # constant, or in the columns a global grid wraps beyond its edges
        rows = slice(tile.core[0].start * factor, tile.core[0].stop * factor)
        columns = slice(columns.start * factor, columns.stop * factor)
        truth = stages.truth[:, rows, columns]
        first, second = (float(np.sum((fine[:, rows, columns] - truth) ** 2)) for fine in (shallow, deep))
        tiles.append((bool(scores.fronts[tile.row, tile.col]), float(scores.score[tile.row, tile.col]), first, first - second))
    removed_total = sum(removed for *_, removed in tiles)
    groups = []
    for front in (False, True):
        for low, high in zip(SCORE_BINS[:-1], SCORE_BINS[1:], strict=True):
            chosen = [t for t in tiles if t[0] == front and low <= t[1] < high]
            if not chosen:
                continue
            gains = [removed / first for _, _, first, removed in chosen if first > 0]
            groups.append(
                {
                    "front": front,
                    "scores": f"{low:.1f}-{high:.1f}",
                    "tiles": len(chosen),
                    "median_gain": float(np.median(gains)) if gains else 0.0,
                    "share_of_field_gain": sum(removed for *_, removed in chosen) / removed_total if removed_total else 0.0,
                }
            )
    return groups


def print_second_stage_table(fields: list[tuple[str, int, list[dict]]]) -> None:
    """The ``--tiles`` table: per field, factor and group of tiles."""
    print(
        "\n| field | factor | tiles | scores | count | median share of a tile's squared error removed | share of the field's removal |"
    )
    print("|---|---|---|---|---|---|---|")
    for field, factor, groups in fields:
        for group in groups:
            kind = "front" if group["front"] else "other"
            print(
                f"| {field} | x{factor} | {kind} | {group['scores']} | {group['tiles']} | {100 * group['median_gain']:+.1f}% | "
                f"{100 * group['share_of_field_gain']:+.0f}% |",
                flush=True,
            )


def print_stage_table(fields: list[tuple[str, int, list[dict]]]) -> None:
    """The ``--depths`` table: one row per field, factor and depth map."""
    print("\n| field | factor | depths | RMSE / bicubic | top-octave power / truth (bicubic) | MACs / uniform |")
    print("|---|---|---|---|---|---|")
    for field, factor, rows in fields:
        for row in rows:
            print(
                f"| {field} | x{factor} | {row['depths']} | {row['rmse_over_bicubic']:.3f} | {row['top_octave_power_ratio']:.2g} "
                f"({row['top_octave_power_ratio_bicubic']:.2g}) | {row['macs_share']:.2f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", default="default", help="'default' or a checkpoint path")
    parser.add_argument("--only", nargs="+", help="variables to evaluate (default: all)")
    parser.add_argument("--budget", type=float, help="adaptive depth under this compute budget (default: thresholds)")
    parser.add_argument("--no-bounds", action="store_true", help="refine and project without physical bounds")
    parser.add_argument("--coarsen-by", choices=["cells", "area"], default="cells", help="block means of the truth")
    parser.add_argument("--conservation", choices=["cells", "area"], default="cells", help="block means climgen matches")
    parser.add_argument("--residual-gain", default="auto", help="share of the learned detail kept: auto or a number")
    parser.add_argument("--depths", action="store_true", help="also: every tile at each depth, and the default depth map")
    parser.add_argument("--tiles", action="store_true", help="also: the second stage's value per tile, fronts apart")
    arguments = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows, stages, second_stages = [], [], []
    print(
        "| field | factor | RMSE bicubic | RMSE bicubic+projection | RMSE climgen uniform | RMSE climgen adaptive | uniform / bicubic | adaptive / bicubic | adaptive cost | top-octave power / truth: bicubic, uniform, adaptive | detail kept |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for filename, variable, label, selection in FIELDS:
        if arguments.only and variable not in arguments.only:
            continue
        with xr.open_dataset(arguments.shared / "data" / "ncl" / filename) as ds:
            truth = ds.sel(selection).load()
        for factor in arguments.factors:
            row = {
                "field": f"{variable} ({label})",
                "factor": factor,
                **evaluate(
                    truth,
                    variable,
                    factor,
                    arguments.model,
                    arguments.budget,
                    not arguments.no_bounds,
                    arguments.coarsen_by,
                    arguments.conservation,
                    arguments.residual_gain if arguments.residual_gain == "auto" else float(arguments.residual_gain),
                ),
            }
            rows.append(row)
            print(
                f"| {row['field']} | x{factor} | {row['rmse_bicubic']:.4g} | {row['rmse_bicubic_consistent']:.4g} | {row['rmse_uniform']:.4g} | "
                f"{row['rmse_adaptive']:.4g} | {row['rmse_uniform'] / row['rmse_bicubic']:.3f} | {row['rmse_adaptive'] / row['rmse_bicubic']:.3f} | "
                f"{row['adaptive_cost']:.2f} | {row['top_octave_power_ratio_bicubic']:.2g}, {row['top_octave_power_ratio_uniform']:.2g}, "
                f"{row['top_octave_power_ratio_adaptive']:.2g} | "
                f"{row['residual_gain']['gain']:g} |",
                flush=True,
            )
            if arguments.depths:
                stages.append((row["field"], factor, stage_rows(truth, variable, factor, arguments.model)))
                row["depths"] = stages[-1][2]
            if arguments.tiles and factor >= 4:  # x2 has one stage only
                second_stages.append((row["field"], factor, second_stage_rows(truth, variable, factor, arguments.model)))
                row["second_stage_by_tiles"] = second_stages[-1][2]
    if stages:
        print_stage_table(stages)
    if second_stages:
        print_second_stage_table(second_stages)
    for row in rows:
        if row["share_outside_physical_bounds"] > 0:
            print(
                f"{row['field']} x{row['factor']}: {100 * row['share_outside_physical_bounds']:.1f}% of adaptive cells outside "
                f"the physical bounds {row['physical_bounds']} (from {row['adaptive_range'][0]:.3g} to {row['adaptive_range'][1]:.3g})"
            )
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
