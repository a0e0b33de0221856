"""How climgen's files store their variables: float32 data with a fill value, coordinates
without one, time in float64 with the source's units and calendar, and only the types CF-1.8
knows (32-bit integers, character arrays)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.io.cf import ANCILLARY_NAMES, FILL_VALUE, is_time


def match_range_types(variable: xr.Variable, dtype=None) -> None:
    """Give ``valid_range``/``valid_min``/``valid_max`` the data's type, as CF requires (a
    round trip through zarr's JSON attributes turns them into float64/int64)."""
    target = np.dtype(dtype) if dtype is not None else variable.dtype
    for key in ("valid_range", "valid_min", "valid_max"):
        if key in variable.attrs:
            variable.attrs[key] = np.asarray(variable.attrs[key]).astype(target)


def restore_attribute_types(ds: xr.Dataset, source: xr.Dataset | None) -> None:
    """Give ``ds``'s attributes (global and per variable, in place) the types they have in
    ``source``, where the values are the same: a round trip through zarr's JSON widens every
    integer to int64 and every float to float64, and CF wants ``flag_values`` and
    ``actual_range`` in the variable's type; an int64 left that fits int32 is narrowed (netCDF-3
    tools cannot read 64-bit integers: CMIP's ``realization`` and ``*_index``)."""
    pairs = [(ds.attrs, source.attrs if source is not None else {})]
    for name, variable in ds.variables.items():
        original = source.variables[name].attrs if source is not None and name in source.variables else {}
        pairs.append((variable.attrs, original))
    for attrs, original in pairs:
        for key, value in attrs.items():
            if key in ("valid_range", "valid_min", "valid_max"):
                continue  # the data's type (match_range_types): a packed input's are packed numbers
            before = original.get(key)
            if isinstance(before, (np.ndarray, np.generic)) and before.dtype.kind in "iuf":
                cast = np.asarray(value).astype(before.dtype)
                if cast.shape == np.shape(before) and np.array_equal(cast, before):
                    attrs[key] = cast if isinstance(before, np.ndarray) else cast[()]
                    continue
            values = np.asarray(value)
            if values.dtype.kind == "i" and values.size and _fits_int32(values):
                attrs[key] = values.astype(np.int32) if values.ndim else np.int32(values)


def encoding_for(ds: xr.Dataset, variables: list[str], fine_chunks: tuple[int, int], netcdf: bool = True) -> dict:
    """Per-variable encoding: compressed float32 data with a fill value, no fill on coordinates."""
    encoding = encoding_for_plain(ds, exclude=variables, netcdf=netcdf)
    compressed = {"zlib": True, "complevel": 4} if netcdf else {}
    for name in variables:
        spec = {"dtype": "float32", "_FillValue": FILL_VALUE}
        if netcdf:
            spec |= compressed | {"chunksizes": _chunks(ds[name], fine_chunks)}
        encoding[name] = spec
    for name in ANCILLARY_NAMES:  # the depth map is a small integer, the others float32
        whole = name == "refinement_depth"
        encoding[name] = {"dtype": "int8" if whole else "float32", "_FillValue": None if whole else FILL_VALUE} | compressed
    return encoding


def unlimited_dims(source: xr.Dataset | None, ds: xr.Dataset) -> list[str]:
    """The input's unlimited (record) dimensions that ``ds`` has: kept so, outputs of a
    series refined a year at a time can be joined along time by ``ncrcat`` or appended to."""
    found = source.encoding.get("unlimited_dims", ()) if source is not None else ()
    return sorted(dim for dim in found if dim in ds.dims)


def with_file_encoding(ds: xr.Dataset, variables: list[str]) -> xr.Dataset:
    """``ds`` with the encoding of climgen's own files (:func:`encoding_for`, less what only one
    format knows): no fill values on coordinates and bounds, float32 data with climgen's fill
    value, so that a user's ``ds.to_netcdf(path)`` or ``ds.to_zarr(path)`` is CF-clean too."""
    for name, spec in encoding_for(ds, variables, (1, 1), netcdf=False).items():
        if name in ds.variables:
            ds.variables[name].encoding = spec
    return ds


def encoding_for_plain(ds: xr.Dataset, exclude: list[str] | tuple = (), netcdf: bool = True) -> dict:
    """Encoding of everything but the refined data: no fill values, float64 time with the
    source's units and calendar, shared by time and its bounds; in NetCDF, 32-bit integers
    and strings as character arrays (CF-1.8 has neither 64-bit integers nor vlen strings)."""
    encoding: dict[str, dict] = {}
    bounds = {variable.attrs.get(key) for variable in ds.variables.values() for key in ("bounds", "climatology")}
    for name, variable in ds.variables.items():
        if name in exclude:
            continue
        kept = {key: value for key, value in variable.encoding.items() if key in ("units", "calendar", "dtype")}
        if (is_time(variable) and variable.dtype.kind in "MO") or variable.dtype.kind == "m":
            kept["dtype"] = "float64"  # CF-1.8 has no 64-bit integers (dates, and durations such as ERA5's step)
            if str(kept.get("units", "")).split(" ")[0] in ("months", "years") and variable.dtype.kind in "MO":
                kept.pop("units")  # decoded in a 360-day calendar, but xarray cannot encode them again
        elif isinstance(variable.data, np.ndarray) and _fits_int32(variable.data):
            kept["dtype"] = "int32"  # xarray stores a bare 0 (a grid mapping) or a count as int64
        elif netcdf and variable.dtype.kind in "OU" and not is_time(variable):
            kept["dtype"] = "S1"  # strings (ERA5's expver) as CF character arrays, not netCDF-4 vlen strings
        gridded_data = name in ds.data_vars and name not in bounds and variable.dtype.kind == "f"
        encoding[name] = kept | {"_FillValue": FILL_VALUE if gridded_data else None}
    for name, variable in ds.variables.items():  # time's cells (bounds, or a climatology's years) in time's units
        cells = variable.attrs.get("climatology") or variable.attrs.get("bounds")
        if cells in encoding and is_time(variable) and variable.dtype.kind in "MO":
            # xarray decodes a climatology's bounds only when they carry their own units: left
            # as numbers in time's units, they keep them (given units, they would be encoded again)
            decoded = ds[cells].dtype.kind in "MO"
            if "units" not in encoding[name]:  # chosen for both here: xarray would choose each its own
                encoding[name] |= _time_units([variable, ds[cells]] if decoded else [variable])
            if decoded:
                encoding[cells] |= {key: encoding[name][key] for key in ("units", "calendar") if key in encoding[name]}
    return encoding


def _time_units(variables: list) -> dict:
    """Units (days since the earliest date) and calendar that store all of ``variables``' dates."""
    dates = [value for variable in variables for value in np.ravel(variable.values) if value == value]  # not NaT
    if not dates:
        return {}
    earliest = min(dates)
    if isinstance(earliest, np.datetime64):
        return {"units": f"days since {np.datetime_as_string(earliest, unit='D')}", "calendar": "proleptic_gregorian"}
    return {"units": f"days since {earliest.year:04d}-{earliest.month:02d}-{earliest.day:02d}", "calendar": earliest.calendar}


def _fits_int32(values: np.ndarray) -> bool:
    """64-bit integers whose values all fit in 32 bits (CF-1.8 and netCDF-3 have no 64-bit ones)."""
    if values.dtype.kind not in "iu" or values.dtype.itemsize < 8:
        return False
    info = np.iinfo(np.int32)
    return values.size == 0 or (info.min <= values.min() and values.max() <= info.max)


def _chunks(variable: xr.DataArray, fine_chunks: tuple[int, int]) -> tuple[int, ...]:
    leading = [1] * (variable.ndim - 2)
    return (*leading, min(fine_chunks[0], variable.shape[-2]), min(fine_chunks[1], variable.shape[-1]))
