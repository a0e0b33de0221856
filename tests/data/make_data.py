"""Make the embedded sample (climgen/data/) and the small test fixtures (tests/data/).

Both are cut from the real NCL sample fields in ../shared/data/ncl (UCAR, BSD licence; the
notice travels with every copy). Run from the repository root:

    python tests/data/make_data.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DATA = ROOT / "climgen" / "data"
TEST_DATA = ROOT / "tests" / "data"
NO_FILL = {"_FillValue": None}


def _lon_to_180(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.assign_coords(lon=((ds.lon + 180) % 360) - 180)
    ds["lon"].attrs = {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degrees_east",
        "axis": "X",
        "bounds": "lon_bnds",
    }
    ds["lon_bnds"] = ((ds.lon_bnds + 180) % 360) - 180
    return ds.sortby("lon")


def make_sample(ncl: Path) -> None:
    tas = xr.open_dataset(ncl / "tas_rectilinear_grid_2D.nc", decode_times=False)
    tas = _lon_to_180(tas).sel(lat=slice(-36, 38), lon=slice(-20, 56))
    tas.attrs["history"] = (
        "climgen tests/data/make_data.py: Africa subset (lat -36..38, lon -20..56), longitudes "
        "shifted to -180..180\n" + tas.attrs.get("history", "")
    )
    encoding = {name: NO_FILL for name in tas.variables if name != "tas"}
    encoding["tas"] = {"zlib": True, "complevel": 4}
    tas.to_netcdf(PACKAGE_DATA / "africa_tas_monthly_2005.nc", encoding=encoding)

    orog = xr.open_dataset(ncl / "orog_mod2_rectilinear_grid_2D.nc", decode_times=False)
    # the rotated pole sits at (90N, 180): the identity rotation, so rlat/rlon are true lat/lon
    pole = orog["rotated_pole"].attrs
    assert float(pole["grid_north_pole_latitude"]) == 90.0 and float(pole["grid_north_pole_longitude"]) == 180.0
    elevation = orog["orog"].isel(time=0, drop=True).rename(rlat="lat", rlon="lon").drop_attrs()
    elevation.attrs = {"standard_name": "surface_altitude", "long_name": "surface height", "units": "m"}
    out = elevation.to_dataset(name="orog").assign_coords(
        lat=("lat", orog.rlat.values.astype(np.float64), {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        lon=("lon", orog.rlon.values.astype(np.float64), {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
    )
    out.attrs = {
        "Conventions": "CF-1.8",
        "title": "Regional model orography over Africa (0.44 deg)",
        "source": "NCL sample data orog_mod2_rectilinear_grid_2D.nc (UCAR)",
    }
    out.to_netcdf(
        PACKAGE_DATA / "africa_orography_0.44deg.nc",
        encoding={"orog": {"zlib": True, "complevel": 4}, "lat": NO_FILL, "lon": NO_FILL},
    )
    shutil.copy(ncl / "COPYRIGHT-UCAR", PACKAGE_DATA / "COPYRIGHT-UCAR")


def make_fixtures(ncl: Path) -> None:
    """A rotated-pole terrain field (east Africa, held out from training) for end-to-end tests."""
    hsurf = xr.open_dataset(ncl / "HSURF_regional_model_0.44deg.nc", decode_times=False)
    east = hsurf.isel(rlat=slice(100, 196), rlon=slice(110, 206))  # 96 x 96, rlon > 19
    east.attrs = {
        "Conventions": "CF-1.8",
        "title": "Regional model surface height, east Africa subset",
        "source": "NCL sample data HSURF_regional_model_0.44deg.nc (UCAR)",
    }
    encoding = {name: NO_FILL for name in east.variables if name != "HSURF"}
    east.to_netcdf(TEST_DATA / "hsurf_east_africa.nc", encoding=encoding)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ncl = parser.parse_args().shared / "data" / "ncl"
    make_sample(ncl)
    make_fixtures(ncl)


if __name__ == "__main__":
    main()
