"""Draw the figures of docs/images from the sample data shipped with climgen (no network).

``complexity-and-depth.png``: the embedded African orography (a regional model's terrain,
0.44 degrees; mountains beside plains and sea) is coarsened by 4 and refined back; the panels
show the fine terrain, each tile's complexity score from the coarse field (tiles of 8 coarse
cells, the explanation map), each tile's predicted gain (the self-test's, which sets the
default depth), and the depth each tile is refined to by default and under a compute budget of
0.3 (tiles inside a window that their group refines deeper anyway take that depth: the
output's ``refinement_depth``).

    python docs/make_figures.py               # writes docs/images/
    python docs/make_figures.py --out DIR
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

import climgen  # noqa: F401  (registers the .climgen accessor)
from climgen.grid import coarsen_dataset
from climgen.plotting import use_shipped_shapes

FACTOR = 4
TILE = 8  # coarse cells a side: small tiles, so that the maps resolve the terrain


def complexity_and_depth(path: Path) -> Path:
    """Terrain, complexity score, predicted gain and two depth maps of the embedded orography at x4."""
    import cartopy.crs as ccrs
    import cartopy.feature as cfeature
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fine = xr.open_dataset(resources.files("climgen") / "data" / "africa_orography_0.44deg.nc").load()
    fine = fine.isel(lat=slice(0, fine.sizes["lat"] // FACTOR * FACTOR), lon=slice(0, fine.sizes["lon"] // FACTOR * FACTOR))
    coarse = coarsen_dataset(fine, FACTOR)
    score = coarse.climgen.complexity(factor=FACTOR, tile_size=TILE)
    full_depth = FACTOR.bit_length() - 1
    runs = {"default (predicted gain)": {}, "budget 0.3": {"budget": 0.3}}
    depths, costs = {}, {}
    for label, options in runs.items():
        refined = coarse.climgen.synthesize(factor=FACTOR, seed=0, tile_size=TILE, **options)
        depths[label] = refined["refinement_depth"]
        costs[label] = json.loads(refined.attrs["climgen_provenance"])["compute"]["fraction_of_uniform"]
        if not options:
            predicted = refined["predicted_gain"]
    use_shipped_shapes()
    borders = cfeature.NaturalEarthFeature(
        "cultural", "admin_0_countries", "110m", facecolor="none", edgecolor="0.3", linewidth=0.4
    )
    figure, axes = plt.subplots(1, 5, figsize=(23, 5.4), subplot_kw={"projection": ccrs.PlateCarree()}, layout="constrained")
    panels = [
        (fine["orog"], "terrain, 0.44 deg (the truth)", "terrain", dict(vmin=0, vmax=2500), "surface altitude (m)"),
        (score, f"complexity score per tile (coarse field, x{FACTOR} coarser)", "viridis", dict(vmin=0, vmax=1), "score"),
    ]
    stages = dict(vmin=-0.5, vmax=full_depth + 0.5)
    gain_limits = dict(vmin=0, vmax=float(np.nanpercentile(predicted.values, 98)))
    panels.append(
        (predicted, "predicted gain per tile (self-test)", "viridis", gain_limits, "share of full depth's squared error")
    )
    for label, depth in depths.items():
        title = f"refined, {label} ({100 * costs[label]:.0f}% of uniform MACs)"
        panels.append((depth, title, "magma", stages, "learned x2 stages"))
    for axis, (data, title, cmap, limits, label) in zip(axes, panels, strict=True):
        mesh = axis.pcolormesh(
            data["lon"], data["lat"], data.values, transform=ccrs.PlateCarree(), cmap=cmap, shading="nearest", **limits
        )
        axis.add_feature(borders)
        axis.set_title(title, fontsize=10)
        bar = figure.colorbar(mesh, ax=axis, orientation="horizontal", shrink=0.85, pad=0.02)
        bar.set_label(label)
        if cmap == "magma":
            bar.set_ticks(np.arange(full_depth + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    arguments = parser.parse_args()
    print("wrote", complexity_and_depth(arguments.out / "complexity-and-depth.png"))


if __name__ == "__main__":
    main()
