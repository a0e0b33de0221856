"""Write a tiny corpus with the layout of ``shared/data`` (tests of :mod:`climgen.training.corpus`).

Every file of :data:`climgen.training.corpus.CORPUS` is there, small and seeded: two ETOPO5
tiles (one of them held out), the COADS, FNOC and Levitus files with land as NaN, and the two
NCL regional fields on a rotated grid. ``python tests/data/make_corpus.py FOLDER`` writes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from climgen.random_fields import gaussian_random_field


def _field(rng, shape, land_share: float = 0.0) -> np.ndarray:
    values = gaussian_random_field(rng, shape, 3.0).astype(np.float32)
    if land_share:  # the highest share of a smooth field is land: NaN, as in the ocean files
        relief = gaussian_random_field(rng, shape, 4.0)
        values = np.where(relief > np.quantile(relief, 1 - land_share), np.nan, values)
    return values


def _grid(rows: int, cols: int, start: float = 20.0) -> dict:
    step = 360.0 / cols
    return {"lat": np.linspace(-89, 89, rows), "lon": start + step * np.arange(cols)}


def write_corpus(root: Path, size: int = 48, seed: int = 0) -> Path:
    """Write the tiny corpus under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    etopo = root / "corpus" / "etopo5"
    etopo.mkdir(parents=True, exist_ok=True)
    for name in ("relief_lat+00_lon150", "relief_lat+30_lon270"):
        elevation = (1000 * _field(rng, (size, size))).astype(np.int16)
        xr.Dataset(
            {"elevation": (("lat", "lon"), elevation, {"units": "m"})},
            coords={"lat": np.arange(size) / 12.0, "lon": 150 + np.arange(size) / 12.0},
        ).to_netcdf(etopo / f"{name}.nc")
    months = pd.date_range("2001-01-01", periods=12, freq="MS") + pd.Timedelta(days=15)
    coads = {
        name: (("time", "lat", "lon"), np.stack([_field(rng, (size, 2 * size), 0.3) for _ in months]))
        for name in ("airt", "uwnd", "vwnd", "slp", "speh", "wspd")
    }
    xr.Dataset(coads, coords={"time": months, **_grid(size, 2 * size)}).to_netcdf(root / "corpus" / "coads_climatology_2deg.nc")
    years = pd.date_range("1982-01-01", periods=132, freq="MS") + pd.Timedelta(days=15)
    navy = {
        name: (("time", "lat", "lon"), rng.standard_normal((132, size, 2 * size)).astype(np.float32)) for name in ("uwnd", "vwnd")
    }
    xr.Dataset(navy, coords={"time": years, **_grid(size, 2 * size)}).to_netcdf(root / "corpus" / "navy_winds_monthly_2.5deg.nc")
    depth = [0.0, 10.0]
    levitus = {
        name: (("depth", "lat", "lon"), np.stack([_field(rng, (size, 2 * size), 0.3) for _ in depth]))
        for name in ("temp", "salt")
    }
    xr.Dataset(levitus, coords={"depth": depth, **_grid(size, 2 * size)}).to_netcdf(
        root / "corpus" / "levitus_climatology_1deg.nc"
    )
    ncl = root / "ncl"
    ncl.mkdir(exist_ok=True)
    rotated = {"rlat": np.linspace(-10, 10, size), "rlon": np.linspace(0, 36, 2 * size)}
    for filename, variable in (("orog_mod3_rectilinear_grid_2D.nc", "orog"), ("sftlf_mod3_rectilinear_grid_2D.nc", "sftlf")):
        xr.Dataset({variable: (("rlat", "rlon"), _field(rng, (size, 2 * size)))}, coords=rotated).to_netcdf(ncl / filename)
    return root


if __name__ == "__main__":
    print(write_corpus(Path(sys.argv[1])))
