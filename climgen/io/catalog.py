"""The NASA Earthdata collections climgen knows how to fetch: what each holds (variables with
their units and CF standard names, grid, time step, file format) and whether :func:`climgen.io.earthdata.fetch`
can build a cube from it."""

from __future__ import annotations

from dataclasses import dataclass

from climgen.errors import ConfigError


@dataclass(frozen=True)
class Collection:
    """A collection commonly used for downscaling: what to search for and what it holds."""

    short_name: str
    version: str
    title: str
    variables: dict[str, tuple[str, str]]  # name -> (units as the files give them, CF standard_name)
    grid: str
    time_step: str
    file_format: str = "netCDF-4"
    notes: str = ""
    latlon: bool = True  # a lat/lon grid that a bounding box can cut

    @property
    def assemblable(self) -> bool:
        """Whether :func:`fetch` can build a cube from it (netCDF on a lat/lon grid)."""
        return self.file_format == "netCDF-4" and self.latlon


CATALOG: dict[str, Collection] = {
    "merra2-hourly": Collection(
        "M2T1NXSLV",
        "5.12.4",
        "MERRA-2 tavg1_2d_slv_Nx: hourly single-level diagnostics",
        {
            "T2M": ("K", "air_temperature"),
            "U10M": ("m s-1", "eastward_wind"),
            "V10M": ("m s-1", "northward_wind"),
            "SLP": ("Pa", "air_pressure_at_mean_sea_level"),
            "QV2M": ("kg kg-1", "specific_humidity"),
            "PS": ("Pa", "surface_air_pressure"),
        },
        "global 0.5 deg lat x 0.625 deg lon, lon -180..179.375",
        "1 hour (24 per daily file)",
    ),
    "imerg-daily": Collection(
        "GPM_3IMERGDF",
        "07",
        "GPM IMERG Final Precipitation L3 1 day 0.1 deg",
        {"precipitation": ("mm/day", "lwe_precipitation_rate")},
        "global 0.1 deg, lat -90..90, lon -180..180 (granules (time, lon, lat); the cube (time, lat, lon))",
        "1 day",
    ),
    "daymet-daily": Collection(
        "Daymet_Daily_V4R1_2129",
        "4.1",
        "Daymet V4 R1 daily surface weather on a 1 km grid for North America",
        {
            "tmax": ("degrees_C", "air_temperature"),
            "tmin": ("degrees_C", "air_temperature"),
            "prcp": ("mm/day", "lwe_precipitation_rate"),
        },
        "1 km Lambert conformal conic (y/x in m) with 2-D lat/lon",
        "1 day (one file per variable and year)",
        latlon=False,
        notes="projected grid: search and download with earthaccess; cutting by a lat/lon box is not supported yet",
    ),
    "nasadem": Collection(
        "NASADEM_HGT",
        "001",
        "NASADEM merged DEM global 1 arc second (elevation covariate)",
        {"elevation": ("m", "surface_altitude")},
        "1 arc second tiles (1 x 1 deg)",
        "static",
        file_format="zip of HGT",
        notes="download only (zip archives); unpack and mosaic before use as a covariate",
    ),
    "srtm-gl3": Collection(
        "SRTMGL3",
        "003",
        "SRTM global 3 arc second elevation (elevation covariate)",
        {"elevation": ("m", "surface_altitude")},
        "3 arc second tiles (1 x 1 deg)",
        "static",
        file_format="zip of HGT",
        notes="download only (zip archives); unpack and mosaic before use as a covariate",
    ),
}


def find_collection(name: str) -> Collection:
    """A catalog entry by its name (``merra2-hourly``) or short name (``M2T1NXSLV``)."""
    for key, entry in CATALOG.items():
        if name.lower() in (key, entry.short_name.lower()):
            return entry
    raise ConfigError(f"unknown collection {name!r}; the catalog has {', '.join(CATALOG)}")
