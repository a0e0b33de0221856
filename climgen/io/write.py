"""Atomic output: write to a temporary name beside the target, rename when complete.

A failed or killed run never leaves a file at the final path that looks complete, and an
existing output is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

import xarray as xr

from climgen.errors import ConfigError, OutputExistsError, OutputWriteError

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")
ZARR_SUFFIXES = (".zarr",)
NEARLY_FULL_BYTES = 16 * 2**20
"""Free space under which a NetCDF library error while writing is taken for a full disk."""


def output_format(path: str | Path) -> str:
    """``"netcdf"`` or ``"zarr"`` from the output path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    if suffix in ZARR_SUFFIXES:
        return "zarr"
    raise ConfigError(f"output must end in .nc or .zarr, got {Path(path).name!r}")


def check_output(path: str | Path, overwrite: bool, inputs=()) -> Path:
    """Validate the output path before any work starts; it must not be one of ``inputs`` (the
    files the output is made from), which ``overwrite`` would replace with the result."""
    path = Path(path).expanduser()
    output_format(path)
    for source in inputs:
        if _same_file(path, Path(source).expanduser()):
            raise ConfigError(
                f"output {path} is the input {source}: writing it would replace the data it is made from; choose another output"
            )
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output {path} exists; pass --overwrite (overwrite=True in Python, overwrite: true in a recipe) to replace it"
        )
    if not path.parent.exists():
        raise ConfigError(f"output folder {path.parent} does not exist")
    check_writable(path.parent, f"in {path.parent}")
    return path


def nearly_full(folder: Path) -> bool:
    """Whether ``folder``'s disk is (nearly) full: how a NetCDF library error while writing
    ("NetCDF: HDF error") is told for a full disk."""
    return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file or store (through links and relative parts too)."""
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete temporary outputs left beside ``path`` by runs that were killed."""
    removed = []
    for candidate in path.parent.glob(f".{path.name}.partial-*"):
        owner = candidate.name.rsplit(".partial-", 1)[1].split("-")[0]
        if owner.isdigit() and not _process_alive(int(owner)):
            _remove(candidate)
            removed.append(candidate)
    return removed


def write_dataset(ds: xr.Dataset, path: str | Path, encoding: dict, overwrite: bool = False, every_chunk: bool = False) -> Path:
    """Write ``ds`` to ``path`` (.nc or .zarr) atomically; with ``every_chunk``, a zarr store
    keeps chunks of missing values too, so a chunk lost later (a copy cut short) can be told."""
    path = check_output(path, overwrite)
    kind = output_format(path)
    remove_stale_partials(path)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        if kind == "netcdf":
            ds.to_netcdf(temporary, encoding=encoding, format="NETCDF4")
        else:
            ds.to_zarr(
                temporary, encoding=encoding, mode="w", consolidated=True, zarr_format=2, write_empty_chunks=every_chunk or None
            )
        if path.exists():
            retired = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, retired)
            os.replace(temporary, path)
            _remove(retired)
        else:
            os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # netCDF4 says "NetCDF: HDF error" when the disk fills
        _remove(temporary)
        if isinstance(error, OSError) and error.errno is not None:
            reason = os.strerror(error.errno)
        elif nearly_full(path.parent):
            reason = os.strerror(errno.ENOSPC)
        else:
            raise
        raise OutputWriteError(f"{reason} while writing {path}: nothing was written there") from None
    except BaseException:
        _remove(temporary)
        raise
    return path


def check_folder(path: str | Path, option: str = "--out", make: bool = True) -> Path:
    """A folder outputs go in: made where missing (unless not ``make``, to check it before
    work that may fail); an existing file there is an error (named by ``option``)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a folder (it is made where missing)")
    if not make:
        if path.is_dir():
            check_writable(path, f"in {path} ({option})")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot make the folder {path} ({option}): {err.strerror}") from err
    check_writable(path, f"in {path} ({option})")
    return path


def check_writable(folder: Path, where: str) -> None:
    """Refuse a folder no file can be written in (``where`` says which, in the error). A file
    written and removed, not ``os.access``: root on a read-only or special file system, NFS
    with root squashed, ACLs or a full quota pass that test and fail at the first write."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".climgen-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write {where}: {err.strerror or err}") from None
