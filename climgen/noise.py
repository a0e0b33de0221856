"""Noise keyed on the global grid: the same cells get the same noise however the domain is cut.

Each stage's grid is divided into blocks of :data:`NOISE_BLOCK` fine cells a side; a block's
noise is drawn from a generator seeded by (seed, variable, field, member, stage, block), so a
window of any size and position reads the same values as the whole domain does.
"""

from __future__ import annotations

import hashlib
import itertools

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


def field_labels(variable, spatial_dims: tuple[str, str]) -> list[str]:
    """What names each 2-D field of ``variable`` (an xarray DataArray; its leading dimensions
    flattened in order, as climgen refines them) in its noise keys: the values of its leading
    coordinates (``time=2000-01-16T00:00:00``; a dimension without one, the position). So a
    field draws the same members whether it is refined alone, in a decade of a series or in the
    whole series, and two decades refined apart do not share their noise."""
    leading = [dim for dim in variable.dims if dim not in spatial_dims]
    parts = []
    for dim in leading:
        coordinate = variable.coords.get(dim)
        if coordinate is not None and coordinate.ndim == 1:
            values = [_label(value) for value in coordinate.values]
        else:
            values = [str(index) for index in range(variable.sizes[dim])]
        parts.append([f"{dim}={value}" for value in values])
    labels = ["|".join(combination) for combination in itertools.product(*parts)]
    if len(set(labels)) < len(labels):  # repeated coordinate values: positions tell them apart
        labels = [f"{label}#{index}" for index, label in enumerate(labels)]
    return labels


def _label(value) -> str:
    """A coordinate value as text that is the same wherever it is read (dates to the second)."""
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]"))
    if hasattr(value, "isoformat"):  # cftime and datetime dates
        return value.isoformat()
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)
