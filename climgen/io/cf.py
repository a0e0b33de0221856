"""CF conventions in one place: grid mappings, auxiliary coordinates, output metadata, encoding.

The pipeline computes; this module decides what the result says about itself. Output follows
CF-1.8 (the newest version the cfchecks tool knows).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import numpy as np
import xarray as xr

from climgen.errors import GridError
from climgen.grid import AXIS_STANDARD_NAMES, SpatialAxes, bounds_name, latlon_role
from climgen.io import acdd
from climgen.io.input_attrs import INPUT_FILE_ATTRS, coarse_grid_keys, parent_record, restate_grid  # noqa: F401 (INPUT_FILE_ATTRS public here)
from climgen.io.units import FRACTION_UNITS

FRACTION_SPELLINGS = FRACTION_UNITS - {"1"}
"""Unit strings that say "a fraction" (ERA5's ``(0 - 1)``) but are not UDUNITS: written as ``1``."""

CONVENTIONS = "CF-1.8"
ANCILLARY_NAMES = ("complexity_score", "predicted_gain", "refinement_depth", "refinement_macs")
FILL_VALUE = np.float32(1.0e20)


def metres_per_unit(units: str, name: str = "axis") -> float:
    """Metres in one ``units`` of a projected axis ("m", "km", "ft", "100 km", "dam"...),
    read with cf-xarray's UDUNITS-flavoured pint registry; a unit that is not a length, or
    that nobody can read, is a :class:`~climgen.errors.GridError`."""
    units = str(units).strip()
    if units in ("m", "metre", "meter", "metres", "meters"):
        return 1.0  # the common case, without loading the registry
    from cf_xarray.units import units as registry

    try:
        quantity = registry(units)
    except Exception as error:  # pint raises several error types for bad strings
        raise GridError(f"{name} has units {units!r}, which climgen cannot read as a length") from error
    if not hasattr(quantity, "check") or not quantity.check("[length]"):
        raise GridError(f"{name} has units {units!r}, which is not a length: projected axes need m, km, ft...")
    return float(quantity.to("m").magnitude)


def projected_axis_scale(ds: xr.Dataset, axes: SpatialAxes) -> float:
    """Metres per unit of a projected grid's x and y axes (which must agree); 1 otherwise."""
    if axes.kind != "projected":
        return 1.0
    scales = {name: metres_per_unit(ds[name].attrs.get("units", "m"), f"projected axis {name!r}") for name in (axes.y, axes.x)}
    if not np.isclose(scales[axes.y], scales[axes.x], rtol=1e-12):
        raise GridError(
            f"projected axes {axes.y!r} and {axes.x!r} have different units: {ds[axes.y].attrs.get('units')!r}, {ds[axes.x].attrs.get('units')!r}"
        )
    return scales[axes.x]


def _add_comment(variable: xr.DataArray, text: str) -> None:
    """Append ``text`` to a variable's ``comment``: what climgen changed in its metadata."""
    variable.attrs["comment"] = "; ".join(part for part in (str(variable.attrs.get("comment", "")).strip(), text) if part)


def _keep_referenced_externals(ds: xr.Dataset) -> None:
    """Keep in the global ``external_variables`` only what a variable's ``cell_measures`` still names."""
    if "external_variables" not in ds.attrs:
        return
    named = {word for variable in ds.variables.values() for word in str(variable.attrs.get("cell_measures", "")).split()}
    kept = [name for name in str(ds.attrs["external_variables"]).split() if name in named]
    if kept:
        ds.attrs["external_variables"] = " ".join(kept)
    else:
        del ds.attrs["external_variables"]


def grid_mapping_name(ds: xr.Dataset, variables: list[str]) -> str | None:
    """The grid mapping variable the refined variables refer to, if any."""
    for name in variables:
        mapping = ds[name].attrs.get("grid_mapping")
        if mapping and mapping in ds.variables:
            return mapping
    return None


def auxiliary_latlon(
    ds: xr.Dataset, axes: SpatialAxes, mapping: str | None, y: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """2-D latitude/longitude of the (y, x) cell centres for rotated and projected grids.

    Computed from the grid mapping with pyproj when possible; otherwise interpolated linearly in
    index space from the input's own 2-D ``lat``/``lon``. ``None`` for true lat/lon grids.
    """
    if axes.kind == "latlon":
        return None
    if mapping is not None:
        scale = projected_axis_scale(ds, axes)  # outside the fallback: wrong units are an error, not a guess
        try:
            from pyproj import CRS, Transformer

            crs = CRS.from_cf(dict(ds[mapping].attrs))
            transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
            xx, yy = np.meshgrid(x * scale, y * scale)
            lon, lat = transformer.transform(xx, yy)
            if np.isfinite(lon).all() and np.isfinite(lat).all():
                return lat, lon
        except Exception:  # noqa: BLE001 - an unknown mapping falls back to interpolation
            pass
    return _interpolated_latlon(ds, axes, y, x)


MEMBER_DIM = "realization"
"""The dimension climgen's ensemble members go on (CF standard name ``realization``)."""

PACKING_ATTRIBUTES = ("_FillValue", "missing_value", "scale_factor", "add_offset")


def decode_packed(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with variables whose attributes still hold CF fill values or packing (opened with
    ``mask_and_scale=False`` or ``decode_cf=False``, or built by hand) decoded as CF says: fill
    values missing, packed integers unpacked. Refined raw, fill values would bleed into valid
    cells and packed numbers would lose their scale."""
    names = [name for name, variable in ds.data_vars.items() if any(key in variable.attrs for key in PACKING_ATTRIBUTES)]
    if not names:
        return ds
    raw = {name: ds[name].variable.copy(deep=False) for name in names}
    for variable in raw.values():
        variable.encoding = {}  # how a file stored it: the attributes say how to read the values
    decoded = xr.decode_cf(xr.Dataset(raw), decode_times=False, decode_coords=False, decode_timedelta=False)
    result = ds.assign({name: (ds[name].dims, decoded[name].data, decoded[name].attrs) for name in names})
    for name in names:  # as if opened decoded: the packing is in the encoding (its valid range is in packed units)
        result[name].encoding = dict(decoded[name].encoding)
    return result


def _interpolated_latlon(ds: xr.Dataset, axes: SpatialAxes, y: np.ndarray, x: np.ndarray):
    names = find_latlon_auxiliaries(ds, axes)
    if names is None:
        return None
    from scipy.interpolate import RegularGridInterpolator

    coarse_y = np.asarray(ds[axes.y].values, dtype=np.float64)
    coarse_x = np.asarray(ds[axes.x].values, dtype=np.float64)
    index_y = _extrapolate_index(y, coarse_y)
    index_x = _extrapolate_index(x, coarse_x)
    points = np.stack(np.meshgrid(index_y, index_x, indexing="ij"), axis=-1)

    def radians(name: str) -> np.ndarray:
        leading = {dim: 0 for dim in ds[name].dims if dim not in (axes.y, axes.x)}  # one grid, repeated in time
        return np.deg2rad(ds[name].isel(leading).transpose(axes.y, axes.x).values.astype(np.float64))

    lat, lon = radians(names[0]), radians(names[1])
    # interpolated as points on the unit sphere: a grid whose rows or columns cross the
    # dateline, or that circles a pole, has no seam in (x, y, z)
    unit = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)
    interpolator = RegularGridInterpolator(
        (np.arange(coarse_y.size), np.arange(coarse_x.size)), unit, bounds_error=False, fill_value=None
    )
    fine = interpolator(points)
    fine_lat = np.rad2deg(np.arctan2(fine[..., 2], np.hypot(fine[..., 0], fine[..., 1])))
    fine_lon = np.rad2deg(np.arctan2(fine[..., 1], fine[..., 0]))
    return fine_lat, (fine_lon + 180) % 360 - 180 if (ds[names[1]] < 0).any() else fine_lon % 360


def _extrapolate_index(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Fractional index of each fine centre, extrapolated linearly beyond the outer centres."""
    positions = np.arange(coarse.size, dtype=np.float64)
    if coarse.size == 1:
        return np.zeros_like(fine)
    order = np.argsort(coarse)
    index = np.interp(fine, coarse[order], positions[order])
    low, high = coarse[order][0], coarse[order][-1]
    slope_low = (positions[order][1] - positions[order][0]) / (coarse[order][1] - coarse[order][0])
    slope_high = (positions[order][-1] - positions[order][-2]) / (coarse[order][-1] - coarse[order][-2])
    index = np.where(fine < low, positions[order][0] + (fine - low) * slope_low, index)
    return np.where(fine > high, positions[order][-1] + (fine - high) * slope_high, index)


def find_latlon_auxiliaries(ds: xr.Dataset, axes: SpatialAxes) -> tuple[str, str] | None:
    """Names of 2-D latitude and longitude auxiliary coordinates on the (y, x) grid."""
    found = {}
    for name, variable in ds.variables.items():
        on_grid = variable.ndim >= 2 and set(variable.dims[-2:]) == {axes.y, axes.x}  # WRF's have Time first
        if on_grid and (role := latlon_role(str(name), variable)):
            found[role] = name
    return (found["latitude"], found["longitude"]) if len(found) == 2 else None


LATLON_ATTRS = {
    "lat": {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"},
    "lon": {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"},
}

ANCILLARY_ATTRS = {
    "complexity_score": {
        "long_name": "climgen complexity score of the coarse input per tile (0 smooth, 1 complex)",
        "units": "1",
        "valid_range": np.array([0.0, 1.0], dtype=np.float32),
        "comment": "weighted mean of gradient, spectral, variance and covariate components; see climgen.depth.complexity",
    },
    "predicted_gain": {
        "long_name": "predicted ratio of the squared error the learned stages remove per tile to what full depth leaves",
        "units": "1",
        "comment": "from a self-test one scale coarser (climgen.depth.gain): each stage's predicted error removal over the "
        "error full depth leaves, summed over stages; a tile stops where its remaining stages' share falls below the "
        "tolerance in climgen_provenance depth_policy; missing where no gain was predicted (uniform depth, models that "
        "sample detail)",
    },
    "refinement_depth": {
        "long_name": "number of learned x2 refinement stages applied per tile",
        "units": "1",
        "comment": "0 means bicubic interpolation with exact coarse consistency only",
    },
    "refinement_macs": {
        "long_name": "multiply-accumulate operations of the model per output cell and field, per tile",
        "units": "1",
        "comment": "each model call's operations shared among the tiles it refines by area; the sum over "
        "the grid is the compute per field in climgen_provenance (less the columns a global grid wraps beyond "
        "its edges, see longitude_wrap_cells there); see climgen.depth.compute.tile_macs",
    },
}


_STANDARD_NAME = re.compile(r"[a-z][a-z0-9_]*( (detection_minimum|number_of_observations|standard_error|status_flag))?")


def valid_standard_name(value) -> bool:
    """Whether a ``standard_name`` attribute (None: absent, which is valid) is spelled as CF
    names are; ``"unknown"`` (ERA5's placeholder) is not one."""
    if value is None:
        return True
    return isinstance(value, str) and value != "unknown" and _STANDARD_NAME.fullmatch(value) is not None


def storable_attributes(ds: xr.Dataset) -> xr.Dataset:
    """Attributes every output format can store, in place: NetCDF takes numbers, strings and
    arrays or lists of one of them, where a zarr input or a user's YAML may hold None (dropped),
    booleans (0 or 1), mappings and mixed lists (their JSON text). Checked before a job runs, so
    a NetCDF output never fails at its end."""
    for attrs in [ds.attrs, *(variable.attrs for variable in ds.variables.values())]:
        for key, value in list(attrs.items()):
            if value is None:
                del attrs[key]
            elif isinstance(value, (bool, np.bool_)):
                attrs[key] = np.int8(value)
            elif isinstance(value, np.ndarray) and value.dtype.kind in "bO":
                attrs[key] = value.astype(np.int8) if value.dtype.kind == "b" else json.dumps(value.tolist(), default=str)
            elif isinstance(value, dict) or (isinstance(value, (list, tuple)) and not _one_kind(value)):
                attrs[key] = json.dumps(value, default=str)
    return ds


def _one_kind(values: list | tuple) -> bool:
    """Whether a list is all strings or all numbers (not booleans): what NetCDF stores."""
    if all(isinstance(value, str) for value in values):
        return True
    return all(isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)) for value in values)


def _utc_now() -> str:
    """The current UTC time as ISO 8601 (history entries, creation dates)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_line(command: str) -> str:
    """One ``history`` entry: UTC time stamp and the exact command or call."""
    return f"{_utc_now()}: {command}"


def tidy(ds: xr.Dataset, axes: SpatialAxes) -> xr.Dataset:
    """CF housekeeping shared by every output: axis attributes, a scalar grid mapping,
    bounds variables without attributes of their own and no ``bounds`` attribute naming a
    missing one, a standard_name on the time axis."""
    discovery = acdd.CONVENTION in str(ds.attrs.get("Conventions", ""))  # a refined output's ACDD attributes
    ds.attrs["Conventions"] = acdd.with_conventions(CONVENTIONS) if discovery else CONVENTIONS
    ds[axes.y].attrs.setdefault("axis", "Y")
    ds[axes.x].attrs.setdefault("axis", "X")
    # axes found by name or axis alone get their CF standard names (and lat/lon their units), and
    # so do 2-D latitude and longitude found by name (WRF's XLAT/XLONG)
    for name, standard in zip((axes.y, axes.x), AXIS_STANDARD_NAMES.get(axes.kind, ()), strict=False):
        ds[name].attrs.setdefault("standard_name", standard)
        if axes.kind == "latlon":
            ds[name].attrs.setdefault("units", "degrees_north" if standard == "latitude" else "degrees_east")
    auxiliaries = find_latlon_auxiliaries(ds, axes) or ()
    for name, standard in zip(auxiliaries, ("latitude", "longitude"), strict=False):
        ds[name].attrs.setdefault("standard_name", standard)
    for name in (axes.y, axes.x, *auxiliaries):  # ACDD: every coordinate variable has a long name
        ds[name].attrs.setdefault("long_name", str(ds[name].attrs.get("standard_name", name)).replace("_", " "))
    for name in list(ds.variables):
        mapping_attrs = ds[name].attrs
        if "grid_mapping_name" in mapping_attrs and (ds[name].ndim > 0 or ds[name].dtype.kind in "SU"):
            ds[name] = xr.DataArray(np.int32(0), attrs=dict(mapping_attrs))
    cell_keys = ("bounds", "climatology")  # a climatology's bounds (CF 7.4) are bounds too
    bounds_variables = {variable.attrs.get(key) for variable in ds.variables.values() for key in cell_keys}
    for name, variable in ds.variables.items():  # CF 3 and ACDD: every variable says what it is, in words
        if name not in bounds_variables and not {"long_name", "grid_mapping_name"} & set(variable.attrs):
            variable.attrs["long_name"] = str(variable.attrs.get("standard_name", name)).replace("_", " ")
    for name in list(ds.variables):
        for key in cell_keys:
            bounds = ds[name].attrs.get(key)
            if bounds in ds.variables:
                ds[bounds].attrs = {}
            elif bounds is not None:  # its variable was dropped (e.g. with a subset of the input): CF 7.1
                del ds[name].attrs[key]
    for name in ds.coords:
        if is_time(ds[name]) and ds[name].ndim <= 1:  # a scalar time (one step selected) as well
            ds[name].attrs.setdefault("standard_name", "time")
            ds[name].attrs.setdefault("long_name", "time")
            if ds[name].ndim == 1:
                ds[name].attrs.setdefault("axis", "T")
    return storable_attributes(ds)


def describe_block_mean(ds: xr.Dataset, axes: SpatialAxes, factor: int, conservation: str = "cells") -> xr.Dataset:
    """Extend ``cell_methods`` of gridded variables after block-mean coarsening."""
    weighting = "area-weighted" if conservation == "area" else "unweighted"
    for variable in ds.data_vars.values():
        if axes.y in variable.dims and axes.x in variable.dims and variable.dtype.kind == "f":
            previous = str(variable.attrs.get("cell_methods", "")).strip()
            method = f"area: mean ({weighting} mean of {factor}x{factor} cells by climgen coarsen)"
            variable.attrs["cell_methods"] = f"{previous} {method}".strip()
    return ds


def decorate(
    result: xr.Dataset,
    source: xr.Dataset,
    variables: list[str],
    axes: SpatialAxes,
    provenance: dict,
    command: str,
    full_depth: int,
) -> xr.Dataset:
    """Attach CF metadata and provenance to a refined dataset (values are not touched)."""
    ds = result
    # an input that is itself a climgen output: its record goes into this one's, not its attributes
    attrs = {key: value for key, value in source.attrs.items() if key not in INPUT_FILE_ATTRS and not key.startswith("climgen_")}
    attrs = restate_grid(attrs, 1 / provenance["factor"], (ds.sizes[axes.y], ds.sizes[axes.x]))
    if "tracking_id" in source.attrs:  # the input file's unique id: this file is another
        attrs["climgen_input_tracking_id"] = source.attrs["tracking_id"]
    parent = parent_record(source.attrs)
    if parent:
        provenance = provenance | {"input_dataset": parent}
    if "creation_date" in source.attrs:
        attrs["creation_date"] = _utc_now()
    attrs["Conventions"] = acdd.with_conventions(CONVENTIONS)
    previous = str(source.attrs.get("history", "")).strip()
    attrs["history"] = history_line(command) + ("\n" + previous if previous else "")
    attrs.setdefault("title", "Refined fields")
    attrs["title"] = f"{attrs['title']} (refined x{provenance['factor']} by climgen)"
    attrs.setdefault("source", "climgen")
    attrs.setdefault("references", "climgen user guide: docs/user-guide.md (grid convention and method)")
    attrs["climgen_version"] = provenance["climgen_version"]
    attrs["climgen_model"] = provenance["model"]
    attrs["climgen_model_sha256"] = provenance["model_sha256"]
    attrs["climgen_provenance"] = json.dumps(provenance, sort_keys=True)
    ds.attrs = attrs

    for name in variables:
        variable = ds[name]
        variable.attrs = dict(source[name].attrs)
        if not valid_standard_name(variable.attrs.get("standard_name")):
            # ERA5 files say "unknown": not a CF name, and no name is better than a wrong one
            # (tidy gives a variable left without either name its own as long_name)
            _add_comment(variable, f"standard_name {variable.attrs.pop('standard_name')!r} of the input dropped: not a CF name")
        units = str(variable.attrs.get("units", "")).strip()
        if units in FRACTION_SPELLINGS:
            # ERA5's "(0 - 1)" and the like say a fraction but are no UDUNITS units: CF's is "1"
            variable.attrs["units"] = "1"
            _add_comment(variable, f"units {units!r} of the input written as '1'")
        measures = variable.attrs.pop("cell_measures", None)
        if measures:
            # the input's cell areas (often CMIP's external areacella) are the coarse grid's
            _add_comment(variable, f"cell_measures {measures!r} of the input dropped: the coarse grid's")
        coarse_grid = {key: variable.attrs.pop(key) for key in coarse_grid_keys(variable.attrs)}
        if coarse_grid:  # they describe the coarse grid, which this is not
            described = ", ".join(f"{key} {value!r}" for key, value in coarse_grid.items())
            _add_comment(
                variable,
                f"{described} of the input dropped: {'they describe' if len(coarse_grid) > 1 else 'it describes'} the coarse grid",
            )
        variable.attrs["coverage_content_type"] = "modelResult"
        named_mapping = variable.attrs.get("grid_mapping")
        if named_mapping and named_mapping not in source.variables:
            # a subsetting tool dropped the grid mapping variable: no reference to nothing
            variable.attrs.pop("grid_mapping")
            _add_comment(variable, f"grid_mapping {named_mapping!r} named by the input, which lacked it")
        ancillary = variable.attrs.get("ancillary_variables", "").split()
        gone = [other for other in ancillary if other not in ds.variables]  # not refined (flags) nor carried
        if gone:
            _add_comment(variable, f"ancillary variables {gone} of the input not in this output")
        kept = [other for other in ancillary if other in ds.variables]
        variable.attrs["ancillary_variables"] = " ".join(dict.fromkeys(kept + list(ANCILLARY_NAMES)))
        for key in (
            "scale_factor",
            "add_offset",
            "_FillValue",
            "missing_value",
            "valid_range",
            "valid_min",
            "valid_max",
            "actual_range",
        ):
            variable.attrs.pop(key, None)
    _keep_referenced_externals(ds)
    mapping = grid_mapping_name(source, variables)
    for name in ANCILLARY_NAMES:
        ds[name].attrs = dict(ANCILLARY_ATTRS[name]) | {"coverage_content_type": "auxiliaryInformation"}
        if mapping:
            ds[name].attrs["grid_mapping"] = mapping
    ds["refinement_depth"].attrs["valid_range"] = np.array([0, full_depth], dtype=np.int8)
    # The maps describe how each cell was made: auxiliary coordinates of every refined variable
    # (CF 'coordinates'), so they travel with ds[name] and catalogues do not take them for data.
    ds = ds.set_coords(list(ANCILLARY_NAMES))
    latlon = find_latlon_auxiliaries(ds, axes) if axes.kind != "latlon" else None
    if latlon:
        for name in ANCILLARY_NAMES:
            ds[name].attrs["coordinates"] = " ".join(latlon)
        for name in variables:
            ds[name].attrs["coordinates"] = " ".join((*latlon, *ANCILLARY_NAMES))
    ds = tidy(ds, axes)
    if MEMBER_DIM in ds.dims:
        ds[MEMBER_DIM].attrs = {"standard_name": "realization", "long_name": "ensemble member", "units": "1"}
        for key in ("realization", "realization_index"):  # CMIP's number of the input's one member
            if key in ds.attrs:
                ds.attrs[f"climgen_input_{key}"] = ds.attrs.pop(key)
    discovery = acdd.discovery_attributes(ds, source, variables, axes, provenance, _utc_now())
    ds.attrs = {key: value for key, value in ds.attrs.items() if key not in discovery} | discovery
    ds.attrs |= provenance.get("attributes") or {}  # what the user states (creator, licence...) has the last word
    return storable_attributes(ds)


def refined_variables(ds: xr.Dataset) -> list[str]:
    """Names of the refined variables in a climgen result (those linked to the depth map)."""
    return [
        name
        for name, variable in ds.data_vars.items()
        if "refinement_depth" in str(variable.attrs.get("ancillary_variables", "")).split()
    ]


def is_time(variable: xr.DataArray) -> bool:
    """True for decoded datetimes (numpy or cftime) and for undecoded 'UNITS since DATE'."""
    if variable.dtype.kind == "M":
        return True
    if variable.dtype.kind == "O" and variable.size and hasattr(variable.values.flat[0], "calendar"):
        return True
    return " since " in str(variable.attrs.get("units", ""))


def add_bounds_attrs(ds: xr.Dataset, axes: SpatialAxes) -> xr.Dataset:
    """Point the fine axes at their bounds variables (already present in ``ds``)."""
    for name in (axes.y, axes.x):
        ds[name].attrs["bounds"] = bounds_name(name)
    return ds
