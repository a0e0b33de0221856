"""ACDD-1.3 discovery attributes of a refined dataset, so catalogues can find and describe it.

What climgen knows it states: a title and summary of what was refined and how, keywords, the
creation date, the processing level, an identifier, the latitude/longitude, vertical and time
coverage, and each variable's coverage content type. Who made or publishes the data, under which
licence, is the user's to say: those attributes are carried from the input when it has them,
read from the user's standing attributes file (:func:`standing_attributes`), or given per run;
never invented.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from climgen.config import check_attributes
from climgen.errors import ConfigError
from climgen.grid import SpatialAxes, latlon_role

CONVENTION = "ACDD-1.3"
STANDARD_NAME_VOCABULARY = "CF Standard Name Table"
KEYWORDS = ("downscaling", "super-resolution", "climgen")
CARRIED = (
    "creator_name",
    "creator_url",
    "creator_email",
    "institution",
    "project",
    "license",
    "acknowledgment",
    "publisher_name",
)
"""Discovery attributes taken from the input when it has them (CMIP's ``institution``...)."""


def _latlon_names(ds: xr.Dataset, axes: SpatialAxes) -> tuple[str | None, str | None]:
    """The output's latitude and longitude: its axes on a lat/lon grid (``lat``, ``latitude``...),
    else its 2-D auxiliary coordinates (interpolated, or computed from the grid mapping)."""
    if axes.kind == "latlon":
        return axes.y, axes.x
    found = {}
    for name, variable in ds.coords.items():
        if variable.ndim >= 2 and (role := latlon_role(str(name), variable)):
            found[role] = str(name)
    return found.get("latitude"), found.get("longitude")


def _extent(ds: xr.Dataset, name: str | None, longitude: bool = False) -> tuple[float, float] | None:
    """Least and greatest value of a latitude coordinate, or the western and eastern ends of a
    longitude coordinate's values (cell centres, as catalogues compare them): the shortest arc
    that holds them all, west > east where it crosses the antimeridian (as ACDD asks)."""
    if name is None or name not in ds.variables:
        return None
    values = np.asarray(ds[name].values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    if not longitude:
        return float(values.min()), float(values.max())
    if np.ptp(values) < 180:
        # on -180..180, as catalogues compare them: a region across the antimeridian stored
        # on 0..360 (135..225) is 135..-135
        return float((values.min() + 180) % 360 - 180), float(180 - (180 - values.max()) % 360)
    # a gap in the longitudes is one wider than 1.5 of the largest step between neighbouring
    # cells (across the seam too): near a pole, where neighbours differ by tens of degrees, none is
    grid = np.asarray(ds[name].values, dtype=np.float64)
    steps = [np.abs((np.diff(grid, axis=axis) + 180) % 360 - 180) for axis in range(grid.ndim) if grid.shape[axis] > 1]
    step = max((float(np.nanmax(part)) for part in steps if np.isfinite(part).any()), default=360.0)
    wrapped = np.unique((values + 180) % 360 - 180)  # -180..180, sorted
    gaps = np.diff(np.append(wrapped, wrapped[0] + 360))  # the last gap runs round to the first value
    widest = int(np.argmax(gaps))
    if gaps[widest] <= 1.5 * step or widest == len(wrapped) - 1:
        # global, or contiguous within -180..180: on -180..180 whatever the grid's convention
        # (a global grid stored 21..379 spans -179.75..179.75)
        return float(wrapped[0]), float(wrapped[-1])
    return float(wrapped[(widest + 1) % len(wrapped)]), float(wrapped[widest])


def _iso_duration(seconds: float, calendar_steps: bool = False) -> str:
    """An ISO 8601 duration in whole days when it is, else seconds (P30D, PT3600S); with
    ``calendar_steps``, a step of 28-31 days is P1M and of 360-366 days P1Y (monthly and
    yearly series, in any calendar)."""
    days = seconds / 86400
    if calendar_steps and 28 <= days <= 31:
        return "P1M"
    if calendar_steps and 360 <= days <= 366:
        return "P1Y"
    return f"P{round(days)}D" if abs(days - round(days)) < 1e-6 and days >= 1 else f"PT{round(seconds)}S"


def _time_values(variable: xr.DataArray) -> list | None:
    """A time variable's instants (a coordinate's, or every edge of its bounds), sorted and
    without missing times (NaT), as ``datetime64[s]`` or cftime dates; None for anything else."""
    values = np.atleast_1d(variable.values).ravel()
    if not values.size:
        return None
    if values.dtype.kind == "M":
        values = values[~np.isnat(values)]
        return list(np.sort(values.astype("datetime64[s]"))) or None
    if values.dtype.kind == "O" and all(hasattr(value, "calendar") for value in values if value is not None):
        return sorted(value for value in values if value is not None) or None  # cftime dates
    return None


def _seconds(later, earlier) -> float:
    difference = later - earlier
    return float(difference / np.timedelta64(1, "s")) if isinstance(difference, np.timedelta64) else difference.total_seconds()


def _iso_instant(value) -> str:
    """An instant in ISO 8601 (UTC); a date of a model calendar that the Gregorian one lacks
    (30 February of a 360-day year) as the last day of its month."""
    if isinstance(value, np.datetime64):
        return f"{value}Z"
    import calendar
    import datetime

    try:
        day = min(value.day, calendar.monthrange(value.year, value.month)[1]) if 1 <= value.year <= 9999 else value.day
        instant = datetime.datetime(value.year, value.month, day, value.hour, value.minute, value.second)
    except ValueError:  # outside the years ISO 8601 writes plainly
        return f"{value.isoformat()}Z"
    return f"{instant.isoformat()}Z"


def _time_coverage(ds: xr.Dataset) -> dict:
    """Start, end, duration and resolution of a decoded time coordinate, in any calendar (none:
    nothing): its first and last instants (as ACDD checkers compare them), and for a
    climatology the years it spans (its ``climatology`` bounds, CF 7.4); the resolution is
    the coordinate's step."""
    for name in ds.coords:
        if ds[name].ndim <= 1 and (values := _time_values(ds[name])) is not None:
            break
    else:
        return {}
    cells = ds[name].attrs.get("climatology")  # a climatology's coordinate is nominal; its bounds span its years
    edges = _time_values(ds[cells]) if cells in ds.variables else None
    first, last = (edges[0], edges[-1]) if edges else (values[0], values[-1])
    attrs = {
        "time_coverage_start": _iso_instant(first),
        "time_coverage_end": _iso_instant(last),
        "time_coverage_duration": _iso_duration(_seconds(last, first)),
    }
    if len(values) > 1:
        step = float(np.median([_seconds(later, earlier) for earlier, later in zip(values[:-1], values[1:], strict=True)]))
        attrs["time_coverage_resolution"] = _iso_duration(step, calendar_steps=True)
    return attrs


VERTICAL_CRS = {
    "altitude": "EPSG:5829",
    "depth": "EPSG:5831",
    "height": 'VERTCRS["height above the surface",VDATUM["local surface"],CS[vertical,1],'
    'AXIS["gravity-related height (H)",up],LENGTHUNIT["metre",1]]',
}
"""The vertical reference of a vertical coordinate by standard name: height above sea level and
depth below it by EPSG code; ``height`` (above the surface, CMIP's 2 m) has no EPSG code, so it
is written out as an OGC WKT2 vertical CRS, as ACDD allows."""

NAMING_AUTHORITY = "climgen"
"""Who assigned ``id`` when the user gives none: climgen, as a random UUID (unique without a
registry). Publishing under an institution's authority: give both ``id`` and ``naming_authority``."""

ATTRIBUTES_FILE = "CLIMGEN_ATTRIBUTES"
"""Environment variable naming the standing attributes file; by default
``$XDG_CONFIG_HOME/climgen/attributes.yaml`` (``~/.config/climgen/attributes.yaml``)."""


def attributes_file() -> Path:
    """Where the user's standing global attributes are read from (the file need not exist)."""
    if os.environ.get(ATTRIBUTES_FILE):
        return Path(os.environ[ATTRIBUTES_FILE]).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "climgen" / "attributes.yaml"


def standing_attributes() -> dict:
    """The global attributes a user states once for every output (creator, publisher, project,
    licence...), from :func:`attributes_file`: a YAML mapping of name to text or number. No file:
    nothing. A run's own ``attributes`` override them."""
    path = attributes_file()
    if not path.is_file():
        if os.environ.get(ATTRIBUTES_FILE):
            raise ConfigError(f"{ATTRIBUTES_FILE} names {path}, which is not a file")
        return {}
    from climgen.yamlconfig import yaml_problem

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"standing attributes file {path} cannot be read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"standing attributes file {path} is not valid YAML{yaml_problem(err)}") from err
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"standing attributes file {path} must be a mapping of attribute name to value")
    try:
        return check_attributes(document)
    except ValueError as err:
        raise ConfigError(f"standing attributes file {path}: {err}") from err


def _increases_downwards(variable: xr.DataArray) -> bool:
    """A vertical coordinate without ``positive`` whose values grow downwards: a depth, a
    pressure (in pressure units, or named so), or a sigma coordinate."""
    from climgen.io.units import same_dimension

    standard_name = str(variable.attrs.get("standard_name", ""))
    if standard_name == "depth" or "pressure" in standard_name or "sigma" in standard_name:
        return True
    units = str(variable.attrs.get("units", "")).strip()
    return bool(units) and same_dimension(units, "Pa")


def _vertical_coverage(ds: xr.Dataset) -> dict:
    """Least and greatest value of a vertical coordinate (CMIP's scalar ``height`` of 2 m, a
    depth axis...) in its own units, and its direction; no vertical coordinate: nothing."""
    for name in ds.coords:
        variable = ds[name]
        standard_name = variable.attrs.get("standard_name")
        if variable.ndim > 1 or not (standard_name in ("height", "altitude", "depth") or variable.attrs.get("axis") == "Z"):
            continue
        values = np.asarray(variable.values, dtype=np.float64)
        if not values.size or not np.isfinite(values).any() or "units" not in variable.attrs:
            continue
        positive = str(variable.attrs.get("positive", "down" if _increases_downwards(variable) else "up")).lower()
        attrs = {
            "geospatial_vertical_min": float(np.nanmin(values)),
            "geospatial_vertical_max": float(np.nanmax(values)),
            "geospatial_vertical_units": str(variable.attrs["units"]),
            "geospatial_vertical_positive": positive,
        }
        if standard_name in VERTICAL_CRS:
            attrs["geospatial_bounds_vertical_crs"] = VERTICAL_CRS[standard_name]
        return attrs
    return {}


def _earlier_refinement(provenance: dict) -> str:
    """How an input that was itself refined (its record in ``input_dataset``) had been, for a
    processing level that says the whole chain ("refined x2 ... of a field refined x4")."""
    earlier = (provenance.get("input_dataset") or {}).get("climgen_provenance")
    if not isinstance(earlier, dict) or "factor" not in earlier:
        return ""
    total = int(earlier["factor"]) * int(provenance["factor"])
    return f", of a field refined x{earlier['factor']} by climgen before (x{total} in all)"


def discovery_attributes(
    ds: xr.Dataset, source: xr.Dataset, variables: list[str], axes: SpatialAxes, provenance: dict, created: str
) -> dict:
    """The ACDD global attributes of refined ``ds`` (``source``: the coarse input)."""
    names = [str(ds[name].attrs.get("long_name") or ds[name].attrs.get("standard_name") or name) for name in variables]
    factor = provenance["factor"]
    fine = {axis: ds.sizes[axis] for axis in (axes.y, axes.x)}  # the output's (a global input is widened to refine)
    summary = (
        f"{', '.join(names)} refined x{factor} by climgen {provenance['climgen_version']} (model {provenance['model']}) "
        f"from {fine[axes.y] // factor} x {fine[axes.x] // factor} cells to {fine[axes.y]} x {fine[axes.x]}: each "
        f"block of {factor} x {factor} cells averages exactly to its coarse value; each tile's number of learned x2 stages "
        "follows the predicted gain of going deeper. Maps of the complexity score, predicted gain, refinement depth and "
        "compute come with the data; climgen_provenance holds every option."
    )
    standard_names = [
        str(ds[name].attrs["standard_name"]).replace("_", " ") for name in variables if ds[name].attrs.get("standard_name")
    ]
    attrs = {
        "summary": summary,
        "keywords": ", ".join(dict.fromkeys([*standard_names, *KEYWORDS])),
        "date_created": created,
        "processing_level": f"refined x{factor} (statistical downscaling) by climgen {provenance['climgen_version']}"
        + _earlier_refinement(provenance),
        "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
        "id": str(uuid.uuid4()),
        "naming_authority": NAMING_AUTHORITY,
    }
    attrs |= {key: source.attrs[key] for key in CARRIED if key in source.attrs}
    lat_name, lon_name = _latlon_names(ds, axes)
    latitudes, longitudes = _extent(ds, lat_name), _extent(ds, lon_name, longitude=True)
    if latitudes and longitudes:
        (south, north), (west, east) = latitudes, longitudes

        def box(left: float, right: float) -> str:
            return f"(({south} {left}, {north} {left}, {north} {right}, {south} {right}, {south} {left}))"

        # across the antimeridian (west > east): two boxes that meet there, as WKT has no
        # longitudes past 180
        bounds = f"MULTIPOLYGON ({box(west, 180.0)}, {box(-180.0, east)})" if west > east else f"POLYGON {box(west, east)}"
        attrs |= {
            "geospatial_lat_min": south,
            "geospatial_lat_max": north,
            "geospatial_lat_units": "degrees_north",
            "geospatial_lon_min": west,
            "geospatial_lon_max": east,
            "geospatial_lon_units": "degrees_east",
            "geospatial_bounds": bounds,
            "geospatial_bounds_crs": "EPSG:4326",
        }
    return attrs | _vertical_coverage(ds) | _time_coverage(ds)


def with_conventions(conventions: str) -> str:
    """A Conventions attribute that also names ACDD-1.3."""
    return conventions if CONVENTION in conventions else f"{conventions}, {CONVENTION}"
