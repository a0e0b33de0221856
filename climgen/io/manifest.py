"""The manifest of a partial store: one entry per finished task, holding its checksum.

A streamed job records each task it finishes as a file named after the task in
``.NAME.partial-job-ID.manifest/``, holding the SHA-256 of the values the task wrote. On
resume every entry is checked against the store: a task whose chunks are missing, truncated
or altered since (a full disk, a copy interrupted, a hand edit) is refined again instead of
being trusted, so a resumed output is the same as an undisturbed one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import ClimgenWarning, warn_user
from climgen.io.cf import MEMBER_DIM
from climgen.tiling import fine_slices


class TamperedStoreWarning(ClimgenWarning):
    """Finished tasks of a partial store failed their checksum and are refined again."""


def store_region(
    cells: tuple[slice, slice], leading: tuple, member: int, dims: list[str], factor: int, wrap_cells: int, members: int
) -> dict:
    """Where a task's fine values lie in the store: its coarse ``cells`` refined by ``factor``
    (a global grid's wrapped columns cut), its ``leading`` (time) indices, its member."""
    rows, cols = fine_slices(cells, factor)
    shift = wrap_cells * factor
    region = {dims[-2]: rows, dims[-1]: slice(cols.start - shift, cols.stop - shift)}
    leading_dims = [dim for dim in dims[:-2] if dim != MEMBER_DIM]
    region |= dict(zip(leading_dims, leading, strict=True))
    if members > 1:
        region[MEMBER_DIM] = slice(member, member + 1)
    return region


def checksum(values: np.ndarray) -> str:
    """SHA-256 of values as the store holds them: float32, every missing value one NaN."""
    stored = np.asarray(values, dtype=np.float32)
    stored = np.where(np.isnan(stored), np.float32(np.nan), stored)
    return hashlib.sha256(np.ascontiguousarray(stored).tobytes()).hexdigest()


def record_task(manifest: Path, key: str, digest: str) -> None:
    """Mark a task finished with the checksum of what it wrote (atomically: a kill leaves the
    entry whole or absent)."""
    partial = manifest / f".{key}.writing"
    partial.write_text(digest)
    os.replace(partial, manifest / key)


def drop_damaged(store: Path, manifest: Path, entries: list[tuple[str, str, dict]]) -> list[str]:
    """Check finished tasks (key, variable, store region) against their recorded checksums;
    remove the entries of those that fail, with a warning, and return their keys. An entry
    without a checksum counts as failed."""
    damaged = []
    with xr.open_zarr(store, consolidated=False, chunks=None) as stored:
        for key, variable, region in entries:
            entry = manifest / key
            expected = entry.read_text().strip() if entry.is_file() else ""
            try:
                intact = bool(expected) and checksum(stored[variable].isel(region).values) == expected
            except Exception:  # noqa: BLE001 - a truncated or corrupt chunk fails to decode in many ways
                intact = False
            if not intact:
                damaged.append(key)
                entry.unlink(missing_ok=True)
    if damaged:
        warn_user(
            f"{len(damaged)} finished task(s) of {store.name} no longer match their checksum (missing, truncated or "
            "altered chunks); they are refined again",
            TamperedStoreWarning,
        )
    return damaged
