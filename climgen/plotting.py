"""Maps of coarse input, refined output and refinement depth, drawn offline with cartopy.

cartopy downloads Natural Earth shapes on first use; climgen ships the country outlines it
draws (public domain) and points cartopy at them, so no map ever needs the network.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import MissingDependencyError
from climgen.grid import find_spatial_axes


def use_shipped_shapes() -> None:
    """Point cartopy at the shipped Natural Earth shapes (no download)."""
    import cartopy

    cartopy.config["pre_existing_data_dir"] = str(resources.files("climgen") / "data" / "naturalearth")


def _lonlat(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    axes = find_spatial_axes(da)
    if "lat" in da.coords and da["lat"].ndim == 2:
        return da["lon"].values, da["lat"].values
    if axes.kind != "latlon":
        raise ValueError("maps need true latitude/longitude: 1-D lat/lon or 2-D lat/lon auxiliaries")
    lon, lat = np.meshgrid(da[axes.x].values, da[axes.y].values)
    return lon, lat


def plot_refinement(coarse: xr.DataArray, fine: xr.DataArray, depth: xr.DataArray, path: str | Path, title: str = "") -> Path:
    """Save a three-panel map: coarse input, refined output, refinement depth."""
    try:
        import cartopy.crs as ccrs
        import cartopy.feature as cfeature
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependencyError("maps need cartopy and matplotlib: pip install cartopy matplotlib") from err
    use_shipped_shapes()
    borders = cfeature.NaturalEarthFeature(
        "cultural", "admin_0_countries", "110m", facecolor="none", edgecolor="0.2", linewidth=0.5
    )
    figure, axes_list = plt.subplots(1, 3, figsize=(15, 5), subplot_kw={"projection": ccrs.PlateCarree()}, layout="constrained")
    low = float(np.nanmin(fine.values))
    high = float(np.nanmax(fine.values))
    units = fine.attrs.get("units", "")
    label = f"{fine.attrs.get('long_name', fine.name)} ({units})" if units else str(fine.attrs.get("long_name", fine.name))
    panels = [
        (coarse, f"coarse input {coarse.shape[-2]}x{coarse.shape[-1]}", "viridis", (low, high)),
        (fine, f"refined {fine.shape[-2]}x{fine.shape[-1]}", "viridis", (low, high)),
        (depth, "refinement depth (x2 stages)", "magma", (-0.5, float(depth.max()) + 0.5)),
    ]
    for axis, (data, panel_title, cmap, (vmin, vmax)) in zip(axes_list, panels, strict=True):
        lon, lat = _lonlat(data)
        mesh = axis.pcolormesh(
            lon, lat, data.values, transform=ccrs.PlateCarree(), cmap=cmap, vmin=vmin, vmax=vmax, shading="nearest"
        )
        axis.add_feature(borders)
        axis.set_extent([float(lon.min()), float(lon.max()), float(lat.min()), float(lat.max())], crs=ccrs.PlateCarree())
        axis.set_title(panel_title)
        bar = figure.colorbar(mesh, ax=axis, orientation="horizontal", shrink=0.8, pad=0.03)
        bar.set_label("depth" if data is depth else label)
        if data is depth:
            bar.set_ticks(range(int(depth.max()) + 1))
    if title:
        figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
