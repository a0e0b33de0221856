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


EARTHDATA = TEST_DATA / "earthdata"
GESDISC = "https://data.gesdisc.earthdata.nasa.gov/data/MERRA2/M2T1NXSLV.5.12.4/2020/01"


def make_merra2_granules() -> None:
    """Two tiny granules shaped like MERRA-2 M2T1NXSLV daily files (24 hourly steps at :30,
    0.5 x 0.625 degree lat/lon, T2M and U10M with MERRA-2's attributes), on a 13 x 13 box
    instead of the globe, and the CMR UMM-JSON search response that lists them (sizes and MD5
    checksums of these files; links as GES DISC serves them). Synthetic values, seeded."""
    import hashlib
    import json

    EARTHDATA.mkdir(exist_ok=True)
    rng = np.random.default_rng(2020)
    lat = np.arange(40.0, 46.5, 0.5)
    lon = np.arange(0.0, 8.125, 0.625)
    items = []
    for day in (1, 2):
        name = f"MERRA2_400.tavg1_2d_slv_Nx.202001{day:02d}.nc4"
        hours = np.arange(24)
        diurnal = 4 * np.sin(2 * np.pi * (hours - 9) / 24)[:, None, None]
        terrain = 3 * np.cos(lat[:, None] / 2) * np.sin(lon[None, :])
        t2m = 275 + diurnal + terrain[None] - 0.6 * (lat[None, :, None] - 40) + rng.normal(0, 0.3, (24, lat.size, lon.size))
        u10m = 3 + 2 * np.sin(lon[None, None, :] + hours[:, None, None] / 5) + rng.normal(0, 0.5, (24, lat.size, lon.size))
        ds = xr.Dataset(
            {
                "T2M": (("time", "lat", "lon"), t2m.astype(np.float32), {"long_name": "2-meter_air_temperature", "units": "K"}),
                "U10M": (
                    ("time", "lat", "lon"),
                    u10m.astype(np.float32),
                    {"long_name": "10-meter_eastward_wind", "units": "m s-1"},
                ),
            },
            coords={
                "time": (
                    "time",
                    (hours * 60).astype(np.int32),
                    {"long_name": "time", "units": f"minutes since 2020-01-{day:02d} 00:30:00"},
                ),
                "lat": ("lat", lat, {"long_name": "latitude", "units": "degrees_north"}),
                "lon": ("lon", lon, {"long_name": "longitude", "units": "degrees_east"}),
            },
            attrs={"Conventions": "CF-1", "Title": "MERRA2 tavg1_2d_slv_Nx (climgen test granule: synthetic values)"},
        )
        encoding = {v: {"zlib": True, "_FillValue": np.float32(1e15)} for v in ("T2M", "U10M")}
        path = EARTHDATA / name
        ds.to_netcdf(path, encoding=encoding | {c: NO_FILL for c in ("time", "lat", "lon")}, format="NETCDF4")
        data = path.read_bytes()
        items.append(
            {
                "meta": {
                    "concept-type": "granule",
                    "concept-id": f"G17{day:02d}000000-GES_DISC",
                    "provider-id": "GES_DISC",
                    "native-id": f"M2T1NXSLV.5.12.4:{name}",
                    "format": "application/vnd.nasa.cmr.umm+json",
                },
                "umm": {
                    "GranuleUR": f"M2T1NXSLV.5.12.4:{name}",
                    "CollectionReference": {"ShortName": "M2T1NXSLV", "Version": "5.12.4"},
                    "TemporalExtent": {
                        "RangeDateTime": {
                            "BeginningDateTime": f"2020-01-{day:02d}T00:00:00.000Z",
                            "EndingDateTime": f"2020-01-{day:02d}T23:59:59.000Z",
                        }
                    },
                    "SpatialExtent": {
                        "HorizontalSpatialDomain": {
                            "Geometry": {
                                "BoundingRectangles": [
                                    {
                                        "WestBoundingCoordinate": -180.0,
                                        "EastBoundingCoordinate": 180.0,
                                        "NorthBoundingCoordinate": 90.0,
                                        "SouthBoundingCoordinate": -90.0,
                                    }
                                ]
                            }
                        }
                    },
                    "DataGranule": {
                        "DayNightFlag": "Unspecified",
                        "ArchiveAndDistributionInformation": [
                            {
                                "Name": name,
                                "SizeInBytes": len(data),
                                "Checksum": {"Value": hashlib.md5(data).hexdigest(), "Algorithm": "MD5"},
                            }
                        ],
                    },
                    "RelatedUrls": [
                        {"URL": f"{GESDISC}/{name}", "Type": "GET DATA", "Description": "Download " + name},
                        {
                            "URL": f"https://goldsmr4.gesdisc.eosdis.nasa.gov/opendap/MERRA2/M2T1NXSLV.5.12.4/2020/01/{name}",
                            "Type": "USE SERVICE API",
                            "Subtype": "OPENDAP DATA",
                        },
                    ],
                },
            }
        )
    response = {"hits": len(items), "took": 42, "items": items}
    (EARTHDATA / "M2T1NXSLV_granules.umm_json").write_text(json.dumps(response, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ncl = parser.parse_args().shared / "data" / "ncl"
    make_sample(ncl)
    make_fixtures(ncl)
    make_merra2_granules()


if __name__ == "__main__":
    main()
