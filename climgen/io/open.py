"""Open NetCDF or zarr inputs and covariates with clear errors for unusable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import InputError, InputWarning, warn_user


def open_input(path: str | Path) -> xr.Dataset:
    """Open a NetCDF file or zarr store (decoding CF: fill values, packing, calendars)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input not found: {path}")
    try:
        return climatology_bounds_decoded(_undecodable_times_kept(lambda **options: _open(path, **options), path.name))
    except InputError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise InputError(f"cannot read {path}: {_reason(err)}") from err


def climatology_bounds_decoded(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the ``climatology`` bounds of a decoded time decoded too. CF lets them go
    without units (they share time's, CF 7.4), and xarray decodes such bounds only when named
    by ``bounds``: left as numbers, they would be written again with time's units."""
    for variable in list(ds.variables.values()):
        cells = variable.attrs.get("climatology")
        if cells not in ds.variables or ds[cells].dtype.kind not in "iuf" or "units" in ds[cells].attrs:
            continue
        if variable.dtype.kind not in "MO" or "units" not in variable.encoding:
            continue
        stated = {key: variable.encoding[key] for key in ("units", "calendar") if key in variable.encoding}
        raw = ds[cells].variable.copy(deep=False)
        raw.attrs = {**raw.attrs, **stated}
        decoded = xr.decode_cf(xr.Dataset({cells: raw}), decode_timedelta=False)[cells].variable
        decoded.encoding |= stated
        ds = ds.assign_coords({cells: decoded}) if cells in ds.coords else ds.assign({cells: decoded})
    return ds


def _reason(err: Exception) -> str:
    """Why a file could not be opened, in one line."""
    text = str(err)
    if "IO backends" in text:  # xarray's engine guess found nothing: its text ends in links
        return "not a NetCDF file or zarr store (no xarray backend recognises it)"
    return text.splitlines()[0] if text else type(err).__name__


def open_decoded(path: str | Path, **options) -> xr.Dataset:
    """``xr.open_dataset(path, **options)``, with a time axis no calendar decodes read as the
    numbers it was written with (a climgen output of such an input is read back as written)."""
    return _undecodable_times_kept(lambda **more: xr.open_dataset(path, **options, **more), None)


def _undecodable_times_kept(opener, warn_name: str | None) -> xr.Dataset:
    """``opener()``; where its time units cannot be decoded ("months since" in a standard
    calendar), ``opener(decode_times=False)``: the axis is carried through as its numbers and
    units, as the file has it (with a warning naming ``warn_name``, where given)."""
    try:
        return opener()
    except ValueError as err:
        if "decode time" not in str(err):
            raise
        if warn_name is not None:
            warn_user(
                f"{warn_name}: {str(err).splitlines()[0].split('. ')[0]}; the time axis is kept as its numbers with their units",
                InputWarning,
            )
        return opener(decode_times=False)


def _open(path: Path, **options) -> xr.Dataset:
    if path.is_dir() or path.suffix.lower() == ".zarr":
        return xr.open_dataset(path, engine="zarr", chunks=None, **options)
    ds = xr.open_dataset(path, **options)
    group = None if ds.data_vars else _data_group(path)  # HDF5 products (IMERG half-hourly) keep data in groups
    if group is None:
        return ds
    ds.close()
    return xr.open_dataset(path, group=group, **options)


def _data_group(path: Path) -> str | None:
    """The group of a NetCDF-4/HDF5 file whose root holds no variables that has variables itself
    (the shallowest, when nested ones do too); an error naming them when several at that depth do."""
    import netCDF4

    with netCDF4.Dataset(path) as root:
        holding = []
        pending = list(root.groups.values())
        while pending:
            group = pending.pop(0)
            if group.variables:
                holding.append(group.path)
            pending.extend(group.groups.values())
    shallowest = min((path.count("/") for path in holding), default=0)
    holding = [group for group in holding if group.count("/") == shallowest]  # IMERG V07: /Grid, not /Grid/Intermediate
    if len(holding) > 1:
        raise InputError(
            f"{path} keeps its variables in several groups ({', '.join(holding)}): open one with "
            "xr.open_dataset(path, group=...) and refine it with ds.climgen.synthesize, or extract it to a file of its own"
        )
    return holding[0] if holding else None


def parse_covariate(spec: str) -> tuple[str, Path, str | None]:
    """Parse ``NAME=FILE[:VAR]`` from the command line."""
    name, separator, rest = spec.partition("=")
    if not separator or not name or not rest:
        raise InputError(f"covariate must look like NAME=FILE[:VAR], got {spec!r}")
    file_part, _, variable = rest.rpartition(":") if ":" in Path(rest).name else (rest, "", "")
    return name.strip(), Path(file_part or rest), variable or None


def open_covariate(path: str | Path, variable: str | None = None, name: str | None = None) -> xr.DataArray:
    """One variable from a covariate file (the only spatial data variable when not named);
    ``name``, the covariate's, is for messages."""
    if not Path(path).expanduser().exists():
        raise InputError(f"covariate {name + ': ' if name else ''}file not found: {path}")
    ds = open_input(path)
    if variable is not None:
        if variable not in ds.data_vars:
            raise InputError(f"covariate variable {variable!r} not in {path}; it has {sorted(ds.data_vars)}")
        return _with_grid_mapping(ds, variable)
    bounds = {str(var.attrs.get("bounds")) for var in ds.variables.values() if var.attrs.get("bounds")}
    candidates = [
        name
        for name, var in ds.data_vars.items()
        if var.ndim >= 2 and var.dtype.kind in "fiu" and name not in bounds and not str(name).endswith(("_bnds", "_bounds"))
    ]
    if len(candidates) != 1:
        raise InputError(f"name the covariate variable in {path} as FILE:VAR (candidates: {candidates})")
    return _with_grid_mapping(ds, candidates[0])


def _with_grid_mapping(ds: xr.Dataset, name: str) -> xr.DataArray:
    """``ds[name]`` with the grid mapping variable it names as a coordinate, so that the
    covariate's projection can be compared with the input's."""
    mapping = ds[name].attrs.get("grid_mapping")
    if mapping and mapping in ds.data_vars:
        return ds[name].assign_coords({mapping: ds[mapping]})
    return ds[name]


def open_inputs(paths: list[str | Path]) -> xr.Dataset:
    """One dataset from several files combined by their coordinates (e.g. one file per year),
    opened lazily with dask; a single path is opened with :func:`open_input`."""
    if len(paths) == 1:
        return open_input(paths[0])
    missing = [str(path) for path in paths if not Path(path).exists()]
    if missing:
        raise InputError(f"input not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    grid = OneGrid()  # each file checked as it is opened (not read twice)

    def opener(**options) -> xr.Dataset:
        grid.__init__()  # a second try (times kept undecoded) checks every file again
        return xr.open_mfdataset(
            [str(path) for path in paths],
            combine="by_coords",
            chunks={},
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="override",  # one grid, checked as each file opens: the first file's coordinates
            preprocess=grid.check,
            **options,
        )

    try:
        combined = climatology_bounds_decoded(_undecodable_times_kept(opener, f"{Path(paths[0]).name} and {len(paths) - 1} more"))
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        if grid.mismatch is not None:  # files on other grids fail to combine: say which
            raise grid.mismatch from None
        raise InputError(
            f"cannot combine {len(paths)} inputs: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if grid.mismatch is not None:
        combined.close()
        raise grid.mismatch
    for dim, index in combined.indexes.items():  # overlapping files (historical and scenario runs) repeat steps
        if not index.is_unique:
            repeated = [str(value) for value in index[index.duplicated()].unique()]
            combined.close()
            raise InputError(
                f"the {len(paths)} inputs overlap: {dim} {', '.join(repeated[:3])}{' and more' if len(repeated) > 3 else ''} "
                "come more than once; give each step in one file only"
            )
    tracking_ids = grid.tracking_ids
    combined.encoding[SOURCES] = [str(Path(path).resolve()) for path in paths]  # xarray keeps only the first
    if tracking_ids:  # every file's unique id (CMIP, ESGF errata), space-separated as CMIP lists them; xarray kept the first
        combined.attrs["tracking_id"] = " ".join(dict.fromkeys(tracking_ids))
    return combined


class OneGrid:
    """The check that files combined into one input share their spatial grid, made on each
    file as it is opened (``preprocess`` of ``open_mfdataset``): combined by coordinates,
    files on other grids (a covariate beside the inputs that a glob picked up) would make one
    grid of mostly missing cells. The first file that differs is kept in :attr:`mismatch` (an
    error raised while xarray opens the files would leave them open); the files'
    ``tracking_id`` attributes are collected on the way."""

    def __init__(self):
        self.first: tuple[str, dict] | None = None
        self.tracking_ids: list[str] = []
        self.mismatch: InputError | None = None

    def check(self, ds: xr.Dataset) -> xr.Dataset:
        path = str(ds.encoding.get("source", "a file"))
        self.tracking_ids += str(ds.attrs.get("tracking_id", "")).split()
        grid = _grid_of(ds)
        if grid is None or self.mismatch is not None:
            return ds
        if self.first is None:
            self.first = (path, grid)
            return ds
        for name, reference in self.first[1].items():
            values = grid.get(name)
            step = float(np.nanmedian(np.abs(np.diff(reference.ravel())))) if reference.size > 1 else 1.0
            if values is None or values.shape != reference.shape or not np.allclose(values, reference, rtol=0, atol=1e-3 * step):
                apart = (
                    ""
                    if values is None or values.shape != reference.shape
                    else f" (up to {np.nanmax(np.abs(values - reference)):g} apart)"
                )
                self.mismatch = InputError(
                    f"{Path(path).name} is on another grid than {Path(self.first[0]).name}: its {name!r} differs{apart}; "
                    "files combined into one input must share their grid (is a covariate or another product among them?)"
                )
                break
        return ds


def _grid_of(ds: xr.Dataset) -> dict | None:
    """A file's grid: the values of its spatial axes, or on a curvilinear grid (axes without
    values) its 2-D latitude and longitude (the first step of any leading dimension); None
    where it has no spatial axes."""
    from climgen.grid import find_spatial_axes
    from climgen.io.cf import find_latlon_auxiliaries

    try:
        axes = find_spatial_axes(ds)
    except InputError:
        return None
    grid = {name: np.asarray(ds[name].values) for name in (axes.y, axes.x) if name in ds.coords}
    if not grid:
        for name in find_latlon_auxiliaries(ds, axes) or ():
            leading = {dim: 0 for dim in ds[name].dims if dim not in (axes.y, axes.x)}
            grid[name] = np.asarray(ds[name].isel(leading).transpose(axes.y, axes.x).values)
    return grid


SOURCES = "climgen_sources"
"""Encoding key of every file a dataset combined from several was read from (a streamed job's
identity covers each of them)."""
