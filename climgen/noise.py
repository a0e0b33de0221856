"""Noise keyed on the global grid: the same cells get the same noise however the domain is cut.

Each stage's grid is divided into blocks of :data:`NOISE_BLOCK` fine cells a side; a block's
noise is drawn from a generator seeded by (seed, variable, field, member, stage, block), so a
window of any size and position reads the same values as the whole domain does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


def stream_seed(*parts: object) -> int:
    """A 63-bit seed derived from any parts (seed, variable, index, member, stage)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


NOISE_BLOCK = 64  # fine cells per side of one independently seeded noise block


def noise_window(keys: tuple, stage: int, rows: slice, cols: slice, blocks: dict | None = None) -> np.ndarray:
    """Standard normal noise for a window of a stage's grid, the same whatever the tiling.

    The stage grid is cut into NOISE_BLOCK-sized blocks, each drawn from its own generator
    seeded by (keys, stage, block row, block column); a window assembles the blocks it touches,
    so memory follows the window, not the domain. ``blocks``, a dict kept across the windows
    of one region, holds the blocks already drawn: overlapping windows then draw each once.
    """
    import torch

    out = np.empty((rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
    for block_row in range(rows.start // NOISE_BLOCK, (rows.stop - 1) // NOISE_BLOCK + 1):
        for block_col in range(cols.start // NOISE_BLOCK, (cols.stop - 1) // NOISE_BLOCK + 1):
            name = (keys, stage, block_row, block_col)
            block = None if blocks is None else blocks.get(name)
            if block is None:
                generator = torch.Generator().manual_seed(stream_seed(*keys, stage, block_row, block_col))
                block = torch.randn((NOISE_BLOCK, NOISE_BLOCK), generator=generator).numpy()
                if blocks is not None:
                    blocks[name] = block
            y0, x0 = block_row * NOISE_BLOCK, block_col * NOISE_BLOCK
            ys = slice(max(rows.start, y0), min(rows.stop, y0 + NOISE_BLOCK))
            xs = slice(max(cols.start, x0), min(cols.stop, x0 + NOISE_BLOCK))
            out[ys.start - rows.start : ys.stop - rows.start, xs.start - cols.start : xs.stop - cols.start] = block[
                ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0
            ]
    return out


@dataclass(frozen=True)
class FieldLabels:
    """How each 2-D field of a variable is named in its noise keys: by the values of its leading
    coordinates (``time=2000-01-16T00:00:00``; a dimension without one, by position) and of its
    scalar coordinates (a month picked from a series keeps its time as one), in the order of
    their names. So a field draws the same members whether it is refined alone, in a decade of a
    series or in the whole series, and two decades refined apart do not share their noise.
    Kept per dimension (its size, not the product of the sizes: a long series of many levels)."""

    shape: tuple[int, ...]  # sizes of the leading dimensions, in the variable's order
    parts: tuple[tuple[str, ...], ...]  # per leading dimension, each position's "name=value"
    scalars: tuple[str, ...] = ()  # the scalar coordinates' "name=value"

    def __call__(self, index: int) -> str:
        """The name of field ``index`` (leading dimensions flattened in order, as refined)."""
        positions = np.unravel_index(int(index), self.shape) if self.shape else ()
        named = [part[position] for part, position in zip(self.parts, positions, strict=True)]
        return "|".join(sorted([*named, *self.scalars]))


def field_labels(variable, spatial_dims: tuple[str, str]) -> FieldLabels:
    """The :class:`FieldLabels` of ``variable`` (an xarray DataArray on ``spatial_dims``)."""
    leading = [dim for dim in variable.dims if dim not in spatial_dims]
    parts = []
    for dim in leading:
        coordinate = variable.coords.get(dim)
        if coordinate is not None and coordinate.ndim == 1:
            values = _distinct([_label(value) for value in _decoded(coordinate)])
        else:
            values = [str(index) for index in range(variable.sizes[dim])]
        parts.append(tuple(f"{dim}={value}" for value in values))
    scalars = tuple(
        f"{name}={_label(_decoded(coordinate)[()])}"
        for name, coordinate in variable.coords.items()
        if coordinate.ndim == 0 and "grid_mapping_name" not in coordinate.attrs  # (rioxarray's spatial_ref)
    )
    return FieldLabels(tuple(variable.sizes[dim] for dim in leading), tuple(parts), scalars)


def _distinct(values: list[str]) -> list[str]:
    """Repeated values (two steps at one time, NaT) told apart by their occurrence, the others as they are."""
    seen: dict[str, int] = {}
    distinct = []
    for value in values:
        seen[value] = seen.get(value, 0) + 1
        distinct.append(value if seen[value] == 1 else f"{value}#{seen[value]}")
    return distinct


_SECONDS = {"days": 86400, "day": 86400, "d": 86400, "hours": 3600, "hour": 3600, "h": 3600}
_SECONDS |= {"minutes": 60, "minute": 60, "min": 60, "seconds": 1, "second": 1, "s": 1}


def _decoded(coordinate) -> np.ndarray:
    """A coordinate's values as dates or durations where it holds them undecoded ("days since
    2000-01-01" in its calendar, or "hours"): opened with ``decode_times=False`` or not, a file
    labels its fields alike. Values that cannot be decoded ("months since") stay numbers."""
    values = coordinate.values
    units = str(coordinate.attrs.get("units", "")).strip()
    if values.dtype.kind not in "iuf" or not units:
        return values
    if " since " in units:
        import cftime

        try:
            dates = cftime.num2date(values, units, str(coordinate.attrs.get("calendar", "standard")))
        except (ValueError, TypeError, OverflowError):
            return values
        calendar = getattr(np.ravel(dates)[0], "calendar", "") if np.size(dates) else ""
        if calendar in ("standard", "gregorian", "proleptic_gregorian"):  # as xarray decodes them: numpy dates
            return np.asarray([np.datetime64(date.isoformat(), "us") for date in np.ravel(dates)]).reshape(np.shape(dates))
        return np.asarray(dates)
    if units in _SECONDS:
        return (np.asarray(values, dtype=np.float64) * _SECONDS[units] * 1e6).round().astype("timedelta64[us]")
    return values


def _label(value) -> str:
    """A coordinate value as text that does not depend on how it was stored: dates alike from
    numpy and cftime (to the microsecond where it is not 0), durations in seconds, numbers
    alike in any dtype."""
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return "NaT"
        text = np.datetime_as_string(value.astype("datetime64[us]"))
        return text.removesuffix(".000000")
    if isinstance(value, np.timedelta64):
        if np.isnat(value):
            return "NaT"
        return np.format_float_positional(value / np.timedelta64(1, "s"), unique=True, trim="-") + "s"
    if hasattr(value, "total_seconds"):  # datetime.timedelta
        return np.format_float_positional(value.total_seconds(), unique=True, trim="-") + "s"
    if hasattr(value, "strftime") and hasattr(value, "microsecond"):  # cftime and datetime dates
        return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{value.microsecond:06d}" if value.microsecond else "")
    if isinstance(value, (float, np.floating)):
        return np.format_float_positional(value, unique=True, trim="-")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)
