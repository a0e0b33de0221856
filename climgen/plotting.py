"""Maps of coarse input, refined output and refinement depth, drawn offline with cartopy.

cartopy downloads Natural Earth shapes on first use; climgen ships the country outlines it
draws (public domain) and points cartopy at them, so no map ever needs the network.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import InputError, MissingDependencyError
from climgen.grid import find_spatial_axes
from climgen.io.cf import MEMBER_DIM


def use_shipped_shapes() -> None:
    """Point cartopy at the shipped Natural Earth shapes (no download)."""
    import cartopy

    cartopy.config["pre_existing_data_dir"] = str(resources.files("climgen") / "data" / "naturalearth")


def _lonlat(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    axes = find_spatial_axes(da)
    from climgen.io.cf import find_latlon_auxiliaries

    names = find_latlon_auxiliaries(da.coords.to_dataset(), axes)
    if names is not None:  # 2-D latitude and longitude, under any name (lat/lon, nav_lat, XLAT)
        return da[names[1]].values, da[names[0]].values
    if axes.kind != "latlon":
        raise InputError(
            f"a map needs true latitude and longitude, and {da.name!r} is on a {axes.kind} grid without 2-D lat/lon "
            "coordinates: plot a refined output's variable (climgen adds them), or assign lat/lon coordinates first"
        )
    lon, lat = np.meshgrid(da[axes.x].values, da[axes.y].values)
    return lon, lat


def plot_refinement(coarse: xr.DataArray, fine: xr.DataArray, depth: xr.DataArray, path: str | Path, title: str = "") -> Path:
    """Save a three-panel map: coarse input, refined output, refinement depth."""
    try:
        import cartopy.crs as ccrs
        import cartopy.feature as cfeature
        from matplotlib.figure import Figure  # not pyplot: a notebook's backend and figures are left alone
    except ImportError as err:
        raise MissingDependencyError("maps need cartopy and matplotlib: pip install cartopy matplotlib") from err
    for role, data in (("coarse", coarse), ("fine", fine), ("depth", depth)):
        if isinstance(data, xr.Dataset):
            choices = ", ".join(repr(name) for name in data.data_vars)
            raise InputError(f"{role} is a Dataset: a map shows one field, e.g. {role}[name].isel(time=0) (variables: {choices})")
        spatial = find_spatial_axes(data)
        extra = [dim for dim in data.dims if dim not in (spatial.y, spatial.x)]
        if extra:
            raise InputError(
                f"a map shows one field, and {data.name!r} also has {extra}: select one first, e.g. "
                f".isel({', '.join(f'{dim}=0' for dim in extra)})"
            )
    use_shipped_shapes()
    borders = cfeature.NaturalEarthFeature(
        "cultural", "admin_0_countries", "110m", facecolor="none", edgecolor="0.2", linewidth=0.5
    )
    figure = Figure(figsize=(15, 5), layout="constrained")
    axes_list = figure.subplots(1, 3, subplot_kw={"projection": ccrs.PlateCarree()})
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
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_evaluation(
    truth: xr.Dataset, prediction: xr.Dataset, variables: list[str] | str, folder: str | Path, factor: int | None = None
) -> list[Path]:
    """Per variable (a list, or names separated by commas): power spectra (log axes) of truth,
    prediction (and bicubic), and a map of the error of the first field (and the refinement
    depth when present), saved in ``folder`` (made if missing). DataArrays stand for datasets
    of themselves."""
    import matplotlib.ticker
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend and figures are left alone

    from climgen import metrics
    from climgen.evaluation import _values, bicubic_reference

    truth, prediction = (
        data.to_dataset(name=data.name or "data") if isinstance(data, xr.DataArray) else data for data in (truth, prediction)
    )
    if isinstance(variables, str):
        variables = [name for name in variables.split(",") if name]
    missing = [name for name in variables if name not in truth.data_vars or name not in prediction.data_vars]
    if missing:
        raise InputError(f"variables {missing} are not in both the truth and the prediction")
    axes = find_spatial_axes(truth)
    Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    for name in variables:
        true_values = _values(truth[name], axes)
        predicted = prediction[name]
        if MEMBER_DIM in predicted.dims:
            predicted = predicted.mean(MEMBER_DIM)
        predicted_values = _values(predicted, axes)
        figure = Figure(figsize=(16, 4.8), layout="constrained")
        spectrum_axis, error_axis, depth_axis = figure.subplots(1, 3)
        curves = [("truth", true_values, "k"), ("climgen", predicted_values, "tab:blue")]
        if factor:
            curves.append(("bicubic", bicubic_reference(true_values, factor), "tab:orange"))
        for label, values, colour in curves:
            k, power = metrics.power_spectrum(values)
            spectrum_axis.loglog(k, power, label=label, color=colour)
        spectrum_axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        spectrum_axis.set_xlabel("wavenumber (cycles per fine cell)")
        spectrum_axis.set_ylabel("power")
        spectrum_axis.set_title(f"{name}: radially averaged power spectrum")
        spectrum_axis.legend()
        error = (predicted_values - true_values).reshape(-1, *true_values.shape[-2:])[0]
        limit = float(np.nanmax(np.abs(error))) or 1.0
        mesh = error_axis.pcolormesh(
            truth[axes.x].values, truth[axes.y].values, error, cmap="RdBu_r", vmin=-limit, vmax=limit, shading="nearest"
        )
        figure.colorbar(mesh, ax=error_axis, label=f"climgen - truth ({truth[name].attrs.get('units', '')})")
        error_axis.set_title("error of the first field")
        if "refinement_depth" in prediction:
            depth = prediction["refinement_depth"]
            mesh = depth_axis.pcolormesh(
                truth[axes.x].values, truth[axes.y].values, depth.values, cmap="magma", shading="nearest"
            )
            figure.colorbar(mesh, ax=depth_axis, label="refinement depth", ticks=range(int(depth.max()) + 1))
            depth_axis.set_title("refinement depth")
        else:
            depth_axis.set_visible(False)
        path = Path(folder) / f"evaluation_{name}.png"
        figure.savefig(path, dpi=100)
        written.append(path)
    return written
